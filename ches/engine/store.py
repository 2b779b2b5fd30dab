"""A run folder: the scores of one dataset under one model, keyed by what determines the numbers, and its files, read.

A finished run (written in chunks by ches.engine.chunks, which says how) holds:

    <runs_root>/<key>/scores.parquet        row, pair_id, one column per metric (metrics.METRICS),
                                            len_chosen, len_rejected, truncated, flags
                     /texts.parquet         row, pair_id, prompt, chosen, rejected, rejected_prompt, record (JSON)
                     /S_plus.npy S_minus.npy  per-response sums (n, d) float32, no pickle
                     /manifest.json         written last: a folder with a manifest is complete
    while it is scored, plan.json and chunks/ (ches.engine.chunks); once reopened, reopened.json (ches.engine.repair).

Scores are computed in float64 before the sums are stored as float32, so a run costs n x d x 8 bytes
plus its texts. key = sha256 of (dataset source hash, model id, weights fingerprint, template, max
length, dtype, ENGINE_VERSION): same key, reuse; any chunk of a run belongs to that key only.

Here: the key and the folder's path, what a run folder is (complete, a run at all), the files' schemas, the
readers (each raises DamagedRun, naming the file and `ches runs --repair`, when a file is missing, cut short or
garbled), the library versions a run records, its size, deleting it. Writing a run: ches.engine.chunks; a
damaged run: ches.engine.repair; the runs under a root and how far each got: ches.engine.runs.
"""
from __future__ import annotations

import hashlib
import json
import platform
import shlex
import shutil
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ches.version import __version__
from ches.engine.metrics import METRICS
from ches.engine.pairs import Dataset, Pair
from ches.engine.tokens import template_id

if TYPE_CHECKING:
    from ches.engine.models import LoadedModel, ModelIdentity

ENGINE_VERSION = 2           # bump when the same inputs would give different numbers (2: exact sliding windows)
ARRAYS = ("S_plus", "S_minus")
RUN_FILES = ("scores.parquet", "texts.parquet", "S_plus.npy", "S_minus.npy", "manifest.json", "plan.json", "chunks")
REOPENED = "reopened.json"   # a run whose numbers were removed (reopen, repair) while what goes with it stays (review
                             # plan, probes, checks): why, what it was, the command that scores it again (see reopen)
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


def run_key(dataset: Dataset, lm: LoadedModel | ModelIdentity, max_length: int) -> RunKey:
    """What determines a run's numbers and records: the full source records, model, template, length, dtype.
    `lm` a loaded model or only its identity (models.identify: the page finds a run without loading it)."""
    return RunKey(dataset.source_hash, lm.model_id, lm.fingerprint, template_id(lm.tokenizer),
                  int(max_length), str(lm.dtype).removeprefix("torch."))


class DamagedRun(ValueError):
    """A file of a run folder cannot be read (cut short, garbled or missing): `path`, `why`, the `command` that
    mends the run (`ches runs --repair RUN`, see ches.engine.repair), and a message that says all three."""

    def __init__(self, path: Path, why: str):
        self.path, self.why = Path(path), why
        self.command = f"ches runs --repair {shlex.quote(str(self.path.parent))}"
        super().__init__(f"{path} cannot be read: {why}; mend the run with: {self.command}")

    @classmethod
    def from_error(cls, path: Path, error: BaseException) -> DamagedRun:
        """The damage that an error reading `path` shows: missing (FileNotFoundError), else cut short or garbled."""
        return cls(path, "it is missing" if isinstance(error, FileNotFoundError)
                   else f"cut short or garbled ({error})")


def run_path(runs_root: Path, key: RunKey) -> Path:
    return Path(runs_root) / key.digest


def is_complete(run_dir: Path) -> bool:
    return (Path(run_dir) / "manifest.json").is_file()


def is_run_folder(run_dir: Path) -> bool:
    """Whether `run_dir` is a run: complete (manifest.json), being scored (plan.json, chunks/) or reopened."""
    return any((Path(run_dir) / name).exists() for name in ("manifest.json", "plan.json", "chunks", REOPENED))


def library_versions() -> dict[str, str]:
    """Versions of Python, CHES Studio and the libraries that compute the numbers."""
    versions = {"python": platform.python_version(), "ches": __version__}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def json_text(value) -> str:
    """`value` as the indented JSON a run folder's files hold (plan, manifest, reopened.json)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def read_json(path: Path, keys: Sequence[str]) -> dict:
    """The JSON object in `path`, which must hold `keys`; DamagedRun when it does not (cut short, garbled),
    FileNotFoundError when there is no such file."""
    try:
        value = json.loads(path.read_bytes())
    except ValueError as e:
        raise DamagedRun.from_error(path, e) from e
    missing = [k for k in keys if not isinstance(value, dict) or k not in value]
    if missing:
        raise DamagedRun(path, f"garbled (no {', '.join(missing)})")
    return value


# ----------------------------------------------------------------------------------- reading
# Each reader of a run file raises DamagedRun (a ValueError naming the file and `ches runs --repair`) when
# the file is missing, cut short or garbled.
_UNREADABLE = (OSError, ValueError, EOFError, pa.ArrowException)


def read_manifest(run_dir: Path) -> dict:
    """The manifest of a complete run; FileNotFoundError when there is none (the run is not complete)."""
    return read_json(Path(run_dir) / "manifest.json", ("key", "pairs"))


def read_scores(run_dir: Path) -> pd.DataFrame:
    """The scores table, one row per pair, in dataset order."""
    path = Path(run_dir) / "scores.parquet"
    try:
        return pd.read_parquet(path)
    except _UNREADABLE as e:
        raise DamagedRun.from_error(path, e) from e


def read_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    """S_plus, S_minus (n, d), memory-mapped (float32; float64 in runs made before chunked scoring)."""
    return {name: _load_npy(Path(run_dir) / f"{name}.npy") for name in ARRAYS}


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)    # a cut-short file fails here (mmap length)
    except _UNREADABLE as e:
        raise DamagedRun.from_error(path, e) from e


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
        raise DamagedRun.from_error(path, e) from e


def file_rows(path: Path) -> int:
    """The rows of a finished file, from its Parquet footer or its .npy header only."""
    if path.suffix == ".npy":
        shape = _load_npy(path).shape
        if len(shape) != 2:
            raise DamagedRun(path, f"garbled (shape {shape}, not (rows, d))")
        return shape[0]
    try:
        return pq.read_metadata(path).num_rows
    except _UNREADABLE as e:
        raise DamagedRun.from_error(path, e) from e


def read_pairs(run_dir: Path, rows: Sequence[int] | None = None) -> list[Pair]:
    """Pair records back from a run (for the token view and for export)."""
    load = lambda s: None if s is None or pd.isna(s) else tuple(json.loads(s))  # noqa: E731
    t = read_texts(run_dir, rows)
    flags = read_scores(run_dir).set_index("row")["flags"]
    return [Pair(int(r.row), load(r.prompt), r.chosen, r.rejected, load(r.rejected_prompt),
                 tuple(f for f in flags[r.row].split(",") if f), json.loads(r.record), r.pair_id)
            for r in t.itertuples(index=False)]


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


def run_size(run_dir: Path) -> int:
    """Bytes on disk of everything in the run folder."""
    return sum(p.stat().st_size for p in Path(run_dir).rglob("*") if p.is_file())


def delete_run(run_dir: Path) -> None:
    """Remove a run folder (finished, unfinished or reopened); refuses a folder that is not a run. Decisions live
    elsewhere, keyed by pair content: they are kept. The manifest goes first, so a half-deleted folder never reads
    as a complete run."""
    run_dir = Path(run_dir)
    if not is_run_folder(run_dir):
        raise ValueError(f"{run_dir} is not a run folder (no manifest.json, plan.json, chunks or {REOPENED})")
    (run_dir / "manifest.json").unlink(missing_ok=True)
    shutil.rmtree(run_dir)
