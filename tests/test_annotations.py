"""ches.review.decisions: an acknowledged decision is never lost, and the log only grows."""
from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ches.review import decisions as ann
from ches.review.decisions import Decision, Event, LineError
from ches.review.decisions import inforce
from ches.review.decisions import jsonl as ann_jsonl
from ches.review.decisions import db as ann_db
from ches.review.decisions import log as ann_log

REPO = Path(__file__).resolve().parents[1]
FAST_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None   # logic-only tests: skip the disk's fsync cost


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "annotations.db"


def raw(db) -> sqlite3.Connection:
    """A plain connection, as another tool would open the file."""
    return sqlite3.connect(db, isolation_level=None)


def simple(state: dict[str, Decision]) -> dict[str, tuple[str, str, str]]:
    return {p: (d.decision, d.note, d.annotator) for p, d in state.items()}


def replay(events: list[Event]) -> dict[tuple[str, str], Event]:
    """Reference derivation, written independently of the SQL: {(pair, annotator): event in force}."""
    undone = {e.undoes for e in events if e.action == "undo"}
    state: dict[tuple[str, str], Event] = {}
    for e in events:                                  # log order
        if e.action == "undo" or e.id in undone:
            continue
        if e.action == "clear":
            state.pop((e.pair_id, e.annotator), None)
        else:
            state[(e.pair_id, e.annotator)] = e
    return state


# ------------------------------------------------------------------------------------ basics

def test_record_commits_and_returns_the_event_id(db):
    event_id = ann.record(db, "p1", "keep", annotator="alice", note="clean", session="s1")
    row = raw(db).execute("SELECT id, pair_id, annotator, action, note, session FROM events").fetchall()
    assert row == [(event_id, "p1", "alice", "keep", "clean", "s1")]          # visible to any other reader
    assert raw(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with ann_db.connect(db) as conn:                                          # what every call runs with
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)            # FULL: fsync on every commit
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (30_000,)
    (e,) = ann.history(db)
    assert e.created_at.endswith("+00:00") and len(e.created_at.split(".")[1]) == len("123456+00:00")


@pytest.mark.parametrize("kwargs, message", [
    (dict(pair_id="p", decision="maybe", annotator="a"), "decision must be one of keep, drop, flag, clear"),
    (dict(pair_id="p", decision="undo", annotator="a"), "decision must be one of"),
    (dict(pair_id="p", decision="keep", annotator=""), "annotator must be a non-empty string"),
    (dict(pair_id="p", decision="keep", annotator="   "), "annotator must be a non-empty string"),
    (dict(pair_id="p", decision="keep", annotator=None), "annotator must be a non-empty string"),
    (dict(pair_id="", decision="keep", annotator="a"), "pair_id must be a non-empty string"),
    (dict(pair_id="p", decision="keep", annotator="a", note=None), "note must be a string"),
    (dict(pair_id="p\udc80", decision="keep", annotator="a"), "pair_id holds '\\\\udc80' at character 2, a lone surrogate"),
    (dict(pair_id="p", decision="keep", annotator="a", note="\ud800"), "note holds .* a lone surrogate"),
])
def test_record_rejects_bad_input_and_writes_nothing(db, kwargs, message):
    pair_id, decision = kwargs.pop("pair_id"), kwargs.pop("decision")
    with pytest.raises(ValueError, match=message):
        ann.record(db, pair_id, decision, **kwargs)
    assert ann.history(db) == []


def test_current_is_latest_per_annotator_and_clear_withdraws(db):
    ann.record(db, "p1", "keep", annotator="alice")
    ann.record(db, "p1", "drop", annotator="alice", note="toxic")
    ann.record(db, "p2", "flag", annotator="alice")
    ann.record(db, "p2", "clear", annotator="alice")
    ann.record(db, "p3", "keep", annotator="bob")
    ann.record(db, "p1", "flag", annotator="bob")      # later than alice's drop: wins the combined view
    assert simple(ann.current(db, annotator="alice")) == {"p1": ("drop", "toxic", "alice")}
    assert simple(ann.current(db, annotator="bob")) == {"p3": ("keep", "", "bob"), "p1": ("flag", "", "bob")}
    assert simple(ann.current(db)) == {"p1": ("flag", "", "bob"), "p3": ("keep", "", "bob")}
    assert set(ann.current_by_annotator(db)) == {"alice", "bob"}
    assert ann.counts(db) == {"keep": 1, "drop": 0, "flag": 1}
    assert ann.counts(db, annotator="alice") == {"keep": 0, "drop": 1, "flag": 0}
    ann.record(db, "p1", "clear", annotator="bob")     # bob withdraws: alice's decision shows again
    assert simple(ann.current(db))["p1"] == ("drop", "toxic", "alice")
    assert [e.action for e in ann.history(db, "p1")] == ["keep", "drop", "flag", "clear"]
    assert len(ann.history(db)) == 7


def _events_file(path: Path, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps({"note": "", **e}) + "\n" for e in events))
    return path


def test_an_import_takes_its_place_in_the_log_when_imported(db, tmp_path):
    """Contract 5: the log's order, not created_at. An older decision imported later is the later action;
    its created_at is kept for people to read."""
    ann.record(db, "p", "keep", annotator="alice")
    old = _events_file(tmp_path / "old.jsonl", [
        {"pair_id": "p", "annotator": "bob", "action": "drop", "created_at": "2001-01-01T00:00:00Z"}])
    assert ann.import_jsonl(db, old) == (1, 0, [])
    assert ann.current(db)["p"].annotator == "bob"                      # logged after alice's keep
    assert ann.current(db, annotator="alice")["p"].decision == "keep"   # each annotator's own stays apart
    assert ann.current(db, annotator="bob")["p"].at == "2001-01-01T00:00:00.000000+00:00"
    local, imported = ann.history(db)
    assert (local.seq, imported.seq) == (1, 2)
    assert local.imported_at is None and imported.imported_at is not None
    ann.record(db, "p", "flag", annotator="alice")                     # and a later local action wins again
    assert simple(ann.current(db)) == {"p": ("flag", "", "alice")}


def test_an_import_again_changes_nothing_and_undo_never_cancels_an_imported_event(db, tmp_path):
    ann.record(db, "p1", "keep", annotator="alice", note="local")
    ann.record(db, "p2", "drop", annotator="alice")
    old = _events_file(tmp_path / "old.jsonl", [
        {"id": 1, "pair_id": "p1", "annotator": "alice", "action": "drop", "created_at": "2001-01-01T00:00:00Z"},
        {"id": 2, "pair_id": "p2", "annotator": "alice", "action": "flag", "created_at": "2001-01-01T00:00:01Z"},
        {"id": 3, "pair_id": "p3", "annotator": "alice", "action": "keep", "created_at": "2001-01-01T00:00:02Z"}])
    assert ann.import_jsonl(db, old) == (3, 0, [])
    imported = {"p1": "drop", "p2": "flag", "p3": "keep"}              # the import came last, whatever its dates
    assert {p: d.decision for p, d in ann.current(db).items()} == imported
    before = ann.history(db)
    assert ann.import_jsonl(db, old) == (0, 3, [])                     # the same file again: nothing new
    ann.export_jsonl(db, tmp_path / "all.jsonl")
    assert ann.import_jsonl(db, tmp_path / "all.jsonl") == (0, 5, [])  # the log's own export: nothing new
    assert ann.history(db) == before
    # Undo walks back what alice did HERE: her drop on p2, then her keep on p1; the imports stay
    assert [(e.pair_id, e.action) for e in ann.undo(db, annotator="alice")] == [("p2", "drop")]
    assert [(e.pair_id, e.action) for e in ann.undo(db, annotator="alice")] == [("p1", "keep")]
    assert ann.undo(db, annotator="alice") == []
    assert {p: d.decision for p, d in ann.current(db).items()} == imported


def test_current_is_the_last_action_in_file_order_whatever_the_times(db, tmp_path):
    """Random events with random times imported in one file: the SQL agrees with a replay in file order,
    and the times play no part."""
    rng = random.Random(5)
    stamps = [f"{rng.choice([1999, 2024, 2099])}-01-01T00:00:{rng.randrange(6):02d}.{rng.randrange(3):06d}Z"
              for _ in range(300)]
    lines = [{"pair_id": f"p{rng.randrange(6)}", "annotator": rng.choice(["ann", "bea", "cy"]),
              "action": rng.choice(ann.DECISIONS), "note": str(i), "created_at": t}   # note: all distinct
             for i, t in enumerate(stamps)]
    assert ann.import_jsonl(db, _events_file(tmp_path / "e.jsonl", lines))[:2] == (300, 0)
    assert [e.note for e in ann.history(db)] == [str(i) for i in range(300)]      # the file's order
    mine: dict[tuple[str, str], dict] = {}
    for line in lines:                                                 # replay the file, line by line
        key = (line["pair_id"], line["annotator"])
        if line["action"] == "clear":
            mine.pop(key, None)
        else:
            mine[key] = line
    combined: dict[str, dict] = {}
    for (pair, _), last in sorted(mine.items(), key=lambda kv: int(kv[1]["note"])):   # the last across annotators
        combined[pair] = last
    assert {(p, a): d.note for a, per in ann.current_by_annotator(db).items() for p, d in per.items()} == \
        {k: line["note"] for k, line in mine.items()}
    assert {p: d.note for p, d in ann.current(db).items()} == {p: line["note"] for p, line in combined.items()}


# ------------------------------------------------------------------------------------ clocks

class SteppableClock:
    """Replaces ches.review.decisions.log.clock: the wall clock, stepped back and forward as NTP or a person would."""

    def __init__(self) -> None:
        self.now = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def step(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch) -> SteppableClock:
    c = SteppableClock()
    monkeypatch.setattr(ann_log, "clock", c)
    return c


def test_a_later_drop_wins_with_the_clock_stepped_back_two_minutes(db, clock):
    ann.record(db, "p", "keep", annotator="alice")
    clock.step(minutes=-2)                                            # the server's clock is stepped back
    ann.record(db, "p", "drop", annotator="alice")
    assert ann.history(db)[1].created_at < ann.history(db)[0].created_at   # the stamps say the drop came first
    assert simple(ann.current(db)) == {"p": ("drop", "", "alice")}   # it came later: it wins
    assert ann.counts(db, annotator="alice") == {"keep": 0, "drop": 1, "flag": 0}
    clock.step(minutes=-2)
    ann.record(db, "p", "flag", annotator="bob")                      # later again, stamped earlier again
    assert simple(ann.current(db)) == {"p": ("flag", "", "bob")}
    assert [(e.pair_id, e.action) for e in ann.undo(db, annotator="alice")] == [("p", "drop")]   # her last action
    assert simple(ann.current(db, annotator="alice")) == {"p": ("keep", "", "alice")}


def test_a_clock_run_ahead_to_2099_and_corrected_changes_nothing(db, clock):
    clock.now = datetime(2099, 1, 1, tzinfo=timezone.utc)             # a clock set wrong, then fixed
    ann.record_many(db, ["p1", "p2"], "keep", annotator="alice")
    clock.now = datetime(2025, 6, 1, tzinfo=timezone.utc)
    ann.record(db, "p1", "drop", annotator="alice")
    assert {p: d.decision for p, d in ann.current(db).items()} == {"p1": "drop", "p2": "keep"}
    assert [(e.pair_id, e.action) for e in ann.undo(db, annotator="alice")] == [("p1", "drop")]
    assert sorted(e.pair_id for e in ann.undo(db, annotator="alice")) == ["p1", "p2"]   # then the 2099 bulk
    assert ann.current(db) == {}


def test_after_an_import_dated_2099_a_later_drop_takes_effect_and_undo_cancels_it(db, clock, tmp_path):
    future = _events_file(tmp_path / "future.jsonl", [
        {"id": 7, "pair_id": "p", "annotator": "alice", "action": "keep", "created_at": "2099-01-01T00:00:00Z"}])
    assert ann.import_jsonl(db, future) == (1, 0, [])
    ann.record(db, "p", "drop", annotator="alice")
    assert simple(ann.current(db)) == {"p": ("drop", "", "alice")}
    assert [(e.pair_id, e.action) for e in ann.undo(db, annotator="alice")] == [("p", "drop")]
    assert simple(ann.current(db)) == {"p": ("keep", "", "alice")}   # the imported decision, back in force
    assert ann.current(db)["p"].at.startswith("2099-01-01")          # shown with its own time
    assert ann.undo(db, annotator="alice") == []                      # an imported event is not hers to undo here


def test_imported_at_and_created_at_come_from_the_injected_clock(db, clock, tmp_path):
    ann.record(db, "p", "keep", annotator="alice")
    clock.step(days=1)
    ann.import_jsonl(db, _events_file(tmp_path / "e.jsonl", [
        {"pair_id": "q", "annotator": "bob", "action": "drop", "created_at": "2024-01-01T00:00:00+02:00"}]))
    local, imported = ann.history(db)
    assert (local.created_at, local.imported_at) == ("2025-06-01T12:00:00.000000+00:00", None)
    assert (imported.created_at, imported.imported_at) == \
        ("2023-12-31T22:00:00.000000+00:00", "2025-06-02T12:00:00.000000+00:00")


# ---------------------------------------------------------------------------- append-only

@pytest.mark.parametrize("sql", [
    "UPDATE events SET action = 'drop'",
    "UPDATE events SET note = 'edited' WHERE id = 1",
    "DELETE FROM events",
    "DELETE FROM events WHERE id = 1",
    "INSERT OR REPLACE INTO events (id, seq, pair_id, annotator, action, note, created_at) "     # seq 2: in order
    "VALUES (1, 2, 'p1', 'alice', 'drop', '', '2020-01-01T00:00:00.000000+00:00')",
    "REPLACE INTO events (id, seq, pair_id, annotator, action, note, created_at) "
    "VALUES (1, 2, 'p1', 'alice', 'drop', '', '2020-01-01T00:00:00.000000+00:00')",
    "INSERT INTO events (seq, pair_id, annotator, action, note, undoes, created_at) "
    "VALUES (2, 'p1', 'mallory', 'undo', '', 1, '2020-01-01T00:00:00.000000+00:00')",   # someone else's event
])
def test_the_log_refuses_to_change(db, sql):
    ann.record(db, "p1", "keep", annotator="alice")
    before = ann.history(db)
    with pytest.raises(sqlite3.IntegrityError):
        raw(db).execute(sql)
    assert ann.history(db) == before


# ------------------------------------------------------------------------------------- undo

def test_fifty_undos_restore_the_state_from_fifty_actions_ago(db):
    rng = random.Random(7)
    ann.record(db, "other", "keep", annotator="bob")
    snapshots = [ann.current(db)]
    for _ in range(60):
        ann.record(db, f"p{rng.randrange(8)}", rng.choice(ann.DECISIONS), annotator="alice",
                   note=rng.choice(["", "n1", "n2"]))
        snapshots.append(ann.current(db))
    assert len({frozenset(simple(s).items()) for s in snapshots}) > 20   # the walk back passes real changes
    log_before = ann.history(db)
    for k in range(1, 51):
        undone = ann.undo(db, annotator="alice", session="tab-1")
        assert undone == [log_before[-k]]                              # newest first
        assert ann.current(db) == snapshots[-1 - k]                    # exact, event ids included
    log_after = ann.history(db)
    assert log_after[:len(log_before)] == log_before                   # nothing rewritten ...
    assert len(log_after) == len(log_before) + 50                      # ... only grown
    assert all(e.action == "undo" and e.session == "tab-1" for e in log_after[len(log_before):])


def test_undo_touches_only_the_annotators_own_actions(db):
    ann.record(db, "p1", "keep", annotator="alice")
    ann.record(db, "p1", "drop", annotator="bob")
    assert [e.annotator for e in ann.undo(db, annotator="alice")] == ["alice"]
    assert ann.undo(db, annotator="alice") == []                       # nothing left to undo
    assert simple(ann.current(db)) == {"p1": ("drop", "", "bob")}
    assert ann.undo(db, annotator="carol") == []
    with pytest.raises(ValueError, match="annotator"):
        ann.undo(db, annotator="")


def test_concurrent_undos_never_cancel_the_same_event_twice(db):
    ids = [ann.record(db, f"p{i}", "keep", annotator="alice") for i in range(24)]
    undone: list[int] = []
    lock = threading.Lock()

    def worker():
        for _ in range(4):
            (e,) = ann.undo(db, annotator="alice")
            with lock:
                undone.append(e.id)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(undone) == ids
    assert ann.current(db) == {}


ops = st.lists(st.one_of(
    st.tuples(st.just("record"), st.sampled_from(["ann", "bea"]), st.sampled_from(["p1", "p2", "p3"]),
              st.sampled_from(ann.DECISIONS)),
    st.tuples(st.just("undo"), st.sampled_from(["ann", "bea"])),
    st.tuples(st.just("clock"), st.integers(-10 ** 9, 10 ** 9))), max_size=25)   # a step of up to ~30 years


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_matches_a_model_of_stacks_per_annotator(ops):
    """Model: each annotator has a stack of actions; undo pops; state = replay of what is left, in the
    order the actions were taken. The clock jumps back and forth and changes nothing."""
    clock = SteppableClock()
    with tempfile.TemporaryDirectory(dir=FAST_DIR) as tmp, mock.patch.object(ann_log, "clock", clock):
        db = Path(tmp) / "a.db"
        stacks: dict[str, list[tuple[int, str, str]]] = {"ann": [], "bea": []}
        n_records = n_undone = 0
        for op in ops:
            if op[0] == "clock":
                clock.step(seconds=op[1])
            elif op[0] == "record":
                _, who, pair, decision = op
                ann.record(db, pair, decision, annotator=who)
                stacks[who].append((n_records, pair, decision))
                n_records += 1
            else:
                undone = ann.undo(db, annotator=op[1])
                expected = stacks[op[1]].pop() if stacks[op[1]] else None
                if expected is None:
                    assert undone == []
                else:
                    assert [(e.pair_id, e.action) for e in undone] == [expected[1:]]
                    n_undone += 1
        in_force: dict[tuple[str, str], tuple[int, str]] = {}      # (pair, who) -> (when, decision)
        for who, stack in stacks.items():
            for when, pair, decision in stack:
                if decision == "clear":
                    in_force.pop((pair, who), None)
                else:
                    in_force[(pair, who)] = (when, decision)
            assert {p: d.decision for p, d in ann.current(db, annotator=who).items()} == \
                {p: decision for (p, w), (_, decision) in in_force.items() if w == who}
        combined: dict[str, tuple[int, str]] = {}
        for (pair, _), (when, decision) in in_force.items():       # across annotators: the last action taken
            if pair not in combined or when > combined[pair][0]:
                combined[pair] = (when, decision)
        assert {p: d.decision for p, d in ann.current(db).items()} == {p: d for p, (_, d) in combined.items()}
        log = ann.history(db)
        assert sum(e.action != "undo" for e in log) == n_records
        assert sum(e.action == "undo" for e in log) == n_undone
        assert [e.seq for e in log] == list(range(1, len(log) + 1))


# ------------------------------------------------------------------------------------- bulk

def test_a_bulk_is_one_transaction_and_one_undo(db):
    ann.record(db, "p1", "keep", annotator="alice", note="single")
    ann.record(db, "p9", "drop", annotator="bob")
    ids = ann.record_many(db, ["p1", "p2", "p3", "p2"], "drop", annotator="alice", note="bulk", session="s")
    assert len(ids) == 3 and ids == sorted(ids)                          # each distinct pair once
    bulk = ann.history(db)[-3:]
    assert [e.pair_id for e in bulk] == ["p1", "p2", "p3"] and {e.id for e in bulk} == set(ids)
    assert len({e.batch for e in bulk}) == 1 and bulk[0].batch is not None
    assert len({e.created_at for e in bulk}) == 1                       # one action, one time
    assert {p: d.decision for p, d in ann.current(db, annotator="alice").items()} == \
        {"p1": "drop", "p2": "drop", "p3": "drop"}
    ann.record(db, "p9", "flag", annotator="bob")                       # someone else acts in between
    undone = ann.undo(db, annotator="alice")
    assert sorted(e.id for e in undone) == ids                          # the whole bulk, in one undo
    assert simple(ann.current(db, annotator="alice")) == {"p1": ("keep", "single", "alice")}
    assert simple(ann.current(db, annotator="bob")) == {"p9": ("flag", "", "bob")}
    assert [e.pair_id for e in ann.undo(db, annotator="alice")] == ["p1"]   # then the single decision
    assert ann.record_many(db, [], "keep", annotator="alice") == []


def test_a_bad_pair_id_in_a_bulk_writes_nothing(db):
    with pytest.raises(ValueError, match="pair_id"):
        ann.record_many(db, ["p1", "", "p3"], "keep", annotator="alice")
    with pytest.raises(ValueError, match="decision"):
        ann.record_many(db, ["p1"], "undo", annotator="alice")
    assert ann.history(db) == []


def test_a_bulk_survives_export_and_import_as_one_action(tmp_path):
    src, dst, path = tmp_path / "src.db", tmp_path / "dst.db", tmp_path / "e.jsonl"
    ids = ann.record_many(src, [f"p{i}" for i in range(5)], "keep", annotator="alice")
    ann.record_many(src, ["p0", "p9"], "drop", annotator="alice")
    ann.undo(src, annotator="alice")                                     # undoes the second bulk, whole
    ann.export_jsonl(src, path)
    assert ann.import_jsonl(dst, path) == (9, 0, [])
    assert {p: d.decision for p, d in ann.current(dst).items()} == dict.fromkeys((f"p{i}" for i in range(5)), "keep")
    batches = {e.batch for e in ann.history(dst) if e.action != "undo"}
    assert len(batches) == 2 and batches == {e.batch for e in ann.history(src) if e.action != "undo"}
    assert [e.id for e in ann.history(src)][:5] == ids


V1_SCHEMA = (
    """CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, pair_id TEXT NOT NULL CHECK (pair_id <> ''),
        annotator TEXT NOT NULL CHECK (annotator <> ''),
        action TEXT NOT NULL CHECK (action IN ('keep', 'drop', 'flag', 'clear', 'undo')),
        note TEXT NOT NULL DEFAULT '', undoes INTEGER NULL, created_at TEXT NOT NULL, session TEXT NULL,
        CHECK ((action = 'undo') = (undoes IS NOT NULL)))""",
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
    "BEGIN SELECT RAISE(ABORT, 'events is append-only: UPDATE refused'); END",
    "INSERT INTO events (pair_id, annotator, action, note, created_at) "
    "VALUES ('p1', 'alice', 'keep', 'from v1', '2024-01-01T00:00:00.000000+00:00')",
    "PRAGMA user_version = 1",
)


def test_a_v1_database_gains_batches_and_keeps_its_events(db):
    conn = raw(db)
    for statement in V1_SCHEMA:
        conn.execute(statement)
    conn.close()
    assert simple(ann.current(db)) == {"p1": ("keep", "from v1", "alice")}
    assert raw(db).execute("PRAGMA user_version").fetchone() == (ann.SCHEMA_VERSION,)
    ann.record_many(db, ["p1", "p2"], "drop", annotator="alice")
    assert len(ann.undo(db, annotator="alice")) == 2
    assert simple(ann.current(db)) == {"p1": ("keep", "from v1", "alice")}
    with pytest.raises(sqlite3.IntegrityError):
        raw(db).execute("UPDATE events SET note = 'edited'")


V2_SCHEMA = (            # the schema the v2 code (before `seq`) created, statement for statement
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, pair_id TEXT NOT NULL CHECK (pair_id <> ''),
        annotator TEXT NOT NULL CHECK (annotator <> ''),
        action TEXT NOT NULL CHECK (action IN ('keep', 'drop', 'flag', 'clear', 'undo')),
        note TEXT NOT NULL DEFAULT '', undoes INTEGER NULL, created_at TEXT NOT NULL, session TEXT NULL,
        batch TEXT NULL, CHECK ((action = 'undo') = (undoes IS NOT NULL)))""",
    "CREATE INDEX events_by_annotator ON events (annotator, id)",
    "CREATE INDEX events_by_time ON events (annotator, created_at, id)",
    "CREATE INDEX events_by_batch ON events (batch) WHERE batch IS NOT NULL",
    "CREATE INDEX events_by_key ON events (pair_id, annotator, action, created_at)",
    "CREATE UNIQUE INDEX events_undo_once ON events (undoes) WHERE undoes IS NOT NULL",
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
    "BEGIN SELECT RAISE(ABORT, 'events is append-only: UPDATE refused'); END",
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events "
    "BEGIN SELECT RAISE(ABORT, 'events is append-only: DELETE refused'); END",
    "CREATE TRIGGER events_no_overwrite BEFORE INSERT ON events WHEN EXISTS (SELECT 1 FROM events WHERE id = NEW.id) "
    "BEGIN SELECT RAISE(ABORT, 'events is append-only: an event with this id exists'); END",
    """CREATE TRIGGER events_undo_target BEFORE INSERT ON events WHEN NEW.action = 'undo'
       BEGIN
         SELECT RAISE(ABORT, 'an undo must cancel an earlier keep/drop/flag/clear event of the same annotator and pair')
         WHERE NOT EXISTS (SELECT 1 FROM events WHERE id = NEW.undoes AND action <> 'undo'
                           AND annotator = NEW.annotator AND pair_id = NEW.pair_id);
         SELECT RAISE(ABORT, 'that event is already undone') WHERE EXISTS (SELECT 1 FROM events WHERE undoes = NEW.undoes);
       END""",
    "PRAGMA user_version = 2",
)
V2_EVENTS = [            # (id, pair_id, annotator, action, note, undoes, created_at, session, batch), in id order
    (1, "p1", "alice", "keep", "", None, "2025-01-01T10:00:00.000000+00:00", "s", None),
    (2, "p1", "alice", "drop", "skewed", None, "2025-01-01T09:58:00.000000+00:00", "s", None),   # clock stepped back
    (3, "p2", "bob", "flag", "", None, "2025-01-02T00:00:00.000000+00:00", None, None),
    (4, "p2", "alice", "keep", "imported", None, "2001-01-01T00:00:00.000000+00:00", None, None),  # an old import
    (5, "p3", "alice", "drop", "", None, "2025-01-03T00:00:00.000000+00:00", None, None),
    (6, "p3", "alice", "undo", "", 5, "2025-01-03T00:00:01.000000+00:00", None, None),
    (7, "p4", "alice", "flag", "", None, "2025-01-04T00:00:00.000000+00:00", None, "b1"),
    (8, "p5", "alice", "flag", "", None, "2025-01-04T00:00:00.000000+00:00", None, "b1"),
    (9, "p6", "carol", "clear", "", None, "2024-01-01T00:00:00.000000+00:00", None, None),
]


def _v2_database(db: Path) -> None:
    conn = raw(db)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in V2_SCHEMA:
        conn.execute(statement)
    conn.executemany("INSERT INTO events (id, pair_id, annotator, action, note, undoes, created_at, session, batch) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", V2_EVENTS)
    conn.close()


def test_a_v2_database_keeps_every_event_every_decision_and_its_undo_order(db):
    """What v2 showed (the latest by created_at, then annotator, then id) is what v3 shows after the upgrade;
    Undo walks back the same way; from then on the log's order rules."""
    _v2_database(db)
    barrier = threading.Barrier(4)
    seen: list[dict] = []

    def open_at_once():                                   # four readers open the old file at the same moment
        barrier.wait()
        seen.append(simple(ann.current(db)))

    threads = [threading.Thread(target=open_at_once) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    v2_showed = {"p1": ("keep", "", "alice"),             # 10:00 beats the skewed 09:58, as v2 had it
                 "p2": ("flag", "", "bob"),               # bob's 2025 beats the import dated 2001
                 "p4": ("flag", "", "alice"), "p5": ("flag", "", "alice")}
    assert seen == [v2_showed] * 4
    assert raw(db).execute("PRAGMA user_version").fetchone() == (ann.SCHEMA_VERSION,)
    events = ann.history(db)
    assert sorted((e.id, e.pair_id, e.annotator, e.action, e.note, e.undoes, e.created_at, e.session, e.batch)
                  for e in events) == V2_EVENTS                       # every event, with its id
    assert {e.imported_at for e in events} == {None} and sorted(e.seq for e in events) == list(range(1, 10))
    assert simple(ann.current(db, annotator="alice")) == {"p1": ("keep", "", "alice"), "p2": ("keep", "imported", "alice"),
                                                          "p4": ("flag", "", "alice"), "p5": ("flag", "", "alice")}
    # v2's undo order for alice: the b1 bulk (Jan 4), her keep at 10:00, the drop at 09:58, the 2001 keep
    assert [sorted(e.id for e in ann.undo(db, annotator="alice")) for _ in range(5)] == [[7, 8], [1], [2], [4], []]
    ann.record(db, "p2", "drop", annotator="alice")                   # new actions: the log's order
    assert simple(ann.current(db))["p2"] == ("drop", "", "alice")
    assert ann.history(db)[-1].seq == 15 and ann.history(db)[-1].id == 15
    assert raw(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with pytest.raises(sqlite3.IntegrityError):
        raw(db).execute("UPDATE events SET note = 'edited'")


def test_a_failed_upgrade_leaves_the_v2_file_as_it_was(db, monkeypatch):
    _v2_database(db)
    before = raw(db).execute("SELECT * FROM events ORDER BY id").fetchall()
    monkeypatch.setattr(ann_db, "INDEXES_AND_TRIGGERS", (*ann_db.INDEXES_AND_TRIGGERS, "CREATE BOGUS"))
    with pytest.raises(sqlite3.OperationalError):
        ann.current(db)
    assert raw(db).execute("PRAGMA user_version").fetchone() == (2,)
    assert raw(db).execute("SELECT * FROM events ORDER BY id").fetchall() == before
    monkeypatch.undo()
    assert len(ann.history(db)) == len(V2_EVENTS)


@pytest.mark.parametrize("sql", [
    "INSERT INTO events (seq, pair_id, annotator, action, created_at) VALUES (1, 'p', 'a', 'keep', 't')",
    "INSERT INTO events (seq, pair_id, annotator, action, created_at) VALUES (5, 'p', 'a', 'keep', 't')",
])
def test_the_log_refuses_an_event_out_of_order(db, sql):
    ann.record(db, "p1", "keep", annotator="alice")
    ann.record(db, "p1", "drop", annotator="alice")
    with pytest.raises(sqlite3.IntegrityError, match="next position"):
        raw(db).execute(sql)
    assert len(ann.history(db)) == 2


_KILLABLE_BULK_WRITER = """
import sys
from ches.review import decisions as ann
db = sys.argv[1]
for j in range(100_000):
    ids = ann.record_many(db, ["p%d" % ((j * 13 + k) % 997) for k in range(300)], "keep drop flag".split()[j % 3],
                          annotator="kim")
    print("B", ids[0], ids[-1], flush=True)            # printed only after record_many() returned
"""


def test_sigkilled_bulk_writer_keeps_every_acknowledged_bulk_whole(db):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    acked: list[tuple[int, int]] = []
    for stop_after in (3, 7):
        child = subprocess.Popen([sys.executable, "-c", _KILLABLE_BULK_WRITER, str(db)],
                                 stdout=subprocess.PIPE, env=env, text=True)
        lines = [child.stdout.readline() for _ in range(stop_after)]
        child.send_signal(signal.SIGKILL)
        lines += child.stdout.readlines()
        child.stdout.close()
        assert child.wait(timeout=10) == -signal.SIGKILL
        acked += [(int(a), int(b)) for kind, a, b in (line.split() for line in lines if line.endswith("\n"))]
        events = ann.history(db)
        by_id = {e.id: e for e in events}
        for first, last in acked:                                     # every acknowledged bulk is all there
            assert all(i in by_id for i in range(first, last + 1)) and last - first == 299
        sizes: dict[str, int] = {}
        for e in events:
            sizes[e.batch] = sizes.get(e.batch, 0) + 1
        assert set(sizes.values()) == {300}                          # and no bulk is there in part
    assert len(acked) >= 10


# ------------------------------------------------------------------------------- concurrency

N_PROCS, N_EACH, N_PAIRS = 8, 500, 60


def _decide(worker: int, j: int) -> tuple[str, str]:
    return f"pair-{(j * 7 + worker) % N_PAIRS}", ("keep", "drop", "flag", "clear")[(j + worker) % 4]


def _writer(db: str, worker: int, barrier) -> list[int]:
    barrier.wait()                                   # all start together, on a database nobody created yet
    acked = []
    for j in range(N_EACH):
        pair, decision = _decide(worker, j)
        acked.append(ann.record(db, pair, decision, annotator=f"w{worker}", note=f"{worker}:{j}"))
    return acked


@pytest.mark.slow
def test_eight_processes_writing_at_once_lose_nothing(tmp_path):
    db = str(tmp_path / "shared.db")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(N_PROCS) as pool:
        barrier = manager.Barrier(N_PROCS)
        acked = pool.starmap(_writer, [(db, w, barrier) for w in range(N_PROCS)], chunksize=1)

    events = ann.history(db)
    assert len(events) == N_PROCS * N_EACH
    assert sorted(i for ids in acked for i in ids) == [e.id for e in events]   # every ack is in the log, once
    for w, ids in enumerate(acked):
        assert ids == sorted(ids)                                  # log order = each writer's own order
        mine = [e for e in events if e.annotator == f"w{w}"]
        assert [(e.pair_id, e.action, e.note) for e in mine] == \
            [(*_decide(w, j), f"{w}:{j}") for j in range(N_EACH)]
        expected = {}
        for j in range(N_EACH):                                    # each writer's final state, from its script
            pair, decision = _decide(w, j)
            if decision == "clear":
                expected.pop(pair, None)
            else:
                expected[pair] = (decision, f"{w}:{j}", f"w{w}")
        assert simple(ann.current(db, annotator=f"w{w}")) == expected
    in_force = replay(events)
    combined = {}
    for (pair, _), e in in_force.items():
        if pair not in combined or e.seq > combined[pair].seq:
            combined[pair] = e
    assert {p: d.event_id for p, d in ann.current(db).items()} == {p: e.id for p, e in combined.items()}
    assert raw(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)


_KILLABLE_WRITER = """
import sys
from ches.review import decisions as ann
db, run = sys.argv[1], sys.argv[2]
for j in range(100_000):
    if j % 7 == 6:
        e = ann.undo(db, annotator="kim")
        print("U", e[0].id if e else "-", flush=True)   # printed only after undo() returned
    else:
        pair, decision = "p%d" % (j % 37), ("keep", "drop", "flag", "clear")[j % 4]
        i = ann.record(db, pair, decision, annotator="kim", note=run + ":" + str(j))
        print("R", i, pair, decision, flush=True)        # printed only after record() returned
"""


def test_sigkilled_writer_loses_no_acknowledged_event(db):
    rng = random.Random(3)
    acked_records: dict[int, tuple[str, str]] = {}
    acked_undos: set[int] = set()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for run in range(4):
        child = subprocess.Popen([sys.executable, "-c", _KILLABLE_WRITER, str(db), str(run)],
                                 stdout=subprocess.PIPE, env=env, text=True)
        lines = []
        stop_after = rng.randrange(40, 120)
        while len(lines) < stop_after:
            line = child.stdout.readline()
            assert line, f"writer died on its own: rc={child.poll()}"
            lines.append(line)
        child.send_signal(signal.SIGKILL)             # mid-stream: it is already inside the next call
        lines += child.stdout.readlines()             # acks written before the kill are still in the pipe
        child.stdout.close()
        assert child.wait(timeout=10) == -signal.SIGKILL
        for line in lines:
            if not line.endswith("\n"):
                continue                              # a torn ack was never an acknowledgement
            kind, *rest = line.split()
            if kind == "R":
                acked_records[int(rest[0])] = (rest[1], rest[2])
            elif rest[0] != "-":
                acked_undos.add(int(rest[0]))

        # "restart": a fresh process opens the file that was open in the killed one
        check = raw(db)
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        events = {e.id: e for e in ann.history(db)}
        for event_id, (pair, decision) in acked_records.items():
            assert (events[event_id].pair_id, events[event_id].action) == (pair, decision)
        assert acked_undos <= {e.undoes for e in events.values() if e.action == "undo"}
        in_force = replay(list(events.values()))
        assert simple(ann.current(db)) == {p: (e.action, e.note, e.annotator) for (p, _), e in in_force.items()}
    assert len(acked_records) > 100
    assert ann.record(db, "after", "keep", annotator="kim") > max(acked_records)   # still writable


# --------------------------------------------------------------------------- export / import

def _populate(db, who: str = "alice") -> None:
    ann.record(db, "p1", "keep", annotator=who, note='quotes " and \\ and\nnewline', session="s")
    ann.record(db, "p2", "drop", annotator=who, note="ünïcødé ✓")
    ann.record(db, "p3", "flag", annotator=who)
    ann.record(db, "p2", "keep", annotator=who)
    ann.undo(db, annotator=who)                        # p2 back to drop
    ann.record(db, "p3", "clear", annotator=who)


def _portable(events: list[Event]) -> list[tuple]:
    """Events without the database-local ids; an undo is described by what it cancels."""
    by_id = {e.id: e for e in events}
    out = []
    for e in events:
        target = by_id[e.undoes] if e.undoes is not None else None
        out.append((e.pair_id, e.annotator, e.action, e.note, e.created_at, e.session,
                    target and (target.action, target.created_at)))
    return out


def test_export_import_round_trip_is_idempotent(tmp_path):
    src, dst, path = tmp_path / "src.db", tmp_path / "dst.db", tmp_path / "events.jsonl"
    _populate(src)
    ann.record(dst, "p9", "keep", annotator="bob")     # the target already has work of its own
    assert ann.export_jsonl(src, path) == 6
    assert [json.loads(line)["action"] for line in path.read_text().splitlines()] == \
        ["keep", "drop", "flag", "keep", "undo", "clear"]

    assert ann.import_jsonl(dst, path) == (6, 0, [])
    assert _portable(ann.history(dst))[1:] == _portable(ann.history(src))
    strip = lambda s: {p: replace(d, event_id=0) for p, d in s.items()}      # noqa: E731
    assert strip(ann.current(dst, annotator="alice")) == strip(ann.current(src))
    assert ann.current(dst)["p2"].decision == "drop"   # the undo still cancels the right event

    before = ann.history(dst)
    assert ann.import_jsonl(dst, path) == (0, 6, [])   # second time: nothing new
    assert ann.import_jsonl(src, path) == (0, 6, [])   # into its own source: nothing new
    assert ann.history(dst) == before


def test_merging_exports_whose_ids_collide(tmp_path):
    a, b, merged, path = (tmp_path / n for n in ("a.db", "b.db", "m.db", "all.jsonl"))
    _populate(a, "alice")
    _populate(b, "bob")                                # same ids 1..6 in both files
    ann.export_jsonl(a, tmp_path / "a.jsonl")
    ann.export_jsonl(b, tmp_path / "b.jsonl")
    path.write_text((tmp_path / "a.jsonl").read_text() + (tmp_path / "b.jsonl").read_text())
    assert ann.import_jsonl(merged, path) == (12, 0, [])
    for who, src in (("alice", a), ("bob", b)):
        assert simple(ann.current(merged, annotator=who)) == simple(ann.current(src))


def test_bad_lines_are_reported_by_line_number_and_good_ones_kept(tmp_path):
    db, path = tmp_path / "a.db", tmp_path / "in.jsonl"

    def good(pair, **kw) -> bytes:
        return json.dumps({"pair_id": pair, "annotator": "al", "action": "keep", "note": "",
                           "created_at": "2024-05-01T10:00:00.000001+00:00", **kw}).encode()

    lines = [
        good("ok1", id=1),                                                       # 1
        b"{not json",                                                            # 2
        b"[1, 2]",                                                               # 3
        b'{"pair_id": "x", "action": "keep", "created_at": "2024-05-01T10:00:00Z"}',  # 4 no annotator
        good("x", action="maybe"),                                               # 5
        good("x", created_at="2024-05-01T10:00:00"),                             # 6 no time zone
        good("x", action="undo", undoes=99),                                     # 7 unknown target
        b"   ",                                                                  # 8 blank: ignored
        b"\xff\xfe{}",                                                           # 9 not UTF-8
        good("ok2", id=2),                                                       # 10
        good("ok2", action="undo", undoes=2, annotator="someone-else"),          # 11 not theirs to undo
        good("x", id=True),                                                      # 12
        good("ok1", action="undo", undoes=1),                                    # 13 fine
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = ann.import_jsonl(db, path)
    reasons = {e.line: e.reason for e in result.errors}
    assert list(reasons) == [2, 3, 4, 5, 6, 7, 9, 11, 12]
    assert all(isinstance(e, LineError) for e in result.errors)
    assert "not valid JSON" in reasons[2] and "expected a JSON object" in reasons[3]
    assert "missing field(s): annotator" in reasons[4] and "action must be one of" in reasons[5]
    assert "no time zone" in reasons[6] and "not an earlier event" in reasons[7]
    assert "not UTF-8" in reasons[9] and "same annotator and pair" in reasons[11]
    assert "id must be an integer" in reasons[12]
    assert (result.imported, result.skipped_duplicates) == (3, 0)
    assert simple(ann.current(db)) == {"ok2": ("keep", "", "al")}
    assert ann.import_jsonl(db, path)[:2] == (0, 3)                   # the good lines, now duplicates


def _good_line(pair: str, **kw) -> bytes:
    return json.dumps({"pair_id": pair, "annotator": "al", "action": "keep", "note": "",
                       "created_at": "2024-05-01T10:00:00.000001+00:00", **kw}).encode()


HOSTILE_LINES = {        # what a hostile or damaged file can hold -> what the reason must say
    "a date that overflows once in UTC": (_good_line("x", created_at="9999-12-31T23:00:00-05:00"),
                                          "created_at is outside the years 1 to 9999"),
    "a date before year 1 once in UTC": (_good_line("x", created_at="0001-01-01T00:30:00+01:00"),
                                         "created_at is outside the years 1 to 9999"),
    "year 99999": (_good_line("x", created_at="+99999-01-01T00:00:00Z"), "created_at is not an ISO-8601 time"),
    "a huge number as the date": (_good_line("x", created_at=10 ** 300), "created_at must be an ISO-8601 string"),
    "an integer too long to read": (b'{"pair_id": "x", "id": ' + b"9" * 5000 + b"}", "not valid JSON"),
    "deeply nested JSON": (b'{"pair_id": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nested too deeply"),
    "a lone surrogate in pair_id": (_good_line("x\udc80"), "pair_id holds '\\udc80' at character 2"),
    "a lone surrogate in annotator": (_good_line("x", annotator="\ud800"), "annotator holds"),
    "a lone surrogate in note": (_good_line("x", note="ok \udfff"), "note holds"),
    "a lone surrogate in session": (_good_line("x", session="\udc80"), "session holds"),
    "a lone surrogate in batch": (_good_line("x", batch="\udc80"), "batch holds"),
    "a lone surrogate in the date": (_good_line("x", created_at="2024-05-01T10:00:00\udc80Z"), "created_at is not"),
    "a huge value in a reason": (_good_line("x", action="k" * 100_000), "action must be one of"),
}


@pytest.mark.parametrize("name", HOSTILE_LINES)
def test_a_hostile_line_is_named_and_the_good_lines_are_kept(tmp_path, name):
    line, reason = HOSTILE_LINES[name]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join([_good_line("before"), line, _good_line("after")]) + b"\n")
    result = ann.import_jsonl(tmp_path / "a.db", path)
    assert (result.imported, result.skipped_duplicates, [e.line for e in result.errors]) == (2, 0, [2])
    assert reason in result.errors[0].reason and len(result.errors[0].reason) < 200
    assert set(ann.current(tmp_path / "a.db")) == {"before", "after"}


def test_the_cli_names_every_bad_line_exits_1_and_shows_no_traceback(tmp_path, capsys):
    from ches.cli import main      # in process: an exception escaping main() would be the traceback a user sees

    path, db = tmp_path / "in.jsonl", tmp_path / "a.db"
    path.write_bytes(b"\n".join([_good_line("first"), *(line for line, _ in HOSTILE_LINES.values()),
                                 _good_line("last")]) + b"\n")
    assert main(["decisions", "import", str(path), "--db", str(db)]) == 1
    out, err = capsys.readouterr()
    assert f"imported 2, skipped 0 duplicate(s), {len(HOSTILE_LINES)} error(s)" in out
    err.encode("utf-8")                                     # printable on any UTF-8 terminal: no lone surrogate
    shown = err.splitlines()
    assert [int(line.split(":")[0].removeprefix("  line ")) for line in shown] == list(range(2, len(HOSTILE_LINES) + 2))
    for (_, reason), line in zip(HOSTILE_LINES.values(), shown):
        assert reason in line
    assert set(ann.current(db)) == {"first", "last"}
    not_a_log = tmp_path / "other.sqlite"                     # a database that is no decision log, and no database
    raw(not_a_log).execute("CREATE TABLE events (x)")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    for bad in (not_a_log, tmp_path / "junk.sqlite"):
        assert main(["decisions", "import", str(path), "--db", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ches: error: ") and str(bad) in err and len(err.splitlines()) == 1


_texts = st.one_of(st.text(max_size=6), st.sampled_from(["\udc80", "a\ud800b", " ", "", "2024-01-01T00:00:00\udc80Z"]))
_times = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                 timezones=st.sampled_from([timezone(timedelta(hours=h)) for h in range(-12, 15)])
                 ).map(lambda t: t.isoformat()),
    st.sampled_from(["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00", "2024-01-01T00:00:00", "+99999-01-01"]))
_anything = st.recursive(st.none() | st.booleans() | st.integers(-10 ** 40, 10 ** 40) | st.floats() | _texts,
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts, inner, max_size=3),
                         max_leaves=8)
_fields = {"pair_id": _texts, "annotator": _texts, "action": st.sampled_from(ann.ACTIONS), "note": _texts,
           "created_at": _times, "session": _texts, "batch": _texts, "id": st.integers(-3, 3), "undoes": st.integers(-3, 3)}


@st.composite
def _hostile_line(draw) -> bytes:
    """A good line with up to three fields replaced (by a plausible value or anything) or removed; or any JSON."""
    if draw(st.integers(0, 9)) == 0:
        return json.dumps(draw(_anything)).encode()
    obj = json.loads(_good_line("p"))
    for key in draw(st.lists(st.sampled_from(sorted(_fields)), max_size=3, unique=True)):
        if draw(st.integers(0, 5)) == 0:
            obj.pop(key, None)
        else:
            obj[key] = draw(st.one_of(_fields[key], _anything))
    return json.dumps(obj).encode()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_hostile_line(), max_size=8))
def test_no_line_can_abort_an_import(lines):
    """Whatever the lines hold, the import returns, and every line is imported, a duplicate or a named error."""
    with tempfile.TemporaryDirectory(dir=FAST_DIR) as tmp:
        path = Path(tmp) / "in.jsonl"
        good = [_good_line(f"good{i}") for i in range(2)]
        path.write_bytes(b"\n".join([good[0], *lines, good[1]]) + b"\n")
        result = ann.import_jsonl(Path(tmp) / "a.db", path)
        assert result.imported + result.skipped_duplicates + len(result.errors) == len(lines) + 2
        assert {e.line for e in result.errors} <= set(range(2, len(lines) + 2))
        assert {"good0", "good1"} <= {e.pair_id for e in ann.history(Path(tmp) / "a.db")}
        assert all(e.reason and len(e.reason) < 300 for e in result.errors)


def test_an_import_finds_duplicates_through_an_index(db):
    """Each line's duplicate lookup is one index search, so an import of n lines stays O(n log n) (checked by
    the plan, not by a timing: ORDER BY seq once made 20k lines take 20x longer)."""
    ann.record(db, "p", "keep", annotator="alice")
    with ann_db.connect(db) as conn:
        plan = " ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + ann_jsonl._DUPLICATE, ("p",) * 5 + (0,)))
    assert "USING INDEX events_by_key" in plan and "TEMP B-TREE" not in plan


def test_interrupted_export_leaves_the_previous_file(tmp_path, monkeypatch):
    db, path = tmp_path / "a.db", tmp_path / "export.jsonl"
    _populate(db)
    ann.export_jsonl(db, path)
    previous = path.read_bytes()
    for i in range(20):
        ann.record(db, f"new{i}", "drop", annotator="alice")

    real_line, written = ann_jsonl._event_line, []

    def failing_line(event):
        if len(written) == 10:
            raise OSError("disk full (simulated)")
        written.append(event.id)
        return real_line(event)

    monkeypatch.setattr(ann_jsonl, "_event_line", failing_line)
    with pytest.raises(OSError, match="simulated"):
        ann.export_jsonl(db, path)
    assert len(written) == 10                                  # it did fail half-way through
    assert path.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir() if "jsonl" in p.name) == ["export.jsonl"]   # no temp left

    monkeypatch.undo()
    assert ann.export_jsonl(db, path) == 26
    assert len(path.read_text().splitlines()) == 26


# ------------------------------------------------------------------------------ the one vocabulary

def test_the_decision_vocabulary_is_spelled_only_in_the_decisions_module(db):
    """keep / drop / clear / undecided as string literals appear in ches/review/decisions/values.py only; the
    other modules (browse, export, charts, cli, ui, pages) import the names."""
    assert ann.DECISION_VALUES == (ann.KEEP, ann.DROP, ann.FLAG) == ("keep", "drop", "flag")
    assert ann.DECISIONS == (*ann.DECISION_VALUES, ann.CLEAR)
    assert ann.STATUSES == (ann.UNDECIDED, *ann.DECISION_VALUES) and ann.UNDECIDED not in ann.ACTIONS
    # the stored schema accepts every action and nothing else
    for action in ann.DECISIONS:
        ann.record(db, "p1", action, annotator="a")
    with sqlite3.connect(db) as conn, pytest.raises(sqlite3.IntegrityError, match="CHECK constraint"):
        conn.execute("INSERT INTO events (seq, pair_id, annotator, action, created_at) "
                     "VALUES (5, 'p1', 'a', ?, '2025-01-01T00:00:00+00:00')", (ann.UNDECIDED,))
    import ast
    spelled = []
    for folder in ("ches", "ui", "pages"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "ches" / "review" / "decisions" / "values.py":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            in_fstrings = {id(c) for f in ast.walk(tree) if isinstance(f, ast.JoinedStr) for c in f.values}
            for node in ast.walk(tree):            # (a piece of an f-string such as f"keep{pct}" is not a value)
                if (isinstance(node, ast.Constant) and node.value in ("keep", "drop", "clear", "undecided")
                        and id(node) not in in_fstrings):
                    spelled.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
    assert not spelled, spelled


# ------------------------------------------------------------------------------ in_force, read incrementally

def _expected_in_force(db) -> list[tuple]:
    """`replay` of the whole history (annotations only), in the log's order: what in_force must return."""
    events = [e for e in ann.history(db) if not e.adjudicated]     # an undo of an adjudication: not one
    return [(e.pair_id, e.action, e.note, e.annotator, e.created_at, e.id)
            for e in sorted(replay(events).values(), key=lambda e: e.seq)]


def test_in_force_read_incrementally_equals_the_whole_history_after_every_action(db, monkeypatch):
    """Random records, bulk records, clears, undos (all, one pair), adjudications and imports by three
    annotators: after each, `in_force` (which re-reads only the keys touched since its last read) equals an
    independent replay of the whole log; the full read ran once, every later read patched."""
    full = []
    read_all = inforce._read_all
    monkeypatch.setattr(inforce, "_read_all", lambda *a: full.append(1) or read_all(*a))
    other = db.with_name("other.sqlite")
    rng = random.Random(5)
    pairs, people = [f"p{i}" for i in range(12)], ["ann", "bo", "cy"]
    for step in range(160):
        who, pair = rng.choice(people), rng.choice(pairs)
        op = rng.random()
        if op < 0.45:
            ann.record(db, pair, rng.choice(["keep", "drop", "flag", "clear"]), annotator=who, note=f"s{step}")
        elif op < 0.55:
            ann.record_many(db, rng.sample(pairs, 4), rng.choice(["keep", "drop"]), annotator=who)
        elif op < 0.7:
            ann.undo(db, annotator=who)
        elif op < 0.8:
            ann.undo(db, annotator=who, pair_id=pair)
        elif op < 0.9:
            ann.record(db, pair, rng.choice(["keep", "drop"]), annotator=who, adjudicate=True)
        else:                                       # another log's events arrive by import
            ann.record(other, pair, rng.choice(["keep", "flag"]), annotator="dee", note=f"s{step}")
            out = db.with_name(f"other-{step}.jsonl")
            ann.export_jsonl(other, out)
            ann.import_jsonl(db, out)
        got = [(d.pair_id, d.decision, d.note, d.annotator, d.at, d.event_id) for d in ann.in_force(db)]
        assert got == _expected_in_force(db), f"step {step}"
    assert len(full) == 1


def test_in_force_reads_everything_again_for_another_file_at_the_same_path(db, tmp_path):
    ann.record(db, "p1", "keep", annotator="ann")
    ann.record(db, "p2", "drop", annotator="ann")
    assert [d.pair_id for d in ann.in_force(db)] == ["p1", "p2"]
    other = tmp_path / "other.sqlite"
    ann.record(other, "p9", "flag", annotator="bo")
    ann.record(other, "p8", "keep", annotator="bo")
    ann.record(other, "p7", "keep", annotator="bo")       # another event at seq 2, and one more after it
    os.replace(other, db)
    assert [(d.pair_id, d.annotator) for d in ann.in_force(db)] == [("p9", "bo"), ("p8", "bo"), ("p7", "bo")]
