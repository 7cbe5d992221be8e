"""MMoE: multi-gate mixture of experts (Ma et al., KDD 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._schema import FeatureSchema
from ._base import MultiTaskModule
from ._blocks import MLP, BatchedExperts, InputEmbedding, mix, tower_logits


class MMoE(MultiTaskModule):
    """Shared experts, mixed per task by a softmax gate on the input, then per-task towers.

    Experts are :class:`BatchedExperts` (one batched product per layer, or expert by expert
    for wide layers on a CPU); each task owns its gate and tower.
    """

    def __init__(
        self,
        schema: FeatureSchema,
        n_tasks: int,
        *,
        embedding_dim: int = 16,
        n_experts: int = 8,
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
        self.experts = BatchedExperts(n_experts, self.embedding.out_dim, expert_hidden_sizes, **layer)
        self.gates = nn.ModuleList(nn.Linear(self.embedding.out_dim, n_experts) for _ in range(n_tasks))
        self.towers = nn.ModuleList(
            MLP(self.experts.out_dim, tower_hidden_sizes, **layer, output_dim=1) for _ in range(n_tasks)
        )

    def task_modules(self, k: int) -> list[nn.Module]:
        return [self.gates[k], self.towers[k]]

    def gate_weights(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Softmax gate weights ``(batch, n_tasks, n_experts)``, for inspection."""
        x = self.embedding(batch)
        return torch.stack([torch.softmax(g(x), dim=-1) for g in self.gates], dim=1)

    def tower_inputs(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Each task's gate mixture of the experts, the input of its tower."""
        x = self.embedding(batch)
        experts = self.experts(x)
        return [mix(gate(x), experts) for gate in self.gates]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.embedding.bags.add_to(tower_logits(self.towers, self.tower_inputs(batch)), batch)
