"""Tests for sklearn_mtr.datasets."""

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklearn_mtr.datasets import (
    _make_multitask_continuous,
    load_census_income,
    make_multitask_classification,
)

SAMPLE_DIR = Path(__file__).resolve().parent / "data" / "census_income_sample"


def _shared_data_dir():
    # the repository is cloned next to shared/; SKLEARN_MTR_SHARED_DATA overrides
    env = os.environ.get("SKLEARN_MTR_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


CENSUS_DIR = _shared_data_dir() / "census_income_kdd"

# ---------------------------------------------------------------------------
# make_multitask_classification
# ---------------------------------------------------------------------------


def test_shapes_and_dtypes():
    X, Y = make_multitask_classification(n_samples=200, n_features=6, n_tasks=3, random_state=0)
    assert X.shape == (200, 6) and X.dtype == np.float64
    assert Y.shape == (200, 3) and np.issubdtype(Y.dtype, np.integer)
    assert set(np.unique(Y)) == {0, 1}


def test_single_task():
    _, Y = make_multitask_classification(n_samples=50, n_features=3, n_tasks=1, random_state=0)
    assert Y.shape == (50, 1)


def test_determinism():
    kwargs = {"n_samples": 100, "n_categorical": 2, "label_mode": "bernoulli"}
    X1, Y1 = make_multitask_classification(**kwargs, random_state=3)
    X2, Y2 = make_multitask_classification(**kwargs, random_state=np.random.RandomState(3))
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(Y1, Y2)
    X3, _ = make_multitask_classification(**kwargs, random_state=4)
    assert not np.allclose(X1, X3)


def test_median_labels_are_balanced():
    _, Y = make_multitask_classification(n_samples=300, n_tasks=4, random_state=0)
    np.testing.assert_array_equal(Y.mean(axis=0), 0.5)


def test_bernoulli_labels_are_noisy_but_balanced():
    _, Y_median = make_multitask_classification(n_samples=2000, random_state=0)
    _, Y_bern = make_multitask_classification(n_samples=2000, label_mode="bernoulli", random_state=0)
    assert set(np.unique(Y_bern)) == {0, 1}
    assert np.all(np.abs(Y_bern.mean(axis=0) - 0.5) < 0.05)
    # same continuous targets, so the labels mostly agree but not always
    agreement = (Y_bern == Y_median).mean()
    assert 0.6 < agreement < 0.95


@pytest.mark.parametrize("p", [-0.9, 0.0, 0.5, 1.0])
def test_task_weights_have_the_requested_cosines(p):
    rng = np.random.RandomState(0)
    _, _, W = _make_multitask_continuous(10, 8, 4, p, 10, 0.01, rng)
    gram = W.T @ W
    np.testing.assert_allclose(np.diag(gram), 1.0, atol=1e-12)
    np.testing.assert_allclose(gram[0, 1:], p, atol=1e-12)
    # tasks k, j >= 1 share only the u_0 component: cosine p^2
    np.testing.assert_allclose(gram[1, 2:], p**2, atol=1e-12)


@pytest.mark.parametrize("p", [-0.9, 0.0, 0.9])
def test_target_correlation_follows_task_correlation(p):
    rng = np.random.RandomState(0)
    _, Y_cont, _ = _make_multitask_continuous(4000, 16, 2, p, 10, 0.01, rng)
    corr = np.corrcoef(Y_cont.T)[0, 1]
    # the sinusoids shrink the correlation (about 0.45 for p=0.9) but keep its sign
    if p == 0:
        assert abs(corr) < 0.1
    else:
        assert np.sign(corr) == np.sign(p)
        assert 0.3 < abs(corr) < abs(p)

    # without the non-linear part the targets are correlated by exactly p
    rng = np.random.RandomState(0)
    _, Y_lin, _ = _make_multitask_continuous(4000, 16, 2, p, 0, 0.01, rng)
    assert np.corrcoef(Y_lin.T)[0, 1] == pytest.approx(p, abs=0.05)


def test_binary_labels_follow_task_correlation():
    corrs = []
    for p in (-0.9, 0.0, 0.9):
        _, Y = make_multitask_classification(n_samples=3000, task_correlation=p, random_state=0)
        corrs.append(np.corrcoef(Y.T)[0, 1])
    assert corrs[0] < -0.1 < corrs[1] < 0.1 < corrs[2]


def test_categorical_columns_array():
    X, Y = make_multitask_classification(n_samples=400, n_features=6, n_categorical=2, n_categories=5, random_state=0)
    cats = X[:, -2:]
    np.testing.assert_array_equal(cats, np.round(cats))
    for j in range(2):
        levels, counts = np.unique(cats[:, j], return_counts=True)
        np.testing.assert_array_equal(levels, np.arange(5))
        # equal-probability bins: about 80 rows each
        assert counts.min() > 40
    # numeric columns are left continuous
    assert len(np.unique(X[:, 0])) == 400

    # labels come from the continuous features: binning does not change them
    _, Y_plain = make_multitask_classification(n_samples=400, n_features=6, random_state=0)
    np.testing.assert_array_equal(Y, Y_plain)


def test_as_frame():
    kwargs = {"n_samples": 120, "n_features": 5, "n_tasks": 3, "n_categorical": 2}
    X, Y = make_multitask_classification(**kwargs, as_frame=True, random_state=1)
    X_arr, Y_arr = make_multitask_classification(**kwargs, random_state=1)
    assert isinstance(X, pd.DataFrame) and isinstance(Y, pd.DataFrame)
    assert list(X.columns) == ["x0", "x1", "x2", "cat0", "cat1"]
    assert list(Y.columns) == ["task0", "task1", "task2"]
    assert all(X[c].dtype == np.float64 for c in ["x0", "x1", "x2"])
    for j, column in enumerate(["cat0", "cat1"]):
        assert isinstance(X[column].dtype, pd.CategoricalDtype)
        assert list(X[column].cat.categories) == [f"c{c}" for c in range(8)]
        np.testing.assert_array_equal(X[column].cat.codes, X_arr[:, 3 + j])
    np.testing.assert_array_equal(X[["x0", "x1", "x2"]].to_numpy(), X_arr[:, :3])
    np.testing.assert_array_equal(Y.to_numpy(), Y_arr)
    assert all(np.issubdtype(dtype, np.integer) for dtype in Y.dtypes)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": 2.5}, "n_samples"),
        ({"n_features": 0}, "n_features"),
        ({"n_tasks": 0}, "n_tasks"),
        ({"n_tasks": True}, "n_tasks"),
        ({"n_features": 2, "n_tasks": 3}, "n_features must be >= n_tasks"),
        ({"task_correlation": 1.5}, "task_correlation"),
        ({"task_correlation": -1.01}, "task_correlation"),
        ({"task_correlation": float("nan")}, "task_correlation"),
        ({"task_correlation": "high"}, "task_correlation"),
        ({"n_sinusoids": -1}, "n_sinusoids"),
        ({"noise": -0.1}, "noise"),
        ({"n_categorical": -1}, "n_categorical"),
        ({"n_features": 4, "n_categorical": 5}, "n_categorical must be <= n_features"),
        ({"n_categorical": 2, "n_categories": 1}, "n_categories"),
        ({"label_mode": "mean"}, "label_mode"),
        ({"as_frame": "yes"}, "as_frame"),
    ],
)
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_multitask_classification(**{"n_samples": 10, **kwargs})


# ---------------------------------------------------------------------------
# load_census_income: the shipped sample
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def census_sample():
    return load_census_income(SAMPLE_DIR)


def _raw_lines(path):
    with gzip.open(path, "rt") as f:
        return [line.rstrip("\n").split(", ") for line in f]


def test_sample_shapes_and_columns(census_sample):
    data = census_sample
    assert data.X_train.shape == (300, 39)
    assert len(data.X_valid) + len(data.X_test) == 200
    assert len(data.X_valid) == 100 and len(data.X_test) == 100
    assert data.task_names == ["income", "never_married"]
    for name in ("income_50k", "marital_stat", "instance_weight"):
        assert name not in data.feature_names
    assert "det_hh_fam_stat" in data.feature_names
    for X in (data.X_train, data.X_valid, data.X_test):
        assert list(X.columns) == data.feature_names
    for Y in (data.Y_train, data.Y_valid, data.Y_test):
        assert list(Y.columns) == ["income", "never_married"]
        assert all(np.issubdtype(dtype, np.integer) for dtype in Y.dtypes)
    assert data.sample_weight_train.shape == (300,)
    assert data.sample_weight_valid.shape == data.sample_weight_test.shape == (100,)
    assert np.all(data.sample_weight_train > 0)


def test_sample_dtypes(census_sample):
    data = census_sample
    continuous = [
        "age",
        "wage_per_hour",
        "capital_gains",
        "capital_losses",
        "stock_dividends",
        "num_emp",
        "weeks_worked",
    ]
    assert sorted(data.categorical_features) == sorted(set(data.feature_names) - set(continuous))
    for column in continuous:
        assert data.X_train[column].dtype == np.float64
    for column in data.categorical_features:
        dtype = data.X_train[column].dtype
        assert isinstance(dtype, pd.CategoricalDtype)
        assert data.X_valid[column].dtype == dtype == data.X_test[column].dtype
        levels = list(dtype.categories)
        assert all(isinstance(level, str) for level in levels)
        assert levels == sorted(levels)
        assert all(level == level.strip() for level in levels)
        assert not data.X_train[column].isna().any()
    # integer codes become string levels; "?" is a level of its own
    assert "0" in data.X_train["det_ind_code"].cat.categories
    assert "?" in data.X_train["mig_chg_msa"].cat.categories
    assert set(data.X_train["year"].cat.categories) == {"94", "95"}


def test_sample_labels_match_raw_files(census_sample):
    data = census_sample
    train = _raw_lines(SAMPLE_DIR / "census-income.data.gz")
    test = _raw_lines(SAMPLE_DIR / "census-income.test.gz")
    income = np.array([row[-1] == "50000+." for row in train])
    never = np.array([row[7] == "Never married" for row in train])
    np.testing.assert_array_equal(data.Y_train["income"], income)
    np.testing.assert_array_equal(data.Y_train["never_married"], never)
    # the sample has positives of both tasks, in train and in valid + test
    assert 0 < income.sum() and 0 < never.sum()
    Y_rest = pd.concat([data.Y_valid, data.Y_test])
    assert Y_rest["income"].sum() == sum(row[-1] == "50000+." for row in test) > 0
    assert Y_rest["never_married"].sum() == sum(row[7] == "Never married" for row in test) > 0
    np.testing.assert_allclose(data.sample_weight_train, [float(row[24]) for row in train])
    np.testing.assert_allclose(
        np.sort(np.r_[data.sample_weight_valid, data.sample_weight_test]),
        np.sort([float(row[24]) for row in test]),
    )


def test_sample_split_is_seeded():
    a = load_census_income(SAMPLE_DIR, split_random_state=0)
    b = load_census_income(SAMPLE_DIR, split_random_state=0)
    c = load_census_income(SAMPLE_DIR, split_random_state=1)
    pd.testing.assert_frame_equal(a.X_valid, b.X_valid)
    np.testing.assert_array_equal(a.sample_weight_test, b.sample_weight_test)
    assert not np.array_equal(a.sample_weight_valid, c.sample_weight_valid)


def test_sample_drop_leaky_and_descr():
    data = load_census_income(SAMPLE_DIR, drop_leaky=True)
    assert data.X_train.shape == (300, 37)
    for name in ("det_hh_fam_stat", "det_hh_summ"):
        assert name not in data.feature_names
        assert name not in data.categorical_features
    descr = " ".join(data.DESCR.split())
    for text in ("UCI Machine Learning Repository", "Lane", "Kohavi", "CC BY 4.0"):
        assert text in descr


def test_env_var_and_missing_files(monkeypatch, tmp_path):
    monkeypatch.setenv("SKLEARN_MTR_CENSUS_PATH", str(SAMPLE_DIR))
    assert load_census_income().X_train.shape == (300, 39)

    monkeypatch.delenv("SKLEARN_MTR_CENSUS_PATH")
    with pytest.raises(FileNotFoundError, match="SKLEARN_MTR_CENSUS_PATH") as info:
        load_census_income()
    assert "archive.ics.uci.edu" in str(info.value)
    with pytest.raises(FileNotFoundError, match="census-income.data"):
        load_census_income(tmp_path)


def test_uncompressed_file_names(tmp_path):
    for stem in ("census-income.data", "census-income.test"):
        with gzip.open(SAMPLE_DIR / f"{stem}.gz", "rb") as src, open(tmp_path / stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    data = load_census_income(tmp_path)
    reference = load_census_income(SAMPLE_DIR)
    pd.testing.assert_frame_equal(data.X_train, reference.X_train)
    pd.testing.assert_frame_equal(data.Y_test, reference.Y_test)


def test_invalid_drop_leaky():
    with pytest.raises(ValueError, match="drop_leaky"):
        load_census_income(SAMPLE_DIR, drop_leaky="yes")


# ---------------------------------------------------------------------------
# load_census_income: the real files, when the shared data folder is there
# ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    not (CENSUS_DIR / "census-income.data.gz").is_file(),
    reason=f"real Census-Income files not found in {CENSUS_DIR}",
)
def test_real_census_income():
    data = load_census_income(CENSUS_DIR)
    assert data.X_train.shape == (199_523, 39)
    assert len(data.X_valid) + len(data.X_test) == 99_762
    assert abs(len(data.X_valid) - len(data.X_test)) <= 1
    rates = data.Y_train.mean()
    assert rates["income"] == pytest.approx(0.0621, abs=0.0005)
    assert rates["never_married"] == pytest.approx(0.4335, abs=0.0005)
    rest = pd.concat([data.Y_valid, data.Y_test]).mean()
    assert rest["income"] == pytest.approx(0.0620, abs=0.0005)
    assert rest["never_married"] == pytest.approx(0.4325, abs=0.0005)
    for column in data.categorical_features:
        assert data.X_train[column].dtype == data.X_test[column].dtype
    assert "?" in data.X_train["country_self"].cat.categories
