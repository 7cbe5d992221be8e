"""MetaBalance: auxiliary-task gradients rescaled towards the target task's (He et al., 2022)."""

from __future__ import annotations

import numbers
from typing import ClassVar

import torch
from torch import nn

from .._constraints import Interval, Options
from ._base import StepContext, device_of
from ._combination import GradientCombination, mean_pairwise_cosine

STRATEGIES = ("adaptive", "reduce", "enlarge")


class _MetaBalanceState(nn.Module):
    """Moving averages of the task gradients' norms, one per task and shared tensor (a buffer)."""

    def __init__(self, n_tasks: int, n_tensors: int, device):
        super().__init__()
        self.register_buffer("norms", torch.zeros(n_tasks, n_tensors, device=device))


class MetaBalance(GradientCombination):
    """MetaBalance: each auxiliary task's gradient brought towards the target task's gradient norm.

    He, Feng, Cheng, Ji, Guo & Caverlee, "MetaBalance: Improving Multi-Task Recommendations via
    Adapting Gradient Magnitudes of Auxiliary Tasks", WWW 2022 (arXiv 2203.06801). One task is
    the *target* (task ``target_task``, 0 by default), the others are *auxiliary*. For every
    shared parameter tensor ``theta`` separately, moving averages of the gradient norms are
    kept::

        m_k <- beta m_k + (1 - beta) ||grad_theta L_k||              (every task k)
        g_k <- g_k * (r * m_tar / m_k + (1 - r))                     (auxiliary k, when applied)
        d   =  u_tar g_tar + sum_{k aux} u_k g_k

    with the relax factor ``r``: ``r = 1`` gives every auxiliary gradient the target's
    (averaged) norm, ``r = 0`` leaves it as it is. ``u`` are the estimator's ``task_weights``
    (ones by default). When the rescaling is applied is the paper's *strategy*:

    - ``"adaptive"`` (strategy C, the paper's best on its benchmarks): always;
    - ``"reduce"`` (strategy A): only where ``m_k > m_tar`` (large auxiliary gradients shrink);
    - ``"enlarge"`` (strategy B): only where ``m_k < m_tar`` (small auxiliary gradients grow).

    Parameters
    ----------
    relax_factor : float, default=0.7
        ``r`` in [0, 1]: how close to the target's norm an auxiliary gradient is brought (the
        paper's default 0.7, the value of its released code).
    beta : float, default=0.9
        Moving-average coefficient in [0, 1) of the norms (the paper's default 0.9; 0 uses the
        current norms).
    target_task : int, default=0
        Index of the target task; the others are auxiliary.
    strategy : {"adaptive", "reduce", "enlarge"}, default="adaptive"
        When an auxiliary gradient is rescaled (above).

    Notes
    -----
    - **Task weights.** The rescaling works on the raw task gradients (a weight applied first
      would be divided away); the user's ``task_weights`` ``u`` then multiply the rescaled
      gradients, so a weight of 0 removes a task and ``u_tar`` scales the target.
    - **Private parameters.** MetaBalance only balances the shared parameters: task ``k``'s
      private parameters (tower, gate) get ``u_k`` times their own gradient.
    - **Per tensor.** As in the paper ("for each part of the network") and its released code, the norms and the
      rescaling are per shared parameter *tensor* (each weight matrix and bias on its own);
      :meth:`combine`, which sees one flat matrix, treats it as a single tensor.
    - **Deviations from the paper.** The averages start at zero without bias correction, as in
      the released code; the ratio ``m_tar / m_k`` is unaffected at the first step. Where an
      auxiliary average is still zero the gradient is left as it is (the released code divides
      by it plus ``1e-5``). No randomness.
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights``, for each
      task the norm of its rescaled shared gradient divided by that of its raw one (1 for the
      target and for an unchanged task), and ``cosine`` (mean pairwise cosine of the raw task
      gradients).
    - Cost per step: ``T`` backward passes, the per-tensor norms, and a ``T x n_tensors``
      buffer of averages in the method's state, which pickles with the estimator.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.metabalance import MetaBalance
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=MetaBalance(relax_factor=0.7), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> round(clf.history_[-1, "optim_weights"][0], 6)  # the target task is never rescaled
    1.0
    """

    _weights_scale_private = False

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "relax_factor": [Interval(numbers.Real, 0, 1)],
        "beta": [Interval(numbers.Real, 0, 1, closed="left")],
        "strategy": [Options(*STRATEGIES)],
        "target_task": [Interval(numbers.Integral, 0)],
    }

    def __init__(self, relax_factor=0.7, beta=0.9, target_task=0, strategy="adaptive"):
        self.relax_factor = relax_factor
        self.beta = beta
        self.target_task = target_task
        self.strategy = strategy

    def _check_target_task(self, n_tasks: int) -> None:
        if self.target_task >= n_tasks:
            raise ValueError(
                f"MetaBalance: target_task must be < the number of tasks ({n_tasks}), got {self.target_task!r}."
            )

    def create_state(self, model, n_tasks):
        self._check_target_task(n_tasks)
        shared = getattr(model, "shared_parameters", None)
        n_tensors = len(shared()) if callable(shared) else 1
        device = torch.device("cpu") if model is None else device_of(model)
        return _MetaBalanceState(n_tasks, n_tensors, device)

    def balance(self, grads: torch.Tensor, state, sizes: list[int] | None = None) -> torch.Tensor:
        """Advance the averaged norms with the ``(T, P)`` raw gradients; return them rescaled.

        ``sizes`` are the numbers of values of the shared tensors, in the order of the columns
        (one tensor of ``P`` values when None).
        """
        self._check_target_task(grads.shape[0])
        sizes = [grads.shape[1]] if sizes is None else list(sizes)
        if state.norms.shape != (grads.shape[0], len(sizes)):  # a state built without the model
            state.norms = torch.zeros(grads.shape[0], len(sizes), dtype=state.norms.dtype, device=grads.device)
        segments = grads.split(sizes, dim=1)
        norms = torch.stack([seg.norm(dim=1) for seg in segments], dim=1)  # (T, n_tensors)
        averages = self.beta * state.norms.to(grads.dtype) + (1.0 - self.beta) * norms
        state.norms.copy_(averages.to(state.norms.dtype))
        target = averages[self.target_task]
        ratio = target / averages.clamp_min(torch.finfo(grads.dtype).tiny)
        scale = torch.where(averages > 0, self.relax_factor * ratio + (1.0 - self.relax_factor), 1.0)
        if self.strategy == "reduce":
            scale = torch.where(averages > target, scale, 1.0)
        elif self.strategy == "enlarge":
            scale = torch.where(averages < target, scale, 1.0)
        scale[self.target_task] = 1.0
        return torch.cat([seg * scale[:, j : j + 1] for j, seg in enumerate(segments)], dim=1)

    def _combine(self, grads, gram, losses, state):
        balanced = self.balance(grads, state)
        return balanced.sum(0), _ratios(balanced, grads), {}

    def backward(self, task_losses: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        raw, private, shared = ctx.task_gradients(task_losses)
        weights = ctx.task_weights.to(device=raw.device, dtype=raw.dtype)
        balanced = self.balance(raw, ctx.state, [p.numel() for p in shared])
        ctx.write_gradients(shared, weights @ balanced, private, weights)
        return {"weights": _ratios(balanced, raw), "cosine": mean_pairwise_cosine(raw @ raw.T)}


def _ratios(balanced: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """``||balanced_k|| / ||raw_k||`` per task (1 where the raw gradient is zero)."""
    before = raw.norm(dim=1)
    after = balanced.norm(dim=1)
    return torch.where(before > 0, after / before.clamp_min(torch.finfo(raw.dtype).tiny), torch.ones_like(before))
