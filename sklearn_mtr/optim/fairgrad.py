"""FairGrad: alpha-fair task weights from the Gram matrix of the task gradients (Ban & Ji, ICML 2024)."""

from __future__ import annotations

import math
import numbers
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from .._constraints import Interval
from ._base import device_of
from ._combination import GradientCombination, active_tasks, gram_to_numpy


class _FairGradState(nn.Module):
    """The last weights that solved the system (a buffer): the fallback when a step's has no solution."""

    def __init__(self, n_tasks: int, device):
        super().__init__()
        self.register_buffer("weights", torch.ones(n_tasks, device=device))


class FairGrad(GradientCombination):
    """FairGrad: the update that maximises the alpha-fair utility of the tasks' loss decreases.

    Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024 (arXiv 2402.15638).
    The update ``d = sum_i w_i g_i`` is the one whose decreases ``g_i . d`` are alpha-fair; its
    weights ``w > 0`` solve the ``T``-dimensional nonlinear system::

        G^T G w = w^(-1 / alpha)        (element-wise power; G = [g_1 .. g_T], G^T G the Gram matrix)

    ``alpha = 1`` is proportional fairness (the Nash bargaining system ``G^T G w = 1 / w`` of
    Nash-MTL), ``alpha -> infinity`` max-min fairness (equal decreases), ``alpha = 0`` would be
    equal weighting of the decreases' sum. The task gradients ``g_i`` are those of
    ``u_i L_i``, where ``u`` are the estimator's ``task_weights`` (ones by default).

    Parameters
    ----------
    alpha : float, default=1.0
        Fairness level ``alpha > 0`` (the authors' and LibMTL's default 1.0; the paper also
        reports 2, 5 and 10).

    Notes
    -----
    - **Solver.** The system is the stationarity condition of the strictly convex
      ``f(w) = w^T G^T G w / 2 - sum_i h(w_i)`` on ``w > 0``, with ``h(w) = log w`` for
      ``alpha = 1`` and ``w^(1 - 1/alpha) / (1 - 1/alpha)`` otherwise (``h' = w^(-1/alpha)``):
      damped Newton on ``f`` (Cholesky solve, fraction-to-the-boundary step, Armijo
      backtracking), in float64 on the CPU on the ``T x T`` Gram matrix normalised by its mean
      diagonal, the answer scaled back (``G -> s G`` scales ``w`` by ``s^(-alpha / (alpha + 1))``),
      until ``max_i |w_i^(1/alpha) (G^T G w)_i - 1| <= 1e-10``. The authors' and LibMTL's code
      call ``scipy.optimize.least_squares`` on the residual, started from ``1 / T``; the
      solution is the same (it is unique), this solver is exact to the tolerance.
    - **No solution.** When a non-negative combination of the gradients vanishes (two tasks in
      exactly opposite directions) the system has no positive solution; the weights of the last
      step that had one are used (ones before the first). A task whose gradient is zero in a
      batch (no label) gets weight 0 and is left out of the system.
    - **Private parameters.** Task ``i``'s private parameters get ``w_i u_i`` times their own
      gradient (the gradient of ``sum_i w_i u_i L_i``), as in the authors' code.
    - **Deviations from the paper.** None beyond the solver; the authors' experiment code clips
      the shared gradient's norm in some benchmarks, which is not done here. No randomness.
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights`` = ``w``,
      ``cosine`` (mean pairwise cosine of the task gradients) and ``residual`` (the scale-free
      residual above; 0 when solved, the fallback's residual otherwise).
    - Cost per step: ``T`` backward passes, the ``T x T`` Gram matrix and a Newton solve on it.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.fairgrad import FairGrad
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=FairGrad(alpha=2.0), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> clf.history_[-1, "optim_residual"] < 1e-6
    True
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "alpha": [Interval(numbers.Real, 0, closed="right")],
    }

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def create_state(self, model, n_tasks):
        device = torch.device("cpu") if model is None else device_of(model)
        return _FairGradState(n_tasks, device)

    def _combine(self, grads, gram, losses, state):
        n = grads.shape[0]
        (G,) = gram_to_numpy(gram)
        idx = np.nonzero(active_tasks(G))[0]
        weights = np.zeros(n)
        ok = True
        if idx.size:
            solved, ok = fair_weights(G[np.ix_(idx, idx)], self.alpha)
            weights[idx] = solved
        coefficients = torch.as_tensor(weights, dtype=grads.dtype).to(grads.device, non_blocking=True)
        if ok:
            state.weights.copy_(coefficients.to(state.weights.dtype))
        else:
            coefficients = state.weights.to(grads.dtype)
        residual = fair_residual(gram, coefficients, self.alpha)
        return coefficients @ grads, coefficients, {"residual": residual}


def fair_residual(gram: torch.Tensor, weights: torch.Tensor, alpha: float) -> torch.Tensor:
    """``max_i |w_i^(1/alpha) (G w)_i - 1|`` over the tasks with a positive weight (0 at the solution)."""
    gram = gram.detach().to(torch.float64)
    w = weights.detach().to(gram)
    on = w > 0
    value = (w.clamp_min(1e-300) ** (1.0 / alpha) * (gram @ w) - 1.0).abs()
    return torch.where(on, value, 0.0).max()  # 0 when no weight is positive


def fair_weights(G: np.ndarray, alpha: float, *, max_iter: int = 100, tol: float = 1e-10) -> tuple[np.ndarray, bool]:
    """Positive ``w`` with ``G w = w^(-1/alpha)`` for a positive semi-definite ``G`` with a positive diagonal.

    Returns ``(w, ok)``; ``ok`` is False when no positive solution was found.
    """
    G = 0.5 * (np.asarray(G, dtype=np.float64) + np.asarray(G, dtype=np.float64).T)
    n = G.shape[0]
    scale = float(np.trace(G)) / n
    if not (scale > 0 and math.isfinite(scale)):
        return np.ones(n), False
    Gn = G / scale
    q = 1.0 / alpha
    back = scale ** (-alpha / (alpha + 1.0))  # w(s G) = s^(-alpha / (alpha + 1)) w(G)

    def f(w):
        h = np.log(w).sum() if alpha == 1 else (w ** (1.0 - q)).sum() / (1.0 - q)
        return 0.5 * float(w @ Gn @ w) - h

    def residual(w):
        return float(np.abs(w**q * (Gn @ w) - 1.0).max())

    w = np.diag(Gn) ** (-alpha / (alpha + 1.0))  # the solution when the gradients are orthogonal
    for _ in range(max_iter):
        if not np.all(np.isfinite(w)):
            break
        if residual(w) <= tol:
            return w * back, True
        grad = Gn @ w - w ** (-q)
        hess = Gn + np.diag(q * w ** (-q - 1.0))
        try:
            step = -np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        shrinking = step < 0
        t = min(1.0, 0.99 * float((w[shrinking] / -step[shrinking]).min())) if shrinking.any() else 1.0
        f0, slope = f(w), float(grad @ step)
        while t > 1e-16 and not f(w + t * step) <= f0 + 1e-4 * t * slope:
            t *= 0.5
        if t <= 1e-16:
            break
        w = w + t * step
    ok = bool(np.all(np.isfinite(w)) and np.all(w > 0) and residual(w) <= 1e-6)
    return (w * back if ok else np.ones(n)), ok
