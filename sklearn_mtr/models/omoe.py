"""OMoE: one-gate mixture of experts (the baseline of MMoE, Ma et al., KDD 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._schema import FeatureSchema
from ._base import MultiTaskModule
from ._blocks import MLP, BatchedExperts, InputEmbedding, mix, tower_logits


class OMoE(MultiTaskModule):
    """One-gate Mixture-of-Experts (OMoE), the baseline of the MMoE paper (Ma et al., KDD 2018,
    doi:10.1145/3219819.3220007).

    ``n_experts`` expert MLPs read the embedded input; a *single* softmax gate on the input,
    shared by all tasks, mixes them, and every task's tower reads that same mixture. It is
    MMoE with one gate instead of one per task: the tasks share the experts and the routing,
    and differ only in their towers.

    Parameters
    ----------
    n_experts : int, default=8
        Number of experts.
    expert_hidden_sizes : tuple of int, default=(256, 128)
        Widths of each expert MLP.
    tower_hidden_sizes : tuple of int, default=(64,)
        Widths of each task tower before its logit.
    activation : str, default="relu"
        Hidden activation: "relu", "prelu", "gelu", "silu", "tanh" or "leaky_relu".
    dropout : float, default=0.0
        Dropout after every hidden layer.
    batch_norm : bool, default=False
        Batch normalisation after every hidden linear layer.
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
        self.gate = nn.Linear(self.embedding.out_dim, n_experts)  # shared by every task
        self.towers = nn.ModuleList(
            MLP(self.experts.out_dim, tower_hidden_sizes, **layer, output_dim=1) for _ in range(n_tasks)
        )

    def gate_weights(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The one gate's softmax weights ``(batch, n_experts)``, for inspection."""
        return torch.softmax(self.gate(self.embedding(batch)), dim=-1)

    def tower_inputs(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The gate's mixture of the experts, the same input for every task's tower."""
        x = self.embedding(batch)
        mixture = mix(self.gate(x), self.experts(x))
        return [mixture] * self.n_tasks

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.embedding.bags.add_to(tower_logits(self.towers, self.tower_inputs(batch)), batch)
