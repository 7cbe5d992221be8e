"""ESMM: entire space multi-task model (Ma et al., SIGIR 2018)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .._schema import FeatureSchema
from ._base import MultiTaskModule
from ._blocks import MLP, InputEmbedding


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, accurate on the whole range (Maechler's rule)."""
    cut = -math.log(2.0)
    near = x > cut
    # Each branch sees only inputs where it is accurate, so no inf/NaN leaks into the gradient.
    return torch.where(
        near, torch.log(-torch.expm1(torch.where(near, x, cut))), torch.log1p(-torch.exp(torch.where(near, cut, x)))
    )


def chained_product_logits(conditional_logits: torch.Tensor) -> torch.Tensor:
    """Logits of the cumulative products of ``sigmoid(conditional_logits)`` along dim 1.

    Column ``t`` of the result is ``logit(prod_{s <= t} sigmoid(a_s))``, computed in log
    space (``logsigmoid``, then ``log p - log(1 - p)``) so that ``sigmoid`` of it equals
    the product without underflow or cancellation.
    """
    log_p = torch.cumsum(F.logsigmoid(conditional_logits.float()), dim=1)
    # log p == 0 (p rounds to 1) would give an infinite logit; keep it finite.
    log_p = log_p.clamp(max=-torch.finfo(log_p.dtype).tiny)
    return log_p - log1mexp(log_p)


class ESMM(MultiTaskModule):
    """One tower per funnel stage on shared embeddings; outputs chained products.

    Tower ``t`` predicts the *conditional* probability of stage ``t`` given stage
    ``t - 1`` (tower 0: pCTR; tower 1: pCVR = P(buy | click)). The module returns the
    logits of the *entire-space* probabilities ``pCTR``, ``pCTCVR = pCTR * pCVR``, ...
    (cumulative products), so the usual per-task cross-entropy on the click and
    click-and-buy labels over all impressions is ESMM's loss; the CVR tower gets no
    direct label. Two stages is the paper's model; more stages chain the product
    (``P(stage t) = prod_{s <= t} q_s``); one stage is a plain tower.

    Only the last stage's tower is private to one task: tower ``t`` enters every
    stage ``>= t``.
    """

    def __init__(
        self,
        schema: FeatureSchema,
        n_tasks: int,
        *,
        embedding_dim: int = 16,
        tower_hidden_sizes: Sequence[int] = (128, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.check_hyperparameters(locals())
        self.n_tasks = n_tasks
        self.embedding = InputEmbedding(schema, embedding_dim, n_tasks)
        layer = {"activation": activation, "dropout": dropout, "batch_norm": batch_norm}
        self.towers = nn.ModuleList(
            MLP(self.embedding.out_dim, tower_hidden_sizes, **layer, output_dim=1) for _ in range(n_tasks)
        )

    def task_modules(self, k: int) -> list[nn.Module]:
        return [self.towers[k]] if k == self.n_tasks - 1 else []

    def conditional_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The towers' logits ``(B, n_tasks)``: pCTR, then each stage given the previous one."""
        x = self.embedding(batch)
        return torch.cat([tower(x) for tower in self.towers], dim=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return chained_product_logits(self.embedding.bags.add_to(self.conditional_logits(batch), batch))
