"""make_request_classification: requests whose labels depend on the other candidates."""

import numpy as np
import pandas as pd
import pytest

from sklearn_mtr.datasets import make_request_classification


def test_shapes_counts_and_request_level_user():
    X, Y, groups = make_request_classification(n_requests=30, request_size=10, n_features=5, random_state=0)
    assert X.shape == (300, 6) and Y.shape == (300, 2) and groups.shape == (300,)
    assert np.array_equal(groups, np.repeat(np.arange(30), 10))
    clicks = pd.Series(Y[:, 0]).groupby(groups).sum()
    assert (clicks == 3).all()  # click_rate 0.3 of 10, in every request
    assert (Y[:, 1] <= Y[:, 0]).all()  # a buy is a click
    assert (pd.Series(X[:, -1]).groupby(groups).nunique() == 1).all()  # user: one per request


def test_clicks_depend_on_the_request_only_through_its_mean():
    # Centres are drawn as request_spread * N(0, I): the same draws for every spread, so a
    # larger spread translates each request. Relative to the request mean the clicks do not
    # move; relative to zero (set_dependence=0) they do.
    def clicks(spread, dependence):
        _, Y, _ = make_request_classification(
            n_requests=40, request_spread=spread, set_dependence=dependence, noise=0.0, random_state=1
        )
        return Y[:, 0]

    assert np.array_equal(clicks(0.0, 1.0), clicks(5.0, 1.0))
    assert not np.array_equal(clicks(0.0, 0.0), clicks(5.0, 0.0))


def test_frame_output():
    X, Y, groups = make_request_classification(
        n_requests=5, request_size=4, n_features=3, as_frame=True, random_state=0
    )
    assert list(X.columns) == ["x0", "x1", "x2", "user"] and X["user"].dtype == "category"
    assert list(Y.columns) == ["click", "buy"] and len(groups) == 20


@pytest.mark.parametrize(
    "params, match",
    [
        ({"request_size": 1}, "request_size"),
        ({"n_features": 1}, "n_features"),
        ({"click_rate": 1.0}, "click_rate"),
        ({"noise": -1.0}, "noise"),
        ({"set_dependence": float("nan")}, "set_dependence"),
        ({"as_frame": "yes"}, "as_frame"),
    ],
)
def test_bad_parameters_raise(params, match):
    with pytest.raises(ValueError, match=match):
        make_request_classification(**params)
