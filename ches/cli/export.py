"""`ches export`: the curated subset of a run (lowest scores kept, decisions applied) with its manifest.

    ches export RUN --out FILE|FOLDER [--force] [--metric M] [--keep-lowest-percent X | --threshold T]
                [--drop-flags F,F] [--format input|trl|hf|hf-trl] [--decisions DB]
                [--team-rule latest|majority|unanimous_keep|any_drop|adjudicated | --annotator NAME] [--runs DIR]

RUN is a run folder, or a run id (or a unique prefix of one) under --runs ($CHES_WORKSPACE/runs).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ches.cli.common import flag_list, help_page, resolve_run, runs_folder
from ches.engine.metrics import METRICS
from ches.review.team_rules import DEFAULT_TEAM_RULE, TEAM_RULES, TeamView
from ches.review.export import DEFAULT_DROP_FLAGS, EXPORT_FORMATS, ExportError, Rule, export, manifest_path, only
from ches.review.hub_export import HF_FORMATS, export_hf
from ches.workspace import workspace


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "export", help="write the curated subset of a run (lowest scores kept) with a manifest", **help_page(
        "Keep the pairs least likely to cause likelihood displacement and write them as JSON "
        "Lines, with FILE's <stem>.manifest.json beside it, or as a Hugging Face dataset folder (--format hf: "
        "data/*.parquet and a README.md dataset card carrying the manifest; datasets.load_dataset(FOLDER) reads "
        "it, and it can be pushed to the Hub as is). Decisions in the annotation database override "
        "the rule: keep = always kept, drop = always dropped; with several annotators, --team-rule says which "
        "decision is the team's (an adjudicator's decision wins under every rule). The manifest lists the "
        "decisions by annotator, the conflicts and how each was settled, Cohen's kappa and Krippendorff's "
        "alpha. The paper (Sec. 6) keeps the 5% lowest "
        "LN-CHES: --keep-lowest-percent 5. An existing FILE is kept unless --force is given.",
        "ches export RUN --out cleaned.jsonl --keep-lowest-percent 95",
        "ches export RUN --out cleaned/ --format hf-trl --team-rule majority   # a dataset folder for TRL",
        "ches export RUN --out paper.jsonl --keep-lowest-percent 5 --force     # the paper's Sec. 6 filter"))
    p.add_argument("run", metavar="RUN", help="run folder, or run id (or unique prefix) under --runs")
    p.add_argument("--out", required=True, metavar="FILE", help="output .jsonl file, or the dataset folder "
                   "(--format hf / hf-trl)")
    p.add_argument("--force", action="store_true", help="overwrite FILE (and its manifest) if it exists")
    add_rule_arguments(p)
    p.add_argument("--format", dest="fmt", choices=EXPORT_FORMATS + tuple(HF_FORMATS), default="input",
                   help="input: the source records as read; trl: TRL conversational (prompt / chosen / rejected "
                   "messages); hf / hf-trl: the same rows as a Hugging Face dataset folder (default: input)")
    p.add_argument("--runs", metavar="DIR", help="runs folder for a run id (default: $CHES_WORKSPACE/runs)")
    p.set_defaults(func=cmd_export)


def add_rule_arguments(p: argparse.ArgumentParser) -> None:
    """The curation rule and the decisions applied, as `ches export` and `ches check-curation` take them."""
    first = next(iter(METRICS))
    p.add_argument("--metric", default=first, choices=list(METRICS), help=f"ranking metric (default: {first})")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--keep-lowest-percent", type=float, default=95.0, metavar="X",
                      help="keep the X%% of pairs with the lowest metric (default: 95)")
    rule.add_argument("--threshold", type=float, metavar="T", help="keep the pairs with metric <= T")
    p.add_argument("--drop-flags", type=flag_list, default=DEFAULT_DROP_FLAGS, metavar="F,F",
                   help=f"drop pairs with any of these flags (default: {','.join(DEFAULT_DROP_FLAGS)}; "
                   "'' for none)")
    p.add_argument("--decisions", metavar="DB", help="annotation database (default: the workspace's, if it "
                   "exists)")
    team = p.add_mutually_exclusive_group()
    team.add_argument("--team-rule", choices=list(TEAM_RULES), default=DEFAULT_TEAM_RULE, metavar="NAME",
                      help="how several annotators' decisions on a pair become the team's: "
                      + ", ".join(f"{name} ({text})" for name, text in TEAM_RULES.items())
                      + f". Default: {DEFAULT_TEAM_RULE}. A pair the rule gives no decision follows the score rule")
    team.add_argument("--annotator", metavar="NAME", help="apply only this annotator's decisions (instead of a "
                      "team rule)")


def rule_and_decisions(args: argparse.Namespace) -> tuple[Rule, TeamView]:
    """The Rule and everyone's decisions (or --annotator's alone) that `add_rule_arguments` options ask for."""
    rule = Rule(metric=args.metric, keep_lowest_percent=args.keep_lowest_percent, threshold=args.threshold,
                drop_flags=tuple(args.drop_flags), team=args.team_rule)
    db = Path(args.decisions) if args.decisions else workspace().decisions
    if args.decisions and not db.is_file():
        raise ExportError(f"{db}: no such decisions database")
    view = TeamView.read(db) if db.is_file() else TeamView()
    return rule, only(view, args.annotator, rule) if args.annotator else view


def cmd_export(args: argparse.Namespace) -> int:
    """Run `ches export`; prints a summary on stdout."""
    run_dir = resolve_run(args.run, runs_folder(args.runs))
    rule, current = rule_and_decisions(args)
    write = export_hf if args.fmt in HF_FORMATS else export
    m = write(run_dir, rule, current, args.out, fmt=args.fmt, annotator=args.annotator, overwrite=args.force)
    c = m["counts"]
    lines = [f"wrote {c['kept']} of {c['pairs']} pairs to {args.out} ({args.fmt} format)",
             f"manifest: {Path(args.out) / 'README.md' if args.fmt in HF_FORMATS else manifest_path(args.out)}",
             f"rule: {rule.describe()}" + (f"; highest kept score {m['cutoff']:.6g}" if m["cutoff"] is not None else ""),
             "kept:    " + _counts(c["kept_by_reason"]),
             "dropped: " + _counts(c["dropped_by_reason"]),
             f"decisions applied: {_counts(m['decisions'])} ({c['overridden_by_decisions']} changed the outcome)"]
    team = m["team"]
    if team.get("annotators"):
        lines += [f"team rule: {team['rule']}; annotators: " + "; ".join(f"{a} ({_counts(n)})" for a, n in
                                                                         team["annotators"].items()),
                  f"conflicts: {team['conflicts']}" + (f" (settled by {_counts(team['settled_by'])})"
                                                       if team["conflicts"] else "")]
    print("\n".join(lines))
    return 0


def _counts(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"
