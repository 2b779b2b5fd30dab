"""AppTest for the Map and Curate & export pages, plus ches.review.map and its figure,
and `ches project`, the job that computes the Map.

A synthetic run (random sums and scores over data/sample.jsonl) stands in for a scored one, and a fake
UMAP (first two input columns) keeps the map fast: the run's maps for the default parameters are stored
before a page opens, and a map job (conftest.task_jobs) uses a fake too. AppTest cannot lasso, so a
selection is injected as the plotly chart's widget state: the same JSON the browser sends.
"""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import umap
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.testing.v1 import AppTest

import ches.cli as cli
from ches.cli.project import project_args
from ches.engine import jobs
from ches.review import decisions
from ches.review import map as mapview
from ches.engine.files import load_dataset
from ches.review.export import manifest_path
from ches.review.projection import cached_layout, map_coordinates
from ches.engine.store import read_scores
from conftest import make_fake_run as make_run

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample.jsonl"
TIMEOUT = 60


class FakeUMAP:
    """Stand-in for umap.UMAP (no numba compile): the first two input columns."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def fit_transform(self, X):
        return np.asarray(X)[:, :2].copy()


@pytest.fixture(scope="module")
def sample_ds():
    return load_dataset(SAMPLE)


@pytest.fixture
def env(tmp_path, monkeypatch, sample_ds):
    """A workspace under tmp_path holding one synthetic run with its maps for the default UMAP parameters (the
    fake UMAP); cwd = repo root; app.py's navigation on every run, as on a real server."""
    ws = tmp_path / "ws"
    monkeypatch.setenv("CHES_WORKSPACE", str(ws))
    monkeypatch.setattr(umap, "UMAP", FakeUMAP)
    monkeypatch.chdir(ROOT)
    run = make_run(ws / "runs" / "0123456789abcdef", sample_ds)
    for view in ("pairs", "responses"):
        map_coordinates(run, view, n_neighbors=15, min_dist=0.1)
    return {"ws": ws, "run": run, "table": read_scores(run)}


def app(page: str, run: Path | None, annotator: str = "tester") -> AppTest:
    """The whole app (navigation + sidebar), opened on pages/<page> with the run active."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    if run is not None:
        at.session_state["run_dir"] = str(run)
    at.session_state["annotator"] = annotator
    return at.switch_page(f"pages/{page}")


def name_input(at: AppTest):
    return next(t for t in at.text_input if t.label.startswith("File name"))


def tiles(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


# ------------------------------------------------------------------------------------ mapview units

def test_selection_rows_from_clicks_boxes_and_lassos():
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 0.5, 1.5, 2.5, 3.5], "y": [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0],
                          "row": [3, 5, 7, 9, 3, 5, 7, 9]})                       # responses view: 2 points per pair
    clicks = {"points": [{"curve_number": 1, "point_index": 0, "customdata": [9]},
                         {"curve_number": 1, "point_index": 1, "customdata": 3},
                         {"curve_number": 1, "point_index": 3, "customdata": {"0": 5}},  # as plotly.js sends 2-D
                         {"curve_number": 2, "point_index": 0, "customdata": [9]},      # same pair, other side
                         {"curve_number": 1, "point_index": 2, "customdata": [42]},     # not in this run
                         {"curve_number": 0, "point_index": 6}],                       # no customdata: ignored
              "point_indices": [0, 1, 0, 2], "box": [], "lasso": []}
    assert mapview.selection_rows(clicks, frame) == [3, 5, 9]
    assert mapview.selection_rows({"selection": clicks}, frame) == [3, 5, 9]   # the whole event works too
    assert mapview.selection_rows(None, frame) == []
    assert mapview.selection_rows({"points": [], "box": [], "lasso": []}, frame) == []
    # a box or a lasso selects every point inside it, drawn or not (no points listed at all)
    box = {"points": [], "box": [{"xref": "x", "yref": "y", "x": [2.2, 0.8], "y": [-0.5, 0.5]}], "lasso": []}
    assert mapview.selection_rows(box, frame) == [5, 7]
    lasso = {"points": [], "box": [], "lasso": [{"x": [2.8, 4.0, 4.0, 3.2], "y": [-0.5, -0.5, 1.5, 1.5]}]}
    assert mapview.selection_rows(lasso, frame) == [9]                 # (3, 0) and (3.5, 1) inside; (2.5, 1) not
    assert mapview.selection_rows({**lasso, "points": clicks["points"][1:2]}, frame) == [3, 9]


def test_map_frame_and_figure():
    table = pd.DataFrame({"row": [1, 2, 3], "pair_id": ["a", "b", "c"], "ln_ches": [0.5, -1.0, 2.0],
                          "flags": ["", "identical,duplicate", ""]})
    pairs = mapview.map_frame(table, np.arange(6.0).reshape(3, 2), "pairs")
    assert pairs[["x", "y", "row", "side"]].values.tolist() == [[0, 1, 1, "pair"], [2, 3, 2, "pair"], [4, 5, 3, "pair"]]
    resp = mapview.map_frame(table, np.arange(12.0).reshape(6, 2), "responses", color_by="decision",
                             decisions={"b": "drop"})
    assert resp["side"].tolist() == ["chosen"] * 3 + ["rejected"] * 3
    assert resp["row"].tolist() == [1, 2, 3, 1, 2, 3]
    assert resp["color"].tolist()[:3] == ["undecided", "drop", "undecided"]
    fig = mapview.map_figure(resp, color_by="decision")
    lines = fig.data[0]
    assert lines.mode == "lines" and list(lines.x) == [0, 6, None, 2, 8, None, 4, 10, None]
    markers = [t for t in fig.data if t.mode == "markers"]
    assert sum(len(t.x) for t in markers) == 6
    assert sorted(c for t in markers for c in t.customdata) == [1, 1, 2, 2, 3, 3]
    flags = mapview.map_frame(table, np.zeros((3, 2)), "pairs", color_by="flag")
    assert flags["color"].tolist() == [mapview.NO_FLAG, "identical", mapview.NO_FLAG]
    fig = mapview.map_figure(mapview.map_frame(table, np.zeros((3, 2)), "pairs"), riskiest=[3], current=2)
    points, ring, star = fig.data
    assert points.type == "scattergl" and list(points.marker.color) == [0.5, -1, 2]
    assert list(ring.customdata) == [3] and ring.marker.symbol == "circle-open"    # the riskiest, on top
    assert list(star.customdata) == [2] and star.marker.symbol == "star"           # the open pair, on top of all
    assert "%{marker.color" in points.hovertemplate                                # hover text built in the browser
    assert fig.layout.coloraxis.colorbar.title.text == "LN-CHES"             # the human label, not the column
    # the colour range is clipped to the 2nd-98th percentile, so one outlier does not wash out the rest
    wide = pd.DataFrame({"row": range(1, 101), "pair_id": [str(i) for i in range(100)],
                         "ln_ches": [*np.linspace(0, 1, 99), 1000.0], "flags": ""})
    fig = mapview.map_figure(mapview.map_frame(wide, np.zeros((100, 2)), "pairs"))
    lo, hi = np.percentile(wide["ln_ches"], [2, 98])
    assert fig.layout.coloraxis.cmin == pytest.approx(lo) and fig.layout.coloraxis.cmax == pytest.approx(hi)
    assert hi < 2                                                            # the outlier (1000) is clipped
    assert mapview.color_range([1.0, 1.0]) == {} and mapview.color_range([np.nan]) == {}
    with pytest.raises(ValueError, match="coords"):
        mapview.map_frame(table, np.zeros((3, 2)), "responses")


def test_a_large_map_is_layered_small_and_readable():
    """100k points: a density layer under small translucent points; typed arrays; far under 3 MB."""
    import plotly.io as pio

    n = 100_000
    r = np.random.default_rng(0)
    table = pd.DataFrame({"row": np.arange(1, n + 1), "pair_id": [f"p{i}" for i in range(n)],
                          "ln_ches": r.normal(size=n), "flags": ""})
    frame = mapview.map_frame(table, r.normal(size=(n, 2)), "pairs")
    riskiest = mapview.riskiest_rows(table, "ln_ches")
    assert len(riskiest) == 200 and set(riskiest) == set(table.nlargest(200, "ln_ches")["row"])
    fig = mapview.map_figure(frame, riskiest=riskiest)
    density, points, ring = fig.data
    assert density.type == "heatmap" and density.hoverinfo == "skip"
    assert np.nansum(10 ** np.asarray(density.z, dtype=np.float64)) == pytest.approx(n)   # every point counted
    assert points.marker.size < 6 and points.marker.opacity < 0.8 and len(points.x) == n
    spec = pio.to_json(fig, validate=False)
    assert len(spec) < 3e6 and '"bdata"' in spec and "row 1<" not in spec        # no string per point
    big = mapview.map_frame(pd.concat([table] * 3, ignore_index=True).assign(row=np.arange(1, 3 * n + 1)),
                            r.normal(size=(3 * n, 2)), "pairs")
    drawn = [t for t in mapview.map_figure(big).data if t.type == "scattergl"]
    assert sum(len(t.x) for t in drawn) == mapview.MAX_POINTS                 # a sample drawn above the cap


# ------------------------------------------------------------------------------------ Map page

def array(value) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(value, dict) and "bdata" in value:
        a = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return a.reshape([int(x) for x in str(shape).split(",")]) if shape else a
    return np.asarray(value)


def plotly_chart_id(at: AppTest) -> str:
    shown = [el for el in at.get("plotly_chart")]
    assert len(shown) == 1
    return shown[0].proto.id


def run_with_selection(at: AppTest, rows: list[int]) -> AppTest:
    """Rerun with the map reporting `rows` clicked (plus whatever the test clicked/set)."""
    states = at._tree.get_widget_states()
    selection = {"selection": {"points": [{"curve_number": 0, "point_index": i, "customdata": r}
                                          for i, r in enumerate(rows)],
                               "point_indices": list(range(len(rows))), "box": [], "lasso": []}}
    states.widgets.append(WidgetState(id=plotly_chart_id(at), string_value=json.dumps(selection)))
    return at._run(states)


def test_map_page_without_a_run_points_to_scoring(env):
    at = app("map.py", None).run()
    assert not at.exception and "No run yet" in at.info[0].value


@pytest.mark.parametrize("view", ["pairs", "responses"])
def test_map_page_renders_both_views(env, view):
    at = app("map.py", env["run"]).run()
    no_errors(at)
    at.radio(key="map_view").set_value(view).run()
    no_errors(at)
    traces = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    n = len(env["table"])
    markers = [t for t in traces if t.get("mode") == "markers" and not t["name"].startswith(("riskiest", "row "))]
    assert sum(len(array(t["x"])) for t in markers) == (n if view == "pairs" else 2 * n)
    assert {int(c) for t in markers for c in array(t["customdata"])} == set(env["table"]["row"])
    ring = next(t for t in traces if t["name"].startswith("riskiest"))
    assert set(array(ring["customdata"])) == set(mapview.riskiest_rows(env["table"], "ln_ches"))
    assert any(t.get("mode") == "lines" for t in traces) == (view == "responses")
    assert list((env["run"] / "projection").glob("layout-*.npy"))  # cached on disk
    at.radio(key="map_color").set_value("decision").run()
    no_errors(at)


def test_the_map_is_a_job_a_second_tab_sees_it_cancel_stops_it_and_the_map_shows(env, task_jobs):
    """A map not stored yet: the page starts `ches project` as a job and returns at once; another session with
    the same parameters sees that job and starts none; Cancel stops it; Compute the map starts it again, and
    the map shows when it is stored."""
    folder = env["ws"] / "jobs"
    at = app("map.py", env["run"]).run()
    no_errors(at)
    assert at.get("plotly_chart") and jobs.list_jobs(folder) == []         # stored: no job
    at.slider(key="map_n_neighbors").set_value(5).run()                      # not stored: a job, waiting at its gate
    no_errors(at)
    (job,) = jobs.list_jobs(folder)
    assert job.kind == "project" and jobs.status(job).running and not at.get("plotly_chart")
    assert any("Computing the map of" in i.value for i in at.info)
    assert cached_layout(env["run"], "pairs", n_neighbors=5, min_dist=0.1) is None

    other = app("map.py", env["run"]).run()                                  # another tab, the same parameters
    other.slider(key="map_n_neighbors").set_value(5).run()
    no_errors(other)
    assert other.button(key=f"main_cancel_{job.name}") is not None
    assert [j.pid for j in jobs.list_jobs(folder)] == [job.pid]

    at.button(key=f"main_cancel_{job.name}").click().run()
    assert task_jobs.over(job).state == "cancelled"
    at.run()
    no_errors(at)
    assert any("Map cancelled: nothing was stored." in w.value.replace("\\", "") for w in at.warning)
    assert [j.pid for j in jobs.list_jobs(folder)] == [job.pid]               # not started again by itself

    task_jobs.release()
    at.button(key="map_compute").click().run()
    (again,) = jobs.list_jobs(folder)
    assert again.pid != job.pid and task_jobs.over(again).state == "complete"
    at.run()                                                                 # what the page's polling does
    no_errors(at)
    assert at.get("plotly_chart") and any("Map computed and stored" in s.value for s in at.success)
    assert cached_layout(env["run"], "pairs", n_neighbors=5, min_dist=0.1) is not None
    assert jobs.list_jobs(folder) == []


def test_ches_project_stores_the_map_the_page_reads_and_says_so_to_its_job(env, monkeypatch, tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(jobs.STATUS_ENV, str(events))
    argv = project_args(env["run"], "responses", n_neighbors=7, min_dist=0.25)
    args = cli.build_parser().parse_args(["project", *argv])
    assert (args.view, args.n_neighbors, args.min_dist) == ("responses", 7, 0.25)
    assert cli.main(["project", *argv]) == 0
    assert "stored in" in capsys.readouterr().out
    stored = cached_layout(env["run"], "responses", n_neighbors=7, min_dist=0.25)
    assert stored is not None and stored.shape == (2 * len(env["table"]), 2)
    said = [json.loads(line) for line in events.read_text().splitlines()]
    assert said[-1] == {"event": "complete", "result": str(env["run"] / "projection")}
    assert any(e["event"] == "step" and e["what"].startswith("UMAP of") for e in said)


def test_map_selection_bulk_decision_lands_in_the_db(env):
    table = env["table"]
    picked = table["row"].iloc[[4, 1, 10]].tolist()
    at = app("map.py", env["run"], annotator="mapper").run()
    no_errors(at)
    assert [b.key for b in at.button] == ["map_undo"]  # nothing selected yet: only the undo
    run_with_selection(at, picked)
    no_errors(at)
    assert any("3 pair(s) selected" in m.value for m in at.markdown)
    at.button(key="map_drop").click()
    run_with_selection(at, picked)
    no_errors(at)
    db = env["ws"] / "decisions.sqlite"
    current = decisions.current(db)
    expected = set(table.set_index("row").loc[picked, "pair_id"])
    assert {pid for pid, d in current.items() if d.decision == "drop" and d.annotator == "mapper"} == expected
    assert any("Recorded 'drop' for 3 pair" in s.value for s in at.success)


def test_a_bulk_over_decided_pairs_asks_before_overwriting(env):
    """Only my own decisions count as "already decided" (another annotator's are theirs and stay); a bulk over
    mine asks first; 'Undo my last action' reverts a bulk whole."""
    table = env["table"].set_index("row")
    a, b, c = picked = env["table"]["row"].iloc[[2, 5, 9]].tolist()
    db = env["ws"] / "decisions.sqlite"
    decisions.record(db, table.loc[a, "pair_id"], "keep", annotator="earlier")
    decisions.record(db, table.loc[b, "pair_id"], "drop", annotator="mapper", note="toxic")
    before = decisions.history(db)
    at = app("map.py", env["run"], annotator="mapper").run()
    run_with_selection(at, picked)
    assert any("already decided: 1 drop" in m.value for m in at.markdown)    # mine only: not earlier's keep
    at.button(key="map_keep").click()
    run_with_selection(at, picked)
    no_errors(at)
    assert decisions.history(db) == before                                   # nothing written yet: it asks
    assert any("1 of the 3 pairs to mark 'keep' already have a decision (1 drop)" in w.value for w in at.warning)
    at.button(key="map_only_undecided").click()
    run_with_selection(at, picked)
    mine = decisions.current(db, annotator="mapper")
    assert mine[table.loc[b, "pair_id"]].note == "toxic"
    assert {mine[table.loc[r, "pair_id"]].decision for r in (a, c)} == {"keep"}
    assert decisions.current(db, annotator="earlier")[table.loc[a, "pair_id"]].decision == "keep"   # theirs stays
    at.button(key="map_drop").click()                                          # all three decided by me now
    run_with_selection(at, picked)
    at.button(key="map_cancel").click()
    run_with_selection(at, picked)
    assert not any("to mark 'drop'" in w.value for w in at.warning) and len(decisions.history(db)) == len(before) + 2
    at.button(key="map_drop").click()
    run_with_selection(at, picked)
    at.button(key="map_overwrite").click()
    run_with_selection(at, picked)
    no_errors(at)
    assert {decisions.current(db, annotator="mapper")[table.loc[r, "pair_id"]].decision for r in picked} == {"drop"}
    at.button(key="map_undo").click()                                          # the bulk, whole
    run_with_selection(at, picked)
    no_errors(at)
    assert any(r"Undid your last action\: drop on 3 pair\(s\)" in i.value for i in at.info)      # (escaped markdown)
    mine = decisions.current(db, annotator="mapper")
    assert mine[table.loc[b, "pair_id"]].note == "toxic" and mine[table.loc[c, "pair_id"]].decision == "keep"


def test_map_open_in_browse_sets_focus_rows(env):
    at = app("map.py", env["run"]).run()
    picked = env["table"]["row"].iloc[[7, 2]].tolist()
    run_with_selection(at, picked)
    at.button(key="map_browse").click()
    run_with_selection(at, picked)
    no_errors(at)
    assert at.session_state["focus_rows"] == sorted(picked)   # dataset order
    assert at.title[0].value == "Browse"
    assert any("Showing only the 2 pairs" in i.value for i in at.info)


# ------------------------------------------------------------------------------------ Export page

def test_export_page_previews_and_exports(env, sample_ds):
    pid = env["table"]["pair_id"].iloc[0]
    decisions.record(env["ws"] / "decisions.sqlite", pid, "drop", annotator="someone")
    at = app("export.py", env["run"]).run()
    no_errors(at)
    n = len(env["table"])
    rank_of_dropped = env["table"]["ln_ches"].rank(method="first").iloc[0]
    assert tiles(at)["Pairs kept"] == str(int(n * 0.95) - (rank_of_dropped <= int(n * 0.95)))
    assert int(tiles(at)["Pairs kept"]) + int(tiles(at)["Pairs dropped"]) == n
    assert len(at.get("plotly_chart")) == 2

    at.slider(key="export_percent").set_value(50.0).run()
    at.radio(key="export_format").set_value("trl").run()
    no_errors(at)
    kept = int(tiles(at)["Pairs kept"])
    assert name_input(at).value == "" and re.fullmatch(r"sample-ln_ches-keep50-\d{8}-\d{6}-trl",
                                                       name_input(at).placeholder)   # the dataset's name, the time
    at.button(key="export_go").click().run()
    no_errors(at)
    (out,) = (env["ws"] / "exports").glob("sample-ln_ches-keep50-*-trl.jsonl")
    assert out.is_file() and manifest_path(out).is_file()
    ids = [p.pair_id for p in load_dataset(out).pairs]
    assert len(ids) == kept and pid not in ids
    assert json.loads(manifest_path(out).read_text())["counts"]["dropped_by_reason"]["decision:drop"] == 1
    assert {b.label for b in at.get("download_button")} == {"Download JSONL", "Download manifest", "Download the decision log"}


def test_export_page_refuses_names_outside_the_exports_folder(env, tmp_path):
    at = app("export.py", env["run"]).run()
    name_input(at).input("../../escaped").run()
    at.button(key="export_go").click().run()
    assert not at.exception
    assert at.error and "outside" in at.error[0].value
    assert not list((env["ws"]).glob("escaped*")) and not list(tmp_path.glob("escaped*"))


def test_export_page_threshold_mode(env):
    at = app("export.py", env["run"]).run()
    at.radio(key="export_mode").set_value("threshold").run()
    no_errors(at)
    at.number_input(key="export_threshold_ln_ches").set_value(0.0).run()
    no_errors(at)
    t = env["table"]
    flagged = t["flags"].str.contains("identical|empty_chosen|empty_rejected")
    assert int(tiles(at)["Pairs kept"]) == int(((t["ln_ches"] <= 0) & ~flagged).sum())


def test_export_page_asks_before_overwriting_a_file(env):
    at = app("export.py", env["run"]).run()
    name_input(at).input("mine").run()
    at.button(key="export_go").click().run()
    out = env["ws"] / "exports" / "mine.jsonl"
    first = out.read_bytes()
    at.slider(key="export_percent").set_value(10.0).run()
    at.button(key="export_go").click().run()
    no_errors(at)
    assert any("mine.jsonl already exists" in w.value.replace("\\", "") for w in at.warning)
    assert out.read_bytes() == first                                          # not yet
    at.button(key="export_cancel").click().run()
    assert out.read_bytes() == first and not at.warning
    at.button(key="export_go").click().run()
    at.button(key="export_overwrite").click().run()
    no_errors(at)
    assert out.read_bytes() != first and len(load_dataset(out).pairs) == int(len(env["table"]) * 0.10)
