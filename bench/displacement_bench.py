"""The paper's Section 5 study in small, over seeds, and the curation check: does CHES predict displacement?

    python bench/displacement_bench.py [--data FILE ...] [--pool 256] [--n 16] [--seeds 3] [--batch-size 4]
        [--lr 1e-6] [--max-length 256] [--metrics ches,ln_ches,edit_sim,last_hidden_ip] [--part all|section5|check]
        [--check-percent 10] [--runs DIR]

For each --data file (default: the HH-RLHF and UltraFeedback files in ../shared/data/):
1. Score its first --pool pairs with the model (default: the bundled SmolLM2-135M-Instruct, fp32).
2. Section 5 (--part section5): over the pairs without a drop flag (identical, an empty response: the check
   leaves them out too), for each metric and each percentile q in 0, 25, 50, 75, 100, take the --n
   pairs centred on q (the authors' quantile slice), and for each seed 0 .. --seeds-1 (the order of the
   steps) train a fresh copy of the model on them with DPO (`ches.review.probe.run_probe`, RMSprop, one
   epoch unless --steps). Per subset: mean change of log pi(y+|x) (summed over the response tokens and
   EOS), and per response token (the change / |y+|). Correlations, each a mean +- sd over the seeds:
   - Spearman(q, drop) over the 5 subsets, drop = -(mean change of log pi(y+|x));
   - Spearman(metric, drop) over the 5 x n pairs, and the same with |y+| partialled out (partial
     Spearman: rank a, b and |y+|; regress each rank on rank(|y+|) with an intercept; Pearson of the two
     residuals; `ches.review.probe.analysis.partial_spearman`);
   - the same three for the drop per response token.
3. The curation check (--part check; `ches.review.probe.check`): the rule "keep the --check-percent % lowest
   LN-CHES" (the paper's Sec. 6 rule), curated arm vs a same-size random arm of the whole pool, --seeds seeds.
Probes and checks are stored in the run folders: with --runs, a second call reuses them (resumable).
The paper (OLMo-1B, Gemma-2B, Llama-3-8B on UltraFeedback; 512 pairs, lr 1e-7, beta 0.1) finds that the
drop grows with the CHES percentile and that the baselines do not order it.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ches.engine.files import load_dataset  # noqa: E402
from ches.engine.models import load_model  # noqa: E402
from ches.engine.pairs import Dataset  # noqa: E402
from ches.engine.pipeline import score_dataset  # noqa: E402
from ches.engine.store import read_scores  # noqa: E402
from ches.review.export import Rule, select  # noqa: E402
from ches.review.probe import run_probe  # noqa: E402
from ches.review.probe.analysis import partial_spearman, probe_table, spearman  # noqa: E402
from ches.review.probe.check import CheckSettings, run_check  # noqa: E402
from ches.review.probe.settings import BUNDLED, ProbeSettings, quantile_slice  # noqa: E402
from ches.review.probe.storage import read_probe  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_DATA = [SHARED / "hh-rlhf-harmless-base-test.jsonl.gz", SHARED / "ultrafeedback-binarized-train-500.jsonl"]
QUANTILES = (0, 25, 50, 75, 100)
METRICS = ("ches", "ln_ches", "edit_sim", "last_hidden_ip")


def ms(values) -> str:
    """'mean +- sd' over seeds (sd with ddof 1)."""
    v = np.asarray(values, dtype=np.float64)
    return f"{np.nanmean(v):+.2f} ± {np.nanstd(v, ddof=1):.2f}" if len(v) > 1 else f"{v[0]:+.2f}"


def unflagged(table: pd.DataFrame) -> pd.DataFrame:
    """The pairs the check and the export keep whatever their score: none carrying a default drop flag
    (identical, an empty response), as `ches.review.export.select` decides it."""
    return table[select(table, Rule(keep_lowest_percent=100), {})["rule_kept"].to_numpy()]


def section5(run: Path, args, seeds: range) -> None:
    everything = read_scores(run)
    table = unflagged(everything)
    print(f"\n{len(everything) - len(table)} flagged pair(s) left out, as the curation check leaves them out")
    print(f"\nSpearman(metric, |y+|) over the {len(table)} pairs: " +
          ", ".join(f"{m} {spearman(table[m], table['len_chosen']):+.2f}" for m in args.metrics))
    rows_by = {}
    print(f"{'metric':<15}{'q':>4}{'rows':>6}{'d logp(y+) mean±sd':>22}{'per token':>18}{'d logp(y-)':>16}"
          f"{'lost':>7}{'wall s':>8}", flush=True)
    for metric in args.metrics:
        for q in QUANTILES:
            t0 = time.perf_counter()
            rows = quantile_slice(table, metric, q, args.n)
            tables = []
            for seed in seeds:
                s = ProbeSettings(subset="ids", ids=tuple(rows), steps=args.steps, batch_size=args.batch_size,
                                  lr=args.lr, beta=args.beta, seed=seed)
                tables.append(probe_table(run, read_probe(run_probe(run, s))[1]))
            rows_by[metric, q] = tables
            dc = [t["delta_chosen"].mean() for t in tables]
            dt = [t["delta_chosen_per_token"].mean() for t in tables]
            dr = [t["delta_rejected"].mean() for t in tables]
            lost = np.mean([(t["delta_chosen"] < 0).sum() for t in tables])
            print(f"{metric:<15}{q:>4}{len(rows):>6}{ms(dc):>22}{ms(dt):>18}{ms(dr):>16}{lost:>5.1f}/{len(rows):<2}"
                  f"{time.perf_counter() - t0:>7.0f}", flush=True)
    print("\nCorrelations with the drop of log pi(y+|x) (positive = higher score, larger drop), mean ± sd over "
          f"{len(seeds)} seeds; 'partial' = |y+| partialled out:")
    print(f"{'metric':<15}{'ρ(q, drop)':>15}{'ρ pair':>15}{'partial':>15}{'ρ(q, drop/tok)':>16}{'ρ pair/tok':>15}"
          f"{'partial/tok':>15}")
    for metric in args.metrics:
        cols = {k: [] for k in ("q", "pair", "part", "qt", "pairt", "partt")}
        for i in range(len(seeds)):
            ts = [rows_by[metric, q][i] for q in QUANTILES]
            allp = pd.concat(ts, ignore_index=True)
            drop, drop_t = -allp["delta_chosen"], -allp["delta_chosen_per_token"]
            cols["q"].append(spearman(QUANTILES, [-t["delta_chosen"].mean() for t in ts]))
            cols["qt"].append(spearman(QUANTILES, [-t["delta_chosen_per_token"].mean() for t in ts]))
            cols["pair"].append(spearman(allp[metric], drop))
            cols["part"].append(partial_spearman(allp[metric], drop, allp["len_chosen"]))
            cols["pairt"].append(spearman(allp[metric], drop_t))
            cols["partt"].append(partial_spearman(allp[metric], drop_t, allp["len_chosen"]))
        print(f"{metric:<15}" + "".join(f"{ms(cols[k]):>15}" for k in ("q", "pair", "part")) +
              f"{ms(cols['qt']):>16}" + "".join(f"{ms(cols[k]):>15}" for k in ("pairt", "partt")), flush=True)


def check(run: Path, args) -> None:
    rule = Rule(metric="ln_ches", keep_lowest_percent=args.check_percent)
    cs = CheckSettings(n=args.n, seeds=args.seeds, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                       beta=args.beta)
    t0 = time.perf_counter()
    from ches.cli.probe import check_summary       # the CLI's table: |y+|, per token, ± sd over seeds, units
    print("\n" + check_summary(run_check(run, rule, {}, cs)), f"\n({time.perf_counter() - t0:.0f} s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", default=[str(p) for p in DEFAULT_DATA])
    ap.add_argument("--pool", type=int, default=256, help="pairs scored (the first ones of each file)")
    ap.add_argument("--n", type=int, default=BUNDLED["n"], help="pairs per subset / per arm")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=BUNDLED["batch_size"])
    ap.add_argument("--steps", type=int, default=None, help="default: one epoch")
    ap.add_argument("--lr", type=float, default=BUNDLED["lr"])
    ap.add_argument("--beta", type=float, default=BUNDLED["beta"])
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--metrics", type=lambda s: s.split(","), default=list(METRICS))
    ap.add_argument("--part", choices=("all", "section5", "check"), default="all")
    ap.add_argument("--check-percent", type=float, default=10.0, help="the check's rule: keep the X%% lowest LN-CHES")
    ap.add_argument("--runs", help="runs folder (default: a temporary one); reuses scored runs, probes, checks")
    args = ap.parse_args()

    started = time.perf_counter()
    runs = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="displacement-bench-"))
    lm = load_model(args.model, dtype="float32")
    scored = {}
    for data in args.data:
        t0 = time.perf_counter()
        full = load_dataset(data)
        scored[data] = score_dataset(Dataset(full.pairs[: args.pool], [], full.format, full.source), lm,
                                     runs_root=runs, max_length=args.max_length)
        print(f"{Path(data).name}: {args.pool} pairs scored at max length {args.max_length} in "
              f"{time.perf_counter() - t0:.0f} s; run {scored[data]}", flush=True)
    del lm
    print(f"subsets of {args.n}, batch {args.batch_size}, {args.steps or 'one epoch of'} step(s), RMSprop lr "
          f"{args.lr:g}, beta {args.beta:g}, seeds 0-{args.seeds - 1}, fp32 on {torch.get_num_threads()} threads",
          flush=True)
    for part, fn in (("check", lambda run: check(run, args)),                      # the cheaper part first
                     ("section5", lambda run: section5(run, args, range(args.seeds)))):
        if args.part in ("all", part):
            for data, run in scored.items():
                print(f"\n=== {part}: {Path(data).name}", flush=True)
                fn(run)
    print(f"\ntotal {time.perf_counter() - started:.0f} s wall, {time.process_time():.0f} s CPU (all threads)")


if __name__ == "__main__":
    main()
