"""The interface every multi-task optimization method implements."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sklearn.base import BaseEstimator
from torch import nn


@dataclass
class StepContext:
    """What a method sees at each training step.

    Attributes
    ----------
    model : MultiTaskModule
        The architecture; ``shared_parameters()`` / ``task_parameters(k)`` / ``towers``.
    optimizer : torch.optim.Optimizer
        The torch optimizer :meth:`MultiTaskOptimizer.create_optimizer` built.
    state : nn.Module or None
        The method's own state (:meth:`MultiTaskOptimizer.create_state`): buffers and
        parameters that move with the model between devices and survive pickling.
    task_weights : Tensor of shape (n_tasks,)
        The user's fixed ``task_weights`` (ones by default), on the model's device.
    aux_loss : Tensor or None
        The architecture's auxiliary loss (load balancing, ...), to be added unweighted.
    epoch : int
        Index of the current epoch, counted from 0 over the estimator's whole training
        (``partial_fit`` calls and warm starts continue the count); methods that work per
        epoch (DWA) use it.
    data_parallel : DataParallel or None
        Set in a data-parallel fit (``sklearn_mtr._distributed``): ``task_gradients``
        all-reduces the per-task gradients through it before a method combines them.
    gradients_synced : bool
        Set by ``task_gradients`` once it has all-reduced the gradients of this step, so the
        net does not sum the written ``.grad`` a second time.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    state: nn.Module | None
    task_weights: torch.Tensor
    aux_loss: torch.Tensor | None = None
    epoch: int = 0
    data_parallel: object | None = None
    gradients_synced: bool = False


class MultiTaskOptimizer(BaseEstimator):
    """Base class of the ``optimizer=`` methods.

    A method is a scikit-learn style parameter holder (``get_params`` / ``set_params``,
    ``clone``-able, grid-searchable as ``optimizer__<param>``) that, once training starts,

    1. builds its persistent state (:meth:`create_state`) and the torch optimizer
       (:meth:`create_optimizer`),
    2. at every step turns the per-task losses of one forward pass into ``.grad`` on every
       parameter (:meth:`backward`), returning diagnostics to record in ``history_``,
    3. applies the update (:meth:`step`).

    Methods never see numpy, pandas or the estimator. State that must survive pickling or a
    change of device lives in the ``state`` module or in the torch optimizer's state.
    """

    def wrap_module(self, model: nn.Module, n_tasks: int) -> nn.Module:
        """The module to train. Methods that are partly an architecture (DRGrad's split
        primary tower) return a wrapper following the same model contract; the default
        trains ``model`` as it is."""
        return model

    def create_state(self, model: nn.Module, n_tasks: int) -> nn.Module | None:
        """Buffers / learnable parameters of the method (None when it has none)."""
        return None

    def create_optimizer(
        self, model: nn.Module, state: nn.Module | None, *, lr: float, weight_decay: float
    ) -> torch.optim.Optimizer:
        """The torch optimizer: AdamW (decoupled weight decay) over the model's parameters,
        plus the state's learnable parameters in a group of their own
        (:meth:`state_param_options`)."""
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
        if state is not None:
            own = [p for p in state.parameters() if p.requires_grad]
            if own:
                groups.append({"params": own, **self.state_param_options(lr)})
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)

    def state_param_options(self, lr: float) -> dict:
        """Optimizer options (``lr``, ``weight_decay``) for the state's learnable parameters.

        No weight decay by default: decaying learned task weights would pull them back to
        equal weights, which is not what the methods' papers do.
        """
        return {"weight_decay": 0.0}

    def backward(self, task_losses: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Fill ``.grad`` from the ``(n_tasks,)`` task losses; return diagnostics (tensors)."""
        raise NotImplementedError

    def step(self, ctx: StepContext) -> None:
        """Apply the update from the ``.grad`` that :meth:`backward` filled."""
        ctx.optimizer.step()

    @staticmethod
    def weighted_total(task_losses: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """``sum_k w_k L_k`` plus the architecture's auxiliary loss."""
        total = (ctx.task_weights * task_losses).sum()
        return total if ctx.aux_loss is None else total + ctx.aux_loss


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's parameters (CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))
