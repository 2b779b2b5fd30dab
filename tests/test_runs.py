"""Chunked, resumable scoring (ches.engine.pipeline + ches.engine.chunks) on a tiny random-weight model.

The numbers are checked against one pass of the engine over all pairs (the engine itself is checked
against the authors' recipe in test_engine.py) and against an uninterrupted run of the same data.
"""
from __future__ import annotations

import base64
import datetime
import decimal
import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ches.cli as cli
import ches.engine.models as models
from ches.engine import pipeline, metrics
from ches.engine import chunks, store
from ches.engine.files import load_bytes, load_dataset
from ches.engine.records import load_records
from ches.engine.forward import embed_pairs
from ches.engine.pipeline import Interrupted, estimate, run_key, score_dataset
from ches.engine.runs import list_runs, list_unfinished, run_progress
from ches.engine.store import read_arrays, read_manifest, read_pairs, read_scores
from ches.engine.tokens import encode_pair
from test_scores import dp_levenshtein


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
    return models.load_model(str(tiny_model_dir))


def rows(n: int) -> list[dict]:
    return [{"prompt": f"Question {i}: what is {i} plus {i}?" + " Explain." * (i % 5),
             "chosen": f"It is {2 * i}, since {i} + {i} = {2 * i}." + " Indeed." * (i % 3),
             "rejected": f"Maybe {2 * i + 1}." if i % 7 else "", "id": f"q{i}"} for i in range(n)]


def scaled_close(mine, theirs, size, rel=1e-5):
    """|a - b| <= rel * max(|b|, size): scores are differences of terms of `size` that may cancel (test_engine)."""
    err = np.abs(np.asarray(mine) - np.asarray(theirs)) / np.maximum(np.abs(theirs), size)
    assert err.max() <= rel, err.max()


def test_chunked_run_equals_one_pass_of_the_engine(tiny_lm, tmp_path):
    ds = load_records(rows(37))
    run = score_dataset(ds, tiny_lm, runs_root=tmp_path, max_length=64, chunk_size=8)
    assert sorted(p.name for p in run.iterdir()) == ["S_minus.npy", "S_plus.npy", "manifest.json",
                                                      "scores.parquet", "texts.parquet"]
    enc = [encode_pair(tiny_lm.tokenizer, p, 64) for p in ds.pairs]
    emb = embed_pairs(tiny_lm, enc)                                 # all 37 pairs in one call, float64
    table, arrays = read_scores(run), read_arrays(run)
    assert table["row"].tolist() == [p.row for p in ds.pairs] and table["pair_id"].tolist() == [p.pair_id for p in ds.pairs]
    np.testing.assert_array_equal(table["len_chosen"], emb.len_plus)
    np.testing.assert_array_equal(table["len_rejected"], emb.len_minus)
    m_plus = emb.S_plus / emb.len_plus[:, None]
    scaled_close(table["ches"], metrics.ches(emb.S_plus, emb.S_minus), (emb.S_plus ** 2).sum(1))
    scaled_close(table["ln_ches"], metrics.ln_ches(emb.S_plus, emb.S_minus, emb.len_plus, emb.len_minus),
                 (m_plus ** 2).sum(1))
    last = np.einsum("nd,nd->n", emb.last_plus.astype(np.float64), emb.last_minus)
    scaled_close(table["last_hidden_ip"], last, np.linalg.norm(emb.last_plus, axis=1) * np.linalg.norm(emb.last_minus, axis=1))
    edit = [-dp_levenshtein(e.chosen, e.rejected) / max(len(e.chosen), len(e.rejected), 1) for e in enc]
    np.testing.assert_allclose(table["edit_sim"], edit, rtol=1e-12)
    assert arrays["S_plus"].dtype == np.float32 and arrays["S_plus"].shape == (37, 32)
    np.testing.assert_allclose(arrays["S_plus"], emb.S_plus, rtol=1e-5, atol=1e-5 * np.abs(emb.S_plus).max())
    np.testing.assert_allclose(arrays["S_minus"], emb.S_minus, rtol=1e-5, atol=1e-5 * np.abs(emb.S_minus).max())
    m = read_manifest(run)
    assert (m["pairs"], m["total_pairs"], m["chunk_size"], m["hidden_size"]) == (37, 37, 8, 32)
    assert m["tokens"] == sum(len(e.prompt_plus) + len(e.chosen) + len(e.prompt_minus) + len(e.rejected) for e in enc)
    assert m["versions"] == store.library_versions() and m["attn_implementation"]
    assert run_progress(run) == (37, 37, True)
    arrays_bytes = sum((run / f"{a}.npy").stat().st_size for a in store.ARRAYS)
    assert arrays_bytes <= 37 * 32 * 8 + 2 * 128                   # n x d x 8 bytes plus the .npy headers
    assert store.run_size(run) == sum(f.stat().st_size for f in run.iterdir())


def counting_embed(monkeypatch, fail_on: int | None = None) -> list[int]:
    """Record the pairs of each embed_pairs call; raise KeyboardInterrupt (a Ctrl-C) at call `fail_on`."""
    calls: list[int] = []

    def embed(lm, encoded, **kwargs):
        if fail_on is not None and len(calls) == fail_on:
            raise KeyboardInterrupt
        emb = embed_pairs(lm, encoded, **kwargs)
        calls.append(len(encoded))
        return emb

    monkeypatch.setattr(pipeline, "embed_pairs", embed)
    return calls


def test_a_chunk_another_process_commits_meanwhile_is_kept_and_counted_once(tiny_lm, tmp_path, monkeypatch):
    """commit_chunk is True for the writer whose folder lands, False for one that finds it there, also when
    the other writer finishes while this one is still writing."""
    ds = load_records(rows(16))
    commit, texts_table, results = chunks.commit_chunk, store.texts_table, []

    def racing(run_dir, index, **kwargs):
        if index == 1:
            def other_writer_first(pairs):              # mid-write: the same chunk lands from elsewhere
                monkeypatch.setattr(chunks, "texts_table", texts_table)
                results.append(("other", commit(run_dir, index, **kwargs)))
                return texts_table(pairs)
            monkeypatch.setattr(chunks, "texts_table", other_writer_first)
        results.append((index, commit(run_dir, index, **kwargs)))
        assert not [p.name for p in (run_dir / "chunks").iterdir() if p.name.startswith(".")]   # no temp left
        return results[-1][1]

    monkeypatch.setattr(chunks, "commit_chunk", racing)
    run = score_dataset(ds, tiny_lm, runs_root=tmp_path, max_length=64, chunk_size=8)
    assert results == [(0, True), ("other", True), (1, False)]
    assert read_scores(run)["row"].tolist() == list(range(1, 17))


@pytest.mark.parametrize("how", ["should_stop", "ctrl_c"])
def test_an_interrupted_run_keeps_its_chunks_and_resumes_with_the_rest(tiny_lm, tmp_path, monkeypatch, how):
    ds = load_records(rows(40))
    reference = read_scores(score_dataset(ds, tiny_lm, runs_root=tmp_path / "ref", max_length=64, chunk_size=8))
    calls = counting_embed(monkeypatch, fail_on=2 if how == "ctrl_c" else None)
    stop = (lambda: len(calls) >= 2) if how == "should_stop" else None
    with pytest.raises(Interrupted, match=r"^interrupted: 16 of 40 pairs kept; run the same command to resume$") as info:
        score_dataset(ds, tiny_lm, runs_root=tmp_path / "runs", max_length=64, chunk_size=8, should_stop=stop)
    run = info.value.run_dir
    assert run_progress(run) == (16, 40, False) and chunks.done_chunks(run) == {0, 1}
    assert list_runs(tmp_path / "runs") == [] and [r[0] for r in list_unfinished(tmp_path / "runs")] == [run]

    calls = counting_embed(monkeypatch)
    seen = []
    again = score_dataset(ds, tiny_lm, runs_root=tmp_path / "runs", max_length=64, chunk_size=16,  # plan keeps 8
                          progress=lambda done, total: seen.append((done, total)))
    assert again == run and calls == [8, 8, 8]                      # only the three missing chunks
    assert seen[0] == (32, 80) and seen[-1] == (80, 80)             # the bar starts where it stopped
    pd.testing.assert_frame_equal(read_scores(run), reference)     # same chunks: the very same numbers


def test_a_failed_write_keeps_the_finished_chunks(tiny_lm, tmp_path, monkeypatch):
    ds = load_records(rows(40))
    commit = chunks.commit_chunk

    def flaky(run_dir, index, **kwargs):
        if index == 2:
            raise OSError(28, "No space left on device")
        return commit(run_dir, index, **kwargs)

    monkeypatch.setattr(chunks, "commit_chunk", flaky)
    with pytest.raises(OSError, match="No space left"):
        score_dataset(ds, tiny_lm, runs_root=tmp_path, max_length=64, chunk_size=8)
    run = next(tmp_path.iterdir())
    assert {0, 1} <= chunks.done_chunks(run) and 2 not in chunks.done_chunks(run)
    assert not any(p.name.startswith(".") for p in (run / "chunks").iterdir())   # no half-written chunk left
    monkeypatch.setattr(chunks, "commit_chunk", commit)
    table = read_scores(score_dataset(ds, tiny_lm, runs_root=tmp_path, max_length=64, chunk_size=8))
    assert table["row"].tolist() == list(range(1, 41))


def test_the_key_covers_the_full_source_records(tiny_lm):
    base = rows(3)
    other_ids = [{**r, "id": r["id"] + "-v2"} for r in base]
    a, b = load_records(base), load_records(other_ids)
    assert a.content_hash == b.content_hash                        # the same pairs...
    assert run_key(a, tiny_lm, 64) != run_key(b, tiny_lm, 64)      # ...but other records: another run
    assert run_key(load_records(base), tiny_lm, 64) == run_key(a, tiny_lm, 64)
    text = "\n".join(json.dumps(r) for r in base).encode()
    shifted = load_bytes(b"\n" + text, "d.jsonl")                  # same records on other lines
    assert run_key(shifted, tiny_lm, 64) != run_key(load_bytes(text, "d.jsonl"), tiny_lm, 64)
    assert run_key(a, tiny_lm, 64) != run_key(a, tiny_lm, 65)


def test_any_parquet_column_type_is_stored(tiny_lm, tmp_path):
    when = datetime.datetime(2024, 5, 6, 7, 8, 9)
    table = pa.table({
        "prompt": ["hi", "yo"], "chosen": ["hello", "hey"], "rejected": ["go away", "no"],
        "created": pa.array([when, when], pa.timestamp("us")), "day": pa.array([when.date()] * 2, pa.date32()),
        "blob": pa.array([b"\x00\xff", b"ok"], pa.binary()), "price": pa.array([decimal.Decimal("1.10")] * 2, pa.decimal128(5, 2)),
        "took": pa.array([datetime.timedelta(seconds=90)] * 2, pa.duration("s")),
        "meta": pa.array([{"at": when, "n": 1}, {"at": when, "n": 2}]), "tags": [["a", "b"], []],
    })
    pq.write_table(table, tmp_path / "typed.parquet")
    ds = load_dataset(tmp_path / "typed.parquet")
    assert {n.split("'")[1] for n in ds.notes} == {"created", "day", "blob", "price", "took", "meta"}
    run = score_dataset(ds, tiny_lm, runs_root=tmp_path / "runs", max_length=64)
    record = read_pairs(run)[0].record
    assert record == {"prompt": "hi", "chosen": "hello", "rejected": "go away", "created": "2024-05-06T07:08:09",
                      "day": "2024-05-06", "blob": base64.b64encode(b"\x00\xff").decode(), "price": "1.10",
                      "took": 90.0, "meta": {"at": "2024-05-06T07:08:09", "n": 1}, "tags": ["a", "b"]}
    assert any("blob" in n for n in read_manifest(run)["notes"])


def test_run_helpers_for_the_app(tiny_lm, tmp_path):
    ds = load_records(rows(10))
    run = score_dataset(ds, tiny_lm, runs_root=tmp_path, max_length=64, chunk_size=8)
    assert store.version_notice(run) is None
    m = read_manifest(run)
    m["versions"] = {**m["versions"], "torch": "1.0.0"}
    (run / "manifest.json").write_text(json.dumps(m))
    assert store.version_notice(run) == (f"This run was made with torch 1.0.0 (now {store.library_versions()['torch']}): "
                                         "a fresh run may differ slightly.")
    del m["versions"]
    (run / "manifest.json").write_text(json.dumps(m))
    assert "did not record" in store.version_notice(run)
    with pytest.raises(ValueError, match="not a run folder"):
        store.delete_run(tmp_path)
    store.delete_run(run)
    assert not run.exists() and run_progress(run) is None


def test_estimate_counts_tokens_and_measures_a_warm_up(tiny_lm):
    pairs = load_records(rows(300)).pairs
    size = [sum(map(len, (e.prompt_plus, e.chosen, e.prompt_minus, e.rejected)))
            for e in (encode_pair(tiny_lm.tokenizer, p, 64) for p in pairs)]
    small = estimate(pairs[:20], tiny_lm, max_length=64)
    assert small.exact and small.tokens == sum(size[:20]) and small.pairs == 20
    assert small.tokens_per_second > 0 and small.seconds == pytest.approx(small.tokens / small.tokens_per_second)
    big = estimate(pairs, tiny_lm, max_length=64, sample=40, ranks=4)
    assert not big.exact and abs(big.tokens - sum(size)) < 0.1 * sum(size)
    assert big.seconds == pytest.approx(big.tokens / big.tokens_per_second / 4)


def test_cli_sigterm_keeps_the_chunks_and_the_same_command_resumes(tiny_lm, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(models, "load_model", lambda *a, **k: tiny_lm)
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows(60)))
    argv = ["score", str(data), "--max-length", "64", "--chunk-size", "8", "--out", str(tmp_path / "runs"), "--top", "1"]
    commit = chunks.commit_chunk

    def commit_then_sigterm(run_dir, index, **kwargs):             # a scheduler stops the job after a chunk
        done = commit(run_dir, index, **kwargs)
        if index == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        return done

    monkeypatch.setattr(chunks, "commit_chunk", commit_then_sigterm)
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    kept = int(re.search(r"ches: interrupted: (\d+) of 60 pairs kept; run the same command to resume", err).group(1))
    assert 8 <= kept < 60 and kept % 8 == 0 and "Traceback" not in err
    assert re.search(r"60 pairs to score, [\d,]+ tokens; estimated \d+ (s|min) at [\d,]+ tokens/s", err)
    assert cli.main(["runs", "--out", str(tmp_path / "runs")]) == 0
    listing = capsys.readouterr().out
    assert f"unfinished: {kept} of 60 pairs" in listing and "resume: ches score " in listing

    monkeypatch.setattr(chunks, "commit_chunk", commit)
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert f"{kept} of 60 pairs already scored" in err and f"{60 - kept} pairs to score" in err
    assert "pairs scored: 60" in out and "Traceback" not in out + err


def test_pairs_the_chat_template_rejects_are_reported_and_none_left_is_an_error(tiny_lm, tmp_path):
    ok = {"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
          "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go"}]}
    empty = {"chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}
    run = score_dataset(load_records([ok] * 8 + [empty] * 8 + [ok]), tiny_lm, runs_root=tmp_path / "a",
                        max_length=64, chunk_size=8)                  # the second chunk: every pair rejected
    m = read_manifest(run)
    assert m["pairs"] == 9 and read_scores(run)["row"].tolist() == [*range(1, 9), 17]
    assert [e["row"] for e in m["rows_skipped"]] == list(range(9, 17))
    assert "prompt template rejected" in m["rows_skipped"][0]["reason"]
    with pytest.raises(ValueError, match="no pair could be tokenized: row 1: the model's prompt template rejected"):
        score_dataset(load_records([empty]), tiny_lm, runs_root=tmp_path / "b", max_length=64)
    assert list((tmp_path / "b").iterdir()) == []


@pytest.mark.real_data
def test_batched_tokenising_equals_one_text_at_a_time(tiny_lm):
    """encode_pairs (one tokenizer call per kind of text, per chunk) against each text tokenised alone."""
    from ches.engine.tokens import encode_pairs, render_prompt, truncate

    tok = tiny_lm.tokenizer
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    hh = load_dataset(shared / "hh-rlhf-harmless-base-test.jsonl.gz").pairs
    pairs = hh[80:90] + hh[1250:1260] + load_dataset(shared / "ultrafeedback-binarized-train-500.jsonl").pairs[:60]

    def one_at_a_time(p, max_length):
        ids = lambda text, specials=False: list(tok(text, add_special_tokens=specials).input_ids) if text else []  # noqa: E731
        x_plus, y_plus, y_minus = ids(render_prompt(tok, p.prompt)), ids(p.chosen), ids(p.rejected)
        if p.rejected_prompt is None:
            x_plus, (y_plus, y_minus), cut = truncate(x_plus, [y_plus, y_minus], max_length)
            return tuple(x_plus), tuple(y_plus), tuple(x_plus), tuple(y_minus), cut
        (x_plus, (y_plus,), a), (x_minus, (y_minus,), b) = (truncate(x_plus, [y_plus], max_length),
                                                            truncate(ids(render_prompt(tok, p.rejected_prompt)), [y_minus], max_length))
        return tuple(x_plus), tuple(y_plus), tuple(x_minus), tuple(y_minus), a or b

    assert any(p.rejected_prompt for p in pairs) and any(not p.chosen for p in pairs)   # mismatch, empty reply
    for max_length in (96, 4096):
        got = encode_pairs(tok, pairs, max_length)
        assert [(e.prompt_plus, e.chosen, e.prompt_minus, e.rejected, e.truncated) for e in got] == \
            [one_at_a_time(p, max_length) for p in pairs]
