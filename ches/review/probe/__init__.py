"""Likelihood-displacement probe: a few steps of DPO on a subset of a scored run, to check CHES's prediction.

CHES predicts which pairs make DPO lower the chosen response's likelihood. The probe trains the run's own
model on a subset of its pairs and measures, per pair, before and after training:

    log pi(y|x) = sum over k = 0..R of log softmax(z(x, y<k))[y_k],     y_R = EOS
                = log-probabilities read at positions P-1 .. P+R-1 of x+y (P prompt, R response tokens)

These are the |y| = R + 1 positions CHES sums hidden states over (docs/CHES.md). The ids are exactly the
ones CHES used (`ches.engine.tokens.encode_pair` at the run's max length). The EOS token is
`tokenizer.eos_token_id`: for ChatML models (SmolLM2, Qwen) that is `<|im_end|>`, the token the chat
template closes an assistant turn with; a model whose template closes turns with another token is still
scored with eos_token_id, as TRL's DPO trainer does.

Training, per step (TRL's "sigmoid" DPO loss, summed log-probs, reference = the model before training):

    L = mean over the step's pairs of  -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))

1. The reference log-probs are the "before" log-probs, computed once with the untrained policy:
   no second model copy is held.
2. Each step takes the next `batch_size` pairs of a seeded shuffle of the subset (reshuffled each epoch);
   the default number of steps is one epoch, as in the paper (Sec. 5: 512 pairs, batch 32, RMSprop,
   lr 1e-7, beta 0.1). Gradients are accumulated over micro-batches that fit a token budget.
3. Weights are trained in float32 (bf16 weights cannot hold a 1e-7 update); forward passes run under
   autocast to the run's dtype, so a bf16 run is probed in bf16 arithmetic like it was scored.
4. Dropout is off (eval mode), as in TRL's default `disable_dropout=True`.
5. Memory: the float32 policy, its gradients and the optimizer state (RMSprop: 12 bytes per parameter,
   Adam: 16) plus one micro-batch of activations and logits (`batch_tokens`); no reference model.

A probe is stored as `<run_dir>/probes/<key>/` (manifest.json with the settings and a summary,
results.parquet with one row per pair), written to a temporary folder and renamed into place: a folder
with a manifest is complete, an interrupted probe leaves nothing. The run's own files are never touched.

The package, by subject: `settings` (ProbeSettings, defaults, the subset of pairs), `dpo` (the loss,
log pi(y|x), the policy and the trainer), `storage` (the probe folder; the check folders' listing and the
export's citation of them), `analysis` (summary with |y+| and the change per token, the join with the run's
scores, band means, Spearman and partial Spearman, the band-versus-change points, the short-response
notice, the curation check's statistics and verdict), `check` (the curation check: one arm per rule and a
random arm, length-matched by default, over seeds, with an optional behaviour measure, stored in
`<run_dir>/checks/<key>/`), `behaviour` (greedy answers and the refusal judge), `run`
(`measure` trains and measures one subset; `run_probe` stores it as a probe). `run_probe` and `measure`
are also importable from here; torch is imported only when one of them is used.
"""
from __future__ import annotations

__all__ = ["measure", "run_probe"]


def __getattr__(name: str):
    """`run_probe` / `measure` from `ches.review.probe.run`, imported on first use (keeps `ches --help` light)."""
    if name in __all__:
        from ches.review.probe import run
        return getattr(run, name)
    raise AttributeError(f"module 'ches.review.probe' has no attribute {name!r}")
