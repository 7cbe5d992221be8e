"""Tests for sklearn_mtr.datasets.make_funnel_classification."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from sklearn_mtr.datasets import make_funnel_classification


def test_shapes_dtypes_and_nesting():
    X, Y = make_funnel_classification(
        n_samples=500, n_features=6, n_stages=3, stage_rates=(0.5, 0.4, 0.3), random_state=0
    )
    assert X.shape == (500, 6) and X.dtype == np.float64
    assert Y.shape == (500, 3) and np.issubdtype(Y.dtype, np.integer)
    assert set(np.unique(Y)) <= {0, 1}
    assert np.all(Y[:, 1:] <= Y[:, :-1])  # a later stage implies the earlier ones


@pytest.mark.parametrize("rates", [(0.2, 0.1), (0.5, 0.8), (0.05, 0.5)])
def test_conditional_rates_are_met(rates):
    _, Y = make_funnel_classification(n_samples=4000, stage_rates=rates, random_state=0)
    assert Y[:, 0].mean() == pytest.approx(rates[0], abs=1e-3)
    assert Y[Y[:, 0] == 1, 1].mean() == pytest.approx(rates[1], abs=2e-3)
    assert Y[:, 1].mean() == pytest.approx(rates[0] * rates[1], abs=1e-3)


def test_labels_are_learnable_from_features():
    X, Y = make_funnel_classification(n_samples=3000, n_features=8, stage_rates=(0.3, 0.3), random_state=0)
    from sklearn.linear_model import LogisticRegression

    for t in range(2):
        auc = roc_auc_score(Y[:, t], LogisticRegression().fit(X, Y[:, t]).decision_function(X))
        assert auc > 0.75


def test_reproducible_and_seed_dependent():
    a = make_funnel_classification(n_samples=100, random_state=3)
    b = make_funnel_classification(n_samples=100, random_state=3)
    c = make_funnel_classification(n_samples=100, random_state=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_as_frame_and_categorical():
    X, Y = make_funnel_classification(n_samples=200, n_features=5, n_categorical=2, as_frame=True, random_state=0)
    assert isinstance(X, pd.DataFrame) and isinstance(Y, pd.DataFrame)
    assert list(X.columns) == ["x0", "x1", "x2", "cat0", "cat1"]
    assert isinstance(X["cat0"].dtype, pd.CategoricalDtype)
    assert X["cat0"].cat.categories.tolist() == [f"c{i}" for i in range(8)]
    assert list(Y.columns) == ["stage0", "stage1"]
    Xa, Ya = make_funnel_classification(n_samples=200, n_features=5, n_categorical=2, random_state=0)
    np.testing.assert_array_equal(Xa[:, 3:], X[["cat0", "cat1"]].apply(lambda s: s.cat.codes).to_numpy())
    np.testing.assert_array_equal(Ya, Y.to_numpy())


def test_single_stage():
    _, Y = make_funnel_classification(n_samples=100, n_stages=1, stage_rates=(0.3,), random_state=0)
    assert Y.shape == (100, 1) and Y.mean() == pytest.approx(0.3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_stages": 3}, "one rate per stage"),
        ({"stage_rates": (0.2, 1.0)}, r"in \(0, 1\)"),
        ({"stage_rates": (0.0, 0.5)}, r"in \(0, 1\)"),
        ({"stage_rates": "ab"}, "stage_rates"),
        ({"n_features": 2}, "n_features"),
        ({"n_samples": 0}, "n_samples"),
        ({"n_categorical": 20}, "n_categorical"),
        ({"as_frame": "yes"}, "as_frame"),
    ],
)
def test_invalid_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_funnel_classification(**{"n_samples": 50, **kwargs})
