"""Jobs: one `python -m ches <kind> ...` process per run and settings, outliving the page that started it.

    job, started = jobs.start(ws.jobs, run_dir, ["data.jsonl", "--model", "smollm2", "--out", str(ws.runs)])
    job, started = jobs.start(ws.jobs, run_dir, [str(run_dir), "--subset", "top", ...], kind="probe")
    jobs.status(job)     # JobStatus: state, what it is doing, done / total, speed and time left, an error, the result
    jobs.cancel(job)     # SIGTERM to its process group: the CLI stops (scoring keeps the finished chunks), exits 130
    jobs.settings_of(job.args)   # ScoreSettings: what a scoring job scores, and how (score_args read back)

The kinds (jobfile.KINDS) are the commands a job runs: "score" (a run), "estimate" (how long scoring would
take: ches/cli/score.py), "probe" and "check-curation" (they train copies of a run's model: ches/cli/probe.py)
and "project" (the Map's layout: ches/cli/project.py).
A job is named by its kind, run and arguments (jobfile.job_name): a scoring job by the run folder it
scores (`<jobs_dir>/<run id>.json`; the run key decides the folder, so the same dataset, model and
settings are the same job), any other by `<kind>-<run id>-<digest of its arguments>`: the same run with
the same settings is the same job, other settings another. The process runs in its own session (a page
reload, a closed tab or a Streamlit rerun cannot reach it); a job whose process is gone is over.

The job file (ches/engine/jobfile.py: its fields, how it is checked, which process is the job's).
`start`, `cancel` and `forget` each act under one lock (flock on `<jobs_dir>`) on the file's current
content, read again under the lock: of two starts one creates the job and the other attaches; a Cancel
while the job is "starting" (no pid yet) sticks, and the starter stops the process it then spawns; a
Dismiss of a job started again since removes nothing. A file that is not a valid job is a "broken" job
(its status says why; Dismiss removes it), never an exception. Only a process whose pid and recorded
start time both match is ever signalled.

The process writes two files beside the job file: `<name>.log`, its output for people (never parsed),
and `<name>.status.jsonl`, its events for `status()` (path in $CHES_JOB_STATUS; written by `Events`),
one JSON object per line, appended and flushed:

    {"event": "step", "what": "reading the data" | "loading the model" | "estimating the time" | "scoring" | ...}
    {"event": "planned", "run": "<run folder>", "total": pairs, "done": pairs already scored}      (scoring)
    {"event": "estimate", "pairs", "tokens", "exact", "tokens_per_second", "seconds"}   (scoring: timing.Estimate)
    {"event": "progress", "done": n, "total": n, "rate": n/s | null, "seconds_left": s | null}   (jobstatus.UNITS)
    {"event": "interrupted", ["done", "total"]}      Ctrl-C / SIGTERM: scoring keeps the finished chunks
    {"event": "error", "message": "what the user should read"}
    {"event": "complete", ["result": "the folder or file it stored"]}

status() (ches/engine/jobstatus.py) reads those events, and for scoring the run folder (finished chunks;
complete or not), and nothing else. Whether a job is live is its process's alone: an event naming another
run than the job's is ignored, and figures that cannot be true (not whole numbers, done > total, a total
the run folder or the plan contradicts) are left out, with JobStatus.unreadable saying so; a value of the
wrong type in an event is ignored.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ches.atomic import atomic_write_text
from ches.engine.jobfile import KINDS, STARTING_S, Job, job_name, locked, process_start, raw, read, running, terminate
from ches.engine.jobstatus import STATUS_ENV, UNITS, WHAT, Events, JobStatus, read_events, status

__all__ = ["KINDS", "STARTING_S", "STATUS_ENV", "UNITS", "WHAT", "Events", "Job", "JobStatus", "ScoreSettings",
           "cancel", "find", "forget", "job_file", "list_jobs", "read", "read_events", "score_args", "settings_of",
           "start", "status"]


def job_file(jobs_dir: str | Path, run_dir: str | Path, *, kind: str = "score", args: Sequence[str] = ()) -> Path:
    """The file of the job of this kind for `run_dir` with these arguments (`jobfile.job_name`)."""
    return Path(jobs_dir) / f"{job_name(kind, run_dir, args)}.json"


def start(jobs_dir: str | Path, run_dir: str | Path, args: list[str], *, kind: str = "score", label: str = "",
          env: dict[str, str] | None = None) -> tuple[Job, bool]:
    """Start `ches <kind> *args` as the job for `run_dir` and these arguments, or attach to the one running:
    (job, started).

    A job file left by a job that is over (its process gone) or a broken one is replaced: starting again
    resumes the run (scoring), or runs the command again. A Cancel that arrives while starting stops the
    process as soon as it exists. ValueError for a kind that is not one of KINDS.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}; expected one of {', '.join(KINDS)}")
    jobs_dir = Path(jobs_dir)
    path = job_file(jobs_dir, run_dir, kind=kind, args=args)
    record = {"kind": kind, "run_dir": str(run_dir), "log": str(path.with_suffix(".log")), "pid": None,
              "args": list(args), "label": label, "started_at": datetime.now(timezone.utc).isoformat(),
              "cancelled": False}
    with locked(jobs_dir):
        current = read(path)
        if current is not None and running(current):
            return current, False
        path.with_suffix(".status.jsonl").write_bytes(b"")     # a previous job's events are not this one's
        atomic_write_text(path, json.dumps(record, indent=2))   # "starting": others attach and wait for the pid
    try:
        with open(path.with_suffix(".log"), "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "ches", kind, *args], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**(env or os.environ), "PYTHONUNBUFFERED": "1",
                                         STATUS_ENV: str(path.with_suffix(".status.jsonl"))})
    except BaseException:
        with locked(jobs_dir):
            now = read(path)
            if now is not None and now.started_at == record["started_at"]:
                path.unlink(missing_ok=True)
        raise
    spawned = process_start(proc.pid)          # before the waiter can reap it: at worst a zombie
    # reap it when it ends, so a finished job does not linger as a zombie that still "exists"
    threading.Thread(target=proc.wait, name=f"ches-job-{proc.pid}", daemon=True).start()
    with locked(jobs_dir):
        now = raw(path)
        ours = isinstance(now, dict) and now.get("started_at") == record["started_at"]
        if ours:
            now.update(pid=proc.pid, pid_started=spawned)
            atomic_write_text(path, json.dumps(now, indent=2))
    if not ours or now.get("cancelled"):            # cancelled while starting: stop it now
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    job = read(path)
    if not ours or job is None or job.problem:      # replaced while starting (a start stuck for STARTING_S)
        raise OSError(f"the job file {path} was replaced while its process started; that process was stopped")
    return job, True


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


@dataclass(frozen=True)
class ScoreSettings:
    """What `score_args` was given, read back from a job's arguments by `settings_of`."""
    data: str                            # the file, or HUB_PREFIX + a Hub id
    model: str
    max_length: int
    dtype: str = "auto"
    format: str | None = None
    split: str | None = None
    config: str | None = None
    columns: tuple[tuple[str, str], ...] = ()   # (ours, theirs), in the order given
    limit: int | None = None


_OPTIONS = {"--model": "model", "--max-length": "max_length", "--dtype": "dtype", "--format": "format",
            "--split": "split", "--config": "config", "--limit": "limit", "--out": None, "--chunk-size": None}


def settings_of(args: Sequence[str]) -> ScoreSettings | None:
    """The settings `score_args` wrote as `args` (a job's arguments), the runs folder and chunk size left out;
    None when `args` are not such a list (an option it never writes, a value missing, a count that is not one)."""
    if not args or len(args) % 2 != 1:
        return None
    found: dict[str, object] = {"data": args[0]}
    columns = []
    for flag, value in zip(args[1::2], args[2::2]):
        if flag == "--column" and "=" in value:
            ours, _, theirs = value.partition("=")
            columns.append((ours, theirs))
        elif flag not in _OPTIONS:
            return None
        elif _OPTIONS[flag] in ("max_length", "limit"):
            if not value.isdigit() or int(value) < 1:
                return None
            found[_OPTIONS[flag]] = int(value)
        elif _OPTIONS[flag]:
            found[_OPTIONS[flag]] = value
    if "model" not in found or "max_length" not in found:
        return None
    return ScoreSettings(**found, columns=tuple(columns))


def find(jobs_dir: str | Path, run_dir: str | Path, *, kind: str = "score", args: Sequence[str] = ()) -> Job | None:
    """The job of this kind for `run_dir` with these arguments (a scoring job: for `run_dir`), if recorded."""
    return read(job_file(jobs_dir, run_dir, kind=kind, args=args))


def list_jobs(jobs_dir: str | Path) -> list[Job]:
    """Every recorded job, running, over or broken, oldest first (broken ones first)."""
    folder = Path(jobs_dir)
    found = [read(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return sorted((j for j in found if j is not None), key=lambda j: j.started_at)


def cancel(job: Job) -> bool:
    """Ask the job to stop (the one in its file now): SIGTERM to its process group (the CLI then stops;
    scoring keeps the finished chunks), or, while it is starting, a mark its starter acts on.
    False when there was nothing to stop (over, gone or broken)."""
    with locked(job.file.parent):
        record, now = raw(job.file), read(job.file)
        if now is None or now.problem or not running(now):
            return False
        record["cancelled"] = True
        atomic_write_text(job.file, json.dumps(record, indent=2))
        return now.pid is None or terminate(now)


def forget(job: Job) -> None:
    """Remove the record, log and status file of a job that is over, or broken, or complete (its process may
    still be printing the summary). The run folder and what the job stored are untouched. ValueError when
    the file now holds a job still running, or another start of it than `job`."""
    with locked(job.file.parent):
        now = read(job.file)
        if now is not None and not now.problem:
            if now.started_at != job.started_at:
                raise ValueError(f"the job {now.name} was started again since")
            if running(now) and status(now).state != "complete":
                raise ValueError(f"the job {now.name} is still running: cancel it first")
        job.file.unlink(missing_ok=True)
        job.log.unlink(missing_ok=True)
        job.events.unlink(missing_ok=True)


