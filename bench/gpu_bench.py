"""The engine against a plain batched forward ("lean") on random-weight Llama-3-shaped models.

    python bench/gpu_bench.py --shape 1b --out gpu-1b.json      # on a GPU; also: 8b
    python bench/gpu_bench.py --shape tiny --out tiny.json     # a dry run on the CPU (the test suite does it)

Timed in the same process, same model, same pairs (best of --repeats, after a warm-up):
- lean: whole sequences x+y sorted by length, right-padded batches under a 64k-token budget (no mask:
  a causal model never looks at padding to its right), the body without the LM head, sums on the
  device, one copy at the end;
- engine: `ches.engine.forward.embed_pairs` with its defaults (the code path `ches score` takes);
- authors: one sequence at a time, float32, full model with output_hidden_states, on --authors-pairs.
Workloads: synthetic pairs (fixed seed; prompt ~120 and responses ~300 tokens) and the UltraFeedback
sample in ../shared/data tokenised by the default model's tokenizer. Tokens count prompt + response of
both sequences of a pair. Agreement: the engine in the model dtype (bf16 on a GPU) against the engine in
float32 on --agree-pairs pairs (Spearman of CHES), and the float32 engine against the authors' recipe
(CHES error over ||S+||^2, the scaled error of tests/test_engine.py). Peak memory per recipe, and the
fraction of the measured dense bf16 matmul rate that the engine's matmul work reaches. JSON to --out.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ches.engine import metrics  # noqa: E402
from ches.engine.files import load_dataset  # noqa: E402
from ches.engine.forward import embed_pairs, engine_path  # noqa: E402
from ches.engine.models import LoadedModel, default_model_dir, pick_device  # noqa: E402
from ches.engine.tokens import EncodedPair, encode_pair  # noqa: E402

UF = ROOT.parent / "shared" / "data" / "ultrafeedback-binarized-train-500.jsonl"
SHAPES = {  # Llama-3.2-1B and Llama-3-8B; tiny for the CPU dry run
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, synthetic=24, uf=12, prompt=24, response=40),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, synthetic=1024, uf=500, prompt=120, response=300),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, synthetic=512, uf=500, prompt=120, response=300),
}
LEAN_BUDGET = 65536


def build_model(shape: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    s = {k: v for k, v in SHAPES[shape].items() if k not in ("synthetic", "uf", "prompt", "response")}
    cfg = LlamaConfig(vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0,
                      tie_word_embeddings=shape != "8b", **s)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype)
    return model.eval()


def synthetic_pairs(n: int, prompt: int, response: int, seed: int = 0) -> list[EncodedPair]:
    rng = np.random.default_rng(seed)
    length = lambda mean: int(np.clip(rng.normal(mean, mean / 4), 1, 3 * mean))  # noqa: E731
    ids = lambda k: tuple(int(t) for t in rng.integers(10, 49000, k))  # noqa: E731
    out = []
    for _ in range(n):
        x = ids(length(prompt))
        out.append(EncodedPair(x, ids(length(response)), x, ids(length(response)), False))
    return out


def uf_pairs(n: int, max_length: int = 2048) -> list[EncodedPair]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model_dir())
    return [encode_pair(tok, p, max_length) for p in load_dataset(UF).pairs[:n]]


def n_tokens(pairs: list[EncodedPair]) -> int:
    return sum(len(p.prompt_plus) + len(p.chosen) + len(p.prompt_minus) + len(p.rejected) for p in pairs)


@torch.inference_mode()
def lean(model, pairs: list[EncodedPair], device) -> np.ndarray:
    """S+ by the plain recipe: whole sequences, length-sorted padded batches, body only, sums on device."""
    seqs = [(list(x) + list(y), len(x)) for p in pairs for x, y in ((p.prompt_plus, p.chosen), (p.prompt_minus, p.rejected))]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
    S = torch.zeros(len(seqs), model.config.hidden_size, dtype=torch.float32, device=device)
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * len(seqs[order[end]][0]) <= LEAN_BUDGET:
            end += 1
        batch = order[start:end]
        T = len(seqs[batch[-1]][0])
        ids = torch.zeros(len(batch), T, dtype=torch.long)
        keep = torch.zeros(len(batch), T, dtype=torch.bool)
        for b, i in enumerate(batch):
            s, P = seqs[i]
            ids[b, :len(s)] = torch.tensor(s)
            keep[b, P - 1:len(s)] = True                      # positions P-1 .. P+R-1
        ids, keep = ids.to(device), keep.to(device)
        h = model.model(input_ids=ids).last_hidden_state     # (B, T, d); right padding needs no mask
        S[batch] = (h.float() * keep[..., None]).sum(1)
        start = end
    return S.double().cpu().numpy()[0::2]


@torch.inference_mode()
def authors(model, pairs: list[EncodedPair], device) -> tuple[np.ndarray, np.ndarray]:
    """One sequence at a time, full model, output_hidden_states, float64 sums (the CHES authors' way)."""
    out = []
    for p in pairs:
        for x, y in ((p.prompt_plus, p.chosen), (p.prompt_minus, p.rejected)):
            h = model(input_ids=torch.tensor([list(x) + list(y)], device=device),
                      output_hidden_states=True).hidden_states[-1][0].double()          # (T, d)
            out.append(h[len(x) - 1:].sum(0).cpu().numpy())
    return np.stack(out[0::2]), np.stack(out[1::2])


def loaded(model, device, dtype) -> LoadedModel:
    return LoadedModel(model, SimpleNamespace(pad_token_id=0), "random-llama", "random", device, dtype)


def timed(fn, device, repeats: int) -> tuple[float, object, int]:
    """Best wall time of `repeats` calls, the last result, and the peak memory (bytes) they reached."""
    best, out = float("inf"), None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return best, out, peak


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device, dtype) -> float:
    """Measured dense matmul FLOP/s in `dtype` (8192^3 on a GPU, 512^3 on a CPU)."""
    n = 8192 if device.type == "cuda" else 512
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    seconds, _, _ = timed(lambda: a @ b, device, 5)
    return 2 * n ** 3 / seconds


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def scaled_error(S_plus, S_minus, ref_plus, ref_minus) -> float:
    """max |CHES - CHES_ref| / max(|CHES_ref|, ||S+_ref||^2): the tolerance measure of tests/test_engine.py."""
    mine, ref = metrics.ches(S_plus, S_minus), metrics.ches(ref_plus, ref_minus)
    return float((np.abs(mine - ref) / np.maximum(np.abs(ref), (ref_plus ** 2).sum(1))).max())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=SHAPES, default="tiny")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=1, help="timed calls per recipe after a warm-up (best is kept)")
    ap.add_argument("--authors-pairs", type=int, default=32)
    ap.add_argument("--agree-pairs", type=int, default=256)
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shape = SHAPES[args.shape]
    workloads = {"synthetic": synthetic_pairs(shape["synthetic"], shape["prompt"], shape["response"]),
                 "ultrafeedback": uf_pairs(shape["uf"])}
    model = build_model(args.shape, device, torch.float32)
    result = {"shape": args.shape, "device": torch.cuda.get_device_name(device) if device.type == "cuda"
              else platform.processor() or "cpu", "dtype": str(dtype).removeprefix("torch."),
              "torch": torch.__version__, "engine_path": engine_path(loaded(model, device, dtype)), "workloads": {}}

    # agreement first, while the weights are float32
    agree = workloads["ultrafeedback"][: args.agree_pairs]
    fp32 = embed_pairs(loaded(model, device, torch.float32), agree)
    ref_plus, ref_minus = authors(model, agree[: args.authors_pairs], device)
    k = len(ref_plus)
    result["fp32_engine_vs_authors_scaled_error"] = scaled_error(fp32.S_plus[:k], fp32.S_minus[:k], ref_plus, ref_minus)
    t_auth, _, _ = timed(lambda: authors(model, agree[: args.authors_pairs], device), device, 1)
    result["authors_tokens_per_s_fp32"] = n_tokens(agree[: args.authors_pairs]) / t_auth
    model.to(dtype)
    lm = loaded(model, device, dtype)
    low = embed_pairs(lm, agree)
    result["agreement"] = {"pairs": len(agree), "spearman_ches": spearman(metrics.ches(low.S_plus, low.S_minus),
                                                                          metrics.ches(fp32.S_plus, fp32.S_minus)),
                           "scaled_error": scaled_error(low.S_plus, low.S_minus, fp32.S_plus, fp32.S_minus)}
    peak_rate = matmul_rate(device, dtype)
    body_params = sum(p.numel() for n, p in model.model.named_parameters() if "embed" not in n)
    for name, pairs in workloads.items():
        tokens = n_tokens(pairs)
        embed_pairs(lm, pairs[:8])                                   # warm-up (kernels, allocator)
        lean(model, pairs[:8], device)
        t_lean, S_lean, m_lean = timed(lambda: lean(model, pairs, device), device, args.repeats)
        t_eng, emb, m_eng = timed(lambda: embed_pairs(lm, pairs), device, args.repeats)
        unique = tokens - sum(len(p.prompt_minus) for p in pairs if p.prompt_minus == p.prompt_plus)
        result["workloads"][name] = {
            "pairs": len(pairs), "tokens": tokens,
            "lean_tokens_per_s": tokens / t_lean, "engine_tokens_per_s": tokens / t_eng,
            "engine_over_lean": t_lean / t_eng,
            "engine_matmul_fraction_of_peak": 2 * body_params * unique / t_eng / peak_rate,
            "peak_memory_gib": {"lean": m_lean / 2**30, "engine": m_eng / 2**30},
            "engine_vs_lean_S_plus_rel_error": float(np.abs(emb.S_plus - S_lean).max() / np.abs(S_lean).max()),
        }
    result["matmul_peak_tflops"] = peak_rate / 1e12
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return result


if __name__ == "__main__":
    main()
