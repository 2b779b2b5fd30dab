"""Pair / tokens' views, computed by a job (`ches tokens`, ches/cli/tokens.py) and stored with the run.

    view = stored_view(run_dir, row)            # the stored view of a source row, or None (not computed yet)
    rows = rows_to_compute(run_dir, ranked, row)  # this row and the next AHEAD of `ranked` not stored yet
    tokens_jobs(jobs.list_jobs(ws.jobs), run_dir, row)   # the jobs of the run (that compute this row)
    store_views(run_dir, rows, lm, progress)    # one forward pass per pair, each file written when computed

A view is `pipeline.pair_tokens` of the pair at the run's max length, as JSON in
`<run_dir>/tokens/<row>.json`, with the weights' fingerprint of the model that computed it
(`fingerprint`: the page warns when it is not the run's) and the contributions of every metric of
metrics.TOKEN_METRICS (switching the metric needs no job). The opened row goes first and each file is
written (ches.atomic) as soon as its pair is done, so the page shows it while the job goes on with the
next AHEAD pairs of its ranking: the annotator's next pairs open from disk. One token job per run runs at a
time (each loads its own copy of the model): a page whose row no running job computes waits for the run's
running one, then starts its own. A complete run folder never changes, so a stored view is never stale; an
unreadable file is a miss that is computed again.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ches.atomic import atomic_write_text
from ches.engine import store
from ches.engine.metrics import TOKEN_METRICS

__all__ = ["AHEAD", "FOLDER", "stored_view", "rows_to_compute", "store_views", "tokens_args", "tokens_jobs"]

AHEAD = 4              # after the opened row, this many of the next rows in the page's ranking are computed too
FOLDER = "tokens"      # <run_dir>/tokens/<row>.json

log = logging.getLogger(__name__)


def _file(run_dir: str | Path, row: int) -> Path:
    return Path(run_dir) / FOLDER / f"{int(row)}.json"


def stored_view(run_dir: str | Path, row: int) -> dict | None:
    """The stored view of source row `row` of the run, or None when there is none (or it cannot be read)."""
    try:
        view = json.loads(_file(run_dir, row).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(view, dict) or not all(m in view.get("contributions", {}) for m in TOKEN_METRICS):
        return None
    return view


def rows_to_compute(run_dir: str | Path, ranked: Sequence[int], row: int, ahead: int = AHEAD) -> list[int]:
    """`row`, then the next `ahead` rows after it in `ranked` (the page's order), leaving out stored ones."""
    after = list(ranked)[list(ranked).index(row) + 1:] if row in ranked else []
    return [int(r) for r in [row, *after[:ahead]] if stored_view(run_dir, r) is None]


def tokens_args(run_dir: str | Path, rows: Sequence[int]) -> list[str]:
    """The `ches tokens` arguments that store the views of `rows` of `run_dir`, in that order."""
    return [str(run_dir), *[a for r in rows for a in ("--row", str(int(r)))]]


def tokens_jobs(jobs: Sequence, run_dir: str | Path, row: int | None = None) -> list:
    """Of `jobs` (jobs.list_jobs), the "tokens" jobs of `run_dir`, the latest start first; with `row`, only
    those whose rows include it (running or not: the caller reads their status)."""
    wanted = None if row is None else str(int(row))
    return [job for job in reversed(list(jobs)) if job.kind == "tokens"
            and Path(job.run_dir).name == Path(run_dir).name
            and (wanted is None or any(a == "--row" and b == wanted for a, b in zip(job.args, job.args[1:])))]


def store_views(run_dir: str | Path, rows: Sequence[int], lm, progress: Callable[[int], None] | None = None) -> int:
    """Compute and store the view of each of `rows` (source rows of the run) not stored yet, in order, with
    `lm` (the run's model); `progress(done)` after each. -> how many were computed. KeyError for a row the
    run does not have."""
    from ches.engine.pipeline import pair_tokens      # the forward pass: only a job (or a script) needs torch

    run_dir = Path(run_dir)
    max_length = int(store.read_manifest(run_dir)["key"]["max_length"])
    pairs = {p.row: p for p in store.read_pairs(run_dir, rows=[int(r) for r in rows])}
    missing = [r for r in rows if int(r) not in pairs]
    if missing:
        raise KeyError(f"the run {run_dir.name} has no source row {missing[0]}")
    computed = 0
    for done, row in enumerate(rows, 1):
        if stored_view(run_dir, row) is None:
            view = pair_tokens(lm, pairs[int(row)], max_length)
            view["contributions"] = {m: np.asarray(v).tolist() for m, v in view["contributions"].items()}
            view["rejected_alignment"] = np.asarray(view["rejected_alignment"]).tolist()
            view.update(row=int(row), fingerprint=lm.fingerprint)
            _file(run_dir, row).parent.mkdir(exist_ok=True)
            atomic_write_text(_file(run_dir, row), json.dumps(view))
            computed += 1
        if progress is not None:
            progress(done)
    return computed
