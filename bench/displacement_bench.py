"""The paper's Section 5 study in small: does the CHES percentile order match the likelihood-displacement order?

    python bench/displacement_bench.py [--data ../shared/data/hh-rlhf-harmless-base-test.jsonl.gz]
        [--pool 256] [--n 16] [--batch-size 4] [--lr 1e-6] [--max-length 128] [--runs DIR]

1. Score the first --pool pairs of --data with the model (default: the bundled SmolLM2-135M-Instruct).
2. For each metric (CHES, then the paper's baselines edit similarity and last-hidden inner product) and
   each percentile q in 0, 25, 50, 75, 100: take the --n pairs centred on q (the authors' quantile slice),
   train a fresh copy of the model on them with DPO (`ches.review.probe`, RMSprop, one epoch unless --steps),
   and measure the mean change of log pi(y+|x) and log pi(y-|x) over those pairs.
3. Print, per metric, the Spearman correlation between q and the drop of log pi(y+|x) (-mean change),
   over the 5 subsets, and over all pairs (metric value vs. the pair's own drop).
The paper (OLMo-1B, Gemma-2B, Llama-3-8B on UltraFeedback; 512 pairs, lr 1e-7, beta 0.1) finds that
the drop grows with the CHES percentile and that the baselines do not order it.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ches.review.probe import run_probe  # noqa: E402
from ches.review.probe.analysis import probe_table, spearman  # noqa: E402
from ches.review.probe.dpo import load_policy  # noqa: E402
from ches.review.probe.settings import BUNDLED, ProbeSettings, quantile_slice  # noqa: E402
from ches.review.probe.storage import read_probe  # noqa: E402
from ches.engine.files import load_dataset  # noqa: E402
from ches.engine.pairs import Dataset  # noqa: E402
from ches.engine.models import load_model  # noqa: E402
from ches.engine.pipeline import score_dataset  # noqa: E402
from ches.engine.store import read_scores  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
QUANTILES = (0, 25, 50, 75, 100)
METRICS = ("ches", "edit_sim", "last_hidden_ip")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--pool", type=int, default=256, help="pairs scored (the first ones of --data)")
    ap.add_argument("--n", type=int, default=BUNDLED["n"], help="pairs per subset")
    ap.add_argument("--batch-size", type=int, default=BUNDLED["batch_size"])
    ap.add_argument("--steps", type=int, default=None, help="default: one epoch")
    ap.add_argument("--lr", type=float, default=BUNDLED["lr"])
    ap.add_argument("--beta", type=float, default=BUNDLED["beta"])
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--metrics", default=",".join(METRICS))
    ap.add_argument("--runs", help="runs folder (default: a temporary one); reuses a scored run")
    args = ap.parse_args()

    started = time.perf_counter()
    runs = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="displacement-bench-"))
    full = load_dataset(args.data)
    ds = Dataset(full.pairs[: args.pool], [], full.format, full.source)
    lm = load_model(args.model, dtype="float32")
    with tqdm(total=len(ds.pairs), desc="scoring", unit="pair", file=sys.stderr) as bar:
        run = score_dataset(ds, lm, runs_root=runs, max_length=args.max_length,
                            progress=lambda done, total: bar.update(done // 2 - bar.n))
    del lm
    table = read_scores(run)
    scored = time.perf_counter() - started
    print(f"{len(table)} pairs of {Path(args.data).name} scored at max length {args.max_length} in {scored:.0f} s ({time.process_time():.0f} s CPU); "
          f"subsets of {args.n}, batch {args.batch_size}, {args.steps or 'one epoch'} step(s), RMSprop lr "
          f"{args.lr:g}, beta {args.beta:g}, fp32 on {torch.get_num_threads()} threads")
    print(f"{'metric':<15}{'q':>4}{'mean metric':>14}{'d logp(y+)':>12}{'d logp(y-)':>12}{'lost':>7}{'wall s':>8}{'CPU s':>7}")
    summary = {}
    for metric in args.metrics.split(","):
        drops, values, pair_drops = [], [], []
        for q in QUANTILES:
            t, cpu = time.perf_counter(), time.process_time()
            rows = quantile_slice(table, metric, q, args.n)
            s = ProbeSettings(subset="ids", ids=tuple(rows), steps=args.steps, batch_size=args.batch_size,
                              lr=args.lr, beta=args.beta)
            with tqdm(desc=f"{metric} q{q}", unit="pass", file=sys.stderr, leave=False) as bar:
                def tick(done, total, bar=bar):
                    bar.total = total
                    bar.update(done - bar.n)
                found = run_probe(run, s, load_policy(run), progress=tick)
            _, results = read_probe(found)
            t_ = probe_table(run, results)
            d_c, d_r = t_["delta_chosen"], t_["delta_rejected"]
            print(f"{metric:<15}{q:>4}{t_[metric].mean():>14.4g}{d_c.mean():>12.4f}{d_r.mean():>12.4f}"
                  f"{int((d_c < 0).sum()):>4}/{len(t_):<3}{time.perf_counter() - t:>7.0f}{time.process_time() - cpu:>7.0f}", flush=True)
            drops.append(-d_c.mean())
            values += t_[metric].tolist()
            pair_drops += (-d_c).tolist()
        summary[metric] = (spearman(QUANTILES, drops), spearman(values, pair_drops), drops)
    print("\nSpearman correlation with the drop of log pi(y+|x) (positive = higher score, larger drop):")
    print(f"{'metric':<15}{'percentile vs. mean drop (5 subsets)':>38}{'value vs. drop (all pairs)':>30}")
    for metric, (by_q, by_pair, drops) in summary.items():
        order = " < ".join(f"q{q}" for _, q in sorted(zip(drops, QUANTILES)))
        print(f"{metric:<15}{by_q:>38.2f}{by_pair:>30.2f}   drop order: {order}")
    print(f"total {time.perf_counter() - started:.0f} s wall, {time.process_time():.0f} s CPU (all threads)")


if __name__ == "__main__":
    main()
