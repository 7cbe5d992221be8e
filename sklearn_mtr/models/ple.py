"""PLE: progressive layered extraction, stacked CGC levels (Tang et al., RecSys 2020)."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import ClassVar

import torch
from torch import nn

from .._constraints import Interval
from .._schema import FeatureSchema
from ._base import MultiTaskModule
from ._blocks import MLP, BatchedExperts, InputEmbedding, mix, tower_logits


class _CGCLevel(nn.Module):
    """One customized gate control level: task experts + shared experts, gated per task.

    Experts are ordered ``[task 0 ..., task 1 ..., ..., shared ...]`` and run as
    :class:`BatchedExperts`. Task ``t``'s gate mixes its own experts and the shared ones; the shared gate
    (absent on the last level) mixes all experts and feeds the shared experts above.
    """

    def __init__(self, n_tasks, in_dim, n_task_experts, n_shared_experts, hidden_sizes, last, layer):
        super().__init__()
        self.n_tasks, self.n_task_experts, self.n_shared = n_tasks, n_task_experts, n_shared_experts
        groups = [n_task_experts] * n_tasks + [n_shared_experts]
        self.experts = BatchedExperts(groups, in_dim, hidden_sizes, **layer)
        self.out_dim = self.experts.out_dim
        self.task_gates = nn.ModuleList(nn.Linear(in_dim, n_task_experts + n_shared_experts) for _ in range(n_tasks))
        self.shared_gate = None if last else nn.Linear(in_dim, n_tasks * n_task_experts + n_shared_experts)
        # Which input (task t, or the shared stream = index n_tasks) each expert reads.
        owner = [t for t in range(n_tasks) for _ in range(n_task_experts)] + [n_tasks] * n_shared_experts
        self.register_buffer("owner", torch.tensor(owner), persistent=False)

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """``inputs``: one tensor (level 0) or ``n_tasks + 1`` streams (task ones, then shared)."""
        if len(inputs) == 1:
            experts = self.experts(inputs[0])
            inputs = inputs * (self.n_tasks + 1)
        else:
            experts = self.experts(torch.stack(inputs, dim=1)[:, self.owner])
        shared = experts[:, self.n_tasks * self.n_task_experts :]
        outputs = []
        for t, gate in enumerate(self.task_gates):
            own = experts[:, t * self.n_task_experts : (t + 1) * self.n_task_experts]
            outputs.append(mix(gate(inputs[t]), torch.cat([own, shared], dim=1)))
        if self.shared_gate is not None:
            outputs.append(mix(self.shared_gate(inputs[self.n_tasks]), experts))
        return outputs


class PLE(MultiTaskModule):
    """``n_levels`` CGC levels, then per-task towers."""

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "n_levels": [Interval(Integral, 1)],
        "n_task_experts": [Interval(Integral, 1)],
        "n_shared_experts": [Interval(Integral, 1)],
    }

    def __init__(
        self,
        schema: FeatureSchema,
        n_tasks: int,
        *,
        embedding_dim: int = 16,
        n_levels: int = 2,
        n_task_experts: int = 1,
        n_shared_experts: int = 1,
        expert_hidden_sizes: Sequence[int] = (256, 128),
        tower_hidden_sizes: Sequence[int] = (64,),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.check_hyperparameters(locals())
        self.n_tasks = n_tasks
        self.embedding = InputEmbedding(schema, embedding_dim, n_tasks)
        layer = {"activation": activation, "dropout": dropout, "batch_norm": batch_norm}
        levels, dim = [], self.embedding.out_dim
        for i in range(n_levels):
            level = _CGCLevel(
                n_tasks, dim, n_task_experts, n_shared_experts, expert_hidden_sizes, i == n_levels - 1, layer
            )
            levels.append(level)
            dim = level.out_dim
        self.levels = nn.ModuleList(levels)
        self.towers = nn.ModuleList(MLP(dim, tower_hidden_sizes, **layer, output_dim=1) for _ in range(n_tasks))

    def task_modules(self, k: int) -> list[nn.Module]:
        # Below the last level every task's experts also feed the shared gate, hence every
        # task: only the last level's experts and the last two levels' gates are task k's own.
        last = self.levels[-1]
        mods: list[nn.Module] = [self.towers[k], last.task_gates[k], last.experts.groups[k]]
        if len(self.levels) > 1:
            mods.append(self.levels[-2].task_gates[k])
        return mods

    def tower_inputs(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The last level's per-task outputs, the inputs of the towers."""
        streams = [self.embedding(batch)]
        for level in self.levels:
            streams = level(streams)
        return streams[: self.n_tasks]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.embedding.bags.add_to(tower_logits(self.towers, self.tower_inputs(batch)), batch)
