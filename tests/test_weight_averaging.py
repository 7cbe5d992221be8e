"""ema_epochs: an exponential moving average of the weights, used for validation and the fitted model."""

import math

import pytest
import torch
from skorch.callbacks import Callback

from sklearn_mtr import SharedBottomClassifier
from sklearn_mtr.datasets import make_multitask_classification


class RecordSteps(Callback):
    """Flattened parameters after every training step, and at the start of each epoch's first step."""

    def initialize(self):
        self.after_step, self.epoch_starts, self._first = [], [], False
        return self

    def on_epoch_begin(self, net, **kwargs):
        self._first = True

    def on_batch_begin(self, net, training=False, **kwargs):
        if training and self._first:
            self.epoch_starts.append(flat(net.module_))
            self._first = False

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            self.after_step.append(flat(net.module_))


def flat(module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).clone() for p in module.parameters()])


def fit(ema_epochs, **params):
    X, Y = make_multitask_classification(n_samples=400, n_tasks=2, random_state=0)
    recorder = RecordSteps()
    clf = SharedBottomClassifier(
        bottom_hidden_sizes=(8,),
        tower_hidden_sizes=(4,),
        batch_size=64,
        max_epochs=2,
        ema_epochs=ema_epochs,
        random_state=0,
        callbacks=[("record", recorder)],
        **params,
    ).fit(X, Y)
    return clf, dict(clf.net_.callbacks_)["record"]


def test_fitted_weights_are_the_exponential_moving_average_of_the_steps():
    clf, rec = fit(ema_epochs=0.5, early_stopping=False)
    steps_per_epoch = math.ceil(400 / 64)
    decay = 1 - 1 / (0.5 * steps_per_epoch)
    average = rec.after_step[0]
    for n, params in enumerate(rec.after_step[1:], start=1):  # n steps averaged so far
        weight = 1 - min(decay, (1 + n) / (10 + n))
        average = average + weight * (params - average)
    torch.testing.assert_close(flat(clf.net_.module_), average)
    assert not torch.allclose(flat(clf.net_.module_), rec.after_step[-1])
    assert dict(clf.net_.callbacks_)["weight_averaging"].average_ is None  # not kept twice in a pickle


def test_without_averaging_the_fitted_weights_are_the_last_step():
    clf, rec = fit(ema_epochs=None, early_stopping=False)
    torch.testing.assert_close(flat(clf.net_.module_), rec.after_step[-1])


def test_training_resumes_from_the_raw_weights_after_validating_the_average():
    _, rec = fit(ema_epochs=1.0, early_stopping=True, n_iter_no_change=5)
    steps_per_epoch = len(rec.after_step) // 2
    # Epoch 2 starts from epoch 1's last raw step, not from the average validation used.
    torch.testing.assert_close(rec.epoch_starts[1], rec.after_step[steps_per_epoch - 1])


class RecordValidation(RecordSteps):
    """Also the parameters the first validation batch of each epoch runs with."""

    def initialize(self):
        self.validated = []
        return super().initialize()

    def on_batch_begin(self, net, training=False, **kwargs):
        super().on_batch_begin(net, training=training, **kwargs)
        if not training and len(self.validated) < len(self.epoch_starts):
            self.validated.append(flat(net.module_))


def test_validation_scores_the_averaged_weights_and_the_fit_keeps_them():
    X, Y = make_multitask_classification(n_samples=400, n_tasks=2, random_state=0)
    clf = SharedBottomClassifier(
        bottom_hidden_sizes=(8,),
        batch_size=64,
        max_epochs=1,
        early_stopping=True,
        ema_epochs=1.0,
        random_state=0,
        callbacks=[("record", RecordValidation())],
    ).fit(X, Y)
    rec = dict(clf.net_.callbacks_)["record"]
    assert not torch.allclose(rec.validated[0], rec.after_step[-1])  # not the raw weights
    torch.testing.assert_close(flat(clf.net_.module_), rec.validated[0])


@pytest.mark.parametrize("value", [-1, float("nan"), "1", True])
def test_ema_epochs_rejects_bad_values(value):
    X, Y = make_multitask_classification(n_samples=50, n_tasks=2, random_state=0)
    with pytest.raises(ValueError, match="ema_epochs"):
        SharedBottomClassifier(ema_epochs=value, max_epochs=1).fit(X, Y)


def test_partial_fit_ends_each_call_on_an_average():
    X, Y = make_multitask_classification(n_samples=300, n_tasks=2, random_state=0)
    clf = SharedBottomClassifier(ema_epochs=1.0, random_state=0, bottom_hidden_sizes=(8,))
    recorder = RecordSteps()
    clf.set_params(callbacks=[("record", recorder)])
    clf.partial_fit(X, Y)
    rec = dict(clf.net_.callbacks_)["record"]
    assert not torch.allclose(flat(clf.net_.module_), rec.after_step[-1])
    first = flat(clf.net_.module_)
    clf.partial_fit(X, Y)
    rec = dict(clf.net_.callbacks_)["record"]
    # The continuation trains from where the first call ended: the average.
    torch.testing.assert_close(rec.epoch_starts[0], first)
