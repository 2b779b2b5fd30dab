"""Likelihood-displacement probe: a few steps of DPO on a subset of a scored run, to check CHES's prediction.

CHES predicts which pairs make DPO lower the chosen response's likelihood. The probe trains the run's own
model on a subset of its pairs and measures, per pair, before and after training:

    log pi(y|x) = sum over k = 0..R of log softmax(z(x, y<k))[y_k],     y_R = EOS
                = log-probabilities read at positions P-1 .. P+R-1 of x+y (P prompt, R response tokens)

These are the |y| = R + 1 positions CHES sums hidden states over (CHES_SPEC.md). The ids are exactly the
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
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ches import __version__
from ches.review.browse import percentiles
from ches.engine.forward import Cancelled, Progress
from ches.engine.models import DEFAULT_MODEL, LoadedModel, load_model
from ches.engine.metrics import METRICS
from ches.engine.store import read_manifest, read_pairs, read_scores
from ches.engine.tokens import encode_pair, template_id

PROBE_VERSION = 1                 # bump when the same settings would give different numbers
SUBSETS = ("top", "bottom", "band", "ids")
OPTIMIZERS = {"rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
RESULT_COLUMNS = ["row", "pair_id", "logp_chosen_before", "logp_chosen_after",
                  "logp_rejected_before", "logp_rejected_after"]
# The paper's settings (Sec. 5), used for every model but the bundled one.
PAPER = {"n": 512, "batch_size": 32, "lr": 1e-7, "beta": 0.1}
# SmolLM2-135M on 2 CPU cores: what bench/displacement_bench.py needed to show the effect (see README).
BUNDLED = {"n": 16, "batch_size": 4, "lr": 1e-6, "beta": 0.1}


class ProbeError(ValueError):
    """Settings or a run the probe cannot use; the message says what to change."""


def defaults(model_id: str) -> dict:
    """Default n, batch_size, lr, beta for a run's model: the paper's, except for the bundled model."""
    return dict(BUNDLED if model_id == DEFAULT_MODEL else PAPER)


@dataclass(frozen=True)
class ProbeSettings:
    subset: str = "top"                      # top | bottom | band | ids
    n: int = 32                              # pairs (top, bottom, band); ids uses every listed row
    metric: str = "ches"                     # ranks top / bottom / band (the paper's Sec. 5 uses raw CHES)
    band: tuple[float, float] | None = None  # percentile band [lo, hi] of `metric` (subset "band")
    ids: tuple[int, ...] = ()                # source rows (subset "ids")
    steps: int | None = None                 # optimizer steps; None = one epoch = ceil(n / batch_size)
    batch_size: int = 32                     # pairs per step
    lr: float = 1e-7
    beta: float = 0.1                        # DPO's KL coefficient
    optimizer: str = "rmsprop"
    seed: int = 0                            # shuffle of the subset across steps

    def __post_init__(self) -> None:
        if self.subset not in SUBSETS:
            raise ProbeError(f"unknown subset {self.subset!r}; choose one of {', '.join(SUBSETS)}")
        if self.metric not in METRICS:
            raise ProbeError(f"unknown metric {self.metric!r}; choose one of {', '.join(METRICS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ProbeError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.subset != "ids" and self.n < 1:
            raise ProbeError(f"n must be at least 1 (got {self.n})")
        if self.subset == "ids" and not self.ids:
            raise ProbeError("subset 'ids' needs at least one row")
        if self.subset == "band":
            if self.band is None or len(self.band) != 2:
                raise ProbeError("subset 'band' needs a percentile band LO HI")
            lo, hi = self.band
            if not 0 <= lo <= hi <= 100:
                raise ProbeError(f"the band must satisfy 0 <= LO <= HI <= 100 (got {lo:g} {hi:g})")
        if self.steps is not None and self.steps < 1:
            raise ProbeError(f"steps must be at least 1 (got {self.steps})")
        if self.batch_size < 1:
            raise ProbeError(f"batch size must be at least 1 (got {self.batch_size})")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ProbeError(f"the learning rate must be a positive number (got {self.lr:g})")
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise ProbeError(f"beta must be a positive number (got {self.beta:g})")

    def describe(self) -> str:
        """One line: which pairs and how they were trained."""
        if self.subset == "band":
            which = f"{self.n} pairs in {self.metric} percentiles {self.band[0]:g}-{self.band[1]:g}"
        elif self.subset == "ids":
            which = f"{len(self.ids)} listed rows"
        else:
            which = f"{self.subset} {self.n} by {self.metric}"
        train = "one epoch" if self.steps is None else f"{self.steps} step(s)"
        return (f"{which}; {train} of batch {self.batch_size}, {self.optimizer} lr {self.lr:g}, "
                f"beta {self.beta:g}, seed {self.seed}")


# --------------------------------------------------------------------------------------- the subset

def quantile_slice(table: pd.DataFrame, metric: str, q: float, n: int) -> list[int]:
    """The n pairs centred on percentile q of `metric` (the CHES authors' `__quantile_slice`):
    sort ascending (ties by row), centre = round(q/100 * (N-1)), window [centre - n//2, +n) shifted inside."""
    order = table.sort_values([metric, "row"])["row"].to_numpy()
    centre = int(round(q / 100 * (len(order) - 1)))
    start = max(0, min(centre - n // 2, len(order) - n))
    return [int(r) for r in order[start:start + n]]


def select_rows(table: pd.DataFrame, s: ProbeSettings) -> list[int]:
    """Source rows of the subset, in ascending order of `s.metric` (ids: as listed); ProbeError if impossible."""
    if s.subset == "ids":
        known = set(table["row"].tolist())
        missing = [r for r in s.ids if r not in known]
        if missing:
            raise ProbeError(f"{len(missing)} listed row(s) are not in this run: "
                             f"{', '.join(map(str, missing[:10]))}{' ...' if len(missing) > 10 else ''}")
        return list(dict.fromkeys(int(r) for r in s.ids))
    if s.n > len(table):
        raise ProbeError(f"n = {s.n} is larger than the run ({len(table)} pairs)")
    if s.subset == "top":
        return quantile_slice(table, s.metric, 100, s.n)
    if s.subset == "bottom":
        return quantile_slice(table, s.metric, 0, s.n)
    lo, hi = s.band
    inside = table[percentiles(table[s.metric]).between(lo, hi)]
    if len(inside) < s.n:
        raise ProbeError(f"n = {s.n} is larger than the percentile band {lo:g}-{hi:g} of {s.metric} "
                         f"({len(inside)} pairs): widen the band or lower n")
    return quantile_slice(inside, s.metric, 50, s.n)


def read_ids(path: str | Path) -> tuple[int, ...]:
    """Source rows from a file: whitespace- or comma-separated integers (blank lines and # comments ignored)."""
    rows = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        for token in line.split("#", 1)[0].replace(",", " ").split():
            try:
                rows.append(int(token))
            except ValueError:
                raise ProbeError(f"{path}, line {i}: {token!r} is not a row number") from None
    if not rows:
        raise ProbeError(f"{path} lists no row numbers")
    return tuple(rows)


# -------------------------------------------------------------------------------------- the math

def dpo_loss(pi_c: torch.Tensor, pi_r: torch.Tensor, ref_c: torch.Tensor, ref_r: torch.Tensor,
             beta: float) -> torch.Tensor:
    """TRL's sigmoid DPO loss per pair: -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))). (B,) -> (B,)."""
    return -F.logsigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))


Sequence_ = tuple[Sequence[int], Sequence[int]]      # (prompt ids x, response ids y)


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
    _check_model(lm, key)
    return lm


def _check_model(lm: LoadedModel, key: dict) -> None:
    """ProbeError unless `lm` has the weights and the prompt template the run was scored with."""
    if lm.fingerprint != key["fingerprint"]:
        raise ProbeError(f"the weights of {key['model_id']!r} changed since the run was scored (fingerprint "
                         f"{lm.fingerprint}, run {key['fingerprint']}): re-score the dataset, then probe")
    if template_id(lm.tokenizer) != key["template"]:
        raise ProbeError(f"the chat template of {key['model_id']!r} changed since the run was scored: "
                         "re-score the dataset, then probe")


# -------------------------------------------------------------------------------------- the probe

def probe_key(run_dir: Path, rows: Sequence[int], s: ProbeSettings) -> str:
    """16 hex chars over what determines the numbers: run, rows, training settings, autocast dtype, version."""
    run_key = read_manifest(run_dir)["key"]
    canon = json.dumps({"run": run_key, "rows": [int(r) for r in rows], "steps": resolved_steps(len(rows), s),
                        "batch_size": s.batch_size, "lr": s.lr, "beta": s.beta, "optimizer": s.optimizer,
                        "seed": s.seed, "version": PROBE_VERSION}, sort_keys=True)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def resolved_steps(n: int, s: ProbeSettings) -> int:
    return s.steps if s.steps is not None else math.ceil(n / s.batch_size)


def probes_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "probes"


def find_probe(run_dir: Path, s: ProbeSettings) -> Path | None:
    """The stored probe for these settings, if one is complete."""
    rows = select_rows(read_scores(run_dir), s)
    path = probes_dir(run_dir) / probe_key(run_dir, rows, s)
    return path if (path / "manifest.json").is_file() else None


def run_probe(run_dir: Path, s: ProbeSettings, lm: LoadedModel | None = None, *, device: str = "auto",
              batch_tokens: int | None = None, progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None) -> Path:
    """Train a copy of the run's model on the subset and store before/after log-probs; the probe folder.

    A stored probe with the same key is returned without training. `lm` (default: `load_policy`) is
    trained in place. `progress(done, total)` counts pair passes; `should_stop()` is polled between
    micro-batches and raises `Cancelled`, leaving nothing behind.
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    rows = select_rows(read_scores(run_dir), s)
    target = probes_dir(run_dir) / probe_key(run_dir, rows, s)
    if (target / "manifest.json").is_file():
        return target
    started = time.perf_counter()
    lm = lm or load_policy(run_dir, device=device)
    _check_model(lm, manifest["key"])
    eos_id = lm.tokenizer.eos_token_id
    if eos_id is None:
        raise ProbeError("the tokenizer has no EOS token: log pi(y|x) needs one to close the response")
    pairs = {p.row: p for p in read_pairs(run_dir, rows)}
    max_length = int(manifest["key"]["max_length"])
    encoded = [encode_pair(lm.tokenizer, pairs[r], max_length) for r in rows]
    chosen = [(e.prompt_plus, e.chosen) for e in encoded]
    rejected = [(e.prompt_minus, e.rejected) for e in encoded]
    trainer = _Trainer(lm, s, eos_id, train_dtype(manifest["key"]["dtype"]),
                       batch_tokens or (2048 if lm.device.type == "cpu" else 16384),
                       len(rows), progress, should_stop)
    before_c, before_r = trainer.evaluate(chosen, rejected)
    history = trainer.train(chosen, rejected, before_c, before_r)
    after_c, after_r = trainer.evaluate(chosen, rejected)
    results = pd.DataFrame({"row": rows, "pair_id": [pairs[r].pair_id for r in rows],
                            "logp_chosen_before": before_c, "logp_chosen_after": after_c,
                            "logp_rejected_before": before_r, "logp_rejected_after": after_r})[RESULT_COLUMNS]
    probe_manifest = {
        "key": target.name, "run": run_dir.name, "created_at": datetime.now(timezone.utc).isoformat(),
        "app_version": __version__, "probe_version": PROBE_VERSION, "settings": _settings_dict(s),
        "steps": resolved_steps(len(rows), s), "pairs": len(rows), "describe": s.describe(),
        "model_id": lm.model_id, "fingerprint": lm.fingerprint, "device": str(lm.device),
        "autocast": manifest["key"]["dtype"], "eos_token_id": int(eos_id),
        "history": history, "summary": summarize(results), "seconds": round(time.perf_counter() - started, 2),
    }
    return _write_probe(target, probe_manifest, results)


def _settings_dict(s: ProbeSettings) -> dict:
    d = asdict(s)
    d["band"] = list(s.band) if s.band is not None else None
    d["ids"] = list(s.ids)
    return d


class _Trainer:
    """The policy, its optimizer and the micro-batching shared by evaluation and training."""

    def __init__(self, lm: LoadedModel, s: ProbeSettings, eos_id: int, amp: torch.dtype | None,
                 batch_tokens: int, n: int, progress: Progress | None, should_stop: Callable[[], bool] | None):
        self.lm, self.s, self.eos_id, self.amp, self.budget = lm, s, eos_id, amp, batch_tokens
        self.pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else eos_id
        self.batches = _shuffled_batches(n, s.batch_size, resolved_steps(n, s), s.seed)
        self.total = 2 * n + sum(map(len, self.batches))             # pair passes: before, steps, after
        self.done, self.progress, self.should_stop = 0, progress, should_stop
        lm.model.eval()                                              # dropout off; gradients still flow
        self.scaler = torch.amp.GradScaler(lm.device.type, enabled=amp == torch.float16)

    def _logps(self, seqs) -> torch.Tensor:
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
            raise Cancelled()
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
        opt = OPTIMIZERS[s.optimizer](self.lm.model.parameters(), lr=s.lr)
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


def _shuffled_batches(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """`steps` batches: consecutive slices of a seeded permutation of range(n), a new permutation per epoch
    (an epoch's last slice may be shorter, like a DataLoader without drop_last)."""
    gen = torch.Generator().manual_seed(seed)
    batches: list[list[int]] = []
    while len(batches) < steps:
        perm = torch.randperm(n, generator=gen).tolist()
        batches += [perm[i:i + batch_size] for i in range(0, n, batch_size)]
    return batches[:steps]


def _write_probe(target: Path, manifest: dict, results: pd.DataFrame) -> Path:
    """Write into `.<key>.tmp-<pid>` beside the target and rename it into place; nothing is left on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        results.to_parquet(tmp / "results.parquet", index=False)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        if target.exists():                   # a concurrent probe with the same key finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# ------------------------------------------------------------------------------------ reading back

def summarize(results: pd.DataFrame) -> dict:
    """Mean changes of log pi(y+|x) and log pi(y-|x), and how many pairs lost chosen likelihood."""
    d_c = results["logp_chosen_after"] - results["logp_chosen_before"]
    d_r = results["logp_rejected_after"] - results["logp_rejected_before"]
    return {"pairs": int(len(results)), "mean_delta_chosen": float(d_c.mean()),
            "mean_delta_rejected": float(d_r.mean()), "lost_chosen": int((d_c < 0).sum()),
            "mean_delta_margin": float((d_c - d_r).mean())}


def read_probe(probe_dir: Path) -> tuple[dict, pd.DataFrame]:
    """(manifest, results) of a stored probe."""
    probe_dir = Path(probe_dir)
    return json.loads((probe_dir / "manifest.json").read_text()), pd.read_parquet(probe_dir / "results.parquet")


def list_probes(run_dir: Path) -> list[tuple[Path, dict]]:
    """Complete probes of a run, newest first; unreadable or half-written folders are skipped."""
    root = probes_dir(run_dir)
    found = []
    if root.is_dir():
        for d in root.iterdir():
            try:
                if not d.name.startswith(".") and (d / "manifest.json").is_file():
                    found.append((d, json.loads((d / "manifest.json").read_text())))
            except (OSError, ValueError):
                continue
    return sorted(found, key=lambda p: p[1].get("created_at", ""), reverse=True)


def probe_table(run_dir: Path, results: pd.DataFrame) -> pd.DataFrame:
    """The probe's pairs joined with the run's scores: deltas and each metric's percentile over the whole run.

    Adds delta_chosen = after - before of log pi(y+|x), delta_rejected likewise, and `<metric>_pct`.
    """
    scores = read_scores(run_dir)
    for m in METRICS:
        scores[f"{m}_pct"] = percentiles(scores[m])
    t = results.merge(scores.drop(columns=["pair_id"]), on="row", how="left")
    t["delta_chosen"] = t["logp_chosen_after"] - t["logp_chosen_before"]
    t["delta_rejected"] = t["logp_rejected_after"] - t["logp_rejected_before"]
    return t


def band_means(table: pd.DataFrame, metric: str, edges: Sequence[float] = (0, 20, 40, 60, 80, 100)) -> pd.DataFrame:
    """Mean delta_chosen / delta_rejected and pair count per percentile band of `metric` (probe_table input)."""
    labels = [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:])]
    band = pd.cut(table[f"{metric}_pct"], list(edges), labels=labels, include_lowest=True)
    g = table.groupby(band, observed=True)
    return pd.DataFrame({"pairs": g.size(), "mean_delta_chosen": g["delta_chosen"].mean(),
                         "mean_delta_rejected": g["delta_rejected"].mean()}).reset_index(names="band")


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant or n < 2."""
    ra, rb = pd.Series(a, dtype=float).rank(), pd.Series(b, dtype=float).rank()
    if len(ra) < 2 or ra.nunique() < 2 or rb.nunique() < 2:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])
