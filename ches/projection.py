"""Centring + 2-D UMAP maps of a scoring run, cached on disk per run.

Two views (rows follow the run's pair order):

    'pairs'      d_i = (m-_i - m+_i) - mean_j (m-_j - m+_j)              (n, d)
    'responses'  [m+_1 .. m+_n, m-_1 .. m-_n] - mean over all 2n rows     (2n, d)

with m = S / |y| the mean last hidden state of a response (CHES_SPEC.md). `m- - m+` is the
direction LN-CHES = <m+, m- - m+> is measured along.

Cache (pattern from apple/embedding-atlas `cache.py`): one `.npy` per key under
`run_dir/projections/`, key = sha256 of canonical JSON of (view, all projection parameters with
defaults filled in, content hash of the input matrix, library versions); atomic write (temp file +
`os.replace`), `np.load(allow_pickle=False)`, and any unreadable or malformed cache file is a miss
that gets rewritten. A failed write is logged and the fresh result is still returned.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "VIEWS",
    "preference_directions",
    "response_means",
    "view_matrix",
    "project",
    "projection_key",
    "cached_projection",
    "map_coordinates",
]

log = logging.getLogger(__name__)

VIEWS = ("pairs", "responses")
CACHE_VERSION = 1  # bump when the meaning of a cached map changes
MIN_UMAP_POINTS = 4  # below this, a PCA/zeros layout replaces UMAP


# ----------------------------------------------------------------------------- centring


def _means(
    S_plus: np.ndarray, S_minus: np.ndarray, len_plus: np.ndarray, len_minus: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """m+ = S+ / |y+|, m- = S- / |y-| in float64, after shape and value checks."""
    Sp = np.asarray(S_plus, dtype=np.float64)  # (n, d)
    Sm = np.asarray(S_minus, dtype=np.float64)  # (n, d)
    Lp = np.asarray(len_plus)  # (n,)
    Lm = np.asarray(len_minus)  # (n,)
    if Sp.ndim != 2 or Sp.shape != Sm.shape:
        raise ValueError(f"S_plus and S_minus must be (n, d) of one shape, got {Sp.shape} and {Sm.shape}")
    n = Sp.shape[0]
    if Lp.shape != (n,) or Lm.shape != (n,):
        raise ValueError(f"len_plus and len_minus must be ({n},), got {Lp.shape} and {Lm.shape}")
    if np.any(Lp < 1) or np.any(Lm < 1):
        raise ValueError("token counts |y| must be >= 1 (an empty response has |y| = 1)")
    if not (np.isfinite(Sp).all() and np.isfinite(Sm).all()):
        raise ValueError("hidden-state sums contain NaN or inf")
    m_plus = Sp / Lp.astype(np.float64)[:, None]  # (n, d)
    m_minus = Sm / Lm.astype(np.float64)[:, None]  # (n, d)
    return m_plus, m_minus


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
    """The centred matrix a view projects: 'pairs' -> (n, d), 'responses' -> (2n, d)."""
    if view == "pairs":
        return preference_directions(S_plus, S_minus, len_plus, len_minus)
    if view == "responses":
        return response_means(S_plus, S_minus, len_plus, len_minus)
    raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")


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
    scores = U[:, :k] * s[:k]  # (n, k)
    # deterministic sign: largest-magnitude entry of each component positive
    signs = np.sign(scores[np.abs(scores).argmax(axis=0), np.arange(k)])
    signs[signs == 0] = 1.0
    out[:, :k] = scores * signs
    return out


def project(
    X: np.ndarray,
    *,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    seed: int = 0,
    pca_dims: int = 50,
    pca_above: int = 2000,
) -> np.ndarray:
    """2-D UMAP layout of the rows of X. (n, d) -> (n, 2) float32.

    If n > pca_above, X is first reduced to min(pca_dims, n, d) PCA components (sklearn).
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
    if pca_dims < 2:
        raise ValueError(f"pca_dims must be >= 2, got {pca_dims}")
    n, d = X.shape
    if n < MIN_UMAP_POINTS or d == 0:
        return _pca_layout(X).astype(np.float32)  # (n, 2)

    if n > pca_above and d > pca_dims:
        from sklearn.decomposition import PCA

        X = PCA(n_components=min(pca_dims, n, d), random_state=seed).fit_transform(X)  # (n, pca_dims)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_jobs overridden by random_state, spectral-init fallbacks, numba
        import umap

        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=min(int(n_neighbors), n - 1),
            min_dist=float(min_dist),
            random_state=int(seed),
            n_jobs=1,
        )
        Y = reducer.fit_transform(X)  # (n, 2)
    Y = np.asarray(Y, dtype=np.float32)
    if Y.shape != (n, 2) or not np.isfinite(Y).all():
        # degenerate input (e.g. all rows identical): fall back rather than show NaNs
        log.warning("UMAP gave a non-finite layout for %d points; using the PCA layout", n)
        return _pca_layout(X).astype(np.float32)
    return Y


# ----------------------------------------------------------------------------- cache

_PROJECT_DEFAULTS = {
    k: p.default for k, p in inspect.signature(project).parameters.items() if p.kind is p.KEYWORD_ONLY
}


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("umap-learn", "scikit-learn", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


def _canonical_params(params: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(_PROJECT_DEFAULTS))
    if unknown:
        raise TypeError(f"unknown projection parameters: {unknown}; expected {sorted(_PROJECT_DEFAULTS)}")
    full = {**_PROJECT_DEFAULTS, **params}
    # int vs float normalised so seed=0 and seed=np.int64(0) share a key
    return {k: (float(v) if isinstance(_PROJECT_DEFAULTS[k], float) else int(v)) for k, v in full.items()}


def _array_digest(X: np.ndarray) -> str:
    a = np.ascontiguousarray(X, dtype=np.float64)
    h = hashlib.sha256(f"{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def projection_key(view: str, X: np.ndarray, **params: Any) -> str:
    """sha256(canonical JSON of view, params with defaults, input content hash, versions)[:16]."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
    payload = {
        "cache_version": CACHE_VERSION,
        "view": view,
        "params": _canonical_params(params),
        "input": _array_digest(X),
        "versions": _versions(),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _read(path: Path, n: int) -> np.ndarray | None:
    """The cached (n, 2) float32 layout, or None on any miss (absent, corrupt, wrong shape)."""
    try:
        Y = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except Exception as e:  # corrupt / truncated / pickled: a miss
        log.warning("unreadable projection cache %s (%s); recomputing", path, e)
        return None
    if not isinstance(Y, np.ndarray) or Y.shape != (n, 2) or Y.dtype != np.float32 or not np.isfinite(Y).all():
        log.warning("malformed projection cache %s; recomputing", path)
        return None
    return Y


def _write(path: Path, Y: np.ndarray) -> None:
    """Atomic write: temp file in the same folder, then os.replace. Failures are logged, not raised."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, Y, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        log.warning("could not write projection cache %s (%s)", path, e)
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def cached_projection(run_dir: Path | str, view: str, X: np.ndarray, **params: Any) -> np.ndarray:
    """project(X, **params), cached at run_dir/projections/<projection_key>.npy. -> (len(X), 2) float32."""
    X = np.asarray(X, dtype=np.float64)  # (N, d)
    path = Path(run_dir) / "projections" / f"{projection_key(view, X, **params)}.npy"
    Y = _read(path, len(X))
    if Y is not None:
        return Y
    Y = project(X, **_canonical_params(params))  # (N, 2)
    _write(path, Y)
    return Y


def map_coordinates(
    run_dir: Path | str,
    view: str,
    S_plus: np.ndarray,
    S_minus: np.ndarray,
    len_plus: np.ndarray,
    len_minus: np.ndarray,
    **params: Any,
) -> np.ndarray:
    """Centre the view's matrix (see view_matrix) and project it with caching.

    -> (n, 2) float32 for 'pairs'; (2n, 2) for 'responses' (chosen rows first, then rejected).
    """
    X = view_matrix(view, S_plus, S_minus, len_plus, len_minus)  # (n, d) or (2n, d)
    return cached_projection(run_dir, view, X, **params)
