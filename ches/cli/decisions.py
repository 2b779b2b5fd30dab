"""`ches decisions export|import FILE`: move the keep/drop/flag decision log between workspaces (JSON Lines).

    ches decisions export FILE [--db DB]
    ches decisions import FILE [--db DB]

`import` returns 1 when some lines were rejected (the good ones are still imported).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ches.cli import UserError
from ches.review import decisions
from ches.workspace import workspace


def add_parsers(sub) -> None:
    p = sub.add_parser("decisions", help="export or import annotators' decisions (JSON Lines)",
                       description="Move the keep/drop/flag decision log between workspaces.")
    actions = p.add_subparsers(dest="action", required=True)
    for name, help_text in (("export", "write every decision event to FILE (atomically)"),
                            ("import", "append the events in FILE, skipping ones already present")):
        a = actions.add_parser(name, help=help_text, description=help_text)
        a.add_argument("file", metavar="FILE")
        a.add_argument("--db", metavar="DB", help="annotation database (default: $CHES_WORKSPACE/decisions.sqlite)")
    p.set_defaults(func=cmd_decisions)


def cmd_decisions(args: argparse.Namespace) -> int:
    """Run `ches decisions export|import`; 1 when an import rejected some lines."""
    db = Path(args.db) if args.db else workspace().decisions
    if args.action == "export":
        if not db.is_file():
            raise UserError(f"{db}: no decisions database yet (record a decision first)")
        n = decisions.export_jsonl(db, args.file)
        print(f"exported {n} decision event(s) from {db} to {args.file}")
        return 0
    if not Path(args.file).is_file():
        raise FileNotFoundError(f"{args.file}: no such file")
    db.parent.mkdir(parents=True, exist_ok=True)
    imported, skipped, errors = decisions.import_jsonl(db, args.file)
    print(f"imported {imported}, skipped {skipped} duplicate(s), {len(errors)} error(s)")
    for e in errors:
        print(f"  line {e.line}: {e.reason}", file=sys.stderr)
    return 1 if errors else 0
