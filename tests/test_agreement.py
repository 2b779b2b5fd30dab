"""A team's decisions: each annotator's own, adjudication, undo on one pair, team status, kappa and alpha
against hand computations, each team rule on a table with known conflicts, and the review plan."""
from __future__ import annotations

import json
import math
import sqlite3

import pandas as pd
import pytest

from ches.review import agreement, assignment, decisions, team_rules
from ches.review.team_rules import TeamView


@pytest.fixture
def db(tmp_path):
    return tmp_path / "decisions.sqlite"


def _team(db, table: dict[str, dict[str, str]]) -> TeamView:
    """Record {annotator: {pair_id: decision}} and read it back."""
    for ann, decided in table.items():
        for pid, d in decided.items():
            decisions.record(db, pid, d, annotator=ann)
    return TeamView.read(db)


# ---------------------------------------------------------------------------- each annotator's own

def test_the_view_read_once_is_what_current_and_current_by_annotator_read(db):
    """TeamView.read reads the log once; `latest` and `by_annotator` must be what the two reads give, on a log
    with undos (single and bulk), clears, re-decisions and three annotators interleaved."""
    import random

    rng = random.Random(7)
    pairs = [f"p{i}" for i in range(12)]
    for step in range(200):
        ann = rng.choice(["ann-a", "ann-b", "ann-c"])
        roll = rng.random()
        if roll < 0.15:
            decisions.undo(db, annotator=ann)
        elif roll < 0.25:
            decisions.record_many(db, rng.sample(pairs, 3), rng.choice(["keep", "drop"]), annotator=ann)
        else:
            decisions.record(db, rng.choice(pairs), rng.choice(["keep", "drop", "flag", "clear"]), annotator=ann)
    view = TeamView.read(db)
    assert view.latest == decisions.current(db) and list(view.latest) == list(decisions.current(db))
    assert view.by_annotator == decisions.current_by_annotator(db)
    assert 0 < len(view.latest) < len(pairs) * 3 and len(view.by_annotator) == 3


def test_two_annotators_on_one_pair_keep_both_decisions(db):
    decisions.record(db, "p", "keep", annotator="ann-a")
    decisions.record(db, "p", "drop", annotator="ann-b")
    view = TeamView.read(db)
    assert {a: d.decision for a, d in view.on_pair("p").items()} == {"ann-a": "keep", "ann-b": "drop"}
    assert view.mine("ann-a")["p"].decision == "keep"          # ann-b's drop did not replace it
    assert team_rules.team_status(pd.Series(["p", "q"]), view).tolist() == ["conflict", "undecided"]
    assert decisions.current(db)["p"].decision == "drop"        # "latest of anyone" is still there


def test_undo_on_a_pair_undoes_my_decision_there_only(db):
    decisions.record(db, "p4", "keep", annotator="ann-a")
    decisions.record_many(db, ["p47", "p48"], "drop", annotator="ann-a")
    decisions.record(db, "p4", "drop", annotator="ann-b")
    undone = decisions.undo(db, annotator="ann-a", pair_id="p4")
    assert [(e.pair_id, e.action) for e in undone] == [("p4", "keep")]
    mine = decisions.current(db, annotator="ann-a")
    assert set(mine) == {"p47", "p48"}                           # the bulk on p47/p48 untouched
    assert decisions.current(db, annotator="ann-b")["p4"].decision == "drop"
    assert decisions.undo(db, annotator="ann-a", pair_id="p4") == []       # nothing of mine left there
    one = decisions.undo(db, annotator="ann-a", pair_id="p48")              # one pair of a bulk action
    assert [e.pair_id for e in one] == ["p48"] and set(decisions.current(db, annotator="ann-a")) == {"p47"}


def test_an_adjudication_settles_a_conflict_and_is_recorded_as_such(db, tmp_path):
    view = _team(db, {"ann-a": {"p": "keep"}, "ann-b": {"p": "drop"}})
    assert team_rules.team_status(pd.Series(["p"]), view).tolist() == ["conflict"]
    decisions.record(db, "p", "drop", annotator="boss", adjudicate=True, note="off-topic")
    view = TeamView.read(db)
    assert "boss" not in view.by_annotator                     # not an annotation of boss's
    assert view.adjudicated["p"].decision == "drop" and view.adjudicated["p"].adjudicated
    assert team_rules.team_status(pd.Series(["p"]), view).tolist() == ["settled"]
    row = agreement.conflicts(view).iloc[0]
    assert (row.status, row.settled, row.by, row.decisions) == ("settled", "drop", "boss", "ann-a: keep; ann-b: drop")
    out = tmp_path / "log.jsonl"                                 # the flag travels through export / import
    decisions.export_jsonl(db, out)
    assert [json.loads(line)["adjudicated"] for line in out.read_text().splitlines()] == [False, False, True]
    other = tmp_path / "other.sqlite"
    assert decisions.import_jsonl(other, out).imported == 3
    assert decisions.adjudications(other)["p"].annotator == "boss"
    decisions.undo(db, annotator="boss", pair_id="p")            # undone: the conflict is open again
    assert team_rules.team_status(pd.Series(["p"]), TeamView.read(db)).tolist() == ["conflict"]


def test_blind_hides_others_until_i_decided(db):
    view = _team(db, {"ann-a": {"p": "keep"}, "ann-b": {"q": "drop"}})
    assert view.visible_to("p", "ann-b", blind=True) == {}
    assert list(view.visible_to("p", "ann-b", blind=False)) == ["ann-a"]
    assert list(view.visible_to("q", "ann-b", blind=True)) == []          # decided, nobody else there
    decisions.record(db, "p", "drop", annotator="ann-b")
    assert list(TeamView.read(db).visible_to("p", "ann-b", blind=True)) == ["ann-a"]


def test_a_v3_log_gains_the_adjudicated_column_and_keeps_every_event(db):
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, seq INTEGER NOT NULL, pair_id TEXT NOT NULL,
            annotator TEXT NOT NULL, action TEXT NOT NULL, note TEXT NOT NULL DEFAULT '', undoes INTEGER NULL,
            created_at TEXT NOT NULL, session TEXT NULL, batch TEXT NULL, imported_at TEXT NULL);
        INSERT INTO events VALUES (1, 1, 'p', 'ann-a', 'keep', '', NULL, '2026-01-01T00:00:00.000000+00:00',
                                   NULL, NULL, NULL);
        PRAGMA user_version = 3;""")
    conn.close()
    assert decisions.current(db)["p"].decision == "keep"
    assert decisions.adjudications(db) == {}
    assert decisions.history(db)[0].adjudicated is False
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone() == (decisions.SCHEMA_VERSION,)


# ------------------------------------------------------------------------------- agreement statistics

# Three annotators on six pairs (None = not decided):
#        p1    p2    p3    p4    p5    p6
# a      keep  keep  drop  drop  keep  flag
# b      keep  drop  drop  drop  keep  -
# c      -     keep  drop  keep  -     flag
TABLE = {"a": {"p1": "keep", "p2": "keep", "p3": "drop", "p4": "drop", "p5": "keep", "p6": "flag"},
         "b": {"p1": "keep", "p2": "drop", "p3": "drop", "p4": "drop", "p5": "keep"},
         "c": {"p2": "keep", "p3": "drop", "p4": "keep", "p6": "flag"}}


def test_team_status_per_pair(db):
    view = _team(db, TABLE)
    ids = pd.Series(["p1", "p2", "p3", "p4", "p5", "p6", "p7"])
    decisions.record(db, "p7", "keep", annotator="c")
    view = TeamView.read(db)
    assert team_rules.team_status(ids, view).tolist() == ["agreed", "conflict", "agreed", "conflict", "agreed",
                                                           "agreed", "single"]


def test_cohen_kappa_per_annotator_pair_by_hand(db):
    view = _team(db, TABLE)
    k = agreement.kappa_table(view).set_index(["a", "b"])
    # a vs b on p1..p5: a = K K D D K, b = K D D D K. Observed agreement 4/5.
    # Marginals: a keep 3/5, drop 2/5; b keep 2/5, drop 3/5. Expected 3/5*2/5 + 2/5*3/5 = 12/25.
    # kappa = (4/5 - 12/25) / (1 - 12/25) = (8/25) / (13/25) = 8/13.
    assert k.loc[("a", "b"), "shared"] == 5 and k.loc[("a", "b"), "kappa"] == pytest.approx(8 / 13)
    # a vs c on p2, p3, p4, p6: a = K D D F, c = K D K F. Observed 3/4.
    # a: K 1/4, D 2/4, F 1/4; c: K 2/4, D 1/4, F 1/4. Expected 2/16 + 2/16 + 1/16 = 5/16.
    # kappa = (3/4 - 5/16) / (1 - 5/16) = (7/16) / (11/16) = 7/11.
    assert k.loc[("a", "c"), "kappa"] == pytest.approx(7 / 11)
    # b vs c on p2, p3, p4: b = D D D, c = K D K. Observed 1/3; b: D 1; c: K 2/3, D 1/3. Expected 1/3.
    # kappa = (1/3 - 1/3) / (1 - 1/3) = 0.
    assert k.loc[("b", "c"), "kappa"] == pytest.approx(0.0)


def test_krippendorff_alpha_by_hand(db):
    view = _team(db, TABLE)
    # Pairable values per unit (every unit has >= 2 coders): p1 KK, p2 KDK, p3 DDD, p4 DDK, p5 KK, p6 FF.
    # Coincidence totals n_c: K = 2+2+0+1+2+0 = 7, D = 0+1+3+2+0+0 = 6, F = 2; n = 15.
    # Observed disagreement: per unit sum over ordered c != k of n_uc n_uk / (m_u - 1), over n:
    #   p2: 2*1*2/(3-1) = 2; p4: 2*1*2/2 = 2; the rest 0. D_o = 4 / 15.
    # Expected: sum over c != k of n_c n_k / (n (n - 1)) = 2 (7*6 + 7*2 + 6*2) / (15*14) = 136 / 210.
    # alpha = 1 - D_o / D_e = 1 - (4/15) / (136/210) = 1 - 56/136 = 80/136 = 10/17.
    assert agreement.alpha(view) == pytest.approx(10 / 17)
    assert math.isnan(agreement.alpha(view, ["p1"]))              # one value only: undefined


def test_conflicts_list_the_disagreements(db):
    view = _team(db, TABLE)
    table = agreement.conflicts(view)
    assert table["pair_id"].tolist() == ["p2", "p4"]
    assert table["decisions"].tolist() == ["a: keep; b: drop; c: keep", "a: drop; b: drop; c: keep"]
    assert set(table["status"]) == {"conflict"}


# ---------------------------------------------------------------------------------------- team rules

def test_each_team_rule_on_a_table_with_known_conflicts(db):
    view = _team(db, TABLE)                                     # recorded a's, then b's, then c's decisions
    decisions.record(db, "p8", "flag", annotator="a")
    decisions.record(db, "p8", "drop", annotator="b")
    decisions.record(db, "p4", "keep", annotator="boss", adjudicate=True)
    view = TeamView.read(db)
    assert team_rules.resolve(view, "latest") == {
        "p1": "keep", "p5": "keep",                             # b's, the last to decide them
        "p2": "keep", "p3": "drop", "p6": "flag",               # c's
        "p8": "drop", "p4": "keep"}                             # b's; the adjudication
    assert team_rules.resolve(view, "majority") == {"p1": "keep", "p2": "keep", "p3": "drop", "p5": "keep",
                                                    "p6": "flag", "p4": "keep"}          # p8: 1-1, no majority
    assert team_rules.resolve(view, "unanimous_keep") == {"p1": "keep", "p2": "drop", "p3": "drop", "p5": "keep",
                                                          "p6": "drop", "p8": "drop", "p4": "keep"}
    assert team_rules.resolve(view, "any_drop") == {"p1": "keep", "p2": "drop", "p3": "drop", "p5": "keep",
                                                    "p8": "drop", "p4": "keep"}          # p6: flags only
    assert team_rules.resolve(view, "adjudicated") == {"p1": "keep", "p3": "drop", "p5": "keep", "p6": "flag",
                                                       "p4": "keep"}
    with pytest.raises(ValueError, match="unknown team rule"):
        team_rules.resolve(view, "loudest")


def test_summary_for_the_manifest(db):
    _team(db, TABLE)
    decisions.record(db, "p2", "keep", annotator="boss", adjudicate=True)
    s = agreement.summary(TeamView.read(db))
    assert s["annotators"]["a"] == {"keep": 3, "drop": 2, "flag": 1}
    assert (s["conflicts"], s["settled"], s["unsettled"]) == (2, 1, ["p4"])
    assert s["settlements"] == [{"pair_id": "p2", "decisions": "a: keep; b: drop; c: keep", "decision": "keep",
                                 "by": "boss"}]
    assert s["alpha"] == pytest.approx(10 / 17) and len(s["kappa"]) == 3
    json.dumps(s)                                               # manifest-ready


# ---------------------------------------------------------------------------------------- the plan

def test_assignment_gives_each_pair_to_k_people_and_balances_queues():
    ids = [f"p{i}" for i in range(10)]
    queues = assignment.assign(ids, ["a", "b", "c"], n=7, overlap=2)
    seen = {}
    for ann, q in queues.items():
        for pid in q:
            seen.setdefault(pid, []).append(ann)
    assert set(seen) == set(ids[:7])                             # the riskiest 7, nothing else
    assert all(len(set(v)) == 2 for v in seen.values())          # each by two different people
    sizes = sorted(len(q) for q in queues.values())
    assert sum(sizes) == 14 and sizes[-1] - sizes[0] <= 1
    for q in queues.values():                                    # each queue in rank order
        assert list(q) == sorted(q, key=ids.index)
    for bad, msg in [(dict(annotators=["a"], overlap=2), "overlap must be"),
                     (dict(annotators=["a", "a"], overlap=1), "named twice"),
                     (dict(annotators=["a", " "], overlap=1), "no empty names")]:
        with pytest.raises(assignment.AssignmentError, match=msg):
            assignment.assign(ids, n=3, **bad)


def test_plan_round_trips_and_reports_progress(tmp_path, db):
    scores = pd.DataFrame({"row": [0, 1, 2, 3], "pair_id": ["w", "x", "y", "z"],
                           "ln_ches": [0.1, 0.9, float("nan"), 0.5]})
    ranked = assignment.riskiest(scores, "ln_ches")
    assert ranked == ["x", "z", "w", "y"]
    p = assignment.Assignment(blind=True, metric="ln_ches", n=3, overlap=1,
                        queues=assignment.assign(ranked, ["ann-a", "ann-b"], 3, 1))
    assignment.write_assignment(tmp_path, p)
    back = assignment.read_assignment(tmp_path)
    assert back == p and back.queue("ann-a") == ("x", "w") and back.queue("nobody") == ()
    assert assignment.read_assignment(tmp_path / "elsewhere") == assignment.Assignment()
    decisions.record(db, "x", "keep", annotator="ann-a")
    prog = assignment.progress(back, TeamView.read(db).by_annotator).set_index("annotator")
    assert prog.loc["ann-a"].tolist() == [2, 1, 1] and prog.loc["ann-b"].tolist() == [1, 0, 1]
    (tmp_path / assignment.ASSIGNMENT_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(assignment.AssignmentError, match="review.json cannot be read"):
        assignment.read_assignment(tmp_path)
