"""Run directories: the scores of one dataset under one model, keyed by what determines the numbers.

A run is written in chunks while it is scored, so a kill loses at most the chunks in flight:

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
    matching), streams them, in order, into the run's files, writes the manifest, then removes the
    chunks, the plan and the temp files of dead writers (tidy):
                     /scores.parquet        row, pair_id, one column per metric (metrics.METRICS),
                                            len_chosen, len_rejected, truncated, flags
                     /texts.parquet         row, pair_id, prompt, chosen, rejected, rejected_prompt, record (JSON)
                     /S_plus.npy S_minus.npy  per-response sums (n, d) float32, no pickle
                     /manifest.json         written last: a folder with a manifest is complete
A complete run with a damaged file is made unfinished (reopen: `ches score`, the app's Score, `ches runs --repair`):
                     /reopened.json         why, what the manifest said, the command that scores it again; it keeps
                                            a folder left with only its review plan, probes or checks a run (listed,
                                            deletable) until it is scored again

Scores are computed in float64 before the sums are stored as float32, so a run costs n x d x 8 bytes
plus its texts. key = sha256 of (dataset source hash, model id, weights fingerprint, template, max
length, dtype, ENGINE_VERSION): same key, reuse; any chunk of a run belongs to that key only.

Over 400 lines: a run folder's whole life (plan, chunks and their checks, finalise, tidy, read, list,
delete) in one place, so that the invariants each step relies on are read together.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
import shlex
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ches.atomic import atomic_create, atomic_folder, atomic_open, atomic_remove, atomic_write_text, temp_of
from ches.engine.metrics import METRICS
from ches.engine.pairs import Pair

ENGINE_VERSION = 2           # bump when the same inputs would give different numbers (2: exact sliding windows)
DEFAULT_CHUNK_PAIRS = 1024   # the most pairs per chunk (the unit committed to disk and resumed): bounds memory
ARRAYS = ("S_plus", "S_minus")
CHUNK_FILES = ("scores.parquet", "texts.parquet", "S_plus.npy", "S_minus.npy")   # meta.json holds their checksums
RUN_FILES = ("scores.parquet", "texts.parquet", "S_plus.npy", "S_minus.npy", "manifest.json", "plan.json", "chunks")
REOPENED = "reopened.json"   # a run whose numbers were removed (reopen, repair) while what goes with it stays (review
                             # plan, probes, checks): why, what it was, the command that scores it again (see reopen)
STALE_TEMP_S = 600.0         # a chunk's temp folder untouched this long belongs to a dead writer
log = logging.getLogger(__name__)
TEXTS_SCHEMA = pa.schema([
    ("row", pa.int64()), ("pair_id", pa.string()), ("prompt", pa.string()), ("chosen", pa.string()),
    ("rejected", pa.string()), ("rejected_prompt", pa.string()), ("record", pa.string())])
VERSIONED = ("torch", "transformers", "tokenizers", "numpy")   # libraries whose versions can move the numbers


def scores_schema() -> pa.Schema:
    """scores.parquet: row, pair_id, one column per metric in metrics.METRICS (in its order and dtype),
    len_chosen, len_rejected, truncated, flags. A function, so that it always follows the table."""
    return pa.schema([("row", pa.int64()), ("pair_id", pa.string()),
                      *((m.name, pa.from_numpy_dtype(np.dtype(m.dtype))) for m in METRICS.values()),
                      ("len_chosen", pa.int64()), ("len_rejected", pa.int64()), ("truncated", pa.bool_()),
                      ("flags", pa.string())])


@dataclass(frozen=True)
class RunKey:
    dataset_hash: str
    model_id: str
    fingerprint: str
    template: str
    max_length: int
    dtype: str
    engine_version: int = ENGINE_VERSION

    @property
    def digest(self) -> str:
        canon = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]


class IncompleteRun(ValueError):
    """finalise() found chunks missing or damaged: the run is not marked complete."""


class DamagedRun(ValueError):
    """A file of a run folder cannot be read (cut short, garbled or missing): `path`, `why`, the `command` that
    mends the run (`ches runs --repair RUN`, see repair()), and a message that says all three."""

    def __init__(self, path: Path, why: str):
        self.path, self.why = Path(path), why
        self.command = f"ches runs --repair {shlex.quote(str(self.path.parent))}"
        super().__init__(f"{path} cannot be read: {why}; mend the run with: {self.command}")


def _damaged(path: Path, error: BaseException) -> DamagedRun:
    return DamagedRun(path, "it is missing" if isinstance(error, FileNotFoundError)
                      else f"cut short or garbled ({error})")


class RunProgress(NamedTuple):
    done: int                # pairs in finished chunks
    total: int               # pairs in the dataset being scored
    complete: bool           # finalised: the run can be read


def run_path(runs_root: Path, key: RunKey) -> Path:
    return Path(runs_root) / key.digest


def is_complete(run_dir: Path) -> bool:
    return (Path(run_dir) / "manifest.json").is_file()


def library_versions() -> dict[str, str]:
    """Versions of Python, CHES Studio and the libraries that compute the numbers."""
    from ches import __version__

    versions = {"python": platform.python_version(), "ches": __version__}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# ----------------------------------------------------------------------------------- writing
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
        atomic_create(run_dir / "plan.json", _json(full).encode())
    on_disk = read_plan(run_dir)
    expected = plan_ids(pairs, int(on_disk["chunk_size"]))
    if "chunk_ids" not in on_disk and int(on_disk["total_pairs"]) == len(pairs):   # planned by an older version
        on_disk["chunk_ids"] = expected                 # the same content from every process: a plain replace
        atomic_write_text(run_dir / "plan.json", _json(on_disk))
    if int(on_disk["total_pairs"]) != len(pairs) or on_disk["chunk_ids"] != expected:
        raise ValueError(f"{run_dir} was started for other pairs ({on_disk['total_pairs']}, not {len(pairs)}); "
                         "delete it to start again")
    (run_dir / "chunks").mkdir(exist_ok=True)
    return on_disk


def _json(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def read_plan(run_dir: Path) -> dict:
    """The run's plan. FileNotFoundError when there is none; DamagedRun when it cannot be read."""
    return _read_json(Path(run_dir) / "plan.json", ("chunk_size", "total_pairs"))


def _read_json(path: Path, keys: Sequence[str]) -> dict:
    """The JSON object in `path`, which must hold `keys`; DamagedRun when it does not (cut short, garbled),
    FileNotFoundError when there is no such file."""
    try:
        value = json.loads(path.read_bytes())
    except ValueError as e:
        raise _damaged(path, e) from e
    missing = [k for k in keys if not isinstance(value, dict) or k not in value]
    if missing:
        raise DamagedRun(path, f"garbled (no {', '.join(missing)})")
    return value


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
    return {i for i in _numbered(Path(run_dir)) if i < n and chunk_problem(run_dir, plan, i) is None}


def _numbered(run_dir: Path) -> set[int]:
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


def texts_table(pairs: Sequence[Pair]) -> pa.Table:
    dump = lambda v: None if v is None else json.dumps(list(v), ensure_ascii=False)  # noqa: E731
    return pa.table({
        "row": [p.row for p in pairs],
        "pair_id": [p.pair_id for p in pairs],
        "prompt": [dump(p.prompt) for p in pairs],
        "chosen": [p.chosen for p in pairs],
        "rejected": [p.rejected for p in pairs],
        "rejected_prompt": [dump(p.rejected_prompt) for p in pairs],
        "record": [_record_json(p.record) for p in pairs],
    }, schema=TEXTS_SCHEMA)


def texts_frame(pairs: Sequence[Pair]) -> pd.DataFrame:
    """texts_table as a DataFrame (the columns of texts.parquet)."""
    return texts_table(pairs).to_pandas()


def _record_json(record: dict) -> str:
    """The source record as JSON; \\u-escaped only when it holds text that UTF-8 cannot encode (lone surrogates)."""
    text = json.dumps(record, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(record)
    return text


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
    atomic_write_text(run_dir / "manifest.json", _json(manifest))
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


# ----------------------------------------------------------------------------------- reading
# Each reader of a run file raises DamagedRun (a ValueError naming the file and `ches runs --repair`) when
# the file is missing, cut short or garbled.
_UNREADABLE = (OSError, ValueError, EOFError, pa.ArrowException)


def read_manifest(run_dir: Path) -> dict:
    """The manifest of a complete run; FileNotFoundError when there is none (the run is not complete)."""
    return _read_json(Path(run_dir) / "manifest.json", ("key", "pairs"))


def read_scores(run_dir: Path) -> pd.DataFrame:
    """The scores table, one row per pair, in dataset order."""
    path = Path(run_dir) / "scores.parquet"
    try:
        return pd.read_parquet(path)
    except _UNREADABLE as e:
        raise _damaged(path, e) from e


def read_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    """S_plus, S_minus (n, d), memory-mapped (float32; float64 in runs made before chunked scoring)."""
    return {name: _load_npy(Path(run_dir) / f"{name}.npy") for name in ARRAYS}


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)    # a cut-short file fails here (mmap length)
    except _UNREADABLE as e:
        raise _damaged(path, e) from e


def read_texts(run_dir: Path, rows: Sequence[int] | None = None) -> pd.DataFrame:
    """Texts of the given source rows only (Parquet filter pushdown), or of all rows."""
    return read_texts_table(run_dir, rows=rows).to_pandas()


def read_texts_table(run_dir: Path, *, columns: Sequence[str] | None = None,
                     rows: Sequence[int] | None = None) -> pa.Table:
    """texts.parquet as an Arrow table: only `columns` (all: None), only the given source rows (all: None)."""
    filters = None if rows is None else [("row", "in", [int(r) for r in rows])]
    path = Path(run_dir) / "texts.parquet"
    try:
        return pq.read_table(path, columns=None if columns is None else list(columns), filters=filters)
    except _UNREADABLE as e:
        raise _damaged(path, e) from e


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
                raise _damaged(run_dir / "plan.json", e) from e
        return
    pairs = int(read_manifest(run_dir)["pairs"])
    for name in ("scores.parquet", "texts.parquet", *(f"{a}.npy" for a in ARRAYS)):
        path = run_dir / name
        rows = _rows(path)
        if rows != pairs:
            raise DamagedRun(path, f"cut short or garbled ({rows} rows, not the {pairs} of manifest.json)")


def _rows(path: Path) -> int:
    """The rows of a finished file, from its Parquet footer or its .npy header only."""
    if path.suffix == ".npy":
        shape = _load_npy(path).shape
        if len(shape) != 2:
            raise DamagedRun(path, f"garbled (shape {shape}, not (rows, d))")
        return shape[0]
    try:
        return pq.read_metadata(path).num_rows
    except _UNREADABLE as e:
        raise _damaged(path, e) from e


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
    command that scores the run again: so that a folder left with its review plan, probes or checks and no plan
    or chunks is still a run that list_unfinished lists and delete_run removes), then manifest.json goes (so the
    folder never reads as complete with a file gone), then the other finished files. A plan and chunks left by a
    tidy-up that was cut short stay (the next scoring checks them and joins them again), and so does whatever
    else is there (the review plan, probes, checks). One line per file removed, saying why."""
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
    atomic_write_text(run_dir / REOPENED, _json(record))


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


def _reopened_total(said: dict) -> int | None:
    """The pairs of a reopened run when reopened.json names its data (key, source, created_at, total_pairs)."""
    if not (isinstance(said.get("key"), dict) and "model_id" in said["key"] and isinstance(said.get("source"), str)
            and isinstance(said.get("created_at"), str) and isinstance(said.get("total_pairs"), int)):
        return None
    return said["total_pairs"]


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
    chunks = len(_numbered(run_dir))
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
    elif REOPENED not in left:                      # its review plan, probes or checks stay: still a run (listed,
        _mark_reopened(run_dir, damage, {})         # deletable)
    return [*said, "the next `ches score` of its data starts it afresh"]


def read_pairs(run_dir: Path, rows: Sequence[int] | None = None) -> list[Pair]:
    """Pair records back from a run (for the token view and for export)."""
    load = lambda s: None if s is None or pd.isna(s) else tuple(json.loads(s))  # noqa: E731
    t = read_texts(run_dir, rows)
    flags = read_scores(run_dir).set_index("row")["flags"]
    return [Pair(int(r.row), load(r.prompt), r.chosen, r.rejected, load(r.rejected_prompt),
                 tuple(f for f in flags[r.row].split(",") if f), json.loads(r.record), r.pair_id)
            for r in t.itertuples(index=False)]


def run_progress(run_dir: Path) -> RunProgress | None:
    """Pairs done / total of a run, finished or not, read from disk; None when nothing was started there.

    For a job scoring in another process (the app runs `ches score` in the background), poll this.
    """
    run_dir = Path(run_dir)
    try:
        if is_complete(run_dir):
            m = read_manifest(run_dir)
            total = int(m.get("total_pairs", m.get("pairs", 0)))
            return RunProgress(total, total, True)
        plan = read_plan(run_dir)
        done = sum(len(chunk_rows(plan, i)) for i in done_chunks(run_dir, plan))
        return RunProgress(done, int(plan["total_pairs"]), False)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def list_runs(runs_root: Path) -> list[tuple[Path, dict]]:
    """Complete runs under the root, newest first; unreadable folders are skipped. A complete run's plan and
    chunks (a tidy-up cut short by a kill) are removed on the way (tidy: safe beside a finaliser)."""
    runs = []
    root = Path(runs_root)
    if not root.is_dir():
        return runs
    for d in root.iterdir():
        try:
            if not (d.is_dir() and is_complete(d)):
                continue
            runs.append((d, read_manifest(d)))
        except (OSError, ValueError):
            continue
        if (d / "plan.json").exists() or (d / "chunks").exists():   # a tidy-up cut short (a kill): finish it
            try:
                tidy(d)
            except OSError as e:
                log.warning("%s: the leftovers of its scoring could not be removed (%s)", d, e)
    return sorted(runs, key=lambda r: r[1].get("created_at", ""), reverse=True)


def list_unfinished(runs_root: Path) -> list[tuple[Path, dict, RunProgress | None]]:
    """Runs started but not finished (interrupted, or scoring now), newest first, with their progress;
    then broken ones (a folder with chunks/ or plan.json whose plan cannot be read, or a complete one whose
    manifest cannot: plan {}, progress None), which repair mends and delete_run removes.

    A run reopened (reopen: a damaged file; no manifest, plan or chunks, its review plan, probes or checks kept) is
    unfinished with 0 pairs done: its "plan" is what reopened.json says (read_reopened: why, reopened_at, the
    command that scores it again as `command`, the manifest's key, source, created_at); when that does not name
    its data (the damaged file was the manifest), it is listed with the broken ones, that dict beside None."""
    found, broken = [], []
    root = Path(runs_root)
    for d in (root.iterdir() if root.is_dir() else []):
        try:
            if d.is_dir() and is_complete(d):
                read_manifest(d)                    # unreadable: broken (below)
                continue
            if not d.is_dir() or not ((d / "plan.json").exists() or (d / "chunks").exists()):
                said = read_reopened(d) if d.is_dir() else None
                if said is not None:
                    total = _reopened_total(said)
                    (broken if total is None else found).append((d, said, None if total is None
                                                                  else RunProgress(0, total, False)))
                continue
            progress = run_progress(d)
            if progress is None:
                broken.append((d, {}, None))
            else:
                found.append((d, read_plan(d), progress))
        except (OSError, ValueError):
            broken.append((d, {}, None))
    return sorted(found, key=lambda r: r[1].get("created_at", ""), reverse=True) + sorted(broken)


def run_size(run_dir: Path) -> int:
    """Bytes on disk of everything in the run folder."""
    return sum(p.stat().st_size for p in Path(run_dir).rglob("*") if p.is_file())


def is_run_folder(run_dir: Path) -> bool:
    """Whether `run_dir` is a run: complete (manifest.json), being scored (plan.json, chunks/) or reopened."""
    return any((Path(run_dir) / name).exists() for name in ("manifest.json", "plan.json", "chunks", REOPENED))


def delete_run(run_dir: Path) -> None:
    """Remove a run folder (finished, unfinished or reopened); refuses a folder that is not a run. Decisions live
    elsewhere, keyed by pair content: they are kept. The manifest goes first, so a half-deleted folder never reads
    as a complete run."""
    run_dir = Path(run_dir)
    if not is_run_folder(run_dir):
        raise ValueError(f"{run_dir} is not a run folder (no manifest.json, plan.json, chunks or {REOPENED})")
    (run_dir / "manifest.json").unlink(missing_ok=True)
    shutil.rmtree(run_dir)


def version_notice(run_dir: Path) -> str | None:
    """A sentence for the user when a run was made with other library versions than this process has."""
    m = read_manifest(run_dir)
    then, now = m.get("versions"), library_versions()
    if not then:
        return "This run was made by an older CHES Studio that did not record its library versions."
    changed = [f"{k} {then[k]} (now {now[k]})" for k in now if k in then and then[k] != now[k]]
    parts = ["This run was made with " + ", ".join(changed) + ": a fresh run may differ slightly."] if changed else []
    parts += [f"Note: {n}." for n in m.get("notes", []) if "library versions" in n]
    return " ".join(parts) or None
