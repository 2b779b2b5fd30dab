"""The decision log's events (the package docstring is its contract): `Event` and `Decision`, the writes
(`record`, `record_many`, `undo`), the history, the clock, and the checks every value passes before it is
stored. The file and its schema are in ches.review.decisions.db; what is in force, in ches.review.decisions.inforce.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from ches.review.decisions.db import EVENT_COLUMNS, INSERT, NOT_UNDONE, Db, connect, write
from ches.review.decisions.values import DECISIONS


def clock() -> datetime:
    """The wall clock that stamps `created_at` and `imported_at`: read by people, never used for order.
    Tests replace it (monkeypatch `ches.review.decisions.log.clock`)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Event:
    """One row of the log, exactly as stored."""
    id: int
    seq: int                  # its position in this log: THE order (contract 5)
    pair_id: str
    annotator: str
    action: str               # one of ACTIONS
    note: str
    undoes: int | None        # for 'undo': the id of the event it cancels; else None
    created_at: str           # when the person acted (their machine's clock), ISO-8601 UTC with microseconds
    session: str | None
    batch: str | None         # shared by the events of one record_many call
    imported_at: str | None   # when it was imported into this log; None: recorded here
    adjudicated: bool = False # an adjudicator's decision for the team, not this person's own annotation

    @classmethod
    def from_row(cls, row: tuple) -> "Event":
        """An Event from a row of db.EVENT_COLUMNS (SQLite stores `adjudicated` as 0 / 1)."""
        return cls(*row[:-1], adjudicated=bool(row[-1]))


@dataclass(frozen=True)
class Decision:
    """The decision currently in force for one pair (derived from the log)."""
    pair_id: str
    decision: str             # one of DECISION_VALUES
    note: str
    annotator: str
    at: str                   # created_at of the event that set it
    event_id: int
    adjudicated: bool = False # set by an adjudicator for the team (see `adjudications`)


# ---------------------------------------------------------------------------------------- writes

def init(db: Db) -> None:
    """Create the database file and its schema if missing (idempotent; every call does it anyway)."""
    with connect(db):
        pass


def record(db: Db, pair_id: str, decision: str, *, annotator: str, note: str = "",
           session: str | None = None, adjudicate: bool = False) -> int:
    """Append `annotator`'s `decision` on `pair_id`; return its event id once committed to disk.

    `decision` is 'keep', 'drop', 'flag' or 'clear' (withdraw this annotator's decision).
    `adjudicate=True` records it as an adjudicator's decision that settles the pair for the team
    (`adjudications`); it is never that person's own annotation (`current_by_annotator`).
    Raises ValueError for an unknown decision, an empty pair_id or annotator, or a non-str note.
    `annotator` is stored without surrounding spaces; `pair_id` is stored verbatim.
    """
    return _append(db, [pair_id], decision, annotator, note, session, batch=None, adjudicate=adjudicate)[0]


def record_many(db: Db, pair_ids: Iterable[str], decision: str, *, annotator: str, note: str = "",
                session: str | None = None) -> list[int]:
    """`record` for each distinct pair id, as ONE action (contract 4): all committed together or none,
    undone together. Returns the event ids, in the order the pair ids came."""
    return _append(db, list(dict.fromkeys(pair_ids)), decision, annotator, note, session,
                   batch=uuid.uuid4().hex)


def _append(db: Db, pair_ids: list[str], decision: str, annotator: str, note: str, session: str | None,
            batch: str | None, adjudicate: bool = False) -> list[int]:
    pair_ids = [require_text("pair_id", p) for p in pair_ids]
    annotator = require_annotator(annotator)
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}; got {decision!r}")
    require_note(note)
    require_optional_text("session", session)
    at = now()
    with connect(db) as conn, write(conn):
        return [int(conn.execute(INSERT, (p, annotator, decision, note, None, at, session, batch, None,
                                           int(bool(adjudicate)))).lastrowid) for p in pair_ids]


def undo(db: Db, *, annotator: str, session: str | None = None, pair_id: str | None = None) -> list[Event]:
    """Cancel `annotator`'s last not-yet-undone action recorded here (contract 6); return its events,
    last first ([] when nothing is left to undo).

    With `pair_id`: only their last not-yet-undone event on that pair (a decision or an adjudication; of a
    bulk action, only this pair's event). Appends the 'undo' events (with `session`) and commits before
    returning. Other annotators' decisions, and imported events, are never touched.
    """
    annotator = require_annotator(annotator)
    require_optional_text("session", session)
    if pair_id is not None:
        pair_id = require_text("pair_id", pair_id)
    mine = (f"e.annotator = ?1 AND e.action <> 'undo' AND e.imported_at IS NULL AND {NOT_UNDONE} "
            "AND (?2 IS NULL OR e.pair_id = ?2)")
    with connect(db) as conn, write(conn):
        row = conn.execute(f"SELECT {EVENT_COLUMNS} FROM events e WHERE {mine} ORDER BY e.seq DESC LIMIT 1",
                           (annotator, pair_id)).fetchone()
        if row is None:
            return []
        targets = [Event.from_row(row)]
        if targets[0].batch is not None and pair_id is None:
            targets = [Event.from_row(r) for r in conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events e WHERE {mine} AND e.batch = ?3 ORDER BY e.seq DESC",
                (annotator, None, targets[0].batch))]
        at = now()
        for t in targets:
            conn.execute(INSERT, (t.pair_id, annotator, "undo", "", t.id, at, session, None, None, 0))
        return targets


# ----------------------------------------------------------------------------------------- reads

def history(db: Db, pair_id: str | None = None) -> list[Event]:
    """Every event in the log's order (undo events included), optionally only those about `pair_id`."""
    with connect(db) as conn:
        rows = conn.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE ?1 IS NULL OR pair_id = ?1 ORDER BY seq",
                            (pair_id,)).fetchall()
    return [Event.from_row(row) for row in rows]


# ------------------------------------------------------------------------ the clock and the checks

def now() -> str:
    """The clock's time as stored: ISO-8601 UTC with microseconds."""
    return clock().astimezone(timezone.utc).isoformat(timespec="microseconds")


def show(value: object, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters: safe to print whatever the value holds."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 5]}...{text[-2:]}"


def require_unicode(name: str, value: str) -> str:
    """`value` unless it holds a lone surrogate (text no file or database can store as UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{name} holds {value[e.start]!r} at character {e.start + 1}, a lone surrogate, "
                         "which is not valid Unicode text") from None
    return value


def require_text(name: str, value: object) -> str:
    """`value` if it is a non-empty, valid Unicode string; else a ValueError naming `name`."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {show(value)}")
    return require_unicode(name, value)


def require_annotator(annotator: object) -> str:
    """An annotator's name as stored: non-empty text without surrounding spaces."""
    return require_text("annotator", annotator).strip()


def require_note(note: object) -> str:
    """`note` if it is valid Unicode text (empty allowed)."""
    if not isinstance(note, str):
        raise ValueError(f"note must be a string, got {type(note).__name__}")
    return require_unicode("note", note)


def require_optional_text(name: str, value: object) -> str | None:
    """`value` if it is None or valid Unicode text."""
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a string or null, got {type(value).__name__}")
    return value if value is None else require_unicode(name, value)
