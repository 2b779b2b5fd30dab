"""The forward pass: per-response sums of last-layer hidden states, exactly per docs/CHES.md (Definitions).

For a response y with prompt x (P prompt tokens, R response tokens) we need h at positions
P-1 .. P+R-1 of x+y, i.e. |y| = R + 1 vectors (the last one predicts EOS, which is never fed).
The definition is one sequence at a time; the engine batches, and must give the same sums to float
rounding for every family. It takes one of two paths (`engine_path`), recorded in each run's manifest:

"tree" (the fast path, for the families in TREE_FAMILIES, verified in tests/test_engine_families.py):
1. Responses are grouped by their prompt ids. A prompt and all its responses form one segment
   x | y_1 | y_2 ... laid out flat; position ids restart after x for every branch (P .. P+R-1).
2. Segments are packed into rows, longest first; no padding inside a row.
3. Attention masks are built here from positions, per layer type the model declares:
       allowed(q, k) = same segment  and  (k in x  or  k in q's branch)  and  rule(pos q, pos k)
   where rule is transformers' own causal / sliding-window / chunked mask function. So y- sees x
   but never y+, and windows count real positions, never packed or padded offsets.
4. One forward per batch of rows, stopped at the LM head's input (`unembedding_input`: no logits);
   sums are taken on the device with one index_add per row, accumulated in float64 (float32 on MPS);
   one device-to-host copy per batch.

"padded" (exact for any causal LM, used for everything else: ALiBi families, flash / flex
attention, families nobody verified yet): every sequence x+y whole, sorted by length, right-padded,
no attention mask at all. Right padding cannot change a real token's state in a causal model: a
token never attends forward, and position ids are 0..T-1 as in one sequence alone.
"""
from __future__ import annotations

import bisect
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from transformers import masking_utils as mu

from ches.engine.models import LoadedModel
from ches.engine.tokens import EncodedPair

Progress = Callable[[int, int], None]   # (responses done, responses total)
log = logging.getLogger(__name__)

# Families whose tree path matches one-sequence-at-a-time sums, checked on tiny random configs.
# Value: how the model takes masks ("dict": one per layer type; "single": one 4-D mask for all layers).
TREE_FAMILIES = {
    "llama": "single", "mistral": "single", "mixtral": "single", "qwen2": "dict", "qwen2_moe": "dict",
    "qwen3": "dict", "qwen3_moe": "single", "gemma": "single", "gemma2": "dict", "gemma3_text": "dict",
    "phi3": "single", "phi": "single", "gpt2": "single", "gpt_neox": "single", "gptj": "single",
    "opt": "single", "falcon": "single", "starcoder2": "single", "olmo": "single", "olmo2": "single",
    "cohere": "single", "cohere2": "dict", "granite": "single", "stablelm": "single", "smollm3": "dict",
    "llama4_text": "dict", "ministral": "dict", "exaone4": "dict", "glm4": "single", "gpt_oss": "dict",
    "deepseek_v3": "single",
}
_ATTENTION_IMPLS = ("sdpa", "eager")


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
class _Segment:
    """A prompt and the responses that continue it; `slots` index the output rows (2i, 2i+1)."""
    prompt: tuple[int, ...]
    slots: tuple[int, ...]
    responses: tuple[tuple[int, ...], ...]

    def __len__(self) -> int:
        return len(self.prompt) + sum(map(len, self.responses))


@dataclass
class _Row:
    """A packed row's token layout (lists of equal length) and where each slot's positions are."""
    ids: list[int]
    pos: list[int]
    seg: list[int]           # segment number within the row
    branch: list[int]        # 0 = prompt, b >= 1 = the b-th response of the segment
    slots: list[tuple[int, list[int]]]   # (slot, token indices in the row: P-1, then the response)


def engine_path(lm: LoadedModel) -> str:
    """'tree' when this model's family and attention implementation are verified for it, else 'padded'."""
    cfg = lm.model.config.get_text_config()
    family = cfg.model_type
    if family not in TREE_FAMILIES or getattr(cfg, "_attn_implementation", None) not in _ATTENTION_IMPLS:
        return "padded"
    if getattr(cfg, "alibi", False):                 # falcon with ALiBi builds its bias from a 2-D mask
        return "padded"
    kinds = set(getattr(cfg, "layer_types", None) or ["full_attention"])
    return "tree" if kinds <= set(_RULES) else "padded"


def default_batch_tokens(device: torch.device) -> int:
    """CPU: 1024 tokens per forward (bigger buys nothing); GPU: fill the device."""
    return 65536 if device.type == "cuda" else 1024


def block_pairs(device: torch.device) -> int:
    """Pairs embedded together (one `embed_pairs` call): 8 on the CPU, 128 on a GPU. The pipeline cuts a
    run into blocks of this many consecutive pairs and chunks into whole blocks, so a pair's numbers depend
    on its block alone: packing and batch shapes change float rounding, chunk sizes and ranks must not."""
    return 128 if device.type == "cuda" else 8


def default_row_tokens(device: torch.device) -> int:
    """Longest packed row (a longer segment gets a row of its own). A row's attention is dense over it,
    so short rows waste less; on the CPU 256-token rows (four per forward) measured 1.2x 1024-token
    rows on short HH-RLHF pairs and the same on long UltraFeedback pairs (bench/NOTES.md)."""
    return 4096 if device.type == "cuda" else 256


def embed_pairs(lm: LoadedModel, pairs: Sequence[EncodedPair], *, batch_tokens: int | None = None,
                progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> Embeddings:
    """S+, S-, |y+|, |y-| and last-position states for every pair (row order = input order)."""
    n, d = len(pairs), lm.model.config.get_text_config().hidden_size
    S = np.zeros((2 * n, d), np.float64)             # rows 2i (chosen) and 2i+1 (rejected)
    last = np.zeros((2 * n, d), np.float32)
    done = 0
    for slots, sums, lasts in _batch_sums(lm, pairs, batch_tokens, should_stop):
        S[slots], last[slots] = sums, lasts
        done += len(slots)
        if progress:
            progress(done, 2 * n)
    lengths = np.array([[len(p.chosen) + 1, len(p.rejected) + 1] for p in pairs], np.int64).reshape(-1)
    return Embeddings(S[0::2], S[1::2], lengths[0::2], lengths[1::2], last[0::2], last[1::2])


def token_states(lm: LoadedModel, pair: EncodedPair) -> tuple[np.ndarray, np.ndarray]:
    """h at each of the |y+| and |y-| positions of one pair: ((|y+|, d), (|y-|, d)) float64."""
    H = {}
    for rows, h in _forward_batches(lm, [pair], 1 << 30, None):
        for b, row in enumerate(rows):
            for slot, where in row.slots:
                H[slot] = h[b, where].double().cpu().numpy()
    return H[0], H[1]


# ----------------------------------------------------------------------------------- batching

def _batch_sums(lm: LoadedModel, pairs: Sequence[EncodedPair], batch_tokens: int | None,
                should_stop) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """Per forward batch: the slots it finished, their sums (k, d) float64 and last states (k, d)."""
    acc = torch.float32 if lm.device.type == "mps" else torch.float64
    for rows, h in _forward_batches(lm, pairs, batch_tokens or default_batch_tokens(lm.device), should_stop):
        slots, sums, lasts = [], [], []
        for b, row in enumerate(rows):
            where = torch.tensor([i for _, w in row.slots for i in w], device=h.device)
            owner = torch.tensor([k for k, (_, w) in enumerate(row.slots) for _ in w], device=h.device)
            S = torch.zeros(len(row.slots), h.shape[-1], dtype=acc, device=h.device)
            sums.append(S.index_add_(0, owner, h[b, where].to(acc)))                  # (k, d)
            lasts.append(h[b, [w[-1] for _, w in row.slots]].float())                # (k, d)
            slots += [slot for slot, _ in row.slots]
        yield slots, torch.cat(sums).cpu().numpy(), torch.cat(lasts).cpu().numpy()


@torch.inference_mode()
def _forward_batches(lm: LoadedModel, pairs: Sequence[EncodedPair], batch_tokens: int,
                     should_stop) -> Iterator[tuple[list[_Row], torch.Tensor]]:
    """Yield (rows, h) per forward: h (B, T, d) = last hidden states of the padded batch of rows.

    Out of device memory, the batch budget (and the row length) are halved for the rest of the call
    and the failed batch is split and run again; only a single response that alone does not fit fails.
    """
    tree = engine_path(lm) == "tree"
    row_tokens = min(batch_tokens, default_row_tokens(lm.device)) if tree else 0
    queue = deque(_plan(_segments(pairs, tree), row_tokens, batch_tokens))
    while queue:
        if should_stop and should_stop():
            raise Cancelled()
        batch = queue.popleft()
        rows = [_layout(r) for r in batch]
        try:
            h = _forward(lm, rows, tree)
        except torch.OutOfMemoryError:
            h = None                                   # leave the except block first: its frame holds tensors
        if h is not None:
            yield rows, h
            continue
        segments = [s for r in batch for s in r]
        if len(segments) == 1 and len(segments[0].slots) == 1:
            raise MemoryError(f"a sequence of {len(segments[0])} tokens does not fit in device memory "
                              "on its own; score with a smaller --max-length") from None
        batch_tokens, row_tokens = max(1, batch_tokens // 2), row_tokens // 2
        log.warning("out of device memory: retrying with %d tokens per batch", batch_tokens)
        if lm.device.type == "cuda":
            torch.cuda.empty_cache()
        queue.extendleft(reversed(_plan(segments, row_tokens, batch_tokens, split=True)))


def _segments(pairs: Sequence[EncodedPair], share_prompts: bool) -> list[_Segment]:
    """Tree path: one segment per distinct prompt with all its responses; else one per response."""
    if not share_prompts:
        return [_Segment(x, (2 * i + s,), (y,)) for i, p in enumerate(pairs)
                for s, (x, y) in enumerate(((p.prompt_plus, p.chosen), (p.prompt_minus, p.rejected)))]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault(p.prompt_plus, []).append(2 * i)
        groups.setdefault(p.prompt_minus, []).append(2 * i + 1)
    response = lambda k: pairs[k // 2].chosen if k % 2 == 0 else pairs[k // 2].rejected  # noqa: E731
    return [_Segment(x, tuple(ks), tuple(response(k) for k in ks)) for x, ks in groups.items()]


def _plan(segments: list[_Segment], row_tokens: int, batch_tokens: int,
          split: bool = False) -> list[list[list[_Segment]]]:
    """Batches of rows of segments. A segment longer than a row is cut into segments that repeat
    its prompt (always when `split`, else only when it has many responses)."""
    cut = [part for s in segments for part in _cut(s, row_tokens, split)]
    rows = _pack(cut, row_tokens)
    return [[rows[i] for i in b] for b in _batches([sum(map(len, r)) for r in rows], batch_tokens)]


def _cut(s: _Segment, row_tokens: int, always: bool) -> list[_Segment]:
    if len(s) <= row_tokens or len(s.slots) == 1 or (len(s.slots) == 2 and not always):
        return [s]
    parts, slots, responses = [], [], []
    for k, y in zip(s.slots, s.responses):
        if slots and len(s.prompt) + sum(map(len, responses)) + len(y) > row_tokens:
            parts.append(_Segment(s.prompt, tuple(slots), tuple(responses)))
            slots, responses = [], []
        slots.append(k)
        responses.append(y)
    return parts + [_Segment(s.prompt, tuple(slots), tuple(responses))]


def _pack(segments: list[_Segment], row_tokens: int) -> list[list[_Segment]]:
    """Best-fit-decreasing into rows of at most row_tokens tokens (0: one segment per row)."""
    rows: list[list[_Segment]] = []
    free: list[tuple[int, int]] = []                 # (room left, row), sorted
    for s in sorted(segments, key=len, reverse=True):
        i = bisect.bisect_left(free, (len(s), -1))
        if i < len(free):
            room, r = free.pop(i)
            rows[r].append(s)
        else:
            room, r = row_tokens, len(rows)
            rows.append([s])
        if room - len(s) > 0:
            bisect.insort(free, (room - len(s), r))
    return rows


def _layout(segments: list[_Segment]) -> _Row:
    row = _Row([], [], [], [], [])
    for n, s in enumerate(segments):
        P = len(s.prompt)
        if P == 0:
            raise ValueError("an empty prompt has no position P-1 to predict the first response token")
        row.ids += s.prompt
        row.pos += range(P)
        row.seg += [n] * P
        row.branch += [0] * P
        last_prompt = len(row.ids) - 1
        for b, (slot, y) in enumerate(zip(s.slots, s.responses), 1):
            start = len(row.ids)
            row.ids += y
            row.pos += range(P, P + len(y))
            row.seg += [n] * len(y)
            row.branch += [b] * len(y)
            row.slots.append((slot, [last_prompt, *range(start, start + len(y))]))
    return row


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


# ------------------------------------------------------------------------------------ forward

def _forward(lm: LoadedModel, rows: list[_Row], tree: bool) -> torch.Tensor:
    """Last hidden states (B, T, d) of right-padded rows; tree rows get their per-layer-type masks."""
    T, device = max(len(r.ids) for r in rows), lm.device
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    col = lambda name, fill: torch.tensor([getattr(r, name) + [fill] * (T - len(r.ids)) for r in rows])  # noqa: E731
    ids = col("ids", pad_id).to(device)                                           # (B, T)
    if not tree:                                   # whole sequences: the model's own causal mask
        return unembedding_input(lm.model, input_ids=ids)
    cfg = lm.model.config.get_text_config()
    pos = col("pos", 0).to(device)                                               # (B, T)
    masks = _tree_masks(cfg, pos, col("seg", -1).to(device), col("branch", 0).to(device), lm.dtype)
    mask = masks if TREE_FAMILIES[cfg.model_type] == "dict" else next(iter(masks.values()))
    return unembedding_input(lm.model, input_ids=ids, position_ids=pos, attention_mask=mask)


class _Stop(Exception):
    """Raised by the LM head's pre-hook: the logits are never computed."""


_capture = threading.local()


def unembedding_input(model: torch.nn.Module, **inputs) -> torch.Tensor:
    """h (B, T, d): what the LM head multiplies (docs/CHES.md: the last hidden state after the final norm).

    Taken by a pre-hook on `get_output_embeddings()`, which stops the forward there: any family, any
    wrapper (multimodal, scaled hidden states), and no (B, T, vocab) logits. The hook is installed once
    per model and acts only inside this call, on this thread.
    """
    head = model.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(model).__name__} has no output embeddings (LM head) to read h from")
    if not getattr(head, "_ches_hook", False):
        head.register_forward_pre_hook(_grab)
        head._ches_hook = True
    _capture.active, _capture.h = True, None
    try:
        model(**inputs, use_cache=False)
    except _Stop:
        pass
    finally:
        _capture.active = False
    if _capture.h is None:
        raise RuntimeError(f"{type(model).__name__} returned without calling its LM head")
    return _capture.h


def _grab(module, args):
    if getattr(_capture, "active", False):
        _capture.h = args[0]
        raise _Stop()


def _sliding(cfg):
    return mu.sliding_window_causal_mask_function(cfg.sliding_window)


def _chunked(cfg):
    return mu.chunked_causal_mask_function(cfg.attention_chunk_size, torch.zeros(1, dtype=torch.long))


# transformers' own mask rules, evaluated on real positions instead of row offsets
_RULES: dict[str, Callable] = {"full_attention": lambda cfg: mu.causal_mask_function,
                               "sliding_attention": _sliding, "chunked_attention": _chunked}


def _tree_masks(cfg, pos: torch.Tensor, seg: torch.Tensor, branch: torch.Tensor,
                dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """{layer type: (B, 1, T, T) additive mask}: 0 where allowed, dtype's min elsewhere.

    Additive rather than bool so that sdpa does not convert it again in every layer; eager takes the
    same. Padding attends to itself only, so no query row is empty (an empty row would give NaN).
    """
    kinds = list(dict.fromkeys(getattr(cfg, "layer_types", None) or [_single_kind(cfg)]))
    q, k = (slice(None), slice(None), None), (slice(None), None, slice(None))
    tree = (seg[q] == seg[k]) & (seg[q] >= 0) & ((branch[k] == 0) | (branch[k] == branch[q]))   # (B, T, T)
    pad_self = (seg[q] < 0) & torch.eye(pos.shape[1], dtype=torch.bool, device=pos.device)
    masks = {}
    for kind in kinds:
        allowed = tree & _RULES[kind](cfg)(0, 0, pos[q], pos[k]) | pad_self                    # (B, T, T)
        masks[kind] = torch.zeros(allowed.shape, dtype=dtype, device=pos.device).masked_fill_(
            ~allowed, torch.finfo(dtype).min)[:, None]                                         # (B, 1, T, T)
    return masks


def _single_kind(cfg) -> str:
    """The one mask a model without layer_types uses for every layer."""
    if getattr(cfg, "attention_chunk_size", None):
        return "chunked_attention"
    if getattr(cfg, "sliding_window", None) is not None and getattr(cfg, "use_sliding_window", True):
        return "sliding_attention"
    return "full_attention"
