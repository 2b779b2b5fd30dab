"""A damaged run: which file cannot be read (check_run), making a complete run with a damaged file unfinished so
that scoring it again scores it afresh (reopen, reopen_damaged: what `ches score` and the app's Score do before
they reuse a run), and mending a run folder as far as it can be mended (repair: `ches runs --repair`).

A reopened run keeps what goes with it (its review.json, probes, checks) and says why it was reopened:

    <runs_root>/<key>/reopened.json         why, what the manifest said, the command that scores it again; it keeps
                                            a folder left with only its review.json, probes or checks a run (listed,
                                            deletable) until it is scored again
"""
from __future__ import annotations

import contextlib
import json
import logging
import shlex
from datetime import datetime, timezone
from pathlib import Path

from ches.atomic import atomic_remove, atomic_write_text, temp_of
from ches.engine.chunks import chunk_count, chunk_indices, done_chunks, read_plan, tidy
from ches.engine.store import (ARRAYS, REOPENED, RUN_FILES, DamagedRun, file_rows, is_complete, is_run_folder,
                               json_text, read_manifest)

log = logging.getLogger(__name__)


def check_run(run_dir: Path) -> None:
    """Raise DamagedRun naming the first file of the run folder that cannot be used as it is; None when all can.

    A complete run: manifest.json, and each finished file's footer or header (its row count against the
    manifest's pairs; no table is read, so it is cheap). An unfinished one: plan.json. A damaged chunk is
    not checked here: a resume checks every chunk and scores a bad one again.
    """
    run_dir = Path(run_dir)
    if not is_complete(run_dir):
        if (run_dir / "plan.json").exists() or (run_dir / "chunks").exists():
            try:
                read_plan(run_dir)
            except FileNotFoundError as e:
                raise DamagedRun.from_error(run_dir / "plan.json", e) from e
        return
    pairs = int(read_manifest(run_dir)["pairs"])
    for name in ("scores.parquet", "texts.parquet", *(f"{a}.npy" for a in ARRAYS)):
        path = run_dir / name
        rows = file_rows(path)
        if rows != pairs:
            raise DamagedRun(path, f"cut short or garbled ({rows} rows, not the {pairs} of manifest.json)")


def reopen_damaged(run_dir: Path) -> DamagedRun | None:
    """When a file of the complete run at `run_dir` is damaged (check_run), make the run unfinished so that
    scoring it again scores it afresh (reopen), log a warning naming the file, and return the damage; else
    None, nothing touched. What `ches score` and score_dataset do before they reuse a complete run."""
    if not is_complete(run_dir):
        return None
    try:
        check_run(run_dir)
    except DamagedRun as e:
        log.warning("%s cannot be read: %s; it is scored again", e.path, e.why)
        reopen(run_dir, e)
        return e
    return None


def reopen(run_dir: Path, damage: DamagedRun) -> list[str]:
    """Make the complete run at `run_dir` unfinished: reopened.json is written (why, what the manifest said, the
    command that scores the run again: so that a folder left with its review.json, probes or checks and no plan
    or chunks is still a run that list_unfinished lists and delete_run removes), then manifest.json goes (so the
    folder never reads as complete with a file gone), then the other finished files. A plan and chunks left by a
    tidy-up that was cut short stay (the next scoring checks them and joins them again), and so does whatever
    else is there (review.json, probes, checks). One line per file removed, saying why."""
    run_dir = Path(run_dir)
    try:
        manifest = read_manifest(run_dir)
    except (OSError, ValueError):                    # the damaged file may be the manifest itself
        manifest = {}
    _mark_reopened(run_dir, damage, manifest)
    said = []
    for name in ("manifest.json", "scores.parquet", "texts.parquet", *(f"{a}.npy" for a in ARRAYS)):
        path = run_dir / name
        if not path.exists():
            continue
        path.unlink(missing_ok=True)
        said.append(f"{name}: {damage.why}: removed" if path == damage.path
                    else "manifest.json: removed: the run is no longer complete" if name == "manifest.json"
                    else f"{name}: removed (written again with the rest)")
    return said


def _mark_reopened(run_dir: Path, damage: DamagedRun, manifest: dict) -> None:
    record = {"why": f"{damage.path.name}: {damage.why}", "reopened_at": datetime.now(timezone.utc).isoformat(),
              "command": score_command(manifest, run_dir.parent),
              **{k: manifest[k] for k in ("key", "source", "split", "created_at", "total_pairs", "pairs")
                 if k in manifest}}
    atomic_write_text(run_dir / REOPENED, json_text(record))


def score_command(manifest: dict, runs_root: Path) -> str | None:
    """The `ches score` command that scores the run of `manifest` again into `runs_root`, from what the manifest
    records (data, model, max length, dtype, split, the first N pairs); None when it names no data or model. A
    run loaded through a column mapping or a Hub config needs those flags added: the manifest does not keep them."""
    key, subset = manifest.get("key") or {}, manifest.get("subset") or {}
    if not manifest.get("source") or not key.get("model_id"):
        return None
    argv = ["ches", "score", str(manifest["source"]), "--model", str(key["model_id"])]
    for flag, value in (("--max-length", key.get("max_length")), ("--dtype", key.get("dtype")),
                        ("--split", manifest.get("split")), ("--limit", subset.get("limit"))):
        if value is not None:
            argv += [flag, str(value)]
    return shlex.join([*argv, "--out", str(runs_root)])


def read_reopened(run_dir: Path) -> dict | None:
    """What reopened.json says of a run made unfinished by reopen (why, reopened_at, command, and key, source,
    created_at, total_pairs as its manifest said, when it could be read); None when there is none. An unreadable
    one reads as {"why": ...}: the folder is still a run."""
    path = Path(run_dir) / REOPENED
    try:
        value = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        return {"why": f"{REOPENED} cannot be read ({e})"}
    return value if isinstance(value, dict) else {"why": f"{REOPENED} is garbled"}


def repair(run_dir: Path) -> list[str]:
    """Mend the run folder as far as it can be mended: one line per file saying what was done, then what next.

    - a complete run with a damaged file (check_run): reopen it, so that `ches score` of its data scores it again
    - an unfinished run whose plan cannot be read: restart it (its chunks go too)
    - a complete run with the leftovers of a tidy-up that was cut short (a kill): tidy it
    Raises ValueError when `run_dir` is not a run folder.
    """
    run_dir = Path(run_dir)
    if not is_run_folder(run_dir):
        raise ValueError(f"{run_dir} is not a run folder (no manifest.json, plan.json, chunks or {REOPENED})")
    if not any((run_dir / name).exists() for name in ("manifest.json", "plan.json", "chunks")):
        said = read_reopened(run_dir) or {}
        return [f"nothing to mend: it was made unfinished ({said.get('why', 'a file was damaged')}) and holds no "
                "numbers; " + (f"`{said['command']}` scores it again" if said.get("command")
                               else "the next `ches score` of its data scores it again")]
    try:
        check_run(run_dir)
    except DamagedRun as e:
        if not is_complete(run_dir):
            return _restart(run_dir, e)
        try:
            source = f" ({read_manifest(run_dir)['source']})"
        except (OSError, ValueError, KeyError):
            source = ""
        return [*reopen(run_dir, e), f"the next `ches score` of its data{source} scores it again"]
    if not is_complete(run_dir):
        plan = read_plan(run_dir)
        return [f"nothing to mend: {len(done_chunks(run_dir, plan))} of {chunk_count(plan)} chunks scored so far"
                + (f"; `{plan['command']}` resumes it" if plan.get("command") else "")]
    left = tidy(run_dir)
    return [*(f"{name}: left by a tidy-up that was cut short: removed" for name in left),
            "the run is complete and readable" if left else "nothing to mend: the run is complete and readable"]


def _restart(run_dir: Path, damage: DamagedRun) -> list[str]:
    """An unfinished run whose plan cannot be read: remove the plan, the chunks (their pairs cannot be checked
    without it) and the temp files of both, and the folder when nothing else is in it (else reopened.json says
    what happened, so that the folder is still listed and can be deleted)."""
    chunks = len(chunk_indices(run_dir))
    said = [f"plan.json: {damage.why}" + (": removed" if (run_dir / "plan.json").exists() else "")]
    if chunks:
        said.append(f"chunks/: its {chunks} finished chunks removed: without the plan their pairs cannot be checked")
    for entry in run_dir.iterdir():
        if entry.name in RUN_FILES or temp_of(entry.name) in RUN_FILES:
            atomic_remove(entry)
    left = {entry.name for entry in run_dir.iterdir()}
    if left <= {REOPENED}:
        (run_dir / REOPENED).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            run_dir.rmdir()                         # only when nothing else is there
    elif REOPENED not in left:                      # its review.json, probes or checks stay: still a run (listed,
        _mark_reopened(run_dir, damage, {})         # deletable)
    return [*said, "the next `ches score` of its data starts it afresh"]
