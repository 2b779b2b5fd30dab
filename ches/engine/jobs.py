"""Scoring as a job: one `python -m ches score` process that outlives the page that started it.

    job = jobs.start(ws.jobs, run_dir, ["data.jsonl", "--model", "smollm2", "--out", str(ws.runs)])
    jobs.status(job)     # JobStatus: state, what it is doing, pairs done / kept / total, the estimate, an error
    jobs.cancel(job)     # SIGTERM to its process group: the CLI keeps the finished chunks, exits 130

A job is named by the run folder it scores (`<jobs_dir>/<run id>.json`): the run key decides the folder,
so the same dataset, model and settings are the same job. The process runs in its own session (a page
reload, a closed tab or a Streamlit rerun cannot reach it); a job whose process is gone is over.

The job file (ches/engine/jobfile.py: its fields, how it is checked, which process is the job's).
`start`, `cancel` and `forget` each act under one lock (flock on `<jobs_dir>`) on the file's current
content, read again under the lock: of two starts one creates the job and the other attaches; a Cancel
while the job is "starting" (no pid yet) sticks, and the starter stops the process it then spawns; a
Dismiss of a job started again since removes nothing. A file that is not a valid job is a "broken" job
(its status says why; Dismiss removes it), never an exception. Only a process whose pid and recorded
start time both match is ever signalled.

The process writes two files beside the job file: `<run id>.log`, its output for people (never parsed),
and `<run id>.status.jsonl`, its events for `status()` (path in $CHES_JOB_STATUS; written by `Events`),
one JSON object per line, appended and flushed:

    {"event": "step", "what": "reading the data" | "loading the model" | "estimating the time" | "scoring"}
    {"event": "planned", "run": "<run folder>", "total": pairs, "done": pairs already scored}
    {"event": "estimate", "pairs", "tokens", "exact", "tokens_per_second", "seconds"}   (timing.Estimate)
    {"event": "progress", "done": pairs, "total": pairs, "rate": pairs/s | null, "seconds_left": s | null}
    {"event": "interrupted", ["done", "total"]}      Ctrl-C / SIGTERM: the finished chunks are kept
    {"event": "error", "message": "what the user should read"}
    {"event": "complete"}

status() reads those events and the run folder (finished chunks; complete or not) and nothing else; a
value of the wrong type in an event is ignored.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ches.atomic import atomic_write_text
from ches.engine import store
from ches.engine.jobfile import STARTING_S, Job, locked, process_start, raw, read, running, terminate
from ches.engine.timing import Estimate, duration

__all__ = ["STARTING_S", "STATUS_ENV", "Events", "Job", "JobStatus", "cancel", "find", "forget",
           "job_file", "list_jobs", "read", "read_events", "score_args", "start", "status"]

STATUS_ENV = "CHES_JOB_STATUS"   # the file `ches score` appends its events to
_HEAD = _TAIL = 16 * 1024        # status() reads the first and last bytes of the status file


@dataclass(frozen=True)
class JobStatus:
    state: str               # "starting" | "running" | "complete" | "cancelled" | "interrupted" | "failed" | "broken"
    done: int                # pairs scored so far (finished chunks, or the live count from the job's bar)
    kept: int                # pairs in finished chunks: what a resume keeps
    total: int               # pairs to score (0 until the job has planned the run)
    seconds_left: str        # the job's own estimate of the time left ("3 min 05 s"; "" when unknown)
    rate: str                # the job's own speed ("7.1 pairs/s", "1.52 s/pair"; "" when unknown)
    estimate: str            # the token count and time estimated before scoring (str(Estimate); "" until known)
    error: str               # why a failed or broken job failed, as the user should read it ("" otherwise)
    step: str = ""           # what a running job is doing now ("loading the model", ...; "" when over)

    @property
    def running(self) -> bool:
        return self.state in ("starting", "running")


def job_file(jobs_dir: str | Path, run_dir: str | Path) -> Path:
    return Path(jobs_dir) / f"{Path(run_dir).name}.json"


def start(jobs_dir: str | Path, run_dir: str | Path, args: list[str], *, label: str = "",
          env: dict[str, str] | None = None) -> tuple[Job, bool]:
    """Start `ches score *args` as the job for `run_dir`, or attach to the one running: (job, started).

    A job file left by a job that is over (its process gone) or a broken one is replaced: starting again
    resumes the run. A Cancel that arrives while starting stops the process as soon as it exists.
    """
    jobs_dir = Path(jobs_dir)
    path = job_file(jobs_dir, run_dir)
    record = {"run_dir": str(run_dir), "log": str(path.with_suffix(".log")), "pid": None, "args": list(args),
              "label": label, "started_at": datetime.now(timezone.utc).isoformat(), "cancelled": False}
    with locked(jobs_dir):
        current = read(path)
        if current is not None and running(current):
            return current, False
        path.with_suffix(".status.jsonl").write_bytes(b"")     # a previous job's events are not this one's
        atomic_write_text(path, json.dumps(record, indent=2))   # "starting": others attach and wait for the pid
    try:
        with open(path.with_suffix(".log"), "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "ches", "score", *args], stdin=subprocess.DEVNULL,
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


def find(jobs_dir: str | Path, run_dir: str | Path) -> Job | None:
    return read(job_file(jobs_dir, run_dir))


def list_jobs(jobs_dir: str | Path) -> list[Job]:
    """Every recorded job, running, over or broken, oldest first (broken ones first)."""
    folder = Path(jobs_dir)
    found = [read(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return sorted((j for j in found if j is not None), key=lambda j: j.started_at)


def cancel(job: Job) -> bool:
    """Ask the job for this run to stop (the one in its file now): SIGTERM to its process group (the CLI
    then keeps the finished chunks and exits), or, while it is starting, a mark its starter acts on.
    False when there was nothing to stop (over, gone or broken)."""
    with locked(job.file.parent):
        record, now = raw(job.file), read(job.file)
        if now is None or now.problem or not running(now):
            return False
        record["cancelled"] = True
        atomic_write_text(job.file, json.dumps(record, indent=2))
        return now.pid is None or terminate(now)


def forget(job: Job) -> None:
    """Remove the record, log and status file of a job that is over, or broken, or whose run is complete
    (its process may still be printing the summary). The run folder is untouched. ValueError when the
    file now holds a job still running, or another start of it than `job`."""
    with locked(job.file.parent):
        now = read(job.file)
        if now is not None and not now.problem:
            if now.started_at != job.started_at:
                raise ValueError(f"the job for {now.run_dir.name} was started again since")
            if running(now) and not store.is_complete(now.run_dir):
                raise ValueError(f"the job for {now.run_dir.name} is still running: cancel it first")
        job.file.unlink(missing_ok=True)
        job.log.unlink(missing_ok=True)
        job.events.unlink(missing_ok=True)


def status(job: Job) -> JobStatus:
    """Where the job stands, read from its run folder (finished chunks) and its status file (events)."""
    job = read(job.file) or job                 # cancelled meanwhile, or its pid written since
    if job.problem:
        return JobStatus("broken", 0, 0, 0, "", "", "", f"the job file {job.file.name} is not a job: {job.problem}")
    progress = store.run_progress(job.run_dir)
    kept, total = (progress.done, progress.total) if progress else (0, 0)
    last = {e["event"]: e for e in read_events(job.events)}     # the latest event of each kind
    planned, live = last.get("planned", {}), last.get("progress", {})
    total = total or _count(planned.get("total")) or _count(live.get("total"))
    estimate = _estimate_text(last.get("estimate"))
    error = ""
    run = planned.get("run")
    if isinstance(run, str) and run and Path(run).name != job.run_dir.name:
        error = (f"the job scores into {Path(run).name}, not into {job.run_dir.name}: "
                 "the page and the job read the data differently")
    if progress and progress.complete:
        state = "complete"
    elif running(job) and not error:
        state = "running" if job.pid is not None else "starting"
    elif job.cancelled:
        state = "cancelled"
    elif error or "error" in last:
        state, error = "failed", error or str(last["error"].get("message", "")).strip()
    elif "interrupted" in last:
        state = "interrupted"
    else:
        state = "failed"
        error = f"the scoring process ended without finishing (killed, or it crashed; its output: {job.log})"
    alive = state in ("starting", "running")
    done = total if state == "complete" else max(kept, _count(live.get("done")) if alive else 0)
    rate, left = (_number(live.get("rate")), _number(live.get("seconds_left"))) if alive else (None, None)
    step = str(last.get("step", {}).get("what", ""))[:80] if alive else ""
    if state == "starting":
        step = "starting the scoring process"
    return JobStatus(state, done, kept, total, duration(left) if left is not None else "", _rate_text(rate),
                     estimate, error, step)


def _count(value: object) -> int:
    """A count from an event: a non-negative whole number, else 0."""
    return value if type(value) is int and value > 0 else 0


def _number(value: object) -> float | None:
    """A finite non-negative number from an event, else None."""
    if type(value) in (int, float) and 0 <= value < float("inf"):
        return float(value)
    return None


class Events:
    """The job's side of the status file: `events("progress", done=..., total=...)` appends one JSON line
    and flushes it. Without a path (not run as a job) it writes nothing."""

    def __init__(self, path: str | Path | None):
        self._file = open(path, "a", encoding="utf-8") if path else None

    def __call__(self, event: str, **fields) -> None:
        if self._file is not None:
            self._file.write(json.dumps({"event": event, **fields}) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def read_events(path: str | Path) -> list[dict]:
    """The events in a status file, oldest first: its first and last 16 KiB (the plan and estimate come
    first, the progress and the outcome last); a line cut there or still being written is skipped."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_HEAD)
            if size > _HEAD + _TAIL:
                f.seek(size - _TAIL)
                head += b"\n" + f.read()
            else:
                head += f.read()
    except OSError:
        return []
    found = []
    for line in head.decode("utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError, RecursionError):
            event = json.loads(line)
            if isinstance(event, dict) and isinstance(event.get("event"), str):
                found.append(event)
    return found


def _estimate_text(fields: object) -> str:
    if not isinstance(fields, dict) or not fields:
        return ""
    try:
        return str(Estimate(**{k: v for k, v in fields.items() if k != "event"}))
    except (TypeError, ValueError, OverflowError):
        return ""


def _rate_text(pairs_per_second: float | None) -> str:
    """'7.1 pairs/s' at one pair a second or faster, else '1.52 s/pair'; '' when unknown."""
    if not pairs_per_second or pairs_per_second <= 0:
        return ""
    if pairs_per_second >= 1:
        return f"{pairs_per_second:,.1f} pairs/s"
    return f"{1 / pairs_per_second:,.2f} s/pair"
