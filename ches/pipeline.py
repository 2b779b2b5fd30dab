"""Score a dataset end to end: tokenize, embed, score, write a run directory (or reuse one).

    from ches.data import load_dataset
    from ches.models import load_model
    from ches.pipeline import score_dataset
    run_dir = score_dataset(load_dataset("data/sample.jsonl"), load_model(), runs_root="workspace/runs")

Under `torchrun --nproc-per-node N python -m ches score ...` every rank embeds its own slice of the
pairs (i::N), rank 0 gathers the slices and writes the run; the numbers do not depend on N.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from . import __version__, scores
from .data import Dataset, Pair, RowError
from .embed import Embeddings, Progress, embed_pairs, token_states
from .models import LoadedModel
from .store import RunKey, is_complete, run_path, write_run
from .tokens import EncodedPair, encode_pair, template_id

DEFAULT_MAX_LENGTH = 2048
SCORE_COLUMNS = ["row", "pair_id", "ln_ches", "ches", "edit_sim", "last_hidden_ip",
                 "len_chosen", "len_rejected", "truncated", "flags"]


def run_key(dataset: Dataset, lm: LoadedModel, max_length: int) -> RunKey:
    return RunKey(dataset.content_hash, lm.model_id, lm.fingerprint, template_id(lm.tokenizer),
                  int(max_length), str(lm.dtype).removeprefix("torch."))


def score_dataset(dataset: Dataset, lm: LoadedModel, *, runs_root: str | Path,
                  max_length: int = DEFAULT_MAX_LENGTH, batch_tokens: int | None = None,
                  progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> Path:
    """Run directory holding every metric for every pair; an existing run with the same key is reused."""
    if not dataset.pairs:
        raise ValueError("the dataset has no usable pairs to score")
    key = run_key(dataset, lm, max_length)
    run_dir = run_path(Path(runs_root), key)
    if is_complete(run_dir):
        return run_dir
    started = time.perf_counter()
    pairs, encoded, errors = _encode_all(lm, dataset, max_length)
    if not pairs:
        raise ValueError("no pair could be tokenized: " + "; ".join(map(str, errors[:3])))
    emb = _embed_sharded(lm, encoded, batch_tokens, progress, should_stop)
    if emb is None:                        # a non-zero rank under torchrun: rank 0 writes
        return run_dir
    seconds = time.perf_counter() - started
    pairs = [replace(p, flags=p.flags + ("truncated",)) if e.truncated else p for p, e in zip(pairs, encoded)]
    table = scores_frame(pairs, encoded, emb)
    n_tokens = sum(len(e.prompt_plus) + len(e.chosen) + len(e.prompt_minus) + len(e.rejected) for e in encoded)
    manifest = {
        "key": key.__dict__, "run": run_dir.name, "created_at": datetime.now(timezone.utc).isoformat(),
        "app_version": __version__, "source": dataset.source, "format": dataset.format,
        "pairs": len(pairs), "rows_skipped": [{"row": e.row, "reason": e.reason} for e in errors],
        "flag_counts": table["flags"].str.split(",").explode().value_counts().drop("", errors="ignore").to_dict(),
        "device": str(lm.device), "seconds": round(seconds, 2), "tokens": n_tokens,
        "hidden_size": int(emb.S_plus.shape[1]),
    }
    arrays = {"S_plus": emb.S_plus, "S_minus": emb.S_minus, "last_plus": emb.last_plus, "last_minus": emb.last_minus}
    return write_run(run_dir, manifest=manifest, scores=table, pairs=pairs, arrays=arrays)


def _encode_all(lm: LoadedModel, dataset: Dataset, max_length: int):
    """Token ids per pair; a pair the tokenizer or chat template rejects becomes a RowError."""
    pairs, encoded, errors = [], [], list(dataset.errors)
    for p in dataset.pairs:
        try:
            encoded.append(encode_pair(lm.tokenizer, p, max_length))
            pairs.append(p)
        except Exception as e:  # noqa: BLE001 - templates raise anything (jinja errors, ValueError, ...)
            errors.append(RowError(p.row, f"the model's prompt template rejected this pair: {e}"))
    return pairs, encoded, sorted(errors, key=lambda e: e.row)


def scores_frame(pairs: list[Pair], encoded: list[EncodedPair], emb: Embeddings) -> pd.DataFrame:
    """The scores table (SCORE_COLUMNS), one row per pair in dataset order."""
    metrics = scores.score_table(emb, [e.chosen for e in encoded], [e.rejected for e in encoded])
    return pd.DataFrame({
        "row": [p.row for p in pairs], "pair_id": [p.pair_id for p in pairs], **metrics,
        "len_chosen": emb.len_plus, "len_rejected": emb.len_minus,
        "truncated": [e.truncated for e in encoded], "flags": [",".join(p.flags) for p in pairs],
    })[SCORE_COLUMNS]


def pair_tokens(lm: LoadedModel, pair: Pair, max_length: int, metric: str = "ln_ches") -> dict:
    """One pair's token view: tokens, per-token contributions (they sum to the score), alignments."""
    enc = encode_pair(lm.tokenizer, pair, max_length)
    H_plus, H_minus = token_states(lm, enc)
    contrib = scores.token_contributions(H_plus, H_minus, metric)
    # position k predicts token k of the response; the last position predicts EOS
    label = lambda ids: [lm.tokenizer.decode([t]) for t in ids] + ["⟨eos⟩"]  # noqa: E731
    return {
        "chosen_ids": list(enc.chosen), "rejected_ids": list(enc.rejected),
        "chosen_tokens": label(enc.chosen), "rejected_tokens": label(enc.rejected),
        "contributions": contrib, "score": float(contrib.sum()),
        "rejected_alignment": scores.rejected_alignment(H_plus, H_minus),
        "truncated": enc.truncated,
    }


def _embed_sharded(lm, encoded, batch_tokens, progress, should_stop) -> Embeddings | None:
    """All pairs on one process; under torchrun each rank takes i::world and rank 0 gathers."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return embed_pairs(lm, encoded, batch_tokens=batch_tokens, progress=progress, should_stop=should_stop)
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")               # only gathers small numpy results
    rank = dist.get_rank()
    mine = embed_pairs(lm, encoded[rank::world], batch_tokens=batch_tokens,
                       progress=progress if rank == 0 else None, should_stop=should_stop)
    parts: list = [None] * world
    dist.all_gather_object(parts, mine.__dict__)      # plain numpy arrays, no pickle files on disk
    if rank != 0:
        return None
    n = len(encoded)
    merged = {}
    for name in mine.__dict__:
        first = parts[0][name]
        out = np.zeros((n,) + first.shape[1:], first.dtype)
        for r, part in enumerate(parts):
            out[r::world] = part[name]
        merged[name] = out
    return Embeddings(**merged)

