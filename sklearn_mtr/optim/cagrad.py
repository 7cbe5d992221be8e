"""CAGrad: conflict-averse gradient descent (Liu et al., 2021)."""

from __future__ import annotations

import math
import numbers
from typing import ClassVar

import numpy as np
import torch

from .._constraints import Interval, Options
from ._combination import (
    GradientCombination,
    active_tasks,
    conflict_averse_weights,
    gram_to_numpy,
)


class CAGrad(GradientCombination):
    """Conflict-averse gradient: the best worst-task improvement near the average gradient.

    Liu, Liu, Jin, Stone & Liu, "Conflict-Averse Gradient Descent for Multi-task
    Learning", NeurIPS 2021. With ``g_0`` the average of the task gradients on the shared
    parameters, the update ``d`` maximises the smallest first-order improvement
    ``min_i g_i . d`` over the ball ``||d - g_0|| <= c ||g_0||``. Through its dual
    (Algorithm 1)::

        w* = argmin_{w in simplex}  g_w . g_0 + c ||g_0|| ||g_w||,   g_w = sum_i w_i g_i
        d  = g_0 + c ||g_0|| / ||g_w*||  g_w*

    The dual needs only the ``T x T`` Gram matrix: for two tasks it is solved in closed form
    (the stationary point of a convex function of one variable), for more by an exact
    search (see ``sklearn_mtr.optim._combination.conflict_averse_weights``); no scipy.
    ``c = 0`` gives the average gradient; large ``c`` approaches MGDA.

    Parameters
    ----------
    c : float, default=0.4
        Radius of the ball around the average gradient, relative to its norm (the paper's
        ``c``; 0.4 is its setting for NYUv2 and CityScapes).
    rescale : bool, default=True
        Divide ``d`` by ``1 + c^2`` as the authors' code does by default (``rescale=1``); the
        paper's Algorithm 1 does not (``rescale=False``). Only the step size changes.
    max_iter : int, default=100
        Iterations of the dual search for three or more tasks (a bound).

    Notes
    -----
    - **Task weights.** The user's ``task_weights`` ``w`` scale the task losses before the
      combination: ``g_0`` is the average of the gradients of ``w_k L_k``.
    - **Weights.** ``d = sum_k beta_k w_k g_k`` with ``beta_k = (1 / T + lambda w*_k) / (1 + c^2)``,
      ``lambda = c ||g_0|| / ||g_w*||``. Task ``k``'s private parameters (tower, gate) get
      ``beta_k w_k`` times their own gradient (the authors' code leaves them unscaled: a
      positive factor per task that Adam largely normalises away).
    - **Deviations from the paper.** The dual is solved exactly instead of by the authors'
      inexact inner optimiser (a few SGD or SLSQP steps). A task whose gradient is zero in a
      batch (none of its labels present) is left out of the dual (its ``w*_k = 0``); it still
      counts in ``g_0``.
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights``
      (``beta``), ``cosine`` (mean pairwise cosine of the task gradients).
    - Cost per step: ``T`` backward passes and one ``T x T`` matrix copied to the host.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.cagrad import CAGrad
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=CAGrad(c=0.4), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> len(clf.history_[-1, "optim_weights"])
    2
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "c": [Interval(numbers.Real, 0)],
        "rescale": [Options(True, False)],
        "max_iter": [Interval(numbers.Integral, 1)],
    }

    def __init__(self, c=0.4, rescale=True, max_iter=100):
        self.c = c
        self.rescale = rescale
        self.max_iter = max_iter

    def _combine(self, grads, gram, losses, state):
        n = grads.shape[0]
        (G,) = gram_to_numpy(gram)
        b = G.mean(axis=1)  # g_i . g_0
        g0_norm = math.sqrt(max(float(G.sum()) / (n * n), 0.0))
        s = self.c * g0_norm
        weights = np.full(n, 1.0 / n)
        active = active_tasks(G)
        if s > 0 and active.any():
            idx = np.nonzero(active)[0]
            Ga = G[np.ix_(idx, idx)]
            w = conflict_averse_weights(Ga, b[idx], s, max_iter=self.max_iter)
            gw_norm = math.sqrt(max(float(w @ Ga @ w), 0.0))
            lam = s / max(gw_norm, 1e-12 * g0_norm, 1e-300)
            weights[idx] += lam * w
        if self.rescale:
            weights /= 1.0 + self.c**2
        coefficients = torch.as_tensor(weights, dtype=grads.dtype).to(grads.device, non_blocking=True)
        return coefficients @ grads, coefficients, {}
