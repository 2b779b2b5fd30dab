"""Small tables the app shows: a dataset's load report and the list of stored runs."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pandas as pd

from ches.engine.pairs import FLAGS, Dataset
from ches.engine.store import run_size
from ches.workspace import megabytes

_UPLOAD_HASH = re.compile(r"^[0-9a-f]{12}-")     # uploads stored before names were kept: <sha12>-<name>


def dataset_name(source: object) -> str:
    """What people call a run's dataset: its file name ('orca_validation.jsonl'; a Hub dataset's name)."""
    text = str(source or "?")
    return _UPLOAD_HASH.sub("", Path(text).name) or text


def dataset_stem(source: object) -> str:
    """dataset_name without its file extensions ('orca_validation'), for file names built from it."""
    name = dataset_name(source)
    for suffix in (".gz", ".jsonl", ".ndjson", ".json", ".csv", ".parquet"):
        name = name.removesuffix(suffix)
    return name or "dataset"


def load_report(dataset: Dataset) -> dict:
    """{'pairs', 'skipped' (rows that could not be read), 'ties' and 'tie_rows' (rows left out as ties, counted
    apart), 'format', 'source', 'errors': DataFrame[row, reason], 'flags': DataFrame[flag, pairs, meaning]}
    for a freshly loaded dataset."""
    counts = Counter(f for p in dataset.pairs for f in p.flags)
    return {
        "pairs": len(dataset.pairs),
        "skipped": len(dataset.errors),
        "ties": len(dataset.skipped),
        "tie_rows": [e.row for e in dataset.skipped],
        "format": dataset.format,
        "source": dataset.source,
        "errors": pd.DataFrame({"row": [e.row for e in dataset.errors],
                                "reason": [e.reason for e in dataset.errors]}, columns=["row", "reason"]),
        "flags": flag_table(counts),
    }


def flag_table(counts: dict[str, int]) -> pd.DataFrame:
    """DataFrame[flag, pairs, meaning] for the flags that occur, most frequent first."""
    rows = [(f, int(n), FLAGS.get(f, "")) for f, n in counts.items() if n]
    rows.sort(key=lambda r: (-r[1], r[0]))
    return pd.DataFrame(rows, columns=["flag", "pairs", "meaning"])


COLUMNS = ["dataset", "pairs", "model", "max length", "dtype", "created", "seconds", "size MB", "run"]


def runs_table(runs: list[tuple[Path, dict]]) -> pd.DataFrame:
    """One line per stored run (as from ches.engine.runs.list_runs): dataset, pairs, model, max length, dtype,
    created, scoring seconds, size on disk (MB), run folder."""
    rows = []
    for path, m in runs:
        key = m.get("key", {})
        try:
            size = megabytes(run_size(path))
        except OSError:                      # deleted meanwhile
            size = float("nan")
        rows.append({
            "dataset": dataset_name(m.get("source")),
            "pairs": int(m.get("pairs", 0)),
            "model": key.get("model_id", ""),
            "max length": key.get("max_length"),
            "dtype": key.get("dtype", ""),
            "created": str(m.get("created_at", ""))[:19].replace("T", " "),
            "seconds": m.get("seconds"),
            "size MB": size,
            "run": str(path),
        })
    return pd.DataFrame(rows, columns=COLUMNS)
