// The Review page's candidate list and keyboard: every key is applied here, at once, to what is on screen, and
// sent to the server as an event that names its (query, document). Events wait in a queue until the server
// acknowledges them (data.acked), so a key pressed while the page reruns is neither lost nor re-targeted.
// Keys whose outcome only the server knows (next/previous query, undo, a suggestion, a verdict on the query's last
// candidate, which opens the next query) hold later keys back until it answers.
const VERDICT_KEYS = { f: "false_negative", t: "true_negative", u: "unsure" };
const VERDICT_NAME = { false_negative: "false negative", true_negative: "true negative", unsure: "unsure" };
const WAITING = new Set(["query", "undo", "suggestion"]);  // actions whose result the client cannot predict
// Every key, as the help (`?`) lists it; the single letters among them are the shortcuts this list takes.
const KEYS = [
  [["f"], "verdict: false negative, then the next candidate (after the query's last one, the next query)"],
  [["t"], "verdict: true negative, then the next candidate"],
  [["u"], "verdict: unsure, then the next candidate"],
  [["j", "k"], "next / previous candidate (a click on a row moves there too)"],
  [["n", "p"], "next / previous query (in the triage queue: next / previous item)"],
  [["z"], "undo your latest verdict (a Map selection's whole batch at once)"],
  [["a", "r"], "accept / reject the query's first open suggestion (marked in the verdict column)"],
  [["Esc"], "leave a text box: shortcuts pause while you type; closes this help"],
  [["?"], "show / hide this help"],
];
const SHORTCUTS = new Set(KEYS.flatMap(([keys]) => keys).filter((k) => /^[a-z]$/.test(k)));
const GAP_MS = 5000;  // how long keys still count after the list left the page (a slow remount)
const RETRY_MS = 2500;  // unacknowledged events are sent again after this long without an answer (then 2x, 4x…)
const RETRY_MAX_MS = 20000;

function typingTarget(el) {
  if (!el) return false;
  const tag = el.tagName;
  return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;  // always text: documents are never rendered as HTML
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function fmt(value, digits, signed) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  const s = Number(value).toFixed(digits);
  return signed && value >= 0 ? "+" + s : s;
}

export default function (component) {
  const { setStateValue, parentElement } = component;
  const box = parentElement.querySelector(".ns-list");
  const status = parentElement.querySelector(".ns-status");
  const notice = parentElement.querySelector(".ns-notice");
  const help = parentElement.querySelector(".ns-help");
  // One state per browser session token, kept across reruns (the function runs again on every render).
  const all = (window.__nsReview = window.__nsReview || {});
  const state = (all[component.data.token] = all[component.data.token] ||
    { seq: component.data.acked, queue: [], deferred: [], data: component.data, renders: new Map() });
  // Streamlit may hold two copies of the list for a moment (when it remounts it), and the older copy can run
  // again with its older data: every copy reads the newest screen the server sent (data.rev), never its own
  // closure, so a key is applied against the cursor the server last acknowledged.
  const newest = component.data.rev >= state.data.rev;
  if (newest) {
    state.data = component.data;
    state.setStateValue = setStateValue;  // events go through the newest copy, which stays mounted
  }
  const data = () => state.data;
  state.seq = Math.max(state.seq, data().acked);
  state.queue = state.queue.filter((e) => e.seq > data().acked);

  function view() {
    // The server's screen with the still-unacknowledged predictable events replayed on top of it.
    const labels = {};
    let cursor = data().cursor;
    for (const e of state.queue) {
      if (e.query_id !== data().query_id) continue;
      if (e.action === "verdict") labels[e.doc_id] = e.label;
      if (e.cursor) cursor = e.cursor;
    }
    return { labels, cursor };
  }

  function waiting() {
    return state.queue.some((e) => WAITING.has(e.action) ||
      (e.action === "verdict" && (data().verdicts_wait || !e.cursor)));
  }

  function send(event) {
    // event null: send the queue again (it got no answer, e.g. it went out while no copy of the list was mounted)
    if (event) {
      state.seq += 1;
      state.queue.push({ ...event, seq: state.seq });
    }
    state.sends = (state.sends || 0) + 1;  // a resend differs from the last value, so it reaches the server
    state.setStateValue("events", { token: data().token, events: state.queue, sent: state.sends });
    watch(state.retryMs || RETRY_MS);
  }

  function watch(ms) {
    // Streamlit drops a key callback that a newer rerun request (the page's 1 s polling fragment, another key)
    // interrupts before it has applied anything, and does not call it again for the same value: the events would
    // wait for the next key, and a key waiting for the server's answer (a query change, an undo) for ever. So an
    // event the server has not acknowledged after a while is sent again (applied once: the server skips the
    // numbers it has applied), backing off while the server stays silent, so a slow server is not interrupted
    // over and over.
    clearTimeout(state.retry);
    if (!state.queue.length) return;
    state.retry = setTimeout(() => {
      if (!state.queue.length) return;
      state.retryMs = Math.min(RETRY_MAX_MS, 2 * ms);
      send(null);
    }, ms);
  }

  function act(key) {
    const order = data().rows.map((r) => r.doc_id);
    const { cursor } = view();
    const at = Math.max(0, order.indexOf(cursor));
    if (key in VERDICT_KEYS) {
      if (!order.length) return;
      const next = at + 1 < order.length ? order[at + 1] : null;  // null: the server opens the next query
      send({ action: "verdict", label: VERDICT_KEYS[key], query_id: data().query_id, doc_id: order[at], cursor: next });
    } else if (key === "j" || key === "k") {
      if (!order.length) return;
      const to = order[Math.max(0, Math.min(order.length - 1, at + (key === "j" ? 1 : -1)))];
      send({ action: "move", query_id: data().query_id, cursor: to });
    } else if (key === "n" || key === "p") {
      send({ action: "query", query_id: data().query_id, step: key === "n" ? 1 : -1 });
    } else if (key === "z") {
      send({ action: "undo", query_id: data().query_id });
    } else if ((key === "a" || key === "r") && data().suggestions.length) {
      send({ action: "suggestion", query_id: data().query_id, id: data().suggestions[0].id, accept: key === "a" });
    }
  }

  function press(key) {
    if (waiting()) state.deferred.push(key);
    else act(key);
    renderAll();
  }

  function onPage() {
    // whether a copy of the list is on the page now (not so between two copies)
    const shown = [...state.renders.keys()].some((b) => b.isConnected);
    if (shown) state.seen = Date.now();
    return shown;
  }

  function renderAll() {
    for (const draw of state.renders.values()) draw();
  }

  function renderHelp() {
    help.hidden = !state.help;
    if (!state.help) return;
    help.replaceChildren();
    const title = document.createElement("div");
    title.className = "ns-help-title";
    title.textContent = "Keys (Esc or ? closes)";
    const close = document.createElement("button");
    close.type = "button";
    close.textContent = "×";
    close.title = "Close";
    close.onclick = () => { state.help = false; renderAll(); };
    title.appendChild(close);
    help.appendChild(title);
    const table = document.createElement("table");
    for (const [keys, what] of KEYS) {
      const tr = document.createElement("tr");
      const td = cell(tr, "");
      for (const k of keys) {
        const kbd = document.createElement("kbd");
        kbd.textContent = k;
        td.appendChild(kbd);
      }
      cell(tr, what);
      table.appendChild(tr);
    }
    help.appendChild(table);
  }

  function render() {
    const { labels, cursor } = view();
    const suggested = {};  // doc id -> its open suggestion (the first of a document wins)
    for (const s of data().suggestions) if (!(s.doc_id in suggested)) suggested[s.doc_id] = s;
    const first = data().suggestions[0];
    box.replaceChildren();
    const table = document.createElement("table");
    const head = document.createElement("tr");
    for (const h of ["", "rank", "verdict", "score", "s − s_P", "rule", "risk", "document", "text"]) {
      const th = document.createElement("th");
      th.textContent = h;
      head.appendChild(th);
    }
    table.appendChild(head);
    for (const r of data().rows) {
      const tr = document.createElement("tr");
      const label = labels[r.doc_id] || r.label;
      const pending = r.doc_id in labels;
      tr.dataset.doc = r.doc_id;
      if (r.doc_id === cursor) tr.className = "ns-cursor";
      cell(tr, r.doc_id === cursor ? "▶" : "");
      cell(tr, String(r.rank));
      const hint = suggested[r.doc_id];
      if (label) cell(tr, VERDICT_NAME[label] + (pending ? " …" : ""), "ns-" + label);
      else if (hint) cell(tr, "suggested: " + hint.label + (hint === first ? " (a / r)" : ""), "ns-suggested");
      else cell(tr, "");
      cell(tr, fmt(r.score, 3));
      cell(tr, fmt(r.margin, 3, true));
      cell(tr, r.rule);
      cell(tr, data().risk_pending ? "scoring…" : fmt(r.risk, 2), data().risk_pending ? "ns-pending" : "");
      cell(tr, r.doc_id, "ns-doc");
      cell(tr, r.text, "ns-text");
      tr.onclick = () => {
        if (!waiting()) send({ action: "move", query_id: data().query_id, cursor: r.doc_id });
        renderAll();
      };
      table.appendChild(tr);
    }
    box.appendChild(table);
    const current = box.querySelector("tr.ns-cursor");
    if (current && current.scrollIntoView) current.scrollIntoView({ block: "nearest" });
    const typing = typingTarget(document.activeElement);
    const keys = "Keys: f t u judge · j k move · n p query · z undo" + (first ? " · a r suggestion" : "") +
      " · ? all keys";
    status.className = "ns-status" + (typing ? " ns-paused" : "");
    status.textContent = typing
      ? "Shortcuts paused while you type — press Esc to return to judging"
      : waiting() ? keys + " — waiting for the page…" : keys;
    notice.textContent = data().notice || "";
    notice.hidden = !data().notice;
    renderHelp();
  }

  // Keys buffered behind a query change or an undo run once the server has answered it.
  if (!waiting() && state.deferred.length) {
    const keys = state.deferred.splice(0);
    for (const key of keys) {
      if (waiting()) state.deferred.push(key);
      else act(key);
    }
  }
  state.renders.set(box, render);
  render();

  // Streamlit remounts the list when a rerun replaces it, and for a moment no copy is on the page: a listener that
  // came and went with each copy lost a key pressed in that gap. So the window keeps one listener for good, and
  // it hands each key to the newest copy's handler, which works from the shared state even between copies (an
  // event that goes unanswered is sent again, see watch). Once the list has been gone for longer than a remount
  // (another page), keys are left alone.
  const onKey = (ev) => {
    const active = document.activeElement;
    if (!onPage() && (location.pathname !== state.path || Date.now() - state.seen > GAP_MS)) return;
    if (ev.key === "Escape" && typingTarget(active)) {
      active.blur();
      ev.preventDefault();
      renderAll();
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey || typingTarget(active)) return;
    if (ev.key === "?" || (ev.key === "Escape" && state.help)) {
      state.help = ev.key === "?" && !state.help;
      ev.preventDefault();
      renderAll();
      return;
    }
    const key = ev.key.length === 1 ? ev.key.toLowerCase() : "";
    if (!SHORTCUTS.has(key)) return;
    ev.preventDefault();
    ev.stopPropagation();
    state.help = false;  // a shortcut closes the help, which covers the rows it acts on
    press(key);
  };
  if (!all.listening) {
    all.listening = true;
    document.addEventListener("keydown", (ev) => all.onKey && all.onKey(ev), true);
    const onFocus = () => setTimeout(() => all.onFocus && all.onFocus(), 0);
    document.addEventListener("focusin", onFocus);
    document.addEventListener("focusout", onFocus);
  }
  for (const old of state.renders.keys()) if (old !== box && !old.isConnected) state.renders.delete(old);
  if (newest) {
    all.onKey = onKey;
    all.onFocus = renderAll;
    state.path = location.pathname;
    if (data().acked > (state.ackedSeen || 0)) state.retryMs = RETRY_MS;  // the server answers: back to quick
    state.ackedSeen = Math.max(state.ackedSeen || 0, data().acked);
    watch(state.retryMs || RETRY_MS);  // a screen from the server: wait afresh before sending again
  }
  return () => state.renders.delete(box);
}
