"""Bytes to rows: each file type's reader, turning a dataset file (or an upload's bytes) into (row number, value)
items within a size budget.

Files: .jsonl / .ndjson, .json (an array, or an object with a list under "data", "rows" or "train"),
.csv (header row; cells holding JSON message lists are parsed), .parquet; any of them gzipped (.gz).
JSON Lines and Parquet are read as streams (so a limit stops reading early), and every input is capped
by a `Budget` once decompressed. ches.engine.files and ches.engine.hub read with them.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Iterable

from ches.engine.formats import Rows, type_name
from ches.engine.pairs import DataError, RowError
from ches.workspace import megabytes

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")   # each optionally .gz
_BOM = b"\xef\xbb\xbf"


def _size(n: int) -> str:
    return f"{megabytes(n):,.0f} MB"


class Budget:
    """Bytes a source may still yield once decompressed; DataError past the limit (a zip bomb stops here)."""

    def __init__(self, limit: int | None):
        self.limit, self.used = limit, 0

    def take(self, n: int, name: str) -> None:
        self.check(n, name)
        self.used += n

    def check(self, n: int, name: str) -> None:
        if self.limit is not None and self.used + n > self.limit:
            raise DataError(f"{name}: more than {_size(self.limit)} of data once decompressed; refusing to read "
                            f"further (the limit for this input is {_size(self.limit)})")


class _Bounded(io.RawIOBase):
    """A readable stream that charges every byte it yields to a Budget; gzip errors become DataError."""

    def __init__(self, inner: BinaryIO, budget: Budget, name: str):
        self.inner, self.budget, self.name = inner, budget, name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            n = self.inner.readinto(buffer)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{self.name}: not a valid gzip file: {e}") from None
        self.budget.take(n, self.name)
        return n


def _open(raw: BinaryIO, name: str, budget: Budget) -> tuple[io.BufferedReader, str]:
    """(decompressed, bounded stream, the name without .gz)."""
    if name.lower().endswith(".gz"):
        return io.BufferedReader(_Bounded(gzip.GzipFile(fileobj=raw, mode="rb"), budget, name), 1 << 20), name[:-3]
    return io.BufferedReader(_Bounded(raw, budget, name), 1 << 20), name


def _jsonl_rows(lines: Iterable[bytes], errors: list[RowError], name: str) -> Rows:
    """One JSON object per line; a bad line is a RowError, blank lines are skipped."""
    seen = False
    for n, raw in enumerate(lines, 1):
        raw = raw.removesuffix(b"\n")                   # as bytes.split(b"\n") would give it
        if not raw.strip() or not raw.removeprefix(_BOM).strip():
            continue
        seen = True
        try:
            text = raw.decode("utf-8").lstrip("\ufeff")
        except UnicodeDecodeError as e:
            errors.append(RowError(n, f"invalid UTF-8 at byte {e.start + 1}"))
            continue
        try:
            yield n, json.loads(text)
        except json.JSONDecodeError as e:
            errors.append(RowError(n, f"invalid JSON: {e.msg} (column {e.colno})"))
        except RecursionError:
            errors.append(RowError(n, "invalid JSON: nested too deeply"))
        except ValueError as e:  # e.g. an integer with more digits than Python converts
            errors.append(RowError(n, f"invalid JSON: {str(e)[:200]}"))
    if not seen:
        raise DataError(f"{name}: the file is empty")


def _json_rows(data: bytes, errors: list[RowError], name: str, counts: dict) -> Rows:
    """A JSON array of rows, or an object holding one under "data", "rows" or "train"."""
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise DataError(f"{name}: not valid UTF-8 (byte {e.start + 1})") from None
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # JSON Lines saved as .json
            return _jsonl_rows(io.BytesIO(data), errors, name)
        raise DataError(f"{name}: invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except (ValueError, RecursionError) as e:
        raise DataError(f"{name}: invalid JSON: {'nested too deeply' if isinstance(e, RecursionError) else e}") from None
    if isinstance(value, dict):
        value = next((value[k] for k in ("data", "rows", "train") if isinstance(value.get(k), list)), value)
    if not isinstance(value, list):
        raise DataError(f"{name}: expected a JSON array of rows or an object with a list under "
                        f"'data', 'rows' or 'train', got {type_name(value) if not isinstance(value, dict) else 'an object'}")
    counts["records"] = len(value)
    return enumerate(value, 1)


def _cell(text: str) -> Any:
    """A CSV cell; one holding a JSON list of message objects becomes that list."""
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return text
        if isinstance(value, list) and all(isinstance(m, dict) for m in value):
            return value
    return text


def _csv_rows(data: bytes, errors: list[RowError], name: str, counts: dict) -> Rows:
    """Header row + one record per pair; every cell stays a string (no NaN guessing)."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # default 128 KiB rejects long responses
    text = data.decode("utf-8-sig", errors="surrogateescape")  # bad bytes -> RowError per record below
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        records = [r for r in reader if r]
    except csv.Error as e:
        raise DataError(f"{name}: unreadable CSV near line {reader.line_num}: {e}") from None
    header = records[0] if records else []
    counts["records"] = max(len(records) - 1, 0)
    for n, rec in enumerate(records[1:], 1):
        try:
            "".join(rec).encode("utf-8")
        except UnicodeEncodeError:
            errors.append(RowError(n, "invalid UTF-8"))
            continue
        if len(rec) != len(header):
            errors.append(RowError(n, f"expected {len(header)} fields, got {len(rec)}"))
            continue
        yield n, {k: _cell(v) for k, v in zip(header, rec)}


def parquet_rows(source: str | Path | BinaryIO, name: str, budget: Budget, counts: dict | None = None) -> Rows:
    """Rows in batches of 256, each decoded batch charged to the budget before it becomes Python objects.

    (A file whose encoded size is already over the budget is refused before reading.)
    """
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(source)
        meta = f.metadata
        budget.check(sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)), name)
        if counts is not None:
            counts["records"] = meta.num_rows
        n = 0
        for batch in f.iter_batches(batch_size=256):
            budget.take(batch.nbytes, name)
            for record in batch.to_pylist():                # plain Python lists / dicts
                n += 1
                yield n, record
    except DataError:
        raise
    except Exception as e:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{name}: not a readable Parquet file: {e}") from None


def file_rows(raw: BinaryIO, name: str, errors: list[RowError], budget: Budget, counts: dict | None = None) -> Rows:
    """Rows of one file; its name's suffix (under an optional .gz) picks the reader. `counts["records"]` is
    set to the file's record count where the reader knows it before the end (.json, .csv, .parquet)."""
    counts = {} if counts is None else counts
    stream, inner = _open(raw, name, budget)
    kind = inner.lower()
    if kind.endswith((".jsonl", ".ndjson")):
        return _jsonl_rows(stream, errors, name)
    if not kind.endswith((".json", ".csv", ".parquet")):
        raise DataError(f"{name}: unsupported file type; expected .jsonl, .ndjson, .json, .csv or .parquet "
                        "(optionally .gz)")
    data = stream.read()
    if kind.endswith(".parquet"):
        return parquet_rows(io.BytesIO(data), name, budget, counts)
    if not data.removeprefix(_BOM).strip():
        raise DataError(f"{name}: the file is empty")
    return (_json_rows if kind.endswith(".json") else _csv_rows)(data, errors, name, counts)
