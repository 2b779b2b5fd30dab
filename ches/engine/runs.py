"""The runs under a root, read from disk: the complete ones (list_runs), the unfinished, reopened and broken ones
(list_unfinished), and how far a run got (run_progress). A job scoring in another process (the app runs
`ches score` in the background) is polled through these.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

from ches.engine.chunks import chunk_rows, done_chunks, read_plan, tidy
from ches.engine.repair import read_reopened
from ches.engine.store import is_complete, read_manifest

log = logging.getLogger(__name__)


class RunProgress(NamedTuple):
    done: int                # pairs in finished chunks
    total: int               # pairs in the dataset being scored
    complete: bool           # finalised: the run can be read


def run_progress(run_dir: Path) -> RunProgress | None:
    """Pairs done / total of a run, finished or not, read from disk; None when nothing was started there.

    For a job scoring in another process (the app runs `ches score` in the background), poll this.
    """
    run_dir = Path(run_dir)
    try:
        if is_complete(run_dir):
            m = read_manifest(run_dir)
            total = int(m.get("total_pairs", m.get("pairs", 0)))
            return RunProgress(total, total, True)
        plan = read_plan(run_dir)
        done = sum(len(chunk_rows(plan, i)) for i in done_chunks(run_dir, plan))
        return RunProgress(done, int(plan["total_pairs"]), False)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def list_runs(runs_root: Path) -> list[tuple[Path, dict]]:
    """Complete runs under the root, newest first; unreadable folders are skipped. A complete run's plan and
    chunks (a tidy-up cut short by a kill) are removed on the way (tidy: safe beside a finaliser)."""
    runs = []
    root = Path(runs_root)
    if not root.is_dir():
        return runs
    for d in root.iterdir():
        try:
            if not (d.is_dir() and is_complete(d)):
                continue
            runs.append((d, read_manifest(d)))
        except (OSError, ValueError):
            continue
        if (d / "plan.json").exists() or (d / "chunks").exists():   # a tidy-up cut short (a kill): finish it
            try:
                tidy(d)
            except OSError as e:
                log.warning("%s: the leftovers of its scoring could not be removed (%s)", d, e)
    return sorted(runs, key=lambda r: r[1].get("created_at", ""), reverse=True)


def list_unfinished(runs_root: Path) -> list[tuple[Path, dict, RunProgress | None]]:
    """Runs started but not finished (interrupted, or scoring now), newest first, with their progress;
    then broken ones (a folder with chunks/ or plan.json whose plan cannot be read, or a complete one whose
    manifest cannot: plan {}, progress None), which repair mends and delete_run removes.

    A run reopened (reopen: a damaged file; no manifest, plan or chunks, its review.json, probes or checks kept) is
    unfinished with 0 pairs done: its "plan" is what reopened.json says (read_reopened: why, reopened_at, the
    command that scores it again as `command`, the manifest's key, source, created_at); when that does not name
    its data (the damaged file was the manifest), it is listed with the broken ones, that dict beside None."""
    found, broken = [], []
    root = Path(runs_root)
    for d in (root.iterdir() if root.is_dir() else []):
        try:
            if d.is_dir() and is_complete(d):
                read_manifest(d)                    # unreadable: broken (below)
                continue
            if not d.is_dir() or not ((d / "plan.json").exists() or (d / "chunks").exists()):
                said = read_reopened(d) if d.is_dir() else None
                if said is not None:
                    total = _reopened_total(said)
                    (broken if total is None else found).append((d, said, None if total is None
                                                                  else RunProgress(0, total, False)))
                continue
            progress = run_progress(d)
            if progress is None:
                broken.append((d, {}, None))
            else:
                found.append((d, read_plan(d), progress))
        except (OSError, ValueError):
            broken.append((d, {}, None))
    return sorted(found, key=lambda r: r[1].get("created_at", ""), reverse=True) + sorted(broken)


def _reopened_total(said: dict) -> int | None:
    """The pairs of a reopened run when reopened.json names its data (key, source, created_at, total_pairs)."""
    if not (isinstance(said.get("key"), dict) and "model_id" in said["key"] and isinstance(said.get("source"), str)
            and isinstance(said.get("created_at"), str) and isinstance(said.get("total_pairs"), int)):
        return None
    return said["total_pairs"]
