"""Filter and rank a run's pairs for review (pure pandas over the scores table).

Ranking is by the chosen metric (a name in ches.engine.metrics.METRICS), descending: the riskiest pairs
(most likely to cause likelihood displacement) come first; ties keep dataset order. Percentiles are over
the whole run, so a pair's percentile does not move when other filters change:

    percentile(x) = 100 * #{values <= x} / #{values}        (NaN values ignored)

A team (ches.review.team_rules): the `decision` column is one annotator's own decision (the caller passes
theirs), `team` the pair's team status as that annotator may see it (`team_column`: HIDDEN on the pairs they
have not decided while the run's review is blind), and `in_queue` orders the ranking by an assigned queue.

Everything here works on the scores table only, except `search_rows`, which reads the text columns.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ches.engine import store
from ches.engine.metrics import METRICS
from ches.review.team_rules import TEAM_STATUSES, TeamView, team_status
from ches.review.decisions import DECISION_VALUES, STATUSES, UNDECIDED

PAGE_SIZE = 50
HIDDEN = "hidden (blind)"        # a team status an annotator may not see yet (blind review, pair not decided)
TEAM_FILTERS = (*TEAM_STATUSES, HIDDEN)


def percentile_of(values: Sequence[float] | np.ndarray | pd.Series, x: float) -> float:
    """Percent of the (non-NaN) values that are <= x, in [0, 100]; NaN for no values or a NaN x."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0 or x is None or np.isnan(x):
        return float("nan")
    return 100.0 * np.count_nonzero(v <= x) / v.size


def percentiles(values: pd.Series) -> pd.Series:
    """`percentile_of(values, v)` for every v, vectorised (same index as `values`)."""
    return values.rank(method="max", pct=True) * 100.0


def has_any_flag(flags: pd.Series, wanted: Iterable[str]) -> pd.Series:
    """Boolean mask: the comma-joined `flags` cell holds at least one of `wanted`."""
    wanted = [f for f in wanted if f]
    padded = "," + flags.fillna("").astype(str) + ","
    mask = pd.Series(False, index=flags.index)
    for f in wanted:
        mask |= padded.str.contains(f",{f},", regex=False)
    return mask


def decision_status(pair_ids: pd.Series, decisions: Mapping[str, object] | None) -> pd.Series:
    """'keep' / 'drop' / 'flag' per pair from {pair_id: Decision or str}; 'undecided' otherwise."""
    if not decisions:
        return pd.Series(UNDECIDED, index=pair_ids.index, dtype=object)
    labels = {k: getattr(v, "decision", v) for k, v in decisions.items()}
    return pair_ids.map(labels).fillna(UNDECIDED).astype(object)


def team_column(pair_ids: pd.Series, view: TeamView, annotator: str, blind: bool) -> pd.Series:
    """Each pair's team status (team_rules.team_status) as `annotator` may see it: while the run is `blind`,
    HIDDEN on every pair `annotator` has not decided (without a name: every pair). Same index."""
    status = team_status(pair_ids, view)
    if blind:
        mine = view.mine(annotator) if annotator else {}
        status = status.where(pair_ids.isin(list(mine)), HIDDEN)
    return status


def filter_pairs(table: pd.DataFrame, *, metric: str = "ln_ches", percentile: tuple[float, float] = (0, 100),
                 score_range: tuple[float, float] | None = None, flags: Iterable[str] = (),
                 status: Iterable[str] = (), decisions: Mapping[str, object] | None = None,
                 rows: Iterable[int] | None = None, length_range: tuple[int, int] | None = None,
                 team: pd.Series | None = None, team_filter: Iterable[str] = ()) -> pd.DataFrame:
    """The pairs passing every filter, riskiest first, with `percentile` and `decision` columns added (and
    `team`, when `team` is given: a team status per row of `table`, same index, e.g. `team_column`).

    percentile: band of the metric's percentile over the whole run (inclusive).
    score_range: inclusive bounds on the metric.  flags: keep pairs with ANY of these flags.
    status: keep pairs whose decision (in `decisions`: one annotator's, or anyone's) is one of these
    ('undecided' = none).  team_filter: keep pairs whose `team` value is one of these (TEAM_FILTERS).
    rows: only these source rows.  length_range: both responses' token lengths (|y+|, |y-|) inside these
    inclusive bounds. Empty `flags` / `status` / `team_filter` and None mean "no filter".
    """
    if metric not in table.columns:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    out = table.assign(percentile=percentiles(table[metric]),
                       decision=decision_status(table["pair_id"], decisions))
    if team is not None:
        out["team"] = team
    keep = pd.Series(True, index=out.index)
    lo, hi = percentile
    if lo > 0 or hi < 100:
        keep &= out["percentile"].between(lo, hi)
    if score_range is not None:
        keep &= out[metric].between(score_range[0], score_range[1])
    flags = list(flags)
    if flags:
        keep &= has_any_flag(out["flags"], flags)
    status = list(status)
    if status:
        bad = set(status) - set(STATUSES)
        if bad:
            raise ValueError(f"unknown status {sorted(bad)}; choose from {', '.join(STATUSES)}")
        keep &= out["decision"].isin(status)
    team_filter = list(team_filter)
    if team_filter:
        bad = set(team_filter) - set(TEAM_FILTERS)
        if bad or team is None:
            raise ValueError(f"unknown team status {sorted(bad)}; choose from {', '.join(TEAM_FILTERS)}" if bad
                             else "a team status filter needs the `team` column")
        keep &= out["team"].isin(team_filter)
    if rows is not None:
        keep &= out["row"].isin(list(rows))
    if length_range is not None:
        a, b = length_range
        keep &= out["len_chosen"].between(a, b) & out["len_rejected"].between(a, b)
    return out[keep].sort_values([metric, "row"], ascending=[False, True], kind="stable", na_position="last")


def next_undecided(ranked_rows: Sequence[int], current: int | None, undecided: Container[int]) -> int | None:
    """The first undecided row after `current` in the ranking, wrapping around to the top; never `current`
    itself; None when no other row is undecided. Stops at the first undecided row it meets."""
    n = len(ranked_rows)
    try:
        start = ranked_rows.index(current) + 1 if current is not None else 0
    except ValueError:
        start = 0
    for k in range(n):
        r = ranked_rows[(start + k) % n]
        if r != current and r in undecided:
            return int(r)
    return None


def pair_to_open(ranked_rows: Sequence[int], current: int | None, undecided: Container[int], review: bool) -> int | None:
    """The row a pair view opens: `current` while the ranking holds it; else, in review, the first undecided row
    (the top one when none is); else the top of the ranking; None for an empty ranking."""
    if current is not None and current in ranked_rows:
        return int(current)
    first = next_undecided(ranked_rows, None, undecided) if review else None
    return first if first is not None else int(ranked_rows[0]) if len(ranked_rows) else None


@dataclass(frozen=True)
class Undecided:
    """The rows whose pair `decided` does not hold (`row in Undecided(...)`), looked up when asked: a pair panel
    finds the next undecided pair after a press without recomputing the ranking's decision column."""
    pair_of: Mapping[int, str]                # row -> pair id
    decided: Container[str]                   # pair ids with a decision (e.g. mine)

    def __contains__(self, row: object) -> bool:
        pid = self.pair_of.get(row)           # type: ignore[call-overload]
        return pid is not None and pid not in self.decided


def in_queue(ranked: pd.DataFrame, queue: Sequence[str]) -> pd.DataFrame:
    """The rows of `ranked` whose pair id is in `queue`, in queue order (an assigned annotator's order)."""
    order = {pid: i for i, pid in enumerate(queue)}
    position = ranked["pair_id"].map(order)
    return ranked.loc[position.notna()].iloc[np.argsort(position.dropna().to_numpy(), kind="stable")]


def decided_counts(pair_ids: Iterable[str], decisions: Mapping[str, object] | None) -> dict[str, int]:
    """{'keep': n, 'drop': n, 'flag': n} over the (distinct) pairs that already have a decision (zero counts left
    out); with `pair_ids` a set, in time that grows with the decisions, not the pairs."""
    ids = pair_ids if isinstance(pair_ids, set | frozenset) else set(pair_ids)
    counts = Counter(getattr(d, "decision", d) for pid, d in (decisions or {}).items() if pid in ids)
    return {d: counts[d] for d in DECISION_VALUES if counts[d]}


def page_count(n: int, page_size: int = PAGE_SIZE) -> int:
    """Pages needed for n rows (at least 1, so an empty table still has page 1)."""
    return max(1, -(-n // page_size))


def page_of(ranked: pd.DataFrame, page: int, page_size: int = PAGE_SIZE) -> pd.DataFrame:
    """Rows of 1-based `page` (clamped to the valid range)."""
    page = min(max(1, int(page)), page_count(len(ranked), page_size))
    return ranked.iloc[(page - 1) * page_size: page * page_size]


def robust_range(values: pd.Series | np.ndarray, pct: tuple[float, float] = (1, 99),
                 margin: float = 0.05) -> tuple[float, float]:
    """An axis range for a score: the full range when every value lies within the 1st-99th percentile
    band widened by `margin` of its width on each side; else that widened band (a few outliers, such as
    a 2-token answer with LN-CHES -1494, no longer squash the rest into one bar). (nan, nan) if no values."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(v, pct)
    pad = (hi - lo) * margin
    lo, hi = max(lo - pad, v.min()), min(hi + pad, v.max())
    return float(lo), float(hi)


def histogram(values: pd.Series | np.ndarray, bins: int = 60) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(counts, edges, below, above) over the finite values on `robust_range`: values outside it are
    counted in the edge bins, and `below` / `above` say how many. Bars, so 100k pairs cost 60 numbers."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(1), 0, 0
    lo, hi = robust_range(v)
    counts, edges = np.histogram(np.clip(v, lo, hi), bins=bins, range=(lo, hi) if hi > lo else None)
    return counts, edges, int((v < lo).sum()), int((v > hi).sum())


_TEXT_COLUMNS = ("prompt", "chosen", "rejected", "rejected_prompt")


def search_rows(run_dir: str | Path, query: str) -> set[int]:
    """Source rows whose prompt, chosen or rejected text contains `query` (case-insensitive substring).

    Prompts are stored as JSON message lists: a fast Arrow pass over the raw JSON (query matched both
    as typed and JSON-escaped) finds candidates, then only candidate prompts are decoded and checked, so
    JSON syntax ("role", "content", escapes) never produces a match.
    """
    query = query.strip() if isinstance(query, str) else ""
    if not query:
        return set()
    table = store.read_texts_table(Path(run_dir), columns=["row", *_TEXT_COLUMNS])   # DamagedRun names the file
    table = table.cast(pa.schema([pa.field("row", table.schema.field("row").type)] +
                                 [pa.field(c, pa.string()) for c in _TEXT_COLUMNS]))  # an all-None column reads as null
    needle = query.lower()
    found: set[int] = set()
    for name in ("chosen", "rejected"):
        mask = pc.match_substring(table[name], query, ignore_case=True)
        found.update(table.filter(mask.fill_null(False))["row"].to_pylist())
    escaped = json.dumps(query, ensure_ascii=False)[1:-1]
    for name in ("prompt", "rejected_prompt"):
        col = table[name]
        mask = pc.or_(pc.match_substring(col, query, ignore_case=True),
                      pc.match_substring(col, escaped, ignore_case=True)).fill_null(False)
        cand = table.filter(mask)
        for row, text in zip(cand["row"].to_pylist(), cand[name].to_pylist()):
            if row in found:
                continue
            try:
                messages = json.loads(text)
            except (TypeError, ValueError):
                continue
            if any(needle in str(m.get("content", "")).lower() for m in messages if isinstance(m, dict)):
                found.add(int(row))
    return {int(r) for r in found}
