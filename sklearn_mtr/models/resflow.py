"""ResFlow: task towers joined by residual flows between corresponding layers (Fu et al., KDD 2024)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from .._constraints import InstanceOf, Options
from .._schema import FeatureSchema
from ._base import MultiTaskModule
from ._blocks import InputEmbedding, make_activation

BATCH_NORM_MODES = ("train", "affine", "none")


class Affine(nn.Module):
    """A learnable per-feature scale and shift (batch norm without batch statistics)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight + self.bias


def make_norm(mode: str, dim: int) -> nn.Module:
    if mode == "train":
        return nn.BatchNorm1d(dim)
    if mode == "affine":
        return Affine(dim)
    if mode == "none":
        return nn.Identity()
    raise ValueError(f"batch_norm={mode!r} is not one of {BATCH_NORM_MODES}.")


def check_task_order(task_order: Sequence[int] | None, n_tasks: int) -> list[int]:
    """``task_order`` as a list of task indices (a permutation of ``range(n_tasks)``)."""
    if task_order is None:
        return list(range(n_tasks))
    try:
        order = [int(k) for k in task_order]
    except (TypeError, ValueError):
        raise ValueError(f"task_order must be a permutation of the task indices, got {task_order!r}.") from None
    if sorted(order) != list(range(n_tasks)) or any(k != o for k, o in zip(task_order, order)):
        raise ValueError(
            f"task_order must list each of the {n_tasks} task indices 0..{n_tasks - 1} once, got {list(task_order)!r}."
        )
    return order


class ResFlowTower(nn.Module):
    """One task's tower: ``[Linear -> activation -> norm]`` per hidden layer, then a logit Linear."""

    def __init__(self, in_dim: int, hidden_sizes: Sequence[int], activation: str, batch_norm: str) -> None:
        super().__init__()
        layers = []
        dim = in_dim
        for size in hidden_sizes:
            layers.append(nn.Sequential(nn.Linear(dim, size), make_activation(activation), make_norm(batch_norm, size)))
            dim = size
        self.layers = nn.ModuleList(layers)
        self.out = nn.Linear(dim, 1)


class ResFlow(MultiTaskModule):
    """Per-task towers on a shared embedding, with residual flows along a task order.

    With tasks taken in ``task_order`` (shallow funnel step first: click before
    conversion), write ``h_t^l`` for the output of layer ``l`` of the ``t``-th tower.
    The first tower is a plain MLP. With ``hidden_residual`` (the default), for every
    later tower the input of layer ``l + 1`` is ``h_t^l + h_{t-1}^l`` and its logit layer
    reads ``h_t^L + h_{t-1}^L`` (L = last hidden layer), as in the released two-task code
    (arXiv 2411.09705), generalised as a chain ``t-1 -> t``. With ``logit_residual`` the
    previous task's logit is added to the task's logit, so each task learns a correction
    of the shallower one. There is no stop-gradient: a deeper task's loss also trains the
    shallower towers through the additions. All towers have the same widths
    (``tower_hidden_sizes``), which the additions require.

    ``hidden_residual=False, logit_residual=True, batch_norm="none"`` is the released
    N-task variant for ordinal tasks (watch time above 5, 10, ..., 80 s): independent
    towers whose outputs are summed along the chain, ``z_t = f_t(e) + z_{t-1}``, so each
    task's logit is a cumulative sum and a deeper threshold learns only its correction.

    ``batch_norm`` (applied after the activation of every hidden layer and to the
    concatenated embedding, as in the released code):

    - ``"train"``: standard batch normalisation (batch statistics in training, running
      statistics in evaluation);
    - ``"affine"``: a learnable per-feature scale and shift only, no batch statistics.
      This is most likely what the released TF1 code computes in effect (its Keras BN
      layers run in inference mode and their moving statistics are never updated);
      training and prediction then behave identically at any batch size;
    - ``"none"``: no normalisation (the released N-task, logit-residual variant).

    Parameters private to a task (:meth:`task_modules`): a task's hidden layers reach
    every later task through the hidden flows, and its whole tower reaches the next one
    through the logit when ``logit_residual`` is on. So only the **last** task in
    ``task_order`` owns its whole tower; every other task owns its logit layer with the
    hidden flows alone, nothing with ``logit_residual``, and its whole tower with neither
    (the towers are then independent).
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "task_order": [Options(None), InstanceOf((list, tuple), "a permutation of the task indices")],
        "batch_norm": [Options(*BATCH_NORM_MODES)],
        "logit_residual": [Options(True, False)],
        "hidden_residual": [Options(True, False)],
    }

    def __init__(
        self,
        schema: FeatureSchema,
        n_tasks: int,
        *,
        embedding_dim: int = 16,
        tower_hidden_sizes: Sequence[int] = (128, 64),
        task_order: Sequence[int] | None = None,
        activation: str = "prelu",
        batch_norm: str = "affine",
        logit_residual: bool = False,
        hidden_residual: bool = True,
    ) -> None:
        super().__init__()
        self.check_hyperparameters(locals())
        sizes = list(tower_hidden_sizes)  # checked by the table
        if not sizes:
            raise ValueError("tower_hidden_sizes needs at least one layer (the residual flows join hidden layers).")
        make_activation(activation)  # validates the name
        self.n_tasks = n_tasks
        self.order = check_task_order(task_order, n_tasks)
        self.logit_residual = bool(logit_residual)
        self.hidden_residual = bool(hidden_residual)
        self.embedding = InputEmbedding(schema, embedding_dim, n_tasks)
        self.embedding_norm = make_norm(batch_norm, self.embedding.out_dim)
        self.towers = nn.ModuleList(
            ResFlowTower(self.embedding.out_dim, sizes, activation, batch_norm) for _ in range(n_tasks)
        )
        # All towers are built from the same sizes, so corresponding layers have equal
        # widths; checked here so that a future per-task size option cannot break it.
        widths = {tuple(layer[0].out_features for layer in tower.layers) for tower in self.towers}
        if len(widths) > 1:
            raise ValueError(f"ResFlow needs equal tower widths for its residual flows, got {sorted(widths)}.")

    def task_modules(self, k: int) -> list[nn.Module]:
        if k == self.order[-1] or not (self.hidden_residual or self.logit_residual):
            return [self.towers[k]]
        return [] if self.logit_residual else [self.towers[k].out]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        e = self.embedding_norm(self.embedding(batch))
        logits: list[torch.Tensor | None] = [None] * self.n_tasks
        prev_hidden: list[torch.Tensor] | None = None
        prev_logit: torch.Tensor | None = None
        for k in self.order:
            tower = self.towers[k]
            hidden = []
            x = e
            for l, layer in enumerate(tower.layers):
                if l > 0 and prev_hidden is not None:
                    x = x + prev_hidden[l - 1]
                x = layer(x)
                hidden.append(x)
            if prev_hidden is not None:
                x = x + prev_hidden[-1]
            z = tower.out(x)
            if self.logit_residual and prev_logit is not None:
                z = z + prev_logit
            logits[k] = z
            prev_hidden = hidden if self.hidden_residual else None
            prev_logit = z
        return self.embedding.bags.add_to(torch.cat(logits, dim=1), batch)
