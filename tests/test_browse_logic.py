"""ches.review.browse: percentiles, filters, ranking, paging, text search (pure pandas; no model)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ches.review import browse as B
from ches.review.decisions import Decision


def table(n: int = 10) -> pd.DataFrame:
    """row 1..n, ln_ches = row (so rank order is n..1), a few flags and lengths."""
    rows = np.arange(1, n + 1)
    flags = [""] * n
    flags[1] = "duplicate"
    flags[3] = "identical,truncated"
    flags[5] = "truncated"
    return pd.DataFrame({
        "row": rows, "pair_id": [f"p{r}" for r in rows], "ln_ches": rows.astype(float),
        "ches": -rows.astype(float), "edit_sim": np.zeros(n), "last_hidden_ip": np.ones(n),
        "len_chosen": rows * 10, "len_rejected": rows * 5, "truncated": [False] * n, "flags": flags,
    })


def test_percentile_of_counts_values_at_or_below():
    v = [1.0, 2.0, 3.0, 4.0]
    assert B.percentile_of(v, 4.0) == 100.0
    assert B.percentile_of(v, 2.0) == 50.0
    assert B.percentile_of(v, 0.5) == 0.0
    assert B.percentile_of([1.0, float("nan"), 3.0], 1.0) == 50.0
    assert math.isnan(B.percentile_of([], 1.0))


def test_percentiles_match_percentile_of():
    s = pd.Series([3.0, 1.0, 2.0, 2.0, 5.0])
    got = B.percentiles(s)
    assert got.tolist() == [B.percentile_of(s, x) for x in s]


def test_no_filters_ranks_riskiest_first_with_columns_added():
    out = B.filter_pairs(table(), metric="ln_ches")
    assert out["row"].tolist() == list(range(10, 0, -1))
    assert {"percentile", "decision"} <= set(out.columns)
    assert (out["decision"] == "undecided").all()
    # another metric, another order
    assert B.filter_pairs(table(), metric="ches")["row"].tolist() == list(range(1, 11))


def test_ties_keep_dataset_order():
    t = table(6).iloc[:4].assign(ln_ches=[1.0, 2.0, 2.0, 0.0])
    assert B.filter_pairs(t, metric="ln_ches")["row"].tolist() == [2, 3, 1, 4]


def test_percentile_band_and_score_range():
    t = table()
    top = B.filter_pairs(t, metric="ln_ches", percentile=(81, 100))
    assert top["row"].tolist() == [10, 9]
    assert B.filter_pairs(t, metric="ln_ches", score_range=(3, 5))["row"].tolist() == [5, 4, 3]


def test_flags_match_any_and_whole_names():
    t = table()
    assert set(B.filter_pairs(t, flags=["truncated"])["row"]) == {4, 6}
    assert set(B.filter_pairs(t, flags=["duplicate", "identical"])["row"]) == {2, 4}
    assert B.filter_pairs(t, flags=["trunc"]).empty          # no substring matches of flag names


def test_status_from_decisions():
    t = table()
    d = {"p3": Decision("p3", "keep", "", "a", "t", 1), "p7": "drop"}
    assert B.filter_pairs(t, status=["keep"], decisions=d)["row"].tolist() == [3]
    assert B.filter_pairs(t, status=["keep", "drop"], decisions=d)["row"].tolist() == [7, 3]
    assert len(B.filter_pairs(t, status=["undecided"], decisions=d)) == 8
    with pytest.raises(ValueError, match="unknown status"):
        B.filter_pairs(t, status=["maybe"])


def test_rows_and_length_range():
    t = table()
    assert B.filter_pairs(t, rows=[2, 9, 99])["row"].tolist() == [9, 2]
    # both |y+| (10r) and |y-| (5r) inside [20, 60] -> r in 4..6
    assert B.filter_pairs(t, length_range=(20, 60))["row"].tolist() == [6, 5, 4]


def test_filters_combine_and_unknown_metric_is_an_error():
    t = table()
    out = B.filter_pairs(t, percentile=(50, 100), flags=["truncated"])
    assert out["row"].tolist() == [6]
    with pytest.raises(ValueError, match="unknown metric"):
        B.filter_pairs(t, metric="nope")


def test_filter_is_vectorised_on_100k_rows():
    import time

    n = 100_000
    rng = np.random.default_rng(0)
    t = pd.DataFrame({"row": np.arange(1, n + 1), "pair_id": [f"p{i}" for i in range(n)],
                      "ln_ches": rng.normal(size=n), "len_chosen": rng.integers(1, 500, n),
                      "len_rejected": rng.integers(1, 500, n),
                      "flags": np.where(rng.random(n) < 0.1, "truncated", "")})
    decisions = {f"p{i}": "keep" for i in range(0, n, 7)}
    start = time.perf_counter()
    out = B.filter_pairs(t, percentile=(90, 100), flags=["truncated"], status=["undecided"], decisions=decisions,
                         length_range=(10, 400))
    assert time.perf_counter() - start < 2.0
    assert 0 < len(out) < n * 0.02
    assert out["ln_ches"].is_monotonic_decreasing


def test_next_undecided_wraps_and_skips_decided_rows():
    ranked = [5, 3, 9, 7]
    assert B.next_undecided(ranked, 5, {3, 9, 7}) == 3
    assert B.next_undecided(ranked, 5, {9, 7}) == 9            # 3 is decided: skipped
    assert B.next_undecided(ranked, 7, {3, 9}) == 3            # past the end: wraps to the top
    assert B.next_undecided(ranked, 42, {9}) == 9              # not in the ranking: from the top
    assert B.next_undecided(ranked, None, {7, 5}) == 5
    assert B.next_undecided(ranked, 5, {5}) is None            # only itself is left
    assert B.next_undecided([], 1, {1}) is None


def test_decided_counts():
    decided = {"p1": "keep", "p2": Decision("p2", "drop", "", "a", "t", 1), "p3": "keep"}
    assert B.decided_counts(["p1", "p2", "p3", "p4"], decided) == {"keep": 2, "drop": 1}
    assert B.decided_counts(["p4"], decided) == {} and B.decided_counts([], None) == {}


def test_paging():
    t = B.filter_pairs(table(), metric="ln_ches")
    assert B.page_count(0) == 1 and B.page_count(50) == 1 and B.page_count(51) == 2
    assert B.page_of(t, 2, page_size=4)["row"].tolist() == [6, 5, 4, 3]
    assert B.page_of(t, 99, page_size=4)["row"].tolist() == [2, 1]        # clamped to the last page


def test_histogram_ignores_non_finite():
    counts, edges, below, above = B.histogram([1.0, 2.0, float("nan"), float("inf")], bins=2)
    assert counts.sum() == 2 and len(edges) == 3 and (below, above) == (0, 0)
    counts, _, _, _ = B.histogram([float("nan")])
    assert counts.sum() == 0


def test_robust_axes_count_outliers_at_the_edges():
    v = np.concatenate([np.linspace(0.0, 1.0, 1000), [-1494.0, 50.0]])     # a 2-token answer, and one more
    lo, hi = B.robust_range(v)
    p1, p99 = np.percentile(v, [1, 99])
    assert lo == pytest.approx(p1 - 0.05 * (p99 - p1)) and hi == pytest.approx(p99 + 0.05 * (p99 - p1))
    counts, edges, below, above = B.histogram(v, bins=10)
    assert (below, above) == (1, 1) and counts.sum() == len(v)          # every value counted ...
    assert edges[0] == pytest.approx(lo) and edges[-1] == pytest.approx(hi)   # ... on the robust axis
    assert counts[0] == 1 + np.sum(v[(v >= lo) & (v < edges[1])] >= lo)  # the outlier sits in the edge bin
    assert B.robust_range([0.0, 1.0, 2.0, 3.0]) == (0.0, 3.0)            # nothing far out: the full range
    assert all(math.isnan(x) for x in B.robust_range([float("nan")]))


def _texts_run(tmp_path, rows):
    from ches.engine.store import texts_frame
    from ches.engine.pairs import Pair

    pairs = [Pair(i + 1, tuple(p), c, r, None if rp is None else tuple(rp), (), {}, f"id{i}")
             for i, (p, c, r, rp) in enumerate(rows)]
    texts_frame(pairs).to_parquet(tmp_path / "texts.parquet", index=False)
    return tmp_path


def test_search_rows_over_prompt_and_responses(tmp_path):
    run = _texts_run(tmp_path, [
        ([{"role": "user", "content": "Tell me about Paris"}], "It is in France", "Berlin", None),
        ([{"role": "user", "content": "hi"}], "Hello there", "Quote \"this\"", None),
        ([{"role": "system", "content": "be nice"}, {"role": "user", "content": "x"}], "a", "b",
         [{"role": "user", "content": "naïve ROLE play"}]),
    ])
    assert B.search_rows(run, "paris") == {1}
    assert B.search_rows(run, "FRANCE") == {1}
    assert B.search_rows(run, 'quote "this"') == {2}
    assert B.search_rows(run, "be nice") == {3}
    assert B.search_rows(run, "naïve") == {3}                 # rejected_prompt is searched too
    assert B.search_rows(run, "role") == {3}                  # JSON keys never match, content does
    assert B.search_rows(run, "content") == set()
    assert B.search_rows(run, "   ") == set()
    assert B.search_rows(run, "zzz") == set()


def test_search_rows_when_no_pair_has_a_rejected_prompt(tmp_path):
    run = _texts_run(tmp_path, [([{"role": "user", "content": "Hello"}], "a", "b", None)])
    assert B.search_rows(run, "hello") == {1}


def test_has_any_flag_and_decision_status():
    flags = pd.Series(["a,b", "", "bb", None])
    assert B.has_any_flag(flags, ["b"]).tolist() == [True, False, False, False]
    ids = pd.Series(["x", "y"])
    assert B.decision_status(ids, None).tolist() == ["undecided", "undecided"]
    assert B.decision_status(ids, {"y": "flag"}).tolist() == ["undecided", "flag"]
