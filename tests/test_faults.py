"""Faults during training and prediction: divergence, interruption, resume, out of memory."""

import copy

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback, Checkpoint, EarlyStopping, LoadInitState

from sklearn_mtr import MMoEClassifier
from sklearn_mtr._net import MultiTaskNet
from sklearn_mtr.datasets import make_multitask_classification
from sklearn_mtr.optim import OPTIMIZERS

TINY = {
    "n_experts": 2,
    "expert_hidden_sizes": (8,),
    "tower_hidden_sizes": (4,),
    "embedding_dim": 4,
    "batch_size": 50,
    "random_state": 0,
    # The fault tests pin exact weights and exact resumption: the last step's weights. A
    # continuation starts a new weight average (test_weight_averaging.py), so with averaging
    # two fits of 2 epochs are not one of 4; the interrupt test below covers averaging.
    "ema_epochs": None,
}


@pytest.fixture(scope="module")
def data():
    return make_multitask_classification(n_samples=200, n_features=5, n_categorical=2, as_frame=True, random_state=0)


class InterruptAt(Callback):
    """Raises ``error`` after training step ``step`` of epoch ``epoch``, keeping a copy of the
    weights of every completed step. Fires once per copy (each fit call copies ``callbacks``)."""

    def __init__(self, epoch, step, error=KeyboardInterrupt):
        self.epoch, self.step, self.error = epoch, step, error
        self.fired = False

    def initialize(self):
        self.snapshots = []
        return self

    def on_batch_end(self, net, training, **kwargs):
        if not training:
            return
        self.snapshots.append(copy.deepcopy(net.module_.state_dict()))
        steps = sum("train_loss" in b for b in net.history[-1, "batches"])
        if len(net.history) == self.epoch and steps == self.step and not self.fired:
            self.fired = True
            raise self.error()


def _nan_on_task(monkeypatch, task, from_epoch):
    forward = MultiTaskNet._forward

    def poisoned(self, X, labels=None):
        logits, aux = forward(self, X, labels=labels)
        if self.module_.training and len(self.history) >= from_epoch:
            logits = logits.clone()
            logits[:, task] = float("nan")
        return logits, aux

    monkeypatch.setattr(MultiTaskNet, "_forward", poisoned)


def test_a_non_finite_loss_names_the_task_and_epoch_and_leaves_a_fresh_fit_unfitted(data, monkeypatch):
    X, Y = data
    _nan_on_task(monkeypatch, task=1, from_epoch=2)
    clf = MMoEClassifier(**TINY, max_epochs=3)
    with pytest.raises(FloatingPointError, match=r"epoch 2, step 1 \(lr=0.001\): the loss of task 'task1' \(nan\)"):
        clf.fit(X, Y)
    assert not clf.__sklearn_is_fitted__()


def test_a_diverged_step_never_reaches_the_weights_of_a_fitted_model(data, monkeypatch):
    X, Y = data
    clf = MMoEClassifier(**TINY, max_epochs=1).fit(X, Y)
    before = clf.predict_proba(X)
    _nan_on_task(monkeypatch, task=0, from_epoch=0)
    with pytest.raises(FloatingPointError, match="task 'task0'"):
        clf.partial_fit(X, Y)
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    assert clf.n_iter_ == 1


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_every_method_raises_a_clear_error_when_a_huge_lr_makes_training_diverge(optimizer):
    # lr=1e3 sent the loss to ~1e13 at the second step while staying finite, and predictions to 0 and 1.
    X, Y = make_multitask_classification(n_samples=64, n_features=4, n_categorical=1, as_frame=True, random_state=0)
    clf = MMoEClassifier(**{**TINY, "batch_size": 16}, optimizer=optimizer, lr=1e3, max_epochs=1)
    with pytest.raises(FloatingPointError, match=r"diverged in epoch 1, step 2 \(lr=1000.0\): the loss of task"):
        clf.fit(X, Y)
    assert not clf.__sklearn_is_fitted__()


def test_a_loss_bound_scales_with_pos_weight_and_a_converging_fit_stays_below_it(data):
    X, Y = data
    clf = MMoEClassifier(**TINY, max_epochs=2, lr=0.05).fit(X, Y)
    assert max(clf.history_[:, "train_loss_task0"]) < 1.0
    losses = torch.tensor([1.0, 1.0])
    clf.net_.pos_weight = torch.tensor([0.5, 3.0])
    np.testing.assert_allclose(clf.net_._loss_bound(losses).numpy(), [6931.47, 3 * 6931.47], rtol=1e-5)


class _PoisonWeightsAt(Callback):
    """Sets a weight to NaN after training step ``step`` of epoch 1."""

    def __init__(self, step):
        self.step = step

    def on_batch_end(self, net, training, **kwargs):
        steps = sum("train_loss" in b for b in net.history[-1, "batches"])
        if training and len(net.history) == 1 and steps == self.step:
            with torch.no_grad():
                next(net.module_.parameters()).fill_(float("nan"))


def test_weights_made_non_finite_by_the_last_step_of_an_epoch_raise_naming_epoch_and_lr(data):
    X, Y = data  # 200 rows in batches of 50: step 4 is the epoch's last
    clf = MMoEClassifier(**TINY, max_epochs=2, callbacks=[_PoisonWeightsAt(step=4)])
    with pytest.raises(FloatingPointError, match=r"diverged in epoch 1 \(lr=0.001\): the weights are no longer finite"):
        clf.fit(X, Y)
    assert not clf.__sklearn_is_fitted__()


@pytest.mark.filterwarnings("ignore:fit was interrupted")
def test_keyboard_interrupt_propagates_keeping_the_last_weights_and_a_usable_estimator(data):
    X, Y = data
    clf = MMoEClassifier(**TINY, max_epochs=5, callbacks=[("interrupt", InterruptAt(epoch=2, step=2))])
    with (
        pytest.warns(RuntimeWarning, match="interrupted .* in epoch 2 after 2 training step"),
        pytest.raises(KeyboardInterrupt),
    ):
        clf.fit(X, Y)
    assert clf.n_iter_ == 1 and len(clf.history_[:, "train_loss"]) == 1  # completed epochs only
    last = dict(clf.net_.callbacks_)["interrupt"].snapshots[-1]
    for name, tensor in clf.net_.module_.state_dict().items():
        torch.testing.assert_close(tensor, last[name], rtol=0, atol=0)
    assert np.isfinite(clf.predict_proba(X)).all()
    clf.set_params(warm_start=True, max_epochs=1, callbacks=None).fit(X, Y)
    assert clf.n_iter_ == 2


def test_keyboard_interrupt_with_weight_averaging_keeps_the_average_and_a_usable_estimator(data):
    X, Y = data
    clf = MMoEClassifier(
        **{**TINY, "ema_epochs": 1.0}, max_epochs=5, callbacks=[("interrupt", InterruptAt(epoch=2, step=2))]
    )
    with pytest.warns(RuntimeWarning, match="interrupted"), pytest.raises(KeyboardInterrupt):
        clf.fit(X, Y)
    assert clf.n_iter_ == 1
    last = dict(clf.net_.callbacks_)["interrupt"].snapshots[-1]  # the raw weights of the last step
    assert any(not torch.equal(t, last[name]) for name, t in clf.net_.module_.state_dict().items())
    assert dict(clf.net_.callbacks_)["weight_averaging"].average_ is None  # the module holds it
    assert np.isfinite(clf.predict_proba(X)).all()
    clf.set_params(warm_start=True, max_epochs=1, callbacks=None).fit(X, Y)
    assert clf.n_iter_ == 2


class _InterruptAtEpochEnd(Callback):
    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == 2:
            raise KeyboardInterrupt


@pytest.mark.parametrize("continuation", [False, True])
def test_keyboard_interrupt_in_on_epoch_end_propagates_with_a_warning_and_complete_epochs_only(data, continuation):
    X, Y = data
    clf = MMoEClassifier(**TINY, max_epochs=1 if continuation else 3)
    if continuation:
        clf.fit(X, Y).set_params(callbacks=[_InterruptAtEpochEnd()])
    else:
        clf.set_params(callbacks=[_InterruptAtEpochEnd()])
    with (
        pytest.warns(RuntimeWarning, match="interrupted .* in epoch 2 after 4 training step"),
        pytest.raises(KeyboardInterrupt),
    ):
        clf.partial_fit(X, Y) if continuation else clf.fit(X, Y)
    # the epoch whose on_epoch_end was cut short is not counted; every row left is complete
    assert clf.n_iter_ == 1 and len(clf.history_) == 1 and "train_auc" in clf.history_[-1]
    assert np.isfinite(clf.predict_proba(X)).all()


@pytest.mark.filterwarnings("error:fit was interrupted")
def test_early_stopping_callbacks_still_end_fit_normally_though_they_raise_keyboard_interrupt(data):
    X, Y = data
    # skorch's EarlyStopping stops by raising KeyboardInterrupt in on_epoch_end: not an interrupt
    stop = EarlyStopping(monitor="train_loss", patience=1, threshold=10.0)  # never improves after epoch 1
    clf = MMoEClassifier(**TINY, max_epochs=5, callbacks=[stop]).fit(X, Y)
    assert clf.n_iter_ == 2 and "train_auc" in clf.history_[-1]


@pytest.mark.filterwarnings("ignore:fit was interrupted")
def test_keyboard_interrupt_stops_cross_validation_and_search_instead_of_scoring_a_truncated_model(data):
    from sklearn.model_selection import GridSearchCV, cross_val_score

    X, Y = data
    clf = MMoEClassifier(**TINY, max_epochs=3, callbacks=[_InterruptAtEpochEnd()])  # a clonable callback
    with pytest.raises(KeyboardInterrupt):
        cross_val_score(clf, X, Y, cv=2)
    with pytest.raises(KeyboardInterrupt):
        GridSearchCV(clf, {"lr": [1e-3, 1e-2]}, cv=2).fit(X, Y)


def test_warm_start_continuation_repeats_an_uninterrupted_run(data):
    X, Y = data
    params = dict(TINY, dropout=0.3)  # random draws during training must line up too
    full = MMoEClassifier(**params, max_epochs=4).fit(X, Y)
    resumed = MMoEClassifier(**params, max_epochs=2).fit(X, Y)
    resumed.set_params(warm_start=True).fit(X, Y)
    np.testing.assert_array_equal(resumed.predict_proba(X), full.predict_proba(X))


@pytest.mark.parametrize("optimizer", ["adam", "uw"])
def test_checkpoint_and_resume_in_a_new_estimator_repeats_an_uninterrupted_run(optimizer, data, tmp_path):
    X, Y = data
    params = dict(TINY, dropout=0.3, optimizer=optimizer)
    full = MMoEClassifier(**params, max_epochs=4).fit(X, Y)
    # Methods with a state of their own (UW's log-variances) name it as skorch's f_<module>.
    extra = {"f_mto_state": "mto_state.pt"} if optimizer == "uw" else {}

    def checkpoint():
        return Checkpoint(monitor=None, dirname=str(tmp_path), **extra)  # saved after every epoch

    crashing = MMoEClassifier(
        **params, max_epochs=4, callbacks=[checkpoint(), ("crash", InterruptAt(3, 1, error=RuntimeError))]
    )
    with pytest.raises(RuntimeError):
        crashing.fit(X, Y)  # the "process" dies in epoch 3; epochs 1-2 are on disk
    cp = checkpoint()
    resumed = MMoEClassifier(**params, max_epochs=2, callbacks=[cp, LoadInitState(cp)]).fit(X, Y)
    assert resumed.n_iter_ == 4
    np.testing.assert_array_equal(resumed.predict_proba(X), full.predict_proba(X))


def _three_tasks():
    # three tasks: PCGrad's random projection order (its state's generator) then matters
    return make_multitask_classification(
        n_samples=120, n_features=4, n_tasks=3, n_categorical=1, as_frame=True, random_state=1
    )


def _training_state(clf):
    """Copies of everything a continuation trains: weights and buffers, optimizer state, method state."""
    net = clf.net_
    state = getattr(net, "mto_state_", None)
    return copy.deepcopy(
        {
            "module": dict(net.module_.named_buffers()) | dict(net.module_.named_parameters()),
            "optimizer": net.optimizer_.state_dict()["state"],
            "mto": None if state is None else dict(state.named_buffers()) | dict(state.named_parameters()),
        }
    )


def _assert_same_state(actual, expected, where="state"):
    """Nested dicts / lists equal, tensors bit for bit."""
    if torch.is_tensor(expected):
        torch.testing.assert_close(actual, expected, rtol=0, atol=0, msg=where)
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for key in expected:
            _assert_same_state(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            _assert_same_state(a, e, f"{where}[{i}]")
    else:
        assert actual == expected, where


class _BatchFailure(Callback):
    """Fails in the second epoch of a continuation from a one-epoch fit (epoch 2, after step 1)."""

    def __init__(self, error):
        self.error = error

    def on_batch_end(self, net, training, **kwargs):
        if training and len(net.history) == 2:
            raise self.error("injected failure")


@pytest.mark.filterwarnings("ignore:fit was interrupted")
@pytest.mark.parametrize(
    "optimizer, error",
    [(name, RuntimeError) for name in OPTIMIZERS] + [("uw", FloatingPointError), ("uw", KeyboardInterrupt)],
)
def test_a_continuation_that_fails_in_its_second_epoch_leaves_the_estimator_as_before(optimizer, error):
    X, Y = _three_tasks()
    params = dict(TINY, batch_size=40, dropout=0.3, optimizer=optimizer, max_epochs=1)
    clf = MMoEClassifier(**params).fit(X, Y)
    before, state = clf.predict_proba(X), _training_state(clf)
    history, groups = copy.deepcopy(list(clf.history_)), copy.deepcopy(clf.net_.optimizer_.param_groups)
    clf.set_params(warm_start=True, max_epochs=3, callbacks=[_BatchFailure(error)])
    with pytest.raises(error, match="injected failure" if error is not KeyboardInterrupt else None):
        clf.fit(X, Y)
    assert clf.n_iter_ == 1 and list(clf.history_) == history and clf.history_ is clf.net_.history
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    _assert_same_state(_training_state(clf), state)
    _assert_same_state(clf.net_.optimizer_.param_groups, groups)
    # continuing now gives exactly what a run that never failed gives
    clf.set_params(callbacks=None, max_epochs=2).fit(X, Y)
    clean = MMoEClassifier(**params).fit(X, Y).set_params(warm_start=True, max_epochs=2).fit(X, Y)
    assert clf.n_iter_ == clean.n_iter_ == 3
    np.testing.assert_array_equal(clf.predict_proba(X), clean.predict_proba(X))


@pytest.mark.parametrize("optimizer", ["adam", "uw"])
def test_a_partial_fit_that_fails_mid_epoch_is_undone_and_the_next_one_matches_a_clean_run(optimizer, data):
    X, Y = data
    params = dict(TINY, optimizer=optimizer, max_epochs=1)
    clf = MMoEClassifier(**params).partial_fit(X, Y)
    before = clf.predict_proba(X)
    clf.set_params(callbacks=[InterruptAt(epoch=2, step=2, error=ValueError)])
    with pytest.raises(ValueError):
        clf.partial_fit(X, Y)
    assert clf.n_iter_ == 1 and len(clf.history_) == 1
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    clf.set_params(callbacks=None).partial_fit(X, Y)
    clean = MMoEClassifier(**params).partial_fit(X, Y).partial_fit(X, Y)
    np.testing.assert_array_equal(clf.predict_proba(X), clean.predict_proba(X))


def test_a_continuation_failing_on_bad_input_leaves_the_net_parameters_it_would_have_changed():
    X, Y = _three_tasks()
    clf = MMoEClassifier(**TINY, max_epochs=1).fit(X, Y)
    net_params = {k: getattr(clf.net_, k) for k in ("lr", "batch_size", "max_epochs", "callbacks_")}
    clf.set_params(warm_start=True, lr=0.5, batch_size=7, max_epochs=4, callbacks=[_BatchFailure(RuntimeError)])
    with pytest.raises(RuntimeError):
        clf.fit(X, Y)
    assert {k: getattr(clf.net_, k) for k in net_params} == net_params
    assert clf.net_.optimizer_.param_groups[0]["lr"] == 1e-3


def test_a_module_snapshot_restores_non_persistent_buffers_counters_and_generators():
    from sklearn_mtr._snapshot import NetSnapshot

    class Stateful(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 2)
            self.register_buffer("seen", torch.zeros(()), persistent=False)  # not in state_dict
            self.n_steps = 0
            self.generator = torch.Generator().manual_seed(0)

    net = MultiTaskNet.__new__(MultiTaskNet)  # only what NetSnapshot reads
    module = Stateful()
    vars(net).update(module_=module, criterion_=None, mto_state_=None, history_=[{"epoch": 1}])
    net.optimizer_ = torch.optim.Adam(module.parameters(), lr=0.1)
    snapshot = NetSnapshot(net)
    expected_draw = torch.rand(3, generator=copy.deepcopy(module.generator))
    weight = module.linear.weight.detach().clone()
    module.linear(torch.ones(1, 2)).sum().backward()
    net.optimizer_.step()
    module.seen += 5
    module.n_steps += 1
    torch.rand(3, generator=module.generator)
    net.history.append({"epoch": 2})
    net.extra_ = "added during training"

    snapshot.restore(net)
    torch.testing.assert_close(module.linear.weight, weight, rtol=0, atol=0)
    assert float(module.seen) == 0 and module.n_steps == 0 and net.optimizer_.state_dict()["state"] == {}
    torch.testing.assert_close(torch.rand(3, generator=module.generator), expected_draw, rtol=0, atol=0)
    assert net.history == [{"epoch": 1}] and not hasattr(net, "extra_")


def _oom(*args, **kwargs):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_cuda_out_of_memory_in_fit_suggests_a_smaller_batch_size(data, monkeypatch):
    X, Y = data
    monkeypatch.setattr(MultiTaskNet, "train_step", _oom)
    clf = MMoEClassifier(**TINY, max_epochs=1)
    with pytest.raises(torch.cuda.OutOfMemoryError, match="batch_size=50 .*lower batch_size"):
        clf.fit(X, Y)
    assert not clf.__sklearn_is_fitted__()


def test_cuda_out_of_memory_in_predict_retries_with_batch_size_then_says_what_to_do(data, monkeypatch):
    X, Y = data
    clf = MMoEClassifier(**TINY, max_epochs=1).fit(X, Y)
    expected = clf.predict_proba(X)
    predict_logits = MultiTaskNet.predict_logits

    def small_batches_only(self, X, batch_size, group=None):
        if batch_size > 64:
            _oom()
        return predict_logits(self, X, batch_size, group)

    monkeypatch.setattr(MultiTaskNet, "predict_logits", small_batches_only)
    with pytest.warns(RuntimeWarning, match="retrying with batch_size=50"):
        np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=0, atol=1e-7)
    monkeypatch.setattr(MultiTaskNet, "predict_logits", _oom)
    with pytest.warns(RuntimeWarning), pytest.raises(torch.cuda.OutOfMemoryError, match="smaller batch_size"):
        clf.predict_proba(X)
