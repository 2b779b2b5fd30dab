"""What a probe trains on and how: ProbeSettings, the per-model defaults, and the subset of pairs it selects."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from ches.engine.metrics import METRICS
from ches.engine.models import DEFAULT_MODEL
from ches.review.browse import percentiles

SUBSETS = ("top", "bottom", "band", "ids")
OPTIMIZERS = {"rmsprop": "RMSprop", "adam": "Adam", "sgd": "SGD"}        # name -> the torch.optim class
# The paper's settings (Sec. 5), used for every model but the bundled one.
PAPER = {"n": 512, "batch_size": 32, "lr": 1e-7, "beta": 0.1}
# SmolLM2-135M on 2 CPU cores: what bench/displacement_bench.py needed to show the effect (see README).
BUNDLED = {"n": 16, "batch_size": 4, "lr": 1e-6, "beta": 0.1}
MIN_PAIRS = 3            # a rank correlation over fewer pairs means nothing (2 pairs: always +-1)


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
        pairs = self.pairs
        what = f"{pairs} listed row(s)" if self.subset == "ids" else f"n = {pairs}"
        if pairs < MIN_PAIRS:
            raise ProbeError(f"{what} is too few: a probe needs at least {MIN_PAIRS} pairs for its correlations "
                             "to mean anything")
        if pairs < self.batch_size:
            raise ProbeError(f"{what} is below the batch size {self.batch_size}: one step would not even fill a "
                             "batch; lower the batch size or take more pairs")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ProbeError(f"the learning rate must be a positive number (got {self.lr:g})")
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise ProbeError(f"beta must be a positive number (got {self.beta:g})")

    @property
    def pairs(self) -> int:
        """Pairs the subset holds: n, or the distinct listed rows (subset "ids")."""
        return len(set(self.ids)) if self.subset == "ids" else self.n

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

    @classmethod
    def from_dict(cls, d: dict) -> "ProbeSettings":
        """The settings a probe's manifest stores (`as_dict`), back as ProbeSettings."""
        return cls(**{**d, "band": tuple(d["band"]) if d.get("band") is not None else None,
                      "ids": tuple(d.get("ids") or ())})

    def as_dict(self) -> dict:
        """The settings as JSON values (tuples as lists), as a probe's manifest stores them."""
        d = asdict(self)
        d["band"] = list(self.band) if self.band is not None else None
        d["ids"] = list(self.ids)
        return d


def resolved_steps(n: int, s: ProbeSettings) -> int:
    """Optimizer steps for a subset of n pairs: `s.steps`, or one epoch = ceil(n / batch_size)."""
    return s.steps if s.steps is not None else math.ceil(n / s.batch_size)


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
