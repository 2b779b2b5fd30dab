"""Writing a run in chunks, so that a kill loses at most the chunks in flight (the run's folder and files:
ches.engine.store):

    <runs_root>/<key>/plan.json             what is scored: pairs, chunk size, the ids each chunk must
                                            hold, source, load report; created once (the first writer
                                            wins, every other process adopts it)
                     /chunks/000003/        one finished chunk, renamed into place whole (atomic):
                        scores.parquet        its rows of the scores table
                        texts.parquet         its rows' texts and source records
                        S_plus.npy S_minus.npy  (rows, d) float32
                        meta.json             its commit record, written last: rows, rows skipped (with
                                              their pair ids), `ids` (ids_digest of every pair it covers),
                                              bytes and sha256 of each file; tokens, seconds, versions
    A chunk is trusted only when its commit record matches the plan and its files (done_chunks: counts,
    ids, sizes; check_chunks: also the checksums and the ids in the files). A bad chunk is named in a
    warning and removed, so that a resume scores it again.
    finalise() checks that the chunks hold every planned pair (scored + skipped == planned, ids
    matching), streams them, in order, into the run's files (scores.parquet, texts.parquet, S_plus.npy,
    S_minus.npy), writes manifest.json last, then removes the chunks, the plan and the temp files of dead
    writers (tidy).
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ches.atomic import atomic_create, atomic_folder, atomic_open, atomic_remove, atomic_write_text, temp_of
from ches.engine.pairs import Pair
from ches.engine.store import (ARRAYS, REOPENED, RUN_FILES, TEXTS_SCHEMA, is_complete, json_text, library_versions,
                               read_json, scores_schema, texts_table)

DEFAULT_CHUNK_PAIRS = 1024   # the most pairs per chunk (the unit committed to disk and resumed): bounds memory
CHUNK_FILES = ("scores.parquet", "texts.parquet", "S_plus.npy", "S_minus.npy")   # meta.json holds their checksums
STALE_TEMP_S = 600.0         # a chunk's temp folder untouched this long belongs to a dead writer
log = logging.getLogger(__name__)


class IncompleteRun(ValueError):
    """finalise() found chunks missing or damaged: the run is not marked complete."""


def start_run(run_dir: Path, plan: dict, pairs: Sequence[Pair]) -> dict:
    """The plan of the run at `run_dir`: created from `plan` (plus total_pairs and chunk_ids) when there is
    none, else the one on disk, whatever `plan` asks (a resumed or concurrent start adopts its chunk size).

    `plan` needs "chunk_size"; the rest (key, source, load report, ...) is copied into the manifest at the
    end. The plan is created once: atomic_create, so of two processes starting together one wins and the
    other reads the winner's plan. Raises ValueError when the plan on disk is for other pairs.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "plan.json").is_file():
        full = {**plan, "total_pairs": len(pairs), "chunk_ids": plan_ids(pairs, int(plan["chunk_size"]))}
        atomic_create(run_dir / "plan.json", json_text(full).encode())
    on_disk = read_plan(run_dir)
    expected = plan_ids(pairs, int(on_disk["chunk_size"]))
    if "chunk_ids" not in on_disk and int(on_disk["total_pairs"]) == len(pairs):   # planned by an older version
        on_disk["chunk_ids"] = expected                 # the same content from every process: a plain replace
        atomic_write_text(run_dir / "plan.json", json_text(on_disk))
    if int(on_disk["total_pairs"]) != len(pairs) or on_disk["chunk_ids"] != expected:
        raise ValueError(f"{run_dir} was started for other pairs ({on_disk['total_pairs']}, not {len(pairs)}); "
                         "delete it to start again")
    (run_dir / "chunks").mkdir(exist_ok=True)
    return on_disk


def read_plan(run_dir: Path) -> dict:
    """The run's plan. FileNotFoundError when there is none; DamagedRun when it cannot be read."""
    return read_json(Path(run_dir) / "plan.json", ("chunk_size", "total_pairs"))


def ids_digest(ids: Iterable[tuple[int, str]]) -> str:
    """sha256 over the sorted (row, pair_id) of a chunk's pairs: the same pairs, the same digest."""
    h = hashlib.sha256()
    for row, pair_id in sorted((int(r), str(i)) for r, i in ids):
        h.update(f"{row}\t{pair_id}\n".encode())
    return h.hexdigest()


def plan_ids(pairs: Sequence[Pair], chunk_size: int) -> list[str]:
    """The ids_digest of each chunk's pairs, in chunk order: what each chunk must hold (scored or skipped)."""
    return [ids_digest((p.row, p.pair_id) for p in pairs[i:i + chunk_size]) for i in range(0, len(pairs), chunk_size)]


def chunk_count(plan: dict) -> int:
    return -(-int(plan["total_pairs"]) // int(plan["chunk_size"]))


def chunk_rows(plan: dict, index: int) -> range:
    """Positions (0-based, in dataset order) of the pairs of chunk `index`."""
    size = int(plan["chunk_size"])
    return range(index * size, min((index + 1) * size, int(plan["total_pairs"])))


def chunk_path(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / "chunks" / f"{index:06d}"


def chunk_problem(run_dir: Path, plan: dict, index: int, *, checksums: bool = False) -> str | None:
    """Why chunk `index` cannot be trusted, or None when it can.

    Always: its commit record (meta.json) names the plan's ids for it, its rows + rows skipped are the
    planned count, and each file has the size recorded. With `checksums`: also each file's sha256, and
    the ids in scores.parquet and texts.parquet (plus the skipped ones) and the rows of the .npy files.
    """
    folder = chunk_path(run_dir, index)
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except FileNotFoundError:
        return "no meta.json (its commit record)"
    except (OSError, ValueError) as e:
        return f"unreadable meta.json ({e})"
    try:
        rows, skipped, files, planned = int(meta["rows"]), meta["rows_skipped"], meta["files"], plan["chunk_ids"][index]
        if rows + len(skipped) != len(chunk_rows(plan, index)):
            return f"{rows} rows + {len(skipped)} skipped, not the {len(chunk_rows(plan, index))} pairs planned"
        if meta["ids"] != planned:
            return "its commit record names other pairs than the plan"
        for name in CHUNK_FILES:
            size = (folder / name).stat().st_size
            if size != int(files[name]["bytes"]):
                return f"{name} has {size} bytes, not the {files[name]['bytes']} committed"
        if not checksums:
            return None
        for name in CHUNK_FILES:
            if _sha256(folder / name) != files[name]["sha256"]:
                return f"{name} does not match its checksum"
        skipped_ids = [(e["row"], e["pair_id"]) for e in skipped]
        for name in ("scores.parquet", "texts.parquet"):
            t = pq.read_table(folder / name, columns=["row", "pair_id"])
            if t.num_rows != rows or ids_digest([*zip(t.column("row").to_pylist(), t.column("pair_id").to_pylist()),
                                                 *skipped_ids]) != planned:
                return f"{name} holds other pairs than the plan ({t.num_rows} rows)"
        for name in ARRAYS:
            shape = np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False).shape
            if len(shape) != 2 or shape[0] != rows:
                return f"{name}.npy has shape {shape}, not {rows} rows"
    except FileNotFoundError as e:
        return f"{Path(e.filename or '?').name} is missing"
    except (KeyError, IndexError, TypeError, ValueError, OSError, pa.ArrowException) as e:
        return f"unreadable ({type(e).__name__}: {e})"
    return None


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _plan_or_none(run_dir: Path, plan: dict | None) -> dict | None:
    if plan is not None:
        return plan
    try:
        return read_plan(run_dir)
    except (OSError, ValueError):
        return None


def done_chunks(run_dir: Path, plan: dict | None = None) -> set[int]:
    """Indices of the chunks committed so far that pass chunk_problem's quick checks (no checksums:
    cheap enough to poll). Temp folders of chunks in flight, and anything else, are not counted."""
    plan = _plan_or_none(Path(run_dir), plan)
    if plan is None:
        return set()
    n = chunk_count(plan)
    return {i for i in chunk_indices(Path(run_dir)) if i < n and chunk_problem(run_dir, plan, i) is None}


def chunk_indices(run_dir: Path) -> set[int]:
    """The numbers of the folders in chunks/ named as chunks (000000 to 999999), checked or not."""
    try:
        return {int(p.name) for p in (run_dir / "chunks").iterdir() if len(p.name) == 6 and p.name.isdigit()}
    except FileNotFoundError:
        return set()


def check_chunks(run_dir: Path, plan: dict) -> set[int]:
    """The chunks that pass every check of chunk_problem (checksums included): what a resume trusts.

    A bad chunk is named in a warning and removed (it is scored again); anything in chunks/ that is not a
    chunk of this plan is named and left to tidy(); temp folders untouched for STALE_TEMP_S (dead writers)
    are removed, never a live writer's.
    """
    run_dir = Path(run_dir)
    folder, n, good = run_dir / "chunks", chunk_count(plan), set()
    for entry in sorted(folder.iterdir() if folder.is_dir() else []):
        if temp_of(entry.name) is not None:
            if time.time() - _newest_mtime(entry) > STALE_TEMP_S:
                atomic_remove(entry)
            continue
        index = int(entry.name) if len(entry.name) == 6 and entry.name.isdigit() else None
        if index is None or index >= n or not entry.is_dir():
            log.warning("%s is not a chunk of this run (the plan has chunks 000000 to %06d): ignored", entry, n - 1)
            continue
        problem = chunk_problem(run_dir, plan, index, checksums=True)
        if problem is None:
            good.add(index)
        else:
            log.warning("chunk %s is damaged: %s; it is scored again", entry, problem)
            atomic_remove(entry)
    return good


def _newest_mtime(path: Path) -> float:
    try:
        return max([path.lstat().st_mtime, *(p.lstat().st_mtime for p in path.rglob("*"))])
    except OSError:                              # it went meanwhile
        return time.time()


def tidy(run_dir: Path) -> list[str]:
    """A complete run keeps only its files: remove chunks/, plan.json, reopened.json and the temp files of its run files
    (left by killed or concurrent finalisers, whose write then fails harmlessly: the run is complete).
    Returns the names of what was there to remove ("chunks/" for the folder); nothing for an unfinished run."""
    run_dir = Path(run_dir)
    if not is_complete(run_dir):
        return []
    found = [name for name in ("plan.json", "chunks/", REOPENED) if (run_dir / name).exists()]
    (run_dir / "plan.json").unlink(missing_ok=True)
    (run_dir / REOPENED).unlink(missing_ok=True)          # scored again: the run is what its manifest says
    shutil.rmtree(run_dir / "chunks", ignore_errors=True)
    for entry in run_dir.iterdir():
        if temp_of(entry.name) in RUN_FILES:
            atomic_remove(entry)
            found.append(entry.name)
    return found


def commit_chunk(run_dir: Path, index: int, *, scores: dict | pd.DataFrame, pairs: Sequence[Pair],
                 S_plus: np.ndarray, S_minus: np.ndarray, meta: dict) -> bool:
    """Write one chunk into a temp folder renamed into place (atomic_folder); False when it was already there
    (another process committed the same chunk first: same numbers).

    `scores` holds the columns of scores_schema() for `pairs` (same order); S: (rows, d), stored as float32.
    meta["rows_skipped"]: [{"row", "reason", "pair_id"}] of the chunk's pairs that were not scored. meta.json,
    the commit record, is written last: rows, ids (ids_digest of the scored and skipped pairs), the bytes
    and sha256 of every file.
    """
    target = chunk_path(run_dir, index)
    if target.is_dir():
        return False
    table = scores if isinstance(scores, pd.DataFrame) else pd.DataFrame(scores)
    if not len(table) == len(pairs) == len(S_plus) == len(S_minus):
        raise ValueError(f"chunk {index:06d}: {len(table)} scores, {len(pairs)} pairs, {len(S_plus)} and "
                         f"{len(S_minus)} rows of sums: they must be the same")
    skipped = list(meta.get("rows_skipped", []))
    folder = atomic_folder(target)
    with folder as tmp:
        schema = scores_schema()
        pq.write_table(pa.Table.from_pandas(table[schema.names], schema=schema, preserve_index=False),
                       tmp / "scores.parquet")
        pq.write_table(texts_table(pairs), tmp / "texts.parquet")
        for name, S in (("S_plus", S_plus), ("S_minus", S_minus)):
            np.save(tmp / f"{name}.npy", np.asarray(S, dtype=np.float32), allow_pickle=False)   # (rows, d)
        files = {name: {"bytes": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)} for name in CHUNK_FILES}
        ids = ids_digest([*((p.row, p.pair_id) for p in pairs), *((e["row"], e["pair_id"]) for e in skipped)])
        (tmp / "meta.json").write_text(json.dumps({**meta, "rows": len(pairs), "rows_skipped": skipped, "ids": ids,
                                                   "files": files, "versions": library_versions()},
                                                  ensure_ascii=False, default=str))
    return folder.created


def finalise(run_dir: Path) -> Path:
    """Check that the chunks hold every planned pair, stream them, in order, into the run's files, write
    manifest.json last, then tidy() the folder.

    Memory: one chunk at a time. Raises IncompleteRun (a ValueError) naming the chunks missing or damaged
    (the damaged ones are removed: a resume scores them again), or ValueError when no chunk holds a pair
    (every pair was rejected by the chat template: the folder is removed).
    """
    try:
        return _finalise(Path(run_dir))
    except (OSError, IncompleteRun):
        if is_complete(run_dir):               # another process finalised the same run meanwhile (and its
            tidy(run_dir)                      # tidy-up took the chunks this one was checking)
            return Path(run_dir)
        raise


def _finalise(run_dir: Path) -> Path:
    if is_complete(run_dir):
        tidy(run_dir)
        return run_dir
    started = time.perf_counter()
    plan = read_plan(run_dir)
    n_chunks = chunk_count(plan)
    missing = sorted(set(range(n_chunks)) - check_chunks(run_dir, plan))
    if missing:
        where = ", ".join(f"{i:06d} (pairs {chunk_rows(plan, i).start + 1}-{chunk_rows(plan, i).stop})"
                          for i in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        lost = sum(len(chunk_rows(plan, i)) for i in missing)
        raise IncompleteRun(f"{run_dir} is not complete: {len(missing)} of {n_chunks} chunks ({lost} of "
                            f"{plan['total_pairs']} planned pairs) are missing or damaged: {where}; "
                            "run the same command to score them")
    chunks = [chunk_path(run_dir, i) for i in range(n_chunks)]
    metas = [json.loads((c / "meta.json").read_text()) for c in chunks]
    if not any(m["rows"] for m in metas):           # an empty run is no run: say why, keep nothing
        reasons = [f"row {e['row']}: {e['reason']}" for m in metas for e in m.get("rows_skipped", [])]
        shutil.rmtree(run_dir, ignore_errors=True)
        raise ValueError("no pair could be tokenized: " + "; ".join(reasons[:3]))
    for name in ARRAYS:
        _concat_npy(run_dir / f"{name}.npy", [c / f"{name}.npy" for c in chunks])
    flags: dict[str, int] = {}
    for name, schema in (("scores", scores_schema()), ("texts", TEXTS_SCHEMA)):
        with atomic_open(run_dir / f"{name}.parquet", "wb") as f, pq.ParquetWriter(f, schema) as out:
            for c in chunks:
                table = pq.read_table(c / f"{name}.parquet", schema=schema)
                out.write_table(table)              # one row group per chunk: read_texts filters by row
                if name == "scores":
                    for text in table.column("flags").to_pylist():
                        for flag in filter(None, text.split(",")):
                            flags[flag] = flags.get(flag, 0) + 1
    skipped = list(plan.get("rows_skipped", [])) + [{"row": e["row"], "reason": e["reason"]}
                                                    for m in metas for e in m.get("rows_skipped", [])]
    versions = [m.get("versions") or library_versions() for m in metas] or [library_versions()]
    mixed = sorted({json.dumps(v, sort_keys=True) for v in versions})
    manifest = {
        **{k: v for k, v in plan.items() if k not in ("rows_skipped", "command", "chunk_ids")},
        "pairs": sum(m["rows"] for m in metas),
        "rows_skipped": sorted(skipped, key=lambda e: e["row"]),
        "flag_counts": flags,
        "tokens": sum(m.get("tokens", 0) for m in metas),
        "seconds": round(sum(m.get("seconds", 0.0) for m in metas), 2),
        "finalise_seconds": round(time.perf_counter() - started, 2),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "versions": versions[0],
        "notes": list(plan.get("notes", [])) + (
            [f"its chunks were scored under {len(mixed)} different sets of library versions: "
             + " | ".join(mixed)] if len(mixed) > 1 else []),
    }
    if metas and "hidden_size" in metas[0]:
        manifest["hidden_size"] = metas[0]["hidden_size"]
    atomic_write_text(run_dir / "manifest.json", json_text(manifest))
    tidy(run_dir)
    return run_dir


def _concat_npy(target: Path, parts: list[Path]) -> None:
    """One (sum of rows, d) float32 .npy from the parts, written sequentially (no n x d array in memory)."""
    arrays = [np.load(p, mmap_mode="r", allow_pickle=False) for p in parts]
    d = next((a.shape[1] for a in arrays if a.shape[0]), arrays[0].shape[1] if arrays else 0)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False,
              "shape": (sum(a.shape[0] for a in arrays), d)}
    with atomic_open(target, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for a in arrays:
            f.write(np.ascontiguousarray(a, dtype="<f4").tobytes())    # one chunk at a time


def write_run(run_dir: Path, *, manifest: dict, scores: pd.DataFrame, pairs: Sequence[Pair],
              arrays: dict[str, np.ndarray], chunk_size: int = 1024) -> Path:
    """A complete run from in-memory results (tests, benchmarks), through the same chunks and finalise."""
    run_dir = Path(run_dir)
    if is_complete(run_dir):
        return run_dir
    plan = start_run(run_dir, {**manifest, "run": run_dir.name, "chunk_size": chunk_size}, pairs)
    scores = scores.reset_index(drop=True)
    for i in range(chunk_count(plan)):
        rows = chunk_rows(plan, i)
        sl = slice(rows.start, rows.stop)
        commit_chunk(run_dir, i, scores=scores.iloc[sl], pairs=pairs[sl], S_plus=arrays["S_plus"][sl],
                     S_minus=arrays["S_minus"][sl], meta={"hidden_size": int(np.shape(arrays["S_plus"])[1])})
    return finalise(run_dir)
