"""`ches compare`: the same pairs (matched by pair id) in two runs: rank agreement, riskiest-share and
export-rule overlap, the pairs that move most (ches.review.compare).

    ches compare RUN_A RUN_B [--metric M] [--top-percent P] [--keep-lowest-percent X | --threshold T]
                 [--drop-flags F,F] [--movers K] [--min-shared N] [--runs DIR]
"""
from __future__ import annotations

import argparse
import math

from ches.cli.common import flag_list, help_page, resolve_run, runs_folder
from ches.engine.metrics import METRICS
from ches.engine.store import read_manifest, read_scores
from ches.review.compare import MIN_SHARED, TOP_PERCENT, compare, movers
from ches.review.export import DEFAULT_DROP_FLAGS, Rule


def add_parsers(sub) -> None:
    first = next(iter(METRICS))
    p = sub.add_parser(
        "compare", help="compare two runs of the same pairs (e.g. a small and a large model)", **help_page(
        "Match the pairs of two runs by pair id (the same data scored by two models or settings) "
        "and report, per metric, Spearman's rho and Kendall's tau-b of the scores, the overlap of the riskiest "
        "--top-percent, the overlap of what the export rule would drop (decisions left out), and the pairs "
        "whose percentile moves most. Refused when the runs share fewer than --min-shared pairs.",
        "ches compare RUN_A RUN_B                      # run ids (or unique prefixes) under the workspace's runs",
        "ches compare runs/1bb49c0a77c9d06a runs/9f3e --metric ches --top-percent 10 --movers 20"))
    p.add_argument("run_a", metavar="RUN_A", help="run folder, or run id (or unique prefix) under --runs")
    p.add_argument("run_b", metavar="RUN_B", help="the run to compare with RUN_A")
    p.add_argument("--metric", default=first, choices=list(METRICS),
                   help=f"metric of the export rule and of the movers (default: {first})")
    p.add_argument("--top-percent", type=float, default=TOP_PERCENT, metavar="P",
                   help=f"the riskiest P%% of the shared pairs compared per metric (default: {TOP_PERCENT:g})")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--keep-lowest-percent", type=float, default=95.0, metavar="X",
                      help="export rule: keep the X%% of pairs with the lowest metric (default: 95)")
    rule.add_argument("--threshold", type=float, metavar="T", help="export rule: keep the pairs with metric <= T")
    p.add_argument("--drop-flags", type=flag_list, default=DEFAULT_DROP_FLAGS, metavar="F,F",
                   help=f"export rule: drop pairs with these flags (default: {','.join(DEFAULT_DROP_FLAGS)})")
    p.add_argument("--movers", type=int, default=10, metavar="K", help="pairs listed that move most (default: 10)")
    p.add_argument("--min-shared", type=int, default=MIN_SHARED, metavar="N",
                   help=f"refuse runs sharing fewer pairs (default: {MIN_SHARED})")
    p.add_argument("--runs", metavar="DIR", help="runs folder for run ids (default: $CHES_WORKSPACE/runs)")
    p.set_defaults(func=cmd_compare)


def _run_line(name: str, run_dir, m: dict) -> str:
    key = m.get("key", {})
    return (f"run {name}: {run_dir.name}  {m.get('pairs', '?')} pairs  model {key.get('model_id', '?')}  "
            f"max_length {key.get('max_length', '?')}  {m.get('source', '')}")


def _f(x: float, spec: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def cmd_compare(args: argparse.Namespace) -> int:
    """Run `ches compare`; prints the report on stdout."""
    root = runs_folder(args.runs)
    dir_a, dir_b = resolve_run(args.run_a, root), resolve_run(args.run_b, root)
    if args.movers < 0:
        raise ValueError("--movers must be 0 or more")
    rule = Rule(metric=args.metric, keep_lowest_percent=args.keep_lowest_percent, threshold=args.threshold,
                drop_flags=tuple(args.drop_flags))
    c = compare(read_scores(dir_a), read_scores(dir_b), top_percent=args.top_percent, rule=rule,
                min_shared=args.min_shared)
    lines = [_run_line("A", dir_a, read_manifest(dir_a)), _run_line("B", dir_b, read_manifest(dir_b)),
             f"shared pairs: {c.shared} (only in A: {c.only_a}, only in B: {c.only_b})", "",
             f"{'metric':<16}{'Spearman':>10}{'Kendall':>10}{f'riskiest {c.top_percent:g}%: both':>24}"
             f"{'Jaccard':>9}{'A in B':>8}"]
    for r in c.correlations.itertuples():
        o = c.riskiest[r.metric]
        lines.append(f"{r.label:<16}{_f(r.spearman):>10}{_f(r.kendall):>10}{f'{o.both} of {o.size_a}':>24}"
                     f"{_f(o.jaccard, '.2f'):>9}{_f(o.share_of_a, '.0%'):>8}")
    d = c.drops
    lines += ["", f"export rule ({rule.describe()}), over the shared pairs: A drops {d.size_a}, B drops {d.size_b}, "
              f"both {d.both}; Jaccard {_f(d.jaccard, '.2f')}; share of A's drops that B drops too "
              f"{_f(d.share_of_a, '.0%')}"]
    if args.movers:
        top = movers(c.joined, args.metric, args.movers)
        lines += ["", f"pairs whose {METRICS[args.metric].label} percentile moves most (of the {c.shared} shared):",
                  f"  {'pair_id':<18}{'row A':>7}{'row B':>7}{'pct A':>8}{'pct B':>8}{'shift':>8}"]
        lines += [f"  {r.pair_id[:16]:<18}{r.row_a:>7}{r.row_b:>7}{r.pct_a:>8.1f}{r.pct_b:>8.1f}{r.shift:>+8.1f}"
                  for r in top.itertuples()]
    print("\n".join(lines))
    return 0
