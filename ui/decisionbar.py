"""Recording decisions (one pair, many pairs as one action, undo) and the decision bar every pair view shows.

Nothing is recorded without the annotator's name (`require_annotator` asks for it); every write bumps
`loaders.DECISIONS_VERSION`, so the next read of `loaders.team()` sees it.

The bar is one component (decisionbar_component/bar.js) with one fixed key: the pair's heading, Keep / Drop /
Flag / Undo, their keys (K / D / F / U), the note box, and what was recorded. Its state is the page's
cumulative list of presses {seq, client, pair, action, note}; `take` records each press whose seq is above
the last one recorded for that page, on the pair id the press carries, and the bar is drawn again with that
seq acknowledged. A press therefore lands on the pair whose heading was on screen, however many presses
Streamlit coalesced into one rerun and however late the server handles them; one it cannot take (no name, a
pair this session was never shown, a malformed press) is acknowledged and refused, and the bar says why.

A press reruns what the bar is in: a fragment (Browse's pair panel, which draws the sidebar's counts too: one
script run per press), or the page; `show(..., whole_page=True)` reruns the page from a fragment. What a press
recorded is state the bar draws (`said`), not a one-shot message.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import streamlit as st

from ches.review import decisions as decision_log
from ui import loaders, state
from ui.render import escape_md

KEY = "decision_bar"           # the component's key: the same on every pair, so no press is left behind
UNDO = "undo"
_BAR = "_decision_bar"         # this session's bookkeeping (`_bar`)
_SHOWN_MAX = 1000
_NAME_PROMPT = "_name_prompt"
_NOTE_MAX = 2000
_ASSETS = Path(__file__).with_name("decisionbar_component")
_BUTTONS = ((decision_log.KEEP, "Keep", "check", "primary", "Keep this pair and open the next undecided one"),
            (decision_log.DROP, "Drop", "delete", "secondary", "Drop this pair from the curated set and open "
             "the next undecided one"),
            (decision_log.FLAG, "Flag", "flag", "secondary", "Flag for a second look and open the next "
             "undecided one"),
            (UNDO, "Undo", "undo", "secondary", "Undo your decision on this pair"))
ACTIONS = tuple(b[0] for b in _BUTTONS)
SHORTCUTS = {action: action[0] for action in ACTIONS}     # K, D, F, U

_component = st.components.v2.component("ches_decision_bar", js=(_ASSETS / "bar.js").read_text(encoding="utf-8"),
                                        css=(_ASSETS / "bar.css").read_text(encoding="utf-8"))


def _take_name() -> None:
    st.session_state[state.ANNOTATOR] = str(st.session_state.get(_NAME_PROMPT) or "").strip()[:100]
    st.rerun()                  # the whole page: "my decision", the filters and the counts are about this name now


def require_annotator() -> str:
    """The annotator's name; without one, a box asking for it (the decision buttons stay disabled)."""
    name = state.annotator()
    if not name:
        st.text_input("Your name, to record decisions", key=_NAME_PROMPT, on_change=_take_name,
                      placeholder="Type your name and press Enter: it is saved with every decision",
                      icon=":material/person:")
    return name


def _bump() -> None:
    st.session_state[loaders.DECISIONS_VERSION] = st.session_state.get(loaders.DECISIONS_VERSION, 0) + 1


def record_bulk(pair_ids: Sequence[str], decision: str) -> int:
    """Record one decision on many pairs as one action (one transaction, one undo); how many pairs."""
    events = decision_log.record_many(state.ws().decisions, pair_ids, decision, annotator=state.annotator(),
                                      session=state.session_id())
    _bump()
    return len(events)


def undo(pair_id: str | None = None) -> list[decision_log.Event]:
    """Undo this annotator's latest action (one decision or one bulk), or (`pair_id`) their latest decision on
    that pair only; the undone events ([] if none)."""
    events = decision_log.undo(state.ws().decisions, annotator=state.annotator(), session=state.session_id(),
                               pair_id=pair_id)
    _bump()
    return events


# ------------------------------------------------------------------------------------------ presses
#
# Streamlit stops a run (RerunException) at any st.* call once the next rerun is requested, callbacks
# included, and a stopped run's thread may still be finishing while the next run of the same session
# starts. So `take` makes its st.* calls first, then, under the session's lock, records and marks presses as
# taken in plain Python (no st.* call between a write and its mark: a press is recorded exactly once), and only
# then moves the page on (`_settle`); a settle cut short is finished by the next run. The lock is the
# session's own: one page, however it behaves, never holds up another annotator's press.
#
# The list comes from the browser, so a modified page can send anything: each update takes at most
# MAX_PRESSES new presses (the bar holds only the few not yet acknowledged), a seq once per client, none
# further than MAX_PRESSES past the client's last (nor past MAX_SEQ for a client not seen before), and says
# what it refused.

MAX_PRESSES = 50
MAX_SEQ = 1_000_000
_LOCKS = threading.Lock()            # guards only the creation of a session's lock


def _clean(text: str) -> str:
    """`text` as UTF-8 can store it: a lone surrogate (possible in a JavaScript string) becomes "?"."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _valid(press: object) -> dict | None:
    """A press as the page sent it, checked (it comes from the browser): None when malformed."""
    if not isinstance(press, dict):
        return None
    seq, client, pair, action, note = (press.get(k) for k in ("seq", "client", "pair", "action", "note"))
    if not (type(seq) is int and seq > 0 and isinstance(client, str) and 0 < len(client) <= 40
            and client.isascii() and client.isalnum() and isinstance(pair, str) and 0 < len(pair) <= 200
            and action in ACTIONS and isinstance(note, str | None)):
        return None
    return {"seq": seq, "client": client, "pair": _clean(pair), "action": action,
            "note": _clean((note or "").strip()[:_NOTE_MAX])}


def _take_one(press: dict, bar: dict, db: Path, name: str, session: str) -> tuple[int | None, str, str]:
    """Record one press (plain Python: no st.* call); (row to open, flash kind, message). A decision becomes
    `bar["last"]`, the one the "Undo row N" button takes back once the bar has moved on to the next pair."""
    if press["pair"] not in bar["shown"]:
        return None, "warning", "A press for a pair this page was not showing was refused; nothing was recorded."
    row, following = bar["shown"][press["pair"]]
    if not name:
        return row, "warning", f"Row {row}: nothing recorded. Type your name first: it is saved with every decision."
    if press["action"] == UNDO:
        events = decision_log.undo(db, annotator=name, session=session, pair_id=press["pair"])
        if (bar.get("last") or {}).get("pair") == press["pair"]:
            bar["last"] = None
        return row, "info", (f"Row {row}: undid your {events[0].action}." if events
                             else f"Row {row}: you have no decision here to undo.")
    decision_log.record(db, press["pair"], press["action"], annotator=name, note=press["note"], session=session)
    bar["last"] = {"pair": press["pair"], "row": row, "action": press["action"]}
    return (following if following is not None else row), "success", (
        f"Row {row}: {press['action']}" + (f". Next undecided: row {following}." if following is not None
                                           else ". No undecided pair left in this ranking."))


def _bar() -> dict:
    """This session's bar bookkeeping: seen {client: last seq taken} (a client is one page load), shown
    {pair_id: (row, following)} for the pairs its bar was drawn on, after (what `_settle` still has to do),
    last (the latest decision the bar recorded: {pair, row, action}, or None); later also lock (the session's),
    refused (what the last update refused, said once) and said (what the bar says about the last press)."""
    return st.session_state.setdefault(_BAR, {"seen": {}, "shown": {}, "after": None, "last": None})


def _lock(bar: dict) -> threading.Lock:
    with _LOCKS:
        return bar.setdefault("lock", threading.Lock())


def _fresh(presses: list, seen: dict[str, int]) -> tuple[list[dict], list[str]]:
    """The presses to take now, in order (at most MAX_PRESSES), and what was refused, in words."""
    checked = [_valid(p) for p in presses]
    refused = [f"{sum(p is None for p in checked)} malformed press(es)"] if None in checked else []
    fresh, last, far = [], dict(seen), 0
    for p in sorted((p for p in checked if p), key=lambda p: (p["client"], p["seq"])):
        before = last.get(p["client"], 0)
        if p["seq"] <= before:                       # taken already, or a second press with the same seq
            continue
        if p["seq"] > (before + MAX_PRESSES if before else MAX_SEQ):
            far += 1
            continue
        last[p["client"]] = p["seq"]
        fresh.append(p)
    if far:
        refused.append(f"{far} press(es) numbered out of sequence")
    if len(fresh) > MAX_PRESSES:
        refused.append(f"{len(fresh) - MAX_PRESSES} press(es) over the {MAX_PRESSES} one update may carry")
    return fresh, refused


def take(presses: Iterable[object]) -> int:
    """Record every press not taken before (by its page's seq), in order, each on the pair it carries; a
    decision then opens that pair's `following`, an undo stays on its pair. What a modified page may send
    is bounded (MAX_PRESSES, MAX_SEQ) and refused with a message. How many presses were taken."""
    bar, db, name, session = _bar(), state.ws().decisions, state.annotator(), state.session_id()
    with _lock(bar):
        fresh, refused = _fresh(list(presses or ()), bar["seen"])
        for press in fresh[:MAX_PRESSES]:
            goto, kind, message = _take_one(press, bar, db, name, session)
            bar["seen"][press["client"]] = press["seq"]
            taken = (bar["after"] or {}).get("taken", 0) + (kind == "success")
            bar["after"] = {"row": goto, "kind": kind, "message": message, "taken": taken}
        for press in fresh[MAX_PRESSES:]:                # acknowledged, so the page stops sending them
            bar["seen"][press["client"]] = max(bar["seen"].get(press["client"], 0), press["seq"])
        refused, bar["refused"] = (refused if refused != bar.get("refused") else []), refused   # said once
        if refused:
            after = bar["after"] or {"row": None, "message": "", "taken": 0}
            bar["after"] = {**after, "kind": "warning", "message": (after["message"] + " " if after["message"]
                                                                     else "") + "Refused, nothing recorded for them: "
                            + "; ".join(refused) + "."}
    _settle(bar)
    return len(fresh[:MAX_PRESSES])


def _settle(bar: dict) -> None:
    """Open the row the last press asked for, and keep what was recorded for the bar to say (`said`, shown by
    the bar while that row is open: a message that is state, not a one-shot flash, so no rerun can lose it)."""
    after = bar["after"]
    if after is None:
        return
    _bump()
    if after["row"] is not None:
        st.session_state[state.PAIR_ROW] = after["row"]
    row = st.session_state.get(state.PAIR_ROW)
    more = f"{after['taken']} decisions recorded; the last: " if after["taken"] > 1 and after["kind"] == "success" else ""
    bar["said"] = {"kind": after["kind"], "text": more + after["message"], "row": row}
    bar["after"] = None


def _presses() -> list:
    value = st.session_state.get(KEY)
    return list((value or {}).get("presses") or []) if isinstance(value, dict) else []


def take_pending() -> None:
    """Finish what a press left (a settle cut short, or presses no callback saw): call it before choosing the
    pair to show, so the pair drawn is the one the presses opened."""
    _settle(_bar())
    take(_presses())


def _rerun(whole_page: bool) -> None:
    if whole_page:
        st.rerun(scope="app")             # from a callback in a fragment; otherwise what the widget is in reruns


def open_row(row: int, whole_page: bool = False) -> None:
    """A callback (Skip): open `row`; the page reruns if `whole_page`, else what the button is in."""
    state.open_row(row)
    _rerun(whole_page)


def _on_presses(whole_page: bool) -> None:
    take(_presses())
    _rerun(whole_page)


def _undo_last(whole_page: bool) -> None:
    """The "Undo row N" button: undo my latest decision on the pair the bar last decided, and open it again."""
    bar = _bar()
    with _lock(bar):
        last, bar["last"] = bar.get("last"), None
    if last:
        events = undo(last["pair"])
        st.session_state[state.PAIR_ROW] = last["row"]
        bar["said"] = {"kind": "info", "row": last["row"], "text": f"Row {last['row']}: undid your {events[0].action}."
                       if events else f"Row {last['row']}: you have no decision there to undo."}
    _rerun(whole_page)


# --------------------------------------------------------------------------------------- the caption

def _caption(pair_id: str, name: str) -> str:
    view = loaders.team()
    run = state.active_run()
    blind = run is not None and state.assignment(run)[0].blind     # an unreadable assignment reads as blind
    mine = view.mine(name).get(pair_id) if name else None
    others = {a: d for a, d in view.visible_to(pair_id, name, blind).items() if a != name}
    parts = []
    if mine is not None:
        parts.append(f"Your decision: **{mine.decision}** (at {mine.at[:19].replace('T', ' ')})"
                     + (f" — note: {escape_md(mine.note)}" if mine.note else ""))
    else:
        parts.append("You have not decided this pair.")
    if others:
        parts.append(" · ".join(f"{escape_md(a)}: {d.decision}" for a, d in sorted(others.items())))
    elif blind and mine is None:         # on every pair, decided by others or not: where they were stays unsaid
        parts.append("Others' decisions are hidden until you decide (blind review).")
    settled = view.adjudicated.get(pair_id)
    if settled is not None:
        parts.append(f"Settled: **{settled.decision}** by {escape_md(settled.annotator)}")
    return "  \n".join(parts)


def show(pair_id: str, row: int, following: int | None, heading: str | None = None,
         whole_page: bool = False) -> None:
    """The pair's `heading` (drawn by the bar itself, so the heading on screen and the pair a press goes to
    change together), Keep / Drop / Flag (each then opens `following`), Undo (of my decision on this pair) and
    the note: the same controls, labels and keys (K, D, F, U; never while typing in a text box) on every page
    that shows a pair. Asks for a name first; the buttons stay disabled without one. A press reruns the fragment
    the bar is in (or the page); `whole_page`: the page, from a fragment. Call `take_pending()` before choosing
    the pair."""
    bar = _bar()
    name = require_annotator()
    with _lock(bar):
        shown = bar["shown"]
        shown.pop(pair_id, None)
        shown[pair_id] = (int(row), None if following is None else int(following))
        while len(shown) > _SHOWN_MAX:
            shown.pop(next(iter(shown)))
    buttons = [{"action": a, "label": label, "icon": icon, "kind": kind, "shortcut": SHORTCUTS[a],
                "help": f"{help_text} ({SHORTCUTS[a].upper()})"} for a, label, icon, kind, help_text in _BUTTONS]
    said = bar.get("said")
    bar["drawn"] = bar.get("drawn", 0) + 1            # new data each run: the page knows the bar was drawn again
    _component(key=KEY, data={"pair": pair_id, "heading": heading, "drawn": bar["drawn"], "enabled": bool(name),
                              "buttons": buttons, "acked": dict(bar["seen"]),
                              "said": {"kind": said["kind"], "text": said["text"]}
                              if said and said["row"] == row else None,
                              "note_placeholder": "Note saved with the decision (optional)"},
               default={"presses": []}, on_presses_change=lambda: _on_presses(whole_page))
    st.caption(_caption(pair_id, name))
    last = bar.get("last")
    if last and name and last["pair"] != pair_id:
        st.button(f"Undo row {last['row']} ({last['action']})", key="decision_bar_undo_last", icon=":material/undo:",
                  on_click=_undo_last, args=(whole_page,),
                  help="Undo the decision you just made and open that pair again")
