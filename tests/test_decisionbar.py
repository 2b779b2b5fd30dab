"""The decision bar (ui/decisionbar.py) in AppTest: presses taken once each, on the pair they carry, refused
without a name; Undo on my decision on this pair only; the caption with my decision and the others' (hidden
in a blind review until I decide). The fast-key presses in a real browser: tests/test_browser.py."""
from __future__ import annotations

import json
import shutil

from ches import workspace as wsp
from ches.engine import store
from ches.review import decisions
from ches.review.assignment import Assignment, write_assignment
from conftest import heading, ok, said
from test_app import app, bar, open_page, plain, ranked_rows
from ui import decisionbar


def _caption(at) -> str:
    return " ".join(plain(c.value) for c in at.caption)


def _send(at, *presses: dict):
    """Presses as the page sends them: its whole list so far, as the component's state."""
    at.session_state[decisionbar.KEY] = {"presses": list(presses)}
    return at.run()


def test_each_press_is_taken_once_on_its_own_pair_even_when_sent_again(workspace_env, flagged_run):
    db = wsp.workspace(workspace_env.workspace).decisions
    ranked = ranked_rows(flagged_run)
    pid = store.read_scores(flagged_run).set_index("row")["pair_id"]
    at = open_page(app(flagged_run, annotator="ann-a"), "pages/browse.py")
    first = {"seq": 1, "client": "c1", "pair": pid[ranked[0]], "action": "drop", "note": "too short"}
    _send(at, first)
    assert heading(at).startswith(f"Row {ranked[1]} ·")
    # the next press was made while the first pair was still on screen: it carries that pair, and the
    # list still holds the first press (not acknowledged yet): the first is not recorded twice
    again = {"seq": 2, "client": "c1", "pair": pid[ranked[0]], "action": "keep", "note": ""}
    _send(at, first, again)
    log = [(e.pair_id, e.action, e.note) for e in decisions.history(db)]
    assert log == [(pid[ranked[0]], "drop", "too short"), (pid[ranked[0]], "keep", "")]
    data = json.loads(at.get("bidi_component")[0].proto.json)
    assert data["acked"] == {"c1": 2} and data["pair"] == pid[ranked[1]]
    # a press for a pair this session never showed, and a malformed one, are refused and say so
    _send(at, first, again, {"seq": 3, "client": "c1", "pair": "not-a-pair", "action": "keep", "note": ""},
          {"seq": "4", "client": "c1", "pair": pid[ranked[1]], "action": "keep"})
    assert "was not showing was refused" in said(at)
    assert len(decisions.history(db)) == 2


def test_without_a_name_a_press_is_refused_visibly(workspace_env, flagged_run):
    db = wsp.workspace(workspace_env.workspace).decisions
    ranked = ranked_rows(flagged_run)
    pid = store.read_scores(flagged_run).set_index("row")["pair_id"]
    at = open_page(app(flagged_run), "pages/browse.py")
    assert bar(at, "keep").disabled
    _send(at, {"seq": 1, "client": "c1", "pair": pid[ranked[0]], "action": "keep", "note": ""})
    assert "Type your name first" in said(at)
    assert decisions.history(db) == []


def test_caption_and_undo_are_about_this_pair_and_blind_hides_the_others(workspace_env, flagged_run):
    run = workspace_env.workspace / "runs" / flagged_run.name
    shutil.copytree(flagged_run, run)
    db = wsp.workspace(workspace_env.workspace).decisions
    ranked = ranked_rows(run)
    pid = store.read_scores(run).set_index("row")["pair_id"]
    decisions.record(db, pid[ranked[0]], "keep", annotator="ann-a")
    decisions.record(db, pid[ranked[5]], "flag", annotator="ann-b")           # ann-b's, elsewhere

    at = open_page(app(run, annotator="ann-b"), "pages/browse.py")
    at.session_state["pair_row"] = ranked[0]
    at.run()
    assert "You have not decided this pair." in _caption(at) and "ann-a: keep" in _caption(at)

    write_assignment(run, Assignment(blind=True))
    at = open_page(app(run, annotator="ann-b"), "pages/browse.py")
    at.session_state["pair_row"] = ranked[0]
    at.run()
    assert "ann-a" not in _caption(at) and "hidden until you decide" in _caption(at)
    bar(at, "drop").click(note="off topic").run()
    at.session_state["pair_row"] = ranked[0]
    at.run()
    assert "Your decision: **drop**" in _caption(at) and "off topic" in _caption(at)
    assert "ann-a: keep" in _caption(at)                                      # decided: the others show

    bar(at, "undo").click().run()                                             # my drop here, nothing else
    mine = decisions.current_by_annotator(db)
    assert pid[ranked[0]] not in mine["ann-b"] and mine["ann-b"][pid[ranked[5]]].decision == "flag"
    assert mine["ann-a"][pid[ranked[0]]].decision == "keep"
    assert heading(at).startswith(f"Row {ranked[0]} ·")
    assert f"Row {ranked[0]}: undid your drop" in said(at)


def test_undo_row_n_takes_back_the_decision_just_made_and_reopens_its_pair(workspace_env, flagged_run):
    db = wsp.workspace(workspace_env.workspace).decisions
    ranked = ranked_rows(flagged_run)
    pid = store.read_scores(flagged_run).set_index("row")["pair_id"]
    decisions.record(db, pid[ranked[0]], "keep", annotator="ann-b")                     # a teammate's: stays
    at = open_page(app(flagged_run, annotator="ann-a"), "pages/browse.py")
    assert not [b for b in at.button if b.key == "decision_bar_undo_last"]              # nothing decided yet
    bar(at, "drop").click("off topic").run()
    assert heading(at).startswith(f"Row {ranked[1]} ·")
    assert at.button(key="decision_bar_undo_last").label == f"Undo row {ranked[0]} (drop)"
    at.button(key="decision_bar_undo_last").click().run()
    assert heading(at).startswith(f"Row {ranked[0]} ·")                      # back on that pair
    assert f"Row {ranked[0]}: undid your drop" in said(at)
    assert pid[ranked[0]] not in decisions.current(db, annotator="ann-a")
    assert decisions.current(db, annotator="ann-b")[pid[ranked[0]]].decision == "keep"
    assert not [b for b in at.button if b.key == "decision_bar_undo_last"]              # nothing left to take back
    # undoing on the pair itself (U) also clears the button: it never offers a decision that is gone
    bar(at, "keep").click().run()
    at.switch_page("pages/browse.py")
    at.session_state["pair_row"] = ranked[0]
    bar(ok(at.run()), "undo").click().run()
    assert heading(at).startswith(f"Row {ranked[0]} ·")
    at.button(key="skip").click().run()                                                 # on to another pair
    assert not heading(at).startswith(f"Row {ranked[0]} ·")
    assert not [b for b in at.button if b.key == "decision_bar_undo_last"]


# ------------------------------------------------------------------ what a modified page may send

def _press(seq, pair, action="keep", note="", client="c1"):
    return {"seq": seq, "client": client, "pair": pair, "action": action, "note": note}


def test_the_same_press_twice_in_one_list_or_two_presses_sharing_a_seq_are_recorded_once(workspace_env, flagged_run):
    db = wsp.workspace(workspace_env.workspace).decisions
    ranked = ranked_rows(flagged_run)
    pid = store.read_scores(flagged_run).set_index("row")["pair_id"]
    at = open_page(app(flagged_run, annotator="ann-a"), "pages/browse.py")
    first = _press(1, pid[ranked[0]], "drop")
    _send(at, first, first, _press(1, pid[ranked[0]], "flag"))
    assert [(e.pair_id, e.action) for e in decisions.history(db)] == [(pid[ranked[0]], "drop")]


def test_malformed_presses_are_refused_with_a_message(workspace_env, flagged_run):
    db = wsp.workspace(workspace_env.workspace).decisions
    at = open_page(app(flagged_run, annotator="ann-a"), "pages/browse.py")
    _send(at, "keep", {"seq": "2", "client": "c1", "pair": "p", "action": "keep"},
          {"seq": 3, "client": "c 1<script>", "pair": "p", "action": "keep"})
    assert "3 malformed press(es)" in said(at) and "nothing recorded" in said(at)
    assert decisions.history(db) == []


def test_a_press_numbered_far_ahead_is_refused_and_later_real_presses_still_land(workspace_env, flagged_run):
    db = wsp.workspace(workspace_env.workspace).decisions
    ranked = ranked_rows(flagged_run)
    pid = store.read_scores(flagged_run).set_index("row")["pair_id"]
    at = open_page(app(flagged_run, annotator="ann-a"), "pages/browse.py")
    _send(at, _press(10**18, pid[ranked[0]]))
    assert "out of sequence" in said(at) and decisions.history(db) == []
    _send(at, _press(10**18, pid[ranked[0]]), _press(1, pid[ranked[0]], "drop"))
    _send(at, _press(10**18, pid[ranked[0]]), _press(2, pid[ranked[1]], "keep"))
    assert [(e.pair_id, e.action) for e in decisions.history(db)] == [(pid[ranked[0]], "drop"),
                                                                      (pid[ranked[1]], "keep")]


def test_a_note_with_a_lone_surrogate_is_stored_and_the_session_goes_on(workspace_env, flagged_run):
    db = wsp.workspace(workspace_env.workspace).decisions
    ranked = ranked_rows(flagged_run)
    pid = store.read_scores(flagged_run).set_index("row")["pair_id"]
    at = open_page(app(flagged_run, annotator="ann-a"), "pages/browse.py")
    ok(_send(at, _press(1, pid[ranked[0]], note="bad \ud800 half")))
    ok(_send(at, _press(1, pid[ranked[0]], note="bad \ud800 half"), _press(2, pid[ranked[1]], "drop")))
    assert [(e.action, e.note) for e in decisions.history(db)] == [("keep", "bad ? half"), ("drop", "")]


def test_one_update_takes_at_most_max_presses_and_refuses_the_rest_visibly(workspace_env, flagged_run):
    db = wsp.workspace(workspace_env.workspace).decisions
    ranked = ranked_rows(flagged_run)
    pid = store.read_scores(flagged_run).set_index("row")["pair_id"]
    at = open_page(app(flagged_run, annotator="ann-a"), "pages/browse.py")
    flood = [_press(i + 1, pid[ranked[0]], "flag") for i in range(1500)]
    _send(at, *flood)
    assert len(decisions.history(db)) == decisionbar.MAX_PRESSES
    assert f"1450 press(es) over the {decisionbar.MAX_PRESSES} one update may carry" in said(at)
    data = json.loads(at.get("bidi_component")[0].proto.json)
    assert data["acked"] == {"c1": 1500}                 # acknowledged: the page stops sending them
