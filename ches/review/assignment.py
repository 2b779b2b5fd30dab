"""A run's assignment (the Team page's "Review plan"): whether review is blind, and who reviews which of the
riskiest pairs.

Stored as `<run_dir>/review.json` (atomically; it goes when the run is deleted):

    {"blind": false, "metric": "ln_ches", "n": 200, "overlap": 2,
     "queues": {"ann-a": ["<pair_id>", ...], "ann-b": [...]}}

blind: an annotator does not see the others' decisions on a pair until they have decided it themselves.
Assignment (`assign`): the n riskiest pairs by `metric`, each given to `overlap` distinct annotators, so
every pair is seen by that many people; queues are in rank order and their sizes differ by at most one.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ches.atomic import atomic_write_text
from ches.engine.metrics import METRICS

ASSIGNMENT_FILE = "review.json"


class AssignmentError(ValueError):
    """An assignment that cannot be made, or a review.json that cannot be read (the message says why)."""


@dataclass(frozen=True)
class Assignment:
    blind: bool = False
    metric: str = "ln_ches"                                   # what "riskiest" was ranked by
    n: int = 0                                                # pairs assigned (the riskiest n)
    overlap: int = 1                                          # annotators per assigned pair
    queues: Mapping[str, tuple[str, ...]] = field(default_factory=dict)   # annotator -> pair ids, riskiest first

    def queue(self, annotator: str) -> tuple[str, ...]:
        """`annotator`'s assigned pair ids (empty when they have none)."""
        return tuple(self.queues.get(annotator, ()))


def assign(ranked_pair_ids: Sequence[str], annotators: Sequence[str], n: int, overlap: int) -> dict[str, tuple[str, ...]]:
    """The first `n` of `ranked_pair_ids` (riskiest first), each given to `overlap` distinct annotators.

    Pair i goes to annotators (i * overlap + j) mod m, j = 0 .. overlap-1 (m annotators): consecutive
    slots, so every queue gets n * overlap / m pairs, +-1, and a mix of the ranks."""
    names = [str(a).strip() for a in annotators]
    if not names or any(not a for a in names):
        raise AssignmentError("name at least one annotator (no empty names)")
    if len(set(names)) != len(names):
        raise AssignmentError(f"an annotator is named twice: {sorted(a for a in set(names) if names.count(a) > 1)}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 1 <= overlap <= len(names):
        raise AssignmentError(f"overlap must be from 1 to the number of annotators ({len(names)}), got {overlap!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise AssignmentError(f"n must be a whole number >= 0, got {n!r}")
    queues: dict[str, list[str]] = {a: [] for a in names}
    for i, pid in enumerate(list(ranked_pair_ids)[:n]):
        for j in range(overlap):
            queues[names[(i * overlap + j) % len(names)]].append(pid)
    return {a: tuple(q) for a, q in queues.items()}


def riskiest(scores: pd.DataFrame, metric: str) -> list[str]:
    """The run's pair ids, riskiest (highest `metric`) first; ties in dataset order, NaN last."""
    if metric not in METRICS:
        raise AssignmentError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    ranked = scores.sort_values([metric, "row"], ascending=[False, True], kind="stable", na_position="last")
    return ranked["pair_id"].tolist()


def read_assignment(run_dir: str | Path) -> Assignment:
    """The run's assignment; the default one (not blind, nothing assigned) when it has none."""
    path = Path(run_dir) / ASSIGNMENT_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Assignment()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AssignmentError(f"{path.name} cannot be read ({e}); assign the pairs again to rewrite it") from None
    try:
        queues = {str(a): tuple(str(p) for p in q) for a, q in dict(raw.get("queues", {})).items()}
        return Assignment(blind=bool(raw.get("blind", False)), metric=str(raw.get("metric", "ln_ches")),
                          n=int(raw.get("n", 0)), overlap=int(raw.get("overlap", 1)), queues=queues)
    except (TypeError, ValueError, AttributeError) as e:
        raise AssignmentError(f"{path.name} is not a review plan ({e}); assign the pairs again to rewrite it") from None


def write_assignment(run_dir: str | Path, assignment: Assignment) -> None:
    """Store `assignment` as the run's review.json (atomically)."""
    data = {"blind": assignment.blind, "metric": assignment.metric, "n": assignment.n, "overlap": assignment.overlap,
            "queues": {a: list(q) for a, q in assignment.queues.items()}}
    atomic_write_text(Path(run_dir) / ASSIGNMENT_FILE, json.dumps(data, ensure_ascii=False, indent=1) + "\n")


def progress(assignment: Assignment, mine: Mapping[str, Mapping[str, object]]) -> pd.DataFrame:
    """Per assigned annotator: assigned, done (pairs of their queue they have decided), left.
    `mine` = {annotator: {pair_id: Decision}} (decisions.current_by_annotator / TeamView.by_annotator)."""
    rows = []
    for a, q in assignment.queues.items():
        decided = mine.get(a, {})
        done = sum(1 for p in q if p in decided)
        rows.append({"annotator": a, "assigned": len(q), "done": done, "left": len(q) - done})
    return pd.DataFrame(rows, columns=["annotator", "assigned", "done", "left"])
