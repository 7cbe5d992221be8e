"""RLW: random loss weighting (Lin, Ye, Xu, Shi & Zhang, 2021)."""

from __future__ import annotations

import torch
from torch import nn

from ._base import MultiTaskOptimizer, StepContext
from ._random import SeededState


class RLW(MultiTaskOptimizer):
    """Random loss weighting: a fresh random convex combination of the task losses at every step.

    Lin, Ye, Xu, Shi & Zhang, "Reasonable Effectiveness of Random Weighting: A Litmus Test
    for Multi-Task Learning", TMLR 2022 (arXiv 2111.10603). At every step a vector is drawn
    from a standard normal distribution and normalised by a softmax, the paper's default
    (its Eq. 3 with ``p = N(0, I)``)::

        lambda = softmax(z),   z ~ N(0, I_T)
        loss   = sum_k u_k * lambda_k * L_k

    where ``u`` are the estimator's ``task_weights`` (ones by default, multiplying the random
    weights). The paper shows that this simple baseline matches many learned weighting
    methods; it is the "litmus test" a method should beat. One backward pass per step.

    The class has no hyper-parameters.

    Notes
    -----
    - **Scale.** The random weights sum to one, so the loss is on average ``1 / T`` of equal
      weighting's ``sum_k u_k L_k`` (as in the paper); under Adam the step size barely
      depends on that constant factor.
    - **Randomness.** ``z`` comes from a ``torch.Generator`` on the CPU, seeded from the
      global torch random stream when training starts (as PCGrad's projection orders), so a
      fixed ``random_state`` of the estimator makes training deterministic; the generator
      pickles with the estimator and continues where it was. The ``T`` weights are moved to
      the parameters' device each step (no host synchronisation).
    - **Deviations from the paper.** None; the other sampling distributions of the paper
      (uniform, Dirichlet, Bernoulli, ...) are not offered.
    - **Diagnostics** (``history_`` key ``optim_weights``, epoch means): ``weights`` =
      ``lambda`` (without the user's ``task_weights``); their epoch mean tends to ``1 / T``.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.rlw import RLW
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=RLW(), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> round(sum(clf.history_[-1, "optim_weights"]), 4)
    1.0
    """

    def __init__(self):
        pass

    def create_state(self, model: nn.Module, n_tasks: int) -> nn.Module:
        return SeededState()

    def sample_weights(self, n_tasks: int, state: nn.Module) -> torch.Tensor:
        """The next ``(n_tasks,)`` weights ``softmax(z)``, ``z ~ N(0, I)`` (CPU, float32)."""
        return torch.softmax(torch.randn(n_tasks, generator=state.generator), dim=0)

    def backward(self, task_losses: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        weights = self.sample_weights(task_losses.shape[0], ctx.state)
        weights = weights.to(device=task_losses.device, dtype=task_losses.dtype, non_blocking=True)
        total = (ctx.task_weights * weights * task_losses).sum()
        if ctx.aux_loss is not None:
            total = total + ctx.aux_loss
        total.backward()
        return {"weights": weights}
