"""What is in force: every annotator's decision (`in_force`, and `current`, `current_by_annotator`, `counts`
built on it) and every pair's adjudication (`adjudications`), all from one query text (`_IN_FORCE_SQL`).

`in_force` is read incrementally: a page reads it on every rerun, and the whole log's window query grows with
the log (2.3 s at 125k decisions) while what changes between two reads is a handful of keys.
"""
from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from ches.review.decisions.db import NOT_UNDONE, Db, connect
from ches.review.decisions.log import Decision, require_annotator
from ches.review.decisions.values import CLEAR, DECISION_VALUES


def in_force(db: Db) -> list[Decision]:
    """Every annotator's decision in force on every pair, in the log's order (adjudications excluded): what
    `current` (the last per pair) and `current_by_annotator` are built from, read once.

    Read incrementally: this process keeps the last answer per file with the last seq it saw; as the log
    only grows (contract 5), a later call re-reads only the (pair, annotator) keys that events after that
    seq touch, in one snapshot of the file. Anything unexpected (another file at the path, an event at the
    kept seq that differs, many keys) reads everything again."""
    path = os.path.realpath(os.fspath(db))
    with _IN_FORCE_LOCK, connect(db) as conn:
        conn.execute("BEGIN")                          # one snapshot (WAL): concurrent writers are not seen
        try:
            known = _IN_FORCE.pop(path, None)
            state = _patched(conn, known, _file_identity(path)) if known else None
            state = state or _read_all(conn, _file_identity(path))
        finally:
            conn.execute("COMMIT")
        _IN_FORCE[path] = state
        while len(_IN_FORCE) > _IN_FORCE_FILES:
            _IN_FORCE.pop(next(iter(_IN_FORCE)))
        return list(state.decisions)


def read_all(db: Db) -> list[Decision]:
    """`in_force` read from the whole log, not incrementally: what `in_force` must equal (tests, benches)."""
    path = os.path.realpath(os.fspath(db))
    with connect(db) as conn:
        return list(_read_all(conn, _file_identity(path)).decisions)


def current(db: Db, *, annotator: str | None = None) -> dict[str, Decision]:
    """The decision in force per pair_id: `annotator`'s own, or (None) the last in the log's order
    across annotators (contract 5). Annotations only: adjudications are read by `adjudications`.

    Pairs with no decision (never decided, cleared, or undone back to nothing) are absent.
    """
    combined: dict[str, Decision] = {}
    for d in _of(db, annotator):                    # in the log's order: the last one per pair stays
        combined[d.pair_id] = d
    return combined


def current_by_annotator(db: Db, *, annotator: str | None = None) -> dict[str, dict[str, Decision]]:
    """{annotator: {pair_id: Decision}}: each annotator's own decisions in force (contract 5)."""
    out: dict[str, dict[str, Decision]] = {}
    for d in _of(db, annotator):
        out.setdefault(d.annotator, {})[d.pair_id] = d
    return out


def counts(db: Db, *, annotator: str | None = None) -> dict[str, int]:
    """{'keep': n, 'drop': n, 'flag': n} over `current(db, annotator=annotator)`; every key present."""
    out = dict.fromkeys(DECISION_VALUES, 0)
    for d in current(db, annotator=annotator).values():
        out[d.decision] += 1
    return out


def adjudications(db: Db) -> dict[str, Decision]:
    """{pair_id: Decision}: the adjudication in force per pair, the last not-undone one of any adjudicator
    ('clear' withdraws it: the pair is then unsettled again)."""
    # NOT INDEXED: one pass over the table, then a sort of the few adjudications; SQLite would otherwise walk
    # events_by_key for the window's order and look up every event (60 ms at 40k decisions against 6 ms)
    with connect(db) as conn:
        rows = conn.execute(_IN_FORCE_SQL.format(partition="e.pair_id", source="events e NOT INDEXED"),
                            (1,)).fetchall()
    return {entry[1].pair_id: entry[1] for _, entry in _entries(rows) if entry is not None}


def _of(db: Db, annotator: str | None) -> list[Decision]:
    """`in_force(db)`, only `annotator`'s when one is named (checked first, and stripped as the log stores it)."""
    name = None if annotator is None else require_annotator(annotator)
    return [d for d in in_force(db) if name is None or d.annotator == name]


@dataclass
class _InForce:
    """What `in_force` keeps per file, as of event `seq`: {(pair_id, annotator): (seq, Decision)} in the
    log's order, and its decisions as a list."""
    identity: tuple
    seq: int
    last: tuple | None                       # the event at `seq`, to tell this log from another file's
    by_key: dict[tuple[str, str], tuple[int, Decision]]

    def __post_init__(self) -> None:
        self.decisions = [d for _, d in self.by_key.values()]


_IN_FORCE: dict[str, _InForce] = {}
_IN_FORCE_LOCK = threading.Lock()
_IN_FORCE_FILES = 8
_PATCH_KEYS_MAX = 2000                       # more keys touched since the last read: read everything again
# Per {partition}, the last not-undone event of the annotations (?1 = 0) or adjudications (?1 = 1) in {source}, a
# clear included (it withdraws what was in force: the reader drops it), in the log's order.
_IN_FORCE_SQL = f"""SELECT seq, pair_id, action, note, annotator, created_at, id, adjudicated FROM (
        SELECT e.*, ROW_NUMBER() OVER (PARTITION BY {{partition}} ORDER BY e.seq DESC) AS nth
        FROM {{source}}
        WHERE e.action <> 'undo' AND e.adjudicated = ?1 AND {NOT_UNDONE})
    WHERE nth = 1 ORDER BY seq"""
_BY_KEY = "e.pair_id, e.annotator"          # each annotator's own decision per pair


def _file_identity(path: str) -> tuple:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _last_event(conn: sqlite3.Connection) -> tuple[int, tuple | None]:
    row = conn.execute("SELECT seq, id, pair_id, annotator, action, created_at FROM events "
                       "ORDER BY seq DESC LIMIT 1").fetchone()
    return (0, None) if row is None else (row[0], tuple(row[1:]))


def _entries(rows) -> Iterator[tuple[tuple[str, str], tuple[int, Decision] | None]]:
    """(key, (seq, Decision)) per row of `_IN_FORCE_SQL`; None where the last action is a clear."""
    for seq, pair_id, action, note, annotator, at, event_id, adjudicated in rows:
        yield (pair_id, annotator), (None if action == CLEAR else
                                     (seq, Decision(pair_id, action, note, annotator, at, event_id, bool(adjudicated))))


def _read_all(conn: sqlite3.Connection, identity: tuple) -> _InForce:
    seq, last = _last_event(conn)
    rows = conn.execute(_IN_FORCE_SQL.format(partition=_BY_KEY, source="events e"), (0,))
    by_key = {k: v for k, v in _entries(rows) if v is not None}
    return _InForce(identity, seq, last, by_key)


def _patched(conn: sqlite3.Connection, known: _InForce, identity: tuple) -> _InForce | None:
    """`known` brought up to the log's last event by re-reading the keys touched since; None when it cannot be
    (another file, a history that differs at `known.seq`, too many keys)."""
    if identity != known.identity:
        return None
    if known.seq and conn.execute("SELECT id, pair_id, annotator, action, created_at FROM events WHERE seq = ?",
                                  (known.seq,)).fetchone() != known.last:
        return None
    seq, last = _last_event(conn)
    keys = list(dict.fromkeys(map(tuple, conn.execute("SELECT pair_id, annotator FROM events WHERE seq > ?",
                                                      (known.seq,)))))
    if len(keys) > _PATCH_KEYS_MAX:
        return None
    by_key = known.by_key
    if keys:
        conn.execute("CREATE TEMP TABLE touched (pair_id TEXT, annotator TEXT)")
        conn.executemany("INSERT INTO touched VALUES (?, ?)", keys)
        source = "touched t CROSS JOIN events e ON e.pair_id = t.pair_id AND e.annotator = t.annotator"  # by key
        rows = conn.execute(_IN_FORCE_SQL.format(partition=_BY_KEY, source=source), (0,))
        fresh = [(k, v) for k, v in _entries(rows) if v is not None]
        for key in keys:
            by_key.pop(key, None)
        if fresh and by_key and fresh[0][1][0] < next(reversed(by_key.values()))[0]:   # an undo fell back
            by_key = dict(sorted([*by_key.items(), *fresh], key=lambda kv: kv[1][0]))
        else:
            by_key.update(fresh)
    return _InForce(identity, seq, last, by_key)
