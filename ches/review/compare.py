"""Compare two runs of the same pairs (matched by pair_id) scored by two models or settings.

Only the two scores tables are read (never the n x d arrays). `join` keeps the pairs both runs hold
(a pair_id seen twice in one run counts once: its first row) and refuses fewer than MIN_SHARED.
Over the n shared pairs, for each metric of ches.engine.metrics.METRICS:

    Spearman rho  = Pearson correlation of the two columns' average ranks   (scipy.stats.spearmanr)
    Kendall tau-b = (concordant - discordant) / sqrt((n0 - ties_a)(n0 - ties_b))   (scipy.stats.kendalltau)

both over the pairs whose value is finite in both runs (NaN when fewer than 2 or a column is constant).

    riskiest p%:  the k = ceil(n p / 100) highest values among the shared pairs in each run (ties: A's
                  dataset order; NaN never counts as risky)
    export drops: what `ches.review.export.select` drops by the rule and flags on each run's WHOLE table
                  (the rule ranks over all of a run's pairs, as the export does), restricted to the shared
                  pairs; decisions are left out: they apply to both runs alike and would only inflate it
    overlap of sets A and B: Jaccard = |A & B| / |A | B|,  share of A in B = |A & B| / |A|
    movers:       percentile = 100 (average rank - 1) / (n - 1) among the shared pairs (100 = riskiest);
                  shift = percentile in B - percentile in A, largest |shift| first
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ches.engine.metrics import METRICS
from ches.review.export import Rule, select

MIN_SHARED = 20                # shared pairs below which two runs are not compared
TOP_PERCENT = 5.0              # the riskiest share compared by default


class TooFewShared(ValueError):
    """The two runs share too few pairs (by pair_id) to compare."""


@dataclass(frozen=True)
class Overlap:
    """Two sets of pairs, one per run: their sizes and how many pairs both hold."""
    size_a: int
    size_b: int
    both: int

    @property
    def jaccard(self) -> float:
        union = self.size_a + self.size_b - self.both
        return self.both / union if union else math.nan

    @property
    def share_of_a(self) -> float:
        return self.both / self.size_a if self.size_a else math.nan

    def as_dict(self) -> dict:
        return {"size_a": self.size_a, "size_b": self.size_b, "both": self.both, "jaccard": self.jaccard,
                "share_of_a": self.share_of_a}


@dataclass
class Comparison:
    """Everything `compare` measures; `joined` is the table the figure and the movers read."""
    shared: int                         # pairs in both runs
    only_a: int                         # distinct pairs only in run A
    only_b: int
    correlations: pd.DataFrame          # metric, label, n, spearman, kendall
    riskiest: dict[str, Overlap]        # per metric: the riskiest top_percent of the shared pairs
    drops: Overlap                      # the export rule's drops among the shared pairs
    top_percent: float
    rule: Rule
    joined: pd.DataFrame = field(repr=False)


def metrics_of(table: pd.DataFrame) -> list[str]:
    """The metrics of METRICS (in its order) that `table` holds."""
    return [m for m in METRICS if m in table.columns]


def join(table_a: pd.DataFrame, table_b: pd.DataFrame, *, min_shared: int = MIN_SHARED) -> pd.DataFrame:
    """One row per shared pair_id, in A's dataset order: pair_id, row_a, row_b, <metric>_a, <metric>_b for
    every metric both hold, len_chosen_a, len_chosen_b. TooFewShared below `min_shared` shared pairs."""
    cols = ["row", *[m for m in metrics_of(table_a) if m in table_b.columns],
            *[c for c in ("len_chosen",) if c in table_a.columns and c in table_b.columns]]
    a = table_a.drop_duplicates("pair_id").set_index("pair_id")[cols]
    b = table_b.drop_duplicates("pair_id").set_index("pair_id")[cols]
    joined = a.join(b, how="inner", suffixes=("_a", "_b")).reset_index()
    if len(joined) < min_shared:
        raise TooFewShared(f"the two runs share {len(joined)} pair(s) (matched by pair id; run A has {len(a)}, "
                           f"run B {len(b)}); comparing needs at least {min_shared}: score the same data with "
                           "both models")
    return joined


def _finite(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def spearman(x, y) -> float:
    """Spearman's rho over the positions finite in both; NaN with fewer than 2 or a constant column."""
    x, y = _finite(x, y)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    from scipy import stats                     # 1-2 s to import: only when a comparison runs
    return float(stats.spearmanr(x, y).statistic)


def kendall(x, y) -> float:
    """Kendall's tau-b over the positions finite in both; NaN with fewer than 2 or a constant column."""
    x, y = _finite(x, y)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    from scipy import stats
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.kendalltau(x, y).statistic)


def correlations(joined: pd.DataFrame) -> pd.DataFrame:
    """metric, label, n (finite in both), spearman, kendall: one row per metric of the joined table."""
    rows = []
    for m in METRICS:
        if f"{m}_a" in joined.columns:
            x, y = joined[f"{m}_a"], joined[f"{m}_b"]
            rows.append({"metric": m, "label": METRICS[m].label, "n": len(_finite(x, y)[0]),
                         "spearman": spearman(x, y), "kendall": kendall(x, y)})
    return pd.DataFrame(rows, columns=["metric", "label", "n", "spearman", "kendall"])


def riskiest(values, percent: float = TOP_PERCENT) -> np.ndarray:
    """(n,) bool: the ceil(n percent / 100) highest values (ties: earlier position first; NaN never)."""
    v = np.asarray(values, dtype=np.float64)
    k = min(len(v), math.ceil(len(v) * percent / 100 - 1e-9))
    order = np.argsort(-np.where(np.isnan(v), -np.inf, v), kind="stable")
    top = np.zeros(len(v), dtype=bool)
    top[order[:k]] = True
    return top


def overlap(in_a, in_b) -> Overlap:
    """Overlap of two boolean masks over the same pairs."""
    in_a, in_b = np.asarray(in_a, dtype=bool), np.asarray(in_b, dtype=bool)
    return Overlap(int(in_a.sum()), int(in_b.sum()), int((in_a & in_b).sum()))


def riskiest_overlap(joined: pd.DataFrame, metric: str, percent: float = TOP_PERCENT) -> Overlap:
    """Overlap of the riskiest `percent` of the shared pairs by `metric` in run A and in run B."""
    return overlap(riskiest(joined[f"{metric}_a"], percent), riskiest(joined[f"{metric}_b"], percent))


def drop_overlap(table_a: pd.DataFrame, table_b: pd.DataFrame, joined: pd.DataFrame, rule: Rule) -> Overlap:
    """Overlap of what the export `rule` (score rule and flags, no decisions) drops in each run, over the
    shared pairs."""
    def dropped(table: pd.DataFrame) -> np.ndarray:
        sel = select(table, rule).drop_duplicates("pair_id").set_index("pair_id")
        return ~sel.loc[joined["pair_id"], "rule_kept"].to_numpy(dtype=bool)
    return overlap(dropped(table_a), dropped(table_b))


def percentiles(values) -> np.ndarray:
    """100 (average rank - 1) / (n - 1) per value (0 = lowest, 100 = highest); NaN stays NaN."""
    v = pd.Series(np.asarray(values, dtype=np.float64))
    n = int(v.notna().sum())
    ranks = v.rank(method="average").to_numpy()
    return 100 * (ranks - 1) / (n - 1) if n > 1 else np.where(np.isnan(ranks), np.nan, 50.0)


def movers(joined: pd.DataFrame, metric: str, k: int = 20) -> pd.DataFrame:
    """The k shared pairs whose percentile by `metric` moves most between the runs: pair_id, row_a, row_b,
    value_a, value_b, pct_a, pct_b, shift (pct_b - pct_a), largest |shift| first (ties: A's order)."""
    out = pd.DataFrame({"pair_id": joined["pair_id"], "row_a": joined["row_a"], "row_b": joined["row_b"],
                        "value_a": joined[f"{metric}_a"], "value_b": joined[f"{metric}_b"],
                        "pct_a": percentiles(joined[f"{metric}_a"]), "pct_b": percentiles(joined[f"{metric}_b"])})
    out["shift"] = out["pct_b"] - out["pct_a"]
    order = np.argsort(-np.nan_to_num(np.abs(out["shift"].to_numpy()), nan=-1.0), kind="stable")
    return out.iloc[order[:k]].reset_index(drop=True)


def compare(table_a: pd.DataFrame, table_b: pd.DataFrame, *, top_percent: float = TOP_PERCENT,
            rule: Rule | None = None, min_shared: int = MIN_SHARED) -> Comparison:
    """Join the two scores tables by pair_id and measure how far run B agrees with run A (module docstring).
    TooFewShared when they share fewer than `min_shared` pairs."""
    if not 0 < top_percent <= 100:
        raise ValueError(f"the riskiest share must be a percent in (0, 100], got {top_percent!r}")
    rule = rule or Rule()
    joined = join(table_a, table_b, min_shared=min_shared)
    ids_a, ids_b = set(table_a["pair_id"]), set(table_b["pair_id"])
    return Comparison(
        shared=len(joined), only_a=len(ids_a - ids_b), only_b=len(ids_b - ids_a),
        correlations=correlations(joined),
        riskiest={m: riskiest_overlap(joined, m, top_percent) for m in METRICS if f"{m}_a" in joined.columns},
        drops=drop_overlap(table_a, table_b, joined, rule), top_percent=float(top_percent), rule=rule,
        joined=joined)
