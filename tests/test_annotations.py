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
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ches.review import decisions as ann
from ches.review.decisions import Decision, Event, LineError

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
    with ann._connect(db) as conn:                                              # what every call runs with
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


def test_combined_view_orders_by_time_not_by_import_order(db, tmp_path):
    ann.record(db, "p", "keep", annotator="alice")
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({"pair_id": "p", "annotator": "bob", "action": "drop", "note": "",
                               "created_at": "2001-01-01T00:00:00Z"}) + "\n")
    assert ann.import_jsonl(db, old)[:2] == (1, 0)
    assert ann.current(db)["p"].annotator == "alice"   # bob's decision is older, though logged later
    assert ann.current(db, annotator="bob")["p"].at == "2001-01-01T00:00:00.000000+00:00"


def _events_file(path: Path, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps({"note": "", **e}) + "\n" for e in events))
    return path


def test_an_older_export_imported_over_newer_local_decisions_changes_nothing(db, tmp_path):
    """One rule (contract 5): the latest by the time of the original event wins, per annotator and combined."""
    ann.record(db, "p1", "keep", annotator="alice", note="local, newer")
    ann.record(db, "p2", "drop", annotator="alice")
    before = ann.current(db)
    old = _events_file(tmp_path / "old.jsonl", [
        {"id": 1, "pair_id": "p1", "annotator": "alice", "action": "drop", "created_at": "2001-01-01T00:00:00Z"},
        {"id": 2, "pair_id": "p2", "annotator": "alice", "action": "flag", "created_at": "2001-01-01T00:00:01Z"},
        {"id": 3, "pair_id": "p3", "annotator": "alice", "action": "keep", "created_at": "2001-01-01T00:00:02Z"}])
    assert ann.import_jsonl(db, old) == (3, 0, [])
    assert ann.current(db, annotator="alice")["p1"] == before["p1"]       # the older imports lose ...
    assert ann.current(db, annotator="alice")["p2"] == before["p2"]
    assert {p: d.decision for p, d in ann.current(db).items()} == {"p1": "keep", "p2": "drop", "p3": "keep"}
    # ... a newer import wins, and undo cancels the latest by the same rule (not the latest logged)
    newer = _events_file(tmp_path / "new.jsonl", [
        {"pair_id": "p2", "annotator": "alice", "action": "flag", "created_at": "2999-01-01T00:00:00Z"}])
    ann.import_jsonl(db, newer)
    assert ann.current(db)["p2"].decision == "flag"
    ann.record(db, "p4", "keep", annotator="alice")                      # logged last, but older than 2999
    assert [(e.pair_id, e.created_at[:4]) for e in ann.undo(db, annotator="alice")] == [("p2", "2999")]
    assert ann.current(db)["p2"] == before["p2"] and "p4" in ann.current(db)


def test_current_matches_a_reference_sort_over_shuffled_times(db, tmp_path):
    """Random events with random times, imported in random order: the SQL agrees with a plain sort."""
    rng = random.Random(5)
    stamps = [f"2020-01-01T00:00:{rng.randrange(6):02d}.{rng.randrange(3):06d}Z" for _ in range(300)]
    lines = [{"pair_id": f"p{rng.randrange(6)}", "annotator": rng.choice(["ann", "bea", "cy"]),
              "action": rng.choice(ann.DECISIONS), "note": str(i), "created_at": t}   # note: all distinct
             for i, t in enumerate(stamps)]
    assert ann.import_jsonl(db, _events_file(tmp_path / "e.jsonl", lines))[:2] == (300, 0)
    events = ann.history(db)
    mine: dict[tuple[str, str], Event] = {}
    for e in sorted(events, key=lambda e: (e.created_at, e.id)):       # the latest per (pair, annotator)
        mine[(e.pair_id, e.annotator)] = e
    in_force = {k: e for k, e in mine.items() if e.action != "clear"}
    assert {(p, a): d.event_id for a, per in ann.current_by_annotator(db).items() for p, d in per.items()} == \
        {k: e.id for k, e in in_force.items()}
    combined = {}
    for (pair, who), e in sorted(in_force.items(), key=lambda kv: (kv[1].created_at, kv[0][1], kv[1].id)):
        combined[pair] = e
    assert {p: d.event_id for p, d in ann.current(db).items()} == {p: e.id for p, e in combined.items()}


# ---------------------------------------------------------------------------- append-only

@pytest.mark.parametrize("sql", [
    "UPDATE events SET action = 'drop'",
    "UPDATE events SET note = 'edited' WHERE id = 1",
    "DELETE FROM events",
    "DELETE FROM events WHERE id = 1",
    "INSERT OR REPLACE INTO events (id, pair_id, annotator, action, note, created_at) "
    "VALUES (1, 'p1', 'alice', 'drop', '', '2020-01-01T00:00:00.000000+00:00')",
    "REPLACE INTO events (id, pair_id, annotator, action, note, created_at) "
    "VALUES (1, 'p1', 'alice', 'drop', '', '2020-01-01T00:00:00.000000+00:00')",
    "INSERT INTO events (pair_id, annotator, action, note, undoes, created_at) "
    "VALUES ('p1', 'mallory', 'undo', '', 1, '2020-01-01T00:00:00.000000+00:00')",   # someone else's event
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
    st.tuples(st.just("undo"), st.sampled_from(["ann", "bea"]))), max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_matches_a_model_of_stacks_per_annotator(ops):
    """Model: each annotator has a stack of actions; undo pops; state = replay of what is left."""
    with tempfile.TemporaryDirectory(dir=FAST_DIR) as tmp:
        db = Path(tmp) / "a.db"
        stacks: dict[str, list[tuple[str, str]]] = {"ann": [], "bea": []}
        n_undone = 0
        for op in ops:
            if op[0] == "record":
                _, who, pair, decision = op
                ann.record(db, pair, decision, annotator=who)
                stacks[who].append((pair, decision))
            else:
                undone = ann.undo(db, annotator=op[1])
                expected = stacks[op[1]].pop() if stacks[op[1]] else None
                if expected is None:
                    assert undone == []
                else:
                    assert [(e.pair_id, e.action) for e in undone] == [expected]
                    n_undone += 1
        for who, stack in stacks.items():
            model: dict[str, str] = {}
            for pair, decision in stack:
                if decision == "clear":
                    model.pop(pair, None)
                else:
                    model[pair] = decision
            assert {p: d.decision for p, d in ann.current(db, annotator=who).items()} == model
        log = ann.history(db)
        assert sum(e.action != "undo" for e in log) == sum(op[0] == "record" for op in ops)
        assert sum(e.action == "undo" for e in log) == n_undone


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
    ann.record_many(src, [f"p{i}" for i in range(5)], "keep", annotator="alice")
    ann.export_jsonl(src, path)
    assert ann.import_jsonl(dst, path) == (5, 0, [])
    assert len(ann.undo(dst, annotator="alice")) == 5 and ann.current(dst) == {}


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
        if pair not in combined or (e.created_at, e.id) > (combined[pair].created_at, combined[pair].id):
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


def test_interrupted_export_leaves_the_previous_file(tmp_path, monkeypatch):
    db, path = tmp_path / "a.db", tmp_path / "export.jsonl"
    _populate(db)
    ann.export_jsonl(db, path)
    previous = path.read_bytes()
    for i in range(20):
        ann.record(db, f"new{i}", "drop", annotator="alice")

    real_line, written = ann._event_line, []

    def failing_line(event):
        if len(written) == 10:
            raise OSError("disk full (simulated)")
        written.append(event.id)
        return real_line(event)

    monkeypatch.setattr(ann, "_event_line", failing_line)
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
    """keep / drop / clear / undecided as string literals appear in ches/review/decisions.py only; the
    other modules (browse, export, charts, cli, ui, pages) import the names."""
    assert ann.DECISION_VALUES == (ann.KEEP, ann.DROP, ann.FLAG) == ("keep", "drop", "flag")
    assert ann.DECISIONS == (*ann.DECISION_VALUES, ann.CLEAR)
    assert ann.STATUSES == (ann.UNDECIDED, *ann.DECISION_VALUES) and ann.UNDECIDED not in ann.ACTIONS
    # the stored schema accepts every action and nothing else
    for action in ann.DECISIONS:
        ann.record(db, "p1", action, annotator="a")
    with sqlite3.connect(db) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO events (pair_id, annotator, action, created_at) "
                     "VALUES ('p1', 'a', ?, '2025-01-01T00:00:00+00:00')", (ann.UNDECIDED,))
    import ast
    spelled = []
    for folder in ("ches", "ui", "pages"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "ches" / "review" / "decisions.py":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            in_fstrings = {id(c) for f in ast.walk(tree) if isinstance(f, ast.JoinedStr) for c in f.values}
            for node in ast.walk(tree):            # (a piece of an f-string such as f"keep{pct}" is not a value)
                if (isinstance(node, ast.Constant) and node.value in ("keep", "drop", "clear", "undecided")
                        and id(node) not in in_fstrings):
                    spelled.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
    assert not spelled, spelled
