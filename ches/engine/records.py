"""Rows as read -> a `Dataset`: the format detected (or named, or a column mapping), each row a `Pair` or a `RowError`.

Rows come in as (row number, value) items (`Rows`), from ches.engine.files, ches.engine.hub or `load_records`;
`normalise` turns them into a `Dataset` (the contract is in ches.engine.pairs), reading each row with its format
in ches.engine.formats. A format or column mapping that fits no row is a DataError that names the formats that fit
the rows / the columns they have. Source records are kept as read, with non-JSON values (datetimes, bytes,
decimals...) converted and noted.
"""
from __future__ import annotations

import base64
import datetime
import decimal
import itertools
from typing import Any, Callable, Iterable

from ches.engine.formats import (FORMATS, MAPPED, RowProblem, Rows, Sides, Skipped, detect_format, fitting_formats,
                                 parse_row, type_name)
from ches.engine.pairs import FLAGS, DataError, Dataset, Pair, RowError, UnknownFormat, make_pair_id


def _make_pair(row: int, record: dict, sides: Sides, seen: set[str]) -> Pair:
    prompt, chosen, rejected, r_prompt = sides
    rejected_prompt = None if r_prompt == prompt else r_prompt
    try:
        pair_id = make_pair_id(prompt, chosen, rejected, rejected_prompt)
    except UnicodeEncodeError:
        raise RowProblem("text contains an unpaired surrogate (invalid Unicode)") from None
    on = {"empty_chosen": not chosen.strip(), "empty_rejected": not rejected.strip(),
          "identical": chosen == rejected and rejected_prompt is None,
          "prompt_mismatch": rejected_prompt is not None, "duplicate": pair_id in seen}
    seen.add(pair_id)
    return Pair(row=row, prompt=prompt, chosen=chosen, rejected=rejected, rejected_prompt=rejected_prompt,
                flags=tuple(f for f in FLAGS if on.get(f)), record=record, pair_id=pair_id)


def _short_keys(row: dict) -> str:
    keys = [repr(k)[:40] for k in list(row)[:20]]
    return "{" + ", ".join(keys) + (", ..." if len(row) > 20 else "") + "}"


def _detect(rows: list[tuple[int, Any]], errors: list[RowError], source: str) -> str:
    first = None
    for _, value in rows:
        fmt = detect_format(value)
        if fmt:
            return fmt
        if first is None and isinstance(value, dict):
            first = value
    if first is None:
        hint = f"; first problem: {min(errors, key=lambda e: e.row)}" if errors else ""
        raise DataError(f"{source}: no row is a JSON object with known keys{hint}")
    raise UnknownFormat(f"{source}: no known format has the columns {_short_keys(first)}. Map three of them "
                        f"to prompt, chosen and rejected (columns=), or name a format: {', '.join(FORMATS)}",
                        [str(k) for k in first])


def _map_columns(rows: Iterable[tuple[int, Any]], errors: list[RowError], columns: dict[str, str]) -> Rows:
    """Rows with the mapped columns renamed to prompt / chosen / rejected (other columns kept as they are);
    a row without one of them becomes a RowError that lists the columns it has."""
    for n, value in rows:
        missing = [c for c in columns.values() if not isinstance(value, dict) or c not in value]
        if missing:
            has = f"; its columns: {_short_keys(value)}" if isinstance(value, dict) else ""
            errors.append(RowError(n, "no column " + ", ".join(repr(c) for c in missing) + has))
            continue
        renamed = {k: v for k, v in value.items() if k not in columns.values()}
        yield n, {**renamed, **{ours: value[theirs] for ours, theirs in columns.items()}}


def _plain(value: Any, column: str, notes: dict[str, str]) -> Any:
    """`value` as JSON-native Python (dict, list, str, int, float, bool, None), so that a run can store it.

    Parquet and Hub columns can hold datetimes, bytes, decimals, NumPy values...: each is converted
    (datetime -> ISO 8601 text, bytes -> base64 text, Decimal -> exact text, NumPy -> Python) and the
    conversion noted once per top-level column.
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v, column, notes) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, column, notes) for v in value]
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":     # NumPy scalars and arrays
        return _plain(value.tolist(), column, notes)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        notes.setdefault(column, f"{type(value).__name__} stored as ISO 8601 text")
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        notes.setdefault(column, "duration stored as seconds")
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        notes.setdefault(column, "bytes stored as base64 text")
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, decimal.Decimal):
        notes.setdefault(column, "decimal stored as text (exact)")
        return str(value)
    notes.setdefault(column, f"{type(value).__name__} stored as its text form")
    return str(value)


def _misfit(source: str, format: str | None, columns: dict[str, str] | None, first: Any,
            errors: list[RowError]) -> DataError | None:
    """The error for a named format or a column mapping that fits no row (None when something else is wrong)."""
    if columns:
        sample = first if isinstance(first, dict) else None
        absent = [c for c in columns.values() if sample is not None and c not in sample]
        if sample is None or not absent:
            return None
        return DataError(f"{source}: no column {', '.join(repr(c) for c in absent)} in the rows (--column / the "
                         f"column mapping); the columns they have: {', '.join(repr(str(k))[:60] for k in sample)}")
    if format is None or not isinstance(first, dict) or format in fitting_formats(first):
        return None
    fits = fitting_formats(first)
    problem = f" (row {errors[0].row}: {errors[0].reason})" if errors else ""
    return DataError(f"{source}: no row could be read as {format!r}{problem}. The rows have the keys "
                     f"{_short_keys(first)}; " + (f"formats that fit them: {', '.join(fits)} (or leave the format "
                                                  "to be detected)" if fits else
                                                  "no known format fits them: map three of their columns to "
                                                  "prompt, chosen and rejected (--column)"))


def _first(rows: Iterable[tuple[int, Any]], into: list[Any]) -> Rows:
    """`rows` unchanged; the first row's value is kept in `into`."""
    for item in rows:
        if not into:
            into.append(item[1])
        yield item


def normalise(rows: Iterable[tuple[int, Any]], errors: list[RowError], format: str | None, source: str,
              *, limit: int | None = None, notes: list[str] | None = None,
              columns: dict[str, str] | None = None, total: Callable[[], int | None] | None = None) -> Dataset:
    """Pairs from (row number, value) items, read lazily: with `limit`, reading stops after that many pairs.
    `columns` maps three of the rows' columns to prompt / chosen / rejected (see load_records). `total()`
    tells the records in the whole source when reading stopped early and the source knows it (else None).
    A named format or a mapping that no row fits is a DataError naming what the rows have."""
    if format is not None and format not in FORMATS:
        raise DataError(f"unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
    if limit is not None and limit < 1:
        raise DataError(f"the limit must be at least 1 pair, got {limit}")
    raw: list[Any] = []                                 # the first row as read, before a column mapping
    if columns:
        if sorted(columns) != sorted(MAPPED) or len(set(columns.values())) != 3:
            raise DataError(f"a column mapping names three different columns for {', '.join(MAPPED)}; got {columns}")
        rows = _map_columns(_first(rows, raw), errors, dict(columns))
    rows = iter(rows)
    ahead: list[tuple[int, Any]] = []                    # rows read to detect the format
    fmt = format
    if fmt is None:
        for item in rows:
            ahead.append(item)
            if fmt := detect_format(item[1]):
                break
    if not ahead and format is None and not errors:
        raise DataError(f"{source}: no rows")
    if fmt is None and format is None:
        if misfit := _misfit(source, None, columns, raw[0] if raw else None, errors):
            raise misfit
        _detect(ahead, errors, source)                   # raises with the reason
    pairs: list[Pair] = []
    skipped: list[RowError] = []
    seen: set[str] = set()
    converted: dict[str, str] = {}                      # column -> how its values were converted
    read = own = 0                                      # rows consumed; RowErrors added here (not by the reader)
    first: Any = None                                   # the first row read, for the messages
    stopped = False
    for row, value in itertools.chain(ahead, rows):
        read += 1
        first = value if read == 1 else first
        try:
            sides = parse_row(fmt, value)
            try:
                record = {str(k): _plain(v, str(k), converted) for k, v in value.items()}
            except RecursionError:
                raise RowProblem("the record is nested too deeply to be stored") from None
            pairs.append(_make_pair(row, record, sides, seen))
        except RowProblem as e:
            errors.append(RowError(row, str(e)))
            own += 1
        except Skipped as e:
            skipped.append(RowError(row, str(e)))
        if limit is not None and len(pairs) >= limit:
            stopped = True
            break
    if not read and not errors:
        raise DataError(f"{source}: no rows")
    errors.sort(key=lambda e: e.row)
    if not pairs and not skipped and (misfit := _misfit(source, format, columns, raw[0] if raw else first, errors)):
        raise misfit
    records = read + len(errors) - own                  # rows the reader could not parse are records too
    return Dataset(pairs=pairs, errors=errors, format=fmt, source=source,
                   notes=[f"column '{c}': {n}" for c, n in converted.items()] + (notes or []),
                   skipped=skipped, limit=limit, records_read=records,
                   source_records=(total() if total else None) if stopped else records)


def load_records(records: Iterable[dict], *, format: str | None = None, source: str = "<records>",
                 limit: int | None = None, columns: dict[str, str] | None = None) -> Dataset:
    """Normalise already-parsed rows (row numbers are 1-based positions in `records`).

    columns: {"prompt": theirs, "chosen": theirs, "rejected": theirs} for rows in no known format; each
    row's `record` (what an "input" export writes) then carries our names, so it reloads without one."""
    if isinstance(records, (str, bytes, bytearray, dict)):
        raise DataError(f"{source}: expected an iterable of row dicts, got {type_name(records)}")
    try:
        rows = enumerate(iter(records), 1)
    except TypeError:
        raise DataError(f"{source}: expected an iterable of row dicts, got {type_name(records)}") from None
    return normalise(rows, [], format, source, limit=limit, columns=columns)
