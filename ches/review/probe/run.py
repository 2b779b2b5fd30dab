"""Train a copy of the run's model on a subset with DPO and measure log pi(y|x) before and after
(`measure`); store it as a probe (`run_probe`). The package docstring (`ches.review.probe`) states the
positions, the loss and the dtype rules."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from ches.version import __version__
from ches.engine.forward import Progress
from ches.engine.models import LoadedModel
from ches.engine.store import read_manifest, read_pairs, read_scores
from ches.engine.tokens import encode_pair
from ches.review.probe.analysis import summarize
from ches.review.probe.dpo import Trainer, check_model, load_policy, train_dtype
from ches.review.probe.settings import ProbeError, ProbeSettings, resolved_steps, select_rows
from ches.review.probe.storage import PROBE_VERSION, is_complete, probe_path, write_probe

CPU_BATCH_TOKENS, GPU_BATCH_TOKENS = 2048, 16384     # default micro-batch budget (tokens) per device type


def run_probe(run_dir: Path, s: ProbeSettings, lm: LoadedModel | None = None, *, device: str = "auto",
              batch_tokens: int | None = None, progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None) -> Path:
    """Train a copy of the run's model on the subset and store before/after log-probs; the probe folder.

    A stored probe with the same key is returned without training. `lm` (default: `load_policy`) is
    trained in place. `progress(done, total)` counts pair passes; `should_stop()` is polled between
    micro-batches and raises `ches.review.probe.dpo.ProbeCancelled`, leaving nothing behind.
    """
    run_dir = Path(run_dir)
    rows = select_rows(read_scores(run_dir), s)
    target = probe_path(run_dir, rows, s)
    if is_complete(target):
        return target
    started = time.perf_counter()
    results, info = measure(run_dir, rows, s, lm, device=device, batch_tokens=batch_tokens, progress=progress,
                            should_stop=should_stop)
    probe_manifest = {
        "key": target.name, "run": run_dir.name, "created_at": datetime.now(timezone.utc).isoformat(),
        "app_version": __version__, "probe_version": PROBE_VERSION, "settings": s.as_dict(),
        "pairs": len(rows), "describe": s.describe(), **info,
        "summary": summarize(results), "seconds": round(time.perf_counter() - started, 2),
    }
    return write_probe(target, probe_manifest, results)


def measure(run_dir: Path, rows: Sequence[int], s: ProbeSettings, lm: LoadedModel | None = None, *,
            device: str = "auto", batch_tokens: int | None = None, progress: Progress | None = None,
            should_stop: Callable[[], bool] | None = None) -> tuple[pd.DataFrame, dict]:
    """Train `lm` (default: a fresh `load_policy`) with DPO on `rows` of the run (settings `s`, in place) and
    return (results, info): results = one row per pair (`storage.RESULT_COLUMNS`; len_chosen = |y+|, the
    response's content tokens + EOS as trained), info = steps, model,
    device, autocast dtype, EOS id and the loss per step. Nothing is stored: `run_probe` and the curation
    check (`ches.review.probe.check`) store what they measure."""
    run_dir, rows = Path(run_dir), [int(r) for r in rows]
    manifest = read_manifest(run_dir)
    lm = lm or load_policy(run_dir, device=device)
    check_model(lm, manifest["key"])
    eos_id = lm.tokenizer.eos_token_id
    if eos_id is None:
        raise ProbeError("the tokenizer has no EOS token: log pi(y|x) needs one to close the response")
    pairs = {p.row: p for p in read_pairs(run_dir, rows)}
    max_length = int(manifest["key"]["max_length"])
    encoded = [encode_pair(lm.tokenizer, pairs[r], max_length) for r in rows]
    chosen = [(e.prompt_plus, e.chosen) for e in encoded]
    rejected = [(e.prompt_minus, e.rejected) for e in encoded]
    budget = batch_tokens or (CPU_BATCH_TOKENS if lm.device.type == "cpu" else GPU_BATCH_TOKENS)
    trainer = Trainer(lm, s, eos_id, train_dtype(manifest["key"]["dtype"]), budget, len(rows), progress, should_stop)
    before_c, before_r = trainer.evaluate(chosen, rejected)
    history = trainer.train(chosen, rejected, before_c, before_r)
    after_c, after_r = trainer.evaluate(chosen, rejected)
    results = pd.DataFrame({"row": rows, "pair_id": [pairs[r].pair_id for r in rows],
                            "len_chosen": [len(e.chosen) + 1 for e in encoded],          # |y+|: content + EOS
                            "logp_chosen_before": before_c, "logp_chosen_after": after_c,
                            "logp_rejected_before": before_r, "logp_rejected_after": after_r})
    info = {"steps": resolved_steps(len(rows), s), "model_id": lm.model_id, "fingerprint": lm.fingerprint,
            "device": str(lm.device), "autocast": manifest["key"]["dtype"], "eos_token_id": int(eos_id),
            "history": history}
    return results, info
