"""Scoring as a job: one `python -m ches score` process that outlives the page that started it.

    job = jobs.start(ws.jobs, run_dir, ["data.jsonl", "--model", "smollm2", "--out", str(ws.runs)])
    jobs.status(job)     # JobStatus: state, what it is doing, pairs done / kept / total, the estimate, an error
    jobs.cancel(job)     # SIGTERM to its process group: the CLI keeps the finished chunks, exits 130
    jobs.settings_of(job.args)   # ScoreSettings: what it scores, and how (score_args read back)

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

status() reads those events and the run folder (finished chunks; complete or not) and nothing else. Whether
a job is live is its process's alone: an event naming another run than the job's is ignored, and figures
that cannot be true (not whole numbers, done > total, a total the run folder or the plan contradicts) are
left out, with JobStatus.unreadable saying so; a value of the wrong type in an event is ignored.
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
from ches.engine import store
from ches.engine.jobfile import STARTING_S, Job, locked, process_start, raw, read, running, terminate
from ches.engine.timing import Estimate, duration

__all__ = ["STARTING_S", "STATUS_ENV", "Events", "Job", "JobStatus", "ScoreSettings", "cancel", "find", "forget",
           "job_file", "list_jobs", "read", "read_events", "score_args", "settings_of", "start", "status"]

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
    unreadable: str = ""     # why figures of the status file are left out ("" when every one could be true)

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
    """Where the job stands, read from its run folder (finished chunks) and its status file (events).

    Whether it is live is its process's alone (jobfile.running). An event that names another run than the
    job's own is ignored. Figures from the status file are used only when they can be true: whole numbers,
    0 <= done <= total, and the total the run folder and the plan agree on; an event whose figures cannot
    be true is left out, and `unreadable` says so."""
    job = read(job.file) or job                 # cancelled meanwhile, or its pid written since
    if job.problem:
        return JobStatus("broken", 0, 0, 0, "", "", "", f"the job file {job.file.name} is not a job: {job.problem}")
    progress = store.run_progress(job.run_dir)
    kept, total = (progress.done, progress.total) if progress else (0, 0)
    events = read_events(job.events)
    elsewhere = [str(e["run"]) for e in events if not _names_its_run(e, job)]
    last = {e["event"]: e for e in events if _names_its_run(e, job)}     # the latest event of each kind
    doubted = []                                # the events whose figures cannot be true
    planned = _pairs(last.get("planned"), total)
    if planned is None:
        doubted.append("plan")
    total = total or (planned or (0, 0))[1]
    live = _pairs(last.get("progress"), total)
    if live is None:
        doubted.append("progress")
    total = total or (live or (0, 0))[1]
    estimate = _estimate_text(last.get("estimate"), total)
    if "estimate" in last and not estimate:
        doubted.append("estimate")
    error = ""
    if progress and progress.complete:
        state = "complete"
    elif running(job):
        state = "running" if job.pid is not None else "starting"
    elif job.cancelled:
        state = "cancelled"
    elif "error" in last:
        state, error = "failed", str(last["error"].get("message", "")).strip()
    elif "interrupted" in last:
        state = "interrupted"
    elif "complete" in last:
        state = "failed"
        error = f"the scoring process finished, but the run folder {job.run_dir.name} holds no complete run"
        if elsewhere:
            error += (f": it scored into {Path(elsewhere[-1]).name[:64]} (the page and the job read the data "
                      "differently)")
    else:
        state = "failed"
        error = f"the scoring process ended without finishing (killed, or it crashed; its output: {job.log})"
    alive = state in ("starting", "running")
    shown = last.get("progress", {}) if alive and live else {}       # a live count dies with its process
    done = total if state == "complete" else max(kept, live[0] if shown else 0)
    rate, left = _number(shown.get("rate")), _number(shown.get("seconds_left"))
    step = str(last.get("step", {}).get("what", ""))[:80] if alive else ""
    if state == "starting":
        step = "starting the scoring process"
    unreadable = f"not shown: the job's status file reports impossible figures ({', '.join(doubted)})" if doubted \
        else ""
    return JobStatus(state, done, kept, total, duration(left) if left is not None else "", _rate_text(rate),
                     estimate, error, step, unreadable)


def _names_its_run(event: dict, job: Job) -> bool:
    """False for an event that names a run (its "run") other than the job's own; True for every other."""
    run = event.get("run", str(job.run_dir))
    return isinstance(run, str) and Path(run).name == job.run_dir.name


def _pairs(event: dict | None, total: int) -> tuple[int, int] | None:
    """(done, total) of a "planned" or "progress" event, (0, 0) without one; None when its figures cannot be
    true: not whole numbers, done < 0, done > total, total < 1, or another total than the one already known
    (`total`; 0 when none is known yet)."""
    if event is None:
        return 0, 0
    done, theirs = event.get("done"), event.get("total")
    if type(done) is not int or type(theirs) is not int or not 0 <= done <= theirs or theirs < 1:
        return None
    return (done, theirs) if not total or theirs == total else None


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


def _estimate_text(fields: object, total: int) -> str:
    """The estimate event as text; "" when there is none or its figures cannot be true (whole numbers of
    pairs, at most `total` when that is known, and of tokens; a finite speed and time, not negative)."""
    if not isinstance(fields, dict):
        return ""
    pairs, tokens, exact, speed, seconds = (fields.get(k) for k in ("pairs", "tokens", "exact", "tokens_per_second",
                                                                      "seconds"))
    if (type(pairs) is not int or type(tokens) is not int or not isinstance(exact, bool) or pairs < 0 or tokens < 0
            or (total and pairs > total) or _number(speed) is None or _number(seconds) is None):
        return ""
    return str(Estimate(pairs, tokens, exact, float(speed), float(seconds)))


def _rate_text(pairs_per_second: float | None) -> str:
    """'7.1 pairs/s' at one pair a second or faster, else '1.52 s/pair'; '' when unknown."""
    if not pairs_per_second or pairs_per_second <= 0:
        return ""
    if pairs_per_second >= 1:
        return f"{pairs_per_second:,.1f} pairs/s"
    return f"{1 / pairs_per_second:,.2f} s/pair"
