"""Cross-stitch networks (Misra et al., CVPR 2016, arXiv:1604.03539)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from numbers import Real
from typing import ClassVar

import torch
from torch import nn

from .._constraints import Interval
from .._schema import FeatureSchema
from ._base import MultiTaskModule
from ._blocks import MLP, InputEmbedding, tower_logits


class StitchRow(nn.Module):
    """How one task's column mixes all columns' activations in one cross-stitch unit: the
    weights ``alpha[t, :]`` of ``x_t' = sum_s alpha[t, s] x_s``."""

    def __init__(self, n_tasks: int, task: int, self_weight: float) -> None:
        super().__init__()
        other = (1.0 - self_weight) / (n_tasks - 1) if n_tasks > 1 else 0.0
        alpha = torch.full((n_tasks,), other)
        alpha[task] = self_weight if n_tasks > 1 else 1.0
        self.alpha = nn.Parameter(alpha)

    def forward(self, columns: torch.Tensor) -> torch.Tensor:
        """``(B, n_tasks, H)`` -> ``(B, H)``."""
        return torch.einsum("s,bsh->bh", self.alpha, columns)


class CrossStitch(MultiTaskModule):
    """Cross-stitch network (Misra et al., CVPR 2016, arXiv:1604.03539): one column per task,
    mixed by learned cross-stitch units after every layer.

    Each task has its own column, an MLP of ``column_hidden_sizes`` on the shared embedded
    input. After each of its layers a cross-stitch unit replaces the columns' activations
    ``x_1, ..., x_T`` by ``x_t' = sum_s alpha[t, s] x_s`` (the paper's unit for ``T`` tasks: one
    learned ``T x T`` matrix per layer, a scalar per pair of columns), which the next layer of
    each column reads; task ``t``'s tower reads ``x_t'`` of the last unit. The units start near
    the identity, ``alpha[t, t] = stitch_init`` and the rest of each row ``(1 - stitch_init) /
    (T - 1)`` (the paper's 0.9 / 0.1 for two tasks, rows summing to 1), so training starts from
    nearly independent columns; with identity units the columns are separate networks.

    The paper also scales the units' learning rate up (by 10^3 for its convolutional columns);
    here they train at the estimator's ``lr``, as every other parameter. Private parameters:
    each column feeds every column through the units, so task ``t`` owns its tower and the
    row ``alpha[t, :]`` of the last unit.

    Parameters
    ----------
    column_hidden_sizes : tuple of int, default=(128, 64)
        Widths of each task's column; a cross-stitch unit follows every layer.
    stitch_init : float, default=0.9
        Initial weight of a column on itself in every unit, in ``[0, 1]``; the other columns
        share the rest equally (1 gives identity units).
    tower_hidden_sizes : tuple of int, default=(32,)
        Widths of each task tower (on its column's last stitched activations) before its logit.
    activation : str, default="relu"
        Hidden activation: "relu", "prelu", "gelu", "silu", "tanh" or "leaky_relu".
    dropout : float, default=0.0
        Dropout after every hidden layer.
    batch_norm : bool, default=False
        Batch normalisation after every hidden linear layer.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "stitch_init": [Interval(Real, 0, 1)],
    }

    def __init__(
        self,
        schema: FeatureSchema,
        n_tasks: int,
        *,
        embedding_dim: int = 16,
        column_hidden_sizes: Sequence[int] = (128, 64),
        stitch_init: float = 0.9,
        tower_hidden_sizes: Sequence[int] = (32,),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.check_hyperparameters(locals())
        sizes = list(column_hidden_sizes)  # checked by the table
        if not sizes:
            raise ValueError("column_hidden_sizes needs at least one layer.")
        self.n_tasks = n_tasks
        self.embedding = InputEmbedding(schema, embedding_dim, n_tasks)
        layer = {"activation": activation, "dropout": dropout, "batch_norm": batch_norm}
        dims = [self.embedding.out_dim, *sizes]
        # columns[l][t]: layer l of task t's column; stitches[l][t]: row t of the unit after layer l
        self.columns = nn.ModuleList(
            nn.ModuleList(MLP(a, (b,), **layer) for _ in range(n_tasks)) for a, b in pairwise(dims)
        )
        self.stitches = nn.ModuleList(
            nn.ModuleList(StitchRow(n_tasks, t, float(stitch_init)) for t in range(n_tasks)) for _ in sizes
        )
        self.towers = nn.ModuleList(MLP(dims[-1], tower_hidden_sizes, **layer, output_dim=1) for _ in range(n_tasks))

    def task_modules(self, k: int) -> list[nn.Module]:
        return [self.stitches[-1][k], self.towers[k]]

    def stitch_matrices(self) -> list[torch.Tensor]:
        """Each unit's ``(n_tasks, n_tasks)`` matrix ``alpha`` (row ``t``: task ``t``'s mixing)."""
        return [torch.stack([row.alpha for row in unit]) for unit in self.stitches]

    def tower_inputs(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Each task's column output after the last cross-stitch unit."""
        x = self.embedding(batch)
        h = [x] * self.n_tasks
        for layers, unit in zip(self.columns, self.stitches):
            stacked = torch.stack([column(h_t) for column, h_t in zip(layers, h)], dim=1)  # (B, T, H)
            h = [row(stacked) for row in unit]
        return h

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.embedding.bags.add_to(tower_logits(self.towers, self.tower_inputs(batch)), batch)
