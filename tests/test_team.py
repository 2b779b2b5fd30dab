"""A team on one workspace: the allowlist and roles (ches.review.allowlist), and what survives navigation for
each person (annotator and layout in the URL, the Map's selection per view, a deleted run named as such).

Sign-in itself (st.login against a real OpenID Connect provider, oidc-provider-mock) and the Map's selection
in a real browser are in tests/test_signin.py; here the allowlist and what the app does without [auth].
"""
from __future__ import annotations

import json

import pytest
import umap
from streamlit.testing.v1 import AppTest

from ches.engine.files import load_dataset
from ches.engine.store import read_scores
from ches.review import allowlist, assignment
from conftest import ROOT, SAMPLE, heading, make_fake_run, ok

TIMEOUT = 120


# ------------------------------------------------------------------------------------- the allowlist

TEAM = """
[[member]]
email = "Ada@Example.org"
name = "Ada"
role = "admin"

[[member]]
subject = "sub-42"
role = "annotator"
"""


def test_team_file_gives_names_and_roles_and_nobody_else_gets_in(tmp_path):
    path = tmp_path / "team.toml"
    path.write_text(TEAM, encoding="utf-8")
    t = allowlist.load_team(path)
    ada = t.find(email="ada@example.org", subject="whatever")          # emails compared case-blind
    bob = t.find(email=None, subject="sub-42")
    assert (ada.name, ada.role) == ("Ada", "admin") and (bob.name, bob.role) == ("sub-42", "annotator")
    assert t.find(email="eve@example.org", subject="sub-43") is None
    assert allowlist.load_team(tmp_path / "missing.toml").find(email="ada@example.org", subject=None) is None
    assert [a for a in allowlist.PERMISSIONS if allowlist.can(ada, a)] == ["decide", "score", "delete_run", "export",
                                                                  "adjudicate"]
    assert [a for a in allowlist.PERMISSIONS if allowlist.can(bob, a)] == ["decide"]
    assert not any(allowlist.can(None, a) for a in allowlist.PERMISSIONS)
    with pytest.raises(ValueError, match="unknown action"):
        allowlist.can(ada, "fly")


@pytest.mark.parametrize("text, message", [
    ('[[member]]\nemail = "a@b.c"\nrole = "owner"', "member 1: 'role' must be one of"),
    ('[[member]]\nemail = "a@b.c"\nrole = "admin"\n[[member]]\nrole = "annotator"', "member 2: give an 'email'"),
    ('[[member]]\nemail = "a@b.c"\nrole = "admin"\npassword = "x"', "member 1: unknown key(s) ['password']"),
    ('[[member]]\nemail = ""\nrole = "admin"', "member 1: 'email' must be a non-empty string"),
    ("[[member]\n", "not valid TOML"),
    ('[users]\nx = 1', "unknown section(s) ['users']"),
    ('[[member]]\nemail = "a@b.c"\nname = "Ada"\nrole = "admin"\n[[member]]\nemail = "x@y.z"\nname = "Ada"\n'
     'role = "annotator"', "member 2: the name 'Ada' is already another member's"),
])
def test_a_wrong_team_file_names_the_entry(text, message):
    with pytest.raises(allowlist.TeamError) as e:
        allowlist.parse_team(text)
    assert message in str(e.value)


# --------------------------------------------------------------------------- navigation, per session

class FakeUMAP:
    def __init__(self, **kwargs):
        pass

    def fit_transform(self, x):
        return x[:, :2].copy()


@pytest.fixture
def run(workspace_env, monkeypatch):
    """A fake-scored run whose two Map layouts are stored (the Map's job would compute them in a process the
    fake UMAP does not reach)."""
    from ches.review.projection import map_coordinates

    monkeypatch.setattr(umap, "UMAP", FakeUMAP)
    monkeypatch.chdir(ROOT)
    run = make_fake_run(workspace_env.workspace / "runs" / "0123456789abcdef", load_dataset(SAMPLE), seed=4)
    for view in ("pairs", "responses"):
        map_coordinates(run, view, n_neighbors=15, min_dist=0.1)
    return run




def app(**query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update(query)
    return at


def test_review_layout_is_kept_by_the_url_a_reload_and_other_pages(run):
    at = app(run=run.name, annotator="ann-a")
    at.run()
    ok(at.switch_page("pages/browse.py").run())
    assert at.dataframe                                          # Table by default
    at.segmented_control(key="browse_mode").set_value("review").run()
    assert not at.dataframe and at.query_params["layout"] == "review"
    ok(at.switch_page("pages/map.py").run())
    assert at.query_params["layout"] == "review" and at.query_params["annotator"] == "ann-a"
    ok(at.switch_page("pages/browse.py").run())
    assert not at.dataframe and at.segmented_control(key="browse_mode").value == "review"
    # a reload or a shared link: a new session with the same address opens Review
    link = app(**{k: at.query_params[k] for k in ("run", "row", "annotator", "layout")})
    link.run()
    ok(link.switch_page("pages/browse.py").run())
    assert not link.dataframe and link.segmented_control(key="browse_mode").value == "review"


def _select(at: AppTest, rows: list[int]) -> AppTest:
    """Rerun with the Map's chart reporting `rows` clicked (the chart's widget state, as the browser sends it)."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    states = at._tree.get_widget_states()
    chart = at.get("plotly_chart")[0].proto.id
    selection = {"selection": {"points": [{"curve_number": 0, "point_index": i, "customdata": r}
                                          for i, r in enumerate(rows)],
                               "point_indices": list(range(len(rows))), "box": [], "lasso": []}}
    states.widgets.append(WidgetState(id=chart, string_value=json.dumps(selection)))
    return at._run(states)


def test_open_in_browse_keeps_the_annotator_and_a_view_switch_clears_the_selection(run):
    rows = read_scores(run)["row"].iloc[[3, 9]].tolist()
    at = app(run=run.name, annotator="ann-a")
    at.run()
    ok(at.switch_page("pages/map.py").run())
    ok(_select(at, rows))
    assert any("2 pair(s) selected" in m.value for m in at.markdown)
    at.radio(key="map_view").set_value("responses").run()           # the points moved: nothing selected
    ok(at)
    assert any("Nothing selected." in c.value for c in at.caption) and not [b for b in at.button if b.key == "map_keep"]
    at.radio(key="map_view").set_value("pairs").run()
    ok(_select(at, rows))
    at.button(key="map_browse").click()
    ok(_select(at, rows))
    assert at.title[0].value == "Browse"
    assert at.session_state["annotator"] == "ann-a" and at.query_params["annotator"] == "ann-a"
    bars = [json.loads(c.proto.json) for c in at.get("bidi_component")]     # ui.decisionbar's component
    assert len(bars) == 1 and bars[0]["enabled"]


def test_deleting_a_run_names_its_probes_and_checks_and_a_teammate_is_told(run):
    (run / "probes" / "p1").mkdir(parents=True)
    (run / "probes" / "p1" / "manifest.json").write_text(json.dumps({"created_at": "2025-01-01T00:00:00"}))
    (run / "probes" / "p1" / "results.parquet").write_bytes(b"")
    pairs = read_scores(run)["pair_id"].tolist()
    assignment.write_assignment(run, assignment.Assignment(blind=True, n=3, overlap=2,
                                         queues=assignment.assign(pairs, ["ann-a", "ann-b"], n=3, overlap=2)))
    teammate = app(run=run.name)
    teammate.run()
    ok(teammate.switch_page("pages/browse.py").run())
    assert heading(teammate)                                    # the pair is open in the teammate's tab

    at = app(run=run.name)
    ok(at.run())
    at.selectbox(key="score_delete_pick").set_value(str(run)).run()
    at.button(key="score_delete").click().run()
    warning = " ".join(w.value for w in at.warning)
    assert ("map, 1 stored probe(s) and 0 curation check(s), and its review plan (3 pair(s) assigned to 2 "
            "annotator(s), blind)") in warning
    at.button(key="score_delete_confirm").click().run()
    ok(at)
    assert not run.exists()
    assert any("Deleted the run" in s.value and "1 stored probe(s)" in s.value.replace("\\", "") for s in at.success)

    teammate.run()                                               # their next click
    ok(teammate)
    assert any(f"The run {run.name} was deleted" in w.value for w in teammate.warning)
    assert not any("No run yet" in i.value for i in teammate.info)
