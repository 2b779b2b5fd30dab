"""CHES, LN-CHES, the paper's baselines, and per-token contributions (docs/CHES.md).

    CHES    = <S+, S-> - ||S+||^2                  = <S+, S- - S+>
    LN-CHES = <S+, S->/(|y+||y-|) - ||S+||^2/|y+|^2 = <m+, m- - m+>,   m = S / |y|
    edit_sim       = -levenshtein(y+ ids, y- ids) / max(|y+ ids|, |y- ids|)   (0 when both are empty)
    last_hidden_ip = <h(x+y+)[-1], h(x+y-)[-1]>

Higher = more similar = more likely likelihood displacement. All arithmetic is float64.

METRICS is the one table of metrics: the scores.parquet schema (store.scores_schema), `score_table`,
Browse, the export and the CLI all read it, so adding a metric is one entry there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cpdist


@dataclass(frozen=True)
class Metric:
    """One score per pair: a column of scores.parquet, a ranking in Browse and the export, a CLI choice."""
    name: str        # the column in scores.parquet, e.g. "ln_ches"
    label: str       # what people read: "LN-CHES"
    formula: str     # one line, e.g. "<m+, m- - m+>,  m = S/|y|"
    help: str        # what it means and what it is for
    riskier: str     # which direction is more likely displacement; only "higher" (see __post_init__)
    dtype: str       # NumPy / Arrow dtype of the column, e.g. "float64"
    compute: Callable[..., np.ndarray]   # (emb: forward.Embeddings, ids_plus, ids_minus) -> (n,) values

    def __post_init__(self) -> None:
        # Browse ranks highest first and the export keeps the lowest: a metric whose risk grows
        # downwards enters the table negated, so that every reader keeps one rule.
        if self.riskier != "higher":
            raise ValueError(f"metric {self.name!r}: riskier must be 'higher' (negate the score), got {self.riskier!r}")
        if np.dtype(self.dtype).kind not in "iuf":
            raise ValueError(f"metric {self.name!r}: dtype must be numeric, got {self.dtype!r}")


METRICS: dict[str, Metric] = {m.name: m for m in (   # ordered: ln_ches first (the default ranking and export metric)
    Metric("ln_ches", "LN-CHES", "<m+, m- - m+>,  m = S/|y|",
           "Length-normalised CHES <m+, m- - m+>: the paper's filtering score (Sec. 6). Higher = riskier.",
           "higher", "float64",
           lambda emb, ids_plus, ids_minus: ln_ches(emb.S_plus, emb.S_minus, emb.len_plus, emb.len_minus)),
    Metric("ches", "CHES", "<S+, S- - S+>",
           "Raw CHES <S+, S- - S+>: the paper's percentile study (Sec. 5); grows with response length.",
           "higher", "float64",
           lambda emb, ids_plus, ids_minus: ches(emb.S_plus, emb.S_minus)),
    Metric("edit_sim", "Edit similarity", "-levenshtein(y+ ids, y- ids) / max(|y+ ids|, |y- ids|)",
           "Baseline: minus the token edit distance over the longer length (0 = identical). Does not predict "
           "displacement.",
           "higher", "float64",
           lambda emb, ids_plus, ids_minus: edit_sim(ids_plus, ids_minus)),
    Metric("last_hidden_ip", "Last-hidden IP", "<h(x+y+)[-1], h(x+y-)[-1]>",
           "Baseline: inner product of the last hidden states of x+y+ and x+y-. Does not predict displacement.",
           "higher", "float64",
           lambda emb, ids_plus, ids_minus: last_hidden_ip(emb.last_plus, emb.last_minus)),
)}


def ches(S_plus: np.ndarray, S_minus: np.ndarray) -> np.ndarray:
    """<S+, S- - S+> per row. S: (n, d) -> (n,)."""
    Sp, Sm = _f64(S_plus), _f64(S_minus)
    return np.einsum("nd,nd->n", Sp, Sm - Sp)


def ln_ches(S_plus: np.ndarray, S_minus: np.ndarray, len_plus: np.ndarray, len_minus: np.ndarray) -> np.ndarray:
    """<m+, m- - m+> per row with m = S / |y|. S: (n, d), len: (n,) -> (n,)."""
    m_plus = _f64(S_plus) / _lengths(len_plus)[:, None]      # (n, d)
    m_minus = _f64(S_minus) / _lengths(len_minus)[:, None]   # (n, d)
    return np.einsum("nd,nd->n", m_plus, m_minus - m_plus)


def last_hidden_ip(last_plus: np.ndarray, last_minus: np.ndarray) -> np.ndarray:
    """<h+_last, h-_last> per row. (n, d) -> (n,)."""
    return np.einsum("nd,nd->n", _f64(last_plus), _f64(last_minus))


def edit_sim(ids_plus: Sequence[Sequence[int]], ids_minus: Sequence[Sequence[int]]) -> np.ndarray:
    """-levenshtein(a, b) / max(len a, len b) per pair of token-id sequences; 0 when both are empty."""
    if not len(ids_plus):
        return np.zeros(0)
    distance = cpdist(list(ids_plus), list(ids_minus), scorer=Levenshtein.distance, dtype=np.int64)  # (n,)
    longest = np.array([max(len(a), len(b), 1) for a, b in zip(ids_plus, ids_minus)], np.float64)    # (n,)
    return -distance / longest


def levenshtein(a: Sequence[int], b: Sequence[int]) -> int:
    """Edit distance (insert, delete, substitute: cost 1 each), by rapidfuzz's bit-parallel C++ (GIL released)."""
    return int(Levenshtein.distance(a, b))


TOKEN_METRICS = ("ln_ches", "ches")     # the scores `token_contributions` decomposes over the chosen positions


def token_contributions(H_plus: np.ndarray, H_minus: np.ndarray, metric: str = "ln_ches") -> np.ndarray:
    """Per chosen position k: <h+_k, S- - S+> (ches) or <h+_k, m- - m+> / |y+| (ln_ches); sums to the score.

    H: (|y|, d) hidden states at the positions CHES uses -> (|y+|,)
    """
    Hp, Hm = _f64(H_plus), _f64(H_minus)
    if metric == "ches":
        return Hp @ (Hm.sum(0) - Hp.sum(0))
    if metric == "ln_ches":
        return Hp @ (Hm.mean(0) - Hp.mean(0)) / len(Hp)
    raise ValueError(f"token contributions exist for 'ches' and 'ln_ches', not {metric!r}")


def rejected_alignment(H_plus: np.ndarray, H_minus: np.ndarray) -> np.ndarray:
    """Per rejected position k: <h-_k, m+>: how strongly each rejected token points along the chosen mean."""
    return _f64(H_minus) @ _f64(H_plus).mean(0)


def score_table(emb, ids_plus: Sequence[Sequence[int]], ids_minus: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    """{name: (n,) values as its dtype} for every metric in METRICS, from a `forward.Embeddings` and the
    response token ids."""
    return {m.name: np.asarray(m.compute(emb, ids_plus, ids_minus), dtype=m.dtype) for m in METRICS.values()}


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _lengths(n) -> np.ndarray:
    n = np.asarray(n, dtype=np.float64)
    if (n < 1).any():
        raise ValueError("|y| counts the EOS position, so every length must be >= 1")
    return n
