"""Compare runs (ches.review.compare, `ches compare`, the Compare page): each statistic against a hand
computation on small tables, two runs of the same data scored by two tiny random models, the refusal,
the figure above the scatter limit, the page."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest

from ches.cli import main
from ches.engine import models, store
from ches.engine.records import load_records
from ches.engine.pipeline import score_dataset
from ches.review import compare as C
from ches.review.charts import SCATTER_MAX, compare_scatter
from ches.review.export import Rule
from conftest import make_fake_run, open_app


def table(values: dict[str, list], ids: list[str] | None = None, flags: list[str] | None = None) -> pd.DataFrame:
    """A scores table with the given metric columns (others zero), rows 1..n, pair ids p0..p(n-1)."""
    n = len(next(iter(values.values())))
    out = pd.DataFrame({"row": np.arange(1, n + 1), "pair_id": ids or [f"p{i}" for i in range(n)]})
    for m in ("ln_ches", "ches", "edit_sim", "last_hidden_ip"):
        out[m] = np.asarray(values.get(m, np.zeros(n)), dtype=np.float64)
    out["len_chosen"] = 10
    out["len_rejected"] = 10
    out["truncated"] = False
    out["flags"] = flags or [""] * n
    return out


# ---------------------------------------------------------------------------------- the statistics

def test_spearman_and_kendall_match_a_hand_computation():
    x, y = [1, 2, 3, 4, 5], [5, 6, 7, 8, 7]
    # ranks of y: 1, 2, 3.5, 5, 3.5; deviations from 3: x -2 -1 0 1 2, y -2 -1 .5 2 .5
    # rho = 8 / sqrt(10 * 9.5)
    assert C.spearman(x, y) == pytest.approx(8 / math.sqrt(95), abs=1e-12)
    # 10 pairs: 8 concordant, 1 discordant (4,5), 1 tied in y (3,5): tau-b = (8 - 1) / sqrt(10 * 9)
    assert C.kendall(x, y) == pytest.approx(7 / math.sqrt(90), abs=1e-12)
    # a position that is NaN in either column is left out of both
    assert C.spearman(x + [np.nan, 9], y + [1, np.inf]) == pytest.approx(8 / math.sqrt(95), abs=1e-12)
    assert C.kendall([3, 2, 1], [1, 2, 3]) == pytest.approx(-1.0)
    assert math.isnan(C.spearman([1, 2, 3], [4, 4, 4])) and math.isnan(C.kendall([1], [2]))


def test_riskiest_takes_the_ceiling_of_the_share_ties_by_order_nan_never():
    v = [0.1, 5, 3, 5, np.nan, -1, 2, 4, 0, 1]
    assert np.flatnonzero(C.riskiest(v, 20)).tolist() == [1, 3]             # k = 2 of 10
    assert np.flatnonzero(C.riskiest(v, 25)).tolist() == [1, 3, 7]          # k = ceil(2.5) = 3
    assert np.flatnonzero(C.riskiest([5, 5, 5], 50)).tolist() == [0, 1]     # k = ceil(1.5) = 2, earlier first
    assert np.flatnonzero(C.riskiest([np.nan, 1.0], 100)).tolist() == [0, 1]  # all asked for: NaN included last
    assert not C.riskiest([np.nan, 1.0], 50)[0]


def test_overlap_jaccard_and_share_of_a():
    a = [True, True, True, False, False, False]
    b = [False, True, True, True, True, False]
    o = C.overlap(a, b)
    assert (o.size_a, o.size_b, o.both) == (3, 4, 2)
    assert o.jaccard == pytest.approx(2 / 5) and o.share_of_a == pytest.approx(2 / 3)
    assert math.isnan(C.overlap([False], [False]).jaccard)


def test_percentiles_use_average_ranks():
    np.testing.assert_allclose(C.percentiles([10, 20, 20, 40]), [0, 50, 50, 100])     # ranks 1, 2.5, 2.5, 4
    p = C.percentiles([3.0, np.nan, 1.0])
    assert p[0] == 100 and p[2] == 0 and np.isnan(p[1])


def test_join_matches_by_pair_id_counts_a_repeated_pair_once_and_keeps_a_order():
    a = table({"ln_ches": [1, 2, 3, 4, 5]}, ids=["x", "y", "z", "y", "w"])          # y twice: its first row counts
    b = table({"ln_ches": [30, 10, 20, 99]}, ids=["z", "x", "y", "v"])
    j = C.join(a, b, min_shared=3)
    assert j["pair_id"].tolist() == ["x", "y", "z"]
    assert j["row_a"].tolist() == [1, 2, 3] and j["row_b"].tolist() == [2, 3, 1]
    assert j["ln_ches_a"].tolist() == [1, 2, 3] and j["ln_ches_b"].tolist() == [10, 20, 30]
    c = C.compare(a, b, min_shared=3)
    assert (c.shared, c.only_a, c.only_b) == (3, 1, 1)                             # w only in A, v only in B


def test_too_few_shared_pairs_are_refused_with_the_counts():
    a = table({"ln_ches": range(25)})
    b = table({"ln_ches": range(25)}, ids=[f"p{i}" for i in range(6, 31)])         # 19 shared
    with pytest.raises(C.TooFewShared, match=r"share 19 pair.*at least 20"):
        C.compare(a, b)
    assert C.compare(a, b, min_shared=19).shared == 19


def test_movers_rank_by_the_size_of_the_percentile_shift():
    a = table({"ln_ches": [1, 2, 3, 4, 5]})
    b = table({"ln_ches": [5, 2, 3, 4, 1]})                # p0 and p4 swap ends: shifts +100 and -100
    m = C.movers(C.join(a, b, min_shared=5), "ln_ches", k=3)
    assert m["pair_id"].tolist() == ["p0", "p4", "p1"]
    assert m["shift"].tolist() == [100.0, -100.0, 0.0]
    assert m["pct_a"].tolist() == [0.0, 100.0, 25.0] and m["row_b"].tolist() == [1, 5, 2]


def test_compare_on_hand_tables():
    n = 20
    ln_a = np.arange(n, dtype=float)                      # p19 riskiest in A
    ln_b = ln_a.copy()
    ln_b[[18, 0]] = ln_b[[0, 18]]                         # B: p0 second riskiest, p18 lowest
    a, b = table({"ln_ches": ln_a, "ches": ln_a}), table({"ln_ches": ln_b, "ches": -ln_a})
    c = C.compare(a, b, top_percent=10, rule=Rule(keep_lowest_percent=85, drop_flags=()))
    corr = c.correlations.set_index("metric")
    # d = rank differences: 18 at p0 and at p18, else 0: rho = 1 - 6 (2 * 18^2) / (n (n^2 - 1))
    assert corr.loc["ln_ches", "spearman"] == pytest.approx(1 - 6 * 2 * 18 ** 2 / (n * (n ** 2 - 1)))
    assert corr.loc["ches", "spearman"] == pytest.approx(-1) and corr.loc["ches", "kendall"] == pytest.approx(-1)
    assert math.isnan(corr.loc["edit_sim", "spearman"])                            # constant zeros
    # riskiest 10% = 2 pairs: A {p19, p18}, B {p19, p0}
    assert c.riskiest["ln_ches"] == C.Overlap(2, 2, 1)
    # keep the lowest 85% = 17 of 20: A drops p17..p19, B drops p17, p19 and p0
    assert c.drops == C.Overlap(3, 3, 2)


def test_drops_follow_each_runs_whole_table_and_flags():
    """The rule ranks over all of a run's pairs (as the export does), then the shared pairs are compared."""
    a = table({"ln_ches": list(range(20)) + [100, 101]}, flags=[""] * 19 + ["identical"] + ["", ""])
    b = table({"ln_ches": list(range(20))})
    # A: 22 pairs, keep the lowest 90% = 19 -> drops its 3 highest (p19, p20, p21) and p19 is flagged anyway
    # B: 20 pairs, keep 18 -> drops p18, p19.  Shared: p0..p19 -> A drops {p19}, B {p18, p19}
    c = C.compare(a, b, rule=Rule(keep_lowest_percent=90))
    assert c.drops == C.Overlap(1, 2, 1)


# ------------------------------------------------------------------------- two tiny random models

def rows(n: int) -> list[dict]:
    return [{"prompt": f"Question {i}: what is {i} times {i + 3}?" + " Be brief." * (i % 4),
             "chosen": f"It is {i * (i + 3)}." + " That is all." * (i % 3),
             "rejected": f"Perhaps {i * (i + 3) + 1}, or so." + " Hmm." * (i % 5)} for i in range(n)]


@pytest.fixture(scope="module")
def two_runs(tiny_model_dir, tmp_path_factory):
    """The same 40 pairs scored by the session's tiny Llama (seed 0) and by another (seed 1), the second
    on the rows in reverse order (so rows differ and only pair ids match)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    other = tmp_path_factory.mktemp("tiny-llama-seed1")
    torch.manual_seed(1)
    LlamaForCausalLM(LlamaConfig.from_pretrained(tiny_model_dir)).save_pretrained(other)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (tiny_model_dir / name).is_file():
            shutil.copy(tiny_model_dir / name, other / name)
    root = tmp_path_factory.mktemp("compare-runs")
    data = rows(40)
    run_a = score_dataset(load_records(data), models.load_model(str(tiny_model_dir)), runs_root=root, max_length=64)
    run_b = score_dataset(load_records(data[::-1]), models.load_model(str(other)), runs_root=root, max_length=64)
    return root, run_a, run_b


def test_two_tiny_models_on_the_same_data(two_runs):
    _, run_a, run_b = two_runs
    a, b = store.read_scores(run_a), store.read_scores(run_b)
    assert not np.allclose(np.sort(a["ln_ches"]), np.sort(b["ln_ches"]))           # two different models
    c = C.compare(a, b)
    assert (c.shared, c.only_a, c.only_b) == (40, 0, 0)
    j = c.joined
    assert (j["row_a"] + j["row_b"]).eq(41).all()                                  # B holds the rows reversed
    by_id = b.set_index("pair_id")
    np.testing.assert_array_equal(j["ln_ches_b"], by_id.loc[j["pair_id"], "ln_ches"])
    corr = c.correlations.set_index("metric")
    # the same tokenizer gives the same tokens: edit similarity agrees exactly, whatever the weights
    assert corr.loc["edit_sim", ["spearman", "kendall"]].tolist() == pytest.approx([1.0, 1.0])
    assert -1 <= corr.loc["ln_ches", "spearman"] < 1 and corr.loc["ln_ches", "n"] == 40
    assert c.riskiest["edit_sim"].both == c.riskiest["edit_sim"].size_a == 2       # ceil(40 * 5%) = 2
    same = C.compare(a, a)                                                         # a run against itself
    assert same.correlations[["spearman", "kendall"]].to_numpy() == pytest.approx(1.0)
    assert same.drops.jaccard == 1 and same.riskiest["ln_ches"].jaccard == 1


def test_cli_compare_reports_and_refuses(two_runs, tmp_path, capsys):
    root, run_a, run_b = two_runs
    assert main(["compare", run_a.name, run_b.name[:10], "--runs", str(root), "--movers", "3"]) == 0
    out = capsys.readouterr().out
    assert "shared pairs: 40 (only in A: 0, only in B: 0)" in out
    edit = next(line for line in out.splitlines() if line.startswith("Edit similarity"))
    assert edit.split()[2:4] == ["1.000", "1.000"]
    assert out.count("\n  ") >= 4                                                  # header + 3 movers
    few = load_records(rows(10))
    small = make_fake_run(tmp_path / "small", few)
    assert main(["compare", str(run_a), str(small)]) == 2
    err = capsys.readouterr().err
    assert "share 10 pair(s)" in err and "at least 20" in err and "Traceback" not in err


def test_the_figure_is_a_density_above_the_scatter_limit():
    n = SCATTER_MAX + 1
    r = np.random.default_rng(0)
    x, y = r.random(n) * 100, r.random(n) * 100
    fig = compare_scatter(x, y, np.arange(n), label="LN-CHES")
    heat = fig.data[0]
    assert heat.type == "heatmap" and np.nansum(heat.customdata) == n             # every pair counted
    small = compare_scatter(x[:100], y[:100], np.arange(100), label="LN-CHES")
    assert small.data[0].type == "scattergl" and len(small.data[0].x) == 100


# ------------------------------------------------------------------------------------------ the page

def test_compare_page(workspace_env, tmp_path):
    ds = load_records(rows(30))
    runs = workspace_env.workspace / "runs"
    run_a = make_fake_run(runs / "aaaaaaaaaaaaaaaa", ds, seed=1)
    at = open_app("pages/compare.py", run_a)
    assert any("second run" in i.value for i in at.info)      # only one run yet
    run_b = make_fake_run(runs / "bbbbbbbbbbbbbbbb", ds, seed=2)
    at.run()
    assert not at.exception
    shown = {m.label: m.value for m in at.main.get("metric")}
    assert [shown["Shared pairs"], shown["Only in A"], shown["Only in B"]] == ["30", "0", "0"]
    joined = C.join(store.read_scores(run_a), store.read_scores(run_b))
    assert shown["Spearman, LN-CHES"] == f"{C.spearman(joined['ln_ches_a'], joined['ln_ches_b']):.3f}"
    movers = at.dataframe[1].value
    first = C.movers(C.join(store.read_scores(run_a), store.read_scores(run_b)), "ln_ches", 1).iloc[0]
    assert movers["A"].iloc[0] == f"pair?run={run_a.name}&row={first.row_a}"
    assert movers["B"].iloc[0] == f"pair?run={run_b.name}&row={first.row_b}"
    # a run of other data: refused with the counts, no traceback
    other = make_fake_run(runs / "cccccccccccccccc", load_records(rows(45)[30:]), seed=3)
    at.run()
    at.selectbox(key="compare_b").set_value(str(other)).run()
    assert not at.exception
    errors = [e.value.replace("\\", "") for e in at.error]                        # ui.render escapes Markdown
    assert any("share 0 pair(s)" in e and "at least 20" in e for e in errors), errors
