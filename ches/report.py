"""Small tables the app shows: a dataset's load report and the list of stored runs."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from .data import FLAGS, Dataset


def load_report(dataset: Dataset) -> dict:
    """{'pairs', 'skipped', 'format', 'source', 'errors': DataFrame[row, reason],
    'flags': DataFrame[flag, pairs, meaning]} for a freshly loaded dataset."""
    counts = Counter(f for p in dataset.pairs for f in p.flags)
    return {
        "pairs": len(dataset.pairs),
        "skipped": len(dataset.errors),
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


def runs_table(runs: list[tuple[Path, dict]]) -> pd.DataFrame:
    """One line per stored run (as from store.list_runs): created, source, pairs, model, max length, dtype."""
    rows = []
    for path, m in runs:
        key = m.get("key", {})
        rows.append({
            "created": str(m.get("created_at", ""))[:19].replace("T", " "),
            "source": Path(str(m.get("source", ""))).name or str(m.get("source", "")),
            "pairs": int(m.get("pairs", 0)),
            "model": key.get("model_id", ""),
            "max length": key.get("max_length"),
            "dtype": key.get("dtype", ""),
            "seconds": m.get("seconds"),
            "run": str(path),
        })
    return pd.DataFrame(rows, columns=["created", "source", "pairs", "model", "max length", "dtype", "seconds", "run"])
