"""The data model of a preference dataset: a `Pair` per usable row, a `RowError` per unusable one.

Contract (kept by every loader: ches.engine.records, files and hub)
1. Every file-level problem (missing file, unknown format, unreadable container) raises `DataError`.
2. Every row-level problem becomes a `RowError(row, reason)` in `Dataset.errors`; the good rows load.
   A row that is readable but holds no preference (an AlpacaEval tie) is in `Dataset.skipped` instead.
3. `row` is 1-based: the line number for JSON Lines, the element/record number otherwise.
4. `pair_id` is a content hash of the normalised pair, so it survives re-ordering, re-export and
   re-loading the same pair from another format.
5. Quirks are flagged on the pair, never dropped (see FLAGS).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

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
    skipped: list[RowError] = field(default_factory=list)  # readable rows left out on purpose (ties)
    limit: int | None = None                   # the first N usable pairs asked for (None: all)
    records_read: int = 0                      # source records read (reading stops at `limit`)
    source_records: int | None = None          # records in the whole source, when known

    @property
    def subset(self) -> dict:
        """What part of the source this is: {limit, records_read, source_records} (a run's plan keeps it)."""
        return {"limit": self.limit, "records_read": self.records_read, "source_records": self.source_records}

    @property
    def rows_skipped(self) -> list[dict]:
        """Every row not in `pairs`, with its reason: unreadable rows and ties, in row order."""
        return [{"row": e.row, "reason": e.reason} for e in sorted(self.errors + self.skipped, key=lambda e: e.row)]

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
