"""A run is complete only when every planned pair is in it (ches.engine.chunks, ches.engine.pipeline).

The plan is made once (two processes on one run adopt the first plan), each chunk is verified before
it is trusted (a damaged one is named and scored again), finalise refuses a run whose chunks do not add
up, chunks are sized by time as well as pairs, and nothing is left behind after kills.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import ches.cli as cli
from ches.atomic import atomic_remove
import ches.engine.models as models
from ches.engine import chunks, pipeline, store
from ches.engine.records import load_records
from ches.engine.pipeline import score_dataset
from ches.engine.runs import list_unfinished, run_progress
from ches.engine.timing import Estimate, chunk_size_for
from ches.engine.store import read_arrays, read_manifest, read_scores
from conftest import ROOT
from test_distributed import assert_same_table
from test_runs import counting_embed, rows

RUN_FILES = ["S_minus.npy", "S_plus.npy", "manifest.json", "scores.parquet", "texts.parquet"]


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
    return models.load_model(str(tiny_model_dir))


def unfinished(ds, lm, root: Path, monkeypatch, chunk_size: int = 8) -> Path:
    """Every chunk of `ds` committed, not finalised: the plan and chunks/ as a kill before finalise leaves them."""
    with monkeypatch.context() as m:
        m.setattr(chunks, "finalise", lambda run_dir: run_dir)
        return score_dataset(ds, lm, runs_root=root, max_length=64, chunk_size=chunk_size)


# ----------------------------------------------------------------------------------- 1. one plan
# Loaded by both scoring processes at start-up (PYTHONPATH): each waits at start_run until both are there,
# so they race on plan.json, then embeds slowly, so that they score the same run at the same time.
TOGETHER = """
import os, sys, time
if sys.orig_argv[1:4] == ["-m", "ches", "score"]:
    import ches.engine.pipeline as pipeline
    import ches.engine.chunks as chunks
    _start, _embed, gate = chunks.start_run, pipeline.embed_pairs, os.environ["GATE"]
    def start_run(*args, **kwargs):
        open(os.path.join(gate, str(os.getpid())), "w").close()
        while len(os.listdir(gate)) < 2:
            time.sleep(0.01)
        return _start(*args, **kwargs)
    def embed_pairs(*args, **kwargs):
        time.sleep(0.2)
        return _embed(*args, **kwargs)
    chunks.start_run, pipeline.embed_pairs = start_run, embed_pairs
"""


@pytest.mark.slow
def test_two_processes_with_other_chunk_sizes_end_with_one_complete_run(tiny_lm, tiny_model_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows(50)))
    site, gate = tmp_path / "site", tmp_path / "gate"
    site.mkdir(), gate.mkdir()
    (site / "sitecustomize.py").write_text(TOGETHER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
           "GATE": str(gate)}
    runs = tmp_path / "runs"
    procs = [subprocess.Popen([sys.executable, "-m", "ches", "score", str(data), "--model", str(tiny_model_dir),
                               "--max-length", "64", "--chunk-size", size, "--out", str(runs), "--top", "1"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for size in ("8", "16")]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    (run,) = runs.iterdir()
    plan_size = read_manifest(run)["chunk_size"]
    assert plan_size in (8, 16)
    adopted = [err for _, err in results if f"in chunks of {plan_size} pairs: using that, not {24 - plan_size}" in err]
    assert len(adopted) == 1                                          # the process that lost says so
    table = read_scores(run)
    assert table["row"].tolist() == list(range(1, 51))               # every planned pair, once
    assert read_manifest(run)["pairs"] == 50 and read_arrays(run)["S_plus"].shape == (50, 32)
    assert sorted(p.name for p in run.iterdir()) == RUN_FILES
    ref = score_dataset(load_records(rows(50)), tiny_lm, runs_root=tmp_path / "ref", max_length=64, chunk_size=8)
    assert ref.name == run.name
    assert_same_table(run, ref)


def test_the_plan_is_created_once_and_adopted(tiny_lm, tmp_path):
    pairs = load_records(rows(20)).pairs
    first = chunks.start_run(tmp_path / "r", {"chunk_size": 4}, pairs)
    second = chunks.start_run(tmp_path / "r", {"chunk_size": 9}, pairs)
    assert first == second == chunks.read_plan(tmp_path / "r") and second["chunk_size"] == 4
    assert len(second["chunk_ids"]) == 5 and second["total_pairs"] == 20
    with pytest.raises(ValueError, match="started for other pairs"):
        chunks.start_run(tmp_path / "r", {"chunk_size": 4}, pairs[:19])
    assert [p.name for p in (tmp_path / "r").iterdir() if p.name.startswith(".")] == []    # no temp left


def test_a_resume_with_another_chunk_size_adopts_the_plan_and_says_so(tiny_lm, tmp_path, monkeypatch, caplog):
    ds = load_records(rows(20))
    run = unfinished(ds, tiny_lm, tmp_path, monkeypatch, chunk_size=8)
    with caplog.at_level(logging.WARNING):
        score_dataset(ds, tiny_lm, runs_root=tmp_path, max_length=64, chunk_size=16)
    assert f"{run} was planned first (by another process or an earlier start) in chunks of 8 pairs: using that, " \
           "not 16" in caplog.text
    assert read_manifest(run)["chunk_size"] == 8


# ----------------------------------------------------------------------------------- 2. verified chunks
def _rewrite_short(chunk: Path, keep: int) -> None:
    """A chunk cut to its first `keep` rows whose commit record is rewritten to match its files: only the
    plan can tell."""
    for name in ("scores.parquet", "texts.parquet"):
        pq.write_table(pq.read_table(chunk / name).slice(0, keep), chunk / name)
    for name in store.ARRAYS:
        np.save(chunk / f"{name}.npy", np.load(chunk / f"{name}.npy")[:keep], allow_pickle=False)
    meta = json.loads((chunk / "meta.json").read_text())
    t = pq.read_table(chunk / "scores.parquet")
    meta["rows"] = keep
    meta["ids"] = chunks.ids_digest(zip(t.column("row").to_pylist(), t.column("pair_id").to_pylist()))
    meta["files"] = {n: {"bytes": (chunk / n).stat().st_size, "sha256": hashlib.sha256((chunk / n).read_bytes()).hexdigest()}
                     for n in chunks.CHUNK_FILES}
    (chunk / "meta.json").write_text(json.dumps(meta))


def test_damaged_chunks_are_named_and_scored_again(tiny_lm, tmp_path, monkeypatch, caplog):
    ds = load_records(rows(48))
    reference = score_dataset(ds, tiny_lm, runs_root=tmp_path / "ref", max_length=64, chunk_size=8)
    run = unfinished(ds, tiny_lm, tmp_path / "runs", monkeypatch)
    folder = run / "chunks"
    npy = folder / "000001" / "S_plus.npy"
    npy.write_bytes(npy.read_bytes()[:-40])                          # truncated
    _rewrite_short(folder / "000002", 3)                             # 3 rows instead of 8, record to match
    (folder / "000003" / "meta.json").unlink()                       # no commit record
    parquet = folder / "000004" / "scores.parquet"
    data = bytearray(parquet.read_bytes())
    data[len(data) // 2] ^= 0xFF                                      # same size, other bytes
    parquet.write_bytes(bytes(data))
    (folder / "stray").mkdir()                                       # not a chunk at all
    (folder / "000099").mkdir()                                      # a number the plan does not have
    assert chunks.done_chunks(run) == {0, 4, 5}                       # the quick checks: sizes, counts, record
    assert run_progress(run) == (24, 48, False)
    assert chunks.chunk_problem(run, chunks.read_plan(run), 4, checksums=True) == \
        "scores.parquet does not match its checksum"

    calls = counting_embed(monkeypatch)
    with caplog.at_level(logging.WARNING):
        score_dataset(ds, tiny_lm, runs_root=tmp_path / "runs", max_length=64, chunk_size=8)
    assert calls == [8, 8, 8, 8]                                     # chunks 1 to 4 again, 0 and 5 kept
    for name, why in (("000001", "S_plus.npy has"), ("000002", "3 rows + 0 skipped, not the 8 pairs planned"),
                      ("000003", "no meta.json"), ("000004", "scores.parquet does not match its checksum")):
        assert f"chunk {folder / name} is damaged: {why}" in caplog.text
    assert f"{folder / 'stray'} is not a chunk of this run" in caplog.text
    assert f"{folder / '000099'} is not a chunk of this run" in caplog.text
    pd.testing.assert_frame_equal(read_scores(run), read_scores(reference))     # same chunks: same numbers
    for name in store.ARRAYS:
        np.testing.assert_array_equal(read_arrays(run)[name], read_arrays(reference)[name])
    assert sorted(p.name for p in run.iterdir()) == RUN_FILES        # chunks/, strays and plan gone


def test_finalise_refuses_chunks_that_do_not_add_up(tiny_lm, tmp_path, monkeypatch):
    ds = load_records(rows(40))
    run = unfinished(ds, tiny_lm, tmp_path, monkeypatch)
    atomic_remove(run / "chunks" / "000002")
    _rewrite_short(run / "chunks" / "000004", 3)
    with pytest.raises(chunks.IncompleteRun, match=r"is not complete: 2 of 5 chunks \(16 of 40 planned pairs\) are "
                       r"missing or damaged: 000002 \(pairs 17-24\), 000004 \(pairs 33-40\); run the same command"):
        chunks.finalise(run)
    assert not store.is_complete(run) and chunks.done_chunks(run) == {0, 1, 3}


def test_a_chunk_that_disagrees_with_itself_is_never_committed(tiny_lm, tmp_path):
    pairs = load_records(rows(8)).pairs
    chunks.start_run(tmp_path, {"chunk_size": 8}, pairs)
    scores = pd.DataFrame({"row": [p.row for p in pairs]})
    with pytest.raises(ValueError, match="8 scores, 8 pairs, 3 and 8 rows of sums"):
        chunks.commit_chunk(tmp_path, 0, scores=scores, pairs=pairs, S_plus=np.zeros((3, 4)), S_minus=np.zeros((8, 4)),
                           meta={})
    assert chunks.done_chunks(tmp_path) == set() and list((tmp_path / "chunks").iterdir()) == []


# ----------------------------------------------------------------------------------- 3. time-sized chunks
def test_chunks_are_sized_by_time_as_well_as_pairs():
    fast = Estimate(pairs=100, tokens=10_000, exact=True, tokens_per_second=1e6, seconds=0.01)      # 10,000 pairs/s
    assert [chunk_size_for(n, fast) for n in (1, 40, 165, 1000, 20_480, 10**6)] == [16, 16, 16, 50, 1024, 1024]
    slow = Estimate(pairs=100, tokens=100_000, exact=True, tokens_per_second=400, seconds=250)      # 0.4 pairs/s
    assert [chunk_size_for(n, slow) for n in (60, 1000, 10**6)] == [12, 12, 12]       # 30 s = 12 pairs
    crawl = Estimate(pairs=1, tokens=5_000, exact=True, tokens_per_second=10, seconds=500)          # 500 s a pair
    assert chunk_size_for(1000, crawl) == 1
    assert chunk_size_for(1000, Estimate(3, 0, False, 0.0, 0.0)) == 50               # nothing measured
    # in whole blocks of pairs (8 on the CPU, 128 on a GPU), at least one
    assert [chunk_size_for(1000, est, 8) for est in (fast, slow, crawl)] == [48, 8, 8]
    assert [chunk_size_for(n, fast, 128) for n in (1, 20_480, 10**6)] == [128, 1024, 1024]


def test_the_cli_sizes_the_chunks_from_the_measured_rate(tiny_lm, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(models, "load_model", lambda *a, **k: tiny_lm)
    monkeypatch.setattr(pipeline, "estimate",
                        lambda pairs, *a, **k: Estimate(len(pairs), 200 * len(pairs), True, 40.0, 5.0 * len(pairs)))
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows(30)))
    assert cli.main(["score", str(data), "--max-length", "64", "--out", str(tmp_path / "runs"), "--top", "1"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert read_manifest(run)["chunk_size"] == 8                     # 30 s at 40 tokens/s = 6 pairs: one block
    with pytest.raises(SystemExit):
        cli.main(["score", "--help"])
    assert "default: about 30 s of work at the rate the warm-up measures" in " ".join(capsys.readouterr().out.split())


def test_the_numbers_are_the_same_bits_whatever_the_chunk_size_speed_or_batch_budget_of_a_resume(
        tiny_lm, tmp_path, monkeypatch):
    """A run key promises its numbers: chunks of 8, 24 or all 48 pairs, chunks sized by a fast or a slow
    machine's warm-up, and a resume asking for another batch budget all give one table, bit for bit
    (ranks: test_distributed.py). Before blocks, chunks of 16 and 96 pairs differed by 6e-5 in CHES."""
    ds = load_records(rows(48))
    ref = score_dataset(ds, tiny_lm, runs_root=tmp_path / "48", max_length=64, chunk_size=48)
    for size in (8, 24):
        assert_same_table(score_dataset(ds, tiny_lm, runs_root=tmp_path / str(size), max_length=64,
                                        chunk_size=size), ref)
    for name, per_second in (("fast", 1e6), ("slow", 10.0)):
        with monkeypatch.context() as m:
            m.setattr(pipeline, "estimate", lambda pairs, *a, per_second=per_second, **k:
                      Estimate(len(pairs), 30 * len(pairs), True, per_second, 30 * len(pairs) / per_second))
            run = score_dataset(ds, tiny_lm, runs_root=tmp_path / name, max_length=64)
        assert read_manifest(run)["chunk_size"] == {"fast": 16, "slow": 8}[name]
        assert_same_table(run, ref)
    half = unfinished(load_records(rows(48)), tiny_lm, tmp_path / "resumed", monkeypatch)
    lost = [chunks.chunk_path(half, i) for i in (3, 4, 5)]              # three chunks lost to a kill
    for chunk in lost:
        shutil.rmtree(chunk) if chunk.is_dir() else chunk.unlink()
    assert score_dataset(ds, tiny_lm, runs_root=tmp_path / "resumed", max_length=64, batch_tokens=64) == half
    assert read_manifest(half)["batch_tokens"] == 1024                # the plan's budget, not the resume's
    assert_same_table(half, ref)


# ----------------------------------------------------------------------------------- 4. nothing left behind
def test_a_kill_inside_finalise_leaves_nothing_behind_after_the_next_call(tiny_lm, tmp_path, monkeypatch):
    ds = load_records(rows(16))
    run = unfinished(ds, tiny_lm, tmp_path, monkeypatch)
    with monkeypatch.context() as m:                                  # killed after the manifest, before the tidy
        m.setattr(chunks, "tidy", lambda run_dir: None)
        chunks.finalise(run)
    (run / ".scores.parquet.0123456789ab.tmp").write_bytes(b"half")  # a finaliser killed mid-write
    (run / "chunks" / ".000001.0123456789ab.tmp").mkdir()
    keep = run / ".projection-cache.0123456789ab.tmp"                 # not a run file: not ours to remove
    keep.write_bytes(b"x")
    assert {"chunks", "plan.json"} <= {p.name for p in run.iterdir()}
    assert score_dataset(ds, tiny_lm, runs_root=tmp_path, max_length=64, chunk_size=8) == run
    assert sorted(p.name for p in run.iterdir()) == sorted([*RUN_FILES, keep.name])


def test_a_resume_removes_dead_writers_temp_folders_and_keeps_live_ones(tiny_lm, tmp_path, monkeypatch):
    ds = load_records(rows(16))
    run = unfinished(ds, tiny_lm, tmp_path, monkeypatch)
    dead, live = run / "chunks" / ".000001.0123456789ab.tmp", run / "chunks" / ".000001.ba9876543210.tmp"
    for folder in (dead, live):
        folder.mkdir()
        (folder / "S_plus.npy").write_bytes(b"half")
    old = time.time() - chunks.STALE_TEMP_S - 60
    for p in (dead / "S_plus.npy", dead):
        os.utime(p, (old, old))
    assert chunks.check_chunks(run, chunks.read_plan(run)) == {0, 1}
    assert not dead.exists() and live.exists()


def test_unfinished_and_broken_runs_are_listed_and_deleted(tiny_lm, tmp_path, monkeypatch, capsys):
    ds = load_records(rows(16))
    run = unfinished(ds, tiny_lm, tmp_path, monkeypatch)
    broken = tmp_path / "0123456789abcdef"
    (broken / "chunks").mkdir(parents=True)
    (broken / "plan.json").write_text("{not json")
    listed = list_unfinished(tmp_path)
    assert [(d, p) for d, _, p in listed] == [(run, (16, 16, False)), (broken, None)]
    assert cli.main(["runs", "--out", str(tmp_path)]) == 0
    assert "0123456789abcdef  broken: its plan.json cannot be read" in capsys.readouterr().out
    for d in (run, broken):
        store.delete_run(d)
        assert not d.exists()
    assert list_unfinished(tmp_path) == []


def test_the_app_offers_delete_for_unfinished_and_broken_runs(workspace_env, tiny_lm):
    from streamlit.testing.v1 import AppTest

    runs = workspace_env.workspace / "runs"
    half = runs / "fedcba9876543210"
    chunks.start_run(half, {"chunk_size": 4, "source": "uploads/0123456789ab-three.jsonl"}, load_records(rows(12)).pairs)
    broken = runs / "0123456789abcdef"
    (broken / "chunks").mkdir(parents=True)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    pick = at.selectbox(key="score_delete_pick")
    assert pick.options == ["unfinished: 0 of 12 pairs · three.jsonl · fedcba98", "broken run folder · 01234567"]
    for doomed in (half, broken):
        at.selectbox(key="score_delete_pick").set_value(str(doomed)).run()
        at.button(key="score_delete").click().run()
        at.button(key="score_delete_confirm").click().run()
        assert not at.exception and not doomed.exists()
    assert list(runs.iterdir()) == []
