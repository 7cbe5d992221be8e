"""The display classes draw exactly the recorded data."""

import sys

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt

from sklearn_mtr import MMoEClassifier
from sklearn_mtr.datasets import make_multitask_classification
from sklearn_mtr.inspection import (
    OptimizerDiagnosticsDisplay,
    TaskLearningCurveDisplay,
    TaskTradeoffDisplay,
)
from sklearn_mtr.metrics import group_auc_score, per_task_log_loss, per_task_roc_auc

TASKS = ["click", "cart", "buy"]
SMALL = {"n_experts": 2, "expert_hidden_sizes": (8,), "tower_hidden_sizes": (4,), "batch_size": 64, "max_epochs": 3}


@pytest.fixture(scope="module")
def data():
    X, Y = make_multitask_classification(n_samples=400, n_tasks=3, as_frame=True, random_state=0)
    Y.columns = TASKS
    return X, Y


@pytest.fixture(scope="module")
def fitted(data):
    X, Y = data
    return {
        opt: MMoEClassifier(**SMALL, optimizer=opt, early_stopping=opt == "pub", random_state=0).fit(X, Y)
        for opt in ("adam", "pub", "drgrad")
    }


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------- learning curves
@pytest.mark.parametrize("metric", ["auc", "loss"])
def test_learning_curves_draw_the_history(fitted, metric):
    clf = fitted["pub"]
    disp = TaskLearningCurveDisplay.from_estimator(clf, metric=metric)
    assert sorted(disp.lines_) == ["train", "valid"]
    epochs = clf.history_[:, "epoch"]
    for subset, lines in disp.lines_.items():
        assert len(lines) == len(TASKS)
        for task, line in zip(TASKS, lines):
            np.testing.assert_allclose(line.get_xdata(), epochs)
            np.testing.assert_allclose(line.get_ydata(), clf.history_[:, f"{subset}_{metric}_{task}"])
            assert line.get_label() == f"{task} ({subset})"
    assert disp.ax_.get_ylabel() == {"auc": "ROC AUC", "loss": "log loss"}[metric]
    assert disp.ax_.get_title() == "MMoEClassifier"
    assert disp.figure_ is disp.ax_.figure
    assert len(disp.ax_.get_legend().get_texts()) == 2 * len(TASKS)


def test_learning_curves_subsets_tasks_and_axes(fitted):
    _, ax = plt.subplots()
    disp = TaskLearningCurveDisplay.from_estimator(fitted["pub"], subsets=["valid"], tasks=["buy", 0], ax=ax)
    assert disp.ax_ is ax and list(disp.lines_) == ["valid"]
    assert [line.get_label() for line in disp.lines_["valid"]] == ["buy (valid)", "click (valid)"]
    # Without early stopping only training curves exist.
    assert list(TaskLearningCurveDisplay.from_estimator(fitted["adam"]).lines_) == ["train"]
    with pytest.raises(ValueError, match="early_stopping=True"):
        TaskLearningCurveDisplay.from_estimator(fitted["adam"], subsets=["valid"])
    with pytest.raises(ValueError, match="metric must be one of"):
        TaskLearningCurveDisplay.from_estimator(fitted["adam"], metric="accuracy")
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        TaskLearningCurveDisplay.from_estimator(fitted["adam"], tasks=["nope"])
    with pytest.raises(NotFittedError):
        TaskLearningCurveDisplay.from_estimator(MMoEClassifier())


def test_learning_curves_from_a_list_of_dicts():
    history = [
        {"epoch": 1, "train_loss_a": 0.7, "train_auc_a": 0.6, "train_loss_b": 0.6, "train_auc_b": 0.55},
        {"epoch": 2, "train_loss_a": 0.6, "train_auc_a": 0.7, "train_loss_b": 0.5},  # b's AUC not recorded
    ]
    disp = TaskLearningCurveDisplay.from_history(history, name="toy")
    np.testing.assert_allclose(disp.lines_["train"][0].get_ydata(), [0.6, 0.7])
    np.testing.assert_allclose(disp.lines_["train"][1].get_ydata(), [0.55, np.nan])
    assert disp.ax_.get_title() == "toy"
    with pytest.raises(ValueError, match="empty"):
        TaskLearningCurveDisplay.from_history([])
    # One epoch draws markers (a one-point line is invisible); keyword arguments override the style.
    (line, _) = TaskLearningCurveDisplay.from_history(history[:1], color="k").lines_["train"]
    assert line.get_marker() == "o" and line.get_color() == "k"
    # Validation keys only (a benchmark's curve); skorch's boolean *_best flags are not tasks.
    valid_only = [{"epoch": e, "valid_loss_best": e == 1, "valid_loss_a": 1.0 / e} for e in (1, 2)]
    disp = TaskLearningCurveDisplay.from_history(valid_only, metric="loss")
    assert disp.task_names == ["a"] and list(disp.lines_) == ["valid"]
    np.testing.assert_allclose(disp.lines_["valid"][0].get_ydata(), [1.0, 0.5])


# --------------------------------------------------------------------------- trade-off
def test_tradeoff_from_estimators_draws_per_task_scores(data, fitted):
    X, Y = data
    disp = TaskTradeoffDisplay.from_estimators(fitted, X, Y, reference="adam")
    assert disp.names == ["adam", "pub", "drgrad"] and disp.task_names == TASKS
    expected = np.array([per_task_roc_auc(Y.to_numpy(), est.predict_proba(X)) for est in fitted.values()])
    np.testing.assert_allclose(disp.scores, expected)
    np.testing.assert_allclose(disp.scatter_.get_offsets(), expected[:, :2])
    assert [a.get_text() for a in disp.annotations_] == ["adam", "pub", "drgrad"]
    assert disp.ax_.get_xlabel() == "click ROC AUC" and disp.ax_.get_ylabel() == "cart ROC AUC"
    vertical, horizontal = disp.reference_lines_
    np.testing.assert_allclose(vertical.get_xdata(), expected[0, 0])
    np.testing.assert_allclose(horizontal.get_ydata(), expected[0, 1])
    assert disp.errorbar_ is None

    # Other task pair, other metric, explicit names.
    disp = TaskTradeoffDisplay.from_estimators(
        list(fitted.values()), X, Y, names=["a", "b", "c"], metric="loss", tasks=("buy", "click")
    )
    losses = np.array([per_task_log_loss(Y.to_numpy(), est.predict_proba(X)) for est in fitted.values()])
    np.testing.assert_allclose(disp.scatter_.get_offsets(), losses[:, [2, 0]])
    assert disp.ax_.get_xlabel() == "buy log loss"

    groups = np.arange(len(X)) // 20
    disp = TaskTradeoffDisplay.from_estimators(fitted, X, Y, metric="gauc", groups=groups)
    np.testing.assert_allclose(disp.scores[1], group_auc_score(Y.to_numpy(), fitted["pub"].predict_proba(X), groups))


def test_tradeoff_from_estimators_errors(data, fitted):
    X, Y = data
    with pytest.raises(ValueError, match="needs groups"):
        TaskTradeoffDisplay.from_estimators(fitted, X, Y, metric="gauc")
    with pytest.raises(ValueError, match="names must be unique"):
        TaskTradeoffDisplay.from_estimators(list(fitted.values()), X, Y)  # three MMoEClassifier
    with pytest.raises(ValueError, match="reference 'sgd'"):
        TaskTradeoffDisplay.from_estimators(fitted, X, Y, reference="sgd")
    with pytest.raises(ValueError, match="two different tasks"):
        TaskTradeoffDisplay.from_estimators(fitted, X, Y, tasks=("click", 0))
    with pytest.raises(ValueError, match="shape"):
        TaskTradeoffDisplay.from_estimators(fitted, X, Y.iloc[:, :2])


def test_tradeoff_from_results_seeds_and_pareto_front():
    results = {
        "adam": [[0.70, 0.60], [0.72, 0.62]],  # two seeds: mean (0.71, 0.61)
        "pub": {"ctr": [0.74, 0.76], "cvr": [0.58, 0.58]},  # dict of per-seed lists: (0.75, 0.58)
        "drgrad": {"ctr": 0.69, "cvr": 0.65},
        "bad": [0.68, 0.57],  # beaten on both tasks by adam
    }
    disp = TaskTradeoffDisplay.from_results(results, reference="adam")
    assert disp.task_names == ["ctr", "cvr"]  # from the dict-valued entries
    np.testing.assert_allclose(disp.scores, [[0.71, 0.61], [0.75, 0.58], [0.69, 0.65], [0.68, 0.57]])
    np.testing.assert_allclose(disp.errors[0], [0.01, 0.01])
    assert np.isnan(disp.errors[2]).all()
    assert disp.errorbar_ is not None
    # The front runs through drgrad, adam, pub (sorted by x); "bad" is dominated.
    np.testing.assert_allclose(disp.pareto_line_.get_xdata(), [0.69, 0.71, 0.75])
    np.testing.assert_allclose(disp.pareto_line_.get_ydata(), [0.65, 0.61, 0.58])

    # For a loss, lower is better: the front flips.
    disp = TaskTradeoffDisplay.from_results({"a": [0.3, 0.3], "b": [0.2, 0.2], "c": [0.1, 0.4]}, metric="loss")
    np.testing.assert_allclose(disp.pareto_line_.get_xdata(), [0.1, 0.2])
    assert disp.task_names == ["task0", "task1"] and disp.errors is None

    with pytest.raises(ValueError, match="same number of tasks"):
        TaskTradeoffDisplay.from_results({"a": [0.7, 0.6], "b": [0.7, 0.6, 0.5]})
    with pytest.raises(ValueError, match="non-empty dict"):
        TaskTradeoffDisplay.from_results({})
    with pytest.raises(ValueError, match="two tasks or more"):
        TaskTradeoffDisplay.from_results({"a": [0.7]})


# --------------------------------------------------------------------------- optimizer diagnostics
def test_diagnostics_draw_every_optim_key(fitted):
    clf = fitted["pub"]
    disp = OptimizerDiagnosticsDisplay.from_estimator(clf)
    keys = [k[len("optim_") :] for k in clf.history_[-1] if k.startswith("optim_")]
    assert list(disp.lines_) == keys and len(disp.axes_) == len(keys)
    weights = np.array(clf.history_[:, "optim_weights"])
    assert [line.get_label() for line in disp.lines_["weights"]] == TASKS
    for k, line in enumerate(disp.lines_["weights"]):
        np.testing.assert_allclose(line.get_ydata(), weights[:, k])
        np.testing.assert_allclose(line.get_xdata(), clf.history_[:, "epoch"])
    # Cosines between tasks are labelled by pair even when there are as many pairs as tasks.
    assert [line.get_label() for line in disp.lines_["update_cosine"]] == ["click / cart", "click / buy", "cart / buy"]
    assert disp.axes_[0].get_ylabel() == "task weights"
    assert disp.figure_._suptitle.get_text() == "MMoEClassifier, optimizer=pub"


def test_diagnostics_scalars_mixing_and_axes(fitted):
    clf = fitted["drgrad"]
    _, axes = plt.subplots(1, 2)
    disp = OptimizerDiagnosticsDisplay.from_estimator(clf, keys=["optim_mixing", "cosine_primary_aux"], ax=axes)
    assert list(disp.axes_) == list(axes)
    mixing = np.array(clf.history_[:, "optim_mixing"])
    assert [line.get_label() for line in disp.lines_["mixing"]] == ["mu' (own tower)", "mu'' (split tower)"]
    np.testing.assert_allclose(disp.lines_["mixing"][1].get_ydata(), mixing[:, 1])
    (scalar,) = disp.lines_["cosine_primary_aux"]
    np.testing.assert_allclose(scalar.get_ydata(), clf.history_[:, "optim_cosine_primary_aux"])

    with pytest.raises(ValueError, match="one Axes per diagnostic key"):
        OptimizerDiagnosticsDisplay.from_estimator(clf, keys=["mixing"], ax=axes)
    with pytest.raises(ValueError, match="no diagnostics \\['weights'\\]"):
        OptimizerDiagnosticsDisplay.from_estimator(clf, keys=["weights"])
    with pytest.raises(ValueError, match="no optim_\\* diagnostics"):
        OptimizerDiagnosticsDisplay.from_estimator(fitted["adam"])


def test_missing_matplotlib_gives_an_install_hint(monkeypatch):
    disp = TaskTradeoffDisplay(scores=np.array([[0.7, 0.6]]), names=["a"], task_names=["x", "y"], metric="auc")
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install sklearn-mtr\[plot\]"):
        disp.plot()


def test_displays_accept_a_fitted_pipeline(data):
    # A user's model usually sits at the end of a Pipeline: the displays read history_ and the
    # task names from its last step and score the whole pipeline.
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, Y = data
    pipe = make_pipeline(StandardScaler(), MMoEClassifier(**SMALL, optimizer="pub", random_state=0)).fit(X, Y)
    model = pipe[-1]
    curves = TaskLearningCurveDisplay.from_estimator(pipe, metric="loss")
    np.testing.assert_allclose(curves.lines_["train"][0].get_ydata(), model.history_[:, "train_loss_click"])
    assert curves.estimator_name == "MMoEClassifier"
    diag = OptimizerDiagnosticsDisplay.from_estimator(pipe)
    assert diag.diagnostics
    disp = TaskTradeoffDisplay.from_estimators({"pipe": pipe}, X, Y)
    np.testing.assert_allclose(disp.scores[0], per_task_roc_auc(Y.to_numpy(), pipe.predict_proba(X)))
    assert disp.task_names == TASKS
