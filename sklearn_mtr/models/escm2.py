"""ESCM2: entire space counterfactual multi-task model (Wang et al., SIGIR 2022, arXiv:2204.05125)."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from .._constraints import Interval, Options
from .._schema import FeatureSchema
from ._blocks import MLP
from .esmm import ESMM, chained_product_logits

_COUNTERFACTUALS = ("ips", "dr")


class ESCM2(ESMM):
    """ESCM2 (Wang et al., SIGIR 2022, arXiv:2204.05125): ESMM plus a counterfactual CVR risk.

    The model is :class:`ESMM`'s: tower ``t`` predicts stage ``t`` given stage ``t - 1``
    (pCTR, then pCVR), and the outputs are the entire-space products (pCTR, pCTCVR), trained
    by the per-task losses on the click and click-and-conversion labels: the paper's
    empirical CTR risk and global CTCVR risk (``lambda_g`` is the estimator's
    ``task_weights``). ESCM2 adds ``counterfactual_weight`` (``lambda_c``) times a
    counterfactual risk of the CVR tower, the auxiliary loss ``forward`` returns in training.
    With ``o_i`` the click label, ``o_hat_i`` the predicted pCTR (the propensity) and ``e_i``
    the cross-entropy of pCVR against the conversion label, averaged over all impressions:

    - ``"ips"``: ``mean_i o_i e_i / o_hat_i`` (inverse propensity scoring);
    - ``"dr"`` (doubly robust): an imputation tower predicts the error, ``e_hat_i``;
      ``mean_i [e_hat_i + o_i (e_i - e_hat_i) / o_hat_i]`` plus the imputation loss
      ``mean_i o_i (e_i - e_hat_i)^2 / o_hat_i``.

    The propensity is detached (the CTR tower learns from its own risk, as in the PaddleRec
    code) and clipped below at ``min_propensity`` (that code caps the inverse at 15); in the DR
    risk ``e_hat`` is detached, and in the imputation loss ``e`` (joint learning: the
    imputation tower fits the error, the CVR tower the doubly robust risk). The imputed error
    is a softplus, so non-negative as a cross-entropy is. More than two stages apply the
    same risk to each stage ``t >= 1`` given stage ``t - 1`` (``o`` the label of stage
    ``t - 1``, ``o_hat`` its predicted entire-space probability); one stage is a plain tower.
    Rows with a missing label at the stage or the one before are left out of the risk. The
    risk needs the labels: training steps pass them to ``forward`` (``labels``);
    without them (prediction, evaluation) the auxiliary loss is 0.

    Private parameters: as ESMM's (the last stage's tower); the imputation towers are
    reached by the auxiliary loss only, so they are shared.

    Parameters
    ----------
    counterfactual : {"ips", "dr"}, default="dr"
        The counterfactual risk: inverse propensity scoring or doubly robust.
    counterfactual_weight : float, default=0.5
        Its weight ``lambda_c`` in the training loss.
    min_propensity : float, default=0.05
        Lower bound of the propensity ``o_hat`` (an upper bound of ``1 / o_hat``) in the risk.
    tower_hidden_sizes : tuple of int, default=(128, 64)
        Widths of each stage's tower (and imputation tower) before its output.
    activation : str, default="relu"
        Hidden activation: "relu", "prelu", "gelu", "silu", "tanh" or "leaky_relu".
    dropout : float, default=0.0
        Dropout after every hidden layer.
    batch_norm : bool, default=False
        Batch normalisation after every hidden linear layer.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "counterfactual": [Options(*_COUNTERFACTUALS)],
        "counterfactual_weight": [Interval(Real, 0)],
        "min_propensity": [Interval(Real, 0, 1, closed="right")],
    }

    def __init__(
        self,
        schema: FeatureSchema,
        n_tasks: int,
        *,
        embedding_dim: int = 16,
        counterfactual: str = "dr",
        counterfactual_weight: float = 0.5,
        min_propensity: float = 0.05,
        tower_hidden_sizes: Sequence[int] = (128, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        self.check_hyperparameters(locals())
        super().__init__(
            schema,
            n_tasks,
            embedding_dim=embedding_dim,
            tower_hidden_sizes=tower_hidden_sizes,
            activation=activation,
            dropout=dropout,
            batch_norm=batch_norm,
        )
        self.counterfactual = counterfactual
        self.counterfactual_weight = float(counterfactual_weight)
        self.min_propensity = float(min_propensity)
        layer = {"activation": activation, "dropout": dropout, "batch_norm": batch_norm}
        self.imputation = nn.ModuleList(
            MLP(self.embedding.out_dim, tower_hidden_sizes, **layer, output_dim=1)
            for _ in range(n_tasks - 1 if counterfactual == "dr" else 0)
        )

    def counterfactual_risk(
        self, x: torch.Tensor, conditional: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """``counterfactual_weight`` times the IPS or DR risk summed over the stages ``t >= 1``."""
        total = logits.new_zeros((), dtype=torch.float32)
        labels = labels.to(torch.float32)
        for t in range(1, self.n_tasks):
            o, r = labels[:, t - 1], labels[:, t]
            known = torch.isfinite(o) & ((o == 0) | torch.isfinite(r))
            o = torch.where(known, o, 0.0)
            r = torch.where(torch.isfinite(r), r, 0.0)
            propensity = torch.sigmoid(logits[:, t - 1].float()).detach().clamp(min=self.min_propensity)
            e = F.binary_cross_entropy_with_logits(conditional[:, t].float(), r, reduction="none")
            if self.counterfactual == "ips":
                risk = o * e / propensity
            else:
                e_hat = F.softplus(self.imputation[t - 1](x).squeeze(1).float())
                risk = e_hat.detach() + o * (e - e_hat.detach()) / propensity
                risk = risk + o * (e.detach() - e_hat) ** 2 / propensity
            risk = torch.where(known, risk, 0.0)
            total = total + risk.sum() / known.sum().clamp(min=1)
        return self.counterfactual_weight * total

    def forward(
        self, batch: dict[str, torch.Tensor], labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embedding(batch)
        conditional = self.embedding.bags.add_to(torch.cat([tower(x) for tower in self.towers], dim=1), batch)
        logits = chained_product_logits(conditional)
        if not self.training or labels is None or self.n_tasks < 2:
            return logits, logits.new_zeros((), dtype=torch.float32)
        return logits, self.counterfactual_risk(x, conditional, logits, labels)
