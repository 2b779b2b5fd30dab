"""AppTest over app.py: Data & score, Browse, Pair / tokens, the sidebar, and safe rendering of dataset text."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from ui import loaders, state
from ches.engine import jobs, store
from ches.engine.runs import list_runs, run_progress
from ches.review import decisions, tokenview
from ches import workspace as wsp
from conftest import HOSTILE, ROOT, SAMPLE, heading, kill_running_jobs, metric, my_counts, ok, said, write_pairs

TIMEOUT = 300


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
    return ok(at.switch_page(page).run())


def walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def elements(at: AppTest):
    for root in (at.main, at.sidebar):
        yield from walk(root)


def plain(text: str) -> str:
    """An element's Markdown text without its escapes (ui.render.escape_md backslash-escapes user text)."""
    return text.replace("\\", "")


class BarButton:
    """One of the decision bar's buttons (Keep / Drop / Flag / Undo: one custom component, ui/decisionbar.py).
    AppTest cannot drive a custom component, so `click` does what the page's script does: it appends the
    press {seq, client, pair, action, note} to the component's cumulative list of presses (its state)."""

    def __init__(self, at: AppTest, choice: str):
        from ui import decisionbar

        found = at.get("bidi_component")
        assert len(found) == 1, found
        self.at, self.choice, self.key = at, choice, decisionbar.KEY
        self.data = json.loads(found[0].proto.json)
        self.spec = next(b for b in self.data["buttons"] if b["action"] == choice)

    @property
    def disabled(self) -> bool:
        return not self.data["enabled"]

    @property
    def shortcut(self) -> str:
        return self.spec["shortcut"]

    def click(self, note: str = "") -> AppTest:
        assert not self.disabled, "the page's buttons are disabled"
        value = self.at.session_state[self.key] if self.key in self.at.session_state else {}
        presses = list(value.get("presses") or [])
        press = {"seq": len(presses) + 1, "client": "apptest", "pair": self.data["pair"], "action": self.choice,
                 "note": note}
        self.at.session_state[self.key] = {"presses": [*presses, press]}
        return self.at


def bar(at: AppTest, choice: str) -> BarButton:
    """The open pair's Keep / Drop / Flag / Undo button, as the page drew it."""
    return BarButton(at, choice)


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
    assert at.text_input(key="annotator_box").value == ""     # no made-up name: decisions wait for a real one
    for page in ("pages/browse.py", "pages/pair.py"):
        open_page(at, page)
        assert any("No run yet" in i.value for i in at.info)


# ---------------------------------------------------------------------------------- Data & score

def _until(at: AppTest, done, what: str, timeout: float = 300) -> AppTest:
    """Rerun the page (as its polling fragment would) until `done(at)`; a scoring job runs meanwhile."""
    started = time.monotonic()
    while True:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        if done(at):
            return at
        if time.monotonic() - started > timeout:
            logs = [j.log.read_text(errors="replace")[-2000:] for j in jobs.list_jobs(state.ws().jobs)]
            pytest.fail(f"no {what} after {timeout} s; job logs: {logs}")
        time.sleep(0.3)


def _progress(at: AppTest) -> list[str]:
    """Texts of the progress bars on the page (AppTest has no typed accessor for them)."""
    return [e.proto.text for e in at.get("progress")]


@pytest.fixture
def kill_jobs(workspace_env):
    """Any job a test leaves running (a failed one's, a token view's look-ahead) is killed at the end."""
    yield
    kill_running_jobs(workspace_env.workspace / "jobs")


def _score_form(model_dir, first: int) -> AppTest:
    """Data & score filled in: pairs.jsonl from the data root, the given model, max length 128, first N pairs."""
    at = app()
    at.run()
    at.radio(key="score_source").set_value("Path under the data root").run()
    at.text_input(key="score_path").set_value("pairs.jsonl").run()
    at.text_input(key="score_model").set_value(str(model_dir))
    at.number_input(key="score_max_length").set_value(128)
    at.number_input(key="score_limit").set_value(first).run()
    return at


@pytest.mark.slow
def test_scoring_is_a_job_a_second_tab_attaches_cancel_keeps_chunks_and_score_again_resumes(
        workspace_env, tiny_model_dir, slow_jobs, kill_jobs, monkeypatch):
    """Through the page, with real `ches estimate` and `ches score` processes (tiny model): estimate (a job, its
    sentence shown once kept), first N pairs, Score, a second session (another tab, another page) sees the job
    and cannot start it twice, Cancel, resume."""
    write_pairs(workspace_env.data_root / "pairs.jsonl", 60)
    first = 40                                   # in chunks of 16 (timing.chunk_size_for: at least 16)
    slow_jobs.slow(2.0)                          # per chunk: the Cancel lands before the third chunk is done
    monkeypatch.setenv("CHES_MODELS_ROOT", str(tiny_model_dir.parent))   # the app loads local models from there
    at = _score_form(tiny_model_dir, first)
    assert metric(at, "Pairs loaded") == "60" and not at.error

    at.button(key="score_estimate").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    _until(at, lambda at: any("pairs to score" in c.value for c in at.caption), "estimate")
    guess = [plain(c.value) for c in at.caption if "pairs to score" in c.value]
    assert guess[0].startswith(f"{first} pairs to score, ") and "(measured on a short warm-up)." in guess[0]
    assert re.search(r"\(estimated \d{4}-\d\d-\d\d \d\d:\d\d UTC\)$", guess[0])   # when it was measured
    words = sum(len(json.loads(line)[k].split()) for line in
                (workspace_env.data_root / "pairs.jsonl").read_text().splitlines()[:first] for k in ("chosen", "rejected"))
    tokens = int(re.search(r"([\d,]+) tokens;", plain(guess[0])).group(1).replace(",", ""))
    assert tokens > words                       # every word of both responses is a token at least, prompts on top

    at.button(key="score_go").click().run()
    assert not at.exception and not at.error
    (job,) = jobs.list_jobs(workspace_env.workspace / "jobs")
    assert "--limit" in job.args and job.args[job.args.index("--limit") + 1] == str(first)
    assert "--chunk-size" not in job.args                      # the CLI sizes the chunks (timing.chunk_size_for)
    assert job.label == f"pairs.jsonl · {first} pairs · {tiny_model_dir.name} · max 128 · auto"
    _until(at, lambda at: jobs.status(job).kept >= 16 and _progress(at), "progress after a chunk")
    assert re.match(r"\d+ / 40 pairs", _progress(at)[0])
    assert "run_dir" not in at.session_state                    # nothing opened before it is complete

    other = _score_form(tiny_model_dir, first)                  # a second tab, same settings
    other.button(key="score_go").click().run()
    assert any("already being scored" in plain(i.value) for i in other.info)
    assert [j.pid for j in jobs.list_jobs(workspace_env.workspace / "jobs")] == [job.pid]   # no second process
    open_page(other, "pages/browse.py")                          # another page: the sidebar shows the job
    assert other.sidebar.button(key=f"sidebar_cancel_{job.run_dir.name}") is not None

    at.button(key=f"main_cancel_{job.run_dir.name}").click().run()
    _until(at, lambda at: any("Score again to resume" in w.value for w in at.warning), "cancelled message")
    kept = run_progress(job.run_dir)
    assert kept is not None and not kept.complete and kept.done in (16, 32)
    assert any(plain(w.value).endswith(f"Scoring cancelled: {kept.done} of {first} pairs kept; Score again to resume.")
               for w in at.warning)
    assert not any("nothing was stored" in w.value for w in at.warning)
    assert "run_dir" not in at.session_state and list_runs(workspace_env.workspace / "runs") == []

    slow_jobs.fast()
    at.button(key="score_go").click().run()                      # Score again: resumes
    _until(at, lambda at: "run_dir" in at.session_state, "finished run")
    assert Path(at.session_state["run_dir"]) == job.run_dir
    assert any(f"Scored {first} pairs" in s.value for s in at.success)
    assert store.read_scores(job.run_dir)["row"].tolist() == list(range(1, first + 1))
    assert jobs.list_jobs(workspace_env.workspace / "jobs") == []   # a finished job leaves no record behind
    assert at.selectbox(key="_run_pick").value == str(job.run_dir)


def test_a_failed_job_shows_its_error_on_the_page(workspace_env):
    """A job that is over with an error event (its status file): the page shows that text, and Dismiss clears it."""
    folder = workspace_env.workspace / "jobs"
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = workspace_env.workspace / "runs" / "0123456789abcdef"
    (folder / "0123456789abcdef.log").write_text("loaded 3 pairs\nches: error: model 'nope': no such model\n")
    (folder / "0123456789abcdef.status.jsonl").write_text(
        json.dumps({"event": "error", "message": "model 'nope': no such model"}) + "\n")
    (folder / "0123456789abcdef.json").write_text(json.dumps({
        "run_dir": str(run_dir), "log": str(folder / "0123456789abcdef.log"), "pid": dead.pid, "args": [],
        "label": "three.jsonl · 3 pairs · nope · max 256", "started_at": "2025-01-01T00:00:00+00:00"}))
    at = app()
    at.run()
    assert not at.exception
    assert any(plain(e.value) == "three.jsonl · 3 pairs · nope · max 256: Scoring failed: model 'nope': no such model"
               for e in at.error), [e.value for e in at.error]
    at.button(key="main_dismiss_0123456789abcdef").click().run()
    assert not at.error and not list(folder.iterdir())


@pytest.fixture
def sleeper():
    """A process leading its own session that only sleeps: a running job's process, without a model."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def _live_job(workspace_env, pid: int, args: list[str], events: list[dict], label: str = "orca_val.jsonl") -> jobs.Job:
    """A job file for the run feedfacefeedface whose process `pid` is running (its real start time), started
    with `args`, with `events` in its status file."""
    from ches.engine.jobfile import process_start

    folder, run_dir = workspace_env.workspace / "jobs", workspace_env.workspace / "runs" / "feedfacefeedface"
    folder.mkdir(parents=True, exist_ok=True)
    file = jobs.job_file(folder, run_dir)
    writer = jobs.Events(file.with_suffix(".status.jsonl"))
    for event in events:
        writer(**event)
    writer.close()
    file.write_text(json.dumps({"run_dir": str(run_dir), "log": "", "pid": pid, "pid_started": process_start(pid),
                                "args": args, "label": label, "started_at": "2025-01-01T00:00:00+00:00"}))
    return jobs.read(file)


def test_a_live_job_keeps_its_cancel_and_impossible_figures_are_not_shown(workspace_env, sleeper):
    """The job's status file names another run and counts past its total: the job is live (its process runs),
    so it shows as scoring with its Cancel, here and in the sidebar, and the impossible count is not shown."""
    _live_job(workspace_env, sleeper.pid, [], [
        {"event": "planned", "run": "/elsewhere/runs/0123456789abcdef", "total": 5, "done": 0},
        {"event": "step", "what": "scoring"},
        {"event": "progress", "done": 1_000_000_000, "total": 5, "rate": 3.0, "seconds_left": 1.0}])
    at = app()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not at.button(key="main_cancel_feedfacefeedface").disabled
    (bar,) = map(plain, _progress(at))
    assert bar == "Scoring … · Not shown: the job's status file reports impossible figures (progress)"
    assert any(plain(c.value).startswith("Scoring orca_val.jsonl") for c in at.caption)
    open_page(at, "pages/browse.py")
    assert not at.sidebar.button(key="sidebar_cancel_feedfacefeedface").disabled


@pytest.mark.parametrize("where", ["data root", "upload"])
def test_a_reload_during_a_job_shows_the_data_being_scored(workspace_env, sleeper, where):
    """A fresh session of Data & score while a job scores orca_val.jsonl (a file in the data root, or an
    upload) shows that file, with the job's settings, beside "Scoring orca_val.jsonl", not the bundled sample."""
    folder = workspace_env.data_root if where == "data root" else workspace_env.workspace / "uploads" / "0123456789ab"
    folder.mkdir(parents=True, exist_ok=True)
    data = write_pairs(folder / "orca_val.jsonl", 60).resolve()
    args = jobs.score_args(data, runs=workspace_env.workspace / "runs", model="smollm2", max_length=512,
                           dtype="float32", limit=40)
    _live_job(workspace_env, sleeper.pid, args, [{"event": "step", "what": "loading the model smollm2"}],
              label="orca_val.jsonl · 40 pairs · smollm2 · max 512")
    at = app()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    if where == "data root":
        assert at.radio(key="score_source").value == "Path under the data root"
        assert at.text_input(key="score_path").value == "orca_val.jsonl"
    else:
        assert at.radio(key="score_source").value == "Upload a file"
        assert any("Being scored: `orca\\_val\\.jsonl`" in c.value for c in at.caption), [c.value for c in at.caption]
    assert metric(at, "Pairs loaded") == "60"
    assert (at.number_input(key="score_max_length").value, at.selectbox(key="score_dtype").value,
            at.number_input(key="score_limit").value) == (512, "float32", 40)
    assert any(plain(c.value).startswith("Scoring orca_val.jsonl · 40 pairs") for c in at.caption)


def test_the_form_of_a_running_job_names_only_what_the_page_may_read(workspace_env, sleeper, tmp_path):
    """A Hub job fills the Hub fields; a job reading a file outside the data root and the uploads (started
    from the command line) fills nothing: the page never shows a path it could not read itself."""
    from ui import jobspanel

    sources = ("sample", "upload", "path", "hub")
    hub = jobs.score_args("hf://datasets/owner/prefs", runs="r", model="smollm2", max_length=256, split="test")
    _live_job(workspace_env, sleeper.pid, hub, [])
    assert jobspanel.running_form(sources) == {
        "score_source": "hub", "score_hub_name": "owner/prefs", "score_hub_split": "test", "score_hub_config": "",
        "_hub_spec": ("owner/prefs", None, "test"), "score_model": "smollm2", "score_format": None,
        "score_max_length": 256, "score_dtype": "auto"}
    outside = write_pairs(tmp_path / "elsewhere.jsonl", 3)
    _live_job(workspace_env, sleeper.pid, jobs.score_args(outside, runs="r", model="m", max_length=256), [])
    assert jobspanel.running_form(sources) == {}


def test_score_page_reopens_a_stored_run_and_says_when_it_was_made_with_other_versions(workspace_env, monkeypatch):
    """The run for these settings exists: Score opens it (no job) and says that it was made by other library
    versions (store.version_notice)."""
    from ches.engine.records import load_records
    from conftest import make_fake_run

    runs = workspace_env.workspace / "runs"
    stored = make_fake_run(runs / "stored", load_records([{"prompt": "p", "chosen": "a", "rejected": "b"}],
                                                        source="one.jsonl"))
    manifest = json.loads((stored / "manifest.json").read_text())
    manifest["versions"] = {**store.library_versions(), "torch": "1.0.0"}       # made under an older torch
    (stored / "manifest.json").write_text(json.dumps(manifest))
    assert "torch 1.0.0 (now " in store.version_notice(stored)
    monkeypatch.setattr(loaders, "model_identity", lambda spec, dtype="auto": object())
    monkeypatch.setattr("ches.engine.store.run_key", lambda dataset, lm, max_length: SimpleNamespace(digest="stored"))
    at = app()
    at.run()
    at.button(key="score_go").click().run()
    assert not at.exception
    said = [plain(w.value) for w in at.warning]
    assert any("Reopened the stored run" in w and "nothing recomputed" in w and store.version_notice(stored) in w
               for w in said), said
    assert at.session_state["run_dir"] == str(stored) and jobs.list_jobs(workspace_env.workspace / "jobs") == []


def test_score_scores_a_damaged_stored_run_again_instead_of_reopening_it(workspace_env, monkeypatch):
    """The run for these settings is complete but its scores.parquet was cut short: Score does not reopen it but
    makes it unfinished and starts the job that scores it again (as `ches score` does), saying which file could
    not be read; the run's review plan stays. The Estimate says so before, at once (cheap reads: no job)."""
    from ches.engine.records import load_records
    from conftest import make_fake_run

    stored = make_fake_run(workspace_env.workspace / "runs" / "stored",
                           load_records([{"prompt": "p", "chosen": "a", "rejected": "b"}], source="one.jsonl"))
    (stored / "review.json").write_text('{"blind": true}')
    scores = stored / "scores.parquet"
    scores.write_bytes(scores.read_bytes()[: scores.stat().st_size // 2])          # cut short
    monkeypatch.setattr(loaders, "model_identity", lambda spec, dtype="auto": object())
    monkeypatch.setattr("ches.engine.store.run_key", lambda dataset, lm, max_length: SimpleNamespace(digest="stored"))
    started = []

    def start(jobs_dir, run_dir, args, **kw):
        started.append(Path(run_dir))
        return SimpleNamespace(started_at="2025-01-01T00:00:00+00:00"), True

    monkeypatch.setattr(jobs, "start", start)
    at = app()
    at.run()
    at.button(key="score_estimate").click().run()
    assert any("cannot be used (scores.parquet cannot be read): Score scores it again" in plain(c.value)
               for c in at.caption), [c.value for c in at.caption]
    assert store.is_complete(stored) and started == []                 # the Estimate changes nothing, starts no job
    at.button(key="score_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert started == [stored] and not store.is_complete(stored) and (stored / "review.json").exists()
    said = [plain(w.value) for w in at.warning]
    assert any("scores.parquet cannot be read (cut short or garbled" in w and "It is scored again" in w
               for w in said), said
    assert not any("Reopened the stored run" in plain(m.value) for m in [*at.success, *at.warning])
    assert "run_dir" not in at.session_state



@pytest.mark.slow
def test_the_estimate_is_a_job_a_second_tab_follows_it_and_a_cancelled_one_keeps_nothing(
        workspace_env, tiny_model_dir, task_jobs, monkeypatch):
    """Estimate starts `ches estimate` (a real process, the tiny model; held at start-up by the gate): its bar and
    Cancel show beside the buttons; a second tab with the same settings finds it and, like the first, shows the
    sentence it kept beside the run folder once done. Another Estimate, cancelled, says nothing was stored;
    Dismiss clears it. The page never loads the model (STILL_COMPUTED has no Data & score)."""
    from ches.engine import estimates

    write_pairs(workspace_env.data_root / "pairs.jsonl", 20)
    monkeypatch.setenv("CHES_MODELS_ROOT", str(tiny_model_dir.parent))
    at = _score_form(tiny_model_dir, 12)
    at.button(key="score_estimate").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (job,) = jobs.list_jobs(workspace_env.workspace / "jobs")
    assert job.kind == "estimate" and jobs.status(job).running and "--limit" in job.args
    assert _progress(at) and at.button(key=f"main_cancel_{job.name}") is not None
    assert not any("pairs to score" in c.value for c in at.caption)

    other = _score_form(tiny_model_dir, 12)                  # a second tab, the same settings: it finds the job
    assert other.button(key=f"main_cancel_{job.name}") is not None
    task_jobs.release()
    for tab in (other, at):
        _until(tab, lambda tab: any("pairs to score" in c.value for c in tab.caption), "estimate")
    kept = estimates.read(job.run_dir)
    assert kept is not None and kept.text.startswith("12 pairs to score, ")
    for tab in (other, at):
        assert [plain(c.value) for c in tab.caption if "pairs to score" in c.value] == [
            f"{kept.text} (estimated {kept.measured_at:%Y-%m-%d %H:%M} UTC)"]
    assert jobs.list_jobs(workspace_env.workspace / "jobs") == [] and not job.run_dir.exists()   # nothing scored

    task_jobs.hold()
    at.number_input(key="score_max_length").set_value(64).run()     # other settings: the estimate above is not theirs
    assert not any("pairs to score" in c.value for c in at.caption)
    at.button(key="score_estimate").click().run()
    (second,) = jobs.list_jobs(workspace_env.workspace / "jobs")
    at.button(key=f"main_cancel_{second.name}").click().run()
    _until(at, lambda at: any("nothing was stored" in w.value for w in at.warning), "cancelled estimate")
    assert any(plain(w.value).endswith("Time estimate cancelled: nothing was stored.") for w in at.warning)
    assert estimates.read(second.run_dir) is None and second.run_dir != job.run_dir
    at.button(key=f"main_dismiss_{second.name}").click().run()
    assert not at.warning and jobs.list_jobs(workspace_env.workspace / "jobs") == []


def test_an_upload_is_capped_once_decompressed_and_conversion_notes_are_shown(workspace_env, monkeypatch):
    import gzip
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setattr(wsp, "MAX_UPLOAD_BYTES", 4000)
    line = SAMPLE.read_text(encoding="utf-8").splitlines()[0] + "\n"
    bomb = gzip.compress((line * 40).encode())                  # small on the wire, over the cap once expanded
    assert len(bomb) < 4000 < len(line * 40)
    at = app()
    at.run()
    at.radio(key="score_source").set_value("Upload a file").run()
    at.file_uploader(key="score_upload").set_value(("many.jsonl.gz", bomb, "application/gzip")).run()
    assert not at.exception
    assert at.error and "once decompressed" in at.error[0].value
    when = pa.array([datetime(2024, 5, 1, 12, 30)], pa.timestamp("us"))
    buf = io.BytesIO()
    pq.write_table(pa.table({"prompt": ["p"], "chosen": ["a"], "rejected": ["b"], "when": when}), buf)
    at.file_uploader(key="score_upload").set_value(("dated.parquet", buf.getvalue(), "application/octet-stream")).run()
    assert not at.exception and not at.error and metric(at, "Pairs loaded") == "1"
    assert any("column 'when'" in plain(c.value) and "ISO 8601" in plain(c.value) for c in at.caption)


def test_path_outside_the_data_root_is_an_error_not_an_exception(workspace_env, tmp_path):
    outside = tmp_path / "outside.jsonl"
    outside.write_text(SAMPLE.read_text(encoding="utf-8").splitlines()[0] + "\n")
    at = app()
    at.run()
    at.radio(key="score_source").set_value("Path under the data root").run()
    for typed in ("../outside.jsonl", str(outside), "/etc/passwd"):
        at.text_input(key="score_path").set_value(typed).run()
        assert not at.exception
        assert at.error and "no such file or folder in the data root" in at.error[0].value   # outside reads as missing
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
    from ches.engine.records import load_records
    from conftest import make_fake_run

    runs = workspace_env.workspace / "runs"
    ds = load_records([{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(3)], source="uploads/"
                      "0123456789ab-three.jsonl")
    doomed, kept = make_fake_run(runs / "doomed", ds), make_fake_run(runs / "kept", ds, seed=2)
    db = wsp.workspace(workspace_env.workspace).decisions
    decisions.record(db, ds.pairs[0].pair_id, "drop", annotator="ann")
    before = decisions.history(db)
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
    assert decisions.history(db) == before                                    # decisions untouched
    assert [p for p, _ in list_runs(runs)] == [kept]


# ------------------------------------------------------------------------------------------- Browse

@pytest.mark.real_model
def test_browse_renders_ranked_and_filters_change_the_count(workspace_env, sample_run):
    at = open_page(app(sample_run), "pages/browse.py")
    ranked = ranked_rows(sample_run)
    assert metric(at, "Pairs in run") == "24" and metric(at, "Shown by filters") == "24"
    assert heading(at) == f"Row {ranked[0]} · rank 1 of 24"
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


def test_the_prompt_mismatch_expander_shows_only_where_the_flag_is_set(workspace_env, tmp_path):
    """A null rejected_prompt reads back as NaN (pandas 3): no pair without the flag shows it, as "nan" or else."""
    from ches.engine.records import load_records
    from conftest import make_fake_run

    rows = [{"chosen": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
             "rejected": [{"role": "user", "content": f"q{i}" if i else "another question"},
                          {"role": "assistant", "content": f"b{i}"}]} for i in range(4)]
    run = make_fake_run(tmp_path / "run", load_records(rows, source="mismatch.jsonl"))
    flags = store.read_scores(run).set_index("row")["flags"]
    assert flags[1] == "prompt_mismatch" and (flags.drop(1) == "").all()
    for row in (1, 2, 3, 4):
        at = open_page(app(run, pair_row=row), "pages/browse.py")
        assert heading(at).startswith(f"Row {row} ·")
        shown = [e.label for e in at.expander if "prompt differs" in e.label]
        assert shown == (["The rejected side's prompt differs (prompt_mismatch)"] if row == 1 else []), row
        texts = [plain(m.value) for m in at.markdown] + [t.value for t in at.text]
        assert "nan" not in texts, row
        if row == 1:
            assert "another question" in texts


def test_browse_keep_records_opens_next_and_undo_reverts(workspace_env, flagged_run):
    db = workspace_env.workspace / "decisions.sqlite"
    at = open_page(app(flagged_run, annotator="alice"), "pages/browse.py")
    ranked = ranked_rows(flagged_run)
    pid = store.read_scores(flagged_run).set_index("row")["pair_id"]
    assert heading(at).startswith(f"Row {ranked[0]} ·")
    assert at.session_state["pair_row"] == ranked[0]                   # Pair / tokens follows Browse
    table_id = at.dataframe[0].proto.id
    bar(at, "keep").click(note="fine pair").run()
    assert not at.exception
    now = decisions.current(db)
    assert set(now) == {pid[ranked[0]]}
    assert (now[pid[ranked[0]]].decision, now[pid[ranked[0]]].annotator, now[pid[ranked[0]]].note) == \
        ("keep", "alice", "fine pair")
    assert heading(at).startswith(f"Row {ranked[1]} ·")     # the next pair opened
    assert at.session_state["pair_row"] == ranked[1]
    assert at.dataframe[0].proto.id != table_id                       # a fresh table: the old tick is gone
    assert metric(at, "Decided by me") == "1" and my_counts(at) == "Keep **1** · Drop **0** · Flag **0**"
    bar(at, "drop").click().run()
    assert decisions.current(db)[pid[ranked[1]]].decision == "drop"
    assert heading(at).startswith(f"Row {ranked[2]} ·")
    # decision filter
    at.multiselect(key="browse_status").set_value(["undecided"]).run()
    assert metric(at, "Shown by filters") == "128"
    at.multiselect(key="browse_status").set_value([]).run()
    # Undo acts on my decision on the pair on screen: there is none on this one; on ranked[1], its drop only
    bar(at, "undo").click().run()
    assert f"Row {ranked[2]}: you have no decision here to undo" in said(at)
    assert len(decisions.current(db)) == 2
    at.session_state["pair_row"] = ranked[1]
    at.run()
    table_id = at.dataframe[0].proto.id
    bar(at, "undo").click().run()
    assert at.dataframe[0].proto.id != table_id
    assert set(decisions.current(db)) == {pid[ranked[0]]}          # the keep on ranked[0], decided first, stays
    assert heading(at).startswith(f"Row {ranked[1]} ·")   # the undone pair stays open
    assert f"Row {ranked[1]}: undid your drop" in said(at)


def test_sidebar_run_picker_switches_runs(workspace_env, flagged_run, tmp_path):
    from ches.engine.records import load_records
    from conftest import make_fake_run

    runs = workspace_env.workspace / "runs"
    other = make_fake_run(runs / "other", load_records([{"prompt": "p", "chosen": "a", "rejected": "b"}],
                                                       source="one.jsonl"))
    at = open_page(app(flagged_run), "pages/browse.py")
    assert metric(at, "Pairs in run") == "130"
    at.selectbox(key="_run_pick").set_value(str(other)).run()
    assert at.session_state["run_dir"] == str(other)
    assert metric(at, "Pairs in run") == "1"


def test_two_runs_of_one_file_made_the_same_minute_are_told_apart(workspace_env):
    """The run picker names two runs of one file (same model, same max length) made the same minute by what
    sets them apart (their dtype, the second each was made), not by their run ids alone."""
    from ches.engine.records import load_records
    from conftest import make_fake_run

    dataset = load_records([{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(3)],
                           source="orca_val.jsonl")
    for run_id, dtype, made in (("a" * 16, "float32", "10:00:05"), ("b" * 16, "bfloat16", "10:00:41")):
        run = make_fake_run(workspace_env.workspace / "runs" / run_id, dataset)
        m = json.loads((run / "manifest.json").read_text())
        m["key"]["dtype"], m["created_at"] = dtype, f"2025-01-01T{made}+00:00"
        (run / "manifest.json").write_text(json.dumps(m))
    at = app()
    at.run()
    labels = at.selectbox(key="_run_pick").options
    assert labels == ["orca_val.jsonl · 3 pairs · test/model · max 512 · bfloat16 · 2025-01-01 10:00:41 · bbbbbbbb",
                      "orca_val.jsonl · 3 pairs · test/model · max 512 · float32 · 2025-01-01 10:00:05 · aaaaaaaa"]
    folder = {"source": "x.jsonl", "pairs": 1, "created_at": "2025-01-01T10:00:05+00:00",
              "key": {"model_id": "/srv/models/tiny-llama", "max_length": 64, "dtype": "float32"}}
    assert loaders.run_label("/runs/cccccccccccccccc", folder) == \
        "x.jsonl · 1 pairs · tiny-llama · max 64 · float32 · 2025-01-01 10:00:05 · cccccccc"     # a model folder: its name


def test_decisions_wait_for_a_name(workspace_env, flagged_run):
    at = open_page(app(flagged_run), "pages/browse.py")
    assert bar(at, "keep").disabled and bar(at, "drop").disabled
    assert at.text_input(key="_name_prompt").label.startswith("Your name")
    at.text_input(key="_name_prompt").set_value("  Ada  ").run()
    assert at.session_state["annotator"] == "Ada" and at.text_input(key="annotator_box").value == "Ada"
    assert not bar(at, "keep").disabled and not [t for t in at.text_input if t.key == "_name_prompt"]


def test_review_mode_goes_to_the_next_undecided_pair(workspace_env, flagged_run):
    ranked = ranked_rows(flagged_run)
    pid = store.read_scores(flagged_run).set_index("row")["pair_id"]
    db = wsp.workspace(workspace_env.workspace).decisions
    decisions.record(db, pid[ranked[1]], "keep", annotator="rev")        # mine, decided earlier
    at = open_page(app(flagged_run, annotator="rev"), "pages/browse.py")
    at.segmented_control(key="browse_mode").set_value("review").run()
    assert not at.dataframe and not at.get("plotly_chart")                   # the pair and its buttons only
    assert heading(at).startswith(f"Row {ranked[0]} ·")
    bar(at, "drop").click().run()
    assert heading(at).startswith(f"Row {ranked[2]} ·")           # ranked[1] is decided by me: skipped
    assert f"Row {ranked[0]}: drop. Next undecided: row {ranked[2]}" in said(at)
    at.button(key="skip").click().run()
    assert heading(at).startswith(f"Row {ranked[3]} ·")
    assert decisions.current(db)[pid[ranked[0]]].decision == "drop" and pid[ranked[2]] not in decisions.current(db)


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
    assert heading(link).startswith("Row 77 ·") and link.session_state["annotator"] == "bob"
    assert link.query_params["row"] == "77" and link.session_state["pair_row"] == 77   # Pair / tokens' row too
    # a link to a run that is not here says so, and shows no stale pair
    stray = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    stray.query_params.update(run="../../etc", row="3")
    stray.run()
    assert not stray.exception and any("not in this workspace" in w.value for w in stray.warning)
    assert "run_dir" not in stray.session_state and "run" not in stray.query_params


def test_export_with_only_my_decisions_ignores_the_other_annotators(workspace_env, flagged_run):
    """Curate & export's "only mine" reads the decisions loader for this annotator: another annotator's drop,
    the latest on its pair, no longer applies, and an earlier keep of mine under it counts again."""
    t = store.read_scores(flagged_run)
    low = t.loc[t["flags"] == ""].sort_values("ln_ches")["pair_id"].tolist()   # kept by the default rule
    db = wsp.workspace(workspace_env.workspace).decisions
    decisions.record(db, low[0], "drop", annotator="alice")
    decisions.record(db, low[1], "drop", annotator="bob")
    decisions.record(db, low[2], "flag", annotator="alice")
    decisions.record(db, low[2], "drop", annotator="bob")                      # bob's is the latest on low[2]
    at = open_page(app(flagged_run, annotator="alice"), "pages/export.py")
    everyone = int(metric(at, "Pairs dropped")), int(metric(at, "Overridden by decisions"))
    at.toggle(key="export_only_mine").set_value(True).run()
    assert not at.exception
    mine = int(metric(at, "Pairs dropped")), int(metric(at, "Overridden by decisions"))
    assert everyone[1] == 3 and mine[1] == 1                                   # low[0..2] vs low[0] only
    assert mine[0] == everyone[0] - 2


def test_buttons_have_keyboard_shortcuts(workspace_env, flagged_run):
    at = open_page(app(flagged_run), "pages/browse.py")
    shortcuts = {k: bar(at, k).shortcut for k in ("keep", "drop", "flag", "undo")}
    assert {k: v.lower() for k, v in shortcuts.items()} == {"keep": "k", "drop": "d", "flag": "f", "undo": "u"}


# ---------------------------------------------------------------------------------- Pair / tokens

def _token_view(at: AppTest) -> AppTest:
    """Pair / tokens until its token view shows (its `ches tokens` job, a real process, has stored the row). AppTest
    reruns the last switch_page target, not a page the app switched to: target it."""
    at.switch_page("pages/pair.py")
    return _until(at, lambda at: any("per-token contributions sum to" in c.value for c in at.caption), "token view",
                  timeout=120)


@pytest.mark.real_model
def test_pair_page_contributions_sum_to_the_score(workspace_env, sample_run, kill_jobs):
    """The token view is a job for the opened row and the next AHEAD of the ranking: they open from disk."""
    ranked = ranked_rows(sample_run)
    at = open_page(app(sample_run), "pages/browse.py")
    at.button(key="tokens").click().run()                         # Browse -> Pair / tokens
    assert not at.exception
    assert at.title[0].value == "Pair / tokens"
    assert at.session_state["pair_row"] == ranked[0]
    assert any("token states in the background" in i.value for i in at.info)     # a job, not the page, computes
    (job,) = jobs.list_jobs(workspace_env.workspace / "jobs")
    assert job.kind == "tokens" and job.args == tuple(tokenview.tokens_args(sample_run, ranked[:tokenview.AHEAD + 1]))
    _token_view(at)
    caption = next(c.value for c in at.caption if "per-token contributions sum to" in c.value)
    total, shown, diff = map(float, re.search(r"sum to (\S+); the run stored (\S+) for this pair "
                                              r"\(difference (\S+),", caption).groups())
    stored = store.read_scores(sample_run).set_index("row").loc[ranked[0], "ln_ches"]
    assert shown == pytest.approx(stored, rel=1e-9)                 # the page compares with the stored score ...
    # ... and shows that difference (the caption prints the sum to 10 significant digits)
    assert diff == pytest.approx(total - stored, rel=1e-3, abs=abs(total) * 1e-9)
    assert total == pytest.approx(stored, rel=1e-3, abs=1e-3)     # batched run vs. this pair alone
    assert not any("differs from the stored one" in w.value for w in at.warning)
    # Keep on the token view: recorded, then the next undecided pair (by this page's metric) opens
    at.switch_page("pages/pair.py")
    assert bar(at, "keep").disabled                          # no name yet: asked for first
    at.text_input(key="_name_prompt").set_value("tina").run()
    assert at.title[0].value == "Pair / tokens" and not bar(at, "keep").disabled
    _until(at, lambda at: tokenview.stored_view(sample_run, ranked[1]) is not None, "the next row stored")
    bar(at, "keep").click().run()
    pid = store.read_scores(sample_run).set_index("row")["pair_id"]
    assert decisions.current(workspace_env.workspace / "decisions.sqlite")[pid[ranked[0]]].annotator == "tina"
    assert at.session_state["pair_row"] == ranked[1]
    assert not at.info and any("per-token contributions sum to" in c.value for c in at.caption)   # from disk
    bodies = [h.value for h in at.get("html")]
    assert len(bodies) == 4 and sum(b.count('class="tok ') for b in bodies[1:3]) > 20
    # raw CHES on another row (AppTest keeps re-requesting the last switch_page target: re-target it)
    at.switch_page("pages/pair.py")
    at.radio(key="pair_metric").set_value("ches").run()
    at.number_input(key="_pair_row_input").set_value(ranked[-1]).run()
    assert at.session_state["pair_row"] == ranked[-1]
    _token_view(at)                                               # a row not stored yet: another job
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
        assert heading(at).startswith(f"Row {row} ·")
        shown += _assert_rendered_safely(at)
    for payload in HOSTILE:
        assert any(payload in t for t in shown), payload
    assert any(t.startswith("<script>alert(1)</script> question") for t in shown)   # a prompt turn


@pytest.mark.real_model
def test_hostile_texts_show_literally_on_pair_page(workspace_env, hostile_run, real_lm):
    tokenview.store_views(hostile_run, [1], real_lm)                 # as its `ches tokens` job would
    at = open_page(app(hostile_run, pair_row=1), "pages/pair.py")
    texts = _assert_rendered_safely(at)
    assert any(HOSTILE[0] in t for t in texts)                      # the prompt, in the expander
    shown = " ".join(_html_text(h.value) for h in at.get("html"))
    assert "&lt;" in shown and "&gt;" in shown                      # '<' and '>' tokens, shown escaped
    assert "<script" not in shown and "<img" not in shown
