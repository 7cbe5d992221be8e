"""MGDA: the min-norm convex combination of the task gradients (Sener & Koltun, 2018)."""

from __future__ import annotations

import numbers
from typing import ClassVar

import numpy as np
import torch

from .._constraints import Interval, Options
from ._combination import (
    GradientCombination,
    active_tasks,
    gram_to_numpy,
    min_norm_weights,
)

_NORMALIZATIONS = ("none", "l2", "loss", "loss+")


class MGDA(GradientCombination):
    """Multiple-gradient descent: step along the min-norm point of the task gradients.

    Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018.
    At every step the weights ``lambda`` (on the simplex) minimise ``||sum_k lambda_k g_k||``
    over the tasks' gradients ``g_k`` on the shared parameters; the resulting direction
    decreases every task's loss unless the point is Pareto-stationary, where it vanishes.
    The min-norm point is exact for two tasks (the paper's clipped line-search formula) and
    for more tasks comes from an exact small active-set solver started, as in the paper's
    Frank-Wolfe solver, from the best pairwise solution.

    Parameters
    ----------
    normalization : {"none", "l2", "loss", "loss+"}, default="none"
        How each task's gradient is divided before the min-norm problem is solved, as in the
        authors' released code: ``"l2"`` by its norm, ``"loss"`` by the task's loss,
        ``"loss+"`` by both, ``"none"`` (the paper's algorithm) not at all.
    max_iter : int, default=100
        Active-set iterations of the min-norm solver for three or more tasks (a bound; it
        normally stops after a few).
    tol : float, default=1e-12
        Tolerance of the fallback projected-gradient iterations (used only if the
        active-set solver cannot certify optimality).

    Notes
    -----
    - **Task weights.** The user's ``task_weights`` ``w`` scale the task losses first: the
      method works on the gradients of ``w_k L_k`` (and a weight of 0 removes the task).
    - **Which weights are applied.** As in the authors' code, ``lambda`` is computed on the
      normalised gradients and then applied to the (task-weighted, unnormalised) losses:
      the shared gradient is ``sum_k lambda_k w_k g_k`` and task ``k``'s private parameters
      (tower, gate) get ``lambda_k w_k`` times their own gradient. With
      ``normalization="none"`` this is exactly the min-norm point.
    - **Deviations from the paper.** (1) MGDA-UB solves the problem on the gradients with
      respect to a shared representation, an upper bound that saves backward passes. The
      architectures here have no single shared representation (MMoE and PLE give each task
      its own mixture), so the min-norm point is taken over the gradients of the shared
      *parameters* -- the exact MGDA problem of the paper's Section 3.1. (2) The paper's
      Algorithm 2 updates a task's private parameters with its unscaled gradient; here they
      are scaled by ``lambda_k``, as the authors' code does by back-propagating the
      ``lambda``-weighted loss. (3) A task whose gradient is zero in a batch (none of its
      labels present) is left out of the min-norm problem instead of making the step zero.
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights``
      (``lambda``), ``cosine`` (mean pairwise cosine of the task gradients) and ``min_norm``
      (squared norm of the min-norm point of the normalised gradients over their mean squared
      norm; near 0 at a Pareto-stationary point).
    - Cost per step: ``T`` backward passes and one ``T x T`` matrix copied to the host.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.mgda import MGDA
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=MGDA(normalization="l2"),
    ...                      max_epochs=2, random_state=0).fit(X, Y)
    >>> len(clf.history_[-1, "optim_weights"])
    2
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "normalization": [Options(*_NORMALIZATIONS)],
        "max_iter": [Interval(numbers.Integral, 1)],
        "tol": [Interval(numbers.Real, 0, closed="right")],
    }

    def __init__(self, normalization="none", max_iter=100, tol=1e-12):
        self.normalization = normalization
        self.max_iter = max_iter
        self.tol = tol

    def _combine(self, grads, gram, losses, state):
        n = grads.shape[0]
        needs_losses = self.normalization in ("loss", "loss+")
        if needs_losses and losses is None:
            raise ValueError(f"MGDA(normalization={self.normalization!r}) needs the task losses.")
        if needs_losses:
            G, loss = gram_to_numpy(gram, losses)
        else:
            (G,) = gram_to_numpy(gram)
            loss = np.ones(n)
        norms = np.sqrt(np.maximum(np.diag(G), 0.0))
        divisor = {
            "none": np.ones(n),
            "l2": norms,
            "loss": loss,
            "loss+": loss * norms,
        }[self.normalization]
        active = active_tasks(G) & np.isfinite(divisor) & (divisor > 0)
        weights = np.zeros(n)
        min_norm = 0.0
        if active.any():
            idx = np.nonzero(active)[0]
            Gn = G[np.ix_(idx, idx)] / np.outer(divisor[idx], divisor[idx])
            lam = min_norm_weights(Gn, max_iter=self.max_iter, tol=self.tol)
            weights[idx] = lam
            min_norm = float(lam @ Gn @ lam) / max(float(np.trace(Gn)) / idx.size, 1e-300)
        else:
            weights[:] = 1.0 / n  # every gradient is zero: nothing to combine
        coefficients = torch.as_tensor(weights, dtype=grads.dtype).to(grads.device, non_blocking=True)
        direction = coefficients @ grads
        return direction, coefficients, {"min_norm": torch.tensor(min_norm, dtype=grads.dtype)}
