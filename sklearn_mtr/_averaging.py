"""Exponential moving average of the weights (Polyak averaging) as a skorch callback.

Training moves the raw weights; validation, early stopping's choice of epoch, every
``on_epoch_end`` callback and prediction see the average. The average is an ensemble of the
last steps' weights for the price of one forward pass, and it removes the last steps' noise
that a single checkpoint carries (Polyak & Juditsky 1992; used for example by Izmailov et al.,
arXiv 1803.05407, and Kaddour et al., arXiv 2209.14981).
"""

from __future__ import annotations

import math

import torch
from skorch.callbacks import Callback


class WeightAveraging(Callback):
    """Keep an exponential moving average of the module's parameters over about ``epochs``
    epochs of training steps, and put it in the module for everything but training.

    The decay per step is ``1 - 1 / (epochs * steps_per_epoch)``, so the horizon is the same
    number of epochs whatever the data size and batch size. Early steps use the warm-up decay
    ``(1 + n) / (10 + n)`` when it is smaller, so the random initialisation does not linger
    in the average. Buffers (batch-norm statistics) are not averaged.

    Every fit call (a first fit, ``partial_fit``, a warm-start fit) starts a new average
    from the weights it starts from; at its end the module holds the average (or the
    average of the epoch early stopping chose), and a continuation trains from there.
    """

    def __init__(self, epochs: float):
        self.epochs = epochs

    def initialize(self):
        self._reset()
        return self

    def _reset(self) -> None:
        self.average_: list[torch.Tensor] | None = None
        self.raw_: list[torch.Tensor] | None = None
        self.steps_ = 0
        self.decay_ = 0.0

    @staticmethod
    def _params(net) -> list[torch.Tensor]:
        return list(net.module_.parameters())

    def on_train_begin(self, net, **kwargs):
        self._reset()

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        self._restore_raw(net)  # training continues from the raw weights, not the average
        if dataset_train is not None:
            steps = max(1, math.ceil(len(dataset_train) / net.batch_size))
            self.decay_ = 1.0 - 1.0 / max(1.0, self.epochs * steps)

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if not training:
            return
        params = [p.detach() for p in self._params(net)]
        with torch.no_grad():
            if self.average_ is None:
                self.average_ = [p.clone() for p in params]
            else:
                weight = 1.0 - min(self.decay_, (1.0 + self.steps_) / (10.0 + self.steps_))
                for average, p in zip(self.average_, params):
                    average.lerp_(p, weight)
        self.steps_ += 1

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if not training:  # the first validation batch of an epoch: evaluate the average
            self._swap_in_average(net)

    def on_epoch_end(self, net, **kwargs):
        # Without validation the epoch's callbacks (checkpoints, early stopping's snapshot)
        # and a fit that ends here see the average too.
        self._swap_in_average(net)

    def on_train_end(self, net, **kwargs):
        # An interrupt may end a fit mid-epoch: it too ends on the average.
        self._swap_in_average(net)
        # The module holds the average now; neither copy is part of the model (nor of a pickle).
        self.average_, self.raw_ = None, None

    def _swap_in_average(self, net) -> None:
        if self.raw_ is not None or self.average_ is None:
            return
        params = self._params(net)
        with torch.no_grad():
            self.raw_ = [p.detach().clone() for p in params]
            for p, average in zip(params, self.average_):
                p.copy_(average)

    def _restore_raw(self, net) -> None:
        if self.raw_ is None:
            return
        with torch.no_grad():
            for p, raw in zip(self._params(net), self.raw_):
                p.copy_(raw)
        self.raw_ = None
