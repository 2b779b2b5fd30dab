"""`python -m ches` / `ches`: everything the app does, from a terminal; one module per subcommand group.

    ches score DATA [--split S] [--column OURS=THEIRS ...] [--limit N] [--model M] [--max-length N] ...   score.py
    ches runs [--out DIR]                                                                                 score.py
    ches export RUN --out FILE|FOLDER [--keep-lowest-percent X | --threshold T] [--format input|trl|hf|hf-trl] export.py
    ches compare RUN_A RUN_B [--metric M] [--top-percent P] [--movers K]                                 compare.py
    ches decisions export|import FILE                                                                  decisions.py
    ches probe RUN --subset top|bottom|band LO HI|ids FILE [--n N] [--steps K] [--lr LR] [--beta B]      probe.py
    ches check-curation RUN [--keep-lowest-percent X | --threshold T] [--n N] [--seeds K]                probe.py
    ches project RUN [--view pairs|responses] [--n-neighbors K] [--min-dist D]                        project.py
    ches app [streamlit args]                                                                             app.py

RUN is a run folder, or a run id (or a unique prefix of one) under --runs ($CHES_WORKSPACE/runs).
User errors (UserError, and the ValueError / OSError subclasses the library raises) print one line on
stderr and exit 2; they never show a traceback. Ctrl-C exits 130. Run as a job (ches/engine/jobs.py), a
command writes its events to $CHES_JOB_STATUS (`job_events`).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from ches import __version__
from ches.engine import jobs
from ches.engine.pairs import DataError
from ches.engine.models import ModelError
from ches.engine.store import is_complete
from ches.workspace import workspace


class UserError(Exception):
    """Printed as `ches: error: ...` without a traceback."""


class RunNotFound(ValueError):
    """RUN names no complete run folder."""


USER_ERRORS = (UserError, DataError, ModelError, OSError, ValueError)   # one line on stderr, exit 2


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
    from ches.cli import app, compare, decisions, export, probe, project, score

    p = argparse.ArgumentParser(prog="ches", description="CHES Studio: find preference pairs that cause "
                                "likelihood displacement in DPO (Razin et al., ICLR 2025).")
    p.add_argument("--version", action="version", version=f"ches {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for group in (score, export, compare, decisions, probe, project, app):
        group.add_parsers(sub)
    return p


def runs_folder(given: str | None) -> Path:
    """The runs folder a command was given (--out / --runs), else the workspace's."""
    return Path(given) if given else workspace().runs


def resolve_run(ref: str, runs_root: str | Path) -> Path:
    """A run folder given as a path, an id under `runs_root`, or a unique prefix of such an id."""
    path = Path(ref)
    if is_complete(path):
        return path
    root = Path(runs_root)
    if "/" not in ref and "\\" not in ref and ref not in ("", ".", "..") and root.is_dir():
        if is_complete(root / ref):
            return root / ref
        hits = [d for d in root.iterdir() if d.name.startswith(ref) and is_complete(d)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise RunNotFound(f"run id prefix {ref!r} is ambiguous: {', '.join(sorted(d.name for d in hits))}")
    raise RunNotFound(f"{ref!r} is neither a run folder nor a run id under {root} (list them: ches runs)")


@contextlib.contextmanager
def job_events(write: bool = True) -> Iterator[jobs.Events]:
    """A command's job events (jobs.Events on $CHES_JOB_STATUS; written nowhere without it, or unless `write`):
    SIGTERM (Cancel) stops the command like Ctrl-C and writes "interrupted"; a failure writes "error" with the
    line `main` prints. The command writes its "step", "progress" and "complete" events itself."""
    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        with contextlib.closing(jobs.Events(os.environ.get(jobs.STATUS_ENV) if write else None)) as events:
            try:
                yield events
            except KeyboardInterrupt:
                events("interrupted")
                raise
            except Exception as e:
                events("error", message=str(e) if isinstance(e, USER_ERRORS) else f"{type(e).__name__}: {e}")
                raise
    finally:
        signal.signal(signal.SIGTERM, previous)
