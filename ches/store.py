"""Run directories: the scores of one dataset under one model, keyed by what determines the numbers.

    <runs_root>/<key>/manifest.json     key fields, source, load report, counts, timings
                     /scores.parquet    row, pair_id, ches, ln_ches, edit_sim, last_hidden_ip,
                                        len_chosen, len_rejected, truncated, flags
                     /texts.parquet     row, pair_id, prompt, chosen, rejected, rejected_prompt, record (JSON)
                     /S_plus.npy ...    per-response sums (float64) and last states (float32), no pickle

key = sha256 of (dataset content hash, model id, weights fingerprint, template, max length, dtype,
ENGINE_VERSION). Same key: reuse, never recompute. A run is written to a temporary folder and
renamed into place, so a folder with a manifest is always complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from .data import Message, Pair

ENGINE_VERSION = 2           # bump when the same inputs would give different numbers (2: exact sliding windows)
ARRAYS = ("S_plus", "S_minus", "last_plus", "last_minus")


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


def run_path(runs_root: Path, key: RunKey) -> Path:
    return Path(runs_root) / key.digest


def is_complete(run_dir: Path) -> bool:
    return (Path(run_dir) / "manifest.json").is_file()


def write_run(run_dir: Path, *, manifest: dict, scores: pd.DataFrame, pairs: Sequence[Pair],
              arrays: dict[str, np.ndarray]) -> Path:
    """Write every file into `<run_dir>.tmp-<pid>` and rename it into place (atomic for readers)."""
    run_dir = Path(run_dir)
    tmp = run_dir.with_name(f"{run_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    scores.to_parquet(tmp / "scores.parquet", index=False)
    texts_frame(pairs).to_parquet(tmp / "texts.parquet", index=False, row_group_size=1024)
    for name in ARRAYS:
        np.save(tmp / f"{name}.npy", arrays[name], allow_pickle=False)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str))
    if run_dir.exists():                       # a concurrent writer finished first: same key, same numbers
        shutil.rmtree(tmp)
        return run_dir
    os.replace(tmp, run_dir)
    return run_dir


def texts_frame(pairs: Sequence[Pair]) -> pd.DataFrame:
    dump = lambda v: None if v is None else json.dumps(v, ensure_ascii=False)  # noqa: E731
    return pd.DataFrame({
        "row": [p.row for p in pairs],
        "pair_id": [p.pair_id for p in pairs],
        "prompt": [dump(list(p.prompt)) for p in pairs],
        "chosen": [p.chosen for p in pairs],
        "rejected": [p.rejected for p in pairs],
        "rejected_prompt": [dump(None if p.rejected_prompt is None else list(p.rejected_prompt)) for p in pairs],
        "record": [dump(p.record) for p in pairs],
    })


def read_manifest(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "manifest.json").read_text())


def read_scores(run_dir: Path) -> pd.DataFrame:
    """The scores table, one row per pair, in dataset order."""
    return pd.read_parquet(Path(run_dir) / "scores.parquet")


def read_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    """S_plus, S_minus (n, d) float64 and last_plus, last_minus (n, d) float32, memory-mapped."""
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


def run_size(run_dir: Path) -> int:
    """Bytes on disk of every file under the run folder (caches included)."""
    return sum(f.stat().st_size for f in Path(run_dir).rglob("*") if f.is_file())


def delete_run(run_dir: Path) -> None:
    """Remove a run folder (decisions live elsewhere, keyed by pair content: they are kept).

    The manifest goes first, so a half-deleted folder never reads as a complete run."""
    run_dir = Path(run_dir)
    if not is_complete(run_dir):
        raise ValueError(f"{run_dir} is not a complete run folder")
    (run_dir / "manifest.json").unlink()
    shutil.rmtree(run_dir)


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


def messages_text(messages: Sequence[Message]) -> str:
    """A compact one-string view of a conversation (for search and hover text)."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)
