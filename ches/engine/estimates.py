"""A run's time estimate (`ches estimate`, Data & score's Estimate): the sentence, and where it is kept.

    estimates.note(run_dir)              # a complete run's sentence (already scored, or damaged), no model needed
    estimates.sentence(est, device, 3)   # "N pairs to score, T tokens; estimated ... on cpu (measured ...)."
    estimates.write(run_dir, text)       # <runs>/<run id>.estimate.json
    estimates.read(run_dir)              # Stored(text, measured_at) or None

It is kept beside the run folder it is for, as `<run id>.estimate.json` ({"run", "text", "measured_at": ISO 8601
UTC}), written atomically: the run id already names the data, model and settings, so the command and the page
find it from the run folder alone (no other place to agree on); it outlives the job that measured it (the jobs
panel removes a complete job's files); and it creates no run folder (the runs listings read folders only).
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ches.atomic import atomic_write_text
from ches.engine.repair import check_run
from ches.engine.store import DamagedRun, is_complete
from ches.engine.timing import Estimate

SUFFIX = ".estimate.json"


@dataclass(frozen=True)
class Stored:
    text: str                # the sentence, as `ches estimate` printed it
    measured_at: datetime    # when, UTC


def note(run_dir: str | Path) -> str | None:
    """The sentence for a complete run, from cheap reads only (repair.check_run): already scored, or damaged
    (then scoring scores it again); None for a run still to score (new or unfinished), which needs the model."""
    if not is_complete(Path(run_dir)):
        return None
    try:
        check_run(Path(run_dir))
    except DamagedRun as e:
        return (f"The stored run for these settings cannot be used ({e.path.name} cannot be read): Score scores it "
                "again.")
    return "Already scored with these settings: Score reopens the stored run."


def sentence(est: Estimate, device: object, kept: int) -> str:
    """The estimate of the pairs still to score, measured on `device`; `kept`: pairs already scored in the run."""
    return (f"{est} on {device} (measured on a short warm-up)."
            + (f" The {kept:,} pairs already scored are kept." if kept else ""))


def file_of(run_dir: str | Path) -> Path:
    """Where the estimate for `run_dir` is kept: beside it, `<run id>.estimate.json`."""
    return Path(run_dir).parent / f"{Path(run_dir).name}{SUFFIX}"


def write(run_dir: str | Path, text: str) -> Path:
    """Keep `text` as the estimate for `run_dir`, measured now; the file written."""
    path = file_of(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"run": Path(run_dir).name, "text": text,
                                        "measured_at": datetime.now(timezone.utc).isoformat()}, indent=2))
    return path


def read(run_dir: str | Path) -> Stored | None:
    """The estimate kept for `run_dir`; None when there is none, or it cannot be read or is another run's."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError):
        found = json.loads(file_of(run_dir).read_text(encoding="utf-8"))
        when = datetime.fromisoformat(found["measured_at"])
        if found["run"] == Path(run_dir).name and isinstance(found["text"], str) and when.tzinfo is not None:
            return Stored(found["text"], when.astimezone(timezone.utc))
    return None
