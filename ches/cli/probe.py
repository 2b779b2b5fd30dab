"""`ches probe`: check CHES's prediction on a run with a few DPO steps (ches/review/probe).

    ches probe RUN --subset top|bottom|band LO HI|ids FILE [--metric M] [--n N] [--steps K] [--batch-size B]
               [--lr LR] [--beta B] [--optimizer O] [--seed S] [--device D] [--top K] [--runs DIR]

    ches check-curation RUN [--metric M] [--keep-lowest-percent X | --threshold T] [--drop-flags F,F]
               [--decisions DB] [--annotator NAME] [--n N] [--seeds K] [--steps K] [--batch-size B] [--lr LR]
               [--beta B] [--optimizer O] [--device D] [--runs DIR]

n and the batch size left out are fitted to the run (`ches.review.probe.settings.fit_sizes`), and the
output says what was chosen. The same settings again reuse the stored probe / check (nothing is retrained).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ches.cli import resolve_run, runs_folder
from ches.cli.export import add_rule_arguments, rule_and_decisions
from ches.engine.metrics import METRICS
from ches.review.probe.settings import (BUNDLED, ONE_EPOCH, OPTIMIZERS, PAPER, Fit, ProbeError, ProbeSettings,
                                        defaults, probe_fit, read_ids)


def add_parsers(sub) -> None:
    p = sub.add_parser("probe", help="check CHES's prediction: a few DPO steps on a subset, log-probs before/after",
                       description="Train a fresh copy of RUN's model (same weights, template and dtype) with DPO "
                       "(TRL's sigmoid loss) on a subset of RUN's pairs, and report per pair log pi(y+|x) and "
                       "log pi(y-|x) before and after (summed over the response tokens and EOS: the positions CHES "
                       "uses), their mean changes and how many pairs lost chosen likelihood. The probe is stored "
                       "in RUN/probes/<key>/; the same settings again reuse it. Defaults: the paper's (Sec. 5: "
                       f"n {PAPER['n']}, batch {PAPER['batch_size']}, RMSprop, lr {PAPER['lr']:g}, beta "
                       f"{PAPER['beta']:g}, one epoch); for the bundled model n {BUNDLED['n']}, batch "
                       f"{BUNDLED['batch_size']}, lr {BUNDLED['lr']:g} (what shows the effect on it, see "
                       "bench/displacement_bench.py). Left out, n is lowered to the pairs the subset can draw from "
                       "and the batch size to n; the output says what was chosen.")
    p.add_argument("run", metavar="RUN", help="run folder, or run id (or unique prefix) under --runs")
    p.add_argument("--subset", nargs="+", required=True, metavar="KIND",
                   help="top (the n highest --metric), bottom (the n lowest), band LO HI (n pairs centred in "
                   "that percentile band of --metric), or ids FILE (the source rows listed in FILE)")
    p.add_argument("--metric", default="ches", choices=list(METRICS),
                   help="ranks top / bottom / band (default: ches, as in the paper's Sec. 5)")
    p.add_argument("--n", type=int, metavar="N", help="pairs in the subset (default: see above, at most the pairs "
                   "the subset can draw from)")
    p.add_argument("--steps", type=int, metavar="K", help=f"optimizer steps (default: {ONE_EPOCH})")
    p.add_argument("--batch-size", type=int, metavar="B", help="pairs per step (default: see above, at most n)")
    p.add_argument("--lr", type=float, metavar="LR", help="learning rate (default: see above)")
    p.add_argument("--beta", type=float, metavar="B", help="DPO's beta (default: 0.1)")
    p.add_argument("--optimizer", default="rmsprop", choices=list(OPTIMIZERS), help="(default: rmsprop)")
    p.add_argument("--seed", type=int, default=0, help="order of the pairs across steps (default: 0)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--top", type=int, default=10, metavar="K", help="pairs listed that lost the most (default: 10)")
    p.add_argument("--runs", metavar="DIR", help="runs folder for a run id (default: $CHES_WORKSPACE/runs)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the model's own Python code to run (only for models you trust)")
    p.set_defaults(func=cmd_probe)

    c = sub.add_parser("check-curation", help="does the curated subset keep the chosen likelihood? curated vs "
                       "random arms of DPO over seeds",
                       description="Train fresh copies of RUN's model with the probe's DPO on n pairs drawn from "
                       "the subset the rule keeps (the rule and decisions as `ches export` takes them) and on n "
                       "pairs drawn from the whole run, for each of K seeds (same steps and settings), and report "
                       "per arm the mean change of log pi(y+|x) and log pi(y-|x) and the share of pairs whose "
                       "chosen log-probability fell (mean and sd over seeds), with a verdict: the mean per-seed "
                       "difference of the arms' chosen change is 'beyond the seed spread' when it exceeds two "
                       "standard errors of those differences. Stored in RUN/checks/<key>/ (the same settings "
                       "again reuse it); `ches export` with the same rule cites the latest check in its manifest.")
    c.add_argument("run", metavar="RUN", help="run folder, or run id (or unique prefix) under --runs")
    add_rule_arguments(c)
    c.add_argument("--n", type=int, metavar="N", help="pairs per arm (default: the probe's, see `ches probe -h`, "
                   "at most the pairs the rule keeps)")
    c.add_argument("--seeds", type=int, default=3, metavar="K", help="seeds 0..K-1 (default: 3)")
    c.add_argument("--steps", type=int, metavar="K", help=f"optimizer steps (default: {ONE_EPOCH})")
    c.add_argument("--batch-size", type=int, metavar="B", help="pairs per step (default: the probe's, at most n)")
    c.add_argument("--lr", type=float, metavar="LR", help="learning rate (default: the probe's)")
    c.add_argument("--beta", type=float, metavar="B", help="DPO's beta (default: 0.1)")
    c.add_argument("--optimizer", default="rmsprop", choices=list(OPTIMIZERS), help="(default: rmsprop)")
    c.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    c.add_argument("--runs", metavar="DIR", help="runs folder for a run id (default: $CHES_WORKSPACE/runs)")
    c.set_defaults(func=cmd_check)


def probe_settings(args: argparse.Namespace, model_id: str, table) -> tuple[ProbeSettings, Fit]:
    """ProbeSettings from `ches probe` arguments over the run's scores `table`, with the fit of n and batch size
    (model-dependent defaults, fitted to the subset's pairs; `Fit.note` says what was chosen)."""
    kind, extra = args.subset[0], args.subset[1:]
    wants = {"top": 0, "bottom": 0, "band": 2, "ids": 1}
    if kind not in wants:
        raise ProbeError(f"unknown subset {kind!r}; choose top, bottom, band LO HI or ids FILE")
    if len(extra) != wants[kind]:
        raise ProbeError({0: f"--subset {kind} takes no values", 1: "--subset ids needs one FILE",
                          2: "--subset band needs LO HI (percentiles, 0-100)"}[wants[kind]])
    band = ids = None
    if kind == "band":
        try:
            band = (float(extra[0]), float(extra[1]))
        except ValueError:
            raise ProbeError(f"--subset band needs two numbers, got {' '.join(extra)}") from None
    if kind == "ids":
        ids = read_ids(extra[0])
    d = defaults(model_id)
    fit = probe_fit(d, table, kind, args.metric, band, ids or (), args.n, args.batch_size)
    pick = lambda value, name: d[name] if value is None else value  # noqa: E731
    return ProbeSettings(subset=kind, n=fit.n, metric=args.metric, band=band, ids=ids or (), steps=args.steps,
                         batch_size=fit.batch_size, lr=pick(args.lr, "lr"), beta=pick(args.beta, "beta"),
                         optimizer=args.optimizer, seed=args.seed), fit


def cmd_probe(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ches.engine.store import read_manifest, read_scores
    from ches.review.probe import run_probe
    from ches.review.probe.dpo import load_policy
    from ches.review.probe.storage import find_probe

    run_dir = resolve_run(args.run, runs_folder(args.runs))
    s, fit = probe_settings(args, read_manifest(run_dir)["key"]["model_id"], read_scores(run_dir))
    if fit.note:
        print(f"probe: {fit.note} (fitted to the run; --n and --batch-size choose)", file=sys.stderr)
    found = find_probe(run_dir, s)
    if found is None:
        lm = load_policy(run_dir, device=args.device, trust_remote_code=args.trust_remote_code)
        print(f"probe: {s.describe()}; model {lm.model_id} on {lm.device}", file=sys.stderr)
        with tqdm(desc="probe", unit="pass", file=sys.stderr, dynamic_ncols=True) as bar:
            def tick(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)
            found = run_probe(run_dir, s, lm, progress=tick)
    else:
        print("reusing the stored probe with these settings (nothing retrained)", file=sys.stderr)
    print(probe_summary(run_dir, found, s.metric, args.top))
    return 0


def probe_summary(run_dir: Path, probe_dir: Path, metric: str, top: int) -> str:
    from ches.review.probe.analysis import probe_table, significant, spearman
    from ches.review.probe.storage import read_probe

    m, results = read_probe(probe_dir)
    t = probe_table(run_dir, results)
    s = m["summary"]
    lines = [f"probe {probe_dir}", m["describe"],
             f"pairs: {s['pairs']}   steps: {m['steps']}   time: {m['seconds']:.1f} s   device: {m['device']}",
             f"mean change of log pi(y+|x): {significant(s['mean_delta_chosen'], signed=True)} nats   of log "
             f"pi(y-|x): {significant(s['mean_delta_rejected'], signed=True)}   of the margin: "
             f"{significant(s['mean_delta_margin'], signed=True)}",
             f"pairs that lost chosen likelihood: {s['lost_chosen']} of {s['pairs']}",
             f"Spearman({metric}, change of log pi(y+|x)) over these pairs: "
             f"{spearman(t[metric], t['delta_chosen']):.3f}",
             f"per-pair values: {probe_dir / 'results.parquet'}",
             "\n" + (f"the {min(top, len(t))} pairs that lost the most chosen likelihood:" if s["lost_chosen"] else
                     f"no pair lost chosen likelihood; the {min(top, len(t))} smallest gains:"),
             f"{'row':>7} {metric:>12} {'pct':>6} {'logp(y+) before':>16} {'after':>10} {'change':>9} "
             f"{'logp(y-) change':>16}"]
    for r in t.nsmallest(top, "delta_chosen").itertuples():
        lines.append(f"{r.row:>7} {getattr(r, metric):>12.4g} {getattr(r, metric + '_pct'):>6.1f} "
                     f"{r.logp_chosen_before:>16.3f} {r.logp_chosen_after:>10.3f} {r.delta_chosen:>+9.3f} "
                     f"{r.delta_rejected:>+16.3f}")
    return "\n".join(lines)


def check_settings(args: argparse.Namespace, model_id: str, kept: int):
    """(CheckSettings, Fit) from `ches check-curation` arguments: the probe's model-dependent defaults, n and
    batch size fitted to the `kept` pairs the rule keeps (`Fit.note` says what was chosen)."""
    from ches.review.probe.check import CheckSettings, check_fit

    d = defaults(model_id)
    fit = check_fit(d, kept, args.n, args.batch_size)
    pick = lambda value, name: d[name] if value is None else value  # noqa: E731
    return CheckSettings(n=fit.n, seeds=args.seeds, steps=args.steps, batch_size=fit.batch_size,
                         lr=pick(args.lr, "lr"), beta=pick(args.beta, "beta"), optimizer=args.optimizer), fit


def cmd_check(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ches.engine.store import read_manifest, read_scores
    from ches.review.export import select
    from ches.review.probe.check import run_check

    run_dir = resolve_run(args.run, runs_folder(args.runs))
    rule, current = rule_and_decisions(args)
    kept = int(select(read_scores(run_dir), rule, current)["kept"].sum())
    cs, fit = check_settings(args, read_manifest(run_dir)["key"]["model_id"], kept)
    if fit.note:
        print(f"check: {fit.note} (fitted to the rule; --n and --batch-size choose)", file=sys.stderr)
    print(f"check: {rule.describe()}; {cs.describe()}", file=sys.stderr)
    with tqdm(desc="check", unit="pass", file=sys.stderr, dynamic_ncols=True) as bar:
        def tick(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
        found = run_check(run_dir, rule, current, cs, device=args.device, progress=tick)
    print(check_summary(found))
    return 0


def check_summary(check_dir: Path) -> str:
    """The stored check as text: the settings, one line per arm (mean ± sd over seeds), the verdict."""
    from ches.review.probe.analysis import significant
    from ches.review.probe.check import read_check, verdict

    m, _ = read_check(check_dir)
    num = lambda x: f"{significant(x, signed=True):>13}"  # noqa: E731
    st = m["stats"]
    lines = [f"curation check {check_dir}", f"rule: {m['rule_describe']} ({m['pool']['kept']} of "
             f"{m['pool']['pairs']} pairs kept); decisions applied: "
             + (", ".join(f"{k} {v}" for k, v in m["decisions"].items()) or "none"),
             f"{m['describe']}; {m['steps']} step(s) per arm; {m['seconds']:.0f} s on {m['device']}",
             f"\n{'arm':<9} {'mean Δ log pi(y+|x) ± sd':>24} {'mean Δ log pi(y-|x) ± sd':>24} "
             f"{'share lost y+':>15}"]
    for arm, a in st["arms"].items():
        lines.append(f"{arm:<9} {num(a['mean_delta_chosen'])} ± {significant(a['sd_delta_chosen']):<8} "
                     f"{num(a['mean_delta_rejected'])} ± {significant(a['sd_delta_rejected']):<8} "
                     f"{a['share_lost']:>6.2f} ± {a['sd_share_lost']:.2f}")
    per_seed = ", ".join(significant(d, signed=True) for d in st["per_seed_difference"])
    lines += [f"per-seed difference curated - random (nats): {per_seed}", verdict(st)]
    return "\n".join(lines)
