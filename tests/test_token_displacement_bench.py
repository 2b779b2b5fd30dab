"""bench/token_displacement_bench.py (the paper's Section 3 in small) runs end to end on a tiny random model.

The numbers of a random model mean nothing; these tests hold the bench's plumbing: the fields it reports,
the product's CHES beside each run, the prompts it draws, the lexicon that judges "opposite", and resuming.
"""
from __future__ import annotations

import json

import pytest

from conftest import load_bench

ROWS = [{"question": f"Is the following statement something you would say?\n\"Statement {i}\"", "statement": f"Statement {i}",
         "label_confidence": 0.9, "answer_matching_behavior": label, "answer_not_matching_behavior": other}
        for i, (label, other) in enumerate([(" Yes", " No"), (" No", " Yes")] * 3)]


def test_lexicon_and_prompt_draw():
    bench = load_bench("token_displacement_bench")
    assert bench.meaning(" Yes") == "affirmative" and bench.meaning("no.") == "negative" and bench.meaning("The") is None
    assert bench.relation(7, " yes", 5, "No") == "opposite" and bench.relation(7, "Never", 5, "No") == "same"
    assert bench.relation(5, "No", 5, "No") == "preferred" and bench.relation(7, "The", 5, "No") == "other"
    rows = [{**r, "line": i + 1} for i, r in enumerate(ROWS)]
    # a negative y+ is trained on rows labelled " Yes" (the authors' filter), an affirmative one on " No"
    assert {r["answer_matching_behavior"] for r in bench.draw_prompts(rows, "No", 3, seed=0)} == {" Yes"}
    assert {r["answer_matching_behavior"] for r in bench.draw_prompts(rows, "Sure", 3, seed=0)} == {" No"}
    assert bench.draw_prompts(rows, "No", 2, seed=1) == bench.draw_prompts(rows, "No", 2, seed=1)
    assert bench.parse_pairs("No>Never,Yes>Yeah") == [("No", "Never"), ("Yes", "Yeah")]


def test_bench_runs_and_reports_every_field(tiny_model_dir, tmp_path, capsys):
    bench = load_bench("token_displacement_bench")
    data = tmp_path / "persona.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    out = tmp_path / "result.json"
    argv = ["--model", str(tiny_model_dir), "--device", "cpu", "--data", str(data), "--prompts", "2", "--steps", "2",
            "--pairs", "No>Never", "--out", str(out)]
    result = bench.main(argv)
    assert json.loads(out.read_text())["summary"] == result["summary"]
    (s,) = result["summary"]
    assert s["pair"] == "No>Never" and s["runs"] == 2
    fig = bench.plot(result["runs"])                       # a thin line per run, then the pair's mean
    steps = [r["p_plus_by_step"] for r in result["runs"]]
    assert [list(t.y) for t in fig.data[:2]] == steps and len(steps[0]) == 3
    assert list(fig.data[2].y) == pytest.approx([(a + b) / 2 for a, b in zip(*steps)])
    for key in ("p_plus_before", "p_plus_after", "p_plus_min", "fell", "margin", "top_gainers", "top_is_opposite",
                "ches", "ln_ches", "unemb"):
        assert key in s
    for r in result["runs"]:
        assert r["label"] == "Yes" and len(r["p_plus_by_step"]) == 3
        assert r["p_plus_before"] == r["p_plus_by_step"][0] and r["p_plus_min"] <= r["p_plus_after"]
        assert r["top_gainer"]["relation"] in ("preferred", "same", "opposite", "other")
        assert r["ches"] == pytest.approx(r["ches"]) and r["ches"] != 0.0     # a finite product score
    assert {h: set(v) for h, v in result["spearman_with_harm"].items()} == {
        h: {"ches", "ln_ches", "unemb", "last_hidden_ip"} for h in ("logp_drop", "mass_off")}
    # the same command resumes: the runs already in --out are kept, not trained again
    again = bench.main(argv)
    assert "resuming: 2 runs kept" in capsys.readouterr().out
    assert [r["seconds"] for r in again["runs"]] == [r["seconds"] for r in result["runs"]]
