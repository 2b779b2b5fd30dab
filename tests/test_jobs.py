"""Scoring jobs (ches/jobs.py): real `python -m ches score` processes on a tiny random model.

Start twice at once: one job, the other start attaches. Cancel: the process group gets SIGTERM between
batches, the finished chunks stay, the run is not complete; starting again resumes and completes with the
same table as an uninterrupted run. A failing job's error reaches the caller as text.
"""
from __future__ import annotations

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
from ches.engine.data import load_dataset
from ches.engine.models import load_model
from ches.engine.pipeline import run_key, score_dataset
from conftest import write_pairs

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
    for job in jobs.list_jobs(folder):
        if job.pid is not None and jobs.status(job).running:
            os.killpg(job.pid, 9)


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
    on_disk = store.run_progress(run_dir)
    assert on_disk is not None and not on_disk.complete and not store.is_complete(run_dir)
    assert CHUNK <= on_disk.done < PAIRS and on_disk.done % CHUNK == 0
    assert (over.kept, over.done, over.total) == (on_disk.done, on_disk.done, PAIRS)
    assert f"interrupted: {on_disk.done} of {PAIRS} pairs kept" in job.log.read_text()   # the CLI's own words
    assert store.list_runs(runs) == []                       # an incomplete run is never listed as a run
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


def test_a_failing_job_says_why_and_a_stale_job_file_does_not_block_a_start(tmp_path, jobs_dir, data):
    run_dir = tmp_path / "runs" / "0123456789abcdef"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    jobs_dir.mkdir()
    jobs.job_file(jobs_dir, run_dir).write_text(json.dumps({
        "run_dir": str(run_dir), "log": str(jobs_dir / "old.log"), "pid": dead.pid, "args": [],
        "started_at": "2025-01-01T00:00:00+00:00"}))
    missing = tmp_path / "no-such-model"
    job, started = jobs.start(jobs_dir, run_dir, [str(data), "--model", str(missing), "--out", str(tmp_path / "runs")])
    assert started and job.pid != dead.pid
    over = wait(job, lambda s: not s.running)
    assert over.state == "failed" and str(missing) in over.error, over
    assert "Traceback" not in over.error and over.kept == 0
    with pytest.raises(ValueError, match="still running"):
        jobs.forget(jobs.Job(run_dir, jobs_dir / "live.json", jobs_dir / "live.log", os.getpid(), (), "",
                             job.started_at, False))        # a live pid (this process): not forgotten
    jobs.forget(job)
    assert not job.log.exists() and jobs.list_jobs(jobs_dir) == []


def test_status_reads_the_live_bar_and_a_crash(tmp_path):
    """The bar as tqdm itself writes it (not a hand-made string); a process that died without a word."""
    from tqdm import tqdm

    jobs_dir, run_dir = tmp_path / "jobs", tmp_path / "runs" / "feedfacefeedface"
    jobs_dir.mkdir()
    log = jobs_dir / "x.log"
    with open(log, "w") as f:
        f.write("loaded 500 pairs from x.jsonl\n500 pairs to score, 41,000 tokens; estimated 12 s at 3,400 tokens/s "
                "(measured in a warm-up)\n")
        bar = tqdm(total=500, initial=64, unit="pair", desc="scoring", file=f, mininterval=0)
        bar.n = 76
        bar.refresh()
        f.write("\nTraceback (most recent call last):\nRuntimeError: CUDA out of memory\n")
    crashed = subprocess.Popen([sys.executable, "-c", "pass"])
    crashed.wait()
    job = jobs.Job(run_dir, jobs.job_file(jobs_dir, run_dir), log, crashed.pid, (), "", "2025-01-01T00:00:00+00:00",
                   False)
    state = jobs.status(job)
    assert state.state == "failed" and "CUDA out of memory" in state.error
    assert state.total == 500 and state.kept == 0 and state.estimate.startswith("500 pairs to score, 41,000 tokens")
    running = jobs.Job(run_dir, job.file, log, os.getpid(), (), "", job.started_at, False)   # a live pid
    live = jobs.status(running)
    assert (live.state, live.done, live.total) == ("running", 76, 500)


def test_an_app_job_is_cut_into_about_twenty_chunks_within_bounds():
    assert [jobs.chunk_pairs(n) for n in (1, 40, 165, 1000, 20_480, 10**6)] == [16, 16, 16, 50, 1024, 1024]
    argv = jobs.score_args("d.csv", runs="r", model="m", max_length=64, limit=5, chunk_size=16,
                           columns={"prompt": "q=1"})
    assert argv[-6:] == ["--limit", "5", "--chunk-size", "16", "--column", "prompt=q=1"]
