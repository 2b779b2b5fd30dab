"""Centring + 2-D UMAP maps of a scoring run, computed once per run and parameters, cached on disk.

Two views (rows follow the run's pair order), with m = S / |y| the mean last hidden state of a
response (docs/CHES.md):

    'pairs'      D_i = (m-_i - m+_i) - mean_j (m-_j - m+_j)              (n, d)
    'responses'  [m+_1 .. m+_n, m-_1 .. m-_n] - mean over all 2n rows     (2n, d)

`m- - m+` is the direction LN-CHES = <m+, m- - m+> is measured along.

Bounded memory. S+ and S- are memory-mapped (n, d) arrays; the centred matrix X (N, d) is never held
whole above `pca_above` rows. It is streamed in row blocks through a randomized PCA (Halko, Martinsson &
Tropp 2011, Alg. 4.4: a Gaussian range finder with POWER_ITERS power iterations) down to `pca_dims`
components, so memory is O(block x d + N x pca_dims), and each block's pages are released from this
process once read. Centring is folded into the products ((X - 1 mu^T) W = X W - 1 (mu^T W)), so the
mean costs no pass of its own: 2 + 2 * POWER_ITERS passes over the arrays in all, in float32. Only the
(N, pca_dims) scores reach UMAP.

Cache (the pattern of apple/embedding-atlas `cache.py`), under `<run_dir>/projection/`:

    reduced-<key>.npy   PCA scores (N, pca_dims) float32; key = run identity, view, PCA parameters
    layout-<key>.npy    the 2-D layout (N, 2) float32;    key = the above + UMAP parameters

The run identity is its manifest's key, id and creation time with the arrays' shape and dtype: a
complete run folder never changes, so finding a cached map reads no n x d data and hashes none.
Atomic writes (`ches.atomic`), np.load(allow_pickle=False); an unreadable or malformed file
is a miss that gets rewritten; a failed write is logged and the fresh result still returned.
"""
from __future__ import annotations

import hashlib
import json
import logging
import mmap
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ches.atomic import atomic_open
from ches.engine import store

__all__ = ["VIEWS", "preference_directions", "response_means", "view_matrix", "pca_scores", "project",
           "map_coordinates", "cached_layout"]

log = logging.getLogger(__name__)

VIEWS = ("pairs", "responses")
CACHE_VERSION = 2            # bump when the meaning of a cached file changes
MIN_UMAP_POINTS = 4          # below this, the exact PCA layout replaces UMAP
OVERSAMPLE = 10              # extra random directions of the range finder (Halko et al.: 5-10)
POWER_ITERS = 2
BLOCK_ELEMENTS = 1 << 22     # rows per block = this / d: 16 MiB of float32 per block
DEFAULTS = {"n_neighbors": 15, "min_dist": 0.1, "seed": 0, "pca_dims": 50, "pca_above": 2000}

Progress = Callable[[str], None]


# ----------------------------------------------------------------------------- centring (in memory)


def _means(
    S_plus: np.ndarray, S_minus: np.ndarray, len_plus: np.ndarray, len_minus: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """m+ = S+ / |y+|, m- = S- / |y-| in float64, after shape and value checks."""
    Sp = np.asarray(S_plus, dtype=np.float64)  # (n, d)
    Sm = np.asarray(S_minus, dtype=np.float64)  # (n, d)
    _check(Sp.shape, Sm.shape, len_plus, len_minus)
    if not (np.isfinite(Sp).all() and np.isfinite(Sm).all()):
        raise ValueError("hidden-state sums contain NaN or inf")
    m_plus = Sp / np.asarray(len_plus, dtype=np.float64)[:, None]  # (n, d)
    m_minus = Sm / np.asarray(len_minus, dtype=np.float64)[:, None]  # (n, d)
    return m_plus, m_minus


def _check(shape_plus: tuple, shape_minus: tuple, len_plus: np.ndarray, len_minus: np.ndarray) -> None:
    if len(shape_plus) != 2 or shape_plus != shape_minus:
        raise ValueError(f"S_plus and S_minus must be (n, d) of one shape, got {shape_plus} and {shape_minus}")
    n = shape_plus[0]
    Lp, Lm = np.asarray(len_plus), np.asarray(len_minus)
    if Lp.shape != (n,) or Lm.shape != (n,):
        raise ValueError(f"len_plus and len_minus must be ({n},), got {Lp.shape} and {Lm.shape}")
    if np.any(Lp < 1) or np.any(Lm < 1):
        raise ValueError("token counts |y| must be >= 1 (an empty response has |y| = 1)")


def preference_directions(
    S_plus: np.ndarray, S_minus: np.ndarray, len_plus: np.ndarray, len_minus: np.ndarray
) -> np.ndarray:
    """Centred preference directions: D_i = (m-_i - m+_i) - mean_j (m-_j - m+_j), m = S/|y|. -> (n, d) float64."""
    m_plus, m_minus = _means(S_plus, S_minus, len_plus, len_minus)
    D = m_minus - m_plus  # (n, d)
    if len(D):
        D = D - D.mean(axis=0, keepdims=True)  # (n, d)
    return D


def response_means(
    S_plus: np.ndarray, S_minus: np.ndarray, len_plus: np.ndarray, len_minus: np.ndarray
) -> np.ndarray:
    """Centred response means: R = [m+_1..m+_n; m-_1..m-_n] - mean over the 2n rows. -> (2n, d) float64.

    Rows 0..n-1 are the chosen responses, rows n..2n-1 the rejected ones (same pair order).
    """
    m_plus, m_minus = _means(S_plus, S_minus, len_plus, len_minus)
    R = np.concatenate([m_plus, m_minus], axis=0)  # (2n, d)
    if len(R):
        R = R - R.mean(axis=0, keepdims=True)  # (2n, d)
    return R


def view_matrix(
    view: str, S_plus: np.ndarray, S_minus: np.ndarray, len_plus: np.ndarray, len_minus: np.ndarray
) -> np.ndarray:
    """The centred matrix a view projects, in memory: 'pairs' -> (n, d), 'responses' -> (2n, d)."""
    if view == "pairs":
        return preference_directions(S_plus, S_minus, len_plus, len_minus)
    if view == "responses":
        return response_means(S_plus, S_minus, len_plus, len_minus)
    raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")


# ----------------------------------------------------------------------------- streamed PCA


def _release(a: np.ndarray) -> None:
    """Drop a memory-mapped array's resident pages from this process (the OS page cache keeps them)."""
    if isinstance(a.base, mmap.mmap):
        a.base.madvise(mmap.MADV_DONTNEED)


def _rows(S: np.ndarray, start: int, stop: int) -> np.ndarray:
    block = np.array(S[start:stop], dtype=np.float32)  # (b, d) a copy, so the mapping can be released
    _release(S)
    if not np.isfinite(block).all():
        raise ValueError(f"hidden-state sums of rows {start}..{stop - 1} contain NaN or inf")
    return block


def _view_blocks(view: str, S_plus: np.ndarray, S_minus: np.ndarray, len_plus: np.ndarray,
                 len_minus: np.ndarray, rows: int) -> Iterator[np.ndarray]:
    """The view's rows BEFORE centring, `rows` at a time, float32: 'pairs' m- - m+, 'responses' m+ then m-."""
    n = len(S_plus)
    Lp = np.asarray(len_plus, dtype=np.float32)  # (n,)
    Lm = np.asarray(len_minus, dtype=np.float32)  # (n,)
    if view == "pairs":
        for a in range(0, n, rows):
            b = min(n, a + rows)
            yield _rows(S_minus, a, b) / Lm[a:b, None] - _rows(S_plus, a, b) / Lp[a:b, None]  # (b-a, d)
    elif view == "responses":
        for S, L in ((S_plus, Lp), (S_minus, Lm)):
            for a in range(0, n, rows):
                b = min(n, a + rows)
                yield _rows(S, a, b) / L[a:b, None]  # (b-a, d)
    else:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")


def _orthonormal(A: np.ndarray) -> np.ndarray:
    return np.linalg.qr(A)[0].astype(np.float32)


def pca_scores(view: str, S_plus: np.ndarray, S_minus: np.ndarray, len_plus: np.ndarray, len_minus: np.ndarray,
               *, dims: int = 50, seed: int = 0, block_elements: int = BLOCK_ELEMENTS,
               progress: Progress | None = None) -> np.ndarray:
    """Scores of the centred view matrix X (N, d) on its top `dims` principal axes, streamed over row blocks.

    Randomized SVD (Halko et al. 2011, Alg. 4.4), k = dims + OVERSAMPLE, Omega ~ N(0, 1) (d, k):
        Q = orth(X Omega);  q times: Q = orth(X orth(X^T Q))
        B = Q^T X (k, d) = U S V^T;  scores = Q U[:, :dims] S[:dims]    (= X V[:dims]^T)
    -> (N, min(dims, N, d)) float32; each column's sign makes its largest-magnitude entry positive.
    Exact when X has rank <= k. The products run in float32 on rows shifted by the first block's mean
    (LM states share a large offset; the shift keeps float32 from cancelling it away); the exact
    centring is then applied to the products as rank-1 corrections.
    """
    _check(S_plus.shape, S_minus.shape, len_plus, len_minus)
    n, d = S_plus.shape
    N = n if view == "pairs" else 2 * n
    rows = max(1, block_elements // max(d, 1))
    passes = 2 + 2 * POWER_ITERS
    shift = None

    def blocks(i: int) -> Iterator[np.ndarray]:
        nonlocal shift
        if progress is not None:
            progress(f"Centring and reducing {N:,} × {d:,} to {dims} dimensions (randomized PCA, "
                     f"pass {i} of {passes}) …")
        for X in _view_blocks(view, S_plus, S_minus, len_plus, len_minus, rows):
            if shift is None:
                shift = X.mean(axis=0, dtype=np.float64).astype(np.float32)  # (d,)
            yield X - shift  # (b, d)

    k = min(dims + OVERSAMPLE, N, d)
    Omega = np.random.default_rng(seed).standard_normal((d, k)).astype(np.float32)  # (d, k)
    total = np.zeros(d)  # (d,)
    parts = []
    for X in blocks(1):
        total += X.sum(axis=0, dtype=np.float64)
        parts.append(X @ Omega)  # (b, k)
    mu = (total / max(N, 1)).astype(np.float32)  # (d,) mean of the shifted rows
    Q = _orthonormal(np.concatenate(parts) - mu @ Omega)  # (N, k)
    for it in range(POWER_ITERS):
        Z = np.zeros((d, k), dtype=np.float32)  # (d, k)
        start = 0
        for X in blocks(2 + 2 * it):
            Z += X.T @ Q[start:start + len(X)]
            start += len(X)
        Z = _orthonormal(Z - np.outer(mu, Q.sum(axis=0)))  # (d, k) = orth((X - 1 mu^T)^T Q)
        Q = _orthonormal(np.concatenate([X @ Z for X in blocks(3 + 2 * it)]) - mu @ Z)  # (N, k)
    B = np.zeros((k, d))  # (k, d) float64
    start = 0
    for X in blocks(passes):
        B += Q[start:start + len(X)].T @ X
        start += len(X)
    B -= np.outer(Q.sum(axis=0, dtype=np.float64), mu)  # Q^T (X - 1 mu^T)
    U, s, _ = np.linalg.svd(B, full_matrices=False)  # (k, k), (k,)
    r = min(dims, N, d)
    scores = Q.astype(np.float64) @ (U[:, :r] * s[:r])  # (N, r)
    return _fix_signs(scores).astype(np.float32)


def _fix_signs(scores: np.ndarray) -> np.ndarray:
    """Flip each column so that its largest-magnitude entry is positive (a deterministic sign)."""
    if not scores.size:
        return scores
    signs = np.sign(scores[np.abs(scores).argmax(axis=0), np.arange(scores.shape[1])])
    signs[signs == 0] = 1.0
    return scores * signs


# ----------------------------------------------------------------------------- projection


def _pca_layout(X: np.ndarray) -> np.ndarray:
    """Exact 2-D PCA scores (U * s)[:, :2], zero-padded when rank < 2. (n, d) -> (n, 2)."""
    n = len(X)
    out = np.zeros((n, 2), dtype=np.float64)  # (n, 2)
    if n < 2:
        return out
    Xc = X - X.mean(axis=0, keepdims=True)  # (n, d)
    U, s, _ = np.linalg.svd(Xc, full_matrices=False)  # (n, k), (k,)
    s = np.where(s > s[0] * 1e-12, s, 0.0) if len(s) else s  # drop round-off components
    k = min(2, len(s))
    out[:, :k] = _fix_signs(U[:, :k] * s[:k])  # (n, k)
    return out


def project(X: np.ndarray, *, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0) -> np.ndarray:
    """2-D UMAP layout of the rows of X. (n, d) -> (n, 2) float32.

    n < 4: no UMAP; exact 2-D PCA scores (zeros for n <= 1). n_neighbors is clipped to n - 1.
    Deterministic for a fixed seed (UMAP then runs single-threaded).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n, d), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or inf")
    if n_neighbors < 2:
        raise ValueError(f"n_neighbors must be >= 2, got {n_neighbors}")
    n, d = X.shape
    if n < MIN_UMAP_POINTS or d == 0:
        return _pca_layout(X).astype(np.float32)  # (n, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_jobs overridden by random_state, spectral-init fallbacks, numba
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=min(int(n_neighbors), n - 1), min_dist=float(min_dist),
                            random_state=int(seed), n_jobs=1)
        Y = np.asarray(reducer.fit_transform(X), dtype=np.float32)  # (n, 2)
    if Y.shape != (n, 2) or not np.isfinite(Y).all():
        # degenerate input (e.g. all rows identical): fall back rather than show NaNs
        log.warning("UMAP gave a non-finite layout for %d points; using the PCA layout", n)
        return _pca_layout(X).astype(np.float32)
    return Y


# ----------------------------------------------------------------------------- cache


def _params(params: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"unknown projection parameters: {unknown}; expected {sorted(DEFAULTS)}")
    full = {**DEFAULTS, **params}
    # int vs float normalised so seed=0 and seed=np.int64(0) share a key
    out = {k: (float(v) if isinstance(DEFAULTS[k], float) else int(v)) for k, v in full.items()}
    if out["n_neighbors"] < 2 or out["pca_dims"] < 2:
        raise ValueError(f"n_neighbors and pca_dims must be >= 2, got {out['n_neighbors']} and {out['pca_dims']}")
    return out


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("umap-learn", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


def _key(**parts: Any) -> str:
    blob = json.dumps({"cache_version": CACHE_VERSION, **parts}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _read(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The cached float32 array of this shape, or None on any miss (absent, corrupt, wrong shape)."""
    try:
        Y = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except Exception as e:  # corrupt / truncated / pickled: a miss
        log.warning("unreadable projection cache %s (%s); recomputing", path, e)
        return None
    if not isinstance(Y, np.ndarray) or Y.shape != shape or Y.dtype != np.float32 or not np.isfinite(Y).all():
        log.warning("malformed projection cache %s; recomputing", path)
        return None
    return Y


def _write(path: Path, Y: np.ndarray) -> None:
    """Write Y to `path` through `ches.atomic.atomic_open`; a failure is logged, not raised (a cache miss)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as f:
            np.save(f, Y, allow_pickle=False)
    except OSError as e:
        log.warning("could not write projection cache %s (%s)", path, e)


def _cached(path: Path, shape: tuple[int, int], compute: Callable[[], np.ndarray]) -> np.ndarray:
    Y = _read(path, shape)
    if Y is None:
        Y = np.ascontiguousarray(compute(), dtype=np.float32)
        _write(path, Y)
    return Y


def cached_layout(run_dir: Path | str, view: str, **params: Any) -> np.ndarray | None:
    """The cached 2-D layout of map_coordinates(run_dir, view, **params), or None if not computed yet."""
    return _layout(Path(run_dir), view, _params(params), compute=False)


def map_coordinates(run_dir: Path | str, view: str, *, progress: Progress | None = None, **params: Any) -> np.ndarray:
    """The run's 2-D map for `view`: read from `<run_dir>/projection/`, or computed once and stored there.

    -> (n, 2) float32 for 'pairs'; (2n, 2) for 'responses' (chosen rows first, then rejected).
    params: n_neighbors, min_dist, seed (UMAP), pca_dims, pca_above (PCA first when N > pca_above and
    d > pca_dims). `progress(message)` is told what is being computed, on a miss only.
    """
    return _layout(Path(run_dir), view, _params(params), compute=True, progress=progress)


def _layout(run: Path, view: str, p: dict[str, Any], *, compute: bool, progress: Progress | None = None):
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
    arrays = store.read_arrays(run)
    S_plus, S_minus = arrays["S_plus"], arrays["S_minus"]  # (n, d) memory-mapped: only headers read here
    n, d = S_plus.shape
    N = n if view == "pairs" else 2 * n
    m = store.read_manifest(run)
    identity = {"run": m.get("run"), "key": m.get("key"), "created_at": m.get("created_at"),
                "shape": [n, d], "dtype": str(S_plus.dtype), "view": view}
    reduce = N > p["pca_above"] and d > p["pca_dims"]
    pca = {k: p[k] for k in ("pca_dims", "seed")} if reduce else None
    layout_key = _key(identity=identity, pca=pca, umap={k: p[k] for k in ("n_neighbors", "min_dist", "seed")},
                      versions=_versions())
    folder = run / "projection"
    if not compute:
        return _read(folder / f"layout-{layout_key}.npy", (N, 2))
    say = progress or (lambda message: None)

    def lengths() -> tuple[np.ndarray, np.ndarray]:
        t = store.read_scores(run)
        return t["len_chosen"].to_numpy(), t["len_rejected"].to_numpy()

    def umap_input() -> np.ndarray:
        if not reduce:
            say(f"Centring {N:,} × {d:,} …")
            return view_matrix(view, S_plus, S_minus, *lengths())  # (N, d), small: N <= pca_above or d <= dims
        path = folder / f"reduced-{_key(identity=identity, pca=pca)}.npy"
        return _cached(path, (N, min(p["pca_dims"], N, d)),
                       lambda: pca_scores(view, S_plus, S_minus, *lengths(), dims=p["pca_dims"], seed=p["seed"],
                                          progress=say))

    def layout() -> np.ndarray:
        X = umap_input()
        say(f"UMAP of {N:,} points in {X.shape[1]} dimensions (the first UMAP in a process also compiles numba: "
            "about 35 s) …")
        return project(X, n_neighbors=p["n_neighbors"], min_dist=p["min_dist"], seed=p["seed"])

    return _cached(folder / f"layout-{layout_key}.npy", (N, 2), layout)
