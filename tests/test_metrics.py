"""Tests for sklearn_mtr.metrics."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import get_scorer, log_loss, roc_auc_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.neural_network import MLPClassifier

from sklearn_mtr.metrics import (
    gauc_scorer,
    group_auc_score,
    mean_auc_scorer,
    mean_group_auc_score,
    mean_log_loss,
    mean_log_loss_scorer,
    mean_roc_auc_score,
    per_task_log_loss,
    per_task_roc_auc,
)


@pytest.fixture
def multitask_data():
    rng = np.random.default_rng(0)
    n, k = 60, 3
    Y_true = rng.integers(0, 2, size=(n, k)).astype(float)
    # scores correlated with the labels, rounded so that there are ties
    Y_score = np.clip(0.3 * Y_true + rng.uniform(size=(n, k)) * 0.7, 0, 1).round(1)
    weight = rng.uniform(0.1, 2.0, size=n)
    return Y_true, Y_score, weight


@pytest.fixture
def mlp_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 4))
    Y = (X[:, :3] + 0.7 * rng.normal(size=(90, 3)) > 0).astype(int)
    groups = rng.integers(0, 6, size=90)
    return X, Y, groups


def _mlp(**params):
    return MLPClassifier(hidden_layer_sizes=(8,), max_iter=60, random_state=0, **params)


# ---------------------------------------------------------------------------
# per-task metrics
# ---------------------------------------------------------------------------


def test_per_task_roc_auc_matches_sklearn(multitask_data):
    Y_true, Y_score, weight = multitask_data
    expected = [roc_auc_score(Y_true[:, k], Y_score[:, k]) for k in range(3)]
    np.testing.assert_allclose(per_task_roc_auc(Y_true, Y_score), expected)
    expected_w = [roc_auc_score(Y_true[:, k], Y_score[:, k], sample_weight=weight) for k in range(3)]
    np.testing.assert_allclose(per_task_roc_auc(Y_true, Y_score, sample_weight=weight), expected_w)
    assert mean_roc_auc_score(Y_true, Y_score) == pytest.approx(np.mean(expected))


def test_per_task_roc_auc_matches_sklearn_with_tied_scores():
    # The unweighted path ranks the scores; ties (rounded probabilities, constant scores) take
    # their average rank, which is the trapezoidal area sklearn computes.
    rng = np.random.default_rng(1)
    Y_true = rng.integers(0, 2, size=(500, 3)).astype(float)
    Y_score = np.column_stack(
        [np.round(rng.random(500) + 0.3 * Y_true[:, 0], 1), np.full(500, 0.5), rng.integers(0, 3, 500) * 0.1]
    )
    expected = [roc_auc_score(Y_true[:, k], Y_score[:, k]) for k in range(3)]
    np.testing.assert_allclose(per_task_roc_auc(Y_true, Y_score), expected, rtol=0, atol=1e-12)
    assert expected[1] == 0.5


def test_per_task_roc_auc_masks_missing_labels(multitask_data):
    Y_true, Y_score, weight = multitask_data
    Y_missing = Y_true.copy()
    Y_missing[::3, 0] = np.nan
    Y_missing[1::4, 2] = np.nan
    auc = per_task_roc_auc(Y_missing, Y_score, sample_weight=weight)
    for k in range(3):
        rows = ~np.isnan(Y_missing[:, k])
        assert auc[k] == pytest.approx(roc_auc_score(Y_true[rows, k], Y_score[rows, k], sample_weight=weight[rows]))


def test_single_class_task_gives_nan_without_warning():
    Y_true = np.array([[0, 1], [1, 1], [0, np.nan], [1, 1]])
    Y_score = np.array([[0.2, 0.3], [0.9, 0.4], [0.1, 0.5], [0.7, 0.6]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auc = per_task_roc_auc(Y_true, Y_score)
        assert auc[0] == 1.0 and np.isnan(auc[1])
        assert mean_roc_auc_score(Y_true, Y_score) == 1.0
        # every task undefined: NaN, and no "mean of empty slice" warning
        assert np.isnan(mean_roc_auc_score(Y_true[:, 1], Y_score[:, 1]))


def test_one_dimensional_input():
    y = np.array([0, 1, 1, 0])
    s = np.array([0.1, 0.8, 0.6, 0.3])
    assert per_task_roc_auc(y, s).shape == (1,)
    assert mean_roc_auc_score(y, s) == 1.0
    assert per_task_log_loss(y, s) == pytest.approx(log_loss(y, s))


def test_pandas_input_with_missing_labels():
    Y_true = pd.DataFrame({"a": [0, 1, pd.NA, 1], "b": [1, 0, 1, 0]}, dtype="Int64")
    Y_score = pd.DataFrame({"a": [0.1, 0.9, 0.5, 0.8], "b": [0.7, 0.2, 0.9, 0.4]})
    np.testing.assert_allclose(per_task_roc_auc(Y_true, Y_score), [1.0, 1.0])


def test_per_task_log_loss_matches_sklearn(multitask_data):
    Y_true, Y_score, weight = multitask_data
    Y_score = np.clip(Y_score, 0.05, 0.95)
    expected = [log_loss(Y_true[:, k], Y_score[:, k], sample_weight=weight) for k in range(3)]
    got = per_task_log_loss(Y_true, Y_score, sample_weight=weight)
    np.testing.assert_allclose(got, expected)
    assert mean_log_loss(Y_true, Y_score, sample_weight=weight) == pytest.approx(np.mean(expected))


def test_per_task_log_loss_masks_and_clips():
    Y_true = np.array([[1, np.nan], [0, np.nan], [1, np.nan]])
    Y_score = np.array([[1.0, 0.5], [0.0, 0.5], [0.0, 0.5]])
    loss = per_task_log_loss(Y_true, Y_score, eps=1e-7)
    # one confident mistake, clipped to 1e-7: -log(1e-7) / 3
    assert loss[0] == pytest.approx(-np.log(1e-7) / 3, rel=1e-6)
    assert np.isnan(loss[1])
    assert mean_log_loss(Y_true, Y_score) == pytest.approx(loss[0])


def test_log_loss_rejects_scores_outside_unit_interval():
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*task 1"):
        per_task_log_loss(np.array([[0, 1], [1, 0]]), np.array([[0.2, 2.0], [0.8, -1]]))
    with pytest.raises(ValueError, match="eps"):
        per_task_log_loss([0, 1], [0.2, 0.8], eps=0)


def test_shape_mismatch_error_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 2\).*\(4, 3\)"):
        per_task_roc_auc(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"\(5,\).*\(4,\)"):
        mean_log_loss(np.zeros(5), np.zeros(4))
    # the usual mistake: passing predict_proba of a binary classifier
    with pytest.raises(ValueError, match=r"Y_score\[:, 1\]"):
        mean_roc_auc_score(np.array([0, 1]), np.array([[0.7, 0.3], [0.2, 0.8]]))


def test_invalid_labels_name_the_task():
    Y_true = np.array([[0, 1], [1, 2], [0, 0]])
    with pytest.raises(ValueError, match="task 1"):
        per_task_roc_auc(Y_true, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="task 0"):
        per_task_log_loss(np.array([-1, 0, 1]), np.array([0.1, 0.2, 0.3]))


def test_invalid_scores_and_weights():
    with pytest.raises(ValueError, match="NaN or infinite.*task 0"):
        per_task_roc_auc(np.array([0, 1]), np.array([np.nan, 0.3]))
    with pytest.raises(ValueError, match="sample_weight"):
        per_task_roc_auc(np.array([0, 1]), np.array([0.2, 0.3]), sample_weight=[1])
    with pytest.raises(ValueError, match="non-negative"):
        per_task_roc_auc(np.array([0, 1]), np.array([0.2, 0.3]), sample_weight=[1, -1])


# ---------------------------------------------------------------------------
# group AUC
# ---------------------------------------------------------------------------


def _brute_force_gauc(y, s, groups, weight):
    aucs, sizes = [], []
    for g in np.unique(groups):
        rows = (groups == g) & ~np.isnan(y)
        if len(np.unique(y[rows])) == 2:
            aucs.append(roc_auc_score(y[rows], s[rows], sample_weight=weight[rows]))
            sizes.append(weight[rows].sum())
    return np.average(aucs, weights=sizes) if aucs else np.nan


def test_group_auc_matches_brute_force(multitask_data):
    Y_true, Y_score, weight = multitask_data
    Y_true = Y_true.copy()
    Y_true[::5, 1] = np.nan
    groups = np.random.default_rng(1).integers(0, 7, size=len(Y_true))
    ones = np.ones(len(Y_true))
    got = group_auc_score(Y_true, Y_score, groups)
    got_w = group_auc_score(Y_true, Y_score, groups, sample_weight=weight)
    assert got.shape == (3,)
    for k in range(3):
        assert got[k] == pytest.approx(_brute_force_gauc(Y_true[:, k], Y_score[:, k], groups, ones))
        assert got_w[k] == pytest.approx(_brute_force_gauc(Y_true[:, k], Y_score[:, k], groups, weight))
    assert mean_group_auc_score(Y_true, Y_score, groups) == pytest.approx(got.mean())


def test_group_auc_one_dimensional_and_string_groups():
    y = np.array([1, 0, 0, 1, 0, 1, 1])
    s = np.array([0.9, 0.1, 0.5, 0.2, 0.3, 0.4, 0.8])
    groups = ["a", "a", "a", "b", "b", "c", "c"]
    gauc = group_auc_score(y, s, groups)
    # a: AUC 1 on 3 rows, b: AUC 0 on 2 rows, c: a single class, left out
    assert isinstance(gauc, float)
    assert gauc == pytest.approx(0.6)
    # one group: GAUC is the plain AUC, ties included
    s_ties = np.array([0.5, 0.5, 0.1, 0.5, 0.9, 0.1, 0.3])
    assert group_auc_score(y, s_ties, np.zeros(7)) == pytest.approx(roc_auc_score(y, s_ties))


def test_group_auc_undefined_and_errors():
    y = np.array([1, 0, 1, 0])
    s = np.array([0.4, 0.3, 0.2, 0.1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(group_auc_score(y, s, [0, 1, 2, 3]))
        assert np.isnan(mean_group_auc_score(y, s, [0, 1, 2, 3]))
    with pytest.raises(ValueError, match="groups has 3 entries.*4 rows"):
        group_auc_score(y, s, [0, 0, 1])


# ---------------------------------------------------------------------------
# scorers
# ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("n_tasks", [1, 2, 3])
def test_scorers_match_metrics(mlp_data, n_tasks):
    X, Y, _ = mlp_data
    y = Y[:, 0] if n_tasks == 1 else Y[:, :n_tasks]
    est = _mlp().fit(X, y)
    proba = est.predict_proba(X)
    if n_tasks == 1:
        # a binary classifier: (n, 2), the positive class is column 1
        assert proba.shape == (len(X), 2)
        proba = proba[:, 1]
    assert mean_auc_scorer(est, X, y) == pytest.approx(mean_roc_auc_score(y, proba))
    assert mean_log_loss_scorer(est, X, y) == pytest.approx(-mean_log_loss(y, proba))
    assert mean_log_loss_scorer(est, X, y) < 0


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_two_task_scorer_uses_both_columns(mlp_data):
    # MLPClassifier on 2 labels has classes_ == [0, 1]: sklearn's response
    # processing takes that for a binary problem and keeps column 1 only
    X, Y, _ = mlp_data
    est = _mlp().fit(X, Y[:, :2])
    assert est.classes_.tolist() == [0, 1]
    with pytest.raises(ValueError):
        get_scorer("roc_auc")(est, X, Y[:, :2])
    proba = est.predict_proba(X)
    per_task = per_task_roc_auc(Y[:, :2], proba)
    assert mean_auc_scorer(est, X, Y[:, :2]) == pytest.approx(per_task.mean())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("n_tasks", [1, 2, 3])
def test_scorers_in_model_selection(mlp_data, n_tasks):
    X, Y, _ = mlp_data
    y = Y[:, 0] if n_tasks == 1 else Y[:, :n_tasks]
    scores = cross_val_score(_mlp(), X, y, cv=3, scoring=mean_auc_scorer, error_score="raise")
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    search = GridSearchCV(
        _mlp(),
        {"alpha": [1e-4, 1.0]},
        cv=3,
        scoring={"auc": mean_auc_scorer, "log_loss": mean_log_loss_scorer},
        refit="auc",
        error_score="raise",
    ).fit(X, y)
    assert 0 <= search.best_score_ <= 1
    assert np.all(search.cv_results_["mean_test_log_loss"] < 0)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_neg_log_loss_is_wrong_for_multilabel(mlp_data):
    X, Y, _ = mlp_data
    est = _mlp().fit(X, Y)
    proba = est.predict_proba(X)
    assert proba.shape == (len(X), 3)
    eps = 1e-7
    p = np.clip(proba, eps, 1 - eps)
    true_loss = -np.mean(Y * np.log(p) + (1 - Y) * np.log(1 - p))
    assert mean_log_loss_scorer(est, X, Y) == pytest.approx(-true_loss)

    with warnings.catch_warnings():
        # sklearn warns that the rows "do not sum to one"
        warnings.simplefilter("ignore", UserWarning)
        builtin = get_scorer("neg_log_loss")(est, X, Y)
    # the tasks are scored as the classes of one multiclass problem: only the
    # -log(p_k) of the positive labels count, after renormalising the rows in older
    # scikit-learn releases
    tiny = np.finfo(np.float64).eps
    multiclass = -np.mean(np.sum(Y * np.log(np.clip(proba, tiny, 1)), axis=1))
    renormalised = proba / proba.sum(axis=1, keepdims=True)
    multiclass_renorm = -np.mean(np.sum(Y * np.log(renormalised), axis=1))
    assert builtin == pytest.approx(-multiclass) or builtin == pytest.approx(-multiclass_renorm)
    assert abs(builtin - (-true_loss)) > 0.05


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_scorer_with_list_predict_proba(mlp_data):
    # RandomForestClassifier returns one (n, 2) array per output
    X, Y, _ = mlp_data
    est = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y[:, :2])
    proba = np.column_stack([p[:, 1] for p in est.predict_proba(X)])
    assert mean_auc_scorer(est, X, Y[:, :2]) == pytest.approx(mean_roc_auc_score(Y[:, :2], proba))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("n_tasks", [1, 2])
def test_gauc_scorer_with_metadata_routing(mlp_data, n_tasks):
    X, Y, groups = mlp_data
    y = Y[:, 0] if n_tasks == 1 else Y[:, :n_tasks]
    with sklearn.config_context(enable_metadata_routing=True):
        est = _mlp().fit(X, y)
        proba = est.predict_proba(X)
        proba = proba[:, 1] if n_tasks == 1 else proba
        direct = gauc_scorer(est, X, y, groups=groups)
        assert direct == pytest.approx(mean_group_auc_score(y, proba, groups))

        scores = cross_val_score(
            _mlp(),
            X,
            y,
            cv=3,
            scoring=gauc_scorer,
            params={"groups": groups},
            error_score="raise",
        )
        assert scores.shape == (3,) and np.all(np.isfinite(scores))
        search = GridSearchCV(
            _mlp(),
            {"alpha": [1e-4, 1.0]},
            cv=KFold(3),
            scoring=gauc_scorer,
            error_score="raise",
        ).fit(X, y, groups=groups)
        assert 0 <= search.best_score_ <= 1


class _SigmoidModel(ClassifierMixin, BaseEstimator):
    """Stand-in for the package's estimators: (n, k) output, (n, 2) for one task."""

    def fit(self, X, Y):
        Y = np.asarray(Y)
        self.n_tasks_ = 1 if Y.ndim == 1 else Y.shape[1]
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        proba = 1 / (1 + np.exp(-np.asarray(X)[:, : self.n_tasks_]))
        return np.column_stack([1 - proba, proba]) if self.n_tasks_ == 1 else proba


def test_scorers_with_missing_labels_and_one_task_column():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    Y = pd.DataFrame((X[:, :2] + rng.normal(size=(60, 2)) > 0).astype(float), columns=["a", "b"])
    Y.iloc[::4, 1] = np.nan
    # NaN labels: pass a plain KFold, sklearn's default stratified CV rejects NaN in y
    cv = KFold(3)
    scores = cross_val_score(_SigmoidModel(), X, Y, cv=cv, scoring=mean_auc_scorer, error_score="raise")
    assert np.all(np.isfinite(scores))
    est = _SigmoidModel().fit(X, Y)
    assert mean_auc_scorer(est, X, Y) == pytest.approx(mean_roc_auc_score(Y, est.predict_proba(X)))
    # a one-column DataFrame target gets the (n, 2) output of a single task
    est = _SigmoidModel().fit(X, Y[["a"]].to_numpy().ravel())
    proba = est.predict_proba(X)[:, 1]
    assert mean_log_loss_scorer(est, X, Y[["a"]]) == pytest.approx(-mean_log_loss(Y["a"], proba))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_gauc_scorer_without_groups_errors(mlp_data):
    X, Y, _ = mlp_data
    est = _mlp().fit(X, Y[:, :2])
    with pytest.raises(ValueError, match="enable_metadata_routing"):
        gauc_scorer(est, X, Y[:, :2])


def test_scorers_pickle():
    for scorer in (mean_auc_scorer, mean_log_loss_scorer, gauc_scorer):
        assert repr(pickle.loads(pickle.dumps(scorer))) == repr(scorer)


def test_docstrings_warn_about_neg_log_loss():
    from sklearn_mtr import metrics

    for doc in (metrics.__doc__, mean_log_loss_scorer.__doc__):
        text = " ".join(doc.split())
        assert "neg_log_loss" in text
        assert "wrong for multilabel" in text
        assert "renormalise each row of ``predict_proba`` to sum to one" in text
    assert "mean_log_loss_scorer" in metrics.__doc__
