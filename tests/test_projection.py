"""Tests for ches.projection: centring, UMAP projection, and the per-run disk cache.

Only two tests run the real UMAP (numba compiles on first use); the rest swap in `FakeUMAP`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import umap

from ches import projection as P


def _inputs(n: int = 12, d: int = 6, seed: int = 0):
    r = np.random.default_rng(seed)
    S_plus = r.normal(loc=3.0, size=(n, d)) * 10  # non-zero mean so centring matters
    S_minus = r.normal(loc=-1.0, size=(n, d)) * 10
    len_plus = r.integers(1, 40, size=n)
    len_minus = r.integers(1, 40, size=n)
    return S_plus, S_minus, len_plus, len_minus


class FakeUMAP:
    """Stand-in for umap.UMAP: records calls and inputs, returns the first two input columns."""

    calls: list[dict] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def fit_transform(self, X):
        FakeUMAP.calls.append({"shape": X.shape, **self.kwargs})
        Y = np.zeros((len(X), 2))
        Y[:, : min(2, X.shape[1])] = X[:, :2]
        return Y


@pytest.fixture
def fake_umap(monkeypatch):
    FakeUMAP.calls = []
    monkeypatch.setattr(umap, "UMAP", FakeUMAP)
    return FakeUMAP.calls


# ----------------------------------------------------------------------------- centring


def test_preference_directions_formula_and_centring():
    Sp, Sm, lp, lm = _inputs()
    D = P.preference_directions(Sp, Sm, lp, lm)
    # independent computation, row by row
    raw = np.stack([Sm[i] / lm[i] - Sp[i] / lp[i] for i in range(len(Sp))])
    expected = raw - raw.sum(axis=0) / len(raw)
    assert D.shape == Sp.shape
    np.testing.assert_allclose(D, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(D.mean(axis=0), 0.0, atol=1e-12)
    assert np.abs(raw.mean(axis=0)).max() > 0.1  # the data really needed centring


def test_response_means_rows_order_and_centring():
    Sp, Sm, lp, lm = _inputs(n=7)
    n = len(Sp)
    R = P.response_means(Sp, Sm, lp, lm)
    assert R.shape == (2 * n, Sp.shape[1])
    m_plus = Sp / lp[:, None]
    m_minus = Sm / lm[:, None]
    c = (m_plus.sum(axis=0) + m_minus.sum(axis=0)) / (2 * n)  # mean over all 2n points
    np.testing.assert_allclose(R[:n], m_plus - c, atol=1e-12)  # chosen first
    np.testing.assert_allclose(R[n:], m_minus - c, atol=1e-12)  # then rejected, same pair order
    np.testing.assert_allclose(R.mean(axis=0), 0.0, atol=1e-12)


def test_invalid_inputs_raise():
    Sp, Sm, lp, lm = _inputs(n=4)
    with pytest.raises(ValueError):
        P.preference_directions(Sp, Sm, np.array([1, 0, 2, 3]), lm)  # |y| = 0
    with pytest.raises(ValueError):
        P.response_means(Sp, Sm[:3], lp, lm)
    with pytest.raises(ValueError):
        P.view_matrix("tokens", Sp, Sm, lp, lm)
    with pytest.raises(ValueError):
        P.project(np.array([[0.0, np.nan]] * 5))


# ----------------------------------------------------------------------------- projection (real UMAP)


def test_project_real_umap_shape_dtype_deterministic():
    X = np.random.default_rng(1).normal(size=(40, 10))
    a = P.project(X, seed=3)
    b = P.project(X, seed=3)
    c = P.project(X, seed=4)
    assert a.shape == (40, 2) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_project_real_umap_smallest_size_clips_neighbors():
    X = np.random.default_rng(2).normal(size=(4, 5))
    Y = P.project(X, n_neighbors=15)  # n_neighbors clipped to 3
    assert Y.shape == (4, 2) and Y.dtype == np.float32 and np.isfinite(Y).all()


# ----------------------------------------------------------------------------- projection (fake UMAP)


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_tiny_inputs_skip_umap(fake_umap, n):
    X = np.random.default_rng(n).normal(size=(n, 5))
    Y = P.project(X)
    assert Y.shape == (n, 2) and Y.dtype == np.float32 and np.isfinite(Y).all()
    assert fake_umap == []
    if n == 2:  # exact PCA layout keeps the distance between the two points
        np.testing.assert_allclose(np.linalg.norm(Y[0] - Y[1]), np.linalg.norm(X[0] - X[1]), rtol=1e-5)


def test_neighbors_clipped_to_n_minus_1(fake_umap):
    P.project(np.random.default_rng(0).normal(size=(6, 3)), n_neighbors=15, seed=7)
    assert fake_umap[0]["n_neighbors"] == 5 and fake_umap[0]["random_state"] == 7


def test_pca_path_above_threshold(fake_umap):
    X = np.random.default_rng(0).normal(size=(30, 20))
    P.project(X, pca_above=10, pca_dims=5)
    P.project(X, pca_above=30, pca_dims=5)  # not above: no PCA
    assert [c["shape"] for c in fake_umap] == [(30, 5), (30, 20)]


# ----------------------------------------------------------------------------- cache


def _cache_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "projections").glob("*"))


def test_cache_hit_miss_and_key(fake_umap, tmp_path):
    Sp, Sm, lp, lm = _inputs(n=10)
    a = P.map_coordinates(tmp_path, "pairs", Sp, Sm, lp, lm)
    assert len(fake_umap) == 1
    files = _cache_files(tmp_path)
    assert len(files) == 1 and files[0].suffix == ".npy" and len(files[0].stem) == 16

    b = P.map_coordinates(tmp_path, "pairs", Sp, Sm, lp, lm, n_neighbors=15, seed=0)  # defaults spelt out
    assert len(fake_umap) == 1  # hit: no recompute
    np.testing.assert_array_equal(a, b)

    P.map_coordinates(tmp_path, "pairs", Sp, Sm, lp, lm, min_dist=0.5)
    P.map_coordinates(tmp_path, "pairs", Sp, Sm, lp, lm, seed=1)
    r = P.map_coordinates(tmp_path, "responses", Sp, Sm, lp, lm)
    assert len(fake_umap) == 4  # each different parameter / view is a miss
    assert r.shape == (20, 2)
    P.map_coordinates(tmp_path, "pairs", Sp * 2, Sm, lp, lm)  # different data: miss
    assert len(fake_umap) == 5
    assert len(_cache_files(tmp_path)) == 5  # no temp files left behind

    X = np.random.default_rng(0).normal(size=(8, 3))
    P.cached_projection(tmp_path, "pairs", X)
    P.cached_projection(tmp_path, "responses", X)  # same matrix, other view: miss
    assert len(fake_umap) == 7

    with pytest.raises(TypeError):
        P.map_coordinates(tmp_path, "pairs", Sp, Sm, lp, lm, neighbours=5)


@pytest.mark.parametrize("garbage", [b"", b"not a numpy file", "pickle"])
def test_corrupt_cache_is_a_miss_and_rewritten(fake_umap, tmp_path, garbage):
    Sp, Sm, lp, lm = _inputs(n=10)
    a = P.map_coordinates(tmp_path, "pairs", Sp, Sm, lp, lm)
    (path,) = _cache_files(tmp_path)
    if garbage == "pickle":  # a valid .npy that needs pickle must not be loaded
        np.save(path, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    else:
        path.write_bytes(garbage)
    b = P.map_coordinates(tmp_path, "pairs", Sp, Sm, lp, lm)
    assert len(fake_umap) == 2
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), a)  # rewritten
    P.map_coordinates(tmp_path, "pairs", Sp, Sm, lp, lm)
    assert len(fake_umap) == 2


def test_wrong_shape_cache_is_a_miss(fake_umap, tmp_path):
    Sp, Sm, lp, lm = _inputs(n=10)
    P.map_coordinates(tmp_path, "pairs", Sp, Sm, lp, lm)
    (path,) = _cache_files(tmp_path)
    np.save(path, np.zeros((3, 2), dtype=np.float32))
    assert P.map_coordinates(tmp_path, "pairs", Sp, Sm, lp, lm).shape == (10, 2)
    assert len(fake_umap) == 2


def test_unwritable_cache_still_returns(fake_umap, tmp_path):
    Sp, Sm, lp, lm = _inputs(n=10)
    (tmp_path / "projections").write_text("a file where the folder should be")
    Y = P.map_coordinates(tmp_path, "pairs", Sp, Sm, lp, lm)
    assert Y.shape == (10, 2) and len(fake_umap) == 1
