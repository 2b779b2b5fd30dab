"""The formats of preference datasets: detect one from a row's keys, parse each row into a `Pair`.

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

A string prompt becomes one user message, unless it is an HH-style dialogue ("\n\nHuman: ..\n\nAssistant: ..")
whose turns become messages, as in the hh format (any format whose prompt is a string: trl_standard, ches_flat,
alpacafarm, persona). An hh transcript may open with "Human:" without its blank line; one that opens with no Human
turn, or whose split leaves a turn marker in a user turn or after a blank line, is a row error (a "Human:" inside
an assistant turn is text: real HH replies hold it). Messages keep only role and content. A response given as a
message list is its final assistant message; the turns before it extend that side's prompt. When the
two sides' prompts differ the pair keeps both (`rejected_prompt`) and is flagged prompt_mismatch.
An AlpacaFarm / AlpacaEval tie (preference 0 or 1.5) holds no preference: it is skipped and counted as a tie
(`Dataset.skipped`), not reported as unreadable. A format or column mapping that fits no row is a DataError that
names the formats that fit the rows / the columns they have.
Rows in no known format load with a column mapping (`columns=`, see load_records).
Source records are kept as read, with non-JSON values (datetimes, bytes, decimals...) converted and noted.

Rows come in as (row number, value) items (`Rows`), from ches.engine.files, ches.engine.hub or
`load_records`; `normalise` turns them into a `Dataset` (the contract is in ches.engine.pairs).

Over 400 lines: the eight formats' parsers, detection and the one normalise loop with its messages for
mistaken formats and mappings are one contract, read and changed together.
"""
from __future__ import annotations

import base64
import datetime
import decimal
import itertools
import re
from typing import Any, Callable, Iterable, Iterator

from ches.engine.pairs import FLAGS, DataError, Dataset, Message, Pair, RowError, UnknownFormat, make_pair_id

Rows = Iterator[tuple[int, Any]]   # (1-based row number, the row as read)


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


def fitting_formats(row: Any) -> list[str]:
    """Every format whose key set (and discriminating type) `row` matches, in detection order."""
    if not isinstance(row, dict):
        return []
    conversation, prompt = isinstance(row.get("chosen"), list), row.get("prompt")
    extra = {"trl_conversational": isinstance(prompt, list), "trl_standard": not conversation,
             "implicit_messages": conversation, "hh": isinstance(row.get("chosen"), str) and "prompt" not in row}
    return [f for f in _DETECT_ORDER if all(k in row for k in _KEYS[f]) and extra.get(f, True)]


def detect_format(row: Any) -> str | None:
    """The format whose key set (and discriminating type) `row` matches, or None."""
    return next(iter(fitting_formats(row)), None)


# ---------------------------------------------------------------- row validation (never recursive)
class _RowProblem(ValueError):
    """One row is unusable; becomes a RowError."""


class _Skip(Exception):
    """One row is readable but left out on purpose (a tie); goes to Dataset.skipped."""


def type_name(value: Any) -> str:
    """The name of a value's type, for messages ("null" for None)."""
    return "null" if value is None else type(value).__name__


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise _RowProblem(f"'{key}' must be a string, got {type_name(value)}")
    return value


def _messages(value: Any, key: str) -> tuple[Message, ...]:
    """A list of {"role": str, "content": str}; other message keys are dropped."""
    if not isinstance(value, list):
        raise _RowProblem(f"'{key}' must be a list of messages, got {type_name(value)}")
    out = []
    for i, m in enumerate(value, 1):
        if not isinstance(m, dict):
            raise _RowProblem(f"'{key}' message {i} must be an object, got {type_name(m)}")
        for part in ("role", "content"):
            if part not in m:
                raise _RowProblem(f"'{key}' message {i} has no '{part}'")
            if not isinstance(m[part], str):
                raise _RowProblem(f"'{key}' message {i} '{part}' must be a string, got {type_name(m[part])}")
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
        return text_prompt(value)
    if isinstance(value, list):
        return _messages(value, key)
    raise _RowProblem(f"'{key}' must be a string or a list of messages, got {type_name(value)}")


def _response(value: Any, key: str, prompt: tuple[Message, ...]) -> tuple[tuple[Message, ...], str]:
    """A string reply, or a message list whose earlier turns extend this side's prompt."""
    if isinstance(value, str):
        return prompt, value
    if isinstance(value, list):
        before, reply = _split_reply(_messages(value, key), key)
        return prompt + before, reply
    raise _RowProblem(f"'{key}' must be a string or a list of messages, got {type_name(value)}")


_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_HH_ROLE = {"Human": "user", "Assistant": "assistant"}
# a turn marker the split left in a message: in a user turn at any line's start; in an assistant turn or the
# reply only after a blank line (real HH assistant turns hold "Human: .." as text: the model went on as the human)
_HH_LEFT = {"user": re.compile(r"(?:^|\n)[ \t]*(?:Human|Assistant):"),
            "assistant": re.compile(r"\n[ \t]*\n[ \t]*(?:Human|Assistant):")}


def _hh(value: Any, key: str) -> tuple[tuple[Message, ...], str]:
    """Split HH text at its LAST "\\n\\nAssistant:": (dialogue before as messages, final reply).
    The first "Human:" may come without its blank line; a transcript that does not split cleanly is a _RowProblem."""
    text = _str(value, key)
    cut = text.rfind("\n\nAssistant:")
    if cut < 0:
        raise _RowProblem(f"'{key}' has no '\\n\\nAssistant:' turn")
    parts = _HH_TURN.split("\n\n" + text[:cut].lstrip(" \n"))
    if parts[0].strip():
        raise _RowProblem(f"'{key}' has text before the first 'Human:' turn")
    prompt = tuple({"role": _HH_ROLE[r], "content": c.strip()} for r, c in zip(parts[1::2], parts[2::2]))
    if not prompt or prompt[0]["role"] != "user":
        raise _RowProblem(f"'{key}' does not start with a 'Human:' turn")
    reply = text[cut + len("\n\nAssistant:"):].strip()
    turns = [(f"turn {i} ({m['role']})", m) for i, m in enumerate(prompt, 1)]
    for where, m in turns + [("final reply", {"role": "assistant", "content": reply})]:
        if left := _HH_LEFT[m["role"]].search(m["content"]):
            raise _RowProblem(f"'{key}' {where} still holds a turn marker ({left.group()!r}): it does not split cleanly")
    return prompt, reply


def text_prompt(text: str) -> tuple[Message, ...]:
    """A string prompt as messages: an HH-style dialogue (it opens with a "Human:" turn, blank line or not;
    a single "Human: .." turn too) split into its turns, a trailing empty "Assistant:" cue dropped; else one
    user turn."""
    if not text.lstrip(" \n").startswith("Human:"):
        return ({"role": "user", "content": text},)
    parts = _HH_TURN.split("\n\n" + text.lstrip(" \n"))
    turns = [{"role": _HH_ROLE[r], "content": c.strip()} for r, c in zip(parts[1::2], parts[2::2])]
    if turns[-1]["role"] == "assistant" and not turns[-1]["content"]:
        turns.pop()
    return tuple(turns)


TIES = (0, 1.5)   # AlpacaFarm / AlpacaEval preference values that mean "neither output"


def _preference(value: Any) -> int:
    number = value.strip() if isinstance(value, str) else value
    if isinstance(number, str):
        try:
            number = float(number)
        except ValueError:
            pass
    if isinstance(number, (int, float)) and not isinstance(number, bool):
        if number in (1, 2):
            return int(number)
        if number in TIES:
            raise _Skip(f"tie: skipped (preference {value!r}: neither output is preferred)")
    raise _RowProblem(f"'preference' must be 1 or 2, got {type_name(value)} {repr(value)[:40]}")


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
    base = _prompt(row[prompt_key], prompt_key)
    prompt, chosen, rejected, r_prompt = _both(_response, row, ("chosen", "rejected"), base)
    if isinstance(row[prompt_key], str):
        prompt, r_prompt = (p[len(base):] if len(p) > len(base) else p for p in (prompt, r_prompt))
    return prompt, chosen, rejected, r_prompt


def _alpacafarm(row: dict) -> Sides:
    text = _str(row["instruction"], "instruction")
    extra = "" if row.get("input") is None else _str(row["input"], "input")
    prompt = text_prompt(text + "\n" + extra if extra else text)
    outputs = _str(row["output_1"], "output_1"), _str(row["output_2"], "output_2")
    first = _preference(row["preference"]) == 1
    return prompt, outputs[0 if first else 1], outputs[1 if first else 0], prompt


def _openai(row: dict) -> Sides:
    if not isinstance(row["input"], dict) or "messages" not in row["input"]:
        raise _RowProblem(f"'input' must be an object with a 'messages' list, got {type_name(row['input'])}")
    prompt = _messages(row["input"]["messages"], "input.messages")
    return _both(_response, row, ("preferred_output", "non_preferred_output"), prompt)


def _persona(row: dict) -> Sides:
    """prompt = question; chosen = answer_matching_behavior; rejected = answer_not_matching_behavior.

    The answers are kept verbatim, leading space included (" Yes"): that is the token the persona
    evals score, and stripping it would change the tokenisation the paper's single-token runs use.
    """
    prompt = text_prompt(_str(row["question"], "question"))
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
            if not isinstance(value, dict):
                raise _RowProblem(f"expected a JSON object, got {type_name(value)}")
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
            own += 1
        except _Skip as e:
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
