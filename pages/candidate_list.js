// The Review page's candidate list and keyboard: every key is applied here, at once, to what is on screen, and
// sent to the server as an event that names its (query, document). Events wait in a queue until the server
// acknowledges them (data.acked), so a key pressed while the page reruns is neither lost nor re-targeted.
// Keys whose outcome only the server knows (next/previous query, undo) hold later keys back until it answers.
const VERDICT_KEYS = { f: "false_negative", t: "true_negative", u: "unsure" };
const VERDICT_NAME = { false_negative: "false negative", true_negative: "true negative", unsure: "unsure" };
const WAITING = new Set(["query", "undo"]);  // actions whose result the client cannot predict
const GAP_MS = 5000;  // how long keys still count after the list left the page (a slow remount)

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
    return state.queue.some((e) => WAITING.has(e.action) || (e.action === "verdict" && data().verdicts_wait));
  }

  function send(event) {
    // event null: send the queue again (it went out while no copy of the list was mounted)
    if (event) {
      state.seq += 1;
      state.queue.push({ ...event, seq: state.seq });
    }
    state.unsent = !onPage();
    state.setStateValue("events", { token: data().token, events: state.queue });
  }

  function act(key) {
    const order = data().rows.map((r) => r.doc_id);
    const { cursor } = view();
    const at = Math.max(0, order.indexOf(cursor));
    if (key in VERDICT_KEYS) {
      if (!order.length) return;
      const next = order[Math.min(order.length - 1, at + 1)];
      send({ action: "verdict", label: VERDICT_KEYS[key], query_id: data().query_id, doc_id: order[at], cursor: next });
    } else if (key === "j" || key === "k") {
      if (!order.length) return;
      const to = order[Math.max(0, Math.min(order.length - 1, at + (key === "j" ? 1 : -1)))];
      send({ action: "move", query_id: data().query_id, cursor: to });
    } else if (key === "n" || key === "p") {
      send({ action: "query", query_id: data().query_id, step: key === "n" ? 1 : -1 });
    } else if (key === "z") {
      send({ action: "undo", query_id: data().query_id });
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

  function render() {
    const { labels, cursor } = view();
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
      cell(tr, label ? VERDICT_NAME[label] + (pending ? " …" : "") : "", label ? "ns-" + label : "");
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
    status.className = "ns-status" + (typing ? " ns-paused" : "");
    status.textContent = typing
      ? "Shortcuts paused while you type — press Esc to return to judging"
      : waiting() ? "Keys: f t u judge · j k move · n p query · z undo — waiting for the page…"
      : "Keys: f t u judge · j k move · n p query · z undo";
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
  // it hands each key to the newest copy's handler, which works from the shared state even between copies; an
  // event sent while no copy was on the page is sent again by the next one. Once the list has been gone for
  // longer than a remount (another page), keys are left alone.
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
    const key = ev.key.length === 1 ? ev.key.toLowerCase() : "";
    if (!key || !"ftujknpz".includes(key)) return;
    ev.preventDefault();
    ev.stopPropagation();
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
    if (state.unsent && state.queue.length) send(null);
  }
  return () => state.renders.delete(box);
}
