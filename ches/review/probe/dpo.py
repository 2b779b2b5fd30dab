"""The probe's DPO: the loss, log pi(y|x) of a batch, the policy to train, and the trainer that runs the steps.

    log pi(y|x) = sum over k = 0..R of log softmax(z(x, y<k))[y_k],     y_R = EOS
    L = mean over the step's pairs of  -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))

See the package docstring (`ches.review.probe`) for the positions, the reference and the dtype rules.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ches.engine.forward import Progress
from ches.engine.models import LoadedModel, load_model
from ches.engine.store import read_manifest
from ches.engine.tokens import template_id
from ches.review.probe.settings import OPTIMIZERS, ProbeError, ProbeSettings, resolved_steps

Sequence_ = tuple[Sequence[int], Sequence[int]]      # (prompt ids x, response ids y)


class ProbeCancelled(Exception):
    """`should_stop()` returned True between micro-batches; the probe stored nothing."""


def dpo_loss(pi_c: torch.Tensor, pi_r: torch.Tensor, ref_c: torch.Tensor, ref_r: torch.Tensor,
             beta: float) -> torch.Tensor:
    """TRL's sigmoid DPO loss per pair: -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))). (B,) -> (B,)."""
    return -F.logsigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))


def sequence_logps(model: torch.nn.Module, seqs: Sequence[Sequence_], *, eos_id: int, pad_id: int,
                   device: torch.device, amp: torch.dtype | None = None) -> torch.Tensor:
    """log pi(y|x) per (x, y): log-softmax summed at positions P-1 .. P+R-1 for targets y + [EOS]. -> (B,) float32.

    Only the logits of positions [min P - 1, max (P+R)) are computed (`logits_to_keep`): prompts cost no
    vocabulary projection. Sequences are right-padded; the attention mask hides the padding.
    """
    lengths = [len(x) + len(y) for x, y in seqs]
    if min(len(x) for x, _ in seqs) < 1:
        raise ProbeError("a pair has an empty prompt: log pi(y|x) needs at least one prompt token")
    lo, hi = min(len(x) for x, _ in seqs) - 1, max(lengths)
    ids = torch.full((len(seqs), hi), pad_id, dtype=torch.long)            # (B, T)
    mask = torch.zeros((len(seqs), hi), dtype=torch.long)                   # (B, T)
    targets = torch.full((len(seqs), hi - lo), -1, dtype=torch.long)        # (B, K): token read at position lo + j
    for i, (x, y) in enumerate(seqs):
        ids[i, : lengths[i]] = torch.tensor([*x, *y], dtype=torch.long)
        mask[i, : lengths[i]] = 1
        start = len(x) - 1 - lo
        targets[i, start: start + len(y) + 1] = torch.tensor([*y, eos_id], dtype=torch.long)
    ids, mask, targets = ids.to(device), mask.to(device), targets.to(device)
    keep = torch.arange(lo, hi, device=device)
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits   # (B, K, V)
    logits = logits.float()
    picked = logits.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)          # (B, K)
    token_logp = picked - torch.logsumexp(logits, dim=-1)                                # (B, K)
    return (token_logp * (targets >= 0)).sum(-1)                                         # (B,)


# -------------------------------------------------------------------------------------- the model

def train_dtype(run_dtype: str) -> torch.dtype | None:
    """The autocast dtype for a run's dtype name; None for float32 (no autocast)."""
    return {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(run_dtype, None)


def load_policy(run_dir: Path, *, device: str = "auto", trust_remote_code: bool = False) -> LoadedModel:
    """A fresh float32 copy of the run's model, to be trained; ProbeError unless its weights and template
    are the ones the run was scored with. Never pass a shared inference instance to `run_probe`."""
    key = read_manifest(run_dir)["key"]
    lm = load_model(key["model_id"], device=device, dtype="float32", trust_remote_code=trust_remote_code)
    check_model(lm, key)
    return lm


def check_model(lm: LoadedModel, key: dict) -> None:
    """ProbeError unless `lm` has the weights and the prompt template the run (manifest `key`) was scored with."""
    if lm.fingerprint != key["fingerprint"]:
        raise ProbeError(f"the weights of {key['model_id']!r} changed since the run was scored (fingerprint "
                         f"{lm.fingerprint}, run {key['fingerprint']}): re-score the dataset, then probe")
    if template_id(lm.tokenizer) != key["template"]:
        raise ProbeError(f"the chat template of {key['model_id']!r} changed since the run was scored: "
                         "re-score the dataset, then probe")


# ------------------------------------------------------------------------------------ the trainer

class Trainer:
    """The policy, its optimizer and the micro-batching shared by evaluation and training.

    `progress(done, total)` counts pair passes (before, every step, after); `should_stop()` is polled
    after each micro-batch and raises ProbeCancelled.
    """

    def __init__(self, lm: LoadedModel, s: ProbeSettings, eos_id: int, amp: torch.dtype | None,
                 batch_tokens: int, n: int, progress: Progress | None = None,
                 should_stop: Callable[[], bool] | None = None):
        self.lm, self.s, self.eos_id, self.amp, self.budget = lm, s, eos_id, amp, batch_tokens
        self.pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else eos_id
        self.batches = shuffled_batches(n, s.batch_size, resolved_steps(n, s), s.seed)
        self.total = 2 * n + sum(map(len, self.batches))             # pair passes: before, steps, after
        self.done, self.progress, self.should_stop = 0, progress, should_stop
        lm.model.eval()                                              # dropout off; gradients still flow
        self.scaler = torch.amp.GradScaler(lm.device.type, enabled=amp == torch.float16)

    def _logps(self, seqs: Sequence[Sequence_]) -> torch.Tensor:
        return sequence_logps(self.lm.model, seqs, eos_id=self.eos_id, pad_id=self.pad_id,
                              device=self.lm.device, amp=self.amp)

    def _micro_batches(self, idx: Sequence[int], chosen, rejected) -> list[list[int]]:
        """Pairs grouped so that 2 * count * longest sequence <= the token budget (at least one pair each)."""
        length = {i: max(len(chosen[i][0]) + len(chosen[i][1]), len(rejected[i][0]) + len(rejected[i][1])) + 1
                  for i in idx}
        groups: list[list[int]] = []
        for i in sorted(idx, key=length.get):
            if groups and 2 * (len(groups[-1]) + 1) * length[i] <= self.budget:
                groups[-1].append(i)
            else:
                groups.append([i])
        return groups

    def _tick(self, pairs: int) -> None:
        if self.should_stop and self.should_stop():
            raise ProbeCancelled()
        self.done += pairs
        if self.progress:
            self.progress(self.done, self.total)

    @torch.inference_mode()
    def evaluate(self, chosen, rejected) -> tuple[np.ndarray, np.ndarray]:
        """log pi(y+|x), log pi(y-|x) per pair under the current weights: (n,), (n,) float64."""
        out_c, out_r = np.zeros(len(chosen)), np.zeros(len(chosen))
        for group in self._micro_batches(range(len(chosen)), chosen, rejected):
            lp = self._logps([chosen[i] for i in group] + [rejected[i] for i in group]).double().cpu().numpy()
            out_c[group], out_r[group] = lp[: len(group)], lp[len(group):]
            self._tick(len(group))
        return out_c, out_r

    def train(self, chosen, rejected, ref_c: np.ndarray, ref_r: np.ndarray) -> list[dict]:
        """`steps` DPO updates; per step the mean loss and the mean chosen / rejected log-ratio (before it)."""
        s, dev = self.s, self.lm.device
        opt = getattr(torch.optim, OPTIMIZERS[s.optimizer])(self.lm.model.parameters(), lr=s.lr)
        ref_c_t, ref_r_t = torch.tensor(ref_c, device=dev), torch.tensor(ref_r, device=dev)
        history = []
        for step, batch in enumerate(self.batches, 1):
            opt.zero_grad(set_to_none=True)
            loss_sum = ratio_c = ratio_r = 0.0
            for group in self._micro_batches(batch, chosen, rejected):
                lp = self._logps([chosen[i] for i in group] + [rejected[i] for i in group])    # (2g,)
                pi_c, pi_r = lp[: len(group)].double(), lp[len(group):].double()               # (g,), (g,)
                g = torch.tensor(group, device=dev)
                losses = dpo_loss(pi_c, pi_r, ref_c_t[g], ref_r_t[g], s.beta)                   # (g,)
                self.scaler.scale(losses.sum() / len(batch)).backward()
                loss_sum += losses.sum().item()
                ratio_c += (pi_c - ref_c_t[g]).sum().item()
                ratio_r += (pi_r - ref_r_t[g]).sum().item()
                self._tick(len(group))
            self.scaler.step(opt)
            self.scaler.update()
            history.append({"step": step, "loss": loss_sum / len(batch), "chosen_logratio": ratio_c / len(batch),
                            "rejected_logratio": ratio_r / len(batch)})
        opt.zero_grad(set_to_none=True)
        return history


def shuffled_batches(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """`steps` batches: consecutive slices of a seeded permutation of range(n), a new permutation per epoch
    (an epoch's last slice may be shorter, like a DataLoader without drop_last)."""
    gen = torch.Generator().manual_seed(seed)
    batches: list[list[int]] = []
    while len(batches) < steps:
        perm = torch.randperm(n, generator=gen).tolist()
        batches += [perm[i:i + batch_size] for i in range(0, n, batch_size)]
    return batches[:steps]
