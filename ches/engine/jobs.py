"""Scoring as a job: one `python -m ches score ...` process that outlives the page that started it.

    job = jobs.start(ws.jobs, run_dir, ["data.jsonl", "--model", "smollm2", "--out", str(ws.runs)])
    jobs.status(job)     # JobStatus: state, pairs done / kept / total, the estimate, an error as text
    jobs.cancel(job)     # SIGTERM to its process group: the CLI keeps the finished chunks, exits 130

A job is named by the run folder it scores (`<jobs_dir>/<run id>.json`, its output in `<run id>.log`):
the run key decides the folder, so the same dataset, model and settings are the same job. The job file is
created with O_EXCL, so of two starts one creates it and the other attaches to that job. The process runs
in its own session (a page reload, a closed tab or a Streamlit rerun cannot reach it); a job whose pid is
gone is over, and its outcome is read from disk and its log: the run folder complete, an error line, or
the chunks kept for a resume (starting the same job again resumes it).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ches.engine import store
from ches.atomic import atomic_write_text

STARTING_S = 60          # a job file without a pid this old belongs to a start that died before spawning
_LOG_HEAD = _LOG_TAIL = 32 * 1024
_TQDM = re.compile(r"(\d+)/(\d+) \[[^\]<]*<([^,\]]*),\s*([\d.?]+\s*(?:pair/s|s/pair))\]")
_ESTIMATE = re.compile(r"^[\d,]+ pairs to score, .*$", re.M)
_TARGET = re.compile(r"^(?:scoring into (.+)|resuming (.+?): \d+ of \d+ pairs already scored)$", re.M)
_ERROR = re.compile(r"^ches: error: (.+)$", re.M)


@dataclass(frozen=True)
class Job:
    run_dir: Path            # the run it scores: the job's identity
    file: Path               # <jobs_dir>/<run id>.json
    log: Path                # the process's stdout and stderr
    pid: int | None          # None while the starting process has not spawned it yet
    args: tuple[str, ...]    # arguments of `ches score`
    label: str               # what to call it on a page (dataset, pairs, model)
    started_at: str          # ISO 8601, UTC
    cancelled: bool          # cancel() was called


@dataclass(frozen=True)
class JobStatus:
    state: str               # "starting" | "running" | "complete" | "cancelled" | "interrupted" | "failed"
    done: int                # pairs scored so far (finished chunks, or the live count from the job's bar)
    kept: int                # pairs in finished chunks: what a resume keeps
    total: int               # pairs to score (0 until the job has planned the run)
    seconds_left: str        # the job's own estimate of the time left ("" when unknown)
    rate: str                # the job's own speed ("7.10pair/s", "1.52s/pair"; "" when unknown)
    estimate: str            # the token count and time estimated before scoring ("" until printed)
    error: str               # why a failed job failed, as the user should read it ("" otherwise)

    @property
    def running(self) -> bool:
        return self.state in ("starting", "running")


def job_file(jobs_dir: str | Path, run_dir: str | Path) -> Path:
    return Path(jobs_dir) / f"{Path(run_dir).name}.json"


def start(jobs_dir: str | Path, run_dir: str | Path, args: list[str], *, label: str = "",
          env: dict[str, str] | None = None) -> tuple[Job, bool]:
    """Start `ches score *args` as the job for `run_dir`, or attach to the one running: (job, started).

    A job file left by a job that is over (its pid gone) is replaced: starting again resumes the run.
    """
    jobs_dir = Path(jobs_dir)
    jobs_dir.mkdir(parents=True, exist_ok=True)
    path = job_file(jobs_dir, run_dir)
    record = {"run_dir": str(run_dir), "log": str(path.with_suffix(".log")), "pid": None, "args": list(args),
              "label": label, "started_at": datetime.now(timezone.utc).isoformat(), "cancelled": False}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            job = read(path)
            if job is not None and _running(job):
                return job, False
            _remove_if_over(path, job)          # make way for a new job (a racing start may win)
            continue
        with os.fdopen(fd, "w") as f:           # "starting": others attach and wait for the pid
            json.dump(record, f)
        break
    else:
        job = read(path)
        if job is None:
            raise OSError(f"could not create the job file {path}")
        return job, False
    try:
        with open(record["log"], "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "ches", "score", *args], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**(env or os.environ), "PYTHONUNBUFFERED": "1"})
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    # reap it when it ends, so a finished job does not linger as a zombie that still "exists"
    threading.Thread(target=proc.wait, name=f"ches-job-{proc.pid}", daemon=True).start()
    record.update(pid=proc.pid, pid_started=_process_start(proc.pid))
    atomic_write_text(path, json.dumps(record, indent=2))
    return read(path) or _job(path, record), True


def _remove_if_over(path: Path, seen: Job | None) -> None:
    """Remove the job file that was read as over (`seen`), unless another start has replaced it since;
    a file still unreadable after STARTING_S was left by a start that died while writing it."""
    with open(path.parent / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)       # released when the file is closed
        now = read(path)
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return
        if (now is not None and seen is not None and (now.pid, now.started_at) == (seen.pid, seen.started_at)) \
                or (now is None and age > STARTING_S):
            path.unlink(missing_ok=True)


def chunk_pairs(pairs: int) -> int:
    """Chunk size for a job over `pairs` pairs: about 20 chunks (a cancel loses at most ~5% of the work),
    at least 16 pairs, at most store.DEFAULT_CHUNK_PAIRS (bounded memory)."""
    return max(16, min(store.DEFAULT_CHUNK_PAIRS, -(-int(pairs) // 20)))


def score_args(data: str | Path, *, runs: str | Path, model: str, max_length: int, dtype: str = "auto",
               format: str | None = None, split: str | None = None, config: str | None = None,
               columns: dict[str, str] | None = None, limit: int | None = None,
               chunk_size: int | None = None) -> list[str]:
    """The `ches score` arguments that score `data` with these settings into the runs folder `runs`
    (the chunk size does not change the run: a resumed run keeps the size it started with)."""
    argv = [str(data), "--model", model, "--max-length", str(int(max_length)), "--dtype", dtype, "--out", str(runs)]
    for flag, value in (("--format", format), ("--split", split), ("--config", config), ("--limit", limit),
                        ("--chunk-size", chunk_size)):
        if value is not None:
            argv += [flag, str(value)]
    for ours, theirs in (columns or {}).items():
        argv += ["--column", f"{ours}={theirs}"]
    return argv


def read(path: str | Path) -> Job | None:
    """The job recorded in `path`; None when the file is gone or not yet written (a start in progress)."""
    try:
        record = json.loads(Path(path).read_text())
        return _job(Path(path), record)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _job(path: Path, record: dict) -> Job:
    return Job(Path(record["run_dir"]), path, Path(record["log"]), record.get("pid"), tuple(record["args"]),
               record.get("label", ""), record["started_at"], bool(record.get("cancelled")))


def find(jobs_dir: str | Path, run_dir: str | Path) -> Job | None:
    return read(job_file(jobs_dir, run_dir))


def list_jobs(jobs_dir: str | Path) -> list[Job]:
    """Every recorded job, running or over, oldest first."""
    folder = Path(jobs_dir)
    found = [read(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return sorted((j for j in found if j is not None), key=lambda j: j.started_at)


def cancel(job: Job) -> bool:
    """Ask the job to stop: SIGTERM to its process group (the CLI then keeps the finished chunks and
    exits). False when it was already over."""
    with contextlib.suppress(OSError, ValueError):
        record = json.loads(job.file.read_text())
        record["cancelled"] = True
        atomic_write_text(job.file, json.dumps(record, indent=2))
    if job.pid is None or not _running(job):
        return False
    try:
        os.killpg(job.pid, signal.SIGTERM)   # the job leads its own session: its group id is its pid
    except ProcessLookupError:
        return False
    return True


def forget(job: Job) -> None:
    """Remove the record and log of a job that is over, or whose run is complete (its process may still be
    printing the summary). The run folder is untouched."""
    if _running(job) and not store.is_complete(job.run_dir):
        raise ValueError(f"the job for {job.run_dir.name} is still running: cancel it first")
    job.file.unlink(missing_ok=True)
    job.log.unlink(missing_ok=True)


def status(job: Job) -> JobStatus:
    """Where the job stands, read from its run folder (finished chunks) and its log (bar, estimate, errors)."""
    job = read(job.file) or job                 # cancelled meanwhile, or its pid written since
    progress = store.run_progress(job.run_dir)
    kept, total = (progress.done, progress.total) if progress else (0, 0)
    log = _log_text(job.log)
    bars = _TQDM.findall(log)
    live, left, rate = (int(bars[-1][0]), bars[-1][2], bars[-1][3]) if bars else (0, "", "")
    if bars and not total:
        total = int(bars[-1][1])
    estimate = (_ESTIMATE.findall(log) or [""])[-1]
    error = ""
    target = _TARGET.search(log)
    if target and Path(target.group(1) or target.group(2)).name != job.run_dir.name:
        error = (f"the job scores into {Path(target.group(1) or target.group(2)).name}, not into "
                 f"{job.run_dir.name}: the page and the job read the data differently")
    if progress and progress.complete:
        state = "complete"
    elif _running(job) and not error:
        state = "running" if job.pid is not None else "starting"
    elif job.cancelled:
        state = "cancelled"
    elif error or _ERROR.search(log):
        state, error = "failed", error or _ERROR.findall(log)[-1].strip()
    elif "ches: interrupted" in log:
        state = "interrupted"
    else:
        state = "failed"
        error = "the scoring process ended without finishing" + (f"; its last output: {_last_lines(log)}"
                                                                 if log.strip() else "")
    done = total if state == "complete" else max(kept, live if state in ("starting", "running") else 0)
    return JobStatus(state, done, kept, total, left.strip("?"), "" if "?" in rate else rate, estimate, error)


def _running(job: Job) -> bool:
    """The job's process exists (and is the one started, not a later process given the same pid)."""
    if job.pid is None:
        try:
            age = time.time() - datetime.fromisoformat(job.started_at).timestamp()
        except ValueError:
            return False
        return age < STARTING_S
    try:
        os.kill(job.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass                                  # exists, owned by someone else
    now = _process_start(job.pid)
    if now is None:
        return True                           # no /proc (macOS): trust the pid
    if now == "zombie":
        return False
    try:
        recorded = json.loads(job.file.read_text()).get("pid_started")
    except (OSError, ValueError):
        recorded = None
    return recorded is None or recorded == now


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), "zombie" for an unreaped exited
    process, None where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()    # after "pid (comm) ": state is field 3, starttime 22
    return "zombie" if fields[0] in ("Z", "X") else fields[19]


def _log_text(path: Path) -> str:
    """The log's first and last 32 KiB (the estimate is printed early, the bar and errors late); tqdm's
    carriage returns read as line breaks."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_LOG_HEAD)
            if size > _LOG_HEAD + _LOG_TAIL:
                f.seek(size - _LOG_TAIL)
            tail = f.read()
    except OSError:
        return ""
    return (head + b"\n" + tail).decode("utf-8", errors="replace").replace("\r", "\n")


def _last_lines(log: str, n: int = 3) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return " | ".join(lines[-n:])
