"""Run directories: the scores of one dataset under one model, keyed by what determines the numbers.

A run is written in chunks while it is scored, so a kill loses at most the chunks in flight:

    <runs_root>/<key>/plan.json             what is scored: pairs, chunk size, source, load report
                     /chunks/000003/        one finished chunk, renamed into place whole (atomic):
                        scores.parquet        its rows of the scores table
                        texts.parquet         its rows' texts and source records
                        S_plus.npy S_minus.npy  (rows, d) float32
                        meta.json             rows skipped, tokens, seconds, library versions
    finalise() then streams the chunks, in order, into the run's files and removes them:
                     /scores.parquet        row, pair_id, one column per metric (metrics.METRICS),
                                            len_chosen, len_rejected, truncated, flags
                     /texts.parquet         row, pair_id, prompt, chosen, rejected, rejected_prompt, record (JSON)
                     /S_plus.npy S_minus.npy  per-response sums (n, d) float32, no pickle
                     /manifest.json         written last: a folder with a manifest is complete

Scores are computed in float64 before the sums are stored as float32, so a run costs n x d x 8 bytes
plus its texts. key = sha256 of (dataset source hash, model id, weights fingerprint, template, max
length, dtype, ENGINE_VERSION): same key, reuse; any chunk of a run belongs to that key only.
"""
from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ches.atomic import atomic_folder, atomic_open, atomic_write_text
from ches.engine.metrics import METRICS
from ches.engine.pairs import Pair

ENGINE_VERSION = 2           # bump when the same inputs would give different numbers (2: exact sliding windows)
DEFAULT_CHUNK_PAIRS = 1024   # pairs per chunk: the unit committed to disk and resumed
ARRAYS = ("S_plus", "S_minus")
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
def start_run(run_dir: Path, plan: dict) -> dict:
    """Create the run folder and its plan.json, or return the plan of the run already started there.

    `plan` needs "total_pairs" and "chunk_size"; the rest (key, source, load report, ...) is copied into
    the manifest at the end. A resumed run keeps its first plan (and so its chunk size).
    """
    run_dir = Path(run_dir)
    if (run_dir / "plan.json").is_file():
        return read_plan(run_dir)
    (run_dir / "chunks").mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "plan.json", json.dumps(plan, indent=2, ensure_ascii=False, default=str))
    return read_plan(run_dir)


def read_plan(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "plan.json").read_text())


def chunk_count(plan: dict) -> int:
    return -(-int(plan["total_pairs"]) // int(plan["chunk_size"]))


def chunk_rows(plan: dict, index: int) -> range:
    """Positions (0-based, in dataset order) of the pairs of chunk `index`."""
    size = int(plan["chunk_size"])
    return range(index * size, min((index + 1) * size, int(plan["total_pairs"])))


def done_chunks(run_dir: Path) -> set[int]:
    """Indices of the chunks committed so far (temp folders of chunks in flight are not counted)."""
    folder = Path(run_dir) / "chunks"
    try:
        return {int(p.name) for p in folder.iterdir() if p.name.isdigit()}
    except FileNotFoundError:
        return set()


def commit_chunk(run_dir: Path, index: int, *, scores: dict | pd.DataFrame, pairs: Sequence[Pair],
                 S_plus: np.ndarray, S_minus: np.ndarray, meta: dict) -> bool:
    """Write one chunk into a temp folder renamed into place (atomic_folder); False when it was already there
    (another process committed the same chunk first: same numbers).

    `scores` holds the columns of scores_schema() for `pairs` (same order); S: (rows, d), stored as float32.
    """
    target = Path(run_dir) / "chunks" / f"{index:06d}"
    if target.is_dir():
        return False
    folder = atomic_folder(target)
    with folder as tmp:
        table = scores if isinstance(scores, pd.DataFrame) else pd.DataFrame(scores)
        schema = scores_schema()
        pq.write_table(pa.Table.from_pandas(table[schema.names], schema=schema, preserve_index=False),
                       tmp / "scores.parquet")
        pq.write_table(texts_table(pairs), tmp / "texts.parquet")
        for name, S in (("S_plus", S_plus), ("S_minus", S_minus)):
            np.save(tmp / f"{name}.npy", np.asarray(S, dtype=np.float32), allow_pickle=False)   # (rows, d)
        (tmp / "meta.json").write_text(json.dumps({**meta, "rows": len(pairs), "versions": library_versions()},
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
    """Stream every chunk, in order, into the run's files, write manifest.json last, remove the chunks.

    Memory: one chunk at a time. Raises ValueError when a chunk is missing, or when no chunk holds a
    pair (every pair was rejected by the chat template: the folder is removed).
    """
    try:
        return _finalise(Path(run_dir))
    except OSError:
        if is_complete(run_dir):               # another process finalised the same run meanwhile
            return Path(run_dir)
        raise


def _finalise(run_dir: Path) -> Path:
    if is_complete(run_dir):
        return run_dir
    started = time.perf_counter()
    plan = read_plan(run_dir)
    n_chunks = chunk_count(plan)
    missing = sorted(set(range(n_chunks)) - done_chunks(run_dir))
    if missing:
        raise ValueError(f"{run_dir}: {len(missing)} of {n_chunks} chunks are not scored yet")
    chunks = [run_dir / "chunks" / f"{i:06d}" for i in range(n_chunks)]
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
    skipped = list(plan.get("rows_skipped", [])) + [e for m in metas for e in m.get("rows_skipped", [])]
    versions = [m.get("versions") or library_versions() for m in metas] or [library_versions()]
    mixed = sorted({json.dumps(v, sort_keys=True) for v in versions})
    manifest = {
        **{k: v for k, v in plan.items() if k not in ("rows_skipped", "command")},
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
    atomic_write_text(run_dir / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False, default=str))
    shutil.rmtree(run_dir / "chunks", ignore_errors=True)
    (run_dir / "plan.json").unlink(missing_ok=True)
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
    plan = start_run(run_dir, {**manifest, "run": run_dir.name, "total_pairs": len(pairs), "chunk_size": chunk_size})
    scores = scores.reset_index(drop=True)
    for i in range(chunk_count(plan)):
        rows = chunk_rows(plan, i)
        sl = slice(rows.start, rows.stop)
        commit_chunk(run_dir, i, scores=scores.iloc[sl], pairs=pairs[sl], S_plus=arrays["S_plus"][sl],
                     S_minus=arrays["S_minus"][sl], meta={"hidden_size": int(np.shape(arrays["S_plus"])[1])})
    return finalise(run_dir)


# ----------------------------------------------------------------------------------- reading
def read_manifest(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "manifest.json").read_text())


def read_scores(run_dir: Path) -> pd.DataFrame:
    """The scores table, one row per pair, in dataset order."""
    return pd.read_parquet(Path(run_dir) / "scores.parquet")


def read_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    """S_plus, S_minus (n, d), memory-mapped (float32; float64 in runs made before chunked scoring)."""
    return {name: np.load(Path(run_dir) / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in ARRAYS}


def read_texts(run_dir: Path, rows: Sequence[int] | None = None) -> pd.DataFrame:
    """Texts of the given source rows only (Parquet filter pushdown), or of all rows."""
    filters = None if rows is None else [("row", "in", [int(r) for r in rows])]
    return pq.read_table(Path(run_dir) / "texts.parquet", filters=filters).to_pandas()


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
    except (OSError, ValueError):
        return None
    done = sum(len(chunk_rows(plan, i)) for i in done_chunks(run_dir) if i < chunk_count(plan))
    return RunProgress(done, int(plan["total_pairs"]), False)


def list_runs(runs_root: Path) -> list[tuple[Path, dict]]:
    """Complete runs under the root, newest first; unreadable folders are skipped."""
    runs = []
    root = Path(runs_root)
    if not root.is_dir():
        return runs
    for d in root.iterdir():
        try:
            if d.is_dir() and is_complete(d):
                runs.append((d, read_manifest(d)))
        except (OSError, ValueError):
            continue
    return sorted(runs, key=lambda r: r[1].get("created_at", ""), reverse=True)


def list_unfinished(runs_root: Path) -> list[tuple[Path, dict, RunProgress]]:
    """Runs started but not finished (interrupted, or scoring now), newest first, with their progress."""
    found = []
    root = Path(runs_root)
    for d in (root.iterdir() if root.is_dir() else []):
        try:
            if d.is_dir() and not is_complete(d) and (d / "plan.json").is_file():
                progress = run_progress(d)
                if progress is not None:
                    found.append((d, read_plan(d), progress))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda r: r[1].get("created_at", ""), reverse=True)


def run_size(run_dir: Path) -> int:
    """Bytes on disk of everything in the run folder."""
    return sum(p.stat().st_size for p in Path(run_dir).rglob("*") if p.is_file())


def delete_run(run_dir: Path) -> None:
    """Remove a run folder (finished or not); refuses a folder that is not a run. Decisions live elsewhere,
    keyed by pair content: they are kept. The manifest goes first, so a half-deleted folder never reads
    as a complete run."""
    run_dir = Path(run_dir)
    if not ((run_dir / "manifest.json").is_file() or (run_dir / "plan.json").is_file()):
        raise ValueError(f"{run_dir} is not a run folder (no manifest.json or plan.json)")
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
