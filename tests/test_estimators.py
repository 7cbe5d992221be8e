"""The estimator surface: shapes, labels, training behaviour, errors."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError
from skorch.callbacks import Callback, LRScheduler

from sklearn_mtr import MMoEClassifier, PLEClassifier, SharedBottomClassifier
from sklearn_mtr._task_scoring import task_losses
from sklearn_mtr.datasets import make_multitask_classification

TINY = {
    "embedding_dim": 4,
    "tower_hidden_sizes": (8,),
    "max_epochs": 3,
    "batch_size": 64,
    "lr": 0.01,
    "random_state": 0,
}
ARCH = {
    SharedBottomClassifier: {"bottom_hidden_sizes": (16,)},
    MMoEClassifier: {"n_experts": 2, "expert_hidden_sizes": (16,)},
    PLEClassifier: {"expert_hidden_sizes": (16,)},
}


def tiny(cls=MMoEClassifier, **kwargs):
    return cls(**{**ARCH[cls], **TINY, **kwargs})


@pytest.fixture
def frame():
    X, Y = make_multitask_classification(n_samples=300, n_features=6, n_categorical=2, as_frame=True, random_state=0)
    Y.columns = ["click", "buy"]
    return X, Y


@pytest.mark.parametrize("cls", list(ARCH))
def test_multitask_output_shapes_and_fitted_attributes(cls, frame):
    X, Y = frame
    clf = tiny(cls).fit(X, Y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.all((proba >= 0) & (proba <= 1))
    assert clf.predict(X).shape == (len(X), 2)
    assert set(np.unique(clf.predict(X))) <= {0, 1}
    assert clf.n_tasks_ == 2
    assert list(clf.task_names_) == ["click", "buy"]
    assert [list(c) for c in clf.classes_] == [[0, 1], [0, 1]]
    assert clf.n_features_in_ == X.shape[1]
    assert list(clf.feature_names_in_) == list(X.columns)
    assert clf.n_iter_ == 3 and len(clf.history_) == 3


def test_history_records_per_task_losses_and_aucs(frame):
    X, Y = frame
    clf = tiny(early_stopping=True).fit(X, Y)
    row = clf.history_[-1]
    for key in ["train_loss", "valid_loss", "train_auc", "valid_auc"]:
        assert np.isfinite(row[key])
    for task in ["click", "buy"]:
        for key in ["train_loss_", "valid_loss_", "train_auc_", "valid_auc_"]:
            assert np.isfinite(row[key + task])
    assert row["valid_auc"] == pytest.approx((row["valid_auc_click"] + row["valid_auc_buy"]) / 2)


def test_one_dimensional_y_makes_a_binary_classifier_with_any_labels(frame):
    X, Y = frame
    y = np.where(Y["click"] == 1, "yes", "no")
    clf = tiny().fit(X, y)
    assert list(clf.classes_) == ["no", "yes"]
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert set(clf.predict(X)) <= {"no", "yes"}
    assert np.array_equal(clf.predict(X), clf.classes_[proba.argmax(1)])
    assert list(clf.task_names_) == ["y"]
    named = tiny(max_epochs=1).fit(X, Y["click"])  # a named Series names its task
    assert list(named.task_names_) == ["click"] and "train_auc_click" in named.history_[-1]
    named.partial_fit(X, Y["click"].rename("renamed"))
    assert list(named.task_names_) == ["click"]
    assert list(tiny(max_epochs=1).fit(X, Y["click"].rename("")).task_names_) == ["y"]


def test_score_is_mean_task_roc_auc(frame):
    from sklearn.metrics import roc_auc_score

    X, Y = frame
    clf = tiny().fit(X, Y)
    proba = clf.predict_proba(X)
    expected = np.mean([roc_auc_score(Y.iloc[:, k], proba[:, k]) for k in range(2)])
    assert clf.score(X, Y) == pytest.approx(expected)


def test_fixed_random_state_gives_identical_predictions(frame):
    X, Y = frame
    p1 = tiny(random_state=3, dropout=0.2).fit(X, Y).predict_proba(X)
    p2 = tiny(random_state=3, dropout=0.2).fit(X, Y).predict_proba(X)
    p3 = tiny(random_state=4, dropout=0.2).fit(X, Y).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    assert not np.allclose(p1, p3)


def test_fit_leaves_the_global_torch_rng_alone(frame):
    X, Y = frame
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny().fit(X, Y)
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_missing_labels_are_masked_out_of_the_loss():
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.5], [-0.4, 1.5]])
    y = torch.tensor([[1.0, float("nan")], [0.0, 1.0], [1.0, float("nan")]])
    losses = task_losses(logits, y, None)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert losses[0] == pytest.approx(bce(logits[:, 0], y[:, 0]).item())
    assert losses[1] == pytest.approx(bce(logits[1:2, 1], y[1:2, 1]).item())
    # A task with no label in the batch contributes nothing.
    assert task_losses(logits, torch.full_like(y, float("nan")), None).tolist() == [0.0, 0.0]


def test_sample_weight_weights_rows_in_the_loss():
    logits = torch.tensor([[0.3], [2.0], [-0.4]])
    y = torch.tensor([[1.0], [0.0], [1.0]])
    w = torch.tensor([1.0, 0.0, 3.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")[:, 0]
    assert task_losses(logits, y, w)[0] == pytest.approx(((bce * w).sum() / w.sum()).item())


def test_nan_labels_and_uniform_sample_weight_in_fit(frame):
    X, Y = frame
    Y = Y.astype(float)
    Y.iloc[::3, 1] = np.nan
    base = tiny().fit(X, Y).predict_proba(X)
    # Scaling every weight leaves the weighted means, hence the fit, unchanged.
    scaled = tiny().fit(X, Y, sample_weight=np.full(len(X), 2.5)).predict_proba(X)
    np.testing.assert_allclose(base, scaled, rtol=1e-5, atol=1e-6)
    assert np.isfinite(base).all()


def test_early_stopping_stops_after_patience_and_can_monitor_loss(frame):
    X, Y = frame
    # tol=1 makes every improvement too small: training stops after the patience.
    clf = tiny(early_stopping=True, max_epochs=20, n_iter_no_change=2, tol=1.0).fit(X, Y)
    assert clf.n_iter_ == 3
    clf = tiny(early_stopping=True, scoring="loss", max_epochs=20, n_iter_no_change=2, tol=10.0).fit(X, Y)
    assert clf.n_iter_ == 3
    assert "valid_loss_best" in clf.history_[-1]


def test_early_stopping_auto_holds_out_validation_rows_above_10000_rows_only():
    # The default, as in HistGradientBoostingClassifier: on for more than 10,000 rows.
    X, Y = make_multitask_classification(n_samples=10_001, n_features=3, random_state=0)
    fast = {"max_epochs": 1, "batch_size": 4096}
    assert tiny().early_stopping == "auto"
    big = tiny(**fast).fit(X, Y)
    assert "valid_loss" in big.history_[-1] and "valid_auc_task0" in big.history_[-1]
    small = tiny(**fast).fit(X[:10_000], Y[:10_000])
    assert not [k for k in small.history_[-1] if k.startswith("valid_")]


def test_early_stopping_auto_is_decided_per_fit_call_and_never_in_partial_fit():
    X, Y = make_multitask_classification(n_samples=10_001, n_features=3, random_state=0)
    clf = tiny(max_epochs=1, batch_size=4096, warm_start=True).fit(X[:500], Y[:500])
    assert "valid_loss" not in clf.history_[-1]
    clf.fit(X, Y)  # the continuation is given more than 10,000 rows
    assert "valid_loss" in clf.history_[-1]
    clf.partial_fit(X, Y)
    assert "valid_loss" not in clf.history_[-1]
    forced = tiny(max_epochs=1, early_stopping=False).fit(X, Y)  # False keeps its meaning
    assert "valid_loss" not in forced.history_[-1]


def test_early_stopping_keeps_groups_whole_in_the_split(frame):
    X, Y = frame
    groups = np.repeat(np.arange(30), 10)
    seen = {}

    class Spy(Callback):
        def on_train_begin(self, net, X=None, y=None, **kwargs):
            seen["n_train"] = len(X)

    tiny(early_stopping=True, validation_fraction=0.2, callbacks=[Spy()]).fit(X, Y, groups=groups)
    assert seen["n_train"] % 10 == 0 and seen["n_train"] == 240


def test_partial_fit_runs_one_epoch_per_call(frame):
    X, Y = frame
    clf = tiny()
    clf.partial_fit(X[:150], Y[:150])
    assert clf.n_iter_ == 1
    clf.partial_fit(X[150:], Y[150:])
    assert clf.n_iter_ == 2
    y = Y["click"].to_numpy()
    binary = tiny().partial_fit(X[:5], np.zeros(5, dtype=int), classes=[0, 1])
    binary.partial_fit(X, y)
    assert list(binary.classes_) == [0, 1] and binary.predict_proba(X).shape == (len(X), 2)


def test_training_steps_run_in_train_mode_and_predictions_in_eval_mode(frame):
    # The net switches modes only when they change: a predict or a validation pass in
    # between must still leave every training step in train mode (dropout and batch norm on).
    X, Y = frame
    seen = []

    class Modes(Callback):
        def on_batch_begin(self, net, training=False, **kwargs):
            seen.append(training)

        def on_batch_end(self, net, training=False, **kwargs):
            mods = list(net.module_.modules())
            assert all(m.training == training for m in mods), training

    clf = tiny(dropout=0.5, batch_norm=True, early_stopping=True, max_epochs=2, callbacks=[Modes()]).fit(X, Y)
    assert True in seen and False in seen
    first = clf.predict_proba(X)
    assert not clf.net_.module_.training
    np.testing.assert_array_equal(clf.predict_proba(X), first)  # eval: dropout off
    n_seen = len(seen)
    clf.partial_fit(X, Y)  # no validation split: only training steps, checked by Modes
    assert len(seen) > n_seen and all(seen[n_seen:])
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(X))


def test_warm_start_continues_training(frame):
    X, Y = frame
    clf = tiny(warm_start=True).fit(X, Y)
    first = clf.net_.module_
    clf.fit(X, Y)
    assert clf.n_iter_ == 6 and clf.net_.module_ is first
    clf.set_params(max_epochs=1, lr=0.001).fit(X, Y)
    assert clf.n_iter_ == 7 and clf.net_.optimizer_.param_groups[0]["lr"] == 0.001
    cold = tiny().fit(X, Y)
    cold.fit(X, Y)
    assert cold.n_iter_ == 3


def _other_thread_count() -> int:
    """A thread count that differs from torch's current one, so that setting it shows."""
    return 1 if torch.get_num_threads() != 1 else 2


def test_n_threads_holds_for_fit_and_predict_calls_and_is_restored(frame, monkeypatch):
    X, Y = frame
    before, n = torch.get_num_threads(), _other_thread_count()
    seen = []

    class Threads(Callback):
        def on_batch_begin(self, net, **kwargs):
            seen.append(torch.get_num_threads())

    clf = tiny(n_threads=n, max_epochs=1, warm_start=True, callbacks=[Threads()]).fit(X, Y)
    assert seen and set(seen) == {n}
    assert torch.get_num_threads() == before
    clf.partial_fit(X, Y)
    assert set(seen) == {n} and torch.get_num_threads() == before

    in_predict = []
    predict_logits = clf.net_.predict_logits

    def spy(*args, **kwargs):
        in_predict.append(torch.get_num_threads())
        return predict_logits(*args, **kwargs)

    monkeypatch.setattr(clf.net_, "predict_logits", spy)
    clf.predict_proba(X), clf.predict(X), clf.score(X, Y)
    assert in_predict == [n, n, n] and torch.get_num_threads() == before

    # a continuation parameter: it may change between warm-start fits, None leaves torch alone
    seen.clear()
    clf.set_params(n_threads=None).fit(X, Y)
    assert set(seen) == {before}


def test_n_threads_is_restored_when_the_call_raises(frame, monkeypatch):
    X, Y = frame
    before, n = torch.get_num_threads(), _other_thread_count()
    seen = []

    class Boom(Callback):
        def on_batch_begin(self, net, **kwargs):
            seen.append(torch.get_num_threads())
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        tiny(n_threads=n, callbacks=[Boom()]).fit(X, Y)
    assert seen == [n] and torch.get_num_threads() == before

    clf = tiny(n_threads=n, max_epochs=1).fit(X, Y)

    def boom(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise RuntimeError("boom in predict")

    monkeypatch.setattr(clf.net_, "predict_logits", boom)
    with pytest.raises(RuntimeError, match="boom in predict"):
        clf.predict_proba(X)
    assert seen == [n, n] and torch.get_num_threads() == before


@pytest.mark.parametrize("n_threads", [0, -1, 1.5, True, "2"])
def test_invalid_n_threads_is_rejected_at_fit_and_predict(frame, n_threads):
    X, Y = frame
    with pytest.raises(ValueError, match="n_threads must be None or a positive integer"):
        tiny(n_threads=n_threads).fit(X, Y)
    clf = tiny(max_epochs=1).fit(X, Y).set_params(n_threads=n_threads)
    with pytest.raises(ValueError, match="n_threads must be None or a positive integer"):
        clf.predict_proba(X)


def test_continuation_rejects_a_changed_architecture(frame):
    # warm_start / partial_fit continue the model built by the first fit: a parameter that
    # built it must not be silently ignored when it changes in between.
    X, Y = frame
    clf = tiny(warm_start=True).fit(X, Y)
    before = clf.predict_proba(X)
    with pytest.raises(ValueError, match=r"\['embedding_dim'\] changed"):
        clf.set_params(embedding_dim=7).fit(X, Y)
    with pytest.raises(ValueError, match=r"\['optimizer'\] changed"):
        clf.set_params(embedding_dim=tiny().embedding_dim, optimizer="pub").partial_fit(X, Y)
    assert clf.n_iter_ == 3
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    clf.set_params(optimizer="adam", warm_start=False, embedding_dim=7).fit(X, Y)  # a new model is fine
    assert clf.n_iter_ == 3


class _Boom(Callback):
    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == 2:
            raise RuntimeError("boom")


def test_failed_fit_leaves_an_unfitted_estimator(frame):
    X, Y = frame
    clf = tiny(callbacks=[_Boom()])
    with pytest.raises(RuntimeError, match="boom"):
        clf.fit(X, Y)
    with pytest.raises(NotFittedError):
        clf.predict_proba(X)
    assert not [k for k in vars(clf) if k.endswith("_")]


def test_failed_continuation_keeps_the_previous_model(frame):
    X, Y = frame
    clf = tiny(warm_start=True).fit(X, Y)
    before = clf.predict_proba(X)
    with pytest.raises(ValueError, match="task 'buy'"):
        clf.fit(X, Y.assign(buy=2))
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    assert clf.n_iter_ == 3


class _Poison(Callback):
    """Turns the weights into NaN after the first step, as an exploding update would."""

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            for p in net.module_.parameters():
                p.data.fill_(float("nan"))


def test_divergence_raises_a_clear_error_and_leaves_the_estimator_unfitted(frame):
    X, Y = frame
    clf = tiny(callbacks=[_Poison()])
    with pytest.raises(FloatingPointError, match="diverged"):
        clf.fit(X, Y)
    assert not hasattr(clf, "net_")


def test_user_callbacks_run(frame):
    X, Y = frame
    clf = tiny(max_epochs=2, callbacks=[("lr", LRScheduler(policy="StepLR", step_size=1, gamma=0.1))]).fit(X, Y)
    assert clf.net_.optimizer_.param_groups[0]["lr"] == pytest.approx(0.01 * 0.01)


class _Tag(Callback):
    """Records its tag in the history row of every epoch it sees."""

    def __init__(self, tag="a"):
        self.tag = tag

    def on_epoch_end(self, net, **kwargs):
        net.history.record(f"tag_{self.tag}", True)


@pytest.mark.parametrize("continuation", ["partial_fit", "warm_start"])
def test_a_continuation_runs_the_callbacks_set_since_the_first_fit(frame, continuation):
    X, Y = frame
    clf = tiny(max_epochs=1, callbacks=[_Tag("a")], warm_start=continuation == "warm_start", early_stopping=True)
    clf.fit(X, Y)
    clf.set_params(callbacks=[("b", _Tag("b"))])
    clf.partial_fit(X, Y) if continuation == "partial_fit" else clf.fit(X, Y)
    assert [sorted(k for k in row if k.startswith("tag_")) for row in clf.history_] == [["tag_a"], ["tag_b"]]
    names = [name for name, _ in clf.net_.callbacks]
    assert names == ["weight_averaging", "early_stopping", "b"]  # built-in ones kept, the old user callback gone
    clf.set_params(callbacks=None)
    clf.partial_fit(X, Y) if continuation == "partial_fit" else clf.fit(X, Y)
    assert not any(k.startswith("tag_") for k in clf.history_[-1])


def test_a_continuation_prints_as_the_current_verbose_says(frame, capsys):
    X, Y = frame
    clf = tiny(max_epochs=1).fit(X, Y)
    assert capsys.readouterr().out == ""
    clf.set_params(verbose=1).partial_fit(X, Y)
    assert "train_loss" in capsys.readouterr().out
    clf.set_params(verbose=0).partial_fit(X, Y)
    assert capsys.readouterr().out == ""


def test_verbose_prints_a_table_and_in_a_terminal_a_progress_bar(frame, capsys, monkeypatch):
    import sklearn_mtr._printlog as printlog

    X, Y = frame
    tiny(max_epochs=1, verbose=1).fit(X, Y)
    captured = capsys.readouterr()  # not a terminal: the table only (see test_verbose_output.py)
    assert "train_loss" in captured.out and captured.err == ""
    monkeypatch.setattr(printlog, "is_terminal", lambda stream: True)
    tiny(max_epochs=1, verbose=1).fit(X, Y)
    captured = capsys.readouterr()
    assert "train_loss" in captured.out
    assert "it/s" in captured.err or "%" in captured.err
    tiny(max_epochs=1).fit(X, Y)
    assert capsys.readouterr().out == ""


def test_device_auto_resolves_and_unavailable_cuda_is_an_error(frame):
    X, Y = frame
    clf = tiny(max_epochs=1).fit(X, Y)
    assert clf.device_ == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            tiny(device="cuda").fit(X, Y)


def test_task_weights_change_the_objective(frame):
    X, Y = frame
    clf = tiny(max_epochs=1, task_weights=[1.0, 0.0]).fit(X, Y)
    assert clf.history_[-1, "train_loss"] == pytest.approx(clf.history_[-1, "train_loss_click"], rel=1e-5)


def test_sequence_and_text_columns_train_end_to_end():
    rng = np.random.RandomState(0)
    n = 200
    X = pd.DataFrame(
        {
            "item": rng.randint(0, 20, n),
            "history": [list(rng.randint(0, 25, rng.randint(0, 5))) for _ in range(n)],
            "title": rng.choice(["red shoe", "Blue hat", None, "", "grüne Jacke"], n),
            "price": rng.rand(n),
        }
    )
    Y = np.column_stack([X["price"] > 0.5, X["item"] % 2]).astype(int)
    clf = tiny(categorical_features=["item"], sequence_features={"history": "item"}, text_features=["title"])
    clf.fit(X, Y)
    X_new = X.head(5).assign(item=[99, 1, 2, 3, 4], history=[[], [98], None, [1, 2], [3]])
    assert clf.predict_proba(X_new).shape == (5, 2)


def test_unseen_categories_and_missing_numeric_values_at_predict(frame):
    X, Y = frame
    clf = tiny().fit(X, Y)
    X_new = X.head(3).copy()
    X_new["cat0"] = pd.Categorical(["never seen", None, "c1"])
    X_new.iloc[0, 0] = np.nan
    assert np.isfinite(clf.predict_proba(X_new)).all()


def test_pandas_string_columns_are_categorical():
    X = pd.DataFrame({"city": pd.array(["a", "b", "c", "a"] * 10, dtype="str"), "v": np.arange(40.0)})
    Y = np.column_stack([np.arange(40) % 2, np.arange(40) % 3 == 0]).astype(int)
    clf = tiny(max_epochs=1).fit(X, Y)
    assert clf.feature_encoder_.categorical_ == ["city"]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "Y_change, match",
    [
        (lambda Y: Y.assign(buy=Y["buy"] * 2), "task 'buy' holds labels \\[2.0\\]"),
        (lambda Y: Y.assign(click=np.nan), "task 'click' has no label"),
        (lambda Y: Y.assign(buy="x"), "task 'buy' holds non-numeric labels"),
    ],
)
def test_bad_labels_name_the_task(frame, Y_change, match):
    X, Y = frame
    with pytest.raises(ValueError, match=match):
        tiny().fit(X, Y_change(Y))


def test_multiclass_one_dimensional_y_is_rejected(frame):
    X, _ = frame
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        tiny().fit(X, np.arange(len(X)) % 3)


def test_wrong_number_of_columns_at_predict(frame):
    X, Y = frame
    numeric = X[["x0", "x1", "x2", "x3"]].to_numpy()
    clf = tiny(max_epochs=1).fit(numeric, Y)
    with pytest.raises(ValueError, match="expecting 4 features"):
        clf.predict_proba(numeric[:, :3])


def test_wrong_number_of_tasks_when_continuing(frame):
    X, Y = frame
    clf = tiny(max_epochs=1).fit(X, Y)
    with pytest.raises(ValueError, match="fitted with 2"):
        clf.partial_fit(X, Y.assign(extra=0))
    with pytest.raises(ValueError, match="y is 1-D"):
        clf.partial_fit(X, Y["click"])
    binary = tiny(max_epochs=1).fit(X, Y["click"])
    with pytest.raises(ValueError, match="as a binary classifier"):
        binary.partial_fit(X, Y)


def test_list_column_given_as_categorical_is_rejected():
    X = pd.DataFrame({"hist": [[1, 2], [3]] * 5, "v": np.arange(10.0)})
    with pytest.raises(ValueError, match="column 'hist' holds list values"):
        tiny(categorical_features=["hist"]).fit(X, np.arange(10) % 2)


def test_string_column_not_declared_categorical_is_rejected():
    X = pd.DataFrame({"city": ["a", "b"] * 5, "v": np.arange(10.0)})
    with pytest.raises(ValueError, match="column 'city' holds strings"):
        tiny(categorical_features=None).fit(X, np.arange(10) % 2)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"scoring": "f1"}, "scoring"),
        ({"early_stopping": "on"}, "early_stopping must be 'auto', True or False"),
        ({"early_stopping": 1}, "early_stopping must be 'auto', True or False"),
        ({"precision": "fp8"}, "precision"),
        ({"optimizer": "nope"}, "optimizer='nope'"),
        ({"task_weights": [1.0]}, "task_weights"),
        ({"task_weights": [0.0, 0.0]}, "task_weights must give at least one task a positive weight"),
        ({"tower_hidden_sizes": (-3,)}, "positive integers"),
        ({"activation": "swish!"}, "activation"),
        ({"device": "tpu:banana"}, "device"),
    ],
)
def test_invalid_parameters_raise_value_error_at_fit(frame, params, match):
    X, Y = frame
    with pytest.raises(ValueError, match=match):
        tiny(**params).fit(X, Y)


def test_mismatched_lengths_are_rejected(frame):
    X, Y = frame
    with pytest.raises(ValueError, match="X has 300 samples but Y has 299"):
        tiny().fit(X, Y[:-1])
    with pytest.raises(ValueError, match="groups"):
        tiny().fit(X, Y, groups=np.arange(5))
    with pytest.raises(ValueError, match="sample_weight|Negative"):
        tiny().fit(X, Y, sample_weight=-np.ones(len(X)))


def test_repeated_task_names_are_rejected(frame):
    # task names key history_ ("train_loss_<task>") and the reports: two tasks may not share one
    X, Y = frame
    with pytest.raises(ValueError, match=r"unique, one per task; \['a'\]"):
        tiny().fit(X, Y.set_axis(["a", "a"], axis=1))


def test_early_stopping_with_a_single_group_names_the_groups(frame):
    X, Y = frame
    with pytest.raises(ValueError, match="holds out whole groups .* single value"):
        tiny(early_stopping=True).fit(X, Y, groups=np.zeros(len(X)))


@pytest.mark.parametrize("optimizer", ["adam", "pub"])
def test_compile_trains_the_same_model_and_pickles(frame, optimizer):
    # aot_eager runs TorchDynamo and AOTAutograd (what per-task autograd.grad goes through)
    # without generating C++, so this stays fast; the default inductor backend differs only
    # in the kernels it generates.
    import pickle

    X, Y = frame
    # default widths run expert by expert on a CPU; batch norm updates its buffers through views
    params = {"optimizer": optimizer, "max_epochs": 2, "batch_size": 128, "batch_norm": True, "random_state": 0}
    plain = MMoEClassifier(**params).fit(X, Y)
    compiled = MMoEClassifier(**params, compile={"backend": "aot_eager"}).fit(X, Y)
    assert "_compiled_forward" in vars(compiled.net_)
    np.testing.assert_allclose(compiled.predict_proba(X), plain.predict_proba(X), atol=1e-5)
    running = [b for name, b in compiled.net_.module_.named_buffers() if name.endswith("running_mean")]
    assert running and all(torch.count_nonzero(b) for b in running)
    loaded = pickle.loads(pickle.dumps(compiled))
    assert "_compiled_forward" not in vars(loaded.net_)  # rebuilt on first use
    np.testing.assert_allclose(loaded.predict_proba(X), plain.predict_proba(X), atol=1e-5)
    # a continuation may switch it off: the plain module keeps the trained weights
    loaded.set_params(compile=False, warm_start=True, max_epochs=1).fit(X, Y)
    assert "_compiled_forward" not in vars(loaded.net_)


def test_compile_rejects_other_values(frame):
    X, Y = frame
    with pytest.raises(ValueError, match="compile must be a bool or a dict"):
        MMoEClassifier(compile="yes", max_epochs=1).fit(X, Y)


@pytest.mark.parametrize(
    ("compile_", "match"),
    [
        ({"options": {"cpp.cxx": "/tmp/evil"}}, "argument 'options' is not allowed"),
        ({"backend": "my_module.backend"}, r"compile\['backend'\] must be one of"),
        ({"mode": "max-autotune", "dynamic": "yes"}, r"compile\['dynamic'\] must be True or False"),
    ],
)
def test_compile_takes_only_allow_listed_torch_compile_arguments(frame, compile_, match):
    # torch.compile options can name a compiler or backend to run: fit refuses them before training.
    X, Y = frame
    with pytest.raises(ValueError, match=match):
        MMoEClassifier(compile=compile_, max_epochs=1).fit(X, Y)
