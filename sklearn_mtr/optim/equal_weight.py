"""Equal weighting: minimise the (user-weighted) sum of the task losses."""

from __future__ import annotations

import torch

from ._base import MultiTaskOptimizer, StepContext


class EW(MultiTaskOptimizer):
    """Equal weighting with Adam, the baseline every multi-task method is compared against.

    The objective is ``sum_k w_k L_k`` where ``w`` is the estimator's ``task_weights``
    (all ones by default), optimised with AdamW (Adam when ``weight_decay=0``). Available as
    ``optimizer="adam"`` or ``optimizer="ew"``.

    Examples
    --------
    >>> from sklearn_mtr.optim import EW
    >>> EW()
    EW()
    """

    def backward(self, task_losses: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        self.weighted_total(task_losses, ctx).backward()
        return {}
