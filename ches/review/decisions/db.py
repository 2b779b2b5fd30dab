"""The decision log's database file: its schema (the `events` table, its indexes and append-only triggers) and
the upgrades from older versions, a connection (`connect`) and a write transaction (`write`), and the SQL the
modules share (`EVENT_COLUMNS`, `INSERT`, `NOT_UNDONE`). The package docstring is the log's contract.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator

from ches.review.decisions.values import ACTIONS

BUSY_TIMEOUT_S = 30.0
SCHEMA_VERSION = 4             # v2 added `batch` (record_many); v3 `seq` (the order) and `imported_at`;
                               # v4 `adjudicated` (an adjudicator's decision that settles a pair for the team)

Db = str | os.PathLike[str]


class DecisionLogError(ValueError):
    """The file is not a decision log this code can open (another table, or a newer schema)."""


# The stored schema: its CHECK lists ACTIONS, and the queries below spell 'undo' and 'clear' in SQL; a change
# to the vocabulary is a change of the file format (SCHEMA_VERSION + 1 and an upgrade in `_ensure_schema`).
_SQL_ACTIONS = ", ".join(f"'{a}'" for a in ACTIONS)
_NEXT_SEQ = "(SELECT COALESCE(MAX(seq), 0) + 1 FROM events)"
TABLE = f"""CREATE TABLE events (
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
INDEXES_AND_TRIGGERS = (
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
COLUMNS = ("id", "seq", "pair_id", "annotator", "action", "note", "undoes", "created_at", "session", "batch",
            "imported_at", "adjudicated")
EVENT_COLUMNS = ", ".join(COLUMNS)
INSERT = ("INSERT INTO events (seq, pair_id, annotator, action, note, undoes, created_at, session, batch, "
          f"imported_at, adjudicated) VALUES ({_NEXT_SEQ}, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
NOT_UNDONE = "NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes = e.id)"


@contextlib.contextmanager
def connect(db: Db) -> Iterator[sqlite3.Connection]:
    """A connection to the log at `db` (the file and its schema created or upgraded first): autocommit, WAL,
    synchronous FULL, a busy timeout of BUSY_TIMEOUT_S; closed on leaving."""
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
def write(conn: sqlite3.Connection) -> Iterator[None]:
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
    with write(conn):
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
            conn.execute(TABLE)
            for statement in INDEXES_AND_TRIGGERS:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _rebuild_from_v2(conn: sqlite3.Connection) -> None:
    """Rebuild a v1/v2 log as the current schema inside the caller's transaction (contract 10): every row
    and id kept; `seq` in v2's order (created_at, annotator, id), undo events after the rest; `imported_at`
    NULL; nothing adjudicated."""
    old_columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    high_water = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    conn.execute("ALTER TABLE events RENAME TO events_before_v3")
    conn.execute(TABLE)
    batch = "batch" if "batch" in old_columns else "NULL"                   # v1 had no batches
    conn.execute(
        f"""INSERT INTO events ({", ".join(COLUMNS[:-1])})
            SELECT id, ROW_NUMBER() OVER (ORDER BY action = 'undo', created_at, annotator, id),
                   pair_id, annotator, action, note, undoes, created_at, session, {batch}, NULL
            FROM events_before_v3""")
    conn.execute("DROP TABLE events_before_v3")                              # its triggers and indexes too
    if high_water is not None:                                               # ids are never reused
        conn.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'events'", high_water)
    for statement in INDEXES_AND_TRIGGERS:
        conn.execute(statement)
