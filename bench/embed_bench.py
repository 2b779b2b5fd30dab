"""Tokens/s of the engine against the CHES authors' recipe, measured in the same run on the same pairs.

    python bench/embed_bench.py [--pairs 24] [--data ../shared/data/ultrafeedback-binarized-train-500.jsonl]

Authors' recipe: one sequence (prompt + response) at a time, the full model with output_hidden_states,
float64 sums over positions P-1 .. P+R-1. Engine: ches.engine.forward.embed_pairs with its defaults. Both are
timed twice, interleaved (ref, engine, ref, engine), and the better time of each is used. Tokens =
the prompt+response tokens of both sides (the same count for both recipes).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ches.engine import metrics  # noqa: E402
from ches.engine.files import load_dataset  # noqa: E402
from ches.engine.forward import embed_pairs  # noqa: E402
from ches.engine.models import load_model  # noqa: E402
from ches.engine.tokens import encode_pair  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ultrafeedback-binarized-train-500.jsonl"


@torch.inference_mode()
def authors_recipe(lm, encoded):
    S = []
    for e in encoded:
        for x, y in ((e.prompt_plus, e.chosen), (e.prompt_minus, e.rejected)):
            h = lm.model(input_ids=torch.tensor([list(x) + list(y)], device=lm.device),
                         output_hidden_states=True).hidden_states[-1][0].double()     # (T, d)
            S.append(h[len(x) - 1:].sum(0).cpu().numpy())
    return np.stack(S[0::2]), np.stack(S[1::2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--batch-tokens", type=int, default=None)
    args = ap.parse_args()

    lm = load_model(args.model, dtype=args.dtype)
    pairs = load_dataset(args.data).pairs[: args.pairs]
    encoded = [encode_pair(lm.tokenizer, p, args.max_length) for p in pairs]
    tokens = sum(len(e.prompt_plus) + len(e.chosen) + len(e.prompt_minus) + len(e.rejected) for e in encoded)
    print(f"{len(pairs)} pairs, {tokens} tokens, {lm.device}, {lm.dtype}, torch threads {torch.get_num_threads()}")

    t_ref, t_eng = [], []
    for _ in range(2):
        t = time.perf_counter(); Sp, Sm = authors_recipe(lm, encoded); t_ref.append(time.perf_counter() - t)
        t = time.perf_counter(); emb = embed_pairs(lm, encoded, batch_tokens=args.batch_tokens)
        t_eng.append(time.perf_counter() - t)
    ref, eng = tokens / min(t_ref), tokens / min(t_eng)
    c_ref, c_eng = metrics.ches(Sp, Sm), metrics.ches(emb.S_plus, emb.S_minus)
    size = (Sp ** 2).sum(1)
    same_rank = bool((np.argsort(-c_ref, kind="stable") == np.argsort(-c_eng, kind="stable")).all())
    print(f"authors' recipe  {ref:8.0f} tokens/s   (runs: {', '.join(f'{x:.1f}s' for x in t_ref)})")
    print(f"engine           {eng:8.0f} tokens/s   (runs: {', '.join(f'{x:.1f}s' for x in t_eng)})")
    print(f"ratio            {eng / ref:8.2f}x")
    print(f"S+ max rel error {np.abs(emb.S_plus - Sp).max() / np.abs(Sp).max():.1e}   "
          f"CHES max error / ||S+||^2 {(np.abs(c_eng - c_ref) / size).max():.1e}   identical ranking: {same_rank}")


if __name__ == "__main__":
    main()
