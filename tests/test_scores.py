"""Score formulas against independent computations (explicit loops in float64)."""
import numpy as np
import pytest

from ches.engine import metrics


def loop_ches(Sp, Sm):
    return [sum(a * b for a, b in zip(p, m)) - sum(a * a for a in p) for p, m in zip(Sp, Sm)]


def loop_ln_ches(Sp, Sm, lp, lm):
    return [sum(a * b for a, b in zip(p, m)) / (x * y) - sum(a * a for a in p) / (x * x)
            for p, m, x, y in zip(Sp, Sm, lp, lm)]


def dp_levenshtein(a, b):
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[-1][-1]


def test_ches_and_ln_ches_match_the_definitions():
    rng = np.random.default_rng(1)
    Sp, Sm = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    lp, lm = rng.integers(1, 50, 7), rng.integers(1, 50, 7)
    np.testing.assert_allclose(metrics.ches(Sp, Sm), loop_ches(Sp, Sm), rtol=1e-12)
    np.testing.assert_allclose(metrics.ln_ches(Sp, Sm, lp, lm), loop_ln_ches(Sp, Sm, lp, lm), rtol=1e-12)


def test_ches_is_asymmetric_and_zero_for_identical_responses():
    Sp, Sm = np.array([[1.0, 2.0]]), np.array([[3.0, -1.0]])
    assert metrics.ches(Sp, Sm)[0] == pytest.approx(1 * 3 + 2 * -1 - 5)
    assert metrics.ches(Sm, Sp)[0] == pytest.approx(1 * 3 + 2 * -1 - 10)
    assert metrics.ches(Sp, Sp)[0] == 0.0


def test_half_precision_inputs_do_not_overflow():
    S = np.full((1, 576), 300.0, np.float16)          # 300-token sums of unit-ish states
    assert np.isfinite(metrics.ches(S, S * np.float16(0.5))).all()


def test_lengths_must_count_the_eos_position():
    with pytest.raises(ValueError):
        metrics.ln_ches(np.ones((1, 2)), np.ones((1, 2)), [0], [1])


@pytest.mark.parametrize("a,b", [([], []), ([1], []), ([1, 2, 3], [1, 2, 3]), ([1, 2, 3], [3, 2, 1]),
                                 ([5, 1, 2, 3, 9], [1, 2, 3]), ([1, 1, 1, 2], [2, 1, 1, 1, 1])])
def test_levenshtein_matches_dynamic_programming(a, b):
    assert metrics.levenshtein(a, b) == dp_levenshtein(a, b)


def test_levenshtein_random():
    rng = np.random.default_rng(2)
    for _ in range(50):
        a, b = rng.integers(0, 4, rng.integers(0, 12)).tolist(), rng.integers(0, 4, rng.integers(0, 12)).tolist()
        assert metrics.levenshtein(a, b) == dp_levenshtein(a, b)


def test_edit_sim():
    np.testing.assert_allclose(metrics.edit_sim([[1, 2, 3, 4], [], [7]], [[1, 2, 3], [], [7]]), [-0.25, 0.0, 0.0])
    assert metrics.edit_sim([], []).shape == (0,)


def numpy_levenshtein(a, b) -> int:
    """The row-by-row numpy edit distance the project used before rapidfuzz (an independent reference)."""
    if len(a) < len(b):
        a, b = b, a
    prev = np.arange(len(b) + 1)
    bb = np.asarray(b)
    for i, x in enumerate(a, 1):
        cur = np.concatenate([[i], np.minimum(prev[:-1] + (bb != x), prev[1:] + 1)])
        prev = np.minimum.accumulate(cur - np.arange(len(b) + 1)) + np.arange(len(b) + 1)
    return int(prev[-1])


def test_edit_sim_equals_the_numpy_levenshtein_on_token_ids():
    rng = np.random.default_rng(4)
    plus, minus = [], []
    for _ in range(200):                        # real vocabulary sizes, long responses, shared stretches
        a = rng.integers(0, 50_000 if rng.random() < 0.5 else 8, rng.integers(0, 400)).tolist()
        b = [t if rng.random() < 0.8 else int(rng.integers(0, 50_000)) for t in a[: rng.integers(0, len(a) + 1)]]
        plus.append(tuple(a))
        minus.append(b + rng.integers(0, 50_000, rng.integers(0, 30)).tolist())
    expected = [-numpy_levenshtein(a, b) / max(len(a), len(b), 1) for a, b in zip(plus, minus)]
    np.testing.assert_array_equal(metrics.edit_sim(plus, minus), expected)


def test_token_contributions_sum_to_scores():
    rng = np.random.default_rng(3)
    Hp, Hm = rng.normal(size=(6, 4)), rng.normal(size=(9, 4))
    Sp, Sm = Hp.sum(0)[None], Hm.sum(0)[None]
    assert metrics.token_contributions(Hp, Hm, "ches").sum() == pytest.approx(metrics.ches(Sp, Sm)[0])
    assert metrics.token_contributions(Hp, Hm, "ln_ches").sum() == pytest.approx(metrics.ln_ches(Sp, Sm, [6], [9])[0])
    with pytest.raises(ValueError):
        metrics.token_contributions(Hp, Hm, "edit_sim")
