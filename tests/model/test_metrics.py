"""Reproducibility metrics against hand-computed cases and a brute-force reference."""

import itertools
import math

import numpy as np
import pytest

from steadyrank.model.measures import metrics


def test_prediction_difference_by_hand():
    assert metrics.relative_pd([1.0, 2.0], [3.0, 2.0]) == pytest.approx(0.5)  # 2/2, 0
    assert metrics.absolute_pd([1.0, 2.0], [3.0, 2.0]) == pytest.approx(1.0)
    # Both zero counts as no difference; opposite signs: |1 - -1| / ((1 + 1) / 2) = 2.
    assert metrics.relative_pd([0.0, 1.0], [0.0, -1.0]) == pytest.approx(1.0)
    np.testing.assert_allclose(metrics.relative_pd_per_example([4.0, 0.0], [2.0, 0.0]),
                               [2 / 3, 0.0])


def test_identical_predictions_have_zero_difference():
    p = np.random.default_rng(0).normal(size=100)
    assert metrics.relative_pd(p, p) == 0.0 and metrics.absolute_pd(p, p) == 0.0
    scores = np.random.default_rng(1).normal(size=(5, 30))
    assert metrics.topk_swap_rate(scores, scores, 10) == 0.0
    assert metrics.kendall_tau(scores[0], scores[0]) == pytest.approx(1.0)


def test_topk_swap_by_hand():
    a = np.array([[5, 4, 3, 2], [1, 2, 3, 4]], float)
    b = np.array([[4, 5, 1, 3], [4, 3, 2, 1]], float)
    np.testing.assert_allclose(metrics.topk_swap(a, b, 2), [0.0, 1.0])
    assert metrics.topk_swap_rate(a, b, 2) == pytest.approx(0.5)
    # k = 3: row 0 {0,1,2} vs {1,0,3} share 2 -> 1/3; row 1 {3,2,1} vs {0,1,2} share 2.
    np.testing.assert_allclose(metrics.topk_swap(a, b, 3), [1 / 3, 1 / 3])
    assert metrics.topk_swap_rate(a[0], b[0], 1) == 1.0  # 1-D input is one request
    assert metrics.topk_swap_rate(a, b, 4) == 0.0  # all candidates: nothing can swap


def test_topk_ties_go_to_the_earlier_candidate():
    np.testing.assert_array_equal(metrics.topk_indices(np.array([1.0, 3.0, 3.0, 1.0]), 3),
                                  [1, 2, 0])


def _tau_b_reference(x, y):
    """Kendall's tau-b from its definition, in float64 over all pairs."""
    c = d = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        if sx == 0 and sy == 0:
            continue
        if sx == 0:
            tx += 1
        elif sy == 0:
            ty += 1
        elif sx == sy:
            c += 1
        else:
            d += 1
    return (c - d) / math.sqrt((c + d + tx) * (c + d + ty))


def test_kendall_tau_by_hand_and_against_the_definition():
    assert metrics.kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert metrics.kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert metrics.kendall_tau([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(30))
    assert metrics.kendall_tau([1, 1, 1], [1, 2, 3]) == 0.0  # undefined -> 0
    rng = np.random.default_rng(3)
    x = rng.integers(0, 6, 60).astype(float)  # many ties
    y = x + rng.integers(-2, 3, 60)
    assert metrics.kendall_tau(x, y) == pytest.approx(_tau_b_reference(x, y))
    assert metrics.kendall_tau([1.0], [2.0]) == 0.0


def test_kendall_tau_of_a_long_list_equals_the_pairwise_count():
    # A catalog-sized list against the pairwise definition (kendall_tau_rows), with ties.
    rng = np.random.default_rng(4)
    x = np.round(rng.normal(size=3000), 2)
    y = np.round(x + rng.normal(scale=0.5, size=3000), 1)
    pairwise = metrics.kendall_tau_rows(x[None, :], y[None, :])[0]
    assert metrics.kendall_tau(x, y) == pytest.approx(pairwise, rel=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("max_elements", [4_000_000, 1])  # vectorised, and row by row
def test_kendall_tau_rows_equals_the_definition_per_row(dtype, max_elements):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 8, (6, 40)).astype(dtype)  # ties in both lists
    y = (x + rng.integers(-3, 4, (6, 40))).astype(dtype)
    y[2] = 1.0  # a constant row: undefined -> 0
    got = metrics.kendall_tau_rows(x, y, max_elements=max_elements)
    want = [_tau_b_reference(x[i], y[i]) if i != 2 else 0.0 for i in range(6)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    close = np.array([[1.0, 1.0 + 1e-7, 2.0]], np.float32)  # distinct only in float32
    assert metrics.kendall_tau_rows(close, close)[0] == pytest.approx(1.0)


@pytest.mark.parametrize("call, message", [
    (lambda: metrics.relative_pd([1.0, 2.0], [1.0]), "shapes differ"),
    (lambda: metrics.absolute_pd([], []), "no predictions"),
    (lambda: metrics.relative_pd([np.nan], [1.0]), "finite"),
    (lambda: metrics.topk_swap_rate([[1.0, 2.0]], [[2.0, 1.0]], 3), r"k must be in \[1, 2\]"),
    (lambda: metrics.topk_swap_rate([[1.0, 2.0]], [[2.0, 1.0]], 0), "k must be"),
    (lambda: metrics.kendall_tau([[1.0]], [[1.0]]), "1-D"),
    (lambda: metrics.kendall_tau_rows([1.0, 2.0], [1.0, 2.0]), "2-D"),
])
def test_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()
