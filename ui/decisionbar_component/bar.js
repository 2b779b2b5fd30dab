// The decision bar: the pair's heading, Keep / Drop / Flag / Undo, their keys (K / D / F / U), the note box,
// and what the server said about the last press.
//
// Every press is appended to one cumulative, sequence-numbered list {seq, client, pair, action, note} and the
// whole list is sent as the component's STATE value (a state value is carried by every later rerun request, so
// no press depends on one request arriving). The server records each press whose seq is above the last it
// recorded for this client and sends that seq back in `data.acked`; acknowledged presses leave the list.
//
// Each press carries the pair id the bar was drawn with, and the bar draws the pair's heading itself: the
// heading on screen and the pair a press goes to change in one draw, so a press always lands on the pair
// whose heading the annotator sees, however late the server handles it. Nothing here reads the page outside
// the bar. Text from the dataset is never put in here; everything is set as text, never as HTML.

const client = Math.random().toString(36).slice(2, 12);   // one page load; the server keeps a seq per client
let seq = 0;
let pending = [];          // presses sent, not yet acknowledged
let active = null;         // the bar on the page: {data, setStateValue, parts}
let last = null;           // the bar drawn last, kept after its cleanup: what is on screen until the next draw
let unsent = false;        // a press made between a cleanup and the next draw: that draw sends it
let resend = null;         // the timer that sends unacknowledged presses again
const RESEND_MS = 5000;
let resent = 0;            // how many times (the status element's data-resent says)

function typing(event) {
  const el = event.composedPath ? event.composedPath()[0] : event.target;
  return !!el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
}

function showStatus() {
  if (!active) return;
  const { status, said } = active.parts;
  const waiting = pending.length;
  status.textContent = waiting ? `Saving ${waiting} press${waiting > 1 ? "es" : ""}…` : "";
  Object.assign(status.dataset, { pending: waiting, drawn: active.data.drawn, resent });
  const message = active.data.said;
  said.textContent = message && !waiting ? message.text : "";
  said.className = `said ${message ? message.kind : ""}`;
}

// Presses the server has not acknowledged after a quiet spell with no new draw are sent again, less and less
// often (at-least-once delivery: the server takes each seq once, so a press sent twice is recorded once).
function resendAfter(ms) {
  clearTimeout(resend);
  resend = pending.length ? setTimeout(() => {
    if (pending.length && active) {
      resent += 1;
      active.setStateValue("presses", pending.slice());
      showStatus();
      resendAfter(Math.min(2 * ms, 30000));
    }
  }, ms) : null;
}

function press(action) {
  const bar = shown();
  if (!bar || !bar.data.enabled) {
    if (bar) bar.parts.status.textContent = "Type your name first: decisions are saved with it.";
    return;
  }
  const note = action === "undo" ? "" : bar.parts.note.value.trim().slice(0, 2000);
  if (action !== "undo") bar.parts.note.value = "";
  seq += 1;
  pending.push({ seq, client, pair: bar.data.pair, action, note });
  if (bar === active) {
    showStatus();
    bar.setStateValue("presses", pending.slice());
    resendAfter(RESEND_MS);
  } else {
    unsent = true;         // its draw was cleaned up, its heading is still on screen: the next draw sends it
    bar.parts.status.textContent = `Saving ${pending.length} press${pending.length > 1 ? "es" : ""}…`;
  }
}

// The bar whose heading the annotator sees: the active draw, or between a draw's cleanup and the next draw
// (Streamlit unmounts and mounts the element again on some reruns) the last one, while it is still on the page.
function shown() {
  return [active, last].find((b) => b && b.parts.wrap.isConnected) || null;
}

function onKey(event) {
  const bar = shown();
  if (!bar || event.repeat || event.ctrlKey || event.metaKey || event.altKey || typing(event)) {
    return;
  }
  const button = bar.data.buttons.find((b) => b.shortcut === event.key.toLowerCase());
  if (!button) return;
  event.preventDefault();
  event.stopPropagation();
  press(button.action);
}
document.addEventListener("keydown", onKey);

function build(root) {
  const heading = document.createElement("h3");
  heading.className = "heading";
  heading.setAttribute("data-testid", "decisionBarHeading");
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
  const said = document.createElement("div");
  said.setAttribute("data-testid", "decisionBarSaid");
  wrap.append(buttons, note);
  root.append(heading, wrap, status, said);
  return { heading, wrap, buttons, note, status, said };
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
  parts.heading.textContent = data.heading || "";
  parts.heading.hidden = !data.heading;
  parts.note.placeholder = data.note_placeholder;
  drawButtons(parts, data);
  const bar = { data, setStateValue, parts };
  active = last = bar;
  if (unsent && pending.length) {                  // presses made while no draw was active
    unsent = false;
    setStateValue("presses", pending.slice());
    resendAfter(RESEND_MS);
  }
  showStatus();
  // Streamlit runs this module once per draw, asynchronously, and may call a draw's cleanup after the next
  // draw of the same element has run: only the draw that is still active is switched off.
  return () => {
    if (active === bar) active = null;
  };
}
