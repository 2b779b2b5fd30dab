"""Scoring as a job: one `python -m ches score ...` process that outlives the page that started it.

    job = jobs.start(ws.jobs, run_dir, ["data.jsonl", "--model", "smollm2", "--out", str(ws.runs)])
    jobs.status(job)     # JobStatus: state, pairs done / kept / total, the estimate, an error as text
    jobs.cancel(job)     # SIGTERM to its process group: the CLI keeps the finished chunks, exits 130

A job is named by the run folder it scores (`<jobs_dir>/<run id>.json`): the run key decides the folder,
so the same dataset, model and settings are the same job. The job file is created with O_EXCL, so of two
starts one creates it and the other attaches to that job. The process runs in its own session (a page
reload, a closed tab or a Streamlit rerun cannot reach it); a job whose pid is gone is over.

The process writes two files beside the job file: `<run id>.log`, its output for people (never parsed),
and `<run id>.status.jsonl`, its events for `status()` (path in $CHES_JOB_STATUS; written by `Events`),
one JSON object per line, appended and flushed:

    {"event": "planned", "run": "<run folder>", "total": pairs, "done": pairs already scored}
    {"event": "estimate", "pairs", "tokens", "exact", "tokens_per_second", "seconds"}   (pipeline.Estimate)
    {"event": "progress", "done": pairs, "total": pairs, "rate": pairs/s | null, "seconds_left": s | null}
    {"event": "interrupted", ["done", "total"]}      Ctrl-C / SIGTERM: the finished chunks are kept
    {"event": "error", "message": "what the user should read"}
    {"event": "complete"}

status() reads those events and the run folder (finished chunks; complete or not) and nothing else.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ches.atomic import atomic_write_text
from ches.engine import store
from ches.engine.pipeline import Estimate, duration

STARTING_S = 60          # a job file without a pid this old belongs to a start that died before spawning
STATUS_ENV = "CHES_JOB_STATUS"   # the file `ches score` appends its events to
_HEAD = _TAIL = 16 * 1024        # status() reads the first and last bytes of the status file


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

    @property
    def events(self) -> Path:
        """The status file the job's process writes its events to: <jobs_dir>/<run id>.status.jsonl."""
        return self.file.with_suffix(".status.jsonl")


@dataclass(frozen=True)
class JobStatus:
    state: str               # "starting" | "running" | "complete" | "cancelled" | "interrupted" | "failed"
    done: int                # pairs scored so far (finished chunks, or the live count from the job's bar)
    kept: int                # pairs in finished chunks: what a resume keeps
    total: int               # pairs to score (0 until the job has planned the run)
    seconds_left: str        # the job's own estimate of the time left ("3 min 05 s"; "" when unknown)
    rate: str                # the job's own speed ("7.1 pairs/s", "1.52 s/pair"; "" when unknown)
    estimate: str            # the token count and time estimated before scoring (str(Estimate); "" until known)
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
    events = path.with_suffix(".status.jsonl")
    try:
        events.write_bytes(b"")                 # a previous job's events are not this one's
        with open(record["log"], "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "ches", "score", *args], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**(env or os.environ), "PYTHONUNBUFFERED": "1", STATUS_ENV: str(events)})
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
    """Remove the record, log and status file of a job that is over, or whose run is complete (its process
    may still be printing the summary). The run folder is untouched."""
    if _running(job) and not store.is_complete(job.run_dir):
        raise ValueError(f"the job for {job.run_dir.name} is still running: cancel it first")
    job.file.unlink(missing_ok=True)
    job.log.unlink(missing_ok=True)
    job.events.unlink(missing_ok=True)


def status(job: Job) -> JobStatus:
    """Where the job stands, read from its run folder (finished chunks) and its status file (events)."""
    job = read(job.file) or job                 # cancelled meanwhile, or its pid written since
    progress = store.run_progress(job.run_dir)
    kept, total = (progress.done, progress.total) if progress else (0, 0)
    last = {e["event"]: e for e in read_events(job.events)}     # the latest event of each kind
    planned, live = last.get("planned", {}), last.get("progress", {})
    total = total or int(planned.get("total") or live.get("total") or 0)
    estimate = _estimate_text(last.get("estimate"))
    error = ""
    if planned.get("run") and Path(planned["run"]).name != job.run_dir.name:
        error = (f"the job scores into {Path(planned['run']).name}, not into {job.run_dir.name}: "
                 "the page and the job read the data differently")
    if progress and progress.complete:
        state = "complete"
    elif _running(job) and not error:
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
    running = state in ("starting", "running")
    done = total if state == "complete" else max(kept, int(live.get("done") or 0) if running else 0)
    rate, left = (live.get("rate"), live.get("seconds_left")) if running else (None, None)
    return JobStatus(state, done, kept, total, duration(left) if left is not None else "", _rate_text(rate),
                     estimate, error)


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
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and isinstance(event.get("event"), str):
                found.append(event)
    return found


def _estimate_text(fields: dict | None) -> str:
    if not fields:
        return ""
    try:
        return str(Estimate(**{k: v for k, v in fields.items() if k != "event"}))
    except (TypeError, ValueError):
        return ""


def _rate_text(pairs_per_second: float | None) -> str:
    """'7.1 pairs/s' at one pair a second or faster, else '1.52 s/pair'; '' when unknown."""
    if not pairs_per_second or pairs_per_second <= 0:
        return ""
    if pairs_per_second >= 1:
        return f"{pairs_per_second:,.1f} pairs/s"
    return f"{1 / pairs_per_second:,.2f} s/pair"


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
