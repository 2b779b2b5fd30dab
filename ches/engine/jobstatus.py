"""Where a job stands: its events (the JSON-lines status file its process appends to) read back as a
`JobStatus`. Part of `ches.engine.jobs` (which names these too); the event vocabulary is in its docstring.

A scoring job's status also reads its run folder (finished chunks; complete or not). Any other kind is
complete when its process wrote "complete" (with "result": what it stored), and counts its work in its
"progress" events alone (`UNITS`: pair passes for a probe and a curation check; a projection only says
its steps).
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ches.engine import runs
from ches.engine.jobfile import Job, read, running
from ches.engine.timing import Estimate, duration

STATUS_ENV = "CHES_JOB_STATUS"   # the file a job's process appends its events to
_HEAD = _TAIL = 16 * 1024        # status() reads the first and last bytes of the status file
UNITS = {"score": ("pair", "pairs"), "estimate": ("step", "steps"), "probe": ("pair pass", "pair passes"),
         "check-curation": ("pair pass", "pair passes"), "project": ("step", "steps"),
         "tokens": ("pair", "pairs")}   # what progress counts
WHAT = {"score": "scoring", "estimate": "time estimate", "probe": "probe", "check-curation": "curation check",
        "project": "map", "tokens": "token view"}


@dataclass(frozen=True)
class JobStatus:
    state: str               # "starting" | "running" | "complete" | "cancelled" | "interrupted" | "failed" | "broken"
    done: int                # pairs scored so far (finished chunks, or the live count from the job's bar); other
                             # kinds: the UNITS of work done, from their progress events
    kept: int                # pairs in finished chunks: what a resume keeps (0 for other kinds)
    total: int               # pairs to score (0 until the job has planned the run); other kinds: UNITS to do
    seconds_left: str        # the job's own estimate of the time left ("3 min 05 s"; "" when unknown)
    rate: str                # the job's own speed ("7.1 pairs/s", "1.52 s/pair pass"; "" when unknown)
    estimate: str            # the token count and time estimated before scoring (str(Estimate); "" until known)
    error: str               # why a failed or broken job failed, as the user should read it ("" otherwise)
    step: str = ""           # what a running job is doing now ("loading the model", ...; "" when over)
    unreadable: str = ""     # why figures of the status file are left out ("" when every one could be true)
    result: str = ""         # what a complete job other than scoring stored (a folder or file; "" otherwise)

    @property
    def running(self) -> bool:
        return self.state in ("starting", "running")



def status(job: Job) -> JobStatus:
    """Where the job stands, read from its run folder (finished chunks) and its status file (events).

    Whether it is live is its process's alone (jobfile.running). An event that names another run than the
    job's own is ignored. Figures from the status file are used only when they can be true: whole numbers,
    0 <= done <= total, and the total the run folder and the plan agree on; an event whose figures cannot
    be true is left out, and `unreadable` says so."""
    job = read(job.file) or job                 # cancelled meanwhile, or its pid written since
    if job.problem:
        return JobStatus("broken", 0, 0, 0, "", "", "", f"the job file {job.file.name} is not a job: {job.problem}")
    if job.kind != "score":
        return _task_status(job)
    progress = runs.run_progress(job.run_dir)
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
    state, error = _outcome(job, last, bool(progress and progress.complete))
    if state == "failed" and "complete" in last and "error" not in last:
        error = f"the scoring process finished, but the run folder {job.run_dir.name} holds no complete run"
        if elsewhere:
            error += (f": it scored into {Path(elsewhere[-1]).name[:64]} (the page and the job read the data "
                      "differently)")
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


def _task_status(job: Job) -> JobStatus:
    """The status of a job other than scoring, from its events and its process alone: complete once it wrote
    "complete" (its "result" the folder or file it stored), else live while its process runs."""
    last = {e["event"]: e for e in read_events(job.events)}
    live = _pairs(last.get("progress"), 0)
    state, error = _outcome(job, last, "complete" in last)
    alive = state in ("starting", "running")
    shown = last.get("progress", {}) if alive and live else {}
    done, total = live if shown else (0, 0)
    rate, left = _number(shown.get("rate")), _number(shown.get("seconds_left"))
    step = str(last.get("step", {}).get("what", ""))[:160] if alive else ""
    if state == "starting":
        step = f"starting the {WHAT[job.kind]} process"
    unreadable = "not shown: the job's status file reports impossible figures (progress)" if live is None else ""
    return JobStatus(state, done, 0, total, duration(left) if left is not None else "",
                     _rate_text(rate, *UNITS[job.kind]), "", error, step, unreadable,
                     str(last.get("complete", {}).get("result", "")))


def _outcome(job: Job, last: dict[str, dict], complete: bool) -> tuple[str, str]:
    """(state, error) of a job whose latest event of each kind is `last`: complete when its work is (`complete`),
    else live while its process runs, else how it stopped: cancelled, the error it reported, interrupted, or
    ended without finishing."""
    if complete:
        return "complete", ""
    if running(job):
        return ("running" if job.pid is not None else "starting"), ""
    if job.cancelled:
        return "cancelled", ""
    if "error" in last:
        return "failed", str(last["error"].get("message", "")).strip()
    if "interrupted" in last:
        return "interrupted", ""
    return "failed", (f"the {WHAT[job.kind]} process ended without finishing (killed, or it crashed; its output: "
                      f"{job.log})")


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


def _rate_text(per_second: float | None, one: str = "pair", many: str = "pairs") -> str:
    """'7.1 pairs/s' at one a second or faster, else '1.52 s/pair' (`one`, `many`: the unit); '' when unknown."""
    if not per_second or per_second <= 0:
        return ""
    if per_second >= 1:
        return f"{per_second:,.1f} {many}/s"
    return f"{1 / per_second:,.2f} s/{one}"
