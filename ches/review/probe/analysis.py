"""Reading a probe's numbers: its summary, the join with the run's scores, band means, rank correlation.

delta_chosen = log pi(y+|x) after - before, delta_rejected likewise (see `ches.review.probe`).
CHES predicts delta_chosen < 0, most on the highest-CHES pairs (the paper's Sec. 5).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ches.engine.metrics import METRICS
from ches.engine.store import read_scores
from ches.review.browse import percentiles


def summarize(results: pd.DataFrame) -> dict:
    """Mean changes of log pi(y+|x) and log pi(y-|x), and how many pairs lost chosen likelihood."""
    d_c = results["logp_chosen_after"] - results["logp_chosen_before"]
    d_r = results["logp_rejected_after"] - results["logp_rejected_before"]
    return {"pairs": int(len(results)), "mean_delta_chosen": float(d_c.mean()),
            "mean_delta_rejected": float(d_r.mean()), "lost_chosen": int((d_c < 0).sum()),
            "mean_delta_margin": float((d_c - d_r).mean())}


def probe_table(run_dir: Path, results: pd.DataFrame) -> pd.DataFrame:
    """The probe's pairs joined with the run's scores: deltas and each metric's percentile over the whole run.

    Adds delta_chosen = after - before of log pi(y+|x), delta_rejected likewise, and `<metric>_pct`.
    """
    scores = read_scores(run_dir)
    for m in METRICS:
        scores[f"{m}_pct"] = percentiles(scores[m])
    t = results.merge(scores.drop(columns=["pair_id"]), on="row", how="left")
    t["delta_chosen"] = t["logp_chosen_after"] - t["logp_chosen_before"]
    t["delta_rejected"] = t["logp_rejected_after"] - t["logp_rejected_before"]
    return t


def band_means(table: pd.DataFrame, metric: str, edges: Sequence[float] = (0, 20, 40, 60, 80, 100)) -> pd.DataFrame:
    """Mean delta_chosen / delta_rejected and pair count per percentile band of `metric` (probe_table input)."""
    labels = [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:])]
    band = pd.cut(table[f"{metric}_pct"], list(edges), labels=labels, include_lowest=True)
    g = table.groupby(band, observed=True)
    return pd.DataFrame({"pairs": g.size(), "mean_delta_chosen": g["delta_chosen"].mean(),
                         "mean_delta_rejected": g["delta_rejected"].mean()}).reset_index(names="band")


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant or n < 2."""
    ra, rb = pd.Series(a, dtype=float).rank(), pd.Series(b, dtype=float).rank()
    if len(ra) < 2 or ra.nunique() < 2 or rb.nunique() < 2:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])
