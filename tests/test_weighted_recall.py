"""Tests for sklearn_mtr.metrics.weighted_recall_at_k."""

import numpy as np
import pandas as pd
import pytest

from sklearn_mtr import metrics
from sklearn_mtr.metrics import weighted_recall_at_k


def brute_force(Y, score, k, weights, groups):
    """Pooled per-type recall of the per-request top k (no ties), weighted mean."""
    Y = np.asarray(Y, dtype=float)
    in_top = np.zeros(len(score), dtype=bool)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        in_top[rows[np.argsort(-score[rows])[:k]]] = True
    recalls, ws = [], []
    for j in range(Y.shape[1]):
        pos = Y[:, j] == 1
        if pos.sum():
            recalls.append((pos & in_top).sum() / pos.sum())
            ws.append(weights[j])
    return np.average(recalls, weights=ws)


def test_exported():
    assert "weighted_recall_at_k" in metrics.__all__


def test_docstring_example_and_single_request():
    y = np.array([[1, 0], [1, 1], [0, 0], [1, 0]])
    score = np.array([0.9, 0.2, 0.8, 0.1])
    assert weighted_recall_at_k(y, score, k=2, weights=[1, 2]) == pytest.approx((1 / 3 + 2 * 0) / 3)
    assert weighted_recall_at_k(y, score, k=2) == pytest.approx((1 / 3 + 0) / 2)
    assert weighted_recall_at_k(y, score, k=4) == 1.0
    assert weighted_recall_at_k(y[:, 0], score, k=1) == pytest.approx(1 / 3)


def test_matches_brute_force_per_request():
    rng = np.random.default_rng(0)
    n = 300
    groups = rng.integers(0, 20, n)
    score = rng.permutation(n).astype(float)  # distinct scores: no ties
    Y = np.zeros((n, 3))
    Y[:, 0] = rng.random(n) < 0.4
    Y[:, 1] = Y[:, 0] * (rng.random(n) < 0.5)
    Y[:, 2] = Y[:, 1] * (rng.random(n) < 0.5)
    w = [1.0, 2.0, 5.0]
    for k in (1, 3, 10, 50):
        expected = brute_force(Y, score, k, w, groups)
        assert weighted_recall_at_k(Y, score, k=k, weights=w, groups=groups) == pytest.approx(expected)
        assert weighted_recall_at_k(Y, score, k=k, weights=w, groups=pd.Series(groups).astype(str)) == pytest.approx(
            expected
        )


def test_grouping_changes_the_ranking_scope():
    y = np.array([1, 0, 1, 0])
    score = np.array([0.9, 0.8, 0.2, 0.1])
    assert weighted_recall_at_k(y, score, k=1) == 0.5
    assert weighted_recall_at_k(y, score, k=1, groups=["a", "a", "b", "b"]) == 1.0


def test_ties_share_the_boundary_places_and_row_order_does_not_matter():
    y = np.array([1, 0, 0, 0])
    score = np.zeros(4)
    assert weighted_recall_at_k(y, score, k=1) == pytest.approx(0.25)
    assert weighted_recall_at_k(y, score, k=2) == pytest.approx(0.5)
    y2 = np.array([1, 1, 0, 0, 0])
    s2 = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    # row 0 in; one place left for three tied rows (1/3 each)
    assert weighted_recall_at_k(y2, s2, k=2) == pytest.approx((1 + 1 / 3) / 2)
    perm = np.array([4, 2, 0, 3, 1])
    assert weighted_recall_at_k(y2[perm], s2[perm], k=2) == pytest.approx((1 + 1 / 3) / 2)


def test_missing_labels_and_types_without_positives():
    y = np.array([[1, np.nan], [np.nan, 0], [0, 0]])
    score = np.array([0.1, 0.9, 0.5])
    # type 1 has no positive: left out; type 0: its positive is ranked last
    assert weighted_recall_at_k(y, score, k=2, weights=[1, 10]) == 0.0
    assert np.isnan(weighted_recall_at_k(np.zeros((3, 2)), score, k=1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "k must be"),
        ({"k": 2.5}, "k must be"),
        ({"weights": [1.0]}, "weights"),
        ({"weights": [1.0, -1.0]}, "weights"),
        ({"weights": [0.0, 0.0]}, "weights"),
        ({"groups": [0, 1]}, "groups"),
    ],
)
def test_invalid_parameters(kwargs, match):
    y = np.array([[1, 0], [0, 1], [1, 1]])
    with pytest.raises(ValueError, match=match):
        weighted_recall_at_k(y, np.array([0.1, 0.2, 0.3]), **kwargs)


def test_invalid_inputs():
    y = np.array([[1, 0], [0, 1], [1, 1]])
    with pytest.raises(ValueError, match="one ranking score"):
        weighted_recall_at_k(y, np.ones((3, 2)))
    with pytest.raises(ValueError, match="rows"):
        weighted_recall_at_k(y, np.ones(4))
    with pytest.raises(ValueError, match="NaN or infinite"):
        weighted_recall_at_k(y, np.array([0.1, np.nan, 0.2]))
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        weighted_recall_at_k(np.array([2, 0, 1]), np.array([0.1, 0.2, 0.3]))
