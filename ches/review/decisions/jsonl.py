"""Moving the decision log between workspaces as JSON Lines: `export_jsonl` and `import_jsonl` (contract 8
of the package docstring). One line per event, in the log's order, with the Event's fields."""
from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from ches.atomic import atomic_open
from ches.review.decisions import db as logdb
from ches.review.decisions import log
from ches.review.decisions.log import Event, show
from ches.review.decisions.values import ACTIONS, UNDO


@dataclass(frozen=True)
class LineError:
    line: int                 # 1-based line number in the imported file
    reason: str               # one sentence a person can read; values in it are cut short and escaped


class ImportResult(NamedTuple):
    imported: int
    skipped_duplicates: int
    errors: list[LineError]


# The event already here that a line repeats. ORDER BY id, not seq: the index on (pair_id, annotator, action,
# created_at) holds ids in order, whereas ORDER BY seq leads SQLite to walk the annotator's whole history.
_DUPLICATE = ("SELECT id FROM events WHERE pair_id = ? AND annotator = ? AND action = ? AND note = ? "
              "AND created_at = ? AND adjudicated = ? ORDER BY id LIMIT 1")


class _Line(NamedTuple):
    """One validated line: `id` and `undoes` are the file's own event ids."""
    id: int | None
    pair_id: str
    annotator: str
    action: str
    note: str
    undoes: int | None
    created_at: str
    session: str | None
    batch: str | None
    adjudicated: bool


def export_jsonl(db: logdb.Db, path: str | os.PathLike[str]) -> int:
    """Write every event to `path` as JSON Lines, in the log's order, atomically (an old file survives a
    failed export). Returns the number of events written. `id`/`undoes` let an import link undo events to
    the events they cancel."""
    n = 0
    with logdb.connect(db) as conn, atomic_open(path, "w") as f:
        for row in conn.execute(f"SELECT {logdb.EVENT_COLUMNS} FROM events ORDER BY seq"):
            f.write(_event_line(Event.from_row(row)))
            n += 1
    return n


def import_jsonl(db: logdb.Db, path: str | os.PathLike[str]) -> ImportResult:
    """Append the events in a JSON Lines file written by `export_jsonl` (contract 8), in the file's order,
    each at the next position of the log, all stamped with one `imported_at`.

    Returns (imported, skipped_duplicates, errors); blank lines are ignored. The good lines are committed
    together in one transaction, whatever the bad ones hold. An undo line must name, in `undoes`, the `id`
    of an earlier line of the same file; an undo whose target is already undone here counts as a duplicate.
    """
    imported = skipped = 0
    errors: list[LineError] = []
    local_id: dict[int, int] = {}          # file's event id -> this database's event id
    at = log.now()
    with open(path, "rb") as f, logdb.connect(db) as conn, logdb.write(conn):
        for lineno, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                errors.append(LineError(lineno, f"not UTF-8 ({e.reason} at byte {e.start + 1})"))
                continue
            if not text.strip():
                continue
            try:
                ev = _parse_line(text)
                undoes = None
                if ev.action == UNDO:
                    if ev.undoes not in local_id:
                        raise ValueError(f"undoes event id {show(ev.undoes)}, which is not an earlier event in this file")
                    undoes = local_id[ev.undoes]
            except ValueError as e:
                errors.append(LineError(lineno, str(e)))
                continue
            try:
                dup = conn.execute(_DUPLICATE, (ev.pair_id, ev.annotator, ev.action, ev.note, ev.created_at,
                                             int(ev.adjudicated))).fetchone()
                if dup is None and undoes is not None and conn.execute(
                        "SELECT 1 FROM events WHERE undoes = ?", (undoes,)).fetchone():
                    dup = (None,)              # its effect is already here: that event is already undone
                if dup is not None:
                    skipped += 1
                    if dup[0] is not None and ev.id is not None:
                        local_id[ev.id] = dup[0]
                    continue
                cur = conn.execute(logdb.INSERT, (ev.pair_id, ev.annotator, ev.action, ev.note, undoes,
                                                 ev.created_at, ev.session, ev.batch, at, int(ev.adjudicated)))
            except (sqlite3.IntegrityError, sqlite3.DataError) as e:   # an undo naming another's event, ...
                errors.append(LineError(lineno, str(e)))
                continue
            imported += 1
            if ev.id is not None:
                local_id[ev.id] = int(cur.lastrowid)
    return ImportResult(imported, skipped, errors)


def _event_line(event: Event) -> str:
    return json.dumps(asdict(event), ensure_ascii=False) + "\n"


def _parse_line(text: str) -> _Line:
    """Validate one exported line; ValueError names the first problem in words (and never quotes more than
    a few dozen characters of it)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON: {e.msg} (column {e.colno})") from None
    except RecursionError:
        raise ValueError("not an event: JSON nested too deeply to read") from None
    except ValueError as e:                # e.g. an integer with more digits than Python will convert
        raise ValueError(f"not valid JSON: {str(e).split(':')[0]}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("pair_id", "annotator", "action", "created_at") if k not in obj]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    action = obj["action"]
    if not isinstance(action, str) or action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}; got {show(action)}")
    note = obj.get("note", "")
    event_id, undoes = obj.get("id"), obj.get("undoes")
    for name, value in (("id", event_id), ("undoes", undoes)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name} must be an integer or null, got {show(value)}")
    adjudicated = obj.get("adjudicated", False)           # absent in files from logs before v4
    if not isinstance(adjudicated, bool):
        raise ValueError(f"adjudicated must be true or false, got {show(adjudicated)}")
    if (action == UNDO) != (undoes is not None):
        raise ValueError("undoes must be set exactly when action is 'undo'")
    return _Line(id=event_id, pair_id=log.require_text("pair_id", obj["pair_id"]),
                 annotator=log.require_annotator(obj["annotator"]), action=action,
                 note=log.require_note("" if note is None else note), undoes=undoes,
                 created_at=_normalise_time(obj["created_at"]),
                 session=log.require_optional_text("session", obj.get("session")),
                 batch=log.require_optional_text("batch", obj.get("batch")), adjudicated=adjudicated)


def _normalise_time(value: Any) -> str:
    """ISO-8601 with a time zone -> UTC with microseconds (the form the log stores)."""
    if not isinstance(value, str):
        raise ValueError(f"created_at must be an ISO-8601 string, got {show(value)}")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"created_at is not an ISO-8601 time: {show(value)}") from None
    if t.tzinfo is None:
        raise ValueError(f"created_at has no time zone: {show(value)}")
    try:
        return t.astimezone(timezone.utc).isoformat(timespec="microseconds")
    except OverflowError:
        raise ValueError(f"created_at is outside the years 1 to 9999 once in UTC: {show(value)}") from None
