"""Weighted bags of ids: text columns and a sparse X, read deeply (one field each) and widely
(straight into every task's logit, the linear model that TF-IDF + logistic regression is)."""

from __future__ import annotations

import torch
from torch import nn

from .._schema import PAD_INDEX, FeatureSchema

# The wide weights are stored divided by this factor, so that under Adam (whose steps have the
# same size in parameter space whatever the gradient's scale) the wide term moves this many
# times faster than a deep weight. Without it the wide path is still far from the linear
# model's solution when early stopping ends training (the deep path overfits text within 2-3
# epochs): on the clothing-reviews data, MMoE's test AUC per task rose by 0.002-0.028 with 10,
# and 30 was no better (benchmarks/text_wide_scale.py).
WIDE_SCALE = 10.0


class WeightedBag(nn.Module):
    """``sum_j w_j * table[id_j]`` per row: ids and weights ``(B, L)`` -> ``(B, dim)``.

    The same as ``nn.EmbeddingBag(mode="sum")`` with ``per_sample_weights``; written as a
    look-up and a batched product, which the ONNX tracing exporter turns into Gather and
    MatMul (no loop) and which needs no offsets. Padding (id 0, weight 0) adds nothing.
    """

    def __init__(self, n_ids: int, dim: int, *, zero: bool = False) -> None:
        super().__init__()
        self.table = nn.Embedding(n_ids, dim, padding_idx=PAD_INDEX)
        if zero:
            nn.init.zeros_(self.table.weight)
        else:
            nn.init.uniform_(self.table.weight, -0.05, 0.05)
            with torch.no_grad():
                self.table.weight[PAD_INDEX].zero_()

    def forward(self, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        embedded = self.table(ids)
        return torch.bmm(weights.to(embedded.dtype).unsqueeze(1), embedded).squeeze(1)


def bag_inputs(schema: FeatureSchema) -> list[tuple[str, str, str, int]]:
    """``(key, ids input, weights input, table size)`` of every bag input of ``schema``:
    the text columns, then the sparse X."""
    bags = [(f"text__{t.name}", f"text__{t.name}", f"weight__{t.name}", t.vocab_size) for t in schema.texts]
    if schema.sparse is not None:
        bags.append(("sparse", "sparse__ids", "sparse__values", schema.sparse.n_columns + 1))
    return bags


def deep_sizes(schema: FeatureSchema) -> dict[str, int]:
    """Per bag key, the size of its deep table: the ids of frequent terms or columns only
    (``deep_size`` of the schema's inputs)."""
    sizes = {f"text__{t.name}": t.deep_size for t in schema.texts}
    if schema.sparse is not None:
        sizes["sparse"] = schema.sparse.deep_size
    return sizes


class BagInputs(nn.Module):
    """The deep and wide reads of the bag inputs (text columns, sparse X) of a schema.

    - deep: one ``embedding_dim`` field per bag, a :class:`WeightedBag` of learned vectors
      over the ids below the bag's deep size (:func:`deep_sizes`; other ids add nothing);
    - wide: one zero-initialised :class:`WeightedBag` of width ``n_tasks`` per bag, whose sum
      times :data:`WIDE_SCALE` is added to the logits (:meth:`add_to`); the models therefore
      contain TF-IDF + a linear model per task (Cheng et al., "Wide & Deep", arXiv 1606.07792). It starts at 0, so the
      network's output at initialisation is unchanged.
    """

    def __init__(self, schema: FeatureSchema, embedding_dim: int, n_tasks: int | None = None) -> None:
        super().__init__()
        self.bags = bag_inputs(schema)
        self.deep_sizes = deep_sizes(schema)
        self.deep = nn.ModuleDict({key: WeightedBag(self.deep_sizes[key], embedding_dim) for key, *_ in self.bags})
        self.wide = (
            nn.ModuleDict({key: WeightedBag(size, n_tasks, zero=True) for key, _, _, size in self.bags})
            if n_tasks and self.bags
            else None
        )

    @property
    def n_fields(self) -> int:
        return len(self.bags)

    def _deep(self, key: str, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        size = self.deep_sizes[key]
        # ids without a deep vector read the padding row (zero, never trained)
        return self.deep[key](torch.where(ids < size, ids, torch.zeros_like(ids)), weights)

    def field(self, batch: dict[str, torch.Tensor], key: str) -> torch.Tensor:
        """One bag's deep field ``(B, embedding_dim)``; ``key`` is ``"text__<name>"`` or ``"sparse"``."""
        for k, ids, weights, _ in self.bags:
            if k == key:
                return self._deep(key, batch[ids], batch[weights])
        raise KeyError(key)

    def fields(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Every bag's deep field, ``(B, 1, embedding_dim)`` each."""
        return [self._deep(key, batch[ids], batch[w]).unsqueeze(1) for key, ids, w, _ in self.bags]

    def add_to(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``logits`` ``(B, n_tasks)`` plus the wide term of every bag (unchanged without bags)."""
        if self.wide is None:
            return logits
        for key, ids, weights, _ in self.bags:
            logits = logits + WIDE_SCALE * self.wide[key](batch[ids], batch[weights]).to(logits.dtype)
        return logits
