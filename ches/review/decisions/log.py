"""The decision log itself (the package docstring is its contract): the schema and its upgrades, writes
(`record`, `record_many`, `undo`), reads (`current`, `current_by_annotator`, `adjudications`, `history`,
`counts`) and the clock.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from ches.review.decisions.values import ACTIONS, DECISION_VALUES, DECISIONS

BUSY_TIMEOUT_S = 30.0
SCHEMA_VERSION = 4             # v2 added `batch` (record_many); v3 `seq` (the order) and `imported_at`;
                               # v4 `adjudicated` (an adjudicator's decision that settles a pair for the team)

Db = str | os.PathLike[str]


def clock() -> datetime:
    """The wall clock that stamps `created_at` and `imported_at`: read by people, never used for order.
    Tests replace it (monkeypatch `ches.review.decisions.log.clock`)."""
    return datetime.now(timezone.utc)


class DecisionLogError(ValueError):
    """The file is not a decision log this code can open (another table, or a newer schema)."""


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


# The stored schema: its CHECK lists ACTIONS, and the queries below spell 'undo' and 'clear' in SQL; a change
# to the vocabulary is a change of the file format (SCHEMA_VERSION + 1 and an upgrade in `_ensure_schema`).
_SQL_ACTIONS = ", ".join(f"'{a}'" for a in ACTIONS)
_NEXT_SEQ = "(SELECT COALESCE(MAX(seq), 0) + 1 FROM events)"
_TABLE = f"""CREATE TABLE events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        seq         INTEGER NOT NULL,
        pair_id     TEXT NOT NULL CHECK (pair_id <> ''),
        annotator   TEXT NOT NULL CHECK (annotator <> ''),
        action      TEXT NOT NULL CHECK (action IN ({_SQL_ACTIONS})),
        note        TEXT NOT NULL DEFAULT '',
        undoes      INTEGER NULL,
        created_at  TEXT NOT NULL,
        session     TEXT NULL,
        batch       TEXT NULL,
        imported_at TEXT NULL,
        adjudicated INTEGER NOT NULL DEFAULT 0 CHECK (adjudicated IN (0, 1)),
        CHECK ((action = 'undo') = (undoes IS NOT NULL))
    )"""
_INDEXES_AND_TRIGGERS = (
    "CREATE UNIQUE INDEX events_by_seq ON events (seq)",
    "CREATE INDEX events_by_annotator ON events (annotator, seq)",                     # undo's order
    "CREATE INDEX events_by_batch ON events (batch) WHERE batch IS NOT NULL",
    "CREATE INDEX events_by_key ON events (pair_id, annotator, action, created_at)",   # import's duplicates
    "CREATE UNIQUE INDEX events_undo_once ON events (undoes) WHERE undoes IS NOT NULL",
    """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
       BEGIN SELECT RAISE(ABORT, 'events is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
       BEGIN SELECT RAISE(ABORT, 'events is append-only: DELETE refused'); END""",
    # INSERT OR REPLACE deletes the conflicting row without firing the DELETE trigger: refuse it here.
    """CREATE TRIGGER events_no_overwrite BEFORE INSERT ON events
       WHEN EXISTS (SELECT 1 FROM events WHERE id = NEW.id)
       BEGIN SELECT RAISE(ABORT, 'events is append-only: an event with this id exists'); END""",
    f"""CREATE TRIGGER events_in_order BEFORE INSERT ON events WHEN NEW.seq IS NOT {_NEXT_SEQ}
       BEGIN SELECT RAISE(ABORT, 'events is append-only: seq must be the next position in the log'); END""",
    # The second check duplicates events_undo_once, but as a trigger it also stops OR REPLACE.
    """CREATE TRIGGER events_undo_target BEFORE INSERT ON events WHEN NEW.action = 'undo'
       BEGIN
         SELECT RAISE(ABORT, 'an undo must cancel an earlier keep/drop/flag/clear event of the same annotator and pair')
         WHERE NOT EXISTS (SELECT 1 FROM events WHERE id = NEW.undoes AND action <> 'undo'
                           AND annotator = NEW.annotator AND pair_id = NEW.pair_id);
         SELECT RAISE(ABORT, 'that event is already undone')
         WHERE EXISTS (SELECT 1 FROM events WHERE undoes = NEW.undoes);
       END""",
)
_COLUMNS = ("id", "seq", "pair_id", "annotator", "action", "note", "undoes", "created_at", "session", "batch",
            "imported_at", "adjudicated")
_EVENT_COLUMNS = ", ".join(_COLUMNS)
_INSERT = ("INSERT INTO events (seq, pair_id, annotator, action, note, undoes, created_at, session, batch, "
           f"imported_at, adjudicated) VALUES ({_NEXT_SEQ}, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_NOT_UNDONE = "NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes = e.id)"


# ---------------------------------------------------------------------------------------- writes

def init(db: Db) -> None:
    """Create the database file and its schema if missing (idempotent; every call does it anyway)."""
    with _connect(db):
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
    pair_ids = [_require_text("pair_id", p) for p in pair_ids]
    annotator = _require_annotator(annotator)
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}; got {decision!r}")
    _require_note(note)
    _require_optional_text("session", session)
    at = _now()
    with _connect(db) as conn, _write(conn):
        return [int(conn.execute(_INSERT, (p, annotator, decision, note, None, at, session, batch, None,
                                           int(bool(adjudicate)))).lastrowid) for p in pair_ids]


def undo(db: Db, *, annotator: str, session: str | None = None, pair_id: str | None = None) -> list[Event]:
    """Cancel `annotator`'s last not-yet-undone action recorded here (contract 6); return its events,
    last first ([] when nothing is left to undo).

    With `pair_id`: only their last not-yet-undone event on that pair (a decision or an adjudication; of a
    bulk action, only this pair's event). Appends the 'undo' events (with `session`) and commits before
    returning. Other annotators' decisions, and imported events, are never touched.
    """
    annotator = _require_annotator(annotator)
    _require_optional_text("session", session)
    if pair_id is not None:
        pair_id = _require_text("pair_id", pair_id)
    mine = (f"e.annotator = ?1 AND e.action <> 'undo' AND e.imported_at IS NULL AND {_NOT_UNDONE} "
            "AND (?2 IS NULL OR e.pair_id = ?2)")
    with _connect(db) as conn, _write(conn):
        row = conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events e WHERE {mine} ORDER BY e.seq DESC LIMIT 1",
                           (annotator, pair_id)).fetchone()
        if row is None:
            return []
        targets = [_event(row)]
        if targets[0].batch is not None and pair_id is None:
            targets = [_event(r) for r in conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events e WHERE {mine} AND e.batch = ?3 ORDER BY e.seq DESC",
                (annotator, None, targets[0].batch))]
        at = _now()
        for t in targets:
            conn.execute(_INSERT, (t.pair_id, annotator, "undo", "", t.id, at, session, None, None, 0))
        return targets


# ----------------------------------------------------------------------------------------- reads

def current(db: Db, *, annotator: str | None = None) -> dict[str, Decision]:
    """The decision in force per pair_id: `annotator`'s own, or (None) the last in the log's order
    across annotators (contract 5). Annotations only: adjudications are read by `adjudications`.

    Pairs with no decision (never decided, cleared, or undone back to nothing) are absent.
    """
    combined: dict[str, Decision] = {}
    for d in _in_force(db, annotator):              # in the log's order: the last one per pair stays
        combined[d.pair_id] = d
    return combined


def current_by_annotator(db: Db, *, annotator: str | None = None) -> dict[str, dict[str, Decision]]:
    """{annotator: {pair_id: Decision}}: each annotator's own decisions in force (contract 5)."""
    out: dict[str, dict[str, Decision]] = {}
    for d in _in_force(db, annotator):
        out.setdefault(d.annotator, {})[d.pair_id] = d
    return out


def adjudications(db: Db) -> dict[str, Decision]:
    """{pair_id: Decision}: the adjudication in force per pair, the last not-undone one of any adjudicator
    ('clear' withdraws it: the pair is then unsettled again)."""
    out: dict[str, Decision] = {}
    for d in _in_force(db, None, adjudicated=True, per_annotator=False):
        out[d.pair_id] = d
    return out


def _in_force(db: Db, annotator: str | None, *, adjudicated: bool = False,
              per_annotator: bool = True) -> list[Decision]:
    """Every (pair, annotator)'s decision in force (or per pair only), in the log's order."""
    if annotator is not None:
        annotator = _require_annotator(annotator)
    partition = "e.pair_id, e.annotator" if per_annotator else "e.pair_id"
    with _connect(db) as conn:
        rows = conn.execute(
            f"""SELECT pair_id, action, note, annotator, created_at, id, adjudicated FROM (
                    SELECT e.*, ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY e.seq DESC) AS nth
                    FROM events e
                    WHERE e.action <> 'undo' AND e.adjudicated = ?2 AND (?1 IS NULL OR e.annotator = ?1)
                      AND {_NOT_UNDONE})
                WHERE nth = 1 AND action <> 'clear'       -- the last not-undone action, unless a clear
                ORDER BY seq""", (annotator, int(adjudicated))).fetchall()
    return [Decision(*row[:-1], adjudicated=bool(row[-1])) for row in rows]


def history(db: Db, pair_id: str | None = None) -> list[Event]:
    """Every event in the log's order (undo events included), optionally only those about `pair_id`."""
    with _connect(db) as conn:
        rows = conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE ?1 IS NULL OR pair_id = ?1 ORDER BY seq",
                            (pair_id,)).fetchall()
    return [_event(row) for row in rows]


def counts(db: Db, *, annotator: str | None = None) -> dict[str, int]:
    """{'keep': n, 'drop': n, 'flag': n} over `current(db, annotator=annotator)`; every key present."""
    out = dict.fromkeys(DECISION_VALUES, 0)
    for d in current(db, annotator=annotator).values():
        out[d.decision] += 1
    return out


# ------------------------------------------------------------------------------------- internals

def _event(row: tuple) -> Event:
    """An Event from a row of `_EVENT_COLUMNS` (SQLite stores `adjudicated` as 0 / 1)."""
    return Event(*row[:-1], adjudicated=bool(row[-1]))


@contextlib.contextmanager
def _connect(db: Db) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(os.fspath(db), timeout=BUSY_TIMEOUT_S, isolation_level=None)  # autocommit; we BEGIN
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]   # WAL persists in the file: set it once
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while str(mode).lower() != "wal":
            try:                  # switching can answer "locked" at once, without the busy handler: retry
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch {os.fspath(db)!r} to WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        _ensure_schema(conn, db)
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: takes the write lock up front (so read-then-write is race-free)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):  # keep the original error; close() rolls back anyway
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _ensure_schema(conn: sqlite3.Connection, db: Db) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise DecisionLogError(f"{os.fspath(db)!r} has decision log schema v{version}; this version of "
                               f"CHES Studio reads up to v{SCHEMA_VERSION} (upgrade it)")
    with _write(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return                                   # another process created or upgraded it while we waited
        has_events = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone()
        if version in (1, 2):
            _rebuild_from_v2(conn)
        elif version == 3:                           # v4 only adds a column
            conn.execute("ALTER TABLE events ADD COLUMN adjudicated INTEGER NOT NULL DEFAULT 0 "
                         "CHECK (adjudicated IN (0, 1))")
        elif has_events:
            raise DecisionLogError(f"{os.fspath(db)!r} already has an 'events' table that is not a CHES decision log")
        else:
            conn.execute(_TABLE)
            for statement in _INDEXES_AND_TRIGGERS:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _rebuild_from_v2(conn: sqlite3.Connection) -> None:
    """Rebuild a v1/v2 log as the current schema inside the caller's transaction (contract 10): every row
    and id kept; `seq` in v2's order (created_at, annotator, id), undo events after the rest; `imported_at`
    NULL; nothing adjudicated."""
    old_columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    high_water = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    conn.execute("ALTER TABLE events RENAME TO events_before_v3")
    conn.execute(_TABLE)
    batch = "batch" if "batch" in old_columns else "NULL"                   # v1 had no batches
    conn.execute(
        f"""INSERT INTO events ({", ".join(_COLUMNS[:-1])})
            SELECT id, ROW_NUMBER() OVER (ORDER BY action = 'undo', created_at, annotator, id),
                   pair_id, annotator, action, note, undoes, created_at, session, {batch}, NULL
            FROM events_before_v3""")
    conn.execute("DROP TABLE events_before_v3")                              # its triggers and indexes too
    if high_water is not None:                                               # ids are never reused
        conn.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'events'", high_water)
    for statement in _INDEXES_AND_TRIGGERS:
        conn.execute(statement)


def _now() -> str:
    return clock().astimezone(timezone.utc).isoformat(timespec="microseconds")


def _show(value: object, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters: safe to print whatever the value holds."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 5]}...{text[-2:]}"


def _require_unicode(name: str, value: str) -> str:
    """`value` unless it holds a lone surrogate (text no file or database can store as UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{name} holds {value[e.start]!r} at character {e.start + 1}, a lone surrogate, "
                         "which is not valid Unicode text") from None
    return value


def _require_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {_show(value)}")
    return _require_unicode(name, value)


def _require_annotator(annotator: object) -> str:
    return _require_text("annotator", annotator).strip()


def _require_note(note: object) -> str:
    if not isinstance(note, str):
        raise ValueError(f"note must be a string, got {type(note).__name__}")
    return _require_unicode("note", note)


def _require_optional_text(name: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a string or null, got {type(value).__name__}")
    return value if value is None else _require_unicode(name, value)
