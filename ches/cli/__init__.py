"""`python -m ches` / `ches`: everything the app does, from a terminal; one module per subcommand group.

    ches score DATA [--split S] [--column OURS=THEIRS ...] [--limit N] [--model M] [--max-length N] ...   score.py
    ches estimate DATA [the options of ches score]: how long `ches score` would take                    score.py
    ches runs [--out DIR]                                                                                 score.py
    ches export RUN --out FILE|FOLDER [--keep-lowest-percent X | --threshold T] [--format input|trl|hf|hf-trl] export.py
    ches compare RUN_A RUN_B [--metric M] [--top-percent P] [--movers K]                                 compare.py
    ches decisions export|import FILE                                                                  decisions.py
    ches probe RUN --subset top|bottom|band LO HI|ids FILE [--n N] [--steps K] [--lr LR] [--beta B]      probe.py
    ches check-curation RUN [--keep-lowest-percent X | --threshold T] [--n N] [--seeds K]                probe.py
    ches project RUN [--view pairs|responses] [--n-neighbors K] [--min-dist D]                        project.py
    ches tokens RUN --row R [--row R ...]                                                               tokens.py
    ches app [streamlit args]                                                                             app.py

RUN is a run folder, or a run id (or a unique prefix of one) under --runs ($CHES_WORKSPACE/runs).
User errors (UserError, and the ValueError / OSError subclasses the library raises) print one line on
stderr and exit 2; they never show a traceback. Ctrl-C exits 130. Run as a job (ches/engine/jobs.py), a
command writes its events to $CHES_JOB_STATUS (`job_events`). What the subcommands share is in common.py.
"""
from __future__ import annotations

import argparse
import shlex
import sys

from ches.version import __version__
from ches.cli.common import USER_ERRORS, help_page


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command_line = "ches " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args) or 0
    except USER_ERRORS as e:
        print(f"ches: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ches: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    from ches.cli import app, compare, decisions, export, probe, project, score, tokens

    p = argparse.ArgumentParser(prog="ches", **help_page(
        "CHES Studio: find preference pairs that cause likelihood displacement in DPO (Razin et al., ICLR 2025). "
        "`ches COMMAND --help` shows each command's options and examples.",
        "ches score data/sample.jsonl --limit 32          # score pairs with the bundled model: a run",
        "ches runs                                         # the stored runs and their ids",
        "ches export RUN --out cleaned.jsonl --keep-lowest-percent 95",
        "ches app                                          # the app, on http://localhost:8501"))
    p.add_argument("--version", action="version", version=f"ches {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for group in (score, export, compare, decisions, probe, project, tokens, app):
        group.add_parsers(sub)
    return p
