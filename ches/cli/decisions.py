"""`ches decisions export|import FILE`: move the keep/drop/flag decision log between workspaces (JSON Lines).

    ches decisions export FILE [--db DB]
    ches decisions import FILE [--db DB]

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

from ches.cli import UserError
from ches.review import decisions
from ches.workspace import workspace

_HELP = {
    "export": "write every decision event to FILE (JSON Lines, atomically), in the log's order",
    "import": "append the events in FILE after those already here, skipping ones already present; bad lines "
              "are listed (exit status 1) and the good ones imported",
}


def add_parsers(sub) -> None:
    p = sub.add_parser("decisions", help="export or import annotators' decisions (JSON Lines)",
                       description="Move the keep/drop/flag decision log between workspaces.")
    actions = p.add_subparsers(dest="action", required=True)
    for name, help_text in _HELP.items():
        a = actions.add_parser(name, help=help_text, description=help_text)
        a.add_argument("file", metavar="FILE")
        a.add_argument("--db", metavar="DB", help="annotation database (default: $CHES_WORKSPACE/decisions.sqlite)")
    p.set_defaults(func=cmd_decisions)


def cmd_decisions(args: argparse.Namespace) -> int:
    """Run `ches decisions export|import`; 1 when an import rejected some lines."""
    db = Path(args.db) if args.db else workspace().decisions
    try:
        return _export(db, args.file) if args.action == "export" else _import(db, args.file)
    except sqlite3.Error as e:                     # locked past the busy timeout, not a database, disk I/O
        raise UserError(f"{db}: {e}") from None


def _export(db: Path, file: str) -> int:
    if not db.is_file():
        raise UserError(f"{db}: no decisions database yet (record a decision first)")
    n = decisions.export_jsonl(db, file)
    print(f"exported {n} decision event(s) from {db} to {file}")
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
