"""Scoring jobs (ches/engine/jobs.py): real `python -m ches score` processes on a tiny random model.

Start twice at once: one job, the other start attaches. Cancel: the process group gets SIGTERM between
batches, the finished chunks stay, the run is not complete; starting again resumes and completes with the
same table as an uninterrupted run. A failing job's error reaches the caller as text. The status comes
from the job's events, never from what it prints for people: with every printed word reworded (rot13)
the status is the same.
"""
from __future__ import annotations

import codecs
import contextlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from ches.engine import jobs, store
from ches.engine.runs import list_runs, run_progress
from ches.engine.jobfile import process_start
from ches.engine.files import load_dataset
from ches.engine.models import load_model
from ches.engine.pipeline import run_key, score_dataset
from conftest import kill_running_jobs, write_pairs

MAX_LENGTH = 128
CHUNK = 8
PAIRS = 64
WAIT_S = 300                 # a process imports torch and loads the model first: slow on a shared CPU


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("jobdata") / "pairs.jsonl", PAIRS)


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
    return load_model(str(tiny_model_dir))


@pytest.fixture
def jobs_dir(tmp_path):
    """The jobs folder; any job still running when the test ends (a failed test) is killed."""
    folder = tmp_path / "jobs"
    yield folder
    kill_running_jobs(folder)


REWORD_SITE = """
import codecs, sys
if sys.orig_argv[1:4] == ["-m", "ches", "score"]:          # the job's process: every word it prints reworded
    class Reworded:
        def __init__(self, inner):
            self.inner = inner
        def write(self, text):
            return self.inner.write(codecs.encode(text, "rot13"))
        def __getattr__(self, name):
            return getattr(self.inner, name)
    sys.stdout, sys.stderr = Reworded(sys.stdout), Reworded(sys.stderr)
"""


@pytest.fixture
def reworded(tmp_path) -> dict[str, str]:
    """An environment for jobs.start under which the job prints everything in rot13."""
    site = tmp_path / "reword-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(REWORD_SITE)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


def args(data: Path, model: Path, runs: Path, *extra: str) -> list[str]:
    return [str(data), "--model", str(model), "--max-length", str(MAX_LENGTH), "--chunk-size", str(CHUNK),
            "--batch-tokens", "256", "--out", str(runs), *extra]


def wait(job: jobs.Job, until, timeout: float = WAIT_S) -> jobs.JobStatus:
    started = time.monotonic()
    while True:
        state = jobs.status(job)
        if until(state):
            return state
        if time.monotonic() - started > timeout:
            pytest.fail(f"job still {state} after {timeout} s; log:\n{job.log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)


def group_gone(pid: int, timeout: float = 10) -> bool:
    """No process is left in the job's group (its exited leader is reaped by start's waiter thread)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_start_attach_cancel_keeps_chunks_and_a_second_start_resumes(tmp_path, jobs_dir, data, tiny_model_dir,
                                                                    tiny_lm, slow_jobs):
    runs = tmp_path / "runs"
    dataset = load_dataset(data)
    run_dir = store.run_path(runs, run_key(dataset, tiny_lm, MAX_LENGTH))   # what the page computes
    argv = args(data, tiny_model_dir, runs)

    with ThreadPoolExecutor(2) as pool:            # two users press Score at the same moment
        (a, started_a), (b, started_b) = pool.map(lambda _: jobs.start(jobs_dir, run_dir, argv, label="pairs"),
                          range(2))
    assert sorted([started_a, started_b]) == [False, True]
    job = a if started_a else b
    assert job.pid is not None and jobs.find(jobs_dir, run_dir).pid == job.pid    # the second start found this one
    assert [j.run_dir for j in jobs.list_jobs(jobs_dir)] == [run_dir]

    running = wait(job, lambda s: s.kept >= CHUNK)          # at least one chunk committed
    assert running.state == "running" and running.total == PAIRS and running.estimate.startswith(f"{PAIRS} pairs to score")
    assert jobs.cancel(job)
    over = wait(job, lambda s: not s.running)
    assert over.state == "cancelled", over
    assert group_gone(job.pid)
    on_disk = run_progress(run_dir)
    assert on_disk is not None and not on_disk.complete and not store.is_complete(run_dir)
    assert CHUNK <= on_disk.done < PAIRS and on_disk.done % CHUNK == 0
    assert (over.kept, over.done, over.total) == (on_disk.done, on_disk.done, PAIRS)
    assert f"interrupted: {on_disk.done} of {PAIRS} pairs kept" in job.log.read_text()   # the CLI's own words
    assert list_runs(runs) == []                       # an incomplete run is never listed as a run
    assert not jobs.cancel(job)                              # over: nothing to cancel

    slow_jobs.fast()
    resumed, started = jobs.start(jobs_dir, run_dir, argv)                  # at full speed
    assert started and resumed.pid != job.pid
    final = wait(resumed, lambda s: not s.running)
    assert final.state == "complete", (final, resumed.log.read_text()[-2000:])
    assert (final.done, final.kept, final.total) == (PAIRS, PAIRS, PAIRS)
    assert f"resuming {run_dir}: {on_disk.done} of {PAIRS} pairs already scored" in resumed.log.read_text()
    # the resumed run holds the same numbers as an uninterrupted one scored here, in this process
    fresh = store.read_scores(score_dataset(dataset, tiny_lm, runs_root=tmp_path / "fresh", max_length=MAX_LENGTH))
    table = store.read_scores(run_dir)
    assert table["row"].tolist() == fresh["row"].tolist()
    np.testing.assert_allclose(table["ln_ches"], fresh["ln_ches"], rtol=1e-4, atol=1e-6)
    jobs.forget(resumed)
    assert jobs.list_jobs(jobs_dir) == [] and store.is_complete(run_dir)


@pytest.mark.slow
def test_a_failing_job_says_why_and_a_stale_job_file_does_not_block_a_start(tmp_path, jobs_dir, data, reworded):
    run_dir = tmp_path / "runs" / "0123456789abcdef"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    jobs_dir.mkdir()
    jobs.job_file(jobs_dir, run_dir).write_text(json.dumps({
        "run_dir": str(run_dir), "log": str(jobs_dir / "old.log"), "pid": dead.pid, "args": [],
        "started_at": "2025-01-01T00:00:00+00:00"}))
    missing = tmp_path / "no-such-model"
    job, started = jobs.start(jobs_dir, run_dir, [str(data), "--model", str(missing), "--out", str(tmp_path / "runs")],
                              env=reworded)
    assert started and job.pid != dead.pid
    over = wait(job, lambda s: not s.running)
    assert over.state == "failed" and str(missing) in over.error, over
    assert "Traceback" not in over.error and over.kept == 0
    log = job.log.read_text()
    assert str(missing) not in log and codecs.encode(str(missing), "rot13") in log    # people read other words
    live = live_job(jobs_dir, "feedfacefeedface", os.getpid())       # a live process (this one): not forgotten
    with pytest.raises(ValueError, match="still running"):
        jobs.forget(live)
    assert live.file.exists()
    live.file.unlink()
    jobs.forget(job)
    assert not job.log.exists() and not job.events.exists() and jobs.list_jobs(jobs_dir) == []


@pytest.mark.slow
def test_a_job_whose_printed_words_all_change_reports_the_same_status(tmp_path, jobs_dir, data, tiny_model_dir,
                                                                       tiny_lm, reworded):
    runs = tmp_path / "runs"
    run_dir = store.run_path(runs, run_key(load_dataset(data, limit=16), tiny_lm, MAX_LENGTH))
    job, started = jobs.start(jobs_dir, run_dir, args(data, tiny_model_dir, runs, "--limit", "16"), env=reworded)
    over = wait(job, lambda s: not s.running)
    assert over.state == "complete", (over, job.log.read_text()[-2000:])
    assert (over.done, over.kept, over.total) == (16, 16, 16)
    assert over.estimate.startswith("16 pairs to score, ") and over.estimate.endswith(" tokens/s")
    assert over.error == ""
    log = job.log.read_text()
    assert "pairs to score" not in log and codecs.encode("16 pairs to score", "rot13") in log
    assert group_gone(job.pid)                   # complete on disk; the process ends after its summary
    events = jobs.read_events(job.events)
    kinds = [e["event"] for e in events if e["event"] != "step"]
    assert kinds[:2] == ["planned", "estimate"] and kinds[-1] == "complete" and "progress" in kinds
    steps = [e["what"] for e in events if e["event"] == "step"]      # every wait says what it waits for
    assert steps == ["reading the data", f"loading the model {tiny_model_dir}",
                     "estimating the time (a short measured warm-up)", "scoring"]


def status_of(tmp_path, events: list[dict], log: str = "", *, alive: bool, cancelled: bool = False,
              kind: str = "score") -> jobs.JobStatus:
    """The status of a job of this kind with these events in its status file and `log` as its output, whose
    process is alive (this test's own pid) or over (a process that has exited)."""
    jobs_dir, run_dir = tmp_path / "jobs", tmp_path / "runs" / "feedfacefeedface"
    jobs_dir.mkdir(exist_ok=True)
    file = jobs.job_file(jobs_dir, run_dir, kind=kind)
    (jobs_dir / "x.log").write_text(log)
    file.with_suffix(".status.jsonl").unlink(missing_ok=True)
    writer = jobs.Events(file.with_suffix(".status.jsonl"))
    for e in events:
        writer(**e)
    writer.close()
    if alive:
        pid = os.getpid()
    else:
        over = subprocess.Popen([sys.executable, "-c", "pass"])
        over.wait()
        pid = over.pid
    job = jobs.Job(run_dir, file, jobs_dir / "x.log", pid, (), "", "2025-01-01T00:00:00+00:00", cancelled,
                   process_start(pid), kind=kind)
    return jobs.status(job)


PLANNED = {"event": "planned", "run": "/somewhere/runs/feedfacefeedface", "total": 500, "done": 64}
ESTIMATE = {"event": "estimate", "pairs": 436, "tokens": 41_000, "exact": True, "tokens_per_second": 3400.0,
            "seconds": 12.06}
LIES = ("ches: error: this line is for people\n500 pairs to score, 1 tokens; estimated 1 s at 1 tokens/s\n"
        "scoring:  90%|#########| 450/500 [00:10<00:01, 45.00pair/s]\nches: interrupted\n")


def test_status_reads_the_events_and_never_the_log(tmp_path):
    progress = {"event": "progress", "done": 76, "total": 500, "rate": 4.0, "seconds_left": 106.0}
    live = status_of(tmp_path, [PLANNED, ESTIMATE, progress], LIES, alive=True)
    assert (live.state, live.done, live.kept, live.total) == ("running", 76, 0, 500)
    assert (live.rate, live.seconds_left, live.error) == ("4.0 pairs/s", "1 min 46 s", "")
    assert live.estimate == "436 pairs to score, 41,000 tokens; estimated 12 s at 3,400 tokens/s"
    slow = status_of(tmp_path, [PLANNED, {**progress, "rate": 0.25}], alive=True)
    assert slow.rate == "4.00 s/pair" and slow.estimate == ""
    # over: the outcome is the last event's, whatever the log says
    crashed = status_of(tmp_path, [PLANNED, ESTIMATE, progress], LIES, alive=False)
    assert crashed.state == "failed" and "ended without finishing" in crashed.error and "people" not in crashed.error
    assert (crashed.done, crashed.total, crashed.rate) == (0, 500, "")        # the live count died with it
    failed = status_of(tmp_path, [PLANNED, {"event": "error", "message": "RuntimeError: CUDA out of memory"}],
                       alive=False)
    assert (failed.state, failed.error) == ("failed", "RuntimeError: CUDA out of memory")
    stopped = status_of(tmp_path, [PLANNED, {"event": "interrupted", "done": 64, "total": 500}], LIES, alive=False)
    assert (stopped.state, stopped.error) == ("interrupted", "")
    assert status_of(tmp_path, [PLANNED, {"event": "interrupted"}], alive=False, cancelled=True).state == "cancelled"
    assert status_of(tmp_path, [], LIES, alive=True).total == 0                # nothing planned yet: "starting" bar


def test_a_probe_check_or_map_job_stands_where_its_events_say(tmp_path):
    """A job other than scoring has no run folder to read: it is complete once it said so (with what it stored,
    even while its process still prints), else live while its process runs; its progress counts pair passes."""
    progress = {"event": "progress", "done": 12, "total": 48, "rate": 0.5, "seconds_left": 72.0}
    live = status_of(tmp_path, [{"event": "step", "what": "training and measuring"}, progress], LIES, alive=True,
                     kind="probe")
    assert (live.state, live.done, live.kept, live.total, live.step) == ("running", 12, 0, 48, "training and measuring")
    assert (live.rate, live.seconds_left, live.estimate, live.result) == ("2.00 s/pair pass", "1 min 12 s", "", "")
    fast = status_of(tmp_path, [{**progress, "rate": 3.0}], alive=True, kind="check-curation")
    assert fast.rate == "3.0 pair passes/s"
    done = status_of(tmp_path, [progress, {"event": "complete", "result": "/r/checks/0123"}], alive=True,
                     kind="check-curation")
    assert (done.state, done.result, done.error) == ("complete", "/r/checks/0123", "")
    crashed = status_of(tmp_path, [progress], LIES, alive=False, kind="project")
    assert crashed.state == "failed" and crashed.error.startswith("the map process ended without finishing")
    assert (crashed.done, crashed.total, crashed.rate) == (0, 0, "")
    failed = status_of(tmp_path, [{"event": "error", "message": "n = 9 is more than the run's 6 pairs"}],
                       alive=False, kind="probe")
    assert (failed.state, failed.error) == ("failed", "n = 9 is more than the run's 6 pairs")
    assert status_of(tmp_path, [{"event": "interrupted"}], alive=False, kind="probe").state == "interrupted"
    assert status_of(tmp_path, [{"event": "interrupted"}], alive=False, cancelled=True, kind="probe").state == \
        "cancelled"
    wrong = status_of(tmp_path, [{**progress, "done": 49}], alive=True, kind="probe")
    assert (wrong.done, wrong.total) == (0, 0) and "impossible figures (progress)" in wrong.unreadable


def test_a_job_is_named_by_its_kind_its_run_and_its_arguments(tmp_path):
    """The same run with the same arguments is the same job; other arguments or another kind, another job. A
    scoring job keeps its run id as its name, and a job file written before kinds existed is a scoring job."""
    folder, run = tmp_path / "jobs", tmp_path / "runs" / "feedfacefeedface"
    argv = [str(run), "--subset", "top", "--n", "3"]
    assert jobs.job_file(folder, run) == folder / "feedfacefeedface.json"
    probe = jobs.job_file(folder, run, kind="probe", args=argv)
    assert probe.name.startswith("probe-feedfacefeedface-") and probe == jobs.job_file(folder, run, kind="probe",
                                                                                      args=list(argv))
    assert probe != jobs.job_file(folder, run, kind="probe", args=[*argv[:-1], "4"])
    assert len({probe, jobs.job_file(folder, run, kind="check-curation", args=argv),
                jobs.job_file(folder, run, kind="project", args=argv)}) == 3
    with pytest.raises(ValueError, match="unknown job kind 'rm'"):
        jobs.start(folder, run, argv, kind="rm")
    folder.mkdir()
    old = folder / "feedfacefeedface.json"
    old.write_text(json.dumps(VALID).replace("RUNS", str(tmp_path / "runs")))      # no "kind"
    assert (jobs.read(old).kind, jobs.read(old).problem, jobs.read(old).name) == ("score", "", "feedfacefeedface")
    record = {**VALID, "kind": "probe", "args": argv, "run_dir": str(run)}
    probe.write_text(json.dumps(record))
    assert (jobs.read(probe).kind, jobs.read(probe).problem) == ("probe", "")
    probe.write_text(json.dumps({**record, "args": [*argv[:-1], "4"]}))            # another job's arguments
    assert "do not name the job" in jobs.read(probe).problem


def test_figures_that_cannot_be_true_are_not_shown_as_fact(tmp_path):
    """The job's status file is checked: a count past its total, a negative, fractional or mistyped one, a
    total the plan contradicts are left out (with the reason), never passed on as the job's progress."""
    plan = {**PLANNED, "total": 5, "done": 0}
    for wrong in ({"done": 1_000_000_000, "total": 5}, {"done": -3, "total": 5}, {"done": 2.5, "total": 5},
                  {"done": True, "total": 5}, {"done": 4, "total": 3}, {"done": 40, "total": 500}):
        s = status_of(tmp_path, [plan, {"event": "progress", "rate": 2.0, "seconds_left": 9.0, **wrong}], alive=True)
        assert (s.state, s.done, s.total, s.rate, s.seconds_left) == ("running", 0, 5, "", ""), wrong
        assert s.unreadable == "not shown: the job's status file reports impossible figures (progress)"
    bad_plan = status_of(tmp_path, [{**PLANNED, "done": 900}, {"event": "progress", "done": 7, "total": 9}],
                         alive=True)
    assert (bad_plan.done, bad_plan.total) == (7, 9) and "(plan)" in bad_plan.unreadable
    bad_estimate = status_of(tmp_path, [PLANNED, {**ESTIMATE, "pairs": -436}], alive=True)
    assert bad_estimate.estimate == "" and "(estimate)" in bad_estimate.unreadable
    assert status_of(tmp_path, [PLANNED, {**ESTIMATE, "pairs": 5000}], alive=True).estimate == ""   # > 500
    sound = status_of(tmp_path, [plan, ESTIMATE | {"pairs": 5}, {"event": "progress", "done": 5, "total": 5}],
                      alive=True)
    assert (sound.done, sound.total, sound.unreadable) == (5, 5, "") and sound.estimate.startswith("5 pairs")


def test_a_status_line_naming_another_run_is_ignored(tmp_path):
    """A line about another run than the job's own says nothing about this job: it stays live (its Cancel
    stays), its figures are not taken; once the process has ended without this run, the line explains it."""
    other = {**PLANNED, "run": "/r/0123456789abcdef", "total": 7}
    progress = {"event": "progress", "done": 76, "total": 500, "rate": 4.0, "seconds_left": 106.0}
    live = status_of(tmp_path, [PLANNED, other, progress], alive=True)
    assert (live.state, live.error, live.done, live.total) == ("running", "", 76, 500) and not live.unreadable
    assert status_of(tmp_path, [{**PLANNED, "run": 12}], alive=True).state == "running"
    done_elsewhere = status_of(tmp_path, [other, {"event": "complete"}], alive=False)
    assert done_elsewhere.state == "failed" and "it scored into 0123456789abcdef" in done_elsewhere.error


def test_the_status_file_is_read_at_both_ends_and_a_cut_line_is_skipped(tmp_path):
    """A long job: its plan and estimate at the head, the latest progress at the tail, read in 32 KiB."""
    many = [{"event": "progress", "done": i, "total": 500, "rate": 1.0, "seconds_left": 500.0 - i}
            for i in range(64, 501)]
    s = status_of(tmp_path, [PLANNED, ESTIMATE, *many], alive=True)
    assert (s.done, s.total, s.seconds_left) == (500, 500, "0 s") and s.estimate.startswith("436 pairs to score")
    events = tmp_path / "jobs" / "feedfacefeedface.status.jsonl"
    assert events.stat().st_size > 32 * 1024
    with open(events, "a") as f:
        f.write('{"event": "progress", "done": 2500, "tot')          # being written right now
    assert [e["done"] for e in jobs.read_events(events) if e["event"] == "progress"][-1] == 500
    assert jobs.read_events(tmp_path / "none.jsonl") == []
    silent = jobs.Events(None)                  # not run as a job: writes nothing, anywhere
    silent("progress", done=1)
    silent.close()


def test_score_args_pass_the_options_through():     # chunk sizes: test_run_integrity.py (timing.chunk_size_for)
    argv = jobs.score_args("d.csv", runs="r", model="m", max_length=64, limit=5, chunk_size=16,
                           columns={"prompt": "q=1"})
    assert argv[-6:] == ["--limit", "5", "--chunk-size", "16", "--column", "prompt=q=1"]


def test_a_jobs_settings_are_read_back_from_its_arguments():
    """What a page shows of a running job (its data, model, length, ...) is what score_args wrote."""
    argv = jobs.score_args("d.csv", runs="r", model="m", max_length=64, dtype="bfloat16", format="csv", limit=5,
                           chunk_size=16, columns={"prompt": "q=1", "chosen": "good"})
    assert jobs.settings_of(argv) == jobs.ScoreSettings("d.csv", "m", 64, "bfloat16", "csv", None, None,
                                                        (("prompt", "q=1"), ("chosen", "good")), 5)
    hub = jobs.score_args("hf://datasets/o/n", runs="r", model="m", max_length=64, split="test", config="c")
    assert (jobs.settings_of(hub).split, jobs.settings_of(hub).config) == ("test", "c")
    for wrong in ([], ["d.csv", "--model"], ["d.csv", "--model", "m"], [*argv, "--device", "cuda"],
                  ["d.csv", "--model", "m", "--max-length", "-3"], ["d.csv", "--model", "m", "--max-length", "x"]):
        assert jobs.settings_of(wrong) is None, wrong


# ------------------------------------------------------------------ job files: tampered, stale, raced

def live_job(jobs_dir: Path, run_id: str, pid: int, **fields) -> jobs.Job:
    """A job file for `run_id` whose process is `pid`, with that process's real start time (a running job)."""
    jobs_dir.mkdir(parents=True, exist_ok=True)
    file = jobs_dir / f"{run_id}.json"
    file.write_text(json.dumps({"run_dir": str(jobs_dir.parent / "runs" / run_id), "log": "ignored", "pid": pid,
                                "pid_started": process_start(pid), "args": [], "label": "live",
                                "started_at": "2025-01-01T00:00:00+00:00", "cancelled": False, **fields}))
    return jobs.read(file)


@pytest.fixture
def stranger():
    """An unrelated process leading its own process group (a job's pid could be reused by such a one)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def signals(monkeypatch) -> list:
    """Every os.kill / os.killpg the jobs module sends with a real signal, recorded and not sent."""
    sent = []
    real_kill = os.kill
    monkeypatch.setattr(os, "killpg", lambda pid, sig: sent.append(("killpg", pid, sig)))
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append(("kill", pid, sig)) if sig else real_kill(pid, 0))
    return sent


VALID = {"run_dir": "RUNS/feedfacefeedface", "log": "x.log", "pid": None, "args": [], "label": "ok",
         "started_at": "2025-01-01T00:00:00+00:00", "cancelled": False}
TAMPERED = {
    "string pid": {**VALID, "pid": "123"}, "pid 0": {**VALID, "pid": 0}, "negative pid": {**VALID, "pid": -1},
    "true as pid": {**VALID, "pid": True}, "float pid": {**VALID, "pid": 12.5},
    "no run_dir": {k: v for k, v in VALID.items() if k != "run_dir"}, "no started_at": {**VALID, "started_at": None},
    "another run's folder": {**VALID, "run_dir": "RUNS/0123456789abcdef"}, "args a text": {**VALID, "args": "--x"},
    "label a number": {**VALID, "label": 3}, "cancelled a text": {**VALID, "cancelled": "yes"},
    "pid_started a number": {**VALID, "pid": 1, "pid_started": 5}, "a list": [VALID], "null": None,
    "an unknown kind": {**VALID, "kind": "rm"}, "a probe in a scoring job's file": {**VALID, "kind": "probe"},
    "a kind that is a list": {**VALID, "kind": ["score"]},
}


@pytest.mark.parametrize("name", [*TAMPERED, "invalid JSON", "not UTF-8", "deeply nested"])
def test_a_tampered_job_file_is_a_broken_job_that_is_shown_dismissed_and_never_signalled(name, tmp_path, signals):
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    file = jobs_dir / "feedfacefeedface.json"
    if name == "invalid JSON":
        file.write_text('{"run_dir": "')
    elif name == "not UTF-8":
        file.write_bytes(b"\xff\xfe{}")
    elif name == "deeply nested":
        file.write_text("[" * 100_000 + "]" * 100_000)
    else:
        file.write_text(json.dumps(TAMPERED[name]).replace("RUNS", str(tmp_path / "runs")))
    (job,) = jobs.list_jobs(jobs_dir)                   # listed, never an exception
    assert job.problem and job.pid is None and job.run_dir.name == "feedfacefeedface"
    s = jobs.status(job)
    assert (s.state, s.running) == ("broken", False) and "feedfacefeedface.json is not a job" in s.error, s
    assert not jobs.cancel(job) and signals == []       # nothing signalled: not the server's group, not a stranger
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    jobs.forget(job)                                   # Dismiss
    assert jobs.list_jobs(jobs_dir) == [] and outside.read_text() == "keep"


def test_cancel_signals_only_the_process_that_was_started(tmp_path, stranger):
    """pid 0 (the caller's own group), this process, a stranger with no or another start time: never
    signalled; a log path pointing elsewhere is never deleted."""
    jobs_dir = tmp_path / "jobs"
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    unrecorded = live_job(jobs_dir, "0000000000000001", stranger.pid, pid_started=None, log=str(outside))
    wrong = live_job(jobs_dir, "0000000000000002", stranger.pid, pid_started="12345")
    me = live_job(jobs_dir, "0000000000000003", os.getpid())      # this process, its real start time
    for job in (unrecorded, wrong):
        assert not jobs.status(job).running and not jobs.cancel(job)
    assert jobs.status(me).running and not jobs.cancel(me)       # running, but not a group leader of its own
    time.sleep(0.2)
    assert stranger.poll() is None                              # still alive
    jobs.forget(unrecorded)
    assert outside.read_text() == "keep"
    started = live_job(jobs_dir, "0000000000000004", stranger.pid)  # its real start time: the job's process
    assert jobs.status(started).running and jobs.cancel(started)
    assert stranger.wait(timeout=10) == -15


def test_a_stale_dismiss_does_not_orphan_the_job_started_since(tmp_path, stranger):
    """The page shows job A (over) with Dismiss; meanwhile Score starts job B for the same run. Dismissing A
    removes nothing, and the next Score attaches to B instead of starting a second process on the run."""
    jobs_dir = tmp_path / "jobs"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    over = live_job(jobs_dir, "feedfacefeedface", dead.pid, started_at="2025-01-01T00:00:00+00:00")
    assert jobs.status(over).state == "failed"                 # what the page shows, with Dismiss
    restarted = live_job(jobs_dir, "feedfacefeedface", stranger.pid, started_at="2025-01-02T00:00:00+00:00")
    with contextlib.suppress(ValueError):
        jobs.forget(over)                                      # the stale Dismiss
    assert jobs.read(restarted.file) == restarted
    job, started = jobs.start(jobs_dir, restarted.run_dir, ["never", "run"])
    assert (started, job.pid) == (False, stranger.pid)


def test_forget_racing_a_start_never_leaves_a_process_without_its_file(tmp_path, monkeypatch):
    """Dismiss of the old job, clicked again and again while a start replaces it: after the start the file
    still names the process it spawned."""
    jobs_dir = tmp_path / "jobs"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    over = live_job(jobs_dir, "feedfacefeedface", dead.pid)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    real_popen = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda cmd, **kw: real_popen(sleeper, **kw))
    stop = False

    def dismiss_again_and_again():
        while not stop:
            with contextlib.suppress(ValueError):
                jobs.forget(over)

    with ThreadPoolExecutor(1) as pool:
        clicking = pool.submit(dismiss_again_and_again)
        try:
            job, started = jobs.start(jobs_dir, over.run_dir, ["x"])
            time.sleep(0.3)
        finally:
            stop = True
        clicking.result()
    try:
        assert started and jobs.read(job.file) == job and jobs.status(job).running
    finally:
        os.killpg(job.pid, 9)


def test_a_cancel_while_starting_sticks_and_stops_the_process(tmp_path, monkeypatch):
    """Cancel pressed after the job file is written and before the process exists (state "starting"):
    the starter sees it and stops the process at once; the job ends cancelled."""
    jobs_dir = tmp_path / "jobs"
    run_dir = tmp_path / "runs" / "feedfacefeedface"
    real_popen = subprocess.Popen
    seen = []

    def popen(cmd, **kw):                                     # the start is between writing the file and spawning
        job = jobs.find(jobs_dir, run_dir)
        seen.append(jobs.status(job).state)
        jobs.cancel(job)
        return real_popen([sys.executable, "-c", "import time; time.sleep(60)"], **kw)

    monkeypatch.setattr(subprocess, "Popen", popen)
    job, started = jobs.start(jobs_dir, run_dir, ["x"])
    assert started and seen == ["starting"]
    assert job.cancelled and group_gone(job.pid)
    assert jobs.status(job).state == "cancelled"


def test_the_job_status_says_what_it_waits_for(tmp_path):
    s = status_of(tmp_path, [{"event": "step", "what": "loading the model smollm2"}], alive=True)
    assert (s.state, s.step, s.total) == ("running", "loading the model smollm2", 0)
    over = status_of(tmp_path, [{"event": "step", "what": "scoring"}, {"event": "interrupted"}], alive=False)
    assert over.step == ""
    odd = status_of(tmp_path, [{**PLANNED, "total": "many"}, {"event": "progress", "done": "x", "rate": "fast",
                                                              "seconds_left": [1]}, {"event": "estimate", "x": 1}],
                    alive=True)                               # values of the wrong type are ignored
    assert (odd.total, odd.done, odd.rate, odd.seconds_left, odd.estimate) == (0, 0, "", "", "")


# -------------------------------------------------------------- the run key without loading the model

def test_the_run_key_comes_from_the_files_without_loading_the_model(tmp_path, tiny_model_dir, tiny_lm, data,
                                                                    monkeypatch):
    import shutil

    import transformers

    from ches.engine import models

    dataset = load_dataset(data, limit=4)
    expected = run_key(dataset, tiny_lm, MAX_LENGTH)
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)

    def refuse(*a, **k):
        raise AssertionError("the model was loaded")

    with monkeypatch.context() as m:
        m.setattr(models, "load_model", refuse)
        m.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
        assert run_key(dataset, models.identify(str(tiny_model_dir)), MAX_LENGTH) == expected
        assert run_key(dataset, models.identify(str(tiny_model_dir)), MAX_LENGTH) == expected   # remembered
        before = models.identify(str(copy)).fingerprint
        assert before == tiny_lm.fingerprint                   # the same folder content, the same fingerprint
        weights = copy / "model.safetensors"
        blob = bytearray(weights.read_bytes())
        blob[-1] ^= 1                                          # one bit of one weight, same size
        weights.write_bytes(bytes(blob))
        after = models.identify(str(copy)).fingerprint
    assert after != before and after == models.load_model(str(copy)).fingerprint


def test_the_bundled_models_key_is_unchanged(real_lm, data):
    """identify("smollm2") gives the fingerprint load_model always gave: stored runs are found again."""
    from ches.engine import models

    dataset = load_dataset(data, limit=4)
    assert run_key(dataset, models.identify(), 512) == run_key(dataset, real_lm, 512)
