"""SDMGrad: stochastic direction-oriented multi-objective gradient descent (Xiao, Ban & Ji, NeurIPS 2023)."""

from __future__ import annotations

import numbers
from typing import ClassVar

import torch
from torch import nn

from .._constraints import Interval
from ._base import device_of
from ._combination import GradientCombination, project_onto_simplex


class _SDMGradState(nn.Module):
    """The simplex weights ``w``, carried from step to step (a buffer)."""

    def __init__(self, n_tasks: int, device):
        super().__init__()
        self.register_buffer("w", torch.full((n_tasks,), 1.0 / n_tasks, device=device))


class SDMGrad(GradientCombination):
    """SDMGrad: MGDA regularised towards the mean gradient, its weights by projected gradient steps.

    Xiao, Ban & Ji, "Direction-oriented Multi-objective Learning: Simple and Provable Stochastic
    Algorithms", NeurIPS 2023 (arXiv 2305.19844). The update direction stays close
    to a target direction ``g0`` (the mean task gradient) while MGDA's min-norm combination
    avoids conflicts::

        w* = argmin_{w in simplex} || G w + lamda g0 ||^2 / 2,    g0 = (1 / T) sum_i g_i
        d  = (G w* + lamda g0) / (1 + lamda)

    (``G = [g_1 .. g_T]``): ``lamda = 0`` is MGDA, ``lamda -> infinity`` the mean gradient. The
    weights are not solved exactly but advanced by ``niter`` projected stochastic-gradient
    steps per training step, from the previous step's ``w``; the gradient of the objective is
    ``G^T G w + lamda G^T g0``, evaluated (in the paper) on two independent batches ``xi, xi'``
    as ``G(xi)^T G(xi') w + ...``, and ``d`` on a third batch ``zeta``. The task gradients
    ``g_i`` are those of ``u_i L_i``, where ``u`` are the estimator's ``task_weights`` (ones by
    default).

    Parameters
    ----------
    lamda : float, default=0.3
        Regularisation ``lamda >= 0`` towards the mean gradient (the authors' and LibMTL's
        default 0.3).
    niter : int, default=20
        Projected gradient steps on ``w`` per training step (the authors' and LibMTL's 20).
    inner_lr : float, default=5.0
        Step size ``> 0`` of those steps, on the normalised Gram matrix (the authors' and
        LibMTL's 5; see the Notes).

    Notes
    -----
    - **Single-batch variant.** A method here sees one batch per step, so the three samples
      ``xi``, ``xi'`` and ``zeta`` are the same batch's gradients: the weights' steps use the
      batch's Gram matrix ``G^T G`` (biased for the stochastic objective, which the paper's
      double sampling avoids), and ``d`` the same gradients.
    - **Inner steps** (as in the authors' code): the Gram matrix is divided by the squared mean
      gradient norm (so the step size does not depend on the gradients' scale; the minimiser
      is unchanged), then ``niter`` steps of SGD with learning rate ``inner_lr`` and momentum
      0.5 (the momentum restarted at every training step), each followed by the Euclidean
      projection onto the simplex; on the device, in float64. Heavy-ball steps converge on a
      quadratic only when ``inner_lr`` times its curvature along the simplex is below
      ``2 (1 + 0.5) = 3``; with the authors' ``inner_lr=5`` the iterates often oscillate around
      ``w*`` instead (they stay on the simplex), which is the behaviour of the published
      results. A smaller ``inner_lr`` (e.g. 0.5) makes ``w`` approach ``w*``.
    - **Coefficients.** ``d = sum_i c_i g_i`` with ``c = (w + lamda / T) / (1 + lamda)``, on the
      simplex; task ``i``'s private parameters get ``u_i`` times their own gradient (SDMGrad
      steers the shared parameters only, as in the authors' code).
    - **Deviations from the paper.** The single batch above. No randomness.
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights`` = ``c``
      and ``cosine`` (mean pairwise cosine of the task gradients).
    - Cost per step: ``T`` backward passes, the ``T x T`` Gram matrix and ``niter`` small
      projected steps on it.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.sdmgrad import SDMGrad
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=SDMGrad(lamda=0.3), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> round(sum(clf.history_[-1, "optim_weights"]), 4)
    1.0
    """

    _weights_scale_private = False
    _inner_momentum = 0.5

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "lamda": [Interval(numbers.Real, 0)],
        "niter": [Interval(numbers.Integral, 1)],
        "inner_lr": [Interval(numbers.Real, 0, closed="right")],
    }

    def __init__(self, lamda=0.3, niter=20, inner_lr=5.0):
        self.lamda = lamda
        self.niter = niter
        self.inner_lr = inner_lr

    def create_state(self, model, n_tasks):
        device = torch.device("cpu") if model is None else device_of(model)
        return _SDMGradState(n_tasks, device)

    def solve_weights(self, gram: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``niter`` projected momentum-SGD steps on ``||G w + lamda g0||^2 / 2`` from ``w``."""
        GG = gram.detach().to(torch.float64)
        n = GG.shape[0]
        scale = GG.diagonal().clamp_min(0).sqrt().mean()
        GG = GG / (scale * scale + 1e-8)
        Gg = GG.mean(dim=1)  # G^T g0
        w = w.to(GG)
        buffer = torch.zeros(n, dtype=GG.dtype, device=GG.device)
        for k in range(self.niter):
            grad = GG @ w + self.lamda * Gg
            buffer = grad if k == 0 else self._inner_momentum * buffer + grad
            w = project_onto_simplex(w - self.inner_lr * buffer)
        return w

    def _combine(self, grads, gram, losses, state):
        n = grads.shape[0]
        w = self.solve_weights(gram, state.w)
        state.w.copy_(w.to(state.w.dtype))
        coefficients = ((w + self.lamda / n) / (1.0 + self.lamda)).to(grads.dtype)
        return coefficients @ grads, coefficients, {}
