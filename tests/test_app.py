"""AppTest over app.py: Data & score, Browse, Pair / tokens, the sidebar, and safe rendering of dataset text."""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

import ui
from ches import annotations, store
from ches import workspace as wsp
from ches.embed import Cancelled
from conftest import HOSTILE, ROOT, SAMPLE

TIMEOUT = 300
pytestmark = pytest.mark.usefixtures("navigation_pages")


def app(run_dir: Path | None = None, **state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    if run_dir is not None:
        at.session_state["run_dir"] = str(run_dir)
    for k, v in state.items():
        at.session_state[k] = v
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    """Run the app once (switch_page needs the registered pages), then open `page`."""
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return found[0]


def walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def elements(at: AppTest):
    for root in (at.main, at.sidebar):
        yield from walk(root)


def plain(text: str) -> str:
    """An element's Markdown text without its escapes (ui.escape_md backslash-escapes user text)."""
    return text.replace("\\", "")


def ranked_rows(run_dir: Path, metric_name: str = "ln_ches") -> list[int]:
    t = store.read_scores(run_dir)
    return t.sort_values([metric_name, "row"], ascending=[False, True])["row"].tolist()


# ------------------------------------------------------------------------------------ navigation

def test_app_starts_on_data_and_score_with_empty_states(workspace_env):
    at = app()
    at.run()
    assert not at.exception
    assert at.title[0].value == "Data & score"
    assert metric(at, "Pairs loaded") == "165"          # the bundled sample is preselected
    assert at.text_input(key="score_model").value == "smollm2"
    assert at.number_input(key="score_max_length").value == 2048
    assert at.text_input(key="annotator").value == ""     # no made-up name: decisions wait for a real one
    for page in ("pages/browse.py", "pages/pair.py"):
        open_page(at, page)
        assert any("No run yet" in i.value for i in at.info)


# ---------------------------------------------------------------------------------- Data & score

def _write_tiny(data_root: Path, n: int = 4) -> Path:
    path = data_root / "tiny.jsonl"
    path.write_text("".join(SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)[:n]), encoding="utf-8")
    return path


@pytest.mark.real_model
def test_score_page_scores_a_tiny_dataset_end_to_end(workspace_env):
    _write_tiny(workspace_env.data_root)
    at = app()
    at.run()
    at.radio(key="score_source").set_value("Path under the data root").run()
    at.text_input(key="score_path").set_value("tiny.jsonl").run()
    assert not at.error and metric(at, "Pairs loaded") == "4"
    at.number_input(key="score_max_length").set_value(256)
    at.button(key="score_go").click().run()
    assert not at.exception and not at.error
    run_dir = Path(at.session_state["run_dir"])
    assert run_dir.parent == workspace_env.workspace.resolve() / "runs"
    m = store.read_manifest(run_dir)
    assert m["pairs"] == 4 and m["key"]["max_length"] == 256
    assert any("Scored 4 pairs" in s.value for s in at.success)
    # the run is listed in the runs table and in the sidebar picker
    assert "tiny.jsonl" in at.dataframe[-1].value["dataset"].tolist()
    assert at.selectbox(key="_run_pick").value == str(run_dir)


def test_score_page_cancel_stores_nothing(workspace_env, monkeypatch):
    """should_stop is wired to the Cancel flag; a Cancelled run shows a warning, not a traceback."""
    seen = {}

    def fake_score(dataset, lm, *, runs_root, max_length, progress, should_stop):
        progress(2, 8)
        seen["should_stop"] = should_stop()
        raise Cancelled()

    monkeypatch.setattr(ui, "model", lambda spec, dtype="auto": object())
    monkeypatch.setattr("ches.pipeline.run_key", lambda dataset, lm, max_length: SimpleNamespace(digest="none"))
    monkeypatch.setattr("ches.pipeline.score_dataset", fake_score)
    at = app()
    at.run()
    at.button(key="score_go").click().run()
    assert not at.exception
    assert seen == {"should_stop": False}
    assert any("cancelled" in w.value for w in at.warning)
    assert "run_dir" not in at.session_state
    assert store.list_runs(workspace_env.workspace / "runs") == []
    # the Cancel button's callback sets the flag that should_stop reads
    at.session_state["_cancel_scoring"] = True
    at.run()
    assert any("cancelled" in w.value for w in at.warning)


def test_score_page_says_when_it_reopens_a_stored_run(workspace_env, monkeypatch):
    """score_dataset returns an existing run for the same key: the page says so instead of the old run's time."""
    from ches.data import load_records
    from conftest import make_fake_run

    runs = workspace_env.workspace / "runs"
    stored = make_fake_run(runs / "stored", load_records([{"prompt": "p", "chosen": "a", "rejected": "b"}],
                                                        source="one.jsonl"))
    digest = {"value": "stored"}
    monkeypatch.setattr(ui, "model", lambda spec, dtype="auto": object())
    monkeypatch.setattr("ches.pipeline.run_key", lambda dataset, lm, max_length: SimpleNamespace(digest=digest["value"]))
    monkeypatch.setattr("ches.pipeline.score_dataset", lambda *a, **k: stored)
    at = app()
    at.run()
    at.button(key="score_go").click().run()
    assert not at.exception
    assert any("Reopened the stored run" in s.value and "nothing recomputed" in s.value for s in at.success)
    assert not any("Scored" in s.value for s in at.success)
    digest["value"] = "not-there-yet"                             # a fresh key: the usual message
    at.button(key="score_go").click().run()
    assert any("Scored 1 pairs in" in s.value for s in at.success)


def test_path_outside_the_data_root_is_an_error_not_an_exception(workspace_env, tmp_path):
    outside = tmp_path / "outside.jsonl"
    outside.write_text(SAMPLE.read_text(encoding="utf-8").splitlines()[0] + "\n")
    at = app()
    at.run()
    at.radio(key="score_source").set_value("Path under the data root").run()
    for typed in ("../outside.jsonl", str(outside), "/etc/passwd"):
        at.text_input(key="score_path").set_value(typed).run()
        assert not at.exception
        assert at.error and "outside the allowed folder" in at.error[0].value
        assert not [m for m in at.metric if m.label == "Pairs loaded"]
        assert at.button(key="score_go").disabled


def test_missing_file_and_bad_rows_are_reported(workspace_env):
    good = SAMPLE.read_text(encoding="utf-8").splitlines()[:3]
    (workspace_env.data_root / "mixed.jsonl").write_text("\n".join([good[0], "{not json", good[1], '{"a": 1}', good[2]]))
    at = app()
    at.run()
    at.radio(key="score_source").set_value("Path under the data root").run()
    at.text_input(key="score_path").set_value("nope.jsonl").run()
    assert not at.exception and "no such file" in at.error[0].value
    at.text_input(key="score_path").set_value("mixed.jsonl").run()
    assert not at.exception and not at.error
    assert metric(at, "Pairs loaded") == "3" and metric(at, "Rows skipped") == "2"
    bad = at.dataframe[0].value
    assert bad["row"].tolist() == [2, 4] and bad["reason"].str.len().min() > 0


def test_upload_over_the_limit_gives_a_clear_message(workspace_env, monkeypatch):
    monkeypatch.setattr(wsp, "MAX_UPLOAD_BYTES", 1000)
    at = app()
    at.run()
    at.radio(key="score_source").set_value("Upload a file").run()
    at.file_uploader(key="score_upload").set_value(("big.jsonl", b" " * 5000, "application/json")).run()
    assert not at.exception
    assert at.error and "limited to" in at.error[0].value
    assert not list((workspace_env.workspace / "uploads").iterdir())
    # a small upload is stored under uploads/<sha12>/<name> and loaded
    line = SAMPLE.read_text(encoding="utf-8").splitlines()[0] + "\n"
    at.file_uploader(key="score_upload").set_value(("my data.jsonl", line.encode(), "application/json")).run()
    assert not at.exception and not at.error
    assert metric(at, "Pairs loaded") == "1"
    (folder,) = (workspace_env.workspace / "uploads").iterdir()
    assert re.fullmatch(r"[0-9a-f]{12}", folder.name) and [f.name for f in folder.iterdir()] == ["my_data.jsonl"]


def test_a_rejected_upload_replaces_the_previous_message(workspace_env):
    at = app()
    at.run()
    at.radio(key="score_source").set_value("Upload a file").run()
    at.file_uploader(key="score_upload").set_value(("broken.jsonl", b"{not json\n", "application/json")).run()
    shown = lambda: [plain(e.value) for e in at.error]                      # noqa: E731
    assert len(shown()) == 1 and shown()[0].startswith("broken.jsonl: ")     # the file's name first, no hash
    at.file_uploader(key="score_upload").set_value(("notes.txt", b"hello", "text/plain")).run()
    assert not at.exception and len(shown()) == 1
    assert shown()[0].startswith("notes.txt: unsupported file type")


def test_a_csv_in_no_known_format_is_loaded_through_a_column_mapping(workspace_env):
    csv = 'question,better,worse\nWhat is 2+2?,4,5\nSay hi,hi,go away\nBroken row,only\n'
    at = app()
    at.run()
    at.radio(key="score_source").set_value("Upload a file").run()
    at.file_uploader(key="score_upload").set_value(("mine.csv", csv.encode(), "text/csv")).run()
    assert not at.exception and not at.error
    assert any("no known format has the columns" in w.value for w in at.warning)
    assert at.selectbox(key="score_map_prompt").options == ["question", "better", "worse"]
    assert at.button(key="score_go").disabled
    at.selectbox(key="score_map_prompt").set_value("question")
    at.selectbox(key="score_map_chosen").set_value("better")
    at.selectbox(key="score_map_rejected").set_value("worse")
    at.button(key="FormSubmitter:score_mapping-Load with these columns").click().run()
    assert not at.exception and not at.error
    assert metric(at, "Pairs loaded") == "2" and metric(at, "Rows skipped") == "1"
    assert metric(at, "Format") == "trl_standard" and not at.button(key="score_go").disabled
    assert any("chosen ← better" in c.value for c in at.caption)


def test_runs_list_sizes_and_deletes_a_run_after_confirmation_keeping_decisions(workspace_env):
    from ches.data import load_records
    from conftest import make_fake_run

    runs = workspace_env.workspace / "runs"
    ds = load_records([{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(3)], source="uploads/"
                      "0123456789ab-three.jsonl")
    doomed, kept = make_fake_run(runs / "doomed", ds), make_fake_run(runs / "kept", ds, seed=2)
    db = wsp.workspace(workspace_env.workspace).decisions
    annotations.record(db, ds.pairs[0].pair_id, "drop", annotator="ann")
    before = annotations.history(db)
    at = app(doomed)
    at.run()
    shown = at.dataframe[-1].value
    assert shown["dataset"].tolist() == ["three.jsonl", "three.jsonl"]          # the name, not the hash
    expected_mb = sum(f.stat().st_size for f in doomed.rglob("*") if f.is_file()) / 1e6
    assert shown.set_index("run").loc[str(doomed), "size MB"] == pytest.approx(expected_mb)
    at.selectbox(key="score_delete_pick").set_value(str(doomed)).run()
    at.button(key="score_delete").click().run()
    assert doomed.is_dir() and any("Delete three.jsonl" in plain(w.value) for w in at.warning)   # asks first
    at.button(key="score_delete_cancel").click().run()
    assert doomed.is_dir() and not any("Delete three.jsonl" in plain(w.value) for w in at.warning)
    at.button(key="score_delete").click().run()
    at.button(key="score_delete_confirm").click().run()
    assert not at.exception and not doomed.exists() and kept.is_dir()
    assert "run_dir" not in at.session_state                                    # it was the active run
    assert annotations.history(db) == before                                    # decisions untouched
    assert [p for p, _ in store.list_runs(runs)] == [kept]


# ------------------------------------------------------------------------------------------- Browse

@pytest.mark.real_model
def test_browse_renders_ranked_and_filters_change_the_count(workspace_env, sample_run):
    at = open_page(app(sample_run), "pages/browse.py")
    ranked = ranked_rows(sample_run)
    assert metric(at, "Pairs in run") == "24" and metric(at, "Shown by filters") == "24"
    assert at.subheader[0].value == f"Row {ranked[0]} · rank 1 of 24"
    table = at.dataframe[0].value
    assert table["row"].tolist() == ranked                        # riskiest first
    at.slider(key="browse_pct").set_value((50, 100)).run()
    assert metric(at, "Shown by filters") == "13"                  # percentiles 12/24 .. 24/24, inclusive
    assert set(at.dataframe[0].value["row"]) == set(ranked[:13])
    at.slider(key="browse_pct").set_value((0, 100)).run()
    at.selectbox(key="browse_metric").set_value("ches").run()
    assert at.dataframe[0].value["row"].tolist() == ranked_rows(sample_run, "ches")
    at.text_input(key="browse_query").set_value("LAUNDER").run()
    texts = store.read_texts(sample_run)
    expect = {int(r.row) for r in texts.itertuples() if "launder" in (r.prompt + r.chosen + r.rejected).lower()}
    assert expect and metric(at, "Shown by filters") == str(len(expect))
    assert set(at.dataframe[0].value["row"]) == expect


def test_browse_flags_focus_rows_and_paging(workspace_env, flagged_run):
    at = open_page(app(flagged_run), "pages/browse.py")
    assert metric(at, "Shown by filters") == "130" and metric(at, "With data flags") == "3"
    assert len(at.dataframe[0].value) == 50                       # one page of the ranking
    at.number_input(key="browse_page").set_value(3).run()
    assert len(at.dataframe[0].value) == 30
    at.multiselect(key="browse_flags").set_value(["identical", "empty_rejected"]).run()
    assert metric(at, "Shown by filters") == "2"
    assert set(at.dataframe[0].value["row"]) == {3, 8}
    at.multiselect(key="browse_flags").set_value([]).run()
    # rows chosen elsewhere (the map's lasso) narrow the table until cleared
    at.session_state["focus_rows"] = [10, 20, 30]
    at.run()
    assert metric(at, "Shown by filters") == "3"
    at.button(key="browse_clear_focus").click().run()
    assert metric(at, "Shown by filters") == "130" and "focus_rows" not in at.session_state


def test_browse_keep_records_opens_next_and_undo_reverts(workspace_env, flagged_run):
    db = workspace_env.workspace / "decisions.sqlite"
    at = open_page(app(flagged_run, annotator="alice"), "pages/browse.py")
    ranked = ranked_rows(flagged_run)
    pid = store.read_scores(flagged_run).set_index("row")["pair_id"]
    assert at.subheader[0].value.startswith(f"Row {ranked[0]} ·")
    assert at.session_state["pair_row"] == ranked[0]                   # Pair / tokens follows Browse
    table_id = at.dataframe[0].proto.id
    at.text_input(key="note").set_value("fine pair")
    at.button(key="keep").click().run()
    assert not at.exception
    now = annotations.current(db)
    assert set(now) == {pid[ranked[0]]}
    assert (now[pid[ranked[0]]].decision, now[pid[ranked[0]]].annotator, now[pid[ranked[0]]].note) == \
        ("keep", "alice", "fine pair")
    assert at.subheader[0].value.startswith(f"Row {ranked[1]} ·")     # the next pair opened
    assert at.session_state["pair_row"] == ranked[1]
    assert at.dataframe[0].proto.id != table_id                       # a fresh table: the old tick is gone
    assert at.text_input(key="note").value == ""
    assert metric(at, "Decided") == "1" and metric(at, "Keep") == "1"  # page tile and sidebar tile
    at.button(key="drop").click().run()
    assert annotations.current(db)[pid[ranked[1]]].decision == "drop"
    assert at.subheader[0].value.startswith(f"Row {ranked[2]} ·")
    # decision filter
    at.multiselect(key="browse_status").set_value(["undecided"]).run()
    assert metric(at, "Shown by filters") == "128"
    at.multiselect(key="browse_status").set_value([]).run()
    # undo walks back, newest first, and reopens the undone pair
    table_id = at.dataframe[0].proto.id
    at.button(key="undo").click().run()
    assert at.dataframe[0].proto.id != table_id
    assert set(annotations.current(db)) == {pid[ranked[0]]}
    assert at.subheader[0].value.startswith(f"Row {ranked[1]} ·")
    at.button(key="undo").click().run()
    assert annotations.current(db) == {}
    assert at.subheader[0].value.startswith(f"Row {ranked[0]} ·")
    at.button(key="undo").click().run()
    assert any("Nothing to undo" in i.value for i in at.info)


def test_sidebar_run_picker_switches_runs(workspace_env, flagged_run, tmp_path):
    from ches.data import load_records
    from conftest import make_fake_run

    runs = workspace_env.workspace / "runs"
    other = make_fake_run(runs / "other", load_records([{"prompt": "p", "chosen": "a", "rejected": "b"}],
                                                       source="one.jsonl"))
    at = open_page(app(flagged_run), "pages/browse.py")
    assert metric(at, "Pairs in run") == "130"
    at.selectbox(key="_run_pick").set_value(str(other)).run()
    assert at.session_state["run_dir"] == str(other)
    assert metric(at, "Pairs in run") == "1"


def test_decisions_wait_for_a_name(workspace_env, flagged_run):
    at = open_page(app(flagged_run), "pages/browse.py")
    assert at.button(key="keep").disabled and at.button(key="drop").disabled
    assert at.text_input(key="_name_prompt").label.startswith("Your name")
    at.text_input(key="_name_prompt").set_value("  Ada  ").run()
    assert at.session_state["annotator"] == "Ada" and at.text_input(key="annotator").value == "Ada"
    assert not at.button(key="keep").disabled and not [t for t in at.text_input if t.key == "_name_prompt"]


def test_review_mode_goes_to_the_next_undecided_pair(workspace_env, flagged_run):
    ranked = ranked_rows(flagged_run)
    pid = store.read_scores(flagged_run).set_index("row")["pair_id"]
    db = wsp.workspace(workspace_env.workspace).decisions
    annotations.record(db, pid[ranked[1]], "keep", annotator="earlier")
    at = open_page(app(flagged_run, annotator="rev"), "pages/browse.py")
    at.segmented_control(key="browse_mode").set_value("review").run()
    assert not at.dataframe and not at.get("plotly_chart")                   # the pair and its buttons only
    assert at.subheader[0].value.startswith(f"Row {ranked[0]} ·")
    at.button(key="drop").click().run()
    assert at.subheader[0].value.startswith(f"Row {ranked[2]} ·")           # ranked[1] is decided: skipped
    assert any(f"Row {ranked[0]}: drop. Next undecided: row {ranked[2]}" in plain(s.value) for s in at.success)
    at.button(key="skip").click().run()
    assert at.subheader[0].value.startswith(f"Row {ranked[3]} ·")
    assert annotations.current(db)[pid[ranked[0]]].decision == "drop" and pid[ranked[2]] not in annotations.current(db)


def test_the_url_keeps_run_row_and_annotator_and_a_deep_link_opens_that_pair(workspace_env, flagged_run):
    import shutil

    run = workspace_env.workspace / "runs" / "0123456789abcdef"
    shutil.copytree(flagged_run, run)
    at = app(run, annotator="ann")
    open_page(at, "pages/browse.py")
    first = ranked_rows(run)[0]
    assert at.query_params == {"run": run.name, "row": str(first), "annotator": "ann"}
    # a fresh session (a reload, a bookmark, a shared link) with those parameters lands on the same pair
    link = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    link.query_params.update(run=run.name, row="77", annotator="bob")
    link.run()
    link.switch_page("pages/browse.py").run()
    assert not link.exception
    assert link.subheader[0].value.startswith("Row 77 ·") and link.session_state["annotator"] == "bob"
    assert link.query_params["row"] == "77" and link.session_state["pair_row"] == 77   # Pair / tokens' row too
    # a link to a run that is not here says so, and shows no stale pair
    stray = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    stray.query_params.update(run="../../etc", row="3")
    stray.run()
    assert not stray.exception and any("not in this workspace" in w.value for w in stray.warning)
    assert "run_dir" not in stray.session_state and "run" not in stray.query_params


def test_buttons_have_keyboard_shortcuts(workspace_env, flagged_run):
    at = open_page(app(flagged_run), "pages/browse.py")
    shortcuts = {k: at.button(key=k).proto.shortcut for k in ("keep", "drop", "flag", "undo")}
    assert {k: v.lower() for k, v in shortcuts.items()} == {"keep": "k", "drop": "d", "flag": "f", "undo": "u"}


# ---------------------------------------------------------------------------------- Pair / tokens

@pytest.mark.real_model
def test_pair_page_contributions_sum_to_the_score(workspace_env, sample_run):
    ranked = ranked_rows(sample_run)
    at = open_page(app(sample_run), "pages/browse.py")
    at.button(key="tokens").click().run()                         # Browse -> Pair / tokens
    assert not at.exception
    assert at.title[0].value == "Pair / tokens"
    assert at.session_state["pair_row"] == ranked[0]
    caption = next(c.value for c in at.caption if "per-token contributions sum to" in c.value)
    total, shown, diff = map(float, re.search(r"sum to (\S+); the run stored (\S+) for this pair "
                                              r"\(difference (\S+),", caption).groups())
    stored = store.read_scores(sample_run).set_index("row").loc[ranked[0], "ln_ches"]
    assert shown == pytest.approx(stored, rel=1e-9)                 # the page compares with the stored score ...
    assert diff == pytest.approx(total - stored, rel=1e-3, abs=1e-12)  # ... and shows that difference
    assert total == pytest.approx(stored, rel=1e-3, abs=1e-3)     # batched run vs. this pair alone
    assert not any("differs from the stored one" in w.value for w in at.warning)
    # Keep on the token view: recorded, then the next undecided pair (by this page's metric) opens
    at.switch_page("pages/pair.py")
    assert at.button(key="keep").disabled                          # no name yet: asked for first
    at.text_input(key="_name_prompt").set_value("tina").run()
    assert at.title[0].value == "Pair / tokens" and not at.button(key="keep").disabled
    at.button(key="keep").click().run()
    pid = store.read_scores(sample_run).set_index("row")["pair_id"]
    assert annotations.current(workspace_env.workspace / "decisions.sqlite")[pid[ranked[0]]].annotator == "tina"
    assert at.session_state["pair_row"] == ranked[1]
    bodies = [h.value for h in at.get("html")]
    assert len(bodies) == 4 and sum(b.count('class="tok ') for b in bodies[1:3]) > 20
    # raw CHES on another row (AppTest keeps re-requesting the last switch_page target: re-target it)
    at.switch_page("pages/pair.py")
    at.radio(key="pair_metric").set_value("ches").run()
    at.number_input(key="_pair_row_input").set_value(ranked[-1]).run()
    assert at.session_state["pair_row"] == ranked[-1]
    caption = next(c.value for c in at.caption if "per-token contributions sum to" in c.value)
    total = float(re.search(r"sum to (\S+);", caption).group(1))
    stored = store.read_scores(sample_run).set_index("row").loc[ranked[-1], "ches"]
    assert total == pytest.approx(stored, rel=1e-3)


# ------------------------------------------------------------------------------- hostile texts

def _html_text(body: str) -> str:
    """The body of an st.html element with our own <div>/<span> tags removed (attributes must be escaped)."""
    return re.sub(r"<(?:span|div)\b[^<>]*>|</(?:span|div)>", "", body)


def _assert_rendered_safely(at: AppTest) -> list[str]:
    """Dataset text appears only as literal text; HTML elements hold only our own span/div tags."""
    texts = []
    for el in elements(at):
        kind = getattr(el, "type", None)
        if kind == "text":
            texts.append(el.value)
        elif kind == "html":
            assert not re.search(r"[<>]", _html_text(el.value)), el.value   # only our own tags hold < and >
        elif kind in ("markdown", "caption", "alert", "error", "warning", "info", "success") or \
                type(el).__name__ in ("Markdown", "Caption", "Error", "Warning", "Info", "Success"):
            value = str(getattr(el, "value", ""))
            assert "<script" not in value and "<img" not in value and "](http://evil.example)" not in value
            assert not getattr(el.proto, "allow_html", False) or "evil" not in value
    return texts


@pytest.mark.real_model
def test_hostile_texts_show_literally_on_browse(workspace_env, hostile_run):
    shown = []
    for row in (1, 2):
        at = open_page(app(hostile_run, pair_row=row), "pages/browse.py")
        assert at.subheader[0].value.startswith(f"Row {row} ·")
        shown += _assert_rendered_safely(at)
    for payload in HOSTILE:
        assert any(payload in t for t in shown), payload
    assert any(t.startswith("<script>alert(1)</script> question") for t in shown)   # a prompt turn


@pytest.mark.real_model
def test_hostile_texts_show_literally_on_pair_page(workspace_env, hostile_run):
    at = open_page(app(hostile_run, pair_row=1), "pages/pair.py")
    texts = _assert_rendered_safely(at)
    assert any(HOSTILE[0] in t for t in texts)                      # the prompt, in the expander
    shown = " ".join(_html_text(h.value) for h in at.get("html"))
    assert "&lt;" in shown and "&gt;" in shown                      # '<' and '>' tokens, shown escaped
    assert "<script" not in shown and "<img" not in shown
