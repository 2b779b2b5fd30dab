"""Job files: what `ches.engine.jobs` records per job, read and checked; the lock; the process.

A job runs `ches <kind> ARGS` on one run. Its file is `<jobs_dir>/<name>.json` (`job_name`: a scoring job
is named by its run id, any other kind by kind, run id and a digest of its arguments), written by
jobs.start (atomically, under `locked`):

    {"kind": "score" | "probe" | "check-curation" | "project", "run_dir": "<runs>/<run id>",
     "log": "<jobs_dir>/<name>.log", "pid": int | null, "pid_started": text, "args": [texts], "label": text,
     "started_at": ISO 8601, "cancelled": bool}

A file without "kind" is a scoring job (as every job file was before other kinds existed). `read` checks
every field: a file that is not such a record (invalid JSON, a pid that is not a positive whole number, a
missing or mistyped field, an unknown kind, a name other than the one its kind, run and arguments give) is
a broken `Job`, with its `problem`, never an exception. The log and status files are the job file's siblings, whatever it says.
A process is the job's only when its pid and start time (`pid_started`: /proc, or `ps` without /proc)
both match (`running`); only then, and only if it leads its own process group, is it signalled.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

STARTING_S = 60          # a job file without a pid this old belongs to a start that died before spawning
_MAX_JOB_FILE = 1 << 20  # a job file is a few hundred bytes: a larger one is not read
KINDS = ("score", "estimate", "probe", "check-curation", "project", "tokens")   # the `ches` command a job runs


def job_name(kind: str, run_dir: str | Path, args: Sequence[str] = ()) -> str:
    """A job's name (its files' stem): the run id for scoring (the run key covers its settings), else
    `<kind>-<run id>-<digest of args>`: the same run with the same arguments is the same job."""
    run_id = Path(run_dir).name
    if kind == "score":
        return run_id
    return f"{kind}-{run_id}-{hashlib.sha256(json.dumps(list(args)).encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class Job:
    run_dir: Path            # the run it scores or reads: with the kind and args, the job's identity
    file: Path               # <jobs_dir>/<name>.json
    log: Path                # the process's stdout and stderr: <jobs_dir>/<name>.log
    pid: int | None          # None while the starting process has not spawned it yet
    args: tuple[str, ...]    # arguments of `ches <kind>`
    label: str               # what to call it on a page (dataset, pairs, model; a probe's settings)
    started_at: str          # ISO 8601, UTC: with the file, names this start of the job
    cancelled: bool          # cancel() was called
    pid_started: str | None = None   # the process's start time as recorded at spawn (see process_start)
    problem: str = ""        # why the file is not a valid job ("" for a valid one): a broken job
    kind: str = "score"      # the `ches` command it runs (KINDS)

    @property
    def name(self) -> str:
        """The job's name (`job_name`), its files' stem."""
        return self.file.stem

    @property
    def events(self) -> Path:
        """The status file the job's process writes its events to: <jobs_dir>/<name>.status.jsonl."""
        return self.file.with_suffix(".status.jsonl")


@contextlib.contextmanager
def locked(jobs_dir: Path) -> Iterator[None]:
    """The jobs folder's lock (flock on the folder): start, cancel and forget read and write job files
    only while holding it."""
    jobs_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(jobs_dir, os.O_RDONLY)        # the folder itself: no lock file left beside the jobs
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)         # released when the descriptor is closed
        yield
    finally:
        os.close(fd)


def raw(path: Path) -> object:
    """The job file's JSON value; None when the file is gone; a ValueError saying why when it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_JOB_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        return ValueError(f"it cannot be read ({e.strerror or e})")
    if len(data) > _MAX_JOB_FILE:
        return ValueError("it is larger than a job file can be")
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return ValueError("it is not valid JSON")
    return ValueError("it is not a JSON object") if value is None else value


def read(path: str | Path) -> Job | None:
    """The job recorded in `path` (a broken job, with its `problem`, when the file is not a valid job
    file); None when there is no such file."""
    path = Path(path)
    record = raw(path)
    if record is None:
        return None
    if isinstance(record, ValueError):
        return _broken(path, str(record))
    return _job(path, record)


def _job(path: Path, record: object) -> Job:
    """The job a record describes, checked field by field: any mistake makes it a broken job."""
    if not isinstance(record, dict):
        return _broken(path, "it is not a JSON object")
    problems = []
    run_dir, pid, pid_started = record.get("run_dir"), record.get("pid"), record.get("pid_started")
    args, label, started_at = record.get("args"), record.get("label", ""), record.get("started_at")
    kind = record.get("kind", "score")
    if kind not in KINDS:
        problems.append(f"its kind {kind!r} is none of {', '.join(KINDS)}")
    args_ok = isinstance(args, list) and all(isinstance(a, str) for a in args)
    if not isinstance(run_dir, str) or (kind in KINDS and args_ok and job_name(kind, run_dir, args) != path.stem):
        problems.append(f"its run_dir {run_dir!r}, kind and args do not name the job {path.stem}")
    if pid is not None and (type(pid) is not int or pid <= 0):
        problems.append(f"its pid {pid!r} is not a positive whole number")
    if pid_started is not None and not isinstance(pid_started, str):
        problems.append(f"its pid_started {pid_started!r} is not a text")
    if not args_ok:
        problems.append("its args are not a list of texts")
    if not isinstance(label, str):
        problems.append("its label is not a text")
    try:
        datetime.fromisoformat(started_at)
    except (TypeError, ValueError):
        problems.append(f"its started_at {started_at!r} is not a date and time")
    if not isinstance(record.get("cancelled", False), bool):
        problems.append("its cancelled is not true or false")
    if problems:
        return _broken(path, "; ".join(problems))
    return Job(Path(run_dir), path, path.with_suffix(".log"), pid, tuple(args), label, started_at,
               record.get("cancelled", False), pid_started, kind=kind)


def _broken(path: Path, problem: str) -> Job:
    return Job(Path(path.stem), path, path.with_suffix(".log"), None, (), f"job record {path.name}", "", False,
               None, problem)


def running(job: Job) -> bool:
    """The job is starting (no pid yet, for STARTING_S), or its process exists and is the one started:
    same pid and same start time. A job without a recorded start time is not taken for running."""
    if job.problem:
        return False
    if job.pid is None:
        age = time.time() - datetime.fromisoformat(job.started_at).timestamp()
        return age < STARTING_S
    now = process_start(job.pid)
    return now is not None and now != "zombie" and now == job.pid_started


def terminate(job: Job) -> bool:
    """SIGTERM to the job's process group, only if its pid is the process started (same start time) and
    leads its own group, which is not this process's group."""
    if job.pid is None or job.pid <= 0 or not running(job):
        return False
    try:
        if os.getpgid(job.pid) != job.pid or job.pid == os.getpgrp():
            return False
        os.killpg(job.pid, signal.SIGTERM)   # the job leads its own session: its group id is its pid
    except (ProcessLookupError, PermissionError):
        return False
    return True


def process_start(pid: int) -> str | None:
    """The process's start time (Linux: clock ticks since boot, from /proc; elsewhere `ps -o lstart`),
    "zombie" for an unreaped exited process, None when there is no such process (or it cannot be told)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None                              # Linux: no such process
    except OSError:
        return None
    else:
        fields = stat[stat.rindex(")") + 2:].split()    # after "pid (comm) ": state is field 3, starttime 22
        return "zombie" if fields[0] in ("Z", "X") else fields[19]
    try:
        out = subprocess.run(["ps", "-o", "stat=,lstart=", "-p", str(pid)], capture_output=True, text=True,
                             timeout=10).stdout.split(None, 1)
    except (OSError, subprocess.SubprocessError):
        return None
    if len(out) != 2:
        return None
    return "zombie" if out[0].startswith("Z") else out[1].strip()
