"""The engine against one-sequence-at-a-time forwards on tiny random configs of many model families.

The definition of S+ is a sum over one sequence x+y+ run alone; the engine packs prompts and responses
of many pairs into shared rows. Each family here is built with sliding windows / chunks both smaller
and larger than the sequences, and fed a batch that mixes prompt lengths, a shared prompt, an empty
response and a pair whose two prompts differ. Relative error of S+ and S- must stay within 1e-5.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from ches.engine.forward import TREE_FAMILIES, embed_pairs, engine_path, token_states
from ches.engine.models import LoadedModel
from ches.engine.tokens import EncodedPair

VOCAB = 96
IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
LLAMA_LIKE = dict(**IDS, vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and OpenMP spinning on a busy 2-core box costs 100x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cfg(model_type: str, **kw):
    return AutoConfig.for_model(model_type, **kw)


# (id, config factory, expected engine path). Windows of 6-8 tokens are far below the ~40-token
# sequences below; 4096 is far above them. Both must give the per-sequence sums.
FAMILIES = [
    ("llama", lambda: _cfg("llama", **LLAMA_LIKE), "tree"),
    ("mistral-window-6", lambda: _cfg("mistral", **LLAMA_LIKE, sliding_window=6), "tree"),
    ("mistral-window-4096", lambda: _cfg("mistral", **LLAMA_LIKE, sliding_window=4096), "tree"),
    ("mixtral-window-7", lambda: _cfg("mixtral", **LLAMA_LIKE, sliding_window=7, num_local_experts=4,
                                      num_experts_per_tok=2), "tree"),
    ("qwen2-sliding-7", lambda: _cfg("qwen2", **LLAMA_LIKE, use_sliding_window=True, sliding_window=7,
                                     max_window_layers=1), "tree"),
    ("qwen2-sliding-4096", lambda: _cfg("qwen2", **LLAMA_LIKE, use_sliding_window=True, sliding_window=4096,
                                        max_window_layers=0), "tree"),
    ("qwen3", lambda: _cfg("qwen3", **LLAMA_LIKE, head_dim=8), "tree"),
    ("gemma", lambda: _cfg("gemma", **LLAMA_LIKE, head_dim=8), "tree"),
    ("gemma2-window-6", lambda: _cfg("gemma2", **LLAMA_LIKE, head_dim=8, sliding_window=6), "tree"),
    ("gemma2-window-4096", lambda: _cfg("gemma2", **LLAMA_LIKE, head_dim=8, sliding_window=4096), "tree"),
    ("gemma3-window-5", lambda: _cfg("gemma3_text", **LLAMA_LIKE, head_dim=8, sliding_window=5,
                                     layer_types=["sliding_attention", "full_attention"]), "tree"),
    ("gemma3-window-4096", lambda: _cfg("gemma3_text", **LLAMA_LIKE, head_dim=8, sliding_window=4096,
                                        layer_types=["sliding_attention", "full_attention"]), "tree"),
    ("phi3-window-8", lambda: _cfg("phi3", **LLAMA_LIKE, sliding_window=8), "tree"),
    ("phi3-window-4096", lambda: _cfg("phi3", **LLAMA_LIKE, sliding_window=4096), "tree"),
    ("starcoder2-window-6", lambda: _cfg("starcoder2", **LLAMA_LIKE, sliding_window=6), "tree"),
    ("cohere2-window-6", lambda: _cfg("cohere2", **LLAMA_LIKE, sliding_window=6,
                                      layer_types=["sliding_attention", "full_attention"]), "tree"),
    ("llama4-chunk-8", lambda: _cfg("llama4_text", **LLAMA_LIKE, head_dim=8, attention_chunk_size=8,
                                    num_local_experts=2, intermediate_size_mlp=64,
                                    layer_types=["chunked_attention", "full_attention"],
                                    no_rope_layers=[1, 0]), "tree"),
    ("ministral-window-6", lambda: _cfg("ministral", **LLAMA_LIKE, head_dim=8, sliding_window=6,
                                        layer_types=["sliding_attention", "full_attention"]), "tree"),
    ("exaone4-window-6", lambda: _cfg("exaone4", **LLAMA_LIKE, sliding_window=6,
                                      layer_types=["sliding_attention", "full_attention"]), "tree"),
    ("qwen2_moe", lambda: _cfg("qwen2_moe", **LLAMA_LIKE, num_experts=4, num_experts_per_tok=2,
                               moe_intermediate_size=16, shared_expert_intermediate_size=16), "tree"),
    ("qwen3_moe", lambda: _cfg("qwen3_moe", **LLAMA_LIKE, head_dim=8, num_experts=4, num_experts_per_tok=2,
                               moe_intermediate_size=16), "tree"),
    ("cohere", lambda: _cfg("cohere", **LLAMA_LIKE), "tree"),
    ("olmo", lambda: _cfg("olmo", **LLAMA_LIKE), "tree"),
    ("glm4", lambda: _cfg("glm4", **LLAMA_LIKE, head_dim=8), "tree"),
    ("gpt_oss-window-6", lambda: _cfg("gpt_oss", **LLAMA_LIKE, head_dim=8, sliding_window=6, num_local_experts=4,
                                      num_experts_per_tok=2, layer_types=["sliding_attention", "full_attention"]),
     "tree"),
    ("deepseek_v3", lambda: _cfg("deepseek_v3", **{**LLAMA_LIKE, "num_key_value_heads": 4}, q_lora_rank=16, kv_lora_rank=16, qk_rope_head_dim=4,
                                 qk_nope_head_dim=4, v_head_dim=8, n_routed_experts=4, num_experts_per_tok=2,
                                 moe_intermediate_size=16, first_k_dense_replace=1, n_group=1, topk_group=1), "tree"),
    ("smollm3-nope", lambda: _cfg("smollm3", **LLAMA_LIKE, no_rope_layers=[1, 0]), "tree"),
    ("olmo2", lambda: _cfg("olmo2", **LLAMA_LIKE), "tree"),
    ("granite", lambda: _cfg("granite", **LLAMA_LIKE), "tree"),
    ("stablelm", lambda: _cfg("stablelm", **LLAMA_LIKE), "tree"),
    ("phi", lambda: _cfg("phi", **LLAMA_LIKE), "tree"),
    ("gpt2-absolute", lambda: _cfg("gpt2", vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=256), "tree"),
    ("opt-learned-offset", lambda: _cfg("opt", vocab_size=VOCAB, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                                        num_attention_heads=4, word_embed_proj_dim=32,
                                        max_position_embeddings=256), "tree"),
    ("gpt_neox-partial-rotary", lambda: _cfg("gpt_neox", vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=4, rotary_pct=0.5), "tree"),
    ("gptj", lambda: _cfg("gptj", vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, rotary_dim=4,
                          n_positions=256), "tree"),
    ("falcon-rotary", lambda: _cfg("falcon", vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=4, alibi=False, new_decoder_architecture=True,
                                   num_kv_heads=2), "tree"),
    ("falcon-alibi", lambda: _cfg("falcon", vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, alibi=True), "padded"),
    ("bloom-alibi", lambda: _cfg("bloom", vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4), "padded"),
    ("mpt-alibi", lambda: _cfg("mpt", vocab_size=VOCAB, d_model=32, n_heads=4, n_layers=2, max_seq_len=256), "padded"),
]


def tiny_lm(cfg, attn: str | None = None) -> LoadedModel:
    """Random weights; `attn` None takes the family's default attention (sdpa where it has one)."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn, dtype=torch.float32).eval()
    return LoadedModel(model, SimpleNamespace(pad_token_id=0), "tiny", "tiny", torch.device("cpu"), torch.float32)


def mixed_pairs(seed: int = 0) -> list[EncodedPair]:
    """Prompts of 3 to 30 tokens, responses of 0 to 25, a prompt shared by two pairs, one pair whose
    rejected side has its own prompt, and an empty chosen response."""
    rng = np.random.default_rng(seed)
    ids = lambda n: tuple(int(t) for t in rng.integers(1, VOCAB, n))  # noqa: E731
    shared = ids(17)
    pairs = [EncodedPair(ids(p), ids(a), (), ids(b), False) for p, a, b in
             [(3, 12, 25), (30, 8, 1), (9, 0, 14), (22, 25, 20), (5, 1, 1), (14, 19, 3)]]
    pairs = [EncodedPair(p.prompt_plus, p.chosen, p.prompt_plus, p.rejected, False) for p in pairs]
    pairs += [EncodedPair(shared, ids(10), shared, ids(16), False), EncodedPair(shared, ids(4), shared, ids(21), False),
              EncodedPair(ids(11), ids(9), ids(26), ids(7), False)]
    return pairs


@torch.inference_mode()
def one_at_a_time(lm: LoadedModel, pairs: list[EncodedPair]) -> tuple[np.ndarray, np.ndarray]:
    """The definition: each x+y alone through the full model; h = the LM head's input (read by a
    plain forward hook, logits computed as usual), summed over positions P-1 .. P+R-1."""
    seen = []
    hook = lm.model.get_output_embeddings().register_forward_hook(lambda m, args, out: seen.append(args[0]))
    out = []
    try:
        for p in pairs:
            for x, y in ((p.prompt_plus, p.chosen), (p.prompt_minus, p.rejected)):
                lm.model(input_ids=torch.tensor([list(x) + list(y)]))
                h = seen.pop()[0].double()                                          # (T, d)
                out.append(h[len(x) - 1:].sum(0).numpy())
    finally:
        hook.remove()
    return np.stack(out[0::2]), np.stack(out[1::2])


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("name,make,path", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_batched_sums_equal_one_sequence_at_a_time(name, make, path):
    lm = tiny_lm(make())
    assert engine_path(lm) == path
    pairs = mixed_pairs()
    Sp, Sm = one_at_a_time(lm, pairs)
    for budget in (48, 1 << 16):                  # rows of one segment each, and everything in one batch
        emb = embed_pairs(lm, pairs, batch_tokens=budget)
        assert _rel(emb.S_plus, Sp) <= 1e-5 and _rel(emb.S_minus, Sm) <= 1e-5, (budget, _rel(emb.S_plus, Sp))
    np.testing.assert_array_equal(emb.len_plus, [len(p.chosen) + 1 for p in pairs])
    H_plus, H_minus = token_states(lm, pairs[3])
    assert H_plus.shape[0] == len(pairs[3].chosen) + 1
    assert _rel(H_plus.sum(0), Sp[3]) <= 1e-5 and _rel(H_minus.sum(0), Sm[3]) <= 1e-5


@pytest.mark.parametrize("name,make", [(n, m) for n, m, p in FAMILIES if n.split("-")[0] in
                                       ("llama", "gemma2", "gemma3", "mistral")][:4])
def test_eager_attention_takes_the_same_path_and_numbers(name, make):
    lm = tiny_lm(make(), attn="eager")
    pairs = mixed_pairs(1)
    emb = embed_pairs(lm, pairs, batch_tokens=256)
    Sp, Sm = one_at_a_time(lm, pairs)
    assert engine_path(lm) == "tree"
    assert _rel(emb.S_plus, Sp) <= 1e-5 and _rel(emb.S_minus, Sm) <= 1e-5


def test_every_listed_family_is_covered_here():
    tested = {f[1]().get_text_config().model_type for f in FAMILIES}
    assert set(TREE_FAMILIES) - tested == set(), "a family on the fast path without a test"


def test_a_prompt_shared_by_many_pairs_is_split_across_rows():
    lm = tiny_lm(FAMILIES[1][1]())                      # mistral, window 6
    rng = np.random.default_rng(2)
    x = tuple(int(t) for t in rng.integers(1, VOCAB, 12))
    pairs = [EncodedPair(x, tuple(int(t) for t in rng.integers(1, VOCAB, 1 + i % 7)), x,
                         tuple(int(t) for t in rng.integers(1, VOCAB, 2 + i % 5)), False) for i in range(30)]
    emb = embed_pairs(lm, pairs, batch_tokens=40)     # the shared segment (~200 tokens) cannot fit a row
    Sp, Sm = one_at_a_time(lm, pairs)
    assert _rel(emb.S_plus, Sp) <= 1e-5 and _rel(emb.S_minus, Sm) <= 1e-5


def test_out_of_memory_halves_the_budget_and_keeps_every_number(monkeypatch, caplog):
    import ches.engine.forward as engine

    lm, pairs = tiny_lm(FAMILIES[0][1]()), mixed_pairs(3)
    real, sizes = engine._forward, []

    def small_device(lm_, rows, tree):
        tokens = len(rows) * max(len(r.ids) for r in rows)
        sizes.append(tokens)
        if tokens > 90:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(lm_, rows, tree)

    monkeypatch.setattr(engine, "_forward", small_device)
    with caplog.at_level("WARNING", logger="ches.engine.forward"):
        emb = embed_pairs(lm, pairs, batch_tokens=1 << 12)
    Sp, Sm = one_at_a_time(lm, pairs)
    assert _rel(emb.S_plus, Sp) <= 1e-5 and _rel(emb.S_minus, Sm) <= 1e-5
    assert max(sizes) > 90 and "retrying with" in caplog.text


def test_a_sequence_too_long_for_the_device_is_a_clear_error(monkeypatch):
    import ches.engine.forward as engine

    def no_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(engine, "_forward", no_memory)
    with pytest.raises(MemoryError, match="smaller --max-length"):
        embed_pairs(tiny_lm(FAMILIES[0][1]()), mixed_pairs()[:1], batch_tokens=1 << 12)


@pytest.mark.slow
def test_gpu_bench_dry_run_on_the_cpu(tmp_path):
    """bench/gpu_bench.py --shape tiny: every recipe runs and agrees; the JSON has what the GPU runs report."""
    import json

    from conftest import load_bench

    bench = load_bench("gpu_bench")
    out = tmp_path / "tiny.json"
    bench.main(["--shape", "tiny", "--device", "cpu", "--repeats", "1", "--authors-pairs", "4", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["engine_path"] == "tree"
    assert result["fp32_engine_vs_authors_scaled_error"] < 1e-5 and result["agreement"]["spearman_ches"] > 0.999
    for w in result["workloads"].values():
        assert w["engine_vs_lean_S_plus_rel_error"] < 1e-5
        assert w["lean_tokens_per_s"] > 0 and w["engine_tokens_per_s"] > 0
