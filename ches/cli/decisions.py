"""`ches decisions export|import FILE`: move the keep/drop/flag decision log between workspaces (JSON Lines).

    ches decisions export FILE [--run RUN] [--runs DIR] [--db DB]
    ches decisions import FILE [--db DB]

`export` writes each event with its pair's `run`, `row` and `prompt` (ches.review.decision_context): from
RUN, else from the most recent complete run in the runs folder that holds the pair (null when none does).

`import` appends FILE's events in the file's order, after everything already in the log: what it brings
becomes the latest action of its annotators, whatever the dates in the file (they are kept, for people).
Events already present are skipped, so importing the same file twice changes nothing. Bad lines are
listed by line number with the reason, the good ones are still imported, and the exit status is 1.
"""
from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from ches.cli.common import UserError, help_page, resolve_run, runs_folder
from ches.review import decisions
from ches.review.decision_context import export_with_context
from ches.workspace import workspace

_HELP = {
    "export": "write every decision event to FILE (JSON Lines, atomically), in the log's order, each with its "
              "pair's run (run id), row and prompt (the last user turn's full text): from --run, else from the "
              "most recent complete run in the workspace that holds the pair; null where no run holds it",
    "import": "append the events in FILE after those already here, skipping ones already present; bad lines "
              "are listed (exit status 1) and the good ones imported",
}


def add_parsers(sub) -> None:
    p = sub.add_parser("decisions", help="export or import annotators' decisions (JSON Lines)", **help_page(
                       "Move the keep/drop/flag decision log between workspaces.",
                       "ches decisions export team.jsonl --run RUN     # every event, with its pair's row and prompt",
                       "ches decisions import team.jsonl --db other/decisions.sqlite"))
    actions = p.add_subparsers(dest="action", required=True)
    for name, help_text in _HELP.items():
        a = actions.add_parser(name, help=help_text, description=help_text)
        a.add_argument("file", metavar="FILE")
        a.add_argument("--db", metavar="DB", help="annotation database (default: $CHES_WORKSPACE/decisions.sqlite)")
        if name == "export":
            a.add_argument("--run", metavar="RUN", help="take run, row and prompt from this run only (a run folder, "
                           "or a run id or unique prefix under --runs); pairs not in it get null")
            a.add_argument("--runs", metavar="DIR", help="runs folder (default: $CHES_WORKSPACE/runs)")
    p.set_defaults(func=cmd_decisions)


def cmd_decisions(args: argparse.Namespace) -> int:
    """Run `ches decisions export|import`; 1 when an import rejected some lines."""
    db = Path(args.db) if args.db else workspace().decisions
    try:
        return _export(db, args) if args.action == "export" else _import(db, args.file)
    except sqlite3.Error as e:                     # locked past the busy timeout, not a database, disk I/O
        raise UserError(f"{db}: {e}") from None


def _export(db: Path, args: argparse.Namespace) -> int:
    if not db.is_file():
        raise UserError(f"{db}: no decisions database yet (record a decision first)")
    runs_root = runs_folder(args.runs)
    run = resolve_run(args.run, runs_root) if args.run else None
    n, pairs, found = export_with_context(db, args.file, runs_root=runs_root, run=run)
    where = f"run {run.name}" if run else f"the runs in {runs_root}"
    print(f"exported {n} decision event(s) from {db} to {args.file}; {found} of {pairs} pair(s) found in {where} "
          "(run, row and prompt given)")
    return 0


def _import(db: Path, file: str) -> int:
    if not Path(file).is_file():
        raise FileNotFoundError(f"{file}: no such file")
    db.parent.mkdir(parents=True, exist_ok=True)
    imported, skipped, errors = decisions.import_jsonl(db, file)
    print(f"imported {imported}, skipped {skipped} duplicate(s), {len(errors)} error(s)")
    for e in errors:
        print(f"  line {e.line}: {e.reason}", file=sys.stderr)
    return 1 if errors else 0
