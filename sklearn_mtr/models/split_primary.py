"""A backbone whose primary task's tower is split in two: DRGrad's split mode
(Liu, Miao & Xia, arXiv 2510.09643), as an architecture.

The method (``sklearn_mtr.optim.drgrad``) routes gradients between the two sub-towers and
updates their mixing weights; this module only builds them and computes the logits, so the
methods never import the architectures: the estimator hands this class to
``DRGrad.wrap_module`` through :data:`sklearn_mtr.models.MODULE_WRAPPERS`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ._base import MultiTaskModule
from ._blocks import tower_logits


def _fresh_copy(module: nn.Module) -> nn.Module:
    """Same architecture, freshly initialised parameters (and reset batch-norm statistics)."""
    twin = copy.deepcopy(module)
    for m in twin.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
    return twin


def _first_linear_in_features(module: nn.Module) -> int:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            return m.in_features
    raise ValueError(f"DRGrad: the tower {type(module).__name__} has no nn.Linear layer.")


class SplitPrimaryTower(MultiTaskModule):
    """A backbone whose primary task is split into a dedicated and a shared sub-tower.

    ``T1'`` is the backbone's own tower of the primary task on its own tower input ``v1``;
    ``T1''`` (``split_tower``) has the same architecture, fresh parameters, and reads ``v_s``,
    the mean of the auxiliary tasks' tower inputs (for two tasks: the auxiliary task's tower
    input). The primary logit is ``mixing[0] * T1'(v1) + mixing[1] * T1''(v_s)`` (mixed on
    logits); the other tasks' logits are the backbone's. An optional personalized gate
    multiplies every auxiliary tower input (hence ``v_s``) by ``2 sigmoid(Linear(ids))``,
    where ``ids`` are the concatenated embeddings of some categorical columns.

    The mixing weights are buffers (they pickle and move between devices with the model),
    written by the method's updater, never by gradient descent: ``mixing`` ``(mu', mu'')``,
    ``sigma`` the sums of the routed gradient norms of the two sub-towers, ``n_updates`` the
    number of updates.

    Parameters
    ----------
    backbone : MultiTaskModule
        An architecture that implements :meth:`~MultiTaskModule.tower_inputs`.
    primary : int
        Index of the primary task.
    personalized_features : list of str or int, default=None
        Categorical columns (names, or indices for array input) whose embeddings feed the
        personalized gate; None for no gate.
    mixing_init : float, default=0.5
        ``mu'`` before the first update (``mu'' = 1 - mu'``).
    """

    def __init__(
        self,
        backbone: MultiTaskModule,
        primary: int,
        personalized_features: Sequence[str | int] | None = None,
        mixing_init: float = 0.5,
    ) -> None:
        super().__init__()
        if getattr(type(backbone), "tower_inputs", None) in (None, MultiTaskModule.tower_inputs):
            raise ValueError(
                f"DRGrad(mode='split') needs the towers' inputs to add the split primary tower, and "
                f"{type(backbone).__name__} does not expose them (tower_inputs); use optimizer=sklearn_mtr.optim.DRGrad(mode='tower')."
            )
        self.backbone = backbone
        self.n_tasks = backbone.n_tasks
        self.primary = primary
        self.split_tower = _fresh_copy(backbone.towers[primary])
        self.register_buffer("mixing", torch.tensor([mixing_init, 1.0 - mixing_init]))
        self.register_buffer("sigma", torch.zeros(2))
        self.register_buffer("n_updates", torch.zeros((), dtype=torch.long))
        self.personal_names = self._categorical_names(backbone, personalized_features)
        if self.personal_names:
            in_dim = len(self.personal_names) * backbone.embedding.embedding_dim
            self.personal_gate = nn.Linear(in_dim, _first_linear_in_features(backbone.towers[primary]))
        else:
            self.personal_gate = None

    @staticmethod
    def _categorical_names(backbone: nn.Module, features: Sequence[str | int] | None) -> list[str]:
        if features is None:
            return []
        embedding = getattr(backbone, "embedding", None)
        if getattr(embedding, "categorical", None) is None:
            raise ValueError(
                f"DRGrad: personalized_features needs an architecture with categorical embeddings; "
                f"{type(backbone).__name__} has none."
            )
        names = [str(feature) for feature in features]
        embedding.categorical_indices(names)  # a ValueError names a column that is not categorical
        return names

    @property
    def towers(self) -> nn.ModuleList:
        """The backbone's towers (``towers[primary]`` is ``T1'``; ``T1''`` is ``split_tower``)."""
        return self.backbone.towers

    def task_modules(self, k: int) -> list[nn.Module]:
        # T1'' reads the auxiliary tasks' tower inputs, so whatever produces them (an MMoE
        # gate, PLE's task experts) now serves the primary task too: an auxiliary task owns
        # only its tower.
        if k == self.primary:
            return [*self.backbone.task_modules(k), self.split_tower]
        return [self.backbone.towers[k]]

    def personal_gate_values(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``2 sigmoid(Linear(concat of the personalized columns' embeddings))``, ``(batch, width)``."""
        ids = self.backbone.embedding.categorical_columns(batch, self.personal_names)
        return 2.0 * torch.sigmoid(self.personal_gate(ids.flatten(1)))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = list(self.backbone.tower_inputs(batch))
        p = self.primary
        if self.personal_gate is not None:
            gate = self.personal_gate_values(batch)
            inputs = [x if k == p else x * gate for k, x in enumerate(inputs)]
        aux = [x for k, x in enumerate(inputs) if k != p]
        v_shared = aux[0] if len(aux) == 1 else torch.stack(aux).mean(0)
        logits = tower_logits(self.towers, inputs)
        primary = self.mixing[0] * logits[:, p] + self.mixing[1] * self.split_tower(v_shared)[:, 0]
        columns = [primary if k == p else logits[:, k] for k in range(self.n_tasks)]
        return torch.stack([c.float() for c in columns], dim=1)
