"""The model contract every architecture follows."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from .._constraints import check_value
from ._blocks import LAYER_WIDTHS, SHARED_CONSTRAINTS


class MultiTaskModule(nn.Module):
    """Base class of the architectures: a batch dict of tensors -> logits ``(batch, n_tasks)``.

    Subclasses build ``self.towers`` (an ``nn.ModuleList``, one tower per task) and override
    :meth:`task_modules` when a task owns more than its tower (a gate, task experts).
    ``forward`` returns the logits, or ``(logits, aux_loss)`` when the architecture has an
    auxiliary objective (load balancing, contrastive terms) that training must add. An
    auxiliary objective that needs the task labels declares a keyword ``labels=None`` in
    ``forward`` (:meth:`reads_labels`): training steps pass the batch's labels ``(B, n_tasks)``
    (NaN: missing) to it; validation and prediction never do. The labels are never a feature.

    Parameter groups (what multi-task optimizers need):

    - :meth:`task_parameters` ``(k)``: parameters that only task ``k``'s loss reaches;
    - :meth:`shared_parameters`: every other trainable parameter.
    """

    n_tasks: int
    towers: nn.ModuleList

    #: Constraints of the architecture's own parameters (see :mod:`sklearn_mtr._constraints`);
    #: those it shares with the others come from the building blocks. Constraints between
    #: parameters, or on the data, stay in ``__init__``.
    _parameter_constraints: ClassVar[dict[str, list]] = {}

    @classmethod
    def parameter_constraints(cls, exclude: tuple[str, ...] = ()) -> dict[str, list]:
        """The constraints table of :meth:`hyperparameters`, by name: the shared entries
        (``embedding_dim``, ``n_experts``, ``activation``, ``dropout``, ``batch_norm``, every
        ``*_hidden_sizes``) then the class's own ``_parameter_constraints``; ``exclude`` leaves
        names out (the parameters an estimator computes rather than takes from the user).
        Estimators check it when a fit starts; ``__init__`` through
        :meth:`check_hyperparameters`."""
        table = {}
        for name in cls.hyperparameters():
            if name in SHARED_CONSTRAINTS:
                table[name] = SHARED_CONSTRAINTS[name]
            elif name.endswith("_hidden_sizes"):
                table[name] = LAYER_WIDTHS
        table.update(cls._parameter_constraints)
        return {name: allowed for name, allowed in table.items() if name not in exclude}

    @classmethod
    def check_hyperparameters(cls, values: Mapping[str, Any]) -> None:
        """Check ``values`` (name -> value, as ``locals()`` in ``__init__``; other names are
        ignored) against :meth:`parameter_constraints`.

        Raises
        ------
        ValueError
            ``"<name> must be <what it may be>, got <value>."``
        """
        for name, allowed in cls.parameter_constraints().items():
            if name in values:
                check_value(name, values[name], allowed)

    @classmethod
    def hyperparameters(cls) -> dict[str, inspect.Parameter]:
        """The architecture's own parameters (those after ``schema`` and ``n_tasks``), by name:
        what an estimator passes on when it builds the module."""
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        if [p.name for p in params[:2]] != ["schema", "n_tasks"]:
            raise ValueError(f"{cls.__name__}.__init__ must start with (schema, n_tasks).")
        return {p.name: p for p in params[2:]}

    @classmethod
    def reads_labels(cls) -> bool:
        """Whether ``forward`` takes the task labels (a ``labels`` keyword): training passes
        them to an architecture whose auxiliary loss needs them (ESCM2's counterfactual
        risk, OneRank's InfoNCE)."""
        return "labels" in inspect.signature(cls.forward).parameters

    def task_modules(self, k: int) -> list[nn.Module]:
        """Modules private to task ``k``."""
        return [self.towers[k]]

    def task_parameters(self, k: int) -> list[nn.Parameter]:
        """Trainable parameters of :meth:`task_modules` ``(k)``: only task ``k``'s loss reaches them."""
        if not 0 <= k < self.n_tasks:
            raise IndexError(f"task index {k} out of range for {self.n_tasks} tasks")
        seen: set[int] = set()
        params = []
        for module in self.task_modules(k):
            for p in module.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        return params

    def shared_parameters(self) -> list[nn.Parameter]:
        """Every trainable parameter that belongs to no task's :meth:`task_parameters`."""
        private = {id(p) for k in range(self.n_tasks) for p in self.task_parameters(k)}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in private]

    def same_shaped_towers(self) -> bool:
        """Whether all towers have identical parameter shapes (tower-routing optimizers need it)."""
        shapes = [[tuple(p.shape) for p in t.parameters()] for t in self.towers]
        return all(s == shapes[0] for s in shapes[1:])

    def tower_inputs(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The input of each task's tower, ``n_tasks`` tensors ``(batch, tower_in_dim)``.

        Methods that add towers on the backbone's representations (DRGrad's split primary
        tower) need it; architectures whose towers read such vectors implement it and
        compute ``forward`` as ``tower_logits(self.towers, self.tower_inputs(batch))``.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not expose its towers' inputs (tower_inputs); "
            "methods that add towers on them, such as DRGrad's split mode, cannot use it."
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(batch, n_tasks)``, or ``(logits, aux_loss)`` with an auxiliary objective."""
        raise NotImplementedError
