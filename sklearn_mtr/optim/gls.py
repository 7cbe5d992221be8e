"""GLS: the geometric loss strategy (Chennupati, Sistu, Yogamani & Rawashdeh, CVPRW 2019)."""

from __future__ import annotations

import torch

from ._base import MultiTaskOptimizer, StepContext


class GLS(MultiTaskOptimizer):
    """Geometric loss strategy: minimise the geometric mean of the task losses.

    Chennupati, Sistu, Yogamani & Rawashdeh, "MultiNet++: Multi-Stream Feature Aggregation
    and Geometric Loss Strategy for Multi-Task Learning", CVPR Workshops 2019
    (arXiv 1904.08492)::

        loss = (prod_i L_i) ^ (1 / T)

    Its gradient is ``sum_i (loss / (T L_i)) grad L_i``: every task's gradient is divided by
    its own loss, so the tasks' loss *scales* do not matter, only their relative decrease
    (the same direction as the sum of the log losses, with a step that shrinks as the losses
    do). With the estimator's ``task_weights`` ``u`` (ones by default) the objective is
    ``prod_i L_i^(u_i / T)``, computed as ``exp(sum_i u_i log L_i / T)``. One backward pass per
    step.

    The class has no hyper-parameters.

    Notes
    -----
    - **Task weights.** ``u_i`` is task ``i``'s exponent (times ``T``): a weight of 0 removes
      the task; the coefficient on ``grad L_i`` is ``u_i loss / (T L_i)``.
    - **Deviations from the paper.** The product is computed in log space (the same value and
      gradient, without under- or overflow for many tasks). A task with no label in a batch
      (loss exactly 0, which would make the product 0 and stop every task) is left out of that
      step: the mean is over the ``T'`` tasks that have a label. No randomness, no state.
    - **Diagnostics** (``history_`` key ``optim_weights``, epoch means): ``weights``, the
      coefficients ``loss / (T' L_i)`` on each ``grad L_i`` (0 for a task left out), without the
      user's ``task_weights``.
    - Cost per step: one backward pass.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.gls import GLS
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=GLS(), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> len(clf.history_[-1, "optim_weights"])
    2
    """

    def __init__(self):
        pass

    def objective(self, task_losses: torch.Tensor, task_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``prod_i L_i^(u_i / T')`` over the tasks with a label, and the weights ``loss / (T' L_i)``."""
        u = task_weights.to(device=task_losses.device, dtype=task_losses.dtype)
        present = task_losses.detach() > 0
        count = present.sum().clamp_min(1).to(task_losses.dtype)
        safe = torch.where(present, task_losses, torch.ones_like(task_losses))
        logs = torch.where(present, u * torch.log(safe), 0.0)
        total = torch.exp(logs.sum() / count)
        weights = torch.where(present, total.detach() / (count * safe.detach()), 0.0)
        return total, weights

    def backward(self, task_losses: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        total, weights = self.objective(task_losses, ctx.task_weights)
        if ctx.aux_loss is not None:
            total = total + ctx.aux_loss
        total.backward()
        return {"weights": weights}
