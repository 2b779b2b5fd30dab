"""Load preference datasets in every supported format and normalise each row into a `Pair`.

Contract
1. Every file-level problem (missing file, unknown format, unreadable container) raises `DataError`.
2. Every row-level problem becomes a `RowError(row, reason)` in `Dataset.errors`; the good rows load.
3. `row` is 1-based: the line number for JSON Lines, the element/record number otherwise.
4. `pair_id` is a content hash of the normalised pair, so it survives re-ordering, re-export and
   re-loading the same pair from another format.
5. Quirks are flagged on the pair, never dropped (see FLAGS).

Formats (detected from the first row whose keys match one; `format=` overrides)

| name               | a row                                                                       |
|--------------------|-----------------------------------------------------------------------------|
| trl_standard       | {"prompt": str, "chosen": str, "rejected": str}                             |
| trl_conversational | {"prompt": [msg], "chosen": [.., assistant], "rejected": [.., assistant]}   |
| implicit_messages  | {"chosen": [msg.., assistant], "rejected": [msg.., assistant]}              |
| hh                 | {"chosen": "\\n\\nHuman: ..\\n\\nAssistant: ..", "rejected": ".."}          |
| ches_flat          | {"query": str, "chosen": str, "rejected": str}                              |
| alpacafarm         | {"instruction", "input", "output_1", "output_2", "preference": 1 or 2}      |
| openai_dpo         | {"input": {"messages": [msg]}, "preferred_output", "non_preferred_output"}  |
| persona            | {"question", "answer_matching_behavior", "answer_not_matching_behavior"}    |

A string prompt becomes one user message; messages keep only role and content. A response given as a
message list is its final assistant message; the turns before it extend that side's prompt. When the
two sides' prompts differ the pair keeps both (`rejected_prompt`) and is flagged prompt_mismatch.

Files: .jsonl / .ndjson, .json (an array, or an object with a list under "data", "rows" or "train"),
.csv (header row; cells holding JSON message lists are parsed), .parquet; any of them gzipped (.gz).
JSON Lines and Parquet are read as streams (so `limit` stops reading early), and every input is capped
at `max_bytes` once decompressed. A folder is read as a Hugging Face dataset folder (one split, shards
in order). A source that is no existing path but looks like "owner/name" is loaded from the Hub.
Source records are kept as read, with non-JSON values (datetimes, bytes, decimals...) converted and noted.
"""
from __future__ import annotations

import base64
import contextlib
import csv
import datetime
import decimal
import gzip
import hashlib
import io
import itertools
import json
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

Message = dict[str, str]  # {"role": "user" | "assistant" | "system", "content": str}

FLAGS = {
    "empty_chosen": "the chosen response is empty",
    "empty_rejected": "the rejected response is empty",
    "identical": "chosen and rejected responses are identical",
    "prompt_mismatch": "the prompt differs between chosen and rejected (each side is scored with its own)",
    "duplicate": "the same pair appears earlier in the dataset",
    "truncated": "a sequence was cut to the maximum length when scoring",
}


class DataError(ValueError):
    """The dataset as a whole cannot be read (the loader's only exception type)."""


class UnknownFormat(DataError):
    """No format matches the rows' keys; `columns` lists the first row's keys (for a column mapping)."""

    def __init__(self, message: str, columns: list[str]):
        super().__init__(message)
        self.columns = columns


@dataclass(frozen=True)
class Pair:
    row: int                                   # 1-based line / record number in the source
    prompt: tuple[Message, ...]                # the conversation before the response (x)
    chosen: str                                # y+
    rejected: str                              # y-
    rejected_prompt: tuple[Message, ...] | None = None  # only when the rejected side's x differs
    flags: tuple[str, ...] = ()
    record: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # source row as read
    pair_id: str = ""


@dataclass(frozen=True)
class RowError:
    row: int
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.reason}"


@dataclass
class Dataset:
    pairs: list[Pair]
    errors: list[RowError]
    format: str                                # one of FORMATS
    source: str                                # path or hub name as given
    notes: list[str] = field(default_factory=list)   # what the loader converted (column types), shard rows
    split: str | None = None                   # the split of a dataset folder or Hub dataset

    @property
    def content_hash(self) -> str:
        """sha256 over the ordered pair ids: same pairs in the same order, same hash."""
        h = hashlib.sha256()
        for p in self.pairs:
            h.update(p.pair_id.encode())
        return h.hexdigest()

    @property
    def source_hash(self) -> str:
        """sha256 over the format and every pair's row, id and full source record (canonical JSON).

        What a run stores beyond the numbers: two sources with the same pairs but other ids, scores or
        metadata get different hashes, so an export "as in the source" never writes stale records.
        """
        h = hashlib.sha256(self.format.encode())
        for p in self.pairs:
            h.update(f"\n{p.row}\t{p.pair_id}\t".encode())
            h.update(json.dumps(p.record, sort_keys=True, separators=(",", ":")).encode())
        return h.hexdigest()


def make_pair_id(prompt, chosen: str, rejected: str, rejected_prompt=None) -> str:
    """16 hex chars of sha256 over the canonical JSON of the normalised pair."""
    canon = json.dumps([list(prompt), chosen, rejected, None if rejected_prompt is None else list(rejected_prompt)],
                       ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- formats: the key sets, in one place
FORMATS = {
    "trl_standard": 'TRL standard: {"prompt": str, "chosen": str, "rejected": str}',
    "trl_conversational": 'TRL conversational: {"prompt": [messages], "chosen": [.., assistant], "rejected": [.., assistant]}',
    "implicit_messages": 'whole conversations, prompt = turns before the last (UltraFeedback): {"chosen": [..], "rejected": [..]}',
    "hh": 'Anthropic HH raw dialogue text: {"chosen": "\\n\\nHuman: ..\\n\\nAssistant: ..", "rejected": ".."}',
    "ches_flat": 'the CHES authors\' flat rows: {"query": str, "chosen": str, "rejected": str}',
    "alpacafarm": 'AlpacaFarm: {"instruction", "input", "output_1", "output_2", "preference": 1 or 2}',
    "openai_dpo": 'OpenAI DPO: {"input": {"messages": [..]}, "preferred_output": [..], "non_preferred_output": [..]}',
    "persona": 'Anthropic persona eval: {"question", "answer_matching_behavior", "answer_not_matching_behavior"}',
}
_KEYS = {  # required keys per format (alpacafarm's "input" is optional)
    "trl_standard": ("prompt", "chosen", "rejected"),
    "trl_conversational": ("chosen", "rejected"),  # + "prompt": [messages]
    "implicit_messages": ("chosen", "rejected"),
    "hh": ("chosen", "rejected"),
    "ches_flat": ("query", "chosen", "rejected"),
    "alpacafarm": ("instruction", "output_1", "output_2", "preference"),
    "openai_dpo": ("input", "preferred_output", "non_preferred_output"),
    "persona": ("question", "answer_matching_behavior", "answer_not_matching_behavior"),
}
_DETECT_ORDER = ("openai_dpo", "alpacafarm", "persona", "ches_flat",
                 "trl_conversational", "trl_standard", "implicit_messages", "hh")
_HF_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_BOM = b"\xef\xbb\xbf"


def detect_format(row: Any) -> str | None:
    """The format whose key set (and discriminating type) `row` matches, or None."""
    if not isinstance(row, dict):
        return None
    conversation, prompt = isinstance(row.get("chosen"), list), row.get("prompt")
    extra = {"trl_conversational": isinstance(prompt, list), "trl_standard": not conversation,
             "implicit_messages": conversation, "hh": isinstance(row.get("chosen"), str) and "prompt" not in row}
    return next((f for f in _DETECT_ORDER if all(k in row for k in _KEYS[f]) and extra.get(f, True)), None)


# ---------------------------------------------------------------- row validation (never recursive)
class _RowProblem(ValueError):
    """One row is unusable; becomes a RowError."""


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise _RowProblem(f"'{key}' must be a string, got {_type(value)}")
    return value


def _messages(value: Any, key: str) -> tuple[Message, ...]:
    """A list of {"role": str, "content": str}; other message keys are dropped."""
    if not isinstance(value, list):
        raise _RowProblem(f"'{key}' must be a list of messages, got {_type(value)}")
    out = []
    for i, m in enumerate(value, 1):
        if not isinstance(m, dict):
            raise _RowProblem(f"'{key}' message {i} must be an object, got {_type(m)}")
        for part in ("role", "content"):
            if part not in m:
                raise _RowProblem(f"'{key}' message {i} has no '{part}'")
            if not isinstance(m[part], str):
                raise _RowProblem(f"'{key}' message {i} '{part}' must be a string, got {_type(m[part])}")
        out.append({"role": m["role"], "content": m["content"]})
    return tuple(out)


def _split_reply(msgs: tuple[Message, ...], key: str) -> tuple[tuple[Message, ...], str]:
    """(everything before the final assistant turn, that turn's content)."""
    if not msgs or msgs[-1]["role"] != "assistant":
        if any(m["role"] == "assistant" for m in msgs):
            raise _RowProblem(f"'{key}' must end with an assistant message, ends with '{msgs[-1]['role'][:40]}'")
        raise _RowProblem(f"'{key}' has no assistant message")
    return msgs[:-1], msgs[-1]["content"]


def _prompt(value: Any, key: str) -> tuple[Message, ...]:
    if isinstance(value, str):
        return ({"role": "user", "content": value},)
    if isinstance(value, list):
        return _messages(value, key)
    raise _RowProblem(f"'{key}' must be a string or a list of messages, got {_type(value)}")


def _response(value: Any, key: str, prompt: tuple[Message, ...]) -> tuple[tuple[Message, ...], str]:
    """A string reply, or a message list whose earlier turns extend this side's prompt."""
    if isinstance(value, str):
        return prompt, value
    if isinstance(value, list):
        before, reply = _split_reply(_messages(value, key), key)
        return prompt + before, reply
    raise _RowProblem(f"'{key}' must be a string or a list of messages, got {_type(value)}")


_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_HH_ROLE = {"Human": "user", "Assistant": "assistant"}


def _hh(value: Any, key: str) -> tuple[tuple[Message, ...], str]:
    """Split HH text at its LAST "\\n\\nAssistant:": (dialogue before as messages, final reply)."""
    text = _str(value, key)
    cut = text.rfind("\n\nAssistant:")
    if cut < 0:
        raise _RowProblem(f"'{key}' has no '\\n\\nAssistant:' turn")
    parts = _HH_TURN.split(text[:cut])
    if parts[0].strip():
        raise _RowProblem(f"'{key}' has text before the first 'Human:' turn")
    prompt = tuple({"role": _HH_ROLE[r], "content": c.strip()} for r, c in zip(parts[1::2], parts[2::2]))
    return prompt, text[cut + len("\n\nAssistant:"):].strip()


def _preference(value: Any) -> int:
    if isinstance(value, str) and value.strip() in ("1", "2"):
        return int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (1, 2):
        return int(value)
    raise _RowProblem(f"'preference' must be 1 or 2, got {_type(value)} {repr(value)[:40]}")


Sides = tuple[tuple[Message, ...], str, str, tuple[Message, ...]]  # prompt, chosen, rejected, rejected's prompt


def _both(parse: Callable, row: dict, keys: tuple[str, str], *args) -> Sides:
    """Parse the chosen and the rejected side alike; each is (its prompt, its reply)."""
    (c_prompt, chosen), (r_prompt, rejected) = (parse(row[k], k, *args) for k in keys)
    return c_prompt, chosen, rejected, r_prompt


def _trl(row: dict, prompt_key: str = "prompt") -> Sides:
    """TRL rows: standard, conversational, or implicit prompt (whole conversations, no prompt key).

    A string prompt next to conversations that carry their own turns is dropped, as TRL's
    maybe_extract_prompt does (HuggingFaceH4/ultrafeedback_binarized repeats it as the first user turn).
    """
    if prompt_key not in row:
        if not isinstance(row["chosen"], list):
            raise _RowProblem(f"missing key '{prompt_key}'")
        return _both(lambda value, key: _split_reply(_messages(value, key), key), row, ("chosen", "rejected"))
    base = row[prompt_key]
    prompt, chosen, rejected, r_prompt = _both(_response, row, ("chosen", "rejected"), _prompt(base, prompt_key))
    if isinstance(base, str):
        prompt, r_prompt = (p[1:] if len(p) > 1 else p for p in (prompt, r_prompt))
    return prompt, chosen, rejected, r_prompt


def _alpacafarm(row: dict) -> Sides:
    text = _str(row["instruction"], "instruction")
    extra = "" if row.get("input") is None else _str(row["input"], "input")
    prompt = ({"role": "user", "content": text + "\n" + extra if extra else text},)
    outputs = _str(row["output_1"], "output_1"), _str(row["output_2"], "output_2")
    first = _preference(row["preference"]) == 1
    return prompt, outputs[0 if first else 1], outputs[1 if first else 0], prompt


def _openai(row: dict) -> Sides:
    if not isinstance(row["input"], dict) or "messages" not in row["input"]:
        raise _RowProblem(f"'input' must be an object with a 'messages' list, got {_type(row['input'])}")
    prompt = _messages(row["input"]["messages"], "input.messages")
    return _both(_response, row, ("preferred_output", "non_preferred_output"), prompt)


def _persona(row: dict) -> Sides:
    """prompt = question; chosen = answer_matching_behavior; rejected = answer_not_matching_behavior.

    The answers are kept verbatim, leading space included (" Yes"): that is the token the persona
    evals score, and stripping it would change the tokenisation the paper's single-token runs use.
    """
    prompt = ({"role": "user", "content": _str(row["question"], "question")},)
    return (prompt, _str(row["answer_matching_behavior"], "answer_matching_behavior"),
            _str(row["answer_not_matching_behavior"], "answer_not_matching_behavior"), prompt)


_PARSERS: dict[str, Callable[[dict], Sides]] = {
    "trl_standard": _trl, "trl_conversational": _trl, "implicit_messages": _trl,
    "hh": lambda row: _both(_hh, row, ("chosen", "rejected")),
    "ches_flat": lambda row: _trl(row, "query"), "alpacafarm": _alpacafarm, "openai_dpo": _openai,
    "persona": _persona,
}


# ---------------------------------------------------------------- rows -> Dataset
def _make_pair(row: int, record: dict, sides: Sides, seen: set[str]) -> Pair:
    prompt, chosen, rejected, r_prompt = sides
    rejected_prompt = None if r_prompt == prompt else r_prompt
    try:
        pair_id = make_pair_id(prompt, chosen, rejected, rejected_prompt)
    except UnicodeEncodeError:
        raise _RowProblem("text contains an unpaired surrogate (invalid Unicode)") from None
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


MAPPED = ("prompt", "chosen", "rejected")


def _map_columns(rows: Iterable[tuple[int, Any]], errors: list[RowError], columns: dict[str, str]) -> Rows:
    """Rows with the mapped columns renamed to prompt / chosen / rejected (other columns kept as they are);
    a row without one of them becomes a RowError."""
    for n, value in rows:
        missing = [c for c in columns.values() if not isinstance(value, dict) or c not in value]
        if missing:
            errors.append(RowError(n, "no column " + ", ".join(repr(c) for c in missing)))
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


def _normalise(rows: Iterable[tuple[int, Any]], errors: list[RowError], format: str | None, source: str,
               *, limit: int | None = None, notes: list[str] | None = None,
               columns: dict[str, str] | None = None) -> Dataset:
    """Pairs from (row number, value) items, read lazily: with `limit`, reading stops after that many pairs.
    `columns` maps three of the rows' columns to prompt / chosen / rejected (see load_records)."""
    if format is not None and format not in FORMATS:
        raise DataError(f"unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
    if limit is not None and limit < 1:
        raise DataError(f"the limit must be at least 1 pair, got {limit}")
    if columns:
        if sorted(columns) != sorted(MAPPED) or len(set(columns.values())) != 3:
            raise DataError(f"a column mapping names three different columns for {', '.join(MAPPED)}; got {columns}")
        rows = _map_columns(rows, errors, dict(columns))
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
        _detect(ahead, errors, source)                   # raises with the reason
    pairs: list[Pair] = []
    seen: set[str] = set()
    converted: dict[str, str] = {}                      # column -> how its values were converted
    read = 0
    for row, value in itertools.chain(ahead, rows):
        read += 1
        try:
            if not isinstance(value, dict):
                raise _RowProblem(f"expected a JSON object, got {_type(value)}")
            missing = [k for k in _KEYS[fmt] if k not in value]
            if missing:
                raise _RowProblem(f"missing key{'s' * (len(missing) > 1)} " + ", ".join(f"'{k}'" for k in missing))
            sides = _PARSERS[fmt](value)                  # types checked on the values as read
            try:
                record = {str(k): _plain(v, str(k), converted) for k, v in value.items()}
            except RecursionError:
                raise _RowProblem("the record is nested too deeply to be stored") from None
            pairs.append(_make_pair(row, record, sides, seen))
        except _RowProblem as e:
            errors.append(RowError(row, str(e)))
        if limit is not None and len(pairs) >= limit:
            break
    if not read and not errors:
        raise DataError(f"{source}: no rows")
    errors.sort(key=lambda e: e.row)
    return Dataset(pairs=pairs, errors=errors, format=fmt, source=source,
                   notes=[f"column '{c}': {n}" for c, n in converted.items()] + (notes or []))


def load_records(records: Iterable[dict], *, format: str | None = None, source: str = "<records>",
                 limit: int | None = None, columns: dict[str, str] | None = None) -> Dataset:
    """Normalise already-parsed rows (row numbers are 1-based positions in `records`).

    columns: {"prompt": theirs, "chosen": theirs, "rejected": theirs} for rows in no known format; each
    row's `record` (what an "input" export writes) then carries our names, so it reloads without one."""
    if isinstance(records, (str, bytes, bytearray, dict)):
        raise DataError(f"{source}: expected an iterable of row dicts, got {_type(records)}")
    try:
        rows = enumerate(iter(records), 1)
    except TypeError:
        raise DataError(f"{source}: expected an iterable of row dicts, got {_type(records)}") from None
    return _normalise(rows, [], format, source, limit=limit, columns=columns)


# ---------------------------------------------------------------- bytes -> rows
MAX_INPUT_BYTES = 16 * 2**30   # default cap on a dataset's size once decompressed (the app passes its upload limit)
SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")   # each optionally .gz
Rows = Iterator[tuple[int, Any]]


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


class _Budget:
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
    """A readable stream that charges every byte it yields to a _Budget; gzip errors become DataError."""

    def __init__(self, inner: BinaryIO, budget: _Budget, name: str):
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


def _open(raw: BinaryIO, name: str, budget: _Budget) -> tuple[io.BufferedReader, str]:
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


def _json_rows(data: bytes, errors: list[RowError], name: str) -> Rows:
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
                        f"'data', 'rows' or 'train', got {_type(value) if not isinstance(value, dict) else 'an object'}")
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


def _csv_rows(data: bytes, errors: list[RowError], name: str) -> Rows:
    """Header row + one record per pair; every cell stays a string (no NaN guessing)."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # default 128 KiB rejects long responses
    text = data.decode("utf-8-sig", errors="surrogateescape")  # bad bytes -> RowError per record below
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        records = [r for r in reader if r]
    except csv.Error as e:
        raise DataError(f"{name}: unreadable CSV near line {reader.line_num}: {e}") from None
    header = records[0] if records else []
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


def _parquet_rows(source: str | Path | BinaryIO, name: str, budget: _Budget) -> Rows:
    """Rows in batches of 256, each decoded batch charged to the budget before it becomes Python objects.

    (A file whose encoded size is already over the budget is refused before reading.)
    """
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(source)
        meta = f.metadata
        budget.check(sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)), name)
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


def _file_rows(raw: BinaryIO, name: str, errors: list[RowError], budget: _Budget) -> Rows:
    """Rows of one file; its name's suffix (under an optional .gz) picks the reader."""
    stream, inner = _open(raw, name, budget)
    kind = inner.lower()
    if kind.endswith((".jsonl", ".ndjson")):
        return _jsonl_rows(stream, errors, name)
    if not kind.endswith((".json", ".csv", ".parquet")):
        raise DataError(f"{name}: unsupported file type; expected .jsonl, .ndjson, .json, .csv or .parquet "
                        "(optionally .gz)")
    data = stream.read()
    if kind.endswith(".parquet"):
        return _parquet_rows(io.BytesIO(data), name, budget)
    if not data.removeprefix(_BOM).strip():
        raise DataError(f"{name}: the file is empty")
    return _json_rows(data, errors, name) if kind.endswith(".json") else _csv_rows(data, errors, name)


def load_bytes(data: bytes, filename: str, *, format: str | None = None, limit: int | None = None,
               max_bytes: int | None = MAX_INPUT_BYTES, columns: dict[str, str] | None = None) -> Dataset:
    """Load an uploaded file's bytes; the file type comes from `filename`'s suffix.

    `max_bytes` caps the data once decompressed (a .gz is streamed and refused past it).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DataError(f"{filename}: expected bytes, got {_type(data)}")
    errors: list[RowError] = []
    rows = _file_rows(io.BytesIO(bytes(data)), str(filename), errors, _Budget(max_bytes))
    return _normalise(rows, errors, format, str(filename), limit=limit, columns=columns)


def load_dataset(source: str | Path, *, format: str | None = None, split: str | None = None,
                 config: str | None = None, limit: int | None = None,
                 max_bytes: int | None = MAX_INPUT_BYTES, columns: dict[str, str] | None = None) -> Dataset:
    """Load a file, a folder laid out as a Hugging Face dataset (one split), or a Hub dataset (owner/name).

    `split` and `config` choose within a folder or a Hub dataset (default: the train split, or the only
    one); they are refused for a single file. `limit` keeps the first N usable pairs (reading stops
    there). `max_bytes` caps the data once decompressed: a compressed input is streamed and refused
    once it passes the cap, never decompressed whole. `columns`: see load_records.
    """
    path = Path(source)
    errors: list[RowError] = []
    budget = _Budget(max_bytes)
    if path.is_file():
        if split is not None or config is not None:
            raise DataError(f"{source}: a split or config can only be chosen in a dataset folder or a Hugging "
                            f"Face dataset; this is a single file (drop --split / --config)")
        try:
            f = open(path, "rb")
        except OSError as e:
            raise DataError(f"{source}: cannot read: {e}") from None
        with f:                                          # messages lead with the file's name
            if path.name.lower().endswith(".parquet"):
                rows: Iterable = _parquet_rows(path, path.name, budget)
            else:
                rows = _file_rows(f, path.name, errors, budget)
            dataset = _normalise(rows, errors, format, path.name, limit=limit, columns=columns)
        dataset.source = str(source)
        return dataset
    if path.is_dir():
        split, files = snapshot_files(path, split, config)
        notes: list[str] = []
        with contextlib.ExitStack() as stack:
            rows = _shard_rows(path, files, errors, budget, stack, notes)
            dataset = _normalise(rows, errors, format, str(source), limit=limit, notes=notes, columns=columns)
        dataset.split = split
        return dataset
    if path.exists():
        raise DataError(f"{source}: not a file or a folder")
    if not isinstance(source, str) or not _HF_NAME.match(source):
        raise DataError(f"{source}: no such file (and not a Hugging Face dataset name like 'owner/name')")
    split = split or "train"
    try:
        import datasets as hf

        rows = enumerate(hf.load_dataset(source, config, split=split), 1)
        dataset = _normalise(rows, [], format, source, limit=limit, columns=columns)
    except DataError:
        raise
    except Exception as e:  # network, auth, missing split, missing library: all one message
        raise DataError(f"could not load the Hugging Face dataset {source!r} (config={config!r}, split={split!r}): "
                        f"{type(e).__name__}: {e}") from None
    dataset.split = split
    return dataset


# ---------------------------------------------------------------- Hugging Face dataset folders
def snapshot_files(folder: Path, split: str | None = None, config: str | None = None) -> tuple[str, list[Path]]:
    """(split, its data files in order) of a folder laid out as a dataset on the Hugging Face Hub.

    1. README.md's YAML header `configs:` (config_name, data_dir, data_files: [{split, path}], default)
       decides, as on the Hub;
    2. otherwise the Hub's file naming: data/<split>-00000-of-00002.parquet, train.jsonl, test/..., and
       `config` may name a subfolder.
    Without `split`: "train", or the only split there is.
    """
    splits = _readme_splits(folder, config)
    if splits is None:
        base = folder / config if config else folder
        if config and not base.is_dir():
            raise DataError(f"{folder}: no config {config!r} (no configs in README.md, no subfolder {config!r})")
        splits = _default_splits(base)
    if not splits:
        raise DataError(f"{folder}: no data files ({', '.join(SUFFIXES)}, optionally .gz) in this folder")
    if split is None:
        split = "train" if "train" in splits else next(iter(splits)) if len(splits) == 1 else None
        if split is None:
            raise DataError(f"{folder}: choose a split with --split: {', '.join(splits)}")
    if split not in splits:
        raise DataError(f"{folder}: no split {split!r}; splits here: {', '.join(splits)}")
    files = [f for f in splits[split] if f.name.lower().removesuffix(".gz").endswith(SUFFIXES)]
    if not files:
        found = ", ".join(sorted({"".join(f.suffixes) or f.name for f in splits[split]}))
        raise DataError(f"{folder}: split {split!r} has no file this loader reads (found {found}; "
                        f"expected {', '.join(SUFFIXES)}, optionally .gz)")
    return split, files


def _readme_splits(folder: Path, config: str | None) -> dict[str, list[Path]] | None:
    """{split: files} from README.md's `configs:` header, or None when it has none."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8", errors="replace")
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not match:
        return None
    import yaml

    try:
        header = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as e:
        raise DataError(f"{readme}: unreadable YAML header: {e}") from None
    configs = header.get("configs") if isinstance(header, dict) else None
    if not isinstance(configs, list) or not configs:
        return None
    by_name = {str(c.get("config_name", "default")): c for c in configs if isinstance(c, dict)}
    if config is None:
        chosen = next((c for c in by_name.values() if c.get("default")), None) or by_name.get("default")
        if chosen is None and len(by_name) == 1:
            chosen = next(iter(by_name.values()))
        if chosen is None:
            raise DataError(f"{folder}: choose a config with --config: {', '.join(by_name)}")
    elif config in by_name:
        chosen = by_name[config]
    else:
        raise DataError(f"{folder}: no config {config!r}; configs in README.md: {', '.join(by_name)}")
    base = folder / str(chosen.get("data_dir") or "")
    data_files = chosen.get("data_files")
    if data_files is None:
        return _default_splits(base)
    if isinstance(data_files, (str, list)) and not (isinstance(data_files, list) and data_files
                                                    and isinstance(data_files[0], dict)):
        data_files = [{"split": "train", "path": data_files}]
    elif isinstance(data_files, dict):
        data_files = [{"split": k, "path": v} for k, v in data_files.items()]
    splits: dict[str, list[Path]] = {}
    for entry in data_files:
        patterns = entry.get("path", []) if isinstance(entry, dict) else []
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            splits.setdefault(str(entry.get("split", "train")), []).extend(_glob(base, str(pattern)))
    return splits


def _default_splits(base: Path) -> dict[str, list[Path]]:
    """{split: files} by the Hub's naming conventions (the `datasets` library's own patterns)."""
    from datasets.data_files import EmptyDatasetError, get_data_patterns

    try:
        patterns = get_data_patterns(str(base))
    except EmptyDatasetError:
        return {}
    return {str(split): sorted({f for p in pats for f in _glob(base, p)}) for split, pats in patterns.items()}


def _glob(base: Path, pattern: str) -> list[Path]:
    """Files under `base` matching a Hub data_files pattern: no hidden files, no README, nothing outside."""
    if pattern.endswith("**"):                          # fsspec's "**" matches files, pathlib's only folders
        pattern += "/*"
    root = base.resolve()
    found = sorted(p for p in base.glob(pattern) if p.is_file())
    return [p for p in found if not any(part.startswith(".") for part in p.relative_to(base).parts)
            and p.name != "README.md" and root in p.resolve().parents]


class _Shifted:
    """The errors list of one shard: its row numbers shifted by the rows before it, its name in the reason."""

    def __init__(self, errors: list[RowError], offset: int, name: str):
        self.errors, self.offset, self.name, self.last = errors, offset, name, 0

    def append(self, e: RowError) -> None:
        self.last = max(self.last, e.row)
        self.errors.append(RowError(self.offset + e.row, f"{self.name}: {e.reason}"))


def _shard_rows(folder: Path, files: list[Path], errors: list[RowError], budget: _Budget,
                stack: contextlib.ExitStack, notes: list[str]) -> Rows:
    """Rows of every shard in order; row numbers run on across shards (a note says where each starts)."""
    offset = 0
    for path in files:
        name = str(path.relative_to(folder))
        shifted = _Shifted(errors, offset, name)
        if len(files) > 1:
            notes.append(f"rows from {offset + 1}: {name}")
        if path.name.lower().endswith(".parquet"):
            rows: Iterable = _parquet_rows(path, name, budget)
        else:
            rows = _file_rows(stack.enter_context(open(path, "rb")), name, shifted, budget)  # type: ignore[arg-type]
        last = 0
        for last, value in rows:
            yield offset + last, value
        offset += max(last, shifted.last)


def to_trl(pair: Pair) -> dict:
    """The pair in TRL conversational form; the implicit-prompt form when the two prompts differ.

    Loading the result gives back the same pair_id.
    """
    def reply(text: str) -> list[Message]:
        return [{"role": "assistant", "content": text}]

    if pair.rejected_prompt is None:
        return {"prompt": [dict(m) for m in pair.prompt], "chosen": reply(pair.chosen), "rejected": reply(pair.rejected)}
    return {"chosen": [dict(m) for m in pair.prompt] + reply(pair.chosen),
            "rejected": [dict(m) for m in pair.rejected_prompt] + reply(pair.rejected)}
