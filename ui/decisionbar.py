"""Recording decisions (one pair, many pairs as one action, undo) and the decision bar every pair view shows.

Nothing is recorded without the annotator's name (`require_annotator` asks for it); every write bumps
`loaders.DECISIONS_VERSION`, so the next read of `loaders.decisions()` sees it.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from ches.review import decisions as decision_log
from ui import loaders, state
from ui.render import escape_md

NOTE = "note"                  # the decision bar's note box
_NAME_PROMPT = "_name_prompt"
_BUTTONS = ((decision_log.KEEP, "Keep", ":material/check:", "primary", "Keep this pair and open the next undecided one"),
            (decision_log.DROP, "Drop", ":material/delete:", "secondary", "Drop this pair from the curated set and "
             "open the next undecided one"),
            (decision_log.FLAG, "Flag", ":material/flag:", "secondary", "Flag for a second look and open the next "
             "undecided one"))


def _take_name() -> None:
    st.session_state[state.ANNOTATOR] = str(st.session_state.get(_NAME_PROMPT) or "").strip()[:100]


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


def record(pair_id: str, decision: str, note: str = "") -> int:
    """Record this annotator's decision (committed before returning); the event id."""
    event = decision_log.record(state.ws().decisions, pair_id, decision, annotator=state.annotator(), note=note,
                                session=state.session_id())
    _bump()
    return event


def record_bulk(pair_ids: Sequence[str], decision: str) -> int:
    """Record one decision on many pairs as one action (one transaction, one undo); how many pairs."""
    events = decision_log.record_many(state.ws().decisions, pair_ids, decision, annotator=state.annotator(),
                                      session=state.session_id())
    _bump()
    return len(events)


def undo() -> list[decision_log.Event]:
    """Undo this annotator's latest action (one decision or one bulk); the undone events ([] if none)."""
    events = decision_log.undo(state.ws().decisions, annotator=state.annotator(), session=state.session_id())
    _bump()
    return events


def _decide(choice: str, pair_id: str, row: int, following: int | None) -> None:
    record(pair_id, choice, str(st.session_state.get(NOTE) or ""))
    st.session_state[NOTE] = ""
    st.session_state[state.PAIR_ROW] = following if following is not None else row
    state.flash("success", f"Row {row}: {choice}" + (f". Next undecided: row {following}." if following is not None
                                                     else ". No undecided pair left in this ranking."))


def _undo() -> None:
    events = undo()
    if not events:
        state.flash("info", "Nothing to undo.")
        return
    run = state.active_run()
    match = (loaders.scores(run).loc[lambda t: t["pair_id"] == events[0].pair_id, "row"] if run
             else pd.Series(dtype=int))
    if len(match):
        st.session_state[state.PAIR_ROW] = int(match.iloc[0])
    where = f"row {int(match.iloc[0])}" if len(match) else "a pair outside this run"
    more = f" and on {len(events) - 1:,} more pairs (one bulk action)" if len(events) > 1 else ""
    state.flash("info", f"Undid {events[0].action} on {where}{more}.")


def button_key(choice: str, pair_id: str) -> str:
    """The widget key of one pair's Keep / Drop / Flag button: the pair id is part of it, so a press is the
    event of the button that was on the page, with that button's pair, however late the server handles it."""
    return f"{choice}_{pair_id}"


def show(pair_id: str, row: int, following: int | None) -> None:
    """Keep / Drop / Flag (each then opens `following`), Undo and the note: the same controls, labels and
    keyboard shortcuts (K, D, F, U) on every page that shows a pair. Asks for a name first.

    A decision button's key holds the pair id (`button_key`). With one key for every pair, Streamlit ran a
    press's callback with the arguments of the latest run: a K pressed while the next pair was being drawn
    was recorded on the pair the server had already moved past (or the other way round)."""
    name = require_annotator()
    cols = st.columns([1, 1, 1, 1, 4])
    for col, (choice, label, icon, kind, help_text) in zip(cols, _BUTTONS):
        col.button(label, key=button_key(choice, pair_id), on_click=_decide, args=(choice, pair_id, row, following),
                   icon=icon, type=kind, shortcut=choice[0], width="stretch", disabled=not name,
                   help=f"{help_text} ({choice[0].upper()})")
    cols[3].button("Undo", key="undo", on_click=_undo, shortcut="u", icon=":material/undo:", width="stretch",
                   disabled=not name, help="Undo your last decision, or your last bulk action on the Map (U)")
    cols[4].text_input("Note (optional)", key=NOTE, label_visibility="collapsed",
                       placeholder="Note saved with the decision (optional)")
    decision = loaders.decisions().get(pair_id)
    if decision is not None:
        st.caption(f"Current decision: **{decision.decision}** by {escape_md(decision.annotator)} at "
                   f"{decision.at[:19].replace('T', ' ')}" + (f" — note: {escape_md(decision.note)}" if decision.note else ""))
    else:
        st.caption("No decision yet.")
