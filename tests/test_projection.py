"""Tests for ches.review.projection: centring, the streamed PCA, UMAP projection, and the per-run disk cache.

Only two tests run the real UMAP (numba compiles on first use); the rest swap in `FakeUMAP`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import umap

from ches.review import projection as P
from ches.engine import chunks, store
from ches.engine.pairs import Pair


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


@pytest.mark.slow
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


# ----------------------------------------------------------------------------- streamed PCA


def _low_rank(n: int, d: int, rank: int, seed: int = 0):
    """S+ and S- whose rows share a `rank`-dim row space plus a large common offset (as LM states have)."""
    r = np.random.default_rng(seed)
    basis = r.normal(size=(rank, d)) * np.linspace(3, 1, rank)[:, None]
    offset = r.normal(size=d) * 50
    Sp = r.normal(size=(n, rank)) @ basis + offset
    Sm = r.normal(size=(n, rank)) @ basis + offset
    return Sp, Sm, r.integers(1, 40, size=n), r.integers(1, 40, size=n)


def _exact_scores(X: np.ndarray, r: int) -> np.ndarray:
    """Reference: exact PCA scores by a dense SVD, each column's largest-magnitude entry positive."""
    U, s, _ = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)
    scores = U[:, :r] * s[:r]
    return scores * np.sign(scores[np.abs(scores).argmax(axis=0), np.arange(r)])


def _memmap(tmp_path: Path, name: str, a: np.ndarray) -> np.ndarray:
    np.save(tmp_path / f"{name}.npy", a)
    return np.load(tmp_path / f"{name}.npy", mmap_mode="r")


@pytest.mark.parametrize("view", ["pairs", "responses"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pca_scores_equal_the_exact_pca_on_memory_mapped_blocks(tmp_path, view, dtype):
    Sp, Sm, lp, lm = _low_rank(n=90, d=40, rank=5)
    Sp, Sm = Sp.astype(dtype), Sm.astype(dtype)
    exact = _exact_scores(P.view_matrix(view, Sp, Sm, lp, lm), 4)
    for block_elements in (40 * 7, 1 << 22):                          # 7-row blocks, and one block
        got = P.pca_scores(view, _memmap(tmp_path, "Sp", Sp), _memmap(tmp_path, "Sm", Sm), lp, lm, dims=4,
                           block_elements=block_elements)
        assert got.shape == (len(exact), 4) and got.dtype == np.float32
        np.testing.assert_allclose(got, exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())


def test_pca_scores_on_full_rank_data_capture_the_leading_axes():
    r = np.random.default_rng(1)
    Sp = r.normal(size=(300, 80)) * np.geomspace(10, 0.1, 80)        # a decaying spectrum, full rank
    Sm = r.normal(size=(300, 80)) * np.geomspace(10, 0.1, 80)
    ones = np.ones(300)
    exact = _exact_scores(P.view_matrix("pairs", Sp, Sm, ones, ones), 2)
    got = P.pca_scores("pairs", Sp, Sm, ones, ones, dims=20)[:, :2]
    for j in range(2):
        assert abs(np.corrcoef(got[:, j], exact[:, j])[0, 1]) > 0.999


def test_pca_scores_reject_bad_values_and_report_progress():
    Sp, Sm, lp, lm = _low_rank(n=10, d=6, rank=2)
    said = []
    P.pca_scores("pairs", Sp, Sm, lp, lm, dims=2, progress=said.append)
    assert len(said) == 2 + 2 * P.POWER_ITERS and "pass 1 of" in said[0]
    Sm[3, 2] = np.inf
    with pytest.raises(ValueError, match="rows 0..9"):
        P.pca_scores("pairs", Sp, Sm, lp, lm, dims=2)
    with pytest.raises(ValueError, match="token counts"):
        P.pca_scores("pairs", Sp, Sp, lp * 0, lm, dims=2)


# ----------------------------------------------------------------------------- the run's map (cache)


def _run(tmp_path: Path, Sp, Sm, lp, lm, name: str = "run") -> Path:
    """A complete run folder holding exactly these arrays (scores are placeholders)."""
    import pandas as pd

    n = len(Sp)
    zeros = np.zeros(n)
    table = pd.DataFrame({"row": np.arange(1, n + 1), "pair_id": [f"p{i}" for i in range(n)], "ln_ches": zeros,
                          "ches": zeros, "edit_sim": zeros, "last_hidden_ip": zeros, "len_chosen": lp,
                          "len_rejected": lm, "truncated": np.zeros(n, bool), "flags": [""] * n})
    pairs = [Pair(row=i + 1, prompt=({"role": "user", "content": f"q{i}"},), chosen="a", rejected="b", pair_id=f"p{i}")
             for i in range(n)]
    manifest = {"run": name, "key": {"model_id": "m"}, "created_at": "2025-01-01T00:00:00", "pairs": n}
    return chunks.write_run(tmp_path / name, manifest=manifest, scores=table, pairs=pairs,
                           arrays={"S_plus": Sp, "S_minus": Sm})


def _files(run: Path) -> list[str]:
    return sorted(p.name.split("-")[0] for p in (run / "projection").glob("*"))


def test_map_is_computed_once_then_read_without_touching_the_arrays(fake_umap, tmp_path, monkeypatch):
    Sp, Sm, lp, lm = _inputs(n=10)
    run = _run(tmp_path, Sp, Sm, lp, lm)
    assert P.cached_layout(run, "pairs") is None
    said = []
    a = P.map_coordinates(run, "pairs", progress=said.append)
    assert len(fake_umap) == 1 and said and _files(run) == ["layout"]
    np.testing.assert_allclose(a, P.view_matrix("pairs", Sp, Sm, lp, lm)[:, :2], rtol=1e-6)   # FakeUMAP: 2 columns
    monkeypatch.setattr(P, "_rows", lambda *a: pytest.fail("a cached map must not read the arrays"))
    monkeypatch.setattr(store, "read_scores", lambda *a: pytest.fail("a cached map must not read the scores"))
    said.clear()
    b = P.map_coordinates(run, "pairs", n_neighbors=15, seed=0, progress=said.append)  # defaults spelt out: a hit
    assert len(fake_umap) == 1 and said == []
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(P.cached_layout(run, "pairs"), a)


def test_each_view_and_parameter_is_its_own_entry(fake_umap, tmp_path):
    Sp, Sm, lp, lm = _inputs(n=10)
    run = _run(tmp_path, Sp, Sm, lp, lm)
    P.map_coordinates(run, "pairs")
    P.map_coordinates(run, "pairs", min_dist=0.5)
    P.map_coordinates(run, "pairs", seed=1)
    r = P.map_coordinates(run, "responses")
    assert len(fake_umap) == 4 and r.shape == (20, 2)
    assert fake_umap[-1]["shape"] == (20, 6)
    m = store.read_manifest(run)
    (run / "manifest.json").write_text(json.dumps({**m, "created_at": "2026-01-01T00:00:00"}))  # another run here
    P.map_coordinates(run, "pairs")
    assert len(fake_umap) == 5 and len(_files(run)) == 5               # no temp files left behind
    with pytest.raises(TypeError):
        P.map_coordinates(run, "pairs", neighbours=5)
    with pytest.raises(ValueError):
        P.map_coordinates(run, "tokens")


def test_the_reduced_matrix_is_shared_by_umap_parameters(fake_umap, tmp_path, monkeypatch):
    Sp, Sm, lp, lm = _low_rank(n=40, d=30, rank=4)
    run = _run(tmp_path, Sp, Sm, lp, lm)
    calls = []
    real = P.pca_scores
    monkeypatch.setattr(P, "pca_scores", lambda *a, **k: calls.append(k) or real(*a, **k))
    Y = P.map_coordinates(run, "pairs", pca_above=10, pca_dims=5)
    assert fake_umap[0]["shape"] == (40, 5) and len(calls) == 1
    exact = _exact_scores(P.view_matrix("pairs", Sp, Sm, lp, lm), 2)
    np.testing.assert_allclose(Y, exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())   # FakeUMAP: PCs 1-2
    P.map_coordinates(run, "pairs", pca_above=10, pca_dims=5, n_neighbors=5, min_dist=0.3)
    assert len(calls) == 1 and len(fake_umap) == 2 and _files(run) == ["layout", "layout", "reduced"]
    P.map_coordinates(run, "pairs", pca_above=40, pca_dims=5)          # not above: UMAP on all 30 dimensions
    assert fake_umap[-1]["shape"] == (40, 30) and len(calls) == 1


@pytest.mark.parametrize("garbage", [b"", b"not a numpy file", "pickle", "shape"])
def test_a_bad_cache_file_is_a_miss_and_rewritten(fake_umap, tmp_path, garbage):
    Sp, Sm, lp, lm = _inputs(n=10)
    run = _run(tmp_path, Sp, Sm, lp, lm)
    a = P.map_coordinates(run, "pairs")
    (path,) = (run / "projection").glob("*")
    if garbage == "pickle":  # a valid .npy that needs pickle must not be loaded
        np.save(path, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    elif garbage == "shape":
        np.save(path, np.zeros((3, 2), dtype=np.float32))
    else:
        path.write_bytes(garbage)
    b = P.map_coordinates(run, "pairs")
    assert len(fake_umap) == 2
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), a)  # rewritten
    P.map_coordinates(run, "pairs")
    assert len(fake_umap) == 2


def test_unwritable_cache_still_returns(fake_umap, tmp_path):
    Sp, Sm, lp, lm = _inputs(n=10)
    run = _run(tmp_path, Sp, Sm, lp, lm)
    (run / "projection").write_text("a file where the folder should be")
    Y = P.map_coordinates(run, "pairs")
    assert Y.shape == (10, 2) and len(fake_umap) == 1
