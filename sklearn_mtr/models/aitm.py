"""AITM: adaptive information transfer multi-task model (Xi et al., KDD 2021)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import ClassVar

import torch
from torch import nn

from .._constraints import Interval
from .._schema import FeatureSchema
from ._base import MultiTaskModule
from ._blocks import MLP, InputEmbedding, make_activation


class InfoTransfer(nn.Module):
    """AIT between two consecutive funnel steps.

    The information ``p = g(z_prev)`` (one Linear + activation, the "info gate") and the
    task's own representation ``q`` are the two candidates; each candidate ``u`` gets the
    score ``<h1(u), h2(u)> / sqrt(d)`` (its own query and key), the scores are
    soft-maxed over the two, and the output is the weighted sum of ``h3(u)`` (values).
    """

    def __init__(self, dim: int, activation: str) -> None:
        super().__init__()
        self.info = nn.Sequential(nn.Linear(dim, dim), make_activation(activation))
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, z_prev: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        u = torch.stack([self.info(z_prev), q], dim=1)  # (B, 2, d)
        scores = (self.query(u) * self.key(u)).sum(-1) * self.scale  # (B, 2)
        weights = torch.softmax(scores, dim=1).unsqueeze(-1)
        return (weights * self.value(u)).sum(1)


class AITM(MultiTaskModule):
    """Per-task towers on shared embeddings, AIT between consecutive tasks, per-task heads.

    Tasks are funnel steps in label order (click, then conversion, ...). Task 0's
    representation is its tower output ``q_0``; task ``t >= 1`` replaces its tower
    output ``q_t`` by ``AIT(z_{t-1}, q_t)`` (:class:`InfoTransfer`), and a head MLP maps
    each representation to a logit. ``forward`` returns ``(logits, aux_loss)`` with the
    behavioural expectation calibrator
    ``calibration_weight * mean_rows sum_{t >= 1} max(p_t - p_{t-1}, 0)`` (a deeper step
    should not be more likely than the one before it); rows are unweighted in it.

    Private parameters: task ``t``'s tower and transfer feed every later task, so a
    task other than the last owns only its head; the last task owns its tower, its
    transfer (info gate included) and its head.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "calibration_weight": [Interval(Real, 0)],
    }

    def __init__(
        self,
        schema: FeatureSchema,
        n_tasks: int,
        *,
        embedding_dim: int = 16,
        tower_hidden_sizes: Sequence[int] = (128, 64),
        head_hidden_sizes: Sequence[int] = (32,),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        calibration_weight: float = 0.6,
    ) -> None:
        super().__init__()
        self.check_hyperparameters(locals())
        self.n_tasks = n_tasks
        self.calibration_weight = float(calibration_weight)
        self.embedding = InputEmbedding(schema, embedding_dim, n_tasks)
        layer = {"activation": activation, "dropout": dropout, "batch_norm": batch_norm}
        self.towers = nn.ModuleList(MLP(self.embedding.out_dim, tower_hidden_sizes, **layer) for _ in range(n_tasks))
        dim = self.towers[0].out_dim
        self.transfers = nn.ModuleList(InfoTransfer(dim, activation) for _ in range(n_tasks - 1))
        self.heads = nn.ModuleList(MLP(dim, head_hidden_sizes, **layer, output_dim=1) for _ in range(n_tasks))

    def task_modules(self, k: int) -> list[nn.Module]:
        if k < self.n_tasks - 1:
            return [self.heads[k]]
        mods: list[nn.Module] = [self.towers[k], self.heads[k]]
        if k > 0:
            mods.append(self.transfers[k - 1])
        return mods

    def calibration_loss(self, logits: torch.Tensor) -> torch.Tensor:
        """``calibration_weight * mean_rows sum_t max(p_t - p_{t-1}, 0)`` (0 for one task)."""
        p = torch.sigmoid(logits.float())
        if p.shape[1] < 2:
            return p.new_zeros(())
        return self.calibration_weight * torch.relu(p[:, 1:] - p[:, :-1]).sum(1).mean()

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embedding(batch)
        reps = []
        for k, tower in enumerate(self.towers):
            q = tower(x)
            reps.append(q if k == 0 else self.transfers[k - 1](reps[-1], q))
        logits = self.embedding.bags.add_to(torch.cat([head(z) for head, z in zip(self.heads, reps)], dim=1), batch)
        return logits, self.calibration_loss(logits)
