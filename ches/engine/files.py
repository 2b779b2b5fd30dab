"""A dataset source to a `Dataset`: `load_dataset` (a file, a Hugging Face dataset folder, a Hub name) and
`load_bytes` (an upload), within a size budget.

A file is read by its type's reader (ches.engine.readers); a folder laid out as a Hugging Face dataset, or a
name like "owner/name" (a Hub dataset), goes to ches.engine.hub; the rows become Pairs in ches.engine.records.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

from ches.engine import hub
from ches.engine.formats import type_name
from ches.engine.hub import HUB_PREFIX
from ches.engine.pairs import DataError, Dataset, RowError
from ches.engine.readers import Budget, file_rows, parquet_rows
from ches.engine.records import normalise
from ches.workspace import MB

MAX_INPUT_BYTES = 16_000 * MB   # default cap on a dataset's size once decompressed (the app passes its upload limit)


def load_bytes(data: bytes, filename: str, *, format: str | None = None, limit: int | None = None,
               max_bytes: int | None = MAX_INPUT_BYTES, columns: dict[str, str] | None = None) -> Dataset:
    """Load an uploaded file's bytes; the file type comes from `filename`'s suffix.

    `max_bytes` caps the data once decompressed (a .gz is streamed and refused past it).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DataError(f"{filename}: expected bytes, got {type_name(data)}")
    errors: list[RowError] = []
    counts: dict = {}
    rows = file_rows(io.BytesIO(bytes(data)), str(filename), errors, Budget(max_bytes), counts)
    return normalise(rows, errors, format, str(filename), limit=limit, columns=columns, total=lambda: counts.get("records"))


def load_dataset(source: str | Path, *, format: str | None = None, split: str | None = None,
                 config: str | None = None, limit: int | None = None,
                 max_bytes: int | None = MAX_INPUT_BYTES, columns: dict[str, str] | None = None) -> Dataset:
    """Load a file, a folder laid out as a Hugging Face dataset (one split), or a Hub dataset (owner/name).

    "hf://datasets/owner/name" is a Hub dataset only, never a local path (what the app passes for a name
    typed into its Hub field). A plain "owner/name" is a local folder when one exists, else the Hub.

    `split` and `config` choose within a folder or a Hub dataset (default: the train split, or the only
    one); they are refused for a single file. `limit` keeps the first N usable pairs (reading stops
    there). `max_bytes` caps the data once decompressed: a compressed input is streamed and refused
    once it passes the cap, never decompressed whole. `columns`: see load_records.
    """
    if isinstance(source, str) and source.startswith(HUB_PREFIX):
        return hub.load_hub(source.removeprefix(HUB_PREFIX), format=format, split=split, config=config,
                            limit=limit, columns=columns)
    path = Path(source)
    if path.is_file():
        if split is not None or config is not None:
            raise DataError(f"{source}: a split or config can only be chosen in a dataset folder or a Hugging "
                            f"Face dataset; this is a single file (drop --split / --config)")
        errors: list[RowError] = []
        budget, counts = Budget(max_bytes), {}
        try:
            f = open(path, "rb")
        except OSError as e:
            raise DataError(f"{source}: cannot read: {e}") from None
        with f:                                          # messages lead with the file's name
            if path.name.lower().endswith(".parquet"):
                rows: Iterable = parquet_rows(path, path.name, budget, counts)
            else:
                rows = file_rows(f, path.name, errors, budget, counts)
            dataset = normalise(rows, errors, format, path.name, limit=limit, columns=columns,
                                total=lambda: counts.get("records"))
        dataset.source = str(source)
        return dataset
    if path.is_dir():
        return hub.load_folder(source, format=format, split=split, config=config, limit=limit, max_bytes=max_bytes,
                               columns=columns)
    if path.exists():
        raise DataError(f"{source}: not a file or a folder")
    if not isinstance(source, str) or not hub.NAME.match(source):
        raise DataError(f"{source}: no such file (and not a Hugging Face dataset name like 'owner/name')")
    return hub.load_hub(source, format=format, split=split, config=config, limit=limit, columns=columns)

