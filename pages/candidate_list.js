// The Review page's candidate list and keyboard: every key is applied here, at once, to what is on screen, and
// sent to the server as an event that names its (query, document). Events wait in a queue until the server
// acknowledges them (data.acked), so a key pressed while the page reruns is neither lost nor re-targeted.
// Keys whose outcome only the server knows (next/previous query, undo) hold later keys back until it answers.
const VERDICT_KEYS = { f: "false_negative", t: "true_negative", u: "unsure" };
const VERDICT_NAME = { false_negative: "false negative", true_negative: "true negative", unsure: "unsure" };
const WAITING = new Set(["query", "undo"]);  // actions whose result the client cannot predict

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
  const { data, setStateValue, parentElement } = component;
  const box = parentElement.querySelector(".ns-list");
  const status = parentElement.querySelector(".ns-status");
  // One state per browser session token, kept across reruns (the function runs again on every render).
  const all = (window.__nsReview = window.__nsReview || {});
  const state = (all[data.token] = all[data.token] || { seq: data.acked, queue: [], deferred: [] });
  state.seq = Math.max(state.seq, data.acked);
  state.queue = state.queue.filter((e) => e.seq > data.acked);
  state.data = data;

  function view() {
    // The server's screen with the still-unacknowledged predictable events replayed on top of it.
    const labels = {};
    let cursor = data.cursor;
    for (const e of state.queue) {
      if (e.query_id !== data.query_id) continue;
      if (e.action === "verdict") labels[e.doc_id] = e.label;
      if (e.cursor) cursor = e.cursor;
    }
    return { labels, cursor };
  }

  function waiting() {
    return state.queue.some((e) => WAITING.has(e.action) || (e.action === "verdict" && data.verdicts_wait));
  }

  function send(event) {
    state.seq += 1;
    state.queue.push({ ...event, seq: state.seq });
    setStateValue("events", { token: data.token, events: state.queue });
  }

  function act(key) {
    const order = data.rows.map((r) => r.doc_id);
    const { cursor } = view();
    const at = Math.max(0, order.indexOf(cursor));
    if (key in VERDICT_KEYS) {
      if (!order.length) return;
      const next = order[Math.min(order.length - 1, at + 1)];
      send({ action: "verdict", label: VERDICT_KEYS[key], query_id: data.query_id, doc_id: order[at], cursor: next });
    } else if (key === "j" || key === "k") {
      if (!order.length) return;
      const to = order[Math.max(0, Math.min(order.length - 1, at + (key === "j" ? 1 : -1)))];
      send({ action: "move", query_id: data.query_id, cursor: to });
    } else if (key === "n" || key === "p") {
      send({ action: "query", query_id: data.query_id, step: key === "n" ? 1 : -1 });
    } else if (key === "z") {
      send({ action: "undo", query_id: data.query_id });
    }
  }

  function press(key) {
    if (waiting()) state.deferred.push(key);
    else act(key);
    render();
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
    for (const r of data.rows) {
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
      cell(tr, data.risk_pending ? "scoring…" : fmt(r.risk, 2), data.risk_pending ? "ns-pending" : "");
      cell(tr, r.doc_id, "ns-doc");
      cell(tr, r.text, "ns-text");
      tr.onclick = () => {
        if (!waiting()) send({ action: "move", query_id: data.query_id, cursor: r.doc_id });
        render();
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
  render();

  // One key listener at a time: each render replaces the previous one, unmounting removes it.
  const onKey = (ev) => {
    const active = document.activeElement;
    if (ev.key === "Escape" && typingTarget(active)) {
      active.blur();
      ev.preventDefault();
      render();
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey || typingTarget(active)) return;
    const key = ev.key.length === 1 ? ev.key.toLowerCase() : "";
    if (!key || !"ftujknpz".includes(key)) return;
    ev.preventDefault();
    ev.stopPropagation();
    press(key);
  };
  const onFocus = () => setTimeout(render, 0);
  if (all.detach) all.detach();
  document.addEventListener("keydown", onKey, true);
  document.addEventListener("focusin", onFocus);
  document.addEventListener("focusout", onFocus);
  const detach = () => {
    document.removeEventListener("keydown", onKey, true);
    document.removeEventListener("focusin", onFocus);
    document.removeEventListener("focusout", onFocus);
    if (all.detach === detach) all.detach = null;
  };
  all.detach = detach;
  return detach;
}
