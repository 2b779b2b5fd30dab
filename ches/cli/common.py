"""What every `ches` subcommand shares: the user errors (one line on stderr, exit 2), finding a run (RUN: a run
folder, or a run id or unique prefix under --runs), the flags argument, and a job's events.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

from ches.engine import jobs
from ches.engine.models import ModelError
from ches.engine.pairs import FLAGS, DataError
from ches.engine.store import is_complete
from ches.workspace import workspace


def help_page(description: str, *examples: str, notes: str = "") -> dict:
    """add_parser's keywords for a command's --help: `description` wrapped at 100 columns, then the examples
    (each a full `ches ...` line, which tests/test_cli_examples.py parses) under "examples:", then `notes`,
    both as written."""
    epilog = "\n".join(["examples:", *(f"  {e}" for e in examples), *([notes] if notes else [])])
    return {"description": textwrap.fill(description, 100), "formatter_class": argparse.RawDescriptionHelpFormatter,
            "epilog": epilog}


class UserError(Exception):
    """Printed as `ches: error: ...` without a traceback."""


class RunNotFound(ValueError):
    """RUN names no complete run folder."""


USER_ERRORS = (UserError, DataError, ModelError, OSError, ValueError)   # one line on stderr, exit 2


def flag_list(text: str) -> tuple[str, ...]:
    """An argparse type: "F,F" as a tuple of pair flags (ches.engine.pairs.FLAGS); an unknown one is refused."""
    flags = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in flags if f not in FLAGS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown flag(s) {', '.join(unknown)}; valid: {', '.join(FLAGS)}")
    return flags


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
