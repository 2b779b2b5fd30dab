"""A team in the app: Browse shows my decision and the team status (and filters by them), "next undecided"
means undecided by me, blind review hides the others, the Team page assigns queues that drive Review, shows
kappa and alpha, and settles conflicts as adjudications. Decisions are written straight into the workspace's
log, as two annotators' sessions would have."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from ches.engine.records import load_records
from ches.engine.store import read_scores
from ches.review import assignment, decisions
from ches.review.team_rules import TeamView
from ches.review.browse import HIDDEN, filter_pairs, in_queue, next_undecided, team_column
from ches.review.charts import kappa_heatmap
from conftest import ROOT, TEAM, heading, make_fake_run, metric, my_counts, ok
from ui.render import escape_md

TIMEOUT = 120


@pytest.fixture
def run(workspace_env, monkeypatch):
    """A 12-pair fake run in the workspace (its own folder: tests write its review.json)."""
    monkeypatch.chdir(ROOT)
    records = [{"prompt": f"question {i}", "chosen": f"answer {i}", "rejected": f"other {i}"} for i in range(12)]
    return make_fake_run(workspace_env.workspace / "runs" / "0123456789abcdef",
                         load_records(records, source="team.jsonl"), seed=3)


def ranked(run) -> pd.DataFrame:
    """The run's rows riskiest first (LN-CHES descending), read with pandas here, not through the app."""
    return read_scores(run).sort_values("ln_ches", ascending=False).reset_index(drop=True)


def db_of(workspace_env):
    return workspace_env.workspace / "decisions.sqlite"


def write(db, table: dict[str, dict[str, str]]) -> None:
    """{annotator: {pair_id: decision}} into the log, in that order."""
    for ann, decided in table.items():
        for pid, d in decided.items():
            decisions.record(db, pid, d, annotator=ann)


def app(run, page: str, annotator: str | None = None, **query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update(run=run.name, **({"annotator": annotator} if annotator else {}), **query)
    at.run()
    return ok(at.switch_page(page).run())


def shown(at: AppTest) -> pd.DataFrame:
    """Browse's table, by row."""
    return at.dataframe[0].value.set_index("row")


def row_of(at: AppTest) -> int:
    return int(heading(at).split(" ·")[0].removeprefix("Row "))


# -------------------------------------------------------------------------------------- Browse

def test_browse_shows_my_decision_and_the_team_status_and_filters_by_them(workspace_env, run):
    r = ranked(run)
    pid, rows = r["pair_id"].tolist(), r["row"].tolist()
    write(db_of(workspace_env), {
        "ann-a": {pid[0]: "keep", pid[1]: "keep", pid[2]: "drop"},
        "ann-b": {pid[0]: "drop", pid[1]: "keep", pid[3]: "flag"},       # ann-b's drop on pid[0] is the latest
    })
    at = app(run, "pages/browse.py", "ann-a")
    table = shown(at)
    assert table.loc[rows[:4], "decision"].tolist() == ["keep", "keep", "drop", "undecided"]   # mine, not the latest
    assert table.loc[rows[:5], "team"].tolist() == ["conflict", "agreed", "single", "single", "undecided"]
    assert metric(at, "Decided by me") == "3"
    assert my_counts(at) == "Keep **2** · Drop **1** · Flag **0**"                                 # sidebar: mine
    assert any(c.value.endswith("\nTeam: 1 agreed · 1 conflict · 0 settled · 2 by one person") for c in at.sidebar.caption)

    at.multiselect(key="browse_status").set_value(["undecided"]).run()
    assert set(shown(at).index) == set(rows) - set(rows[:3])          # ann-b's flag on rows[3] is not mine
    at.multiselect(key="browse_status").set_value([]).run()
    at.multiselect(key="browse_team").set_value(["conflict", "single"]).run()
    assert set(shown(at).index) == {rows[0], rows[2], rows[3]}
    assert metric(at, "Shown by filters") == "3"

    # ann-b sees their own decisions in the same table
    b = shown(app(run, "pages/browse.py", "ann-b"))
    assert b.loc[rows[:4], "decision"].tolist() == ["drop", "keep", "undecided", "flag"]


def test_without_a_name_my_decision_is_undecided_everywhere_and_the_page_says_so(workspace_env, run):
    r = ranked(run)
    write(db_of(workspace_env), {"ann-a": {r["pair_id"][0]: "keep"}})
    at = app(run, "pages/browse.py")
    assert (shown(at)["decision"] == "undecided").all()
    assert shown(at).loc[r["row"][0], "team"] == "single"
    assert any("until then *My decision* is undecided" in c.value for c in at.caption)


def test_next_undecided_skips_only_the_pairs_i_decided(workspace_env, run):
    r = ranked(run)
    pid, rows = r["pair_id"].tolist(), r["row"].tolist()
    write(db_of(workspace_env), {"ann-a": {pid[0]: "keep", pid[1]: "drop", pid[2]: "keep"},
                                 "ann-b": {pid[2]: "drop", pid[4]: "keep"}})
    at = app(run, "pages/browse.py", "ann-b")
    at.segmented_control(key="browse_mode").set_value("review").run()
    assert row_of(ok(at)) == rows[0]                                   # ann-a decided it; ann-b did not
    seen = []
    for _ in range(4):
        at.button(key="skip").click().run()
        seen.append(row_of(ok(at)))
    assert seen == [rows[1], rows[3], rows[5], rows[6]]                # rows[2], rows[4]: ann-b's own
    assert any("10 of them undecided by me" in c.value for c in at.caption)


def test_blind_review_hides_the_team_status_until_i_decide(workspace_env, run):
    r = ranked(run)
    pid, rows = r["pair_id"].tolist(), r["row"].tolist()
    write(db_of(workspace_env), {"ann-a": {pid[0]: "keep", pid[1]: "keep"}, "ann-b": {pid[1]: "drop"}})
    at = app(run, "pages/browse.py", "ann-b")
    assert shown(at).loc[rows[0], "team"] == "single"                  # open review: ann-a's decision shows
    assignment.write_assignment(run, assignment.Assignment(blind=True))
    at = app(run, "pages/browse.py", "ann-b")
    table = shown(at)
    assert table.loc[rows[0], "team"] == HIDDEN                        # decided by ann-a, not by me
    assert table.loc[rows[1], "team"] == "conflict"                    # I decided it: the team shows
    assert (table.drop(index=[rows[1]])["team"] == HIDDEN).all()       # even "undecided" would tell something
    at.multiselect(key="browse_team").set_value(["single"]).run()      # ann-a's single on rows[0] stays hidden
    assert metric(ok(at), "Shown by filters") == "0"
    at.multiselect(key="browse_team").set_value([HIDDEN]).run()
    assert set(shown(at).index) == set(rows) - {rows[1]}


def test_team_column_queue_order_and_team_filter_units():
    view = TeamView(by_annotator={"a": {"p1": _d("p1", "keep", "a"), "p2": _d("p2", "keep", "a")},
                                  "b": {"p2": _d("p2", "drop", "b"), "p3": _d("p3", "flag", "b")}})
    ids = pd.Series(["p1", "p2", "p3", "p4"])
    assert team_column(ids, view, "b", blind=False).tolist() == ["single", "conflict", "single", "undecided"]
    assert team_column(ids, view, "b", blind=True).tolist() == [HIDDEN, "conflict", "single", HIDDEN]
    assert team_column(ids, view, "", blind=True).tolist() == [HIDDEN] * 4
    table = pd.DataFrame({"row": [1, 2, 3, 4], "pair_id": ids, "ln_ches": [4.0, 3.0, 2.0, 1.0], "flags": "",
                          "len_chosen": 5, "len_rejected": 5})
    out = filter_pairs(table, decisions=view.mine("b"), team=team_column(ids, view, "b", False),
                       team_filter=["single"])
    assert out["row"].tolist() == [1, 3] and out["decision"].tolist() == ["undecided", "flag"]
    with pytest.raises(ValueError, match="unknown team status"):
        filter_pairs(table, team=team_column(ids, view, "b", False), team_filter=["argued"])
    q = in_queue(filter_pairs(table), ["p3", "p1", "zz", "p4"])
    assert q["row"].tolist() == [3, 1, 4]
    assert next_undecided(q["row"].tolist(), 3, [1, 4]) == 1


def _d(pid, value, who):
    return decisions.Decision(pid, value, "", who, "2025-01-01T00:00:00+00:00", 1)


def test_kappa_heatmap_is_symmetric_and_says_kappa_and_n():
    k = pd.DataFrame({"a": ["x", "x", "y"], "b": ["y", "z", "z"], "shared": [4, 1, 3], "agree": [.75, 1, 0],
                      "kappa": [0.5, np.nan, -0.2]})
    fig = kappa_heatmap(k)
    z = np.array(fig.data[0].z, dtype=float)
    assert z[0, 1] == z[1, 0] == 0.5 and z[1, 2] == z[2, 1] == -0.2 and np.isnan(z[0, 2]) and np.isnan(z[0, 0])
    assert fig.data[0].text[0][1] == "κ 0.50<br>n=4" and fig.data[0].text[0][2] == "κ —<br>n=1"


# ------------------------------------------------------------------------------------ Team page

def test_assignment_writes_the_plan_and_my_queue_drives_review(workspace_env, run):
    r = ranked(run)
    pid, rows = r["pair_id"].tolist(), r["row"].tolist()
    at = app(run, "pages/team.py", "ann-a")
    at.number_input(key="team_n").set_value(6)
    at.number_input(key="team_k").set_value(1)
    at.text_input(key="team_names").set_value("ann-a, ann-b")
    at.button(key="FormSubmitter:team_assign-Assign").click().run()
    ok(at)
    stored = json.loads((run / "review.json").read_text())
    # six riskiest, one annotator each, alternating: ann-a ranks 0, 2, 4; ann-b 1, 3, 5
    assert stored["queues"] == {"ann-a": [pid[0], pid[2], pid[4]], "ann-b": [pid[1], pid[3], pid[5]]}
    assert (stored["n"], stored["overlap"], stored["metric"], stored["blind"]) == (6, 1, "ln_ches", False)
    assert at.dataframe[0].value[["annotator", "assigned", "done"]].values.tolist() == [["ann-a", 3, 0],
                                                                                      ["ann-b", 3, 0]]

    decisions.record(db_of(workspace_env), pid[2], "keep", annotator="ann-a")
    ok(at.switch_page("pages/browse.py").run())
    at.segmented_control(key="browse_mode").set_value("review").run()
    assert at.toggle(key="browse_queue").value is True
    assert row_of(ok(at)) == rows[0]
    assert any(c.value.startswith("My queue: 1 of 3 done") for c in at.caption)
    at.button(key="skip").click().run()
    assert row_of(at) == rows[4]                                       # inside my queue; rows[2] is decided
    at.button(key="skip").click().run()
    assert row_of(at) == rows[0]                                       # wraps around the queue
    progress = at.sidebar.dataframe[0].value
    assert progress.set_index("annotator").loc["ann-a", ["done", "left"]].tolist() == [1, 2]
    at.run()             # Skip reran only the pair panel: AppTest then holds that fragment alone, not the page
    at.toggle(key="browse_queue").set_value(False).run()
    at.button(key="skip").click().run()
    assert row_of(ok(at)) == rows[1]                                   # the whole ranking again

    # ann-b, opening Review from a link, starts at the first pair of their queue they have not decided
    decisions.record(db_of(workspace_env), pid[1], "drop", annotator="ann-b")
    b = app(run, "pages/browse.py", "ann-b", layout="review")
    assert row_of(b) == rows[3] and any(c.value.startswith("My queue: 1 of 3 done") for c in b.caption)

    # an impossible assignment is refused with a message and the plan stays
    ok(at.switch_page("pages/team.py").run())
    at.number_input(key="team_k").set_value(3)
    at.button(key="FormSubmitter:team_assign-Assign").click().run()
    assert any(escape_md("overlap must be from 1 to the number of annotators (2)") in e.value for e in at.error)
    assert json.loads((run / "review.json").read_text())["queues"] == stored["queues"]


def test_the_team_page_shows_kappa_and_alpha_as_computed_by_hand(workspace_env, run):
    pid = ranked(run)["pair_id"].tolist()
    # a: keep keep drop drop; b: keep drop drop drop.  Cohen: p_o = 3/4, p_e = 1/2*1/4 + 1/2*3/4 = 1/2,
    # kappa = (3/4 - 1/2) / (1/2) = 0.5.  Krippendorff (nominal): coincidences o_kk = 2, o_kd = o_dk = 1,
    # o_dd = 4; n_k = 3, n_d = 5, n = 8; D_o = 2/8, D_e = 2*3*5/(8*7); alpha = 1 - D_o/D_e = 1 - 7/15 = 0.533
    write(db_of(workspace_env), {"a": dict(zip(pid[:4], ["keep", "keep", "drop", "drop"])),
                                 "b": dict(zip(pid[:4], ["keep", "drop", "drop", "drop"]))})
    at = app(run, "pages/team.py", "boss")
    assert metric(at, "Krippendorff's alpha") == "0.533"
    kappa = at.dataframe[0].value
    assert kappa[["a", "b", "shared"]].values.tolist() == [["a", "b", 4]] and kappa["kappa"][0] == pytest.approx(0.5)
    assert [metric(at, s) for s in ("Undecided", "Single", "Agreed", "Conflict", "Settled")] == ["8", "0", "3", "1", "0"]


def test_settling_a_conflict_records_an_adjudication_and_lists_who_settled_it(workspace_env, run):
    r = ranked(run)
    pid, rows = r["pair_id"].tolist(), r["row"].tolist()
    db = db_of(workspace_env)
    write(db, {"ann-a": {pid[1]: "keep", pid[3]: "keep"}, "ann-b": {pid[1]: "drop", pid[3]: "drop"}})
    nameless = app(run, "pages/team.py")
    assert nameless.button(key=f"settle_drop_{pid[1]}").disabled          # a settlement needs a name
    at = app(run, "pages/team.py", "boss")
    assert any(f"Row {rows[1]}" in m.value for m in at.markdown)
    at.button(key=f"settle_drop_{pid[1]}").click().run()
    ok(at)
    adj = decisions.adjudications(db)
    assert set(adj) == {pid[1]} and (adj[pid[1]].decision, adj[pid[1]].annotator, adj[pid[1]].adjudicated) == \
        ("drop", "boss", True)
    assert "boss" not in TeamView.read(db).by_annotator                # not an annotation of boss's
    assert metric(at, "Settled") == "1" and metric(at, "Conflict") == "1"
    settled = at.dataframe[-1].value
    assert settled[["row", "settled", "by"]].values.tolist() == [[rows[1], "drop", "boss"]]
    assert not [b for b in at.button if b.key == f"settle_drop_{pid[1]}"]   # off the open list
    at.button(key="team_reopen").click().run()
    assert decisions.adjudications(db) == {} and metric(ok(at), "Conflict") == "2"
    # Open takes the pair to Browse
    at.button(key=f"team_open_{pid[3]}").click().run()
    assert ok(at).title[0].value == "Browse" and row_of(at) == rows[3]


def test_without_the_adjudicate_right_the_plan_is_read_only_and_blind_hides_the_conflicts(workspace_env, run,
                                                                                          monkeypatch):
    from ui import auth

    pid = ranked(run)["pair_id"].tolist()
    write(db_of(workspace_env), {"ann-a": {pid[0]: "keep"}, "ann-b": {pid[0]: "drop"}})
    monkeypatch.setattr(auth, "can", lambda action: action != "adjudicate")
    monkeypatch.setattr(auth, "refuse", lambda action: "Only an admin may do this." if action == "adjudicate" else None)
    at = app(run, "pages/team.py", "ann-b")
    assert at.toggle(key="team_blind").disabled and at.button(key="FormSubmitter:team_assign-Assign").disabled
    assert at.button(key=f"settle_keep_{pid[0]}").disabled
    assignment.write_assignment(run, assignment.Assignment(blind=True))
    at = app(run, "pages/team.py", "ann-b")
    assert at.toggle(key="team_blind").value is True
    assert any("shown to admins only" in i.value for i in at.info)
    assert not [b for b in at.button if (b.key or "").startswith("settle_")]


def test_the_blind_toggle_is_stored_with_the_run_and_keeps_the_queues(workspace_env, run):
    assignment.write_assignment(run, assignment.Assignment(n=2, overlap=1, queues={"ann-a": ("x",), "ann-b": ("y",)}))
    at = app(run, "pages/team.py", "boss")
    at.toggle(key="team_blind").set_value(True).run()
    ok(at)
    after = assignment.read_assignment(run)
    assert after.blind and after.queues == {"ann-a": ("x",), "ann-b": ("y",)}


# ------------------------------------------------------------------------- blind review fails closed




def signed_in(run, page: str, email: str) -> AppTest:
    """The app as `email` signed in (st.user as a sign-in sets it; [auth] in the secrets switches sign-in on)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.secrets["auth"] = {"redirect_uri": "http://localhost/oauth2callback", "cookie_secret": "x"}
    at.user = {"email": email, "is_logged_in": True}
    at.query_params.update(run=run.name)
    at.run()
    return ok(at.switch_page(page).run())


def test_blind_hides_who_decided_what_from_an_annotator_on_the_export_page(workspace_env, run):
    (workspace_env.workspace / "team.toml").write_text(TEAM, encoding="utf-8")
    pid = ranked(run)["pair_id"].tolist()
    write(db_of(workspace_env), {"Ada": {pid[0]: "keep"}, "Cat": {pid[0]: "drop"}})
    assignment.write_assignment(run, assignment.Assignment(blind=True))
    bob = signed_in(run, "pages/export.py", "bob@example.org")
    names = " ".join(str(d.value.to_dict()) for d in bob.dataframe)
    assert "Cat" not in names and "Ada" not in names
    assert any("shown to admins only" in i.value for i in bob.info)
    ada = signed_in(run, "pages/export.py", "ada@example.org")
    assert any("Cat" in str(d.value.to_dict()) for d in ada.dataframe)      # the admin settles them: she sees


def test_blind_says_others_are_hidden_on_every_pair_i_have_not_decided(workspace_env, run):
    pid = ranked(run)["pair_id"].tolist()
    write(db_of(workspace_env), {"ann-a": {pid[0]: "keep"}})
    assignment.write_assignment(run, assignment.Assignment(blind=True))
    captions = []
    for row_pair in (0, 1):                        # rank 1: ann-a decided it; rank 2: nobody did
        at = app(run, "pages/browse.py", "ann-b", layout="review")
        if row_pair:
            at.button(key="skip").click().run()
        captions.append(" ".join(c.value for c in at.caption))
    assert all("hidden until you decide" in c for c in captions), captions


def test_an_unreadable_review_plan_reads_as_blind(workspace_env, run):
    r = ranked(run)
    pid, rows = r["pair_id"].tolist(), r["row"].tolist()
    write(db_of(workspace_env), {"ann-a": {pid[0]: "keep"}})
    (run / "review.json").write_text('{"blind": fal', encoding="utf-8")     # cut short
    at = app(run, "pages/browse.py", "ann-b")
    assert shown(at).loc[rows[0], "team"] == HIDDEN
    assert any("treated as blind" in w.value for w in at.warning)


def test_a_settle_is_checked_against_the_role_when_pressed_not_when_drawn(workspace_env, run):
    team_file = workspace_env.workspace / "team.toml"
    team_file.write_text(TEAM, encoding="utf-8")
    pid = ranked(run)["pair_id"].tolist()
    write(db_of(workspace_env), {"Bob": {pid[0]: "keep"}, "Cat": {pid[0]: "drop"}})
    ada = signed_in(run, "pages/team.py", "ada@example.org")
    settle = ada.button(key=f"settle_keep_{pid[0]}")
    assert not settle.disabled                                        # drawn for an admin
    team_file.write_text(TEAM.replace('role = "admin"', 'role = "annotator"'), encoding="utf-8")
    settle.click().run()                                              # pressed after she lost the role
    assert decisions.adjudications(db_of(workspace_env)) == {}
    assert any("Not done: Only an admin may do this" in e.value.replace("\\", "") for e in ada.error)


def test_an_annotator_cannot_start_the_probe_or_the_curation_check(workspace_env, run):
    """Both train model copies on the server: an admin's to start, with sign-in on (checked when pressed)."""
    (workspace_env.workspace / "team.toml").write_text(TEAM, encoding="utf-8")
    bob = signed_in(run, "pages/probe.py", "bob@example.org")
    go = bob.button(key="probe_go")
    assert go.disabled and "Only an admin" in go.proto.help
    bob = signed_in(run, "pages/export.py", "bob@example.org")
    assert bob.button(key="check_go").disabled and "Only an admin" in bob.button(key="check_go").proto.help


def test_an_adjudicator_is_told_when_another_changed_her_settlement(workspace_env, run):
    r = ranked(run)
    pid, rows = r["pair_id"].tolist(), r["row"].tolist()
    db = db_of(workspace_env)
    write(db, {"ann-a": {pid[0]: "keep", pid[1]: "keep"}, "ann-b": {pid[0]: "drop", pid[1]: "drop"}})
    decisions.record(db, pid[0], "keep", annotator="Ada", adjudicate=True)
    decisions.record(db, pid[1], "drop", annotator="Ada", adjudicate=True)
    at = app(run, "pages/team.py", "Ada")
    assert not any("changed your settlement" in w.value for w in at.warning)
    decisions.record(db, pid[0], "drop", annotator="Cat", adjudicate=True)     # Cat overrides one of them
    decisions.record(db, pid[1], "keep", annotator="Cat", adjudicate=True)
    decisions.undo(db, annotator="Cat", pair_id=pid[1])                        # ... and takes the other back
    at = app(run, "pages/team.py", "Ada")
    told = " ".join(w.value.replace("\\", "") for w in at.warning if "changed your settlement" in w.value)
    assert f"row {rows[0]}: you settled keep, Cat settled drop" in told and f"row {rows[1]}:" not in told
    cat = app(run, "pages/team.py", "Cat")
    assert not any("changed your settlement" in w.value for w in cat.warning)     # Cat's were not changed
