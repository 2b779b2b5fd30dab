"""The forward pass: per-response sums of last-layer hidden states, exactly per CHES_SPEC.md.

For a response y with prompt x (P prompt tokens, R response tokens) we need h at positions
P-1 .. P+R-1 of x+y, i.e. |y| = R + 1 vectors (the last one predicts EOS, which is never fed).

How it is computed (each step exact; only float rounding differs from one-sequence-at-a-time):
1. Unique prompts are run once through the base model (no LM head), right-padded in batches;
   their KV cache is kept and h at each prompt's last real position (P-1) is taken.
2. Every response (chosen and rejected) continues from its prompt's cache rows: a second pass over
   the response tokens alone, with explicit position ids P..P+R-1 and a 2-D attention mask that hides
   the prompt padding. So a prompt shared by y+ and y- is computed once, not twice.
3. Work is sorted by length and batched under a token budget (padding included); sums are
   accumulated in float64 (float32 on MPS); at most one batch of token-level states is alive.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from transformers import DynamicCache

from .models import LoadedModel
from .tokens import EncodedPair

Progress = Callable[[int, int], None]   # (responses done, responses total)


class Cancelled(Exception):
    """Raised when `should_stop()` returned True between batches."""


@dataclass
class Embeddings:
    S_plus: np.ndarray       # (n, d) float64: sum of h over the |y+| positions of the chosen side
    S_minus: np.ndarray      # (n, d) float64: same for the rejected side
    len_plus: np.ndarray     # (n,) int64: |y+| = R+ + 1
    len_minus: np.ndarray    # (n,) int64: |y-| = R- + 1
    last_plus: np.ndarray    # (n, d) float32: h at the last position of x+y+ (baseline)
    last_minus: np.ndarray   # (n, d) float32: h at the last position of x+y-


@dataclass(frozen=True)
class _Response:
    prompt: int              # index into the unique prompt list
    ids: tuple[int, ...]


def default_batch_tokens(device: torch.device) -> int:
    """CPU: small batches (padding costs, large ones buy nothing); GPU: fill the device."""
    return 32768 if device.type == "cuda" else 1024


def embed_pairs(lm: LoadedModel, pairs: Sequence[EncodedPair], *, batch_tokens: int | None = None,
                progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> Embeddings:
    """S+, S-, |y+|, |y-| and last-position states for every pair (row order = input order)."""
    prompts, responses = _plan(pairs)
    n, d = len(pairs), lm.model.config.get_text_config().hidden_size
    S = np.zeros((2 * n, d), np.float64)             # rows 2i (chosen) and 2i+1 (rejected)
    last = np.zeros((2 * n, d), np.float32)
    done = 0
    for k, H in _response_states(lm, prompts, responses, batch_tokens or default_batch_tokens(lm.device),
                                 should_stop):
        S[k] = H.sum(0).cpu().numpy()
        last[k] = H[-1].float().cpu().numpy()
        done += 1
        if progress:
            progress(done, len(responses))
    lengths = np.array([len(r.ids) + 1 for r in responses], np.int64)
    return Embeddings(S[0::2], S[1::2], lengths[0::2], lengths[1::2], last[0::2], last[1::2])


def token_states(lm: LoadedModel, pair: EncodedPair) -> tuple[np.ndarray, np.ndarray]:
    """h at each of the |y+| and |y-| positions of one pair: ((|y+|, d), (|y-|, d)) float64."""
    prompts, responses = _plan([pair])
    H = {k: h.cpu().numpy() for k, h in _response_states(lm, prompts, responses, 1 << 30, None)}
    return H[0], H[1]


def _plan(pairs: Sequence[EncodedPair]) -> tuple[list[tuple[int, ...]], list[_Response]]:
    """Unique prompts, and responses in pair order (2i chosen, 2i+1 rejected) pointing at them."""
    index: dict[tuple[int, ...], int] = {}
    responses = []
    for p in pairs:
        for x, y in ((p.prompt_plus, p.chosen), (p.prompt_minus, p.rejected)):
            responses.append(_Response(index.setdefault(x, len(index)), y))
    return list(index), responses


def _batches(lengths: Sequence[int], budget: int) -> Iterator[list[int]]:
    """Indices sorted by length, grouped so that count * longest <= budget (at least one each)."""
    batch: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if batch and (len(batch) + 1) * lengths[i] > budget:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _pad(seqs: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


@torch.inference_mode()
def _response_states(lm: LoadedModel, prompts: list[tuple[int, ...]], responses: list[_Response],
                     budget: int, should_stop) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (response index, H) with H = h at the |y| positions P-1..P+R-1, shape (R + 1, d)."""
    base, device = lm.base, lm.device
    acc = torch.float32 if device.type == "mps" else torch.float64
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    by_prompt: dict[int, list[int]] = {}
    for k, r in enumerate(responses):
        by_prompt.setdefault(r.prompt, []).append(k)
    # a prompt's cost: its own tokens plus its responses' tokens
    cost = [len(p) + sum(len(responses[k].ids) for k in by_prompt[j]) for j, p in enumerate(prompts)]
    for group in _prompt_groups(prompts, cost, budget):
        if should_stop and should_stop():
            raise Cancelled()
        ids, mask = _pad([prompts[j] for j in group], pad_id, device)              # (B, Pmax)
        cache = DynamicCache(config=lm.model.config)
        h = base(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True).last_hidden_state
        P = mask.sum(1)                                                            # (B,)
        h_prompt = h[torch.arange(len(group), device=device), P - 1].to(acc)       # (B, d) at P-1
        rows = [k for j in group for k in by_prompt[j]]
        row_of = {j: b for b, j in enumerate(group)}
        for sub in _batches([len(responses[k].ids) for k in rows], budget):
            ks = [rows[i] for i in sub]
            empty = [k for k in ks if not responses[k].ids]
            for k in empty:                                                         # |y| = 1
                yield k, h_prompt[row_of[responses[k].prompt]][None]
            ks = [k for k in ks if responses[k].ids]
            if not ks:
                continue
            b = torch.tensor([row_of[responses[k].prompt] for k in ks], device=device)  # (n,)
            y, y_mask = _pad([responses[k].ids for k in ks], pad_id, device)        # (n, Rmax)
            sub_cache = DynamicCache(config=lm.model.config, ddp_cache_data=[
                (layer.keys[b], layer.values[b]) for layer in cache.layers])
            positions = P[b][:, None] + torch.arange(y.shape[1], device=device)     # (n, Rmax)
            full_mask = torch.cat([mask[b], y_mask], dim=1)                         # (n, Pmax + Rmax)
            hy = base(input_ids=y, attention_mask=full_mask, position_ids=positions,
                      cache=sub_cache, use_cache=True).last_hidden_state  # (n, Rmax, d)
            for i, k in enumerate(ks):
                R = len(responses[k].ids)
                yield k, torch.cat([h_prompt[b[i]][None], hy[i, :R].to(acc)])       # (R + 1, d)


def _prompt_groups(prompts: list[tuple[int, ...]], cost: list[int], budget: int) -> Iterator[list[int]]:
    """Prompts sorted by length, grouped so that the padded prompt tokens plus their responses fit."""
    group: list[int] = []
    width = spent = 0
    for j in sorted(range(len(prompts)), key=lambda j: (len(prompts[j]), cost[j])):
        w = max(width, len(prompts[j]))
        if group and (len(group) + 1) * w + spent + cost[j] - len(prompts[j]) > budget:
            yield group
            group, width, spent = [], 0, 0
            w = len(prompts[j])
        group.append(j)
        width, spent = w, spent + cost[j] - len(prompts[j])
    if group:
        yield group
