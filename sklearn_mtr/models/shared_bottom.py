"""Shared-Bottom: one shared MLP under per-task towers (Caruana, 1997)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._schema import FeatureSchema
from ._base import MultiTaskModule
from ._blocks import MLP, InputEmbedding, tower_logits


class SharedBottom(MultiTaskModule):
    """Embeddings -> shared bottom MLP -> one tower per task -> one logit per task."""

    def __init__(
        self,
        schema: FeatureSchema,
        n_tasks: int,
        *,
        embedding_dim: int = 16,
        bottom_hidden_sizes: Sequence[int] = (256, 128),
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
        self.bottom = MLP(self.embedding.out_dim, bottom_hidden_sizes, **layer)
        self.towers = nn.ModuleList(
            MLP(self.bottom.out_dim, tower_hidden_sizes, **layer, output_dim=1) for _ in range(n_tasks)
        )

    def tower_inputs(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The shared bottom's output, once per task (every tower reads it)."""
        return [self.bottom(self.embedding(batch))] * self.n_tasks

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.embedding.bags.add_to(tower_logits(self.towers, self.tower_inputs(batch)), batch)
