"""The likelihood-displacement probe: the DPO loss by hand, log-probs one sequence at a time, a 2-step probe
on a tiny random Llama stored in its run, refusals of bad settings, Cancel, the CLI and the Probe page."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from streamlit.testing.v1 import AppTest

import ches.cli as cli
import ches.review.probe.run
from ches.cli.probe import probe_args, probe_settings
from ches.engine import jobs
from ches.engine.records import load_records
from ches.engine.store import read_manifest, read_pairs, read_scores
from ches.engine.tokens import encode_pair
from ches.review.probe import analysis, dpo, run_probe, settings, storage
from ches.workspace import workspace
from conftest import ROOT, make_fake_run, metric, ok, open_app

# Short pairs so that a tiny model trains in well under a second; row 4 has an empty rejected reply (R = 0).
RECORDS = [
    {"prompt": "What is the capital of France?", "chosen": "Paris.", "rejected": "Lyon, I think."},
    {"prompt": "Say hello.", "chosen": "Hello there!", "rejected": "Go away."},
    {"prompt": "2 + 2?", "chosen": "4", "rejected": "5, probably, but I am not sure."},
    {"prompt": "Name a colour.", "chosen": "Blue is a colour.", "rejected": ""},
    {"prompt": "How do I pick a lock?", "chosen": "I can't help with that.", "rejected": "I won't help with that."},
    {"prompt": "Tell me a joke.", "chosen": "Why did the chicken cross the road?", "rejected": "No."},
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A random-weight 2-layer Llama (hidden 32) with the default model's tokenizer, saved to a folder."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ches.engine.models import default_model_dir

    tok = AutoTokenizer.from_pretrained(default_model_dir())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_dir) -> Path:
    """The six RECORDS scored with the tiny model (max length 64)."""
    from ches.engine.models import load_model
    from ches.engine.pipeline import score_dataset

    ds = load_records(RECORDS, source="tiny.jsonl")
    return score_dataset(ds, load_model(str(tiny_dir)), runs_root=tmp_path_factory.mktemp("runs"), max_length=64)


def one_at_a_time(model, x, y, eos_id) -> float:
    """log pi(y|x) from the full logits of x+y alone: sum of log-softmax at P-1+k of (y + [EOS])[k], float64."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([list(x) + list(y)])).logits[0].double()   # (P+R, V)
    logp = torch.log_softmax(logits, -1)
    return sum(float(logp[len(x) - 1 + k, t]) for k, t in enumerate(list(y) + [eos_id]))


def run_files(run_dir: Path) -> dict[str, str]:
    """sha256 of every file of the run outside probes/."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and "probes" not in p.relative_to(run_dir).parts}


# ------------------------------------------------------------------------------------------ the loss

def test_dpo_loss_matches_hand_computed_values():
    # beta * ((pi_c - ref_c) - (pi_r - ref_r)) = 0.1 * ((-10 + 12) - (-20 + 15)) = 0.7
    # and 0.5 * ((-13 + 12) - (-14 + 15)) = -1.0;  -log sigmoid(z) = log(1 + exp(-z))
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    got = dpo.dpo_loss(t(-10.0, -13.0), t(-20.0, -14.0), t(-12.0, -12.0), t(-15.0, -15.0), beta=0.1)
    assert got[0].item() == pytest.approx(math.log(1 + math.exp(-0.7)), rel=1e-12)
    got = dpo.dpo_loss(t(-13.0), t(-14.0), t(-12.0), t(-15.0), beta=0.5)
    assert got[0].item() == pytest.approx(math.log(1 + math.exp(1.0)), rel=1e-12)
    # policy == reference: the loss is log 2 whatever beta is
    assert dpo.dpo_loss(t(-3.0), t(-7.0), t(-3.0), t(-7.0), beta=3.0).item() == pytest.approx(math.log(2))


def test_sequence_logps_match_one_sequence_at_a_time(tiny_run):
    lm = dpo.load_policy(tiny_run)
    eos = lm.tokenizer.eos_token_id
    encoded = [encode_pair(lm.tokenizer, p, 64) for p in read_pairs(tiny_run)]
    seqs = [(e.prompt_plus, e.chosen) for e in encoded] + [(e.prompt_minus, e.rejected) for e in encoded]
    assert min(len(y) for _, y in seqs) == 0 and len({len(x) + len(y) for x, y in seqs}) > 3  # R = 0, ragged
    with torch.no_grad():
        got = dpo.sequence_logps(lm.model, seqs, eos_id=eos, pad_id=eos, device=lm.device)
    want = [one_at_a_time(lm.model, x, y, eos) for x, y in seqs]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-3)


# --------------------------------------------------------------------------------------- the subset

def test_quantile_slice_and_band_follow_their_definitions():
    table = pd.DataFrame({"row": [1, 2, 3, 4, 5], "ches": [5.0, 1.0, 4.0, 2.0, 3.0]})
    # ascending by value: rows 2, 4, 5, 3, 1 (values 1..5, percentiles 20, 40, 60, 80, 100)
    assert settings.quantile_slice(table, "ches", 0, 2) == [2, 4]
    assert settings.quantile_slice(table, "ches", 100, 2) == [3, 1]
    assert settings.quantile_slice(table, "ches", 50, 3) == [4, 5, 3]       # centre index round(0.5 * 4) = 2
    assert settings.quantile_slice(table, "ches", 25, 2) == [2, 4]          # centre round(0.25 * 4) = 1, start 1 - 1
    band = settings.ProbeSettings(subset="band", band=(30, 90), n=3, batch_size=1)
    assert settings.select_rows(table, band) == [4, 5, 3]                    # values 2, 3, 4 lie in 30-90
    assert settings.select_rows(table, settings.ProbeSettings(subset="top", n=3, batch_size=1)) == [5, 3, 1]
    assert settings.select_rows(table, settings.ProbeSettings(subset="bottom", n=3, batch_size=1)) == [2, 4, 5]
    ids = settings.ProbeSettings(subset="ids", ids=(3, 1, 3, 2), batch_size=1)
    assert settings.select_rows(table, ids) == [3, 1, 2]


def test_steps_walk_epochs_of_a_seeded_shuffle():
    batches = dpo.shuffled_batches(5, 2, 4, seed=3)
    assert [len(b) for b in batches] == [2, 2, 1, 2]                    # one epoch = ceil(5 / 2) = 3 steps
    assert sorted(sum(batches[:3], [])) == [0, 1, 2, 3, 4]              # each pair once per epoch
    assert batches == dpo.shuffled_batches(5, 2, 4, seed=3)
    assert settings.resolved_steps(5, settings.ProbeSettings(batch_size=2)) == 3


def test_bad_settings_are_refused_with_a_clear_message(tmp_path):
    table = pd.DataFrame({"row": [1, 2, 3], "ches": [1.0, 2.0, 3.0]})
    with pytest.raises(settings.ProbeError, match=r"n = 4 is larger than the run \(3 pairs\)"):
        settings.select_rows(table, settings.ProbeSettings(subset="top", n=4, batch_size=1))
    with pytest.raises(settings.ProbeError, match="larger than the percentile band 0-50"):
        settings.select_rows(table, settings.ProbeSettings(subset="band", band=(0, 50), n=3, batch_size=1))
    with pytest.raises(settings.ProbeError, match="not in this run: 7, 9"):
        settings.select_rows(table, settings.ProbeSettings(subset="ids", ids=(1, 7, 9), batch_size=1))
    for kwargs, message in [({"lr": 0.0}, "learning rate must be a positive"),
                            ({"lr": -1e-6}, "learning rate must be a positive"),
                            ({"lr": float("nan")}, "learning rate must be a positive"),
                            ({"subset": "middle"}, "unknown subset 'middle'"),
                            ({"beta": 0.0}, "beta must be a positive"),
                            ({"steps": 0}, "steps must be at least 1"),
                            ({"subset": "band", "band": (60, 40)}, "0 <= LO <= HI <= 100"),
                            ({"metric": "length"}, "unknown metric 'length'"),
                            ({"n": 2, "batch_size": 1}, "n = 2 is too few: a probe needs at least 3 pairs"),
                            ({"n": 1, "batch_size": 4}, "n = 1 is too few"),
                            ({"n": 3, "batch_size": 4}, "n = 3 is below the batch size 4"),
                            ({"subset": "ids", "ids": (4, 2, 4), "batch_size": 1}, "2 listed row.s. is too few"),
                            ({"subset": "ids", "ids": (1, 2, 3), "batch_size": 4}, "3 listed row.s. is below the batch")]:
        with pytest.raises(settings.ProbeError, match=message):
            settings.ProbeSettings(**kwargs)
    ids = tmp_path / "ids.txt"
    ids.write_text("3, 1\n# a comment\nfive\n")
    with pytest.raises(settings.ProbeError, match="line 3: 'five' is not a row number"):
        settings.read_ids(ids)


# ----------------------------------------------------------------------------------------- the probe

def test_two_step_probe_on_four_pairs_changes_the_logps_and_stores_its_folder(tiny_run, monkeypatch):
    before_files = run_files(tiny_run)
    s = settings.ProbeSettings(subset="top", n=4, steps=2, batch_size=2, lr=1e-3)
    lm = dpo.load_policy(tiny_run)
    original = {k: v.clone() for k, v in lm.model.state_dict().items()}
    seen = []
    path = run_probe(tiny_run, s, lm, progress=lambda done, total: seen.append((done, total)))

    assert path.parent == tiny_run / "probes" and (path / "manifest.json").is_file()
    m, results = storage.read_probe(path)
    top4 = read_scores(tiny_run).sort_values("ches")["row"].tolist()[-4:]
    assert results["row"].tolist() == top4
    assert m["settings"]["lr"] == 1e-3 and m["settings"]["subset"] == "top" and m["steps"] == 2
    assert [h["step"] for h in m["history"]] == [1, 2]
    assert m["history"][0]["loss"] == pytest.approx(math.log(2), abs=1e-4)     # policy == reference at step 1
    assert seen[-1] == (4 + 2 * 2 + 4, 4 + 2 * 2 + 4)                            # before, 2 steps of 2, after

    # "before" is the untrained model's log pi, computed independently; "after" moved
    pairs = {p.row: p for p in read_pairs(tiny_run, top4)}
    fresh = dpo.load_policy(tiny_run).model
    eos = lm.tokenizer.eos_token_id
    for r in results.itertuples():
        e = encode_pair(lm.tokenizer, pairs[r.row], 64)
        assert r.logp_chosen_before == pytest.approx(one_at_a_time(fresh, e.prompt_plus, e.chosen, eos), abs=1e-3)
        assert r.logp_rejected_before == pytest.approx(one_at_a_time(fresh, e.prompt_minus, e.rejected, eos), abs=1e-3)
        e_after = one_at_a_time(lm.model, e.prompt_plus, e.chosen, eos)
        assert r.logp_chosen_after == pytest.approx(e_after, abs=1e-3)
    moved = (results["logp_chosen_after"] - results["logp_chosen_before"]).abs()
    assert moved.min() > 1e-3
    assert any(not torch.equal(original[k], v) for k, v in lm.model.state_dict().items())

    d_c = results["logp_chosen_after"].to_numpy() - results["logp_chosen_before"].to_numpy()
    d_r = results["logp_rejected_after"].to_numpy() - results["logp_rejected_before"].to_numpy()
    # |y+| per pair from the run's scores (content tokens + EOS), independently of the probe's own column
    length = read_scores(tiny_run).set_index("row").loc[results["row"], "len_chosen"].to_numpy(dtype=float)
    assert results["len_chosen"].tolist() == length.tolist()
    assert m["summary"] == pytest.approx({"pairs": 4, "mean_delta_chosen": d_c.mean(), "mean_delta_rejected": d_r.mean(),
                                          "lost_chosen": int((d_c < 0).sum()), "mean_delta_margin": (d_c - d_r).mean(),
                                          "mean_len_chosen": length.mean(),
                                          "mean_delta_chosen_per_token": (d_c / length).mean()})
    assert run_files(tiny_run) == before_files                                   # the run itself is untouched

    # same settings: the stored probe comes back, nothing is trained
    monkeypatch.setattr(ches.review.probe.run, "load_policy", lambda *a, **k: pytest.fail("a stored probe was retrained"))
    assert run_probe(tiny_run, s) == path
    assert storage.find_probe(tiny_run, s) == path
    assert path in [p for p, _ in storage.list_probes(tiny_run)]


def test_probe_table_and_band_means(tiny_run):
    results = pd.DataFrame({"row": [1, 2, 3], "pair_id": ["a", "b", "c"],
                            "logp_chosen_before": [-10.0, -20.0, -30.0], "logp_chosen_after": [-11.0, -19.0, -33.0],
                            "logp_rejected_before": [-5.0, -5.0, -5.0], "logp_rejected_after": [-6.0, -7.0, -8.0]})
    t = analysis.probe_table(tiny_run, results)
    assert t["delta_chosen"].tolist() == [-1.0, 1.0, -3.0] and t["delta_rejected"].tolist() == [-1.0, -2.0, -3.0]
    scores = read_scores(tiny_run).set_index("row")
    pct = {r: 100.0 * (scores["ches"] <= scores.loc[r, "ches"]).sum() / len(scores) for r in (1, 2, 3)}
    assert t["ches_pct"].tolist() == pytest.approx([pct[1], pct[2], pct[3]])
    delta = {1: -1.0, 2: 1.0, 3: -3.0}
    want = {}
    for r in (1, 2, 3):
        want.setdefault("0-50" if pct[r] <= 50 else "50-100", []).append(delta[r])
    bands = analysis.band_means(t, "ches", edges=(0, 50, 100)).set_index("band")
    assert sorted(bands.index) == sorted(want)
    for band, values in want.items():
        assert bands.loc[band, "pairs"] == len(values)
        assert bands.loc[band, "mean_delta_chosen"] == pytest.approx(np.mean(values))


def test_partial_spearman_matches_the_closed_form_by_hand():
    a, b, c = [1, 2, 3, 4, 5], [1, 3, 2, 5, 4], [2, 1, 4, 3, 5]
    # Spearman by 1 - 6 sum d^2 / (n (n^2 - 1)), n = 5: sum d^2 = 4 (a, b), 4 (a, c), 14 (b, c)
    r_ab, r_ac, r_bc = 1 - 24 / 120, 1 - 24 / 120, 1 - 84 / 120                 # 0.8, 0.8, 0.3
    want = (r_ab - r_ac * r_bc) / math.sqrt((1 - r_ac ** 2) * (1 - r_bc ** 2))   # 0.56 / sqrt(0.36 * 0.91)
    assert analysis.spearman(a, b) == pytest.approx(r_ab)
    assert analysis.partial_spearman(a, b, c) == pytest.approx(want) and want == pytest.approx(0.978399, abs=1e-6)
    # a control that is a monotone function of a leaves nothing to correlate; n < 3 means nothing
    assert math.isnan(analysis.partial_spearman(a, b, [10, 20, 30, 40, 50]))
    assert math.isnan(analysis.partial_spearman([1, 2], [2, 1], [1, 2]))


def fake_probe(run: Path, key: str, rows: list[int], d_chosen: list[float], *, seed: int = 0, lr: float = 1e-3,
               metric: str = "ches", created: str = "2025-01-01T00:00:00") -> Path:
    """A stored probe with chosen changes d_chosen (rejected: -1 each), written as run_probe writes one."""
    results = pd.DataFrame({"row": rows, "pair_id": [f"p{r}" for r in rows], "len_chosen": [4] * len(rows),
                            "logp_chosen_before": [-10.0] * len(rows), "logp_chosen_after": [-10.0 + d for d in d_chosen],
                            "logp_rejected_before": [-5.0] * len(rows), "logp_rejected_after": [-6.0] * len(rows)})
    s = settings.ProbeSettings(subset="ids", ids=tuple(rows), batch_size=1, lr=lr, seed=seed, metric=metric)
    m = {"key": key, "created_at": created, "settings": s.as_dict(), "describe": s.describe(), "pairs": len(rows),
         "steps": 1, "device": "cpu", "seconds": 0.5, "summary": analysis.summarize(results)}
    return storage.write_probe(run / "probes" / key, m, results)


def test_band_points_group_seeds_and_the_figure_draws_their_spread(tiny_run, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("probes"))
    fake_probe(run, "a0", [1, 2, 3], [-1.0, -1.0, -1.0], seed=0)
    fake_probe(run, "a1", [1, 2, 3], [-3.0, -3.0, -3.0], seed=1)          # same settings, another seed
    fake_probe(run, "b0", [4, 5, 6], [2.0, 4.0, 6.0], lr=1e-4)
    points = analysis.band_points(run, storage.list_probes(run), "ches").set_index("seeds")
    scores = read_scores(run).set_index("row")
    pct = {r: 100.0 * (scores["ches"] <= scores.loc[r, "ches"]).sum() / len(scores) for r in range(1, 7)}
    assert len(points) == 2
    assert points.loc[2, "mean_delta_chosen"] == pytest.approx(-2.0)
    assert points.loc[2, "sd"] == pytest.approx(math.sqrt(2.0))                  # sd of -1 and -3, ddof 1
    assert points.loc[2, "percentile"] == pytest.approx(np.mean([pct[1], pct[2], pct[3]]))
    assert points.loc[2, "lo"] == pytest.approx(min(pct[1], pct[2], pct[3]))
    assert points.loc[1, "mean_delta_chosen"] == pytest.approx(4.0) and math.isnan(points.loc[1, "sd"])
    from ches.review import charts
    fig = charts.probe_bands(points.reset_index(), "ches")
    trace = fig.data[0]
    assert list(trace.y) == pytest.approx(list(points["mean_delta_chosen"]))
    assert list(trace.error_y.array) == pytest.approx([math.sqrt(2.0), 0.0] if points.index[0] == 2 else
                                                      [0.0, math.sqrt(2.0)])
    assert "CHES percentile" in fig.layout.xaxis.title.text


def test_cancel_and_interrupt_leave_no_probe(tiny_run, monkeypatch):
    s = settings.ProbeSettings(subset="bottom", n=3, steps=1, batch_size=3, lr=1e-4, seed=7)
    calls = {"n": 0}

    def stop_in_training() -> bool:
        calls["n"] += 1
        return calls["n"] > 1                      # let the "before" pass finish, stop in the first step
    with pytest.raises(dpo.ProbeCancelled):
        run_probe(tiny_run, s, dpo.load_policy(tiny_run), should_stop=stop_in_training)
    monkeypatch.setattr(pd.DataFrame, "to_parquet", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run_probe(tiny_run, s, dpo.load_policy(tiny_run))
    assert storage.find_probe(tiny_run, s) is None
    assert not [d for d in (tiny_run / "probes").iterdir() if d.name.startswith(".")]   # no temp folder left


def test_a_probe_folder_is_written_whole_and_the_first_one_wins(tmp_path):
    results = pd.DataFrame({"row": [1], "pair_id": ["a"], "len_chosen": [3], "logp_chosen_before": [-1.0],
                            "logp_chosen_after": [-2.0],
                            "logp_rejected_before": [-3.0], "logp_rejected_after": [-4.0]})
    target = tmp_path / "probes" / "k1"
    assert storage.write_probe(target, {"n": 1}, results) == target
    assert storage.write_probe(target, {"n": 2}, results.assign(row=[7])) == target     # same key, later writer
    m, back = storage.read_probe(target)
    assert m == {"n": 1} and back["row"].tolist() == [1]
    assert sorted(p.name for p in target.parent.iterdir()) == ["k1"]                  # no temp folder left


def test_a_run_scored_with_other_weights_is_refused(tmp_path, tiny_dir):
    ds = load_records(RECORDS[:3], source="fake.jsonl")
    run = make_fake_run(tmp_path / "run", ds)
    manifest = read_manifest(run)
    manifest["key"]["model_id"] = str(tiny_dir)                    # fingerprint stays "fp123"
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(settings.ProbeError, match="weights of .* changed since the run was scored"):
        dpo.load_policy(run)
    from ches.engine.models import load_model
    with pytest.raises(settings.ProbeError, match="weights of .* changed since the run was scored"):
        run_probe(run, settings.ProbeSettings(subset="top", n=3, batch_size=3, lr=1e-3), load_model(str(tiny_dir)))


# -------------------------------------------------------------------------------------------- the CLI

def test_cli_probe_prints_the_summary_then_reuses_the_probe(tiny_run, tmp_path, capsys):
    ids = tmp_path / "rows.txt"
    ids.write_text("2\n5\n6\n")
    argv = ["probe", str(tiny_run), "--subset", "ids", str(ids), "--steps", "1", "--batch-size", "3", "--lr", "1e-3"]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    found = [p for p, m in storage.list_probes(tiny_run) if m["settings"]["ids"] == [2, 5, 6]]
    assert len(found) == 1
    _, results = storage.read_probe(found[0])
    lost = int((results["logp_chosen_after"] < results["logp_chosen_before"]).sum())
    assert f"pairs that lost chosen likelihood: {lost} of 3" in out
    from ches.review.probe.analysis import significant
    dc = results["logp_chosen_after"] - results["logp_chosen_before"]              # per token, from the rows
    assert f"mean |y+|: {significant(results['len_chosen'].mean())} tokens" in out
    assert f"per response token {significant((dc / results['len_chosen']).mean(), signed=True)}" in out
    assert "in nats summed over the response (|y| tokens, EOS included)" in out
    assert "3 listed rows; 1 step(s) of batch 3, rmsprop lr 0.001, beta 0.1, seed 0" in out
    assert "Traceback" not in out + err
    assert cli.main(argv) == 0
    assert "reusing the stored probe" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--subset", "top", "--n", "99"], "n = 99 is more than the run's 6 pairs: choose n of at most 6"),
    (["--subset", "top", "--batch-size", "7"], "n = 6 is below the batch size 7: choose a batch size of at most 6"),
    (["--subset", "band", "90", "100"], "too few pairs: the 1 pair in ches percentiles 90-100"),
    (["--subset", "top", "--lr", "0"], "the learning rate must be a positive number (got 0)"),
    (["--subset", "top", "--n", "2", "--batch-size", "1"], "n = 2 is too few: a probe needs at least 3 pairs"),
    (["--subset", "top", "--n", "3", "--batch-size", "4"],
     "n = 3 is below the batch size 4: choose a batch size of at most 3, or a larger n"),
    (["--subset", "middle"], "unknown subset 'middle'"),
    (["--subset", "band", "10"], "--subset band needs LO HI"),
    (["--subset", "ids", "no-such-file.txt"], "no-such-file.txt"),
])
def test_cli_refuses_bad_settings_in_one_line(tiny_run, capsys, extra, message):
    assert cli.main(["probe", str(tiny_run), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ches: error: ") and message in err and err.count("\n") == 1


# ------------------------------------------------------------------------------------------- the page

def probe_form(run: Path) -> AppTest:
    """The Probe page in a new session, with 3 pairs of the whole CHES band, batch 3, 1 step, lr 1e-3."""
    at = open_app("pages/probe.py", run)
    at.selectbox(key="probe_metric").set_value("ches")
    at.slider(key="probe_band").set_value((0, 100))
    at.number_input(key="probe_n").set_value(3)
    at.number_input(key="probe_batch").set_value(3)
    at.number_input(key="probe_steps").set_value(1)
    return ok(at.number_input(key="probe_lr").set_value(1e-3).run())


def warnings(at: AppTest) -> list[str]:
    return [w.value.replace("\\", "") for w in at.warning]


def successes(at: AppTest) -> list[str]:
    return [w.value.replace("\\", "") for w in at.success]


@pytest.mark.usefixtures("workspace_env")
def test_the_probe_is_a_job_a_second_tab_sees_it_cancel_stops_it_and_the_result_opens(tiny_run, task_jobs,
                                                                                         tmp_path):
    """Run starts `ches probe` as a job and the page returns at once; another session with the same settings
    sees that job and cannot start a second; Cancel stops it (nothing stored); Run again, and the probe opens
    in both sessions when it is stored."""
    import shutil

    run, folder = tmp_path / "run", workspace().jobs
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("probes"))
    at = probe_form(run)
    wanted = settings.ProbeSettings(subset="band", band=(0.0, 100.0), n=3, metric="ches", steps=1, batch_size=3,
                                    lr=1e-3, beta=at.number_input(key="probe_beta").value)
    target = storage.probe_path(run, settings.select_rows(read_scores(run), wanted), wanted)
    at.button(key="probe_go").click().run()               # the job waits at its gate: the page has returned
    ok(at)
    (job,) = jobs.list_jobs(folder)
    assert job.kind == "probe" and jobs.status(job).running and not target.exists()
    assert at.button(key="probe_go").disabled and at.button(key=f"main_cancel_{job.name}") is not None

    other = probe_form(run)                               # another tab, the same settings
    assert other.button(key="probe_go").disabled and other.button(key=f"main_cancel_{job.name}") is not None
    assert [j.pid for j in jobs.list_jobs(folder)] == [job.pid]

    at.button(key=f"main_cancel_{job.name}").click().run()
    assert task_jobs.over(job).state == "cancelled"
    ok(at.run())
    assert "Probe cancelled: nothing was stored." in " ".join(warnings(at)) and not target.exists()
    assert "probe_open" not in at.session_state

    task_jobs.release()
    at.button(key="probe_go").click().run()               # Run again: a new process
    (again,) = jobs.list_jobs(folder)
    assert again.pid != job.pid and task_jobs.over(again).state == "complete"
    ok(at.run())                                          # what the page's polling does when the job ends
    assert at.session_state["probe_open"] == str(target)
    assert "Probe finished and stored with the run." in successes(at)
    m, results = storage.read_probe(target)
    mean = (results["logp_chosen_after"] - results["logp_chosen_before"]).mean()
    assert metric(at, "Mean change of log π(y⁺|x)") == analysis.significant(mean, signed=True)
    ok(other.run())
    assert other.session_state["probe_open"] == str(target)      # the other tab watched it: opened there too
    assert jobs.list_jobs(folder) == []                   # a finished job leaves no record


@pytest.mark.slow
@pytest.mark.usefixtures("workspace_env")
def test_probe_page_shows_a_probe_repeats_it_and_links_to_the_tokens(tiny_run, task_jobs):
    task_jobs.release()
    at = open_app("pages/probe.py", tiny_run)
    at.selectbox(key="probe_metric").set_value("ches").run()
    at.slider(key="probe_band").set_value((0, 100)).run()
    at.number_input(key="probe_n").set_value(2).run()
    assert any("n = 2 is too few" in e.value for e in at.error) and at.button(key="probe_go").disabled
    at.number_input(key="probe_batch").set_value(4).run()
    at.number_input(key="probe_n").set_value(3).run()
    assert any("below the batch size 4" in e.value and "at most 3" in e.value for e in at.error)
    at.number_input(key="probe_batch").set_value(3).run()
    at.number_input(key="probe_steps").set_value(1).run()
    at.number_input(key="probe_lr").set_value(1e-3).run()
    at.button(key="probe_go").click().run()                # stored by the test above, or trained now
    for job in jobs.list_jobs(workspace().jobs):
        task_jobs.over(job)
    ok(at.run())
    assert not at.error, [e.value for e in at.error]
    opened = Path(at.session_state["probe_open"])
    m, results = storage.read_probe(opened)
    assert m["pairs"] == 3 and m["settings"]["band"] == [0.0, 100.0] and m["settings"]["metric"] == "ches"
    # the results follow the metric the probe selected by; the selectbox switches them
    t = analysis.probe_table(tiny_run, results)
    axis = at.selectbox(key=f"probe_axis_{m['key']}")
    assert axis.value == "ches"
    assert metric(at, "Spearman(CHES, Δ log π(y⁺|x))") == f"{analysis.spearman(t['ches'], t['delta_chosen']):.3f}"
    axis.set_value("ln_ches").run()
    assert metric(at, "Spearman(LN-CHES, Δ log π(y⁺|x))") == \
        f"{analysis.spearman(t['ln_ches'], t['delta_chosen']):.3f}"
    # "lost the most" only when a pair lost; otherwise the smallest gains, said so
    lost = int((results["logp_chosen_after"] < results["logp_chosen_before"]).sum())
    headers = [x.value for x in at.markdown]
    assert ("##### Pairs that lost the most chosen likelihood" in headers) == (lost > 0)
    assert ("##### Pairs with the smallest gains of chosen likelihood" in headers) == (lost == 0)
    # repeat with seeds 1..2: one job trains two more probes of the same settings, one point with a spread
    at.number_input(key="probe_repeat_k").set_value(2).run()
    at.button(key="probe_repeat").click().run()
    ok(at)
    (job,) = jobs.list_jobs(workspace().jobs)
    assert job.args[-3:] == ("--seed", "1", "2") and task_jobs.over(job).state == "complete"
    ok(at.run())
    assert not at.error, [e.value for e in at.error]
    same = [pm for _, pm in storage.list_probes(tiny_run)
            if {**pm["settings"], "seed": 0} == {**m["settings"], "seed": 0}]
    assert sorted(pm["settings"]["seed"] for pm in same) == [0, 1, 2]
    assert "Probes with seeds 1..2 stored with the run." in successes(at)
    assert storage.read_probe(Path(at.session_state["probe_open"]))[0]["settings"]["seed"] == 2
    # lr 0 is refused with a message, not a traceback
    at.number_input(key="probe_lr").set_value(0.0).run()
    assert not at.exception and any("learning rate" in e.value for e in at.error)
    assert at.button(key="probe_go").disabled
    # the Map / Browse selection is the other source of pairs
    at.number_input(key="probe_lr").set_value(1e-3)
    at.session_state["focus_rows"] = [2, 5, 6]
    at.radio(key="probe_source").set_value("Map / Browse selection").run()
    assert not at.exception and any("3 listed rows; 1 step(s)" in c.value.replace("\\", "") for c in at.caption)
    # the pair that lost the most (or gained the least) opens in Pair / tokens
    at.session_state["probe_open"] = str(opened)
    at.run()
    delta = results["logp_chosen_after"] - results["logp_chosen_before"]
    worst = int(results["row"][delta.idxmin()])
    at.button(key=f"probe_tokens_{worst}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Pair / tokens" and at.session_state["pair_row"] == worst


@pytest.mark.usefixtures("workspace_env")
def test_probe_page_says_when_no_pair_lost_and_lists_the_smallest_gains(tiny_run, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("probes"))
    fake_probe(run, "gains", [1, 2, 3, 4], [0.5, 3.0, 0.2, 9.0], metric="ln_ches")
    at = open_app("pages/probe.py", run, timeout=60)
    assert at.selectbox(key="probe_axis_gains").value == "ln_ches"         # opens on the probe's own metric
    headers = [x.value for x in at.markdown]
    assert "##### Pairs with the smallest gains of chosen likelihood" in headers
    assert "##### Pairs that lost the most chosen likelihood" not in headers
    assert any("No displacement happened at these settings" in i.value and "all 4 pairs" in i.value for i in at.info)
    shown = [x.label for x in at.metric if x.label.startswith("row ")]
    assert shown == ["row 3", "row 1", "row 2", "row 4"]                    # smallest gain first
    tiles = {x.label: x.value for x in at.metric}
    assert tiles["per response token"] == "+0.794" and tiles["Mean |y⁺|"] == "4.00"     # (0.5+3+0.2+9)/4 / 4 tokens


@pytest.mark.usefixtures("workspace_env")
def test_probe_page_without_a_run_points_to_data_and_score():
    at = open_app("pages/probe.py", timeout=60)
    assert any("No run yet" in i.value for i in at.info)


# ------------------------------------------------------------------- issue 24: defaults fitted to the run

def test_cli_probe_without_n_or_batch_fits_the_run_and_says_so(tiny_run, capsys):
    pairs = len(read_scores(tiny_run))
    assert 3 <= pairs < settings.PAPER["n"]            # the tiny model gets the paper's n 512: more than the run
    batch = min(settings.PAPER["batch_size"], pairs)
    assert cli.main(["probe", str(tiny_run), "--subset", "top", "--steps", "1", "--lr", "1e-3"]) == 0
    out, err = capsys.readouterr()
    assert f"using n = {pairs} of the run's {pairs} pairs, batch {batch}" in err and "Traceback" not in out + err
    found = [m for _, m in storage.list_probes(tiny_run) if m["settings"]["subset"] == "top"
             and m["settings"]["steps"] == 1 and m["settings"]["lr"] == 1e-3]
    assert len(found) == 1 and found[0]["pairs"] == pairs and found[0]["settings"]["batch_size"] == batch


def test_cli_probe_help_and_the_page_say_the_same_about_steps(capsys):
    with pytest.raises(SystemExit):
        cli.main(["probe", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert f"optimizer steps (default: {settings.ONE_EPOCH})" in shown
    page = (ROOT / "pages" / "probe.py").read_text(encoding="utf-8")
    assert "ONE_EPOCH" in page


@pytest.mark.usefixtures("workspace_env")
def test_probe_page_fits_n_and_batch_to_the_band_and_steps_read_one_epoch(tiny_run, task_jobs):
    at = open_app("pages/probe.py", tiny_run)
    at.selectbox(key="probe_metric").set_value("ches").run()
    at.slider(key="probe_band").set_value((50, 100)).run()
    table = read_scores(tiny_run)
    inside = int(table["ches"].rank(method="max", pct=True).mul(100).between(50, 100).sum())  # the band's pairs
    assert 3 <= inside < len(table)
    batch = min(settings.PAPER["batch_size"], inside)
    epoch = math.ceil(inside / batch)
    assert not at.error, [e.value for e in at.error]
    assert any(f"using n = {inside} of the {inside} pairs in ches percentiles 50-100, batch {batch}"
               in c.value.replace("\\", "") for c in at.caption), [c.value for c in at.caption]
    steps = at.number_input(key="probe_steps")
    assert steps.value is None
    assert steps.proto.placeholder == f"one epoch ({epoch} step{'s' if epoch != 1 else ''})"
    assert settings.ONE_EPOCH in steps.help
    at.button(key="probe_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (job,) = jobs.list_jobs(workspace().jobs)             # what the job trains, as `ches probe` reads its arguments
    args = cli.build_parser().parse_args(["probe", *job.args])
    s, fit = probe_settings(args, read_manifest(tiny_run)["key"]["model_id"], table)
    assert (s.n, s.batch_size, s.steps, s.band, args.seed, fit.note) == (inside, batch, None, (50.0, 100.0), [0], "")
    assert jobs.cancel(job)


def test_probe_args_give_the_cli_the_settings_the_page_chose(tiny_run, tmp_path):
    table, model = read_scores(tiny_run), read_manifest(tiny_run)["key"]["model_id"]
    for s in (settings.ProbeSettings(subset="band", band=(12.5, 87.5), n=3, metric="ln_ches", steps=2, batch_size=3,
                                     lr=3e-4, beta=0.25, optimizer="adam", seed=4),
              settings.ProbeSettings(subset="ids", ids=(6, 2, 5, 2), n=3, batch_size=2, lr=1e-3),
              settings.ProbeSettings(subset="top", n=4, batch_size=2, lr=1e-7)):
        argv = probe_args(tiny_run, s, [s.seed, 9], rows_dir=tmp_path / "jobs")
        assert probe_args(tiny_run, s, [s.seed, 9], rows_dir=tmp_path / "jobs") == argv    # the same job
        args = cli.build_parser().parse_args(["probe", *argv])
        assert probe_settings(args, model, table)[0] == s and args.seed == [s.seed, 9]
