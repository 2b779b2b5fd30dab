"""What a probe trains on and how: ProbeSettings, the per-model defaults, the n and batch size fitted to the
pairs a run offers (`fit_sizes`), and the subset of pairs it selects."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from ches.engine.metrics import METRICS
from ches.engine.models import DEFAULT_MODEL
from ches.review.browse import percentiles

SUBSETS = ("top", "bottom", "band", "ids")
OPTIMIZERS = {"rmsprop": "RMSprop", "adam": "Adam", "sgd": "SGD"}        # name -> the torch.optim class
# The paper's settings (Sec. 5), used for every model but the bundled one.
PAPER = {"n": 512, "batch_size": 32, "lr": 1e-7, "beta": 0.1}
# SmolLM2-135M on 2 CPU cores: what bench/displacement_bench.py needed to show the effect (see docs/research.md).
BUNDLED = {"n": 16, "batch_size": 4, "lr": 1e-6, "beta": 0.1}
MIN_PAIRS = 3            # a rank correlation over fewer pairs means nothing (2 pairs: always +-1)
# What steps left out mean, in the words of `ches probe --help`, `ches check-curation --help` and the Probe page.
ONE_EPOCH = "one epoch, i.e. ceil(n / batch size) steps, each pair once"


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
            check_band(self.band)
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
                             f"batch; choose a batch size of at most {pairs}, or take more pairs")
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
        train = one_epoch(self.pairs, self.batch_size) if self.steps is None else f"{self.steps} step(s)"
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


def check_band(band: tuple[float, float] | None) -> None:
    """ProbeError unless `band` is a percentile band LO HI with 0 <= LO <= HI <= 100."""
    if band is None or len(band) != 2:
        raise ProbeError("subset 'band' needs a percentile band LO HI")
    lo, hi = band
    if not 0 <= lo <= hi <= 100:
        raise ProbeError(f"the band must satisfy 0 <= LO <= HI <= 100 (got {lo:g} {hi:g})")


def resolved_steps(n: int, s: ProbeSettings) -> int:
    """Optimizer steps for a subset of n pairs: `s.steps`, or one epoch = ceil(n / batch_size)."""
    return s.steps if s.steps is not None else math.ceil(n / s.batch_size)


def one_epoch(pairs: int, batch_size: int) -> str:
    """What training with steps left out does, with its step count: "one epoch (3 steps)"."""
    k = math.ceil(pairs / max(batch_size, 1))
    return f"one epoch ({k} step{'' if k == 1 else 's'})"


# ------------------------------------------------------------------------- n and batch fitted to the run

@dataclass(frozen=True)
class Pool:
    """The pairs n is drawn from: how many, and what they are in words ("the run's 150 pairs")."""
    size: int
    words: str


@dataclass(frozen=True)
class Fit:
    """The n and batch size to train with, and `note`, what was chosen for the user ("using n = 120 of the
    150 kept pairs, batch 32"; empty when the user gave both)."""
    n: int
    batch_size: int
    note: str


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}{'' if k == 1 else 's'}"


def fit_sizes(preset: Mapping[str, Any], pool: Pool, n: int | None = None, batch_size: int | None = None) -> Fit:
    """n and batch size for training on `pool`. A value given is kept; one left out (None) is the preset's
    (`defaults`), lowered to what the pool allows: n = min(preset n, pool.size), batch = min(preset batch, n).
    ProbeError, saying what would fit, when the pool holds fewer than MIN_PAIRS pairs, a given n is more
    than the pool holds, or the batch size is more than n. The Probe page, the Curate & export page's
    check, `ches probe` and `ches check-curation` all fit their defaults here."""
    if pool.size < MIN_PAIRS:
        raise ProbeError(f"too few pairs: {pool.words} (a probe trains on at least {MIN_PAIRS})")
    if n is not None and n > pool.size:
        raise ProbeError(f"n = {n} is more than {pool.words}: choose n of at most {pool.size}, or leave n out "
                         "to fit it")
    n_fit = min(int(preset["n"]), pool.size) if n is None else int(n)
    if batch_size is not None and batch_size > n_fit:
        raise ProbeError(f"n = {n_fit} is below the batch size {batch_size}: choose a batch size of at most "
                         f"{n_fit}" + (", or a larger n" if n_fit < pool.size else ""))
    batch_fit = min(int(preset["batch_size"]), n_fit) if batch_size is None else int(batch_size)
    if n is None:
        note = f"using n = {n_fit} of {pool.words}" + (f", batch {batch_fit}" if batch_size is None else "")
    else:
        note = f"using batch {batch_fit} for n = {n_fit}" if batch_size is None else ""
    return Fit(n_fit, batch_fit, note)


def probe_pool(table: pd.DataFrame, subset: str, metric: str = "ches", band: tuple[float, float] | None = None,
               ids: tuple[int, ...] = ()) -> Pool:
    """The pairs a probe's subset draws from: the run (top, bottom), the band's pairs of `metric` over the
    run's scores `table`, or the distinct listed rows (ids)."""
    if subset not in SUBSETS:
        raise ProbeError(f"unknown subset {subset!r}; choose one of {', '.join(SUBSETS)}")
    if subset == "ids":
        k = len(set(ids))
        return Pool(k, f"the {k} listed row{'' if k == 1 else 's'}")
    if subset != "band":
        return Pool(len(table), f"the run's {_count(len(table), 'pair')}")
    check_band(band)
    if metric not in METRICS:
        raise ProbeError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    k = int(percentiles(table[metric]).between(*band).sum())
    return Pool(k, f"the {_count(k, 'pair')} in {metric} percentiles {band[0]:g}-{band[1]:g}")


def probe_fit(preset: Mapping[str, Any], table: pd.DataFrame, subset: str, metric: str = "ches",
              band: tuple[float, float] | None = None, ids: tuple[int, ...] = (), n: int | None = None,
              batch_size: int | None = None) -> Fit:
    """`fit_sizes` over a probe subset's pool (`probe_pool`); for ids, n is the listed rows."""
    pool = probe_pool(table, subset, metric, band, ids)
    return fit_sizes(preset, pool, pool.size if subset == "ids" else n, batch_size)


def default_band(preset: Mapping[str, Any], table: pd.DataFrame) -> tuple[int, int]:
    """The highest whole-percentile band [lo, 100] that holds the preset's n (at most the run's pairs)."""
    if not len(table):
        return (0, 100)
    n = min(int(preset["n"]), len(table))
    return (max(0, 100 - math.ceil(100 * n / len(table))), 100)


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
        raise ProbeError(f"n = {s.n} is larger than the run ({len(table)} pairs): choose n of at most {len(table)}")
    if s.subset == "top":
        return quantile_slice(table, s.metric, 100, s.n)
    if s.subset == "bottom":
        return quantile_slice(table, s.metric, 0, s.n)
    lo, hi = s.band
    inside = table[percentiles(table[s.metric]).between(lo, hi)]
    if len(inside) < s.n:
        raise ProbeError(f"n = {s.n} is larger than the percentile band {lo:g}-{hi:g} of {s.metric} "
                         f"({len(inside)} pairs): widen the band or choose n of at most {len(inside)}")
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
