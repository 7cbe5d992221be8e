"""Pipelines, searches, scorers and metadata routing with two tasks (the common case)."""

import numpy as np
import pytest
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder, StandardScaler
from sklearn.utils.multiclass import type_of_target

from sklearn_mtr import MMoEClassifier
from sklearn_mtr.datasets import make_multitask_classification
from sklearn_mtr.metrics import gauc_scorer, mean_auc_scorer, mean_log_loss_scorer
from sklearn_mtr.optim import EW

TINY = {
    "n_experts": 2,
    "expert_hidden_sizes": (8,),
    "embedding_dim": 4,
    "tower_hidden_sizes": (4,),
    "max_epochs": 2,
    "lr": 0.02,
    "random_state": 0,
}


@pytest.fixture
def data():
    X, Y = make_multitask_classification(n_samples=240, n_features=5, n_categorical=1, as_frame=True, random_state=1)
    return X, Y


def test_classes_look_multilabel_to_scikit_learn_with_two_tasks(data):
    X, Y = data
    clf = MMoEClassifier(**TINY).fit(X, Y)
    assert type_of_target(Y) == "multilabel-indicator"
    assert len(clf.classes_) == 2 and all(list(c) == [0, 1] for c in clf.classes_)


def test_pipeline_with_column_transformer_in_grid_search_roc_auc(data):
    X, Y = data
    pre = ColumnTransformer([("num", StandardScaler(), ["x0", "x1", "x2", "x3"]), ("cat", OrdinalEncoder(), ["cat0"])])
    pipe = Pipeline([("pre", pre), ("clf", MMoEClassifier(**TINY, categorical_features=[4]))])
    search = GridSearchCV(pipe, {"clf__lr": [0.01, 0.05]}, scoring="roc_auc", cv=KFold(2))
    search.fit(X, Y)
    assert np.isfinite(search.best_score_) and 0.0 <= search.best_score_ <= 1.0
    assert search.predict_proba(X).shape == (len(X), 2)


def test_default_score_and_shipped_scorers_in_cross_validation(data):
    X, Y = data
    clf = MMoEClassifier(**TINY)
    for scoring in [None, "roc_auc", "average_precision", mean_auc_scorer, mean_log_loss_scorer]:
        scores = cross_val_score(clf, X, Y, cv=KFold(2), scoring=scoring)
        assert np.all(np.isfinite(scores)), scoring
    assert np.all(cross_val_score(clf, X, Y, cv=KFold(2), scoring=mean_log_loss_scorer) < 0)


def test_search_over_optimizer_instances_and_their_parameters(data):
    from sklearn_mtr.optim import MultiTaskOptimizer

    class Scaled(MultiTaskOptimizer):
        def __init__(self, factor=1.0):
            self.factor = factor

        def backward(self, task_losses, ctx):
            (self.factor * self.weighted_total(task_losses, ctx)).backward()
            return {}

    X, Y = data
    grid = {"optimizer": [Scaled()], "optimizer__factor": [0.5, 2.0]}
    search = GridSearchCV(MMoEClassifier(**TINY), grid, cv=KFold(2)).fit(X, Y)
    assert search.best_params_["optimizer__factor"] in (0.5, 2.0)
    assert isinstance(search.best_estimator_.optimizer, Scaled)
    search = GridSearchCV(MMoEClassifier(**TINY), {"optimizer": ["adam", EW()]}, cv=KFold(2)).fit(X, Y)
    assert len(search.cv_results_["params"]) == 2


class _GroupSpy(MMoEClassifier):
    seen_groups = None

    def fit(self, X, Y, sample_weight=None, groups=None):
        type(self).seen_groups = groups
        return super().fit(X, Y, sample_weight=sample_weight, groups=groups)


def test_groups_reach_the_estimator_inside_a_pipeline_with_metadata_routing(data):
    X, Y = data
    groups = np.repeat(np.arange(24), 10)
    with sklearn.config_context(enable_metadata_routing=True):
        spy = _GroupSpy(**TINY, early_stopping=True).set_fit_request(groups=True, sample_weight=False)
        pipe = Pipeline([("scale", "passthrough"), ("clf", spy)])
        pipe.fit(X, Y, groups=groups)
        np.testing.assert_array_equal(_GroupSpy.seen_groups, groups)

        search = GridSearchCV(
            MMoEClassifier(**TINY).set_fit_request(groups=True, sample_weight=False),
            {"lr": [0.01, 0.05]},
            scoring=gauc_scorer,
            cv=KFold(2),
        )
        search.fit(X, Y, groups=groups)
        assert np.isfinite(search.best_score_)
