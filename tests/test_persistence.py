"""Pickling, joblib, clone and parameter handling."""

import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from sklearn_mtr import MMoEClassifier, PLEClassifier
from sklearn_mtr.datasets import make_multitask_classification
from sklearn_mtr.optim import EW

TINY = {
    "n_experts": 2,
    "expert_hidden_sizes": (8,),
    "embedding_dim": 4,
    "tower_hidden_sizes": (4,),
    "max_epochs": 2,
    "random_state": 0,
}


@pytest.fixture
def data():
    return make_multitask_classification(n_samples=200, n_features=5, n_categorical=2, as_frame=True, random_state=2)


def test_joblib_round_trip_gives_identical_predictions_and_keeps_training(data, tmp_path):
    X, Y = data
    clf = MMoEClassifier(**TINY, early_stopping=True).fit(X, Y)
    path = tmp_path / "model.joblib"
    joblib.dump(clf, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert list(loaded.task_names_) == list(clf.task_names_)
    assert loaded.history_[-1, "valid_auc"] == clf.history_[-1, "valid_auc"]
    loaded.partial_fit(X, Y)
    assert loaded.n_iter_ == clf.n_iter_ + 1


def test_pickle_round_trip_of_a_binary_classifier(data):
    X, Y = data
    clf = PLEClassifier(expert_hidden_sizes=(8,), embedding_dim=4, max_epochs=1, random_state=0).fit(X, Y.iloc[:, 0])
    loaded = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_clone_of_a_fitted_estimator_is_unfitted_with_equal_params(data):
    X, Y = data
    clf = MMoEClassifier(**TINY, optimizer=EW()).fit(X, Y)
    twin = clone(clf)
    assert twin.get_params()["n_experts"] == 2
    assert twin.optimizer is not clf.optimizer
    with pytest.raises(NotFittedError):
        twin.predict_proba(X)


def test_fit_does_not_mutate_parameters(data):
    X, Y = data
    params = dict(TINY, task_weights=[1.0, 2.0], callbacks=[], optimizer=EW())
    clf = MMoEClassifier(**params)
    before = {k: repr(v) for k, v in clf.get_params(deep=False).items()}
    clf.fit(X, Y)
    assert {k: repr(v) for k, v in clf.get_params(deep=False).items()} == before


def test_set_params_then_refit_uses_the_new_architecture(data):
    X, Y = data
    clf = MMoEClassifier(**TINY).fit(X, Y)
    clf.set_params(n_experts=3).fit(X, Y)
    assert clf.net_.module_.experts.n_experts == 3
