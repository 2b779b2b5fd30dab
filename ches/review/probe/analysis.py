"""Reading a probe's numbers: its summary, the join with the run's scores, band means, rank correlation, and
`significant`, the one way a change of log-probability (nats) is written for the CLI and the pages.

delta_chosen = log pi(y+|x) after - before, delta_rejected likewise (see `ches.review.probe`);
delta_chosen_per_token = delta_chosen / |y+| (|y+| = the run's len_chosen: content tokens + EOS).
CHES predicts delta_chosen < 0, most on the highest-CHES pairs (the paper's Sec. 5).

Partial Spearman of a and b given c (here c = |y+|, which raw CHES and the summed change both grow with):

    ra, rb, rc = average ranks of a, b, c
    ea = ra - (alpha_a + beta_a * rc),  eb likewise     (least-squares fits on rc, with intercept)
    partial_spearman(a, b | c) = Pearson(ea, eb)

For n >= 3 this equals (r_ab - r_ac r_bc) / sqrt((1 - r_ac^2)(1 - r_bc^2)) with r the Spearman correlations.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ches.engine.metrics import METRICS
from ches.engine.store import read_scores
from ches.review.browse import percentiles
from ches.review.probe.storage import read_probe


def significant(x: float, signed: bool = False) -> str:
    """`x` to 3 significant figures, never rounded to zero: fixed notation for 1e-3 <= |x| < 1e5 ("0.00160",
    "1.67", "123"), scientific otherwise ("2.50e-07"); "0" for zero, "n/a" for NaN. `signed`: a + before
    positive values."""
    x = float(x)
    if math.isnan(x):
        return "n/a"
    if x == 0:
        return "0"
    sign = "+" if signed else ""
    if 1e-3 <= abs(x) < 1e5:
        decimals = max(0, 2 - math.floor(math.log10(abs(x))))
        return f"{x:{sign}.{decimals}f}"
    return f"{x:{sign}.2e}"


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
    t["delta_chosen_per_token"] = t["delta_chosen"] / t["len_chosen"]
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


def partial_spearman(a: Sequence[float], b: Sequence[float], c: Sequence[float]) -> float:
    """Spearman of a and b with c partialled out (module docstring); NaN when n < 3 or a residual is constant."""
    ra, rb, rc = (pd.Series(v, dtype=float).rank().to_numpy() for v in (a, b, c))
    if len(ra) < 3:
        return float("nan")
    design = np.column_stack([np.ones_like(rc), rc])                      # (n, 2)
    ea = ra - design @ np.linalg.lstsq(design, ra, rcond=None)[0]           # (n,)
    eb = rb - design @ np.linalg.lstsq(design, rb, rcond=None)[0]           # (n,)
    if np.allclose(ea, 0) or np.allclose(eb, 0):
        return float("nan")
    return float(np.corrcoef(ea, eb)[0, 1])


def seed_group(settings: dict) -> str:
    """What a probe trained on and how, without its seed: probes equal here differ only in the order of steps."""
    return json.dumps({k: v for k, v in settings.items() if k != "seed"}, sort_keys=True)


def band_points(run_dir: Path, probes: Sequence[tuple[Path, dict]], metric: str) -> pd.DataFrame:
    """One point per group of stored probes that differ only in their seed (the paper's Figure 2):

    percentile = mean over the group's pairs of their `metric` percentile over the whole run (for a band
    probe, about the band's centre); lo / hi = the lowest and highest such percentile; mean_delta_chosen =
    mean over the group's probes of each probe's mean change of log pi(y+|x); sd = the standard deviation
    of those means over the seeds (ddof 1; NaN for a single seed); seeds = how many probes.
    """
    scores = read_scores(run_dir)
    pct = pd.Series(percentiles(scores[metric]).to_numpy(), index=scores["row"])
    groups: dict[str, list] = {}
    for path, m in probes:
        groups.setdefault(seed_group(m["settings"]), []).append((path, m))
    out = []
    for members in groups.values():
        _, first = members[0]
        rows = read_probe(members[0][0])[1]["row"]
        p = pct.reindex(rows).to_numpy(dtype=np.float64)
        means = np.array([m["summary"]["mean_delta_chosen"] for _, m in members])
        out.append({"percentile": float(np.nanmean(p)), "lo": float(np.nanmin(p)), "hi": float(np.nanmax(p)),
                    "mean_delta_chosen": float(means.mean()),
                    "sd": float(means.std(ddof=1)) if len(means) > 1 else float("nan"),
                    "seeds": len(members), "pairs": int(first["pairs"]),
                    "describe": first["describe"].rsplit(", seed", 1)[0],
                    "selected_by": first["settings"]["metric"] if first["settings"]["subset"] != "ids" else "ids"})
    cols = ["percentile", "lo", "hi", "mean_delta_chosen", "sd", "seeds", "pairs", "describe", "selected_by"]
    return pd.DataFrame(out, columns=cols).sort_values("percentile", ignore_index=True)
