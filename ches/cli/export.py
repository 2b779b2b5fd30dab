"""The `ches export` and `ches decisions` subcommands (wired into ches/cli.py by `add_*_parser`).

    ches export RUN --out FILE [--force] [--metric M] [--keep-lowest-percent X | --threshold T]
                [--drop-flags F,F] [--format input|trl] [--decisions DB] [--annotator NAME] [--runs DIR]
    ches decisions export FILE [--db DB]
    ches decisions import FILE [--db DB]

RUN is a run folder, or a run id (or a unique prefix of one) under --runs ($CHES_WORKSPACE/runs).
User errors raise ValueError / OSError subclasses; the CLI's main prints them as one line.
`decisions import` returns 1 when some lines were rejected (the good ones are still imported).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ches.review import decisions
from ches.engine.data import FLAGS
from ches.review.export import DEFAULT_DROP_FLAGS, EXPORT_FORMATS, ExportError, Rule, export
from ches.engine.metrics import METRICS
from ches.engine.store import is_complete
from ches.workspace import workspace


class RunNotFound(ValueError):
    """RUN names no complete run folder."""


def resolve_run(ref: str, runs_root: str | Path) -> Path:
    """A run folder given as a path, an id under `runs_root`, or a unique prefix of such an id."""
    path = Path(ref)
    if is_complete(path):
        return path
    root = Path(runs_root)
    if "/" not in ref and "\\" not in ref and ref not in ("", ".", "..") and root.is_dir():
        if is_complete(root / ref):
            return root / ref
        hits = [d for d in root.iterdir() if d.name.startswith(ref) and ".tmp-" not in d.name and is_complete(d)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise RunNotFound(f"run id prefix {ref!r} is ambiguous: {', '.join(sorted(d.name for d in hits))}")
    raise RunNotFound(f"{ref!r} is neither a run folder nor a run id under {root} (list them: ches runs)")


def _flags(text: str) -> tuple[str, ...]:
    flags = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in flags if f not in FLAGS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown flag(s) {', '.join(unknown)}; valid: {', '.join(FLAGS)}")
    return flags


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    """`ches export ...` on the given subparsers action."""
    p = subparsers.add_parser(
        "export", help="write the curated subset of a run (lowest scores kept) with a manifest",
        description="Keep the pairs least likely to cause likelihood displacement and write them as JSON "
        "Lines, with FILE's <stem>.manifest.json beside it. Decisions in the annotation database override "
        "the rule: keep = always kept, drop = always dropped. The paper (Sec. 6) keeps the 5% lowest "
        "LN-CHES: --keep-lowest-percent 5. An existing FILE is kept unless --force is given.")
    p.add_argument("run", metavar="RUN", help="run folder, or run id (or unique prefix) under --runs")
    p.add_argument("--out", required=True, metavar="FILE", help="output .jsonl file")
    p.add_argument("--force", action="store_true", help="overwrite FILE (and its manifest) if it exists")
    p.add_argument("--metric", default="ln_ches", choices=list(METRICS), help="ranking metric (default: ln_ches)")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--keep-lowest-percent", type=float, default=95.0, metavar="X",
                      help="keep the X%% of pairs with the lowest metric (default: 95)")
    rule.add_argument("--threshold", type=float, metavar="T", help="keep the pairs with metric <= T")
    p.add_argument("--drop-flags", type=_flags, default=DEFAULT_DROP_FLAGS, metavar="F,F",
                   help=f"drop pairs with any of these flags (default: {','.join(DEFAULT_DROP_FLAGS)}; "
                   "'' for none)")
    p.add_argument("--format", dest="fmt", choices=EXPORT_FORMATS, default="input",
                   help="input: the source records as read; trl: TRL conversational (default: input)")
    p.add_argument("--decisions", metavar="DB", help="annotation database (default: the workspace's, if it "
                   "exists)")
    p.add_argument("--annotator", metavar="NAME", help="apply only this annotator's decisions (default: the "
                   "latest decision of anyone)")
    p.add_argument("--runs", metavar="DIR", help="runs folder for a run id (default: $CHES_WORKSPACE/runs)")
    p.set_defaults(func=cmd_export)
    return p


def cmd_export(args: argparse.Namespace) -> int:
    """Run `ches export`; prints a summary on stdout."""
    runs_root = Path(args.runs) if getattr(args, "runs", None) else workspace().runs
    run_dir = resolve_run(args.run, runs_root)
    rule = Rule(metric=args.metric, keep_lowest_percent=args.keep_lowest_percent, threshold=args.threshold,
                drop_flags=tuple(args.drop_flags))
    decisions = {}
    db = Path(args.decisions) if args.decisions else workspace().decisions
    if args.decisions and not db.is_file():
        raise ExportError(f"{db}: no such decisions database")
    if db.is_file():
        decisions = decisions.current(db, annotator=args.annotator)
    m = export(run_dir, rule, decisions, args.out, fmt=args.fmt, annotator=args.annotator, overwrite=args.force)
    c = m["counts"]
    lines = [f"wrote {c['kept']} of {c['pairs']} pairs to {args.out} ({args.fmt} format)",
             f"manifest: {Path(args.out).with_name(Path(args.out).stem + '.manifest.json')}",
             f"rule: {rule.describe()}" + (f"; highest kept score {m['cutoff']:.6g}" if m["cutoff"] is not None else ""),
             "kept:    " + _counts(c["kept_by_reason"]),
             "dropped: " + _counts(c["dropped_by_reason"]),
             f"decisions applied: {_counts(m['decisions'])} ({c['overridden_by_decisions']} changed the outcome)"]
    print("\n".join(lines))
    return 0


def _counts(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"


def add_decisions_parser(subparsers) -> argparse.ArgumentParser:
    """`ches decisions export|import FILE` on the given subparsers action."""
    p = subparsers.add_parser("decisions", help="export or import annotators' decisions (JSON Lines)",
                              description="Move the keep/drop/flag decision log between workspaces.")
    actions = p.add_subparsers(dest="action", required=True)
    for name, help_text in (("export", "write every decision event to FILE (atomically)"),
                            ("import", "append the events in FILE, skipping ones already present")):
        a = actions.add_parser(name, help=help_text, description=help_text)
        a.add_argument("file", metavar="FILE")
        a.add_argument("--db", metavar="DB", help="annotation database (default: $CHES_WORKSPACE/decisions.sqlite)")
    p.set_defaults(func=cmd_decisions)
    return p


def cmd_decisions(args: argparse.Namespace) -> int:
    """Run `ches decisions export|import`; 1 when an import rejected some lines."""
    db = Path(args.db) if getattr(args, "db", None) else workspace().decisions
    if args.action == "export":
        if not db.is_file():
            raise ExportError(f"{db}: no decisions database yet (record a decision first)")
        n = decisions.export_jsonl(db, args.file)
        print(f"exported {n} decision event(s) from {db} to {args.file}")
        return 0
    if args.action == "import":
        if not Path(args.file).is_file():
            raise FileNotFoundError(f"{args.file}: no such file")
        db.parent.mkdir(parents=True, exist_ok=True)
        imported, skipped, errors = decisions.import_jsonl(db, args.file)
        print(f"imported {imported}, skipped {skipped} duplicate(s), {len(errors)} error(s)")
        for e in errors:
            print(f"  line {e.line}: {e.reason}", file=sys.stderr)
        return 1 if errors else 0
    raise ExportError(f"unknown decisions action {args.action!r}; expected export or import")
