// The decision bar's buttons (Keep / Drop / Flag / Undo), their keys (K / D / F / U) and the note box.
//
// Every press is appended to one cumulative, sequence-numbered list {seq, client, pair, action, note} and the
// whole list is sent as the component's STATE value. Streamlit keeps one pending rerun per session: a trigger
// (a button click) that arrives while a run is under way can be coalesced away, a state value cannot (the
// latest list is in every rerun request). The server records each press whose seq is above the last it
// recorded for this client and sends that seq back in `data.acked`; acknowledged presses leave the list.
// Each press carries the pair id the bar was drawn with: a press lands on the pair on screen, however late
// the server handles it. Text from the dataset is never put in here; labels are set as text, never as HTML.
//
// While a run redraws the page, the pair's heading can already show the next pair while this bar (drawn
// below it, later in the run) still holds the previous one. The server sends the heading it drew above the
// bar (`data.heading`, on Browse); a press made while the heading on screen differs from it is held
// ("Saving…") until the heading on screen is the one drawn above the bar on the page (checked every 250 ms
// and at every draw), and then takes that bar's pair, the one the heading shows: it is never sent with a
// pair that is no longer on screen.

const client = Math.random().toString(36).slice(2, 12);   // one page load; the server keeps a seq per client
let seq = 0;
let pending = [];          // presses sent, not yet acknowledged
let held = [];             // presses made while the heading on screen was not the bar's
let active = null;         // the bar on the page: {root, data, setStateValue, note, status}
let recheck = null;        // the timer that sends held presses once the page and the bar agree again
let resend = null;         // the timer that sends unacknowledged presses again
const RESEND_MS = 3000;
let resent = 0;            // how many times (the status element's data-resent says)

function typing(event) {
  const el = event.composedPath ? event.composedPath()[0] : event.target;
  return !!el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
}

function containerOf(root) {
  const host = root instanceof ShadowRoot ? root.host : root;
  return host.closest('[data-testid="stElementContainer"]');
}

// The text of the nearest heading above the bar (on Browse: "Row N · rank …", the pair on screen).
function headingAbove(root) {
  const mine = containerOf(root);
  if (!mine) return null;
  let head = null;
  for (const c of (mine.closest('[data-testid="stMain"]') || document).querySelectorAll("h1, h2, h3")) {
    if (mine.compareDocumentPosition(c) & Node.DOCUMENT_POSITION_PRECEDING) head = c;
  }
  return head ? head.innerText : null;
}

const words = (text) => (text || "").replace(/\s+/g, " ").trim();

// The heading on screen is not the one the server drew above this bar: the page shows another pair.
function behindThePage() {
  return !!active.data.heading && words(headingAbove(active.root)) !== words(active.data.heading);
}

function showStatus() {
  if (!active) return;
  const waiting = pending.length + held.length;
  active.status.textContent = waiting ? `Saving ${waiting} press${waiting > 1 ? "es" : ""}…` : "";
  Object.assign(active.status.dataset, { pending: pending.length, held: held.length, drawn: active.data.drawn,
                                         resent });
}

// The list goes to the server with every press. Presses the server has not acknowledged after a quiet
// spell with no new draw and no run under way (a rerun request that never came back) are sent again, less
// and less often; the server takes each seq once, so a press sent twice is recorded once.
function sendPending(bar) {
  bar.setStateValue("presses", pending.slice());
  resendAfter(RESEND_MS);
}

function resendAfter(ms) {
  clearTimeout(resend);
  resend = pending.length ? setTimeout(() => {
    if (document.querySelector('[data-testid="stStatusWidget"]')) {
      resendAfter(ms);                             // a run is under way: it answers (a re-send would cut it short)
    } else if (pending.length && active) {
      resent += 1;
      active.setStateValue("presses", pending.slice());
      resendAfter(Math.min(2 * ms, 30000));
    }
  }, ms) : null;
}

function send(action, note) {
  seq += 1;
  pending.push({ seq, client, pair: active.data.pair, action, note });
}

// Held presses go with the bar's pair once the heading on screen is the one drawn above the bar.
function flushHeld() {
  held.splice(0).forEach(({ action, note }) => send(action, note));
  showStatus();
  sendPending(active);
}

function press(action) {
  const bar = active;
  if (!bar || !bar.data.enabled) {
    if (bar) bar.status.textContent = "Type your name first: decisions are saved with it.";
    return;
  }
  const note = action === "undo" ? "" : bar.note.value.trim().slice(0, 2000);
  if (action !== "undo") bar.note.value = "";
  if (held.length || behindThePage()) {          // after any press still held: the order is kept
    held.push({ action, note });
    showStatus();
    recheck = recheck || setInterval(() => {
      if (!held.length) {
        clearInterval(recheck);
        recheck = null;
      } else if (active && active.root.isConnected && !behindThePage()) {
        flushHeld();
      }
    }, 250);
    return;
  }
  send(action, note);
  showStatus();
  sendPending(bar);
}

function onKey(event) {
  if (!active || !active.root.isConnected || event.repeat || event.ctrlKey || event.metaKey || event.altKey
      || typing(event)) {
    return;
  }
  const button = active.data.buttons.find((b) => b.shortcut === event.key.toLowerCase());
  if (!button) return;
  event.preventDefault();
  event.stopPropagation();
  press(button.action);
}
document.addEventListener("keydown", onKey);

function build(root) {
  const wrap = document.createElement("div");
  wrap.className = "bar";
  const buttons = document.createElement("div");
  buttons.className = "buttons";
  const note = document.createElement("input");
  note.type = "text";
  note.className = "note";
  note.setAttribute("aria-label", "Note (optional)");
  note.maxLength = 2000;
  const status = document.createElement("div");
  status.className = "status";
  status.setAttribute("role", "status");
  status.setAttribute("data-testid", "decisionBarStatus");
  wrap.append(buttons, note);
  root.append(wrap, status);
  return { wrap, buttons, note, status };
}

function drawButtons(parts, data) {
  parts.buttons.replaceChildren(...data.buttons.map((spec) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = `btn ${spec.kind}`;
    b.disabled = !data.enabled;
    b.title = spec.help;
    b.setAttribute("aria-keyshortcuts", spec.shortcut.toUpperCase());
    b.setAttribute("data-action", spec.action);
    const icon = document.createElement("span");
    icon.className = "icon";
    icon.setAttribute("aria-hidden", "true");
    icon.textContent = spec.icon;
    const label = document.createElement("span");
    label.textContent = spec.label;
    const key = document.createElement("span");
    key.className = "key";
    key.setAttribute("aria-hidden", "true");
    key.textContent = spec.shortcut.toUpperCase();
    b.append(icon, label, key);
    b.addEventListener("click", () => press(spec.action));
    return b;
  }));
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  let parts = parentElement.__decisionBar;
  if (!parts) {
    parts = build(parentElement);
    parentElement.__decisionBar = parts;
  }
  const acked = (data.acked || {})[client] || 0;
  pending = pending.filter((p) => p.seq > acked);
  resendAfter(RESEND_MS);                          // the server answered: wait a quiet spell again
  parts.note.placeholder = data.note_placeholder;
  drawButtons(parts, data);
  const bar = { root: parentElement, data, setStateValue, note: parts.note, status: parts.status };
  active = bar;
  showStatus();
  if (held.length && !behindThePage()) flushHeld();
  // Streamlit runs this module once per draw, asynchronously, and may call a draw's cleanup after the next
  // draw of the same element has run: only the draw that is still active is switched off.
  return () => {
    if (active === bar) active = null;
  };
}
