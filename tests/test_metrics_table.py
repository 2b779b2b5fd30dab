"""Adding a metric is one entry in ches.engine.metrics.METRICS: the store, Browse and the CLI follow it.

A toy metric, len_ratio = |y+| / |y-|, is added to the table only (monkeypatched) and then looked for in
a run written through the store, in Browse's ranking and charts, and in the `ches export` / `ches score`
command line.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ches.engine import chunks, store
from ches.engine.forward import Embeddings
from ches.engine.records import load_records
from ches.engine.metrics import METRICS, Metric, score_table

LEN_PLUS = np.array([2, 6, 3, 8], dtype=np.int64)
LEN_MINUS = np.array([4, 2, 3, 1], dtype=np.int64)
RATIO = [0.5, 3.0, 1.0, 8.0]                      # |y+| / |y-| per row 1..4, worked by hand
BASE_COLUMNS = ["row", "pair_id", "ln_ches", "ches", "edit_sim", "last_hidden_ip",
                "len_chosen", "len_rejected", "truncated", "flags"]


def len_ratio(emb: Embeddings, ids_plus, ids_minus) -> np.ndarray:
    return emb.len_plus / emb.len_minus


@pytest.fixture
def toy_metric(monkeypatch) -> Metric:
    metric = Metric(name="len_ratio", label="Length ratio", formula="|y+| / |y-|",
                    help="Toy: the chosen response's length over the rejected one's.", riskier="higher",
                    dtype="float64", compute=len_ratio)
    monkeypatch.setitem(METRICS, "len_ratio", metric)
    return metric


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CHES_WORKSPACE", str(tmp_path / "ws"))
    return tmp_path / "ws"


@pytest.fixture
def run(ws, toy_metric) -> Path:
    """A run of four pairs scored through score_table (random sums, the lengths above) and the store."""
    dataset = load_records([{"prompt": f"question {i}", "chosen": f"answer {i}", "rejected": f"other {i}"}
                            for i in range(4)], source="toy.jsonl")
    pairs = dataset.pairs
    r = np.random.default_rng(0)
    S_plus, S_minus = r.normal(size=(4, 8)), r.normal(size=(4, 8))                     # (n, d)
    last = r.normal(size=(4, 8)).astype(np.float32)                                     # (n, d)
    emb = Embeddings(S_plus, S_minus, LEN_PLUS, LEN_MINUS, last, last)
    ids_plus, ids_minus = [[7] * int(n) for n in LEN_PLUS], [[7] * int(n) for n in LEN_MINUS]
    scores = pd.DataFrame({"row": [p.row for p in pairs], "pair_id": [p.pair_id for p in pairs],
                           **score_table(emb, ids_plus, ids_minus), "len_chosen": LEN_PLUS,
                           "len_rejected": LEN_MINUS, "truncated": np.zeros(4, bool), "flags": ""})
    manifest = {"key": {"dataset_hash": dataset.content_hash, "model_id": "test/model"}, "source": dataset.source,
                "format": dataset.format, "created_at": "2025-01-01T00:00:00+00:00", "rows_skipped": []}
    return chunks.write_run(ws / "runs" / "0123456789abcdef", manifest=manifest, scores=scores, pairs=pairs,
                           arrays={"S_plus": S_plus, "S_minus": S_minus})


def test_score_table_computes_every_metric_in_the_table(toy_metric):
    emb = Embeddings(np.ones((4, 3)), np.ones((4, 3)), LEN_PLUS, LEN_MINUS, np.ones((4, 3)), np.ones((4, 3)))
    values = score_table(emb, [[1]] * 4, [[1]] * 4)
    assert list(values) == list(METRICS) and list(values)[0] == "ln_ches"
    assert values["len_ratio"].dtype == np.float64 and values["len_ratio"].tolist() == RATIO


def test_the_store_writes_a_column_for_the_new_metric(run):
    schema = pq.read_schema(run / "scores.parquet")
    assert schema.names == BASE_COLUMNS[:6] + ["len_ratio"] + BASE_COLUMNS[6:]
    assert schema.field("len_ratio").type == pa.float64()
    assert store.read_scores(run)["len_ratio"].tolist() == RATIO


def test_the_schema_follows_the_table_without_a_reimport(toy_metric, monkeypatch):
    assert "len_ratio" in store.scores_schema().names
    monkeypatch.delitem(METRICS, "len_ratio")
    assert store.scores_schema().names == BASE_COLUMNS


def test_browse_ranks_and_labels_by_the_new_metric(run, toy_metric):
    from ches.review import charts
    from ches.review.browse import filter_pairs

    ranked = filter_pairs(store.read_scores(run), metric="len_ratio")
    assert ranked["row"].tolist() == [4, 2, 3, 1]                     # highest ratio (riskier) first
    assert ranked["percentile"].tolist() == [100.0, 75.0, 50.0, 25.0]
    fig = charts.score_histogram(ranked["len_ratio"], metric="len_ratio")
    assert fig.layout.xaxis.title.text == "Length ratio"


def test_a_table_entry_must_say_higher_is_riskier():
    with pytest.raises(ValueError, match="riskier"):
        Metric("neg", "Neg", "-x", "lower is riskier", "lower", "float64", len_ratio)


def test_cli_export_ranks_by_the_new_metric(run, tmp_path, toy_metric):
    import ches.cli as cli

    out = tmp_path / "kept.jsonl"
    args = cli.build_parser().parse_args(["export", str(run), "--out", str(out), "--metric", "len_ratio",
                                          "--keep-lowest-percent", "50", "--drop-flags", ""])
    assert args.metric == "len_ratio"
    assert args.func(args) == 0
    kept = [json.loads(line)["prompt"] for line in out.read_text().splitlines()]
    assert kept == ["question 0", "question 2"]                       # the two lowest ratios: 0.5 and 1.0
    assert json.loads(out.with_name("kept.manifest.json").read_text())["rule"]["metric"] == "len_ratio"


def test_cli_score_summary_lists_the_new_metric(run, toy_metric):
    from ches.cli.score import summary

    text = summary(store.read_scores(run), store.read_manifest(run), store.read_texts, run, top=2, seconds=1.0)
    line = next(x for x in text.splitlines() if x.startswith("len_ratio"))
    quantiles = [float(v) for v in line.split()[1:]]                 # q0 q5 q25 q50 q75 q95 q100
    assert quantiles[0] == 0.5 and quantiles[3] == 2.0 and quantiles[-1] == 8.0
