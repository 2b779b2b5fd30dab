"""Reading a probe's numbers: its summary, the join with the run's scores, band means, rank correlation, and
`significant`, the one way a change of log-probability (nats) is written for the CLI and the pages, the
short-response notice (`short_responses`), and the curation check's statistics and verdict (`arm_stats`,
`behaviour_stats`, `verdict`, `arms_frame`; their formulas are in `ches.review.probe.check`'s docstring).

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
from typing import Any, Mapping, Sequence

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
    """A probe's numbers, one sign convention: change = after - before (nats, summed over the response;
    negative = the model lost likelihood). mean_delta_chosen = mean_i dc_i; mean_delta_chosen_per_token =
    mean_i dc_i / |y+_i| (|y+| = `len_chosen`, content tokens + EOS); mean_len_chosen = mean_i |y+_i|;
    lost_chosen = #{i: dc_i < 0}. Results without len_chosen (probes stored before version 2) give NaN."""
    d_c = results["logp_chosen_after"] - results["logp_chosen_before"]
    d_r = results["logp_rejected_after"] - results["logp_rejected_before"]
    length = results["len_chosen"].astype(float) if "len_chosen" in results else pd.Series(float("nan"), d_c.index)
    return {"pairs": int(len(results)), "mean_delta_chosen": float(d_c.mean()),
            "mean_delta_chosen_per_token": float((d_c / length).mean()), "mean_len_chosen": float(length.mean()),
            "mean_delta_rejected": float(d_r.mean()), "lost_chosen": int((d_c < 0).sum()),
            "mean_delta_margin": float((d_c - d_r).mean())}


SHORT_TOKENS = 5          # a response of fewer than this many tokens (|y+|, content + EOS) is "very short"
SHORT_SHARE = 0.5         # a kept set is dominated by very short responses when more than this share is


def short_responses(lengths: Sequence[float]) -> dict:
    """Whether a set of chosen responses is dominated by very short ones: share = #{|y+| < SHORT_TOKENS} / n,
    dominated = share > SHORT_SHARE (|y+| counts content tokens + EOS, so "" has 1 and "1" about 2);
    median = the median |y+|. Empty input: share NaN, not dominated."""
    v = np.asarray(lengths, dtype=np.float64)
    if not len(v):
        return {"n": 0, "share": float("nan"), "median": float("nan"), "dominated": False}
    share = float((v < SHORT_TOKENS).mean())
    return {"n": int(len(v)), "share": share, "median": float(np.median(v)), "dominated": share > SHORT_SHARE}


def short_notice(lengths: Sequence[float], what: str = "the kept set") -> str | None:
    """One sentence for Browse / Curate & export when `short_responses` says dominated, else None."""
    s = short_responses(lengths)
    if not s["dominated"]:
        return None
    return (f"{what[:1].upper()}{what[1:]} is dominated by very short chosen responses: {s['share']:.0%} of its "
            f"{s['n']} pairs have |y+| under {SHORT_TOKENS} tokens (median {significant(s['median'])}, EOS counted). "
            "Near-empty answers score low on LN-CHES; read them before training on them.")


def probe_table(run_dir: Path, results: pd.DataFrame) -> pd.DataFrame:
    """The probe's pairs joined with the run's scores: deltas and each metric's percentile over the whole run.

    Adds delta_chosen = after - before of log pi(y+|x), delta_rejected likewise, delta_chosen_per_token =
    delta_chosen / len_chosen (the probe's |y+|, or the run's for probes stored before version 2), `<metric>_pct`.
    """
    scores = read_scores(run_dir)
    for m in METRICS:
        scores[f"{m}_pct"] = percentiles(scores[m])
    own = [c for c in ("len_chosen",) if c in results]            # a probe's own |y+| (version 2 on) wins
    t = results.merge(scores.drop(columns=["pair_id", *own]), on="row", how="left")
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


# ---------------------------------------------------------------------------- the curation check's numbers

BEFORE = "before training"  # the behaviour rows of the untrained model
LENGTH_GAP = 0.25          # arms whose mean |y+| differ by more than 25% of the larger get a length warning
UNIT = "nats summed over the response's |y+| tokens, EOS included"


def _sd(v) -> float:
    v = np.asarray(v, dtype=np.float64)
    return float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")


def _compare(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Per-seed differences a - b: mean, sd, two standard errors, beyond (|mean| > 2 SE, k >= 2)."""
    d = a - b
    k = len(d)
    se = _sd(d) / math.sqrt(k) if k > 1 else float("nan")
    return {"difference": float(d.mean()), "sd_difference": _sd(d), "two_se": 2 * se,
            "beyond": bool(k > 1 and abs(d.mean()) > 2 * se), "per_seed_difference": [float(x) for x in d]}


def arm_stats(results: pd.DataFrame, arms: Sequence[str] | None = None) -> dict[str, Any]:
    """The check's numbers from its results (columns seed, arm, len_chosen and the probe's log-probs); the
    module docstring gives every formula. Without len_chosen (tests, old rows) the per-token numbers are NaN."""
    length = results["len_chosen"].astype(float) if "len_chosen" in results else pd.Series(np.nan, results.index)
    dc = results["logp_chosen_after"] - results["logp_chosen_before"]
    t = results.assign(dc=dc, dc_tok=dc / length, len=length,
                       dr=results["logp_rejected_after"] - results["logp_rejected_before"], lost=dc < 0)
    per = t.groupby(["arm", "seed"]).agg(dc=("dc", "mean"), dc_tok=("dc_tok", "mean"), dr=("dr", "mean"),
                                         len=("len", "mean"), lost=("lost", "mean"), lost_n=("lost", "sum"))
    arms = list(arms) if arms is not None else list(dict.fromkeys(results["arm"]))
    out: dict[str, Any] = {}
    for arm in arms:
        a = per.loc[arm]
        out[arm] = {"mean_delta_chosen": float(a["dc"].mean()), "sd_delta_chosen": _sd(a["dc"]),
                    "mean_delta_chosen_per_token": float(a["dc_tok"].mean()), "sd_delta_chosen_per_token": _sd(a["dc_tok"]),
                    "mean_delta_rejected": float(a["dr"].mean()), "sd_delta_rejected": _sd(a["dr"]),
                    "mean_len_chosen": float(a["len"].mean()), "sd_len_chosen": _sd(a["len"]),
                    "share_lost": float(a["lost"].mean()), "sd_share_lost": _sd(a["lost"]),
                    "pairs_lost": int(a["lost_n"].sum()), "pair_trainings": int((t["arm"] == arm).sum()),
                    "per_seed_delta_chosen": [float(v) for v in a["dc"]],
                    "per_seed_delta_chosen_per_token": [float(v) for v in a["dc_tok"]]}
    means = [out[a]["mean_delta_chosen"] for a in arms]
    best = arms[int(np.argmax(means))]
    tok = [out[a]["mean_delta_chosen_per_token"] for a in arms]
    best_tok = None if any(math.isnan(x) for x in tok) else arms[int(np.argmax(tok))]
    comparisons = []
    for arm in sorted((a for a in arms if a != best), key=lambda a: -out[a]["mean_delta_chosen"]):
        c = {"arm": arm, **_compare(per.loc[best, "dc"].to_numpy(), per.loc[arm, "dc"].to_numpy())}
        pt = _compare(per.loc[best, "dc_tok"].to_numpy(), per.loc[arm, "dc_tok"].to_numpy())
        c.update({f"{k}_per_token": v for k, v in pt.items()})
        comparisons.append(c)
    return {"arms": out, "order": arms, "seeds": int(per.index.get_level_values("seed").nunique()),
            "best": best, "best_per_token": best_tok, "comparisons": comparisons,
            "displacement": bool((t["lost"]).any()), "unit": UNIT}


def behaviour_stats(frame: pd.DataFrame, arms: Sequence[str]) -> dict[str, Any]:
    """Rates from behaviour rows (arm, seed, judged): before = mean judged of the BEFORE rows; per arm and seed
    the mean judged; per arm their mean and sd over seeds."""
    before = float(frame.loc[frame["arm"] == BEFORE, "judged"].mean())
    out = {}
    for arm in arms:
        per = frame[frame["arm"] == arm].groupby("seed")["judged"].mean()
        out[arm] = {"mean_rate": float(per.mean()), "sd_rate": _sd(per), "per_seed_rate": [float(v) for v in per]}
    return {"before": before, "arms": out}


def _nats(x: float) -> str:
    return f"{significant(x, signed=True)} nats"


def verdict(stats: Mapping[str, Any]) -> str:
    """Plain sentences from `arm_stats` (module docstring), numbers to 3 significant figures (`significant`)."""
    arms, best, k = stats["arms"], stats["best"], stats["seeds"]
    b = arms[best]
    parts = [f"{best} kept the chosen log-probability best: mean change {significant(b['mean_delta_chosen'], signed=True)} "
             f"± {significant(b['sd_delta_chosen'])} nats (± sd over {k} seeds; {UNIT}), "
             f"{significant(b['mean_delta_chosen_per_token'], signed=True)} nats per response token, mean |y+| "
             f"{significant(b['mean_len_chosen'])} tokens."]
    for c in stats["comparisons"]:
        where = "beyond" if c["beyond"] else "within"
        parts.append(f"Ahead of {c['arm']} ({_nats(arms[c['arm']]['mean_delta_chosen'])}, mean |y+| "
                     f"{significant(arms[c['arm']]['mean_len_chosen'])}) by {significant(c['difference'])} nats: "
                     f"{where} the seed spread (two standard errors {significant(c['two_se'])} nats).")
    parts.append(f"This is a two-standard-error screen over {k} seeds, not a significance test.")
    if stats.get("best_per_token") and stats["best_per_token"] != best:
        bt = stats["best_per_token"]
        parts.append(f"Per response token the order differs: {bt} kept the most "
                     f"({significant(arms[bt]['mean_delta_chosen_per_token'], signed=True)} nats per token).")
    lengths = [arms[a]["mean_len_chosen"] for a in stats["order"]]
    if all(not math.isnan(x) for x in lengths) and max(lengths) > 0 and \
            (max(lengths) - min(lengths)) / max(lengths) > LENGTH_GAP:
        parts.append(f"The arms' chosen responses differ in length (mean |y+| {significant(min(lengths))} to "
                     f"{significant(max(lengths))} tokens): the summed change grows with length, compare per token.")
    if not stats["displacement"]:
        parts.append("No displacement happened at these settings: no pair's chosen log-probability fell in any arm.")
    else:
        lost = ", ".join(f"{a} {arms[a]['pairs_lost']} of {arms[a]['pair_trainings']}" for a in stats["order"])
        parts.append(f"Pair trainings that lost chosen log-probability: {lost}.")
    return " ".join(parts)


def arms_frame(manifest: Mapping[str, Any]) -> pd.DataFrame:
    """One row per arm of a current stored check, its numbers as text to 3 significant figures (the page's
    table): pairs kept, mean |y+|, change of log pi(y+|x) ± sd, per token ± sd, change of log pi(y-|x) ± sd,
    share of pairs that lost y+, and the behaviour rate (before training as its own row) when measured."""
    st, b = manifest["stats"], manifest.get("behaviour")
    kept = {a["name"]: a.get("kept") for a in manifest["arms"]}
    pm = lambda m, s, signed=True: f"{significant(m, signed=signed)} ± {significant(s)}"  # noqa: E731
    rows = []
    for arm in st["order"]:
        a = st["arms"][arm]
        row = {"arm": arm, "pairs kept by the rule": "" if kept.get(arm) is None else str(kept[arm]),
               "mean |y+| (tokens)": pm(a["mean_len_chosen"], a["sd_len_chosen"], False),
               "change log π(y+|x) (nats)": pm(a["mean_delta_chosen"], a["sd_delta_chosen"]),
               "per token (nats)": pm(a["mean_delta_chosen_per_token"], a["sd_delta_chosen_per_token"]),
               "change log π(y-|x) (nats)": pm(a["mean_delta_rejected"], a["sd_delta_rejected"]),
               "share that lost y+": pm(a["share_lost"], a["sd_share_lost"], False)}
        if b:
            row[f"{b['judge']} rate"] = pm(b["arms"][arm]["mean_rate"], b["arms"][arm]["sd_rate"], False)
        rows.append(row)
    if b:
        rows.insert(0, {"arm": BEFORE, f"{b['judge']} rate": significant(b["before"])})
    return pd.DataFrame(rows).fillna("")
