"""Annotators' keep / drop / flag decisions, kept in an append-only SQLite event log.

Contract
1. One SQLite file per workspace (`db`, a path). Every call opens its own connection (WAL,
   synchronous=FULL, busy_timeout 30 s) and closes it, so threads and processes may call at once.
2. The `events` table is the only source of truth and only ever grows: triggers abort every UPDATE,
   every DELETE and every INSERT that would overwrite a row (INSERT OR REPLACE). Current decisions,
   history and counts are all derived by reading it.
3. `record` and `undo` return only after their event is committed and fsynced: an event id they
   returned survives the process being killed (and, with synchronous=FULL, a power cut).
4. `record_many` is one action over many pairs: one transaction, one fsync, one `created_at`, and one
   `batch` id shared by its events.
5. One order everywhere, "latest": by `created_at` (the time of the original event, kept on import),
   ties broken by annotator name, then by event id. Per (pair_id, annotator) the current decision is
   that annotator's latest not-undone action; 'clear' means "no decision". Across annotators the
   latest of those wins; `current_by_annotator` keeps them apart.
6. `undo` cancels `annotator`'s latest not-undone action (a single event, or every event of a
   `record_many` batch) by appending one 'undo' event per cancelled event (`undoes` names it).
   Repeated undos walk further back, so n undos restore the state from n actions ago. An undo is
   never itself undone: to redo, record the decision again.
7. Decisions are keyed by `pair_id` (the content hash from ches.engine.pairs), so they carry over to every
   scoring run over the same pairs.
8. `export_jsonl` writes the whole log atomically. `import_jsonl` appends the events of such a file,
   skips events already present (same pair_id, annotator, action, note, created_at), and reports
   bad lines by 1-based line number while keeping the good ones. An imported event keeps its
   `created_at`, so an older decision imported later never overrides a newer one (rule 5).
9. The decision values (KEEP, DROP, FLAG, CLEAR, UNDECIDED) are defined here and nowhere else.

Over 400 lines: the SQL schema, the writes, the reads and the JSONL format are one contract (the rules
above) over one event log, and each part leans on the others' internals.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import NamedTuple

from ches.atomic import atomic_open

__all__ = [
    "ACTIONS", "CLEAR", "DECISIONS", "DECISION_VALUES", "DROP", "FLAG", "KEEP", "STATUSES", "UNDECIDED", "UNDO",
    "Decision", "Event", "ImportResult", "LineError",
    "counts", "current", "current_by_annotator", "export_jsonl", "history", "import_jsonl",
    "init", "record", "record_many", "undo",
]

# The one vocabulary of decision values: every other module (browse, export, charts, cli, ui, pages) imports it.
KEEP, DROP, FLAG = "keep", "drop", "flag"
CLEAR = "clear"                                # recorded to withdraw a decision; never in force
UNDO = "undo"                                  # the log's own action (see `undo`); never recorded by hand
UNDECIDED = "undecided"                        # a pair's status when no decision is in force; never stored
DECISION_VALUES = (KEEP, DROP, FLAG)           # what a decision in force can be (Decision.decision)
DECISIONS = (*DECISION_VALUES, CLEAR)          # what an annotator can record
ACTIONS = (*DECISIONS, UNDO)                   # what the log can hold
STATUSES = (UNDECIDED, *DECISION_VALUES)       # a pair's review status (Browse's filter, the Map's colours)
BUSY_TIMEOUT_S = 30.0
SCHEMA_VERSION = 2             # v2 added `batch` (record_many)

Db = str | os.PathLike[str]


@dataclass(frozen=True)
class Event:
    """One row of the log, exactly as stored."""
    id: int
    pair_id: str
    annotator: str
    action: str               # one of ACTIONS
    note: str
    undoes: int | None        # for 'undo': the id of the event it cancels; else None
    created_at: str           # ISO-8601 UTC with microseconds, e.g. 2025-01-31T12:00:00.123456+00:00
    session: str | None
    batch: str | None = None  # shared by the events of one record_many call


@dataclass(frozen=True)
class Decision:
    """The decision currently in force for one pair (derived from the log)."""
    pair_id: str
    decision: str             # one of DECISION_VALUES
    note: str
    annotator: str
    at: str                   # created_at of the event that set it
    event_id: int


@dataclass(frozen=True)
class LineError:
    line: int                 # 1-based line number in the imported file
    reason: str


class ImportResult(NamedTuple):
    imported: int
    skipped_duplicates: int
    errors: list[LineError]


_V2_INDEXES = ("CREATE INDEX events_by_time ON events (annotator, created_at, id)",    # undo's order
               "CREATE INDEX events_by_batch ON events (batch) WHERE batch IS NOT NULL")
# The stored schema: its CHECK lists ACTIONS, and the queries below spell 'undo' and 'clear' in SQL; a change
# to the vocabulary is a change of the file format (SCHEMA_VERSION + 1 and a migration in `_connect`).
_SQL_ACTIONS = ", ".join(f"'{a}'" for a in ACTIONS)
_SCHEMA = (
    f"""CREATE TABLE events (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        pair_id    TEXT NOT NULL CHECK (pair_id <> ''),
        annotator  TEXT NOT NULL CHECK (annotator <> ''),
        action     TEXT NOT NULL CHECK (action IN ({_SQL_ACTIONS})),
        note       TEXT NOT NULL DEFAULT '',
        undoes     INTEGER NULL,
        created_at TEXT NOT NULL,
        session    TEXT NULL,
        batch      TEXT NULL,
        CHECK ((action = 'undo') = (undoes IS NOT NULL))
    )""",
    "CREATE INDEX events_by_annotator ON events (annotator, id)",
    *_V2_INDEXES,
    "CREATE INDEX events_by_key ON events (pair_id, annotator, action, created_at)",
    "CREATE UNIQUE INDEX events_undo_once ON events (undoes) WHERE undoes IS NOT NULL",
    """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
       BEGIN SELECT RAISE(ABORT, 'events is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
       BEGIN SELECT RAISE(ABORT, 'events is append-only: DELETE refused'); END""",
    # INSERT OR REPLACE deletes the conflicting row without firing the DELETE trigger: refuse it here.
    """CREATE TRIGGER events_no_overwrite BEFORE INSERT ON events
       WHEN EXISTS (SELECT 1 FROM events WHERE id = NEW.id)
       BEGIN SELECT RAISE(ABORT, 'events is append-only: an event with this id exists'); END""",
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

_EVENT_COLUMNS = "id, pair_id, annotator, action, note, undoes, created_at, session, batch"
_LATEST_FIRST = "e.created_at DESC, e.annotator DESC, e.id DESC"   # rule 5, newest first
_NOT_UNDONE = "NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes = e.id)"


# ---------------------------------------------------------------------------------------- writes

def init(db: Db) -> None:
    """Create the database file and its schema if missing (idempotent; every call does it anyway)."""
    with _connect(db):
        pass


def record(db: Db, pair_id: str, decision: str, *, annotator: str, note: str = "",
           session: str | None = None) -> int:
    """Append `annotator`'s `decision` on `pair_id`; return its event id once committed to disk.

    `decision` is 'keep', 'drop', 'flag' or 'clear' (withdraw this annotator's decision).
    Raises ValueError for an unknown decision, an empty pair_id or annotator, or a non-str note.
    `annotator` is stored without surrounding spaces; `pair_id` is stored verbatim.
    """
    return _append(db, [pair_id], decision, annotator, note, session, batch=None)[0]


def record_many(db: Db, pair_ids: Iterable[str], decision: str, *, annotator: str, note: str = "",
                session: str | None = None) -> list[int]:
    """`record` for each distinct pair id, as ONE action (contract 4): all committed together or none,
    undone together. Returns the event ids, in the order the pair ids came."""
    return _append(db, list(dict.fromkeys(pair_ids)), decision, annotator, note, session,
                   batch=uuid.uuid4().hex)


def _append(db: Db, pair_ids: list[str], decision: str, annotator: str, note: str, session: str | None,
            batch: str | None) -> list[int]:
    pair_ids = [_require_text("pair_id", p) for p in pair_ids]
    annotator = _require_annotator(annotator)
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}; got {decision!r}")
    if not isinstance(note, str):
        raise ValueError(f"note must be a string, got {type(note).__name__}")
    _require_session(session)
    at = _now()
    with _connect(db) as conn, _write(conn):
        return [int(conn.execute(
            "INSERT INTO events (pair_id, annotator, action, note, undoes, created_at, session, batch) "
            "VALUES (?, ?, ?, ?, NULL, ?, ?, ?)", (p, annotator, decision, note, at, session, batch)).lastrowid)
            for p in pair_ids]


def undo(db: Db, *, annotator: str, session: str | None = None) -> list[Event]:
    """Cancel `annotator`'s latest not-yet-undone action (contract 6); return its events, newest first
    ([] when nothing is left to undo).

    Appends the 'undo' events (with `session`) and commits before returning. Other annotators'
    decisions are never touched.
    """
    annotator = _require_annotator(annotator)
    _require_session(session)
    with _connect(db) as conn, _write(conn):
        row = conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events e WHERE e.annotator = ? AND e.action <> 'undo' "
            f"AND {_NOT_UNDONE} ORDER BY {_LATEST_FIRST} LIMIT 1", (annotator,)).fetchone()
        if row is None:
            return []
        targets = [Event(*row)]
        if targets[0].batch is not None:
            targets = [Event(*r) for r in conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events e WHERE e.batch = ? AND e.annotator = ? "
                f"AND e.action <> 'undo' AND {_NOT_UNDONE} ORDER BY e.id DESC", (targets[0].batch, annotator))]
        at = _now()
        conn.executemany(
            "INSERT INTO events (pair_id, annotator, action, note, undoes, created_at, session) "
            "VALUES (?, ?, 'undo', '', ?, ?, ?)", [(t.pair_id, annotator, t.id, at, session) for t in targets])
        return targets


# ----------------------------------------------------------------------------------------- reads

def current(db: Db, *, annotator: str | None = None) -> dict[str, Decision]:
    """The decision in force per pair_id: `annotator`'s own, or (None) the latest across annotators.

    Pairs with no decision (never decided, cleared, or undone back to nothing) are absent.
    """
    if annotator is not None:
        return current_by_annotator(db, annotator=annotator).get(_require_annotator(annotator), {})
    combined: dict[str, Decision] = {}
    for per_pair in current_by_annotator(db).values():
        for pair_id, d in per_pair.items():
            best = combined.get(pair_id)
            if best is None or _latest_key(d) > _latest_key(best):
                combined[pair_id] = d
    return combined


def _latest_key(d: Decision) -> tuple[str, str, int]:
    """Contract 5's order, as a sort key (the SQL spells the same order in _LATEST_FIRST)."""
    return d.at, d.annotator, d.event_id


def current_by_annotator(db: Db, *, annotator: str | None = None) -> dict[str, dict[str, Decision]]:
    """{annotator: {pair_id: Decision}}: each annotator's own decisions in force (contract 5)."""
    if annotator is not None:
        annotator = _require_annotator(annotator)
    with _connect(db) as conn:
        rows = conn.execute(
            f"""SELECT pair_id, action, note, annotator, created_at, id FROM (
                    SELECT e.*, ROW_NUMBER() OVER (PARTITION BY e.pair_id, e.annotator
                                                   ORDER BY {_LATEST_FIRST}) AS nth
                    FROM events e
                    WHERE e.action <> 'undo' AND (?1 IS NULL OR e.annotator = ?1) AND {_NOT_UNDONE})
                WHERE nth = 1 AND action <> 'clear'       -- the latest not-undone action, unless a clear
                ORDER BY id""", (annotator,)).fetchall()
    out: dict[str, dict[str, Decision]] = {}
    for row in rows:
        d = Decision(*row)
        out.setdefault(d.annotator, {})[d.pair_id] = d
    return out


def history(db: Db, pair_id: str | None = None) -> list[Event]:
    """Every event in log order (undo events included), optionally only those about `pair_id`."""
    with _connect(db) as conn:
        rows = conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE ?1 IS NULL OR pair_id = ?1 ORDER BY id",
                            (pair_id,)).fetchall()
    return [Event(*row) for row in rows]


def counts(db: Db, *, annotator: str | None = None) -> dict[str, int]:
    """{'keep': n, 'drop': n, 'flag': n} over `current(db, annotator=annotator)`; every key present."""
    out = dict.fromkeys(DECISION_VALUES, 0)
    for d in current(db, annotator=annotator).values():
        out[d.decision] += 1
    return out


# ------------------------------------------------------------------------------- export / import

def export_jsonl(db: Db, path: str | os.PathLike[str]) -> int:
    """Write every event to `path` as JSON Lines, atomically (an old file survives a failed export).

    Returns the number of events written. Each line holds the Event fields; `id`/`undoes` let an
    import link undo events to the events they cancel.
    """
    n = 0
    with _connect(db) as conn, atomic_open(path, "w") as f:
        for row in conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events ORDER BY id"):
            f.write(_event_line(Event(*row)))
            n += 1
    return n


def import_jsonl(db: Db, path: str | os.PathLike[str]) -> ImportResult:
    """Append the events in a JSON Lines file written by `export_jsonl` (contract 7).

    Returns (imported, skipped_duplicates, errors); blank lines are ignored. The good lines are
    committed together in one transaction. An undo line must name, in `undoes`, the `id` of an
    earlier line of the same file; an undo whose target is already undone here counts as a duplicate.
    """
    imported = skipped = 0
    errors: list[LineError] = []
    local_id: dict[int, int] = {}          # file's event id -> this database's event id
    with open(path, "rb") as f, _connect(db) as conn, _write(conn):
        for lineno, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                errors.append(LineError(lineno, f"not UTF-8 ({e.reason} at byte {e.start})"))
                continue
            if not text.strip():
                continue
            try:
                ev = _parse_line(text)
                undoes = None
                if ev.action == "undo":
                    if ev.undoes not in local_id:
                        raise ValueError(f"undoes event id {ev.undoes}, which is not an earlier event in this file")
                    undoes = local_id[ev.undoes]
            except ValueError as e:
                errors.append(LineError(lineno, str(e)))
                continue
            dup = conn.execute(
                "SELECT id FROM events WHERE pair_id = ? AND annotator = ? AND action = ? AND note = ? "
                "AND created_at = ? ORDER BY id LIMIT 1",
                (ev.pair_id, ev.annotator, ev.action, ev.note, ev.created_at)).fetchone()
            if dup is None and undoes is not None and conn.execute(
                    "SELECT 1 FROM events WHERE undoes = ?", (undoes,)).fetchone():
                dup = (None,)              # its effect is already here: that event is already undone
            if dup is not None:
                skipped += 1
                if dup[0] is not None and ev.id is not None:
                    local_id[ev.id] = dup[0]
                continue
            try:
                cur = conn.execute(
                    "INSERT INTO events (pair_id, annotator, action, note, undoes, created_at, session, batch) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (ev.pair_id, ev.annotator, ev.action, ev.note, undoes, ev.created_at, ev.session, ev.batch))
            except sqlite3.IntegrityError as e:   # e.g. an undo naming another annotator's or pair's event
                errors.append(LineError(lineno, str(e)))
                continue
            imported += 1
            if ev.id is not None:
                local_id[ev.id] = int(cur.lastrowid)
    return ImportResult(imported, skipped, errors)


# ------------------------------------------------------------------------------------- internals

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
        raise RuntimeError(f"{os.fspath(db)!r} has annotation schema v{version}; this code knows v{SCHEMA_VERSION}")
    with _write(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return                                   # another process created it while we waited
        if version == 1:                             # v1 -> v2: the log gains `batch`; no row changes
            conn.execute("ALTER TABLE events ADD COLUMN batch TEXT NULL")
            for statement in _V2_INDEXES:
                conn.execute(statement)
        elif conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone():
            raise RuntimeError(f"{os.fspath(db)!r} already has an 'events' table that is not a CHES annotation log")
        else:
            for statement in _SCHEMA:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _require_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _require_annotator(annotator: object) -> str:
    return _require_text("annotator", annotator).strip()


def _require_session(session: object) -> None:
    if session is not None and not isinstance(session, str):
        raise ValueError(f"session must be a string or None, got {type(session).__name__}")


def _event_line(event: Event) -> str:
    return json.dumps(asdict(event), ensure_ascii=False) + "\n"


def _parse_line(text: str) -> Event:
    """Validate one exported line; ValueError names the first problem. `id` is the file's id (or None)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("pair_id", "annotator", "action", "created_at") if k not in obj]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    action = obj["action"]
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}; got {action!r}")
    note = obj.get("note", "")
    if note is None:
        note = ""
    if not isinstance(note, str):
        raise ValueError(f"note must be a string, got {type(note).__name__}")
    session, batch = obj.get("session"), obj.get("batch")
    _require_session(session)
    if batch is not None and not isinstance(batch, str):
        raise ValueError(f"batch must be a string or null, got {type(batch).__name__}")
    event_id, undoes = obj.get("id"), obj.get("undoes")
    for name, value in (("id", event_id), ("undoes", undoes)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name} must be an integer or null, got {value!r}")
    if (action == "undo") != (undoes is not None):
        raise ValueError("undoes must be set exactly when action is 'undo'")
    return Event(id=event_id, pair_id=_require_text("pair_id", obj["pair_id"]),
                 annotator=_require_annotator(obj["annotator"]), action=action, note=note,
                 undoes=undoes, created_at=_normalise_time(obj["created_at"]), session=session, batch=batch)


def _normalise_time(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"created_at must be an ISO-8601 string, got {value!r}")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"created_at is not ISO-8601: {value!r}") from None
    if t.tzinfo is None:
        raise ValueError(f"created_at has no time zone: {value!r}")
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")
