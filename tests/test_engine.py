"""The engine against an independent reference: the CHES authors' recipe, written here the way they
computed it (one sequence at a time, the full model with output_hidden_states, float64 sums over the
positions P-1 .. P+R-1), on real pairs from ../shared/data."""
from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ches.engine import metrics
from ches.engine.records import load_records
from ches.engine.forward import embed_pairs
from ches.engine.models import LoadedModel, load_model
from ches.engine.pipeline import pair_tokens, score_dataset
from ches.engine.store import read_pairs, read_scores
from ches.engine.tokens import encode_pair, truncate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def lm() -> LoadedModel:
    return load_model()


def real_pairs():
    """34 real pairs: short UltraFeedback rows, HH rows (with a prompt mismatch and an empty reply), persona."""
    uf = [json.loads(line) for line in open(SHARED / "ultrafeedback-binarized-train-500.jsonl")]
    uf = sorted(uf, key=lambda r: len(json.dumps(r)))[:12]
    with gzip.open(SHARED / "hh-rlhf-harmless-base-test.jsonl.gz", "rt") as f:
        hh_all = [json.loads(line) for line in f]
    hh = [hh_all[i] for i in (0, 3, 86, 234, 1254, 7, 11, 20, 25, 30)]
    persona = [json.loads(line) for line in open(SHARED / "persona-ends-justify-means.jsonl")][:12]
    ds = [load_records(rows) for rows in (uf, hh, persona)]
    pairs = [p for d in ds for p in d.pairs]
    assert any(p.rejected_prompt is not None for p in pairs) and any(not p.chosen.strip() for p in pairs)
    return pairs


@torch.inference_mode()
def authors_recipe(lm: LoadedModel, enc) -> tuple[np.ndarray, np.ndarray, int, int, np.ndarray, np.ndarray]:
    """S+, S-, |y+|, |y-|, last states: full model, one sequence at a time, float64 sums."""
    out = []
    for x, y in ((enc.prompt_plus, enc.chosen), (enc.prompt_minus, enc.rejected)):
        ids = torch.tensor([list(x) + list(y)])
        h = lm.model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0].double()  # (T, d)
        P = len(x)
        out.append((h[P - 1:].sum(0).numpy(), len(y) + 1, h[-1].numpy()))
    (Sp, lp, hp), (Sm, lm_, hm) = out
    return Sp, Sm, lp, lm_, hp, hm


@pytest.mark.real_model
def test_engine_matches_authors_recipe(lm):
    pairs = real_pairs()
    assert len(pairs) >= 30
    enc = [encode_pair(lm.tokenizer, p, 4096) for p in pairs]
    assert not any(e.truncated for e in enc)
    ref = [authors_recipe(lm, e) for e in enc]
    Sp, Sm = np.stack([r[0] for r in ref]), np.stack([r[1] for r in ref])
    lp, lm_ = np.array([r[2] for r in ref]), np.array([r[3] for r in ref])
    emb = embed_pairs(lm, enc, batch_tokens=2048)
    np.testing.assert_array_equal(emb.len_plus, lp)
    np.testing.assert_array_equal(emb.len_minus, lm_)
    assert np.max(np.abs(emb.S_plus - Sp)) / np.max(np.abs(Sp)) < 1e-5
    # A score is a difference of two terms of size ||S+||^2 (CHES) or ||m+||^2 (LN-CHES) that nearly
    # cancel for near-identical responses; the error is measured relative to that size. (The reference
    # recomputes the shared prompt state once per side, the engine once per pair: float32 rounding of
    # ~1e-7 there, amplified by the cancellation, is all that differs.)
    m_plus = Sp / lp[:, None]
    for mine, theirs, size in ((metrics.ches(emb.S_plus, emb.S_minus), metrics.ches(Sp, Sm), (Sp ** 2).sum(1)),
                               (metrics.ln_ches(emb.S_plus, emb.S_minus, emb.len_plus, emb.len_minus),
                                metrics.ln_ches(Sp, Sm, lp, lm_), (m_plus ** 2).sum(1))):
        rel = np.abs(mine - theirs) / np.maximum(np.abs(theirs), size)
        assert rel.max() <= 1e-5, rel.max()
        np.testing.assert_array_equal(np.argsort(-mine, kind="stable"), np.argsort(-theirs, kind="stable"))
    last = metrics.last_hidden_ip(np.stack([r[4] for r in ref]), np.stack([r[5] for r in ref]))
    np.testing.assert_allclose(metrics.last_hidden_ip(emb.last_plus, emb.last_minus), last, rtol=1e-4)


@pytest.mark.real_model
def test_scores_do_not_depend_on_batching_or_order(lm):
    pairs = real_pairs()[::3]
    enc = [encode_pair(lm.tokenizer, p, 4096) for p in pairs]
    runs = [embed_pairs(lm, enc, batch_tokens=b) for b in (64, 1024, 1 << 20)]
    order = np.random.default_rng(0).permutation(len(enc))
    shuffled = embed_pairs(lm, [enc[i] for i in order], batch_tokens=1024)
    base = metrics.ln_ches(runs[0].S_plus, runs[0].S_minus, runs[0].len_plus, runs[0].len_minus)
    for emb in runs[1:]:
        other = metrics.ln_ches(emb.S_plus, emb.S_minus, emb.len_plus, emb.len_minus)
        np.testing.assert_allclose(other, base, rtol=1e-5, atol=1e-6 * np.abs(base).max())
    other = metrics.ln_ches(shuffled.S_plus, shuffled.S_minus, shuffled.len_plus, shuffled.len_minus)
    np.testing.assert_allclose(other[np.argsort(order)], base, rtol=1e-5, atol=1e-6 * np.abs(base).max())


@pytest.mark.real_model
@pytest.mark.parametrize("metric", ["ln_ches", "ches"])
def test_token_contributions_sum_to_the_stored_score(lm, tmp_path, metric):
    ds = load_records([{"prompt": "Is it safe to eat raw cookie dough?",
                        "chosen": "Raw dough can carry E. coli and salmonella, so it is safer to bake it.",
                        "rejected": "Yes, it is perfectly safe."}])
    run = score_dataset(ds, lm, runs_root=tmp_path, max_length=256)
    view = pair_tokens(lm, read_pairs(run)[0], 256)
    stored = read_scores(run)[metric].iloc[0]
    assert len(view["contributions"][metric]) == len(view["chosen_tokens"]) == read_scores(run)["len_chosen"].iloc[0]
    assert view["contributions"][metric].sum() == pytest.approx(stored, rel=1e-5, abs=1e-6)


@pytest.mark.real_model
def test_pair_tokens_says_which_response_was_cut(lm):
    (pair,) = load_records([{"prompt": "Count to ten.", "chosen": "one two three four five six seven eight nine ten",
                             "rejected": "No."}]).pairs
    cut = pair_tokens(lm, pair, 8)                            # room for 4 response tokens: the chosen side loses some
    assert cut["truncated"] and cut["chosen_cut"] and not cut["rejected_cut"]
    whole = pair_tokens(lm, pair, 256)
    assert not whole["truncated"] and not whole["chosen_cut"] and not whole["rejected_cut"]


@pytest.mark.real_model
def test_same_key_reuses_the_run_and_other_keys_do_not(lm, tmp_path, monkeypatch):
    ds = load_records([{"prompt": "hi", "chosen": "Hello! How can I help?", "rejected": "hey"},
                       {"prompt": "2+2?", "chosen": "4", "rejected": "5"}])
    first = score_dataset(ds, lm, runs_root=tmp_path, max_length=64)
    import ches.engine.pipeline as pipeline
    monkeypatch.setattr(pipeline, "embed_pairs", lambda *a, **k: pytest.fail("recomputed a stored run"))
    assert score_dataset(ds, lm, runs_root=tmp_path, max_length=64) == first
    with pytest.raises(pytest.fail.Exception):
        score_dataset(ds, lm, runs_root=tmp_path, max_length=32)
    changed = load_records([{"prompt": "hi", "chosen": "Hello! How can I help?", "rejected": "hey!"},
                            {"prompt": "2+2?", "chosen": "4", "rejected": "5"}])
    with pytest.raises(pytest.fail.Exception):
        score_dataset(changed, lm, runs_root=tmp_path, max_length=64)


@pytest.mark.real_model
def test_truncation_is_explicit_and_flagged(lm, tmp_path):
    long = " ".join(["word"] * 400)
    ds = load_records([{"prompt": "Say word many times.", "chosen": long, "rejected": "word"},
                       {"prompt": "hi", "chosen": "hello", "rejected": "hey"}])
    table = read_scores(score_dataset(ds, lm, runs_root=tmp_path, max_length=64))
    assert table["truncated"].tolist() == [True, False]
    assert "truncated" in table["flags"][0] and "truncated" not in table["flags"][1]
    assert table["len_chosen"][0] <= 64


def test_truncate_rules():
    assert truncate([1, 2, 3], [[4, 5], [6]], 10) == ([1, 2, 3], [[4, 5], [6]], False)
    prompt, (a, b), cut = truncate(list(range(3)), [list(range(20)), [7]], 10)
    assert cut and prompt == [0, 1, 2] and len(a) == 7 and b == [7]
    prompt, (a,), cut = truncate(list(range(30)), [list(range(4))], 10)
    assert cut and prompt == list(range(24, 30)) and len(a) == 4   # the prompt loses its oldest tokens
    prompt, (a,), cut = truncate(list(range(30)), [list(range(30))], 10)
    assert cut and len(prompt) == 5 and len(a) == 5
    with pytest.raises(ValueError):
        truncate([1], [[2]], 1)


def test_plain_template_for_tokenizers_without_chat_template(lm):
    tok = lm.tokenizer
    saved = tok.chat_template
    try:
        tok.chat_template = None
        pair = load_records([{"prompt": "hi", "chosen": "a", "rejected": "b"}]).pairs[0]
        enc = encode_pair(tok, pair, 64)
        assert tok.decode(list(enc.prompt_plus)).endswith("User: hi\n\nAssistant:")
    finally:
        tok.chat_template = saved


def test_chat_template_prompt_is_an_exact_prefix(lm):
    pair = replace(load_records([{"prompt": "What is 2+2?", "chosen": " 4", "rejected": "5"}]).pairs[0])
    enc = encode_pair(lm.tokenizer, pair, 64)
    text = lm.tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+2?"}],
                                            add_generation_prompt=True, tokenize=False)
    assert list(enc.prompt_plus) == lm.tokenizer(text, add_special_tokens=False).input_ids
    assert list(enc.chosen) == lm.tokenizer(" 4", add_special_tokens=False).input_ids
