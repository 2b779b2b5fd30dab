"""`ches probe`: check CHES's prediction on a run with a few DPO steps (ches/review/probe).

    ches probe RUN --subset top|bottom|band LO HI|ids FILE [--metric M] [--n N] [--steps K] [--batch-size B]
               [--lr LR] [--beta B] [--optimizer O] [--seed S [S ...]] [--device D] [--top K] [--runs DIR]

    ches check-curation RUN [--metric M] [--keep-lowest-percent X | --threshold T] [--rule SPEC ...]
               [--rules SPEC,SPEC] [--random length|uniform|none] [--behaviour-prompts FILE]
               [--max-new-tokens N] [--drop-flags F,F] [--decisions DB] [--annotator NAME] [--n N] [--seeds K]
               [--steps K] [--batch-size B] [--lr LR] [--beta B] [--optimizer O] [--device D] [--runs DIR]

n and the batch size left out are fitted to the run (`ches.review.probe.settings.fit_sizes`), and the
output says what was chosen. The same settings again reuse the stored probe / check (nothing is retrained).
The Probe page and the Curate & export page run both as jobs (ches/engine/jobs.py) with the arguments
`probe_args` and `check_args` write; their events: a step before each long step, progress in pair passes,
"complete" with the folder stored (the last seed's probe; the check).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ches.atomic import atomic_write_text
from ches.cli.common import help_page, job_events, resolve_run, runs_folder
from ches.cli.export import add_rule_arguments, rule_and_decisions
from ches.engine import jobs
from ches.engine.metrics import METRICS
from ches.review.export import Rule
from ches.review.probe.settings import (BUNDLED, ONE_EPOCH, OPTIMIZERS, PAPER, Fit, ProbeError, ProbeSettings,
                                        defaults, probe_fit, read_ids)

if TYPE_CHECKING:
    from ches.review.probe.check import CheckSettings     # imports torch: not at start-up


def add_parsers(sub) -> None:
    p = sub.add_parser("probe", help="check CHES's prediction: a few DPO steps on a subset, log-probs before/after",
                       **help_page("Train a fresh copy of RUN's model (same weights, template and dtype) with DPO "
                       "(TRL's sigmoid loss) on a subset of RUN's pairs, and report per pair log pi(y+|x) and "
                       "log pi(y-|x) before and after (summed over the response tokens and EOS: the positions CHES "
                       "uses), their mean changes and how many pairs lost chosen likelihood. The probe is stored "
                       "in RUN/probes/<key>/; the same settings again reuse it. Defaults: the paper's (Sec. 5: "
                       f"n {PAPER['n']}, batch {PAPER['batch_size']}, RMSprop, lr {PAPER['lr']:g}, beta "
                       f"{PAPER['beta']:g}, one epoch); for the bundled model n {BUNDLED['n']}, batch "
                       f"{BUNDLED['batch_size']}, lr {BUNDLED['lr']:g} (what shows the effect on it, see "
                       "bench/displacement_bench.py). Left out, n is lowered to the pairs the subset can draw from "
                       "and the batch size to n; the output says what was chosen.",
                       "ches probe RUN --subset top --n 16               # the 16 highest CHES",
                       "ches probe RUN --subset band 40 60 --metric ln_ches --seed 1"))
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
    p.add_argument("--seed", type=int, nargs="+", default=[0], metavar="S", help="order of the pairs across steps; "
                   "several seeds train one probe each, in turn (default: 0)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--top", type=int, default=10, metavar="K", help="pairs listed that lost the most (default: 10)")
    p.add_argument("--runs", metavar="DIR", help="runs folder for a run id (default: $CHES_WORKSPACE/runs)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the model's own Python code to run (only for models you trust)")
    p.set_defaults(func=cmd_probe)

    c = sub.add_parser("check-curation", help="which curation rule keeps the chosen likelihood? one DPO arm per "
                       "rule and a random arm, over seeds",
                       **help_page("Train fresh copies of RUN's model with the probe's DPO on n pairs drawn from "
                       "what each rule keeps (the rule of --metric / --keep-lowest-percent / --threshold first, then "
                       "each --rule; decisions and drop flags as `ches export` takes them) and on n pairs drawn at "
                       "random from the run (by default length-matched to the first rule's draw), for each of K "
                       "seeds (same seeds, steps and settings for every arm). Per arm: mean |y+| (tokens, EOS "
                       "included), the change of log pi(y+|x) (after - before, nats summed over the response) and "
                       "per response token, the change of log pi(y-|x), the share of pairs that lost chosen "
                       "likelihood (mean ± sd over seeds). The verdict names the arm that kept the chosen "
                       "likelihood best and whether its lead is beyond the seed spread: a two-standard-error "
                       "screen over K seeds, not a significance test. With --behaviour-prompts, greedy answers to "
                       "those held-out prompts are judged by the built-in refusal judge before training and after "
                       "every arm. Stored in RUN/checks/<key>/ (the same settings again reuse it); `ches export` "
                       "with one of the rules cites the latest such check in its manifest.",
                       "# the paper's filter against raw CHES and a length-matched random arm, with held-out "
                       "refusal prompts:",
                       "ches check-curation RUN --metric ln_ches --keep-lowest-percent 10 --rule ches:10 --seeds 3 "
                       "--behaviour-prompts heldout.txt",
                       notes="SPEC: METRIC:X keeps the X% lowest METRIC, METRIC<=T the pairs with METRIC <= T\n"
                       f"(metrics: {', '.join(METRICS)}); quote METRIC<=T in a shell."))
    c.add_argument("run", metavar="RUN", help="run folder, or run id (or unique prefix) under --runs")
    add_rule_arguments(c)
    c.add_argument("--rule", action="append", default=[], metavar="SPEC", help="another rule to compare (repeat "
                   "it): METRIC:X or METRIC<=T, with the same drop flags and decisions")
    c.add_argument("--rules", metavar="SPEC,SPEC", help="several more rules at once, comma-separated")
    c.add_argument("--random", default="length", choices=["length", "uniform", "none"],
                   help="the random arm: length-matched to the first rule's |y+| (default), uniform, or none")
    c.add_argument("--behaviour-prompts", metavar="FILE", help="held-out prompts, JSON Lines or text, one per "
                   "line: the refusal rate of greedy answers before training and after each arm")
    c.add_argument("--max-new-tokens", type=int, default=64, metavar="N", help="tokens per answer (default: 64)")
    c.add_argument("--n", type=int, metavar="N", help="pairs per arm (default: the probe's, see `ches probe -h`, "
                   "at most the pairs the rule that keeps fewest keeps)")
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
                         optimizer=args.optimizer, seed=args.seed[0]), fit


def probe_args(run_dir: str | Path, s: ProbeSettings, seeds: Sequence[int] = (), *, rows_dir: str | Path) -> list[str]:
    """The `ches probe` arguments that train `s` on `run_dir`, once per seed in `seeds` (default: s.seed). Listed
    rows (subset "ids") go to `rows_dir/rows-<digest>.txt`, written once: the same rows give the same arguments."""
    argv = [str(run_dir), "--subset", s.subset]
    if s.subset == "band":
        argv += [repr(float(s.band[0])), repr(float(s.band[1]))]
    elif s.subset == "ids":
        text = "".join(f"{r}\n" for r in s.ids)
        path = Path(rows_dir) / f"rows-{hashlib.sha256(text.encode()).hexdigest()[:16]}.txt"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
        argv.append(str(path))
    if s.subset != "ids":
        argv += ["--n", str(s.n)]
    argv += ["--metric", s.metric, "--batch-size", str(s.batch_size), "--lr", repr(float(s.lr)), "--beta",
             repr(float(s.beta)), "--optimizer", s.optimizer]
    if s.steps is not None:
        argv += ["--steps", str(s.steps)]
    return [*argv, "--seed", *(str(int(seed)) for seed in (seeds or [s.seed]))]


class Ticker:
    """A progress callback (done, total) in pair passes: a tqdm bar for people (stderr) and the job's "progress"
    events, at most one a second and the last (rate = passes since the first call / seconds since then)."""

    def __init__(self, events: jobs.Events, what: str):
        from tqdm import tqdm
        self.bar = tqdm(desc=what, unit="pass", file=sys.stderr, dynamic_ncols=True)
        self.events, self.first, self.sent = events, None, float("-inf")

    def __call__(self, done: int, total: int) -> None:
        self.bar.total = total
        self.bar.update(done - self.bar.n)
        now = time.monotonic()
        self.first = self.first or (now, done)
        if now - self.sent < 1 and done < total:
            return
        self.sent, (t0, d0) = now, self.first
        rate = (done - d0) / (now - t0) if done > d0 else None
        self.events("progress", done=done, total=total, rate=rate, seconds_left=(total - done) / rate if rate else None)

    def __enter__(self) -> "Ticker":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


def cmd_probe(args: argparse.Namespace) -> int:
    """`ches probe`: one probe per seed (a stored one is reused), each summary printed; the job's events."""
    from ches.engine.store import read_manifest, read_scores
    from ches.review.probe import run_probe
    from ches.review.probe.dpo import load_policy
    from ches.review.probe.storage import find_probe

    with job_events() as events:
        run_dir = resolve_run(args.run, runs_folder(args.runs))
        s, fit = probe_settings(args, read_manifest(run_dir)["key"]["model_id"], read_scores(run_dir))
        if fit.note:
            print(f"probe: {fit.note} (fitted to the run; --n and --batch-size choose)", file=sys.stderr)
        todo = [replace(s, seed=seed) for seed in args.seed]
        with Ticker(events, "probe") as tick:
            for i, one in enumerate(todo):
                found = find_probe(run_dir, one)
                of = f" (probe {i + 1} of {len(todo)})" if len(todo) > 1 else ""
                if found is None:
                    events("step", what=f"loading a fresh copy of the model{of}")
                    lm = load_policy(run_dir, device=args.device, trust_remote_code=args.trust_remote_code)
                    print(f"probe: {one.describe()}; model {lm.model_id} on {lm.device}", file=sys.stderr)
                    events("step", what=f"training and measuring{of}")
                    found = run_probe(run_dir, one, lm, progress=lambda done, total, i=i: tick(
                        i * total + done, len(todo) * total))
                else:
                    print(f"reusing the stored probe with these settings{of} (nothing retrained)", file=sys.stderr)
                print(probe_summary(run_dir, found, one.metric, args.top))
        events("complete", result=str(found))
    return 0


def probe_summary(run_dir: Path, probe_dir: Path, metric: str, top: int) -> str:
    from ches.review.probe.analysis import probe_table, significant, spearman
    from ches.review.probe.storage import read_probe

    m, results = read_probe(probe_dir)
    t = probe_table(run_dir, results)
    s = m["summary"]
    lines = [f"probe {probe_dir}", m["describe"],
             f"pairs: {s['pairs']}   steps: {m['steps']}   time: {m['seconds']:.1f} s   device: {m['device']}",
             "change = after - before of log pi(y|x), in nats summed over the response (|y| tokens, EOS included)",
             f"mean |y+|: {significant(t['len_chosen'].mean())} tokens   mean change of log pi(y+|x): "
             f"{significant(s['mean_delta_chosen'], signed=True)} nats, per response token "
             f"{significant(t['delta_chosen_per_token'].mean(), signed=True)}",
             f"mean change of log pi(y-|x): {significant(s['mean_delta_rejected'], signed=True)} nats   of the "
             f"margin: {significant(s['mean_delta_margin'], signed=True)} nats",
             f"pairs that lost chosen likelihood: {s['lost_chosen']} of {s['pairs']}" +
             ("" if s["lost_chosen"] else " (no displacement happened at these settings)"),
             f"Spearman({metric}, change of log pi(y+|x)) over these pairs: "
             f"{spearman(t[metric], t['delta_chosen']):.3f}",
             f"per-pair values: {probe_dir / 'results.parquet'}",
             "\n" + (f"the {min(top, len(t))} pairs that lost the most chosen likelihood:" if s["lost_chosen"] else
                     f"the {min(top, len(t))} smallest gains:"),
             f"{'row':>7} {metric:>12} {'pct':>6} {'|y+|':>5} {'logp(y+) before':>16} {'after':>10} {'change':>9} "
             f"{'per token':>10} {'logp(y-) change':>16}"]
    for r in t.nsmallest(top, "delta_chosen").itertuples():
        lines.append(f"{r.row:>7} {significant(getattr(r, metric)):>12} {getattr(r, metric + '_pct'):>6.1f} "
                     f"{r.len_chosen:>5} {significant(r.logp_chosen_before):>16} {significant(r.logp_chosen_after):>10} "
                     f"{significant(r.delta_chosen, signed=True):>9} "
                     f"{significant(r.delta_chosen_per_token, signed=True):>10} "
                     f"{significant(r.delta_rejected, signed=True):>16}")
    return "\n".join(lines)


def parse_rule(spec: str, base: Rule) -> Rule:
    """A rule from SPEC (METRIC:X = the X% lowest METRIC; METRIC<=T = METRIC at most T), with `base`'s drop flags
    and team rule; ExportError (a user error) when SPEC is neither."""
    from ches.review.export import ExportError

    text = spec.strip()
    try:
        if "<=" in text:
            metric, value = text.split("<=", 1)
            return Rule(metric=metric.strip(), threshold=float(value), drop_flags=base.drop_flags, team=base.team)
        if ":" in text:
            metric, value = text.split(":", 1)
            return Rule(metric=metric.strip(), keep_lowest_percent=float(value.rstrip("% ")),
                        drop_flags=base.drop_flags, team=base.team)
    except ValueError as e:
        if isinstance(e, ExportError):
            raise
    raise ExportError(f"--rule {spec!r}: write METRIC:X (keep the X% lowest) or METRIC<=T (metrics: "
                      f"{', '.join(METRICS)})")


def check_rules(args: argparse.Namespace, first: Rule) -> list[Rule]:
    """The rules `ches check-curation` compares: `first` (the rule options), then each --rule and --rules SPEC."""
    specs = [*args.rule, *(x for x in (args.rules or "").split(",") if x.strip())]
    return [first, *(parse_rule(x, first) for x in specs)]


def check_settings(args: argparse.Namespace, model_id: str, kept: int):
    """(CheckSettings, Fit) from `ches check-curation` arguments: the probe's model-dependent defaults, n and
    batch size fitted to the `kept` pairs (the fewest any rule keeps; `Fit.note` says what was chosen)."""
    from ches.review.probe.check import CheckSettings, check_fit

    d = defaults(model_id)
    fit = check_fit(d, kept, args.n, args.batch_size)
    pick = lambda value, name: d[name] if value is None else value  # noqa: E731
    return CheckSettings(n=fit.n, seeds=args.seeds, steps=args.steps, batch_size=fit.batch_size,
                         lr=pick(args.lr, "lr"), beta=pick(args.beta, "beta"), optimizer=args.optimizer,
                         random=args.random), fit


def rule_spec(rule: Rule) -> str:
    """`parse_rule`'s SPEC for a rule."""
    return (f"{rule.metric}:{float(rule.keep_lowest_percent)!r}" if rule.threshold is None
            else f"{rule.metric}<={float(rule.threshold)!r}")


def check_args(run_dir: str | Path, rule: Rule | Sequence[Rule], cs: CheckSettings, *,
               decisions: str | Path | None = None, annotator: str | None = None,
               behaviour_prompts: str | Path | None = None) -> list[str]:
    """The `ches check-curation` arguments that compare `rule` (one ches.review.export.Rule, or several: the
    first gives the drop flags and team rule of all) with CheckSettings `cs` on `run_dir`: the decisions in the
    database `decisions` (default: the workspace's), by the rule's team rule or, given `annotator`, that
    annotator's alone; `behaviour_prompts`: a prompts file for the behaviour measure."""
    rules = [rule] if isinstance(rule, Rule) else list(rule)
    first = rules[0]
    argv = [str(run_dir), "--metric", first.metric]
    argv += (["--threshold", repr(float(first.threshold))] if first.threshold is not None
             else ["--keep-lowest-percent", repr(float(first.keep_lowest_percent))])
    for r in rules[1:]:
        argv.append(f"--rule={rule_spec(r)}")
    argv += [f"--drop-flags={','.join(first.drop_flags)}", f"--annotator={annotator}" if annotator
             else f"--team-rule={first.team}"]
    if decisions is not None:
        argv.append(f"--decisions={decisions}")
    argv += ["--n", str(cs.n), "--seeds", str(cs.seeds), "--batch-size", str(cs.batch_size), "--lr",
             repr(float(cs.lr)), "--beta", repr(float(cs.beta)), "--optimizer", cs.optimizer, "--random", cs.random]
    if behaviour_prompts is not None:
        argv.append(f"--behaviour-prompts={behaviour_prompts}")
    return argv + (["--steps", str(cs.steps)] if cs.steps is not None else [])


def cmd_check(args: argparse.Namespace) -> int:
    """`ches check-curation`: every arm over every seed (a stored check is reused), the summary; the job's events."""
    from ches.engine.store import read_manifest, read_scores
    from ches.review.export import select
    from ches.review.probe.check import Behaviour, arm_names, read_prompts, run_check

    with job_events() as events:
        run_dir = resolve_run(args.run, runs_folder(args.runs))
        rule, current = rule_and_decisions(args)
        rules = check_rules(args, rule)
        table = read_scores(run_dir)
        kept = min(int(select(table, r, current)["kept"].sum()) for r in rules)
        cs, fit = check_settings(args, read_manifest(run_dir)["key"]["model_id"], kept)
        behaviour = None
        if args.behaviour_prompts:
            behaviour = Behaviour(prompts=read_prompts(args.behaviour_prompts), max_new_tokens=args.max_new_tokens)
        if fit.note:
            print(f"check: {fit.note} (fitted to the rules; --n and --batch-size choose)", file=sys.stderr)
        for r in rules:
            print(f"check: {r.describe()}", file=sys.stderr)
        print(f"check: {cs.describe()}" + ("" if behaviour is None else f"; behaviour: {len(behaviour.prompts)} "
                                            "prompt(s), the built-in refusal judge"), file=sys.stderr)
        arms = arm_names(rules, cs.random)
        events("step", what=f"training {cs.seeds} seeds × {len(arms)} arms, a fresh copy of the model each")
        with Ticker(events, "check") as tick:
            found = run_check(run_dir, rules, current, cs, behaviour=behaviour, device=args.device, progress=tick)
        print(check_summary(found))
        events("complete", result=str(found))
    return 0


def check_summary(check_dir: Path) -> str:
    """The stored check as text: the settings, one line per arm (mean ± sd over seeds), the behaviour rates, the
    verdict. A check stored by an older version: its stored verdict and a line saying to run it again."""
    from ches.review.probe.analysis import significant
    from ches.review.probe.check import CHECK_VERSION, is_current, read_check

    m, _ = read_check(check_dir)
    if not is_current(m):
        return (f"curation check {check_dir}\nstored by an older version (check version "
                f"{m.get('check_version', 1)}, now {CHECK_VERSION}): no |y+| or per-token numbers; run the check "
                f"again.\n{m.get('verdict', '')}")
    num = lambda x, w=9: f"{significant(x, signed=True):>{w}}"  # noqa: E731
    sd = lambda x: f"{significant(x):<7}"  # noqa: E731
    st = m["stats"]
    arms = st["order"]
    width = max(len(a) for a in arms) + 1
    lines = [f"curation check {check_dir}", "rules: " + "; ".join(f"{a['name']} ({a['kept']} of "
             f"{m['pool']['pairs']} pairs kept)" for a in m["arms"] if a.get("rule")),
             "decisions applied: " + (", ".join(f"{k} {v}" for k, v in m["decisions"].items()) or "none"),
             f"{m['describe']}; {m['steps']} step(s) per arm; {m['seconds']:.0f} s on {m['device']}",
             f"change = after - before of log pi(y|x), in {m['unit']}; each value: mean ± sd over "
             f"{st['seeds']} seeds",
             f"\n{'arm':<{width}} {'mean |y+|':>9} {'change log pi(y+|x)':>21} {'per token':>19} "
             f"{'change log pi(y-|x)':>21} {'share lost y+':>15}"]
    for arm in arms:
        a = st["arms"][arm]
        lines.append(f"{arm:<{width}} {significant(a['mean_len_chosen']):>9} {num(a['mean_delta_chosen'], 11)} ± "
                     f"{sd(a['sd_delta_chosen'])} {num(a['mean_delta_chosen_per_token'])} ± "
                     f"{sd(a['sd_delta_chosen_per_token'])} {num(a['mean_delta_rejected'], 11)} ± "
                     f"{sd(a['sd_delta_rejected'])} {significant(a['share_lost']):>6} ± {significant(a['sd_share_lost'])}")
    b = m.get("behaviour")
    if b:
        lines.append(f"\nbehaviour: {b['judge']} rate of greedy answers to {b['count']} held-out prompt(s) "
                     f"(at most {b['max_new_tokens']} new tokens): before training {significant(b['before'])}")
        for arm in arms:
            r = b["arms"][arm]
            lines.append(f"  after {arm:<{width}} {significant(r['mean_rate'])} ± {significant(r['sd_rate'])}")
    lines += ["", m["verdict"]]
    return "\n".join(lines)
