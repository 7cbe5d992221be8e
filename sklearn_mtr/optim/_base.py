"""The interface every multi-task optimization method implements."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from sklearn.base import BaseEstimator
from torch import nn

from .._constraints import check_parameters


@dataclass
class StepContext:
    """What a method sees at each training step.

    Attributes
    ----------
    model : MultiTaskModule
        The architecture; ``shared_parameters()`` / ``task_parameters(k)`` / ``towers``.
    torch_optimizer : torch.optim.Optimizer
        The torch optimizer :meth:`MultiTaskOptimizer.create_optimizer` built (AdamW unless
        the method builds its own), which applies the update.
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
        Set in a data-parallel fit: :meth:`task_gradients`
        all-reduces the per-task gradients through it before a method combines them.
    gradients_synced : bool
        Set by :meth:`task_gradients` once it has all-reduced the gradients of this step, so
        the net does not sum the written ``.grad`` a second time.

    Notes
    -----
    Methods that combine per-task gradients follow one pattern: :meth:`task_gradients` runs
    one backward pass per task (``T`` passes, the graph kept) and returns each task's gradient
    on the shared parameters as a ``(T, P)`` matrix, with each task's gradients on its own
    private parameters (only its own loss reaches them, so the same passes give them); the
    method turns the matrix into one shared gradient (and task scales); :meth:`write_gradients`
    stores it in ``.grad`` for the torch optimizer.
    """

    model: nn.Module
    torch_optimizer: torch.optim.Optimizer
    state: nn.Module | None
    task_weights: torch.Tensor
    aux_loss: torch.Tensor | None = None
    epoch: int = 0
    data_parallel: object | None = None
    gradients_synced: bool = False

    def task_gradients(
        self, task_losses: torch.Tensor
    ) -> tuple[torch.Tensor, list[list[torch.Tensor | None]], list[nn.Parameter]]:
        """Per-task gradients of one forward pass.

        In a data-parallel fit they are the global batch's: all-reduced across ranks before
        a method combines them (the losses are each rank's share, so the sum is exact).

        Returns
        -------
        shared_grads : Tensor of shape (n_tasks, n_shared_values)
            Row ``k`` is ``dL_k / d(shared parameters)``, flattened in the order of ``shared``.
        private_grads : list of list
            ``private_grads[k]`` are the gradients of ``L_k`` on ``model.task_parameters(k)``.
        shared : list of Parameter
            The shared parameters, in the order of the flattening.
        """
        shared = self.model.shared_parameters()
        rows, private = [], []
        for k in range(task_losses.shape[0]):
            own = self.model.task_parameters(k)
            grads = torch.autograd.grad(task_losses[k], shared + own, retain_graph=True, allow_unused=True)
            rows.append(_flat(grads[: len(shared)], shared))
            private.append(list(grads[len(shared) :]))
        shared_grads = torch.stack(rows)
        if self.data_parallel is not None:
            shared_grads, private = self.data_parallel.sum_task_gradients(shared_grads, private)
            self.gradients_synced = True
        return shared_grads, private, shared

    def write_gradients(
        self,
        shared: list[nn.Parameter],
        shared_grad: torch.Tensor,
        private_grads: list[list[torch.Tensor | None]],
        task_scales: torch.Tensor | None = None,
    ) -> None:
        """Set ``.grad``: ``shared_grad`` (flat) on the shared parameters, task ``k``'s private
        gradients scaled by ``task_scales[k]`` (the user's ``task_weights`` when None), plus
        the gradient of the architecture's auxiliary loss when there is one."""
        scales = self.task_weights if task_scales is None else task_scales
        offset = 0
        for p in shared:
            n = p.numel()
            p.grad = shared_grad[offset : offset + n].view_as(p).clone()
            offset += n
        for k, grads in enumerate(private_grads):
            for p, g in zip(self.model.task_parameters(k), grads):
                p.grad = None if g is None else g * scales[k]
        if self.aux_loss is not None and self.gradients_synced:
            # The .grad just written is global; add the all-reduced gradient of the aux loss.
            self.data_parallel.sum_aux_gradients(self.aux_loss, [p for p in self.model.parameters() if p.requires_grad])
        elif self.aux_loss is not None:
            self.aux_loss.backward()  # accumulates into the .grad just written


def _flat(grads, params) -> torch.Tensor:
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)])


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

    #: The constraints of the method's parameters (see :mod:`sklearn_mtr._constraints`),
    #: checked by :meth:`check_parameters` when a fit starts.
    _parameter_constraints: ClassVar[dict[str, list]] = {}

    def check_parameters(self) -> None:
        """Check the parameters against the class's constraints table, then those that depend
        on each other (:meth:`_check_parameter_combinations`).

        Raises
        ------
        ValueError
            Naming the method, the parameter and the value that is not allowed.
        """
        check_parameters(self, self._parameter_constraints)
        self._check_parameter_combinations()

    def _check_parameter_combinations(self) -> None:
        """Constraints that involve several parameters (none by default)."""

    def wrap_module(
        self,
        model: nn.Module,
        n_tasks: int,
        *,
        wrappers: Mapping[str, Callable[..., nn.Module]] | None = None,
    ) -> nn.Module:
        """The module to train. Methods that are partly an architecture (DRGrad's split
        primary tower) return a wrapper following the same model contract, built from
        ``wrappers`` (name -> module class; the estimators pass
        :data:`sklearn_mtr.models.MODULE_WRAPPERS`), so that methods never import the
        architectures. The default trains ``model`` as it is."""
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
        ctx.torch_optimizer.step()

    @staticmethod
    def weighted_total(task_losses: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """``sum_k w_k L_k`` plus the architecture's auxiliary loss."""
        total = (ctx.task_weights * task_losses).sum()
        return total if ctx.aux_loss is None else total + ctx.aux_loss


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's parameters (CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))
