"""DualProj: the mean gradient projected onto the dual cone (Quinton & Rey, 2024)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from .._constraints import Options
from ._combination import GradientCombination, gram_to_numpy
from .upgrad import project_weights


class DualProj(GradientCombination):
    """Dual projection: the mean task gradient, projected onto the dual cone of the task gradients.

    Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024 (arXiv
    2406.16232; the ``DualProj`` aggregator of TorchJD, built on the projection of
    Proposition 1). With ``J`` the task gradients as rows and ``G = J J^T``::

        d = pi(J^T 1 / T) = J^T v,    v = argmin_{v >= 1 / T} v^T G v

    i.e. the closest point to the mean gradient among the directions that increase no
    task's loss to first order (``g_j . d >= 0`` for every ``j``). It is the mean gradient when
    that does not conflict with any task. UPGrad projects every task gradient and averages
    the projections instead; the two coincide when nothing conflicts. The QP in ``T``
    dimensions is solved exactly on the Gram matrix (``sklearn_mtr.optim.upgrad.project_weights``).

    Parameters
    ----------
    reduction : {"mean", "sum"}, default="mean"
        Project the mean of the task gradients (the paper and TorchJD) or their sum (equal
        weighting's scale; the projection of the sum is ``T`` times that of the mean).

    Notes
    -----
    - **Task weights.** The user's ``task_weights`` ``w`` scale the task losses first: the
      method projects the mean of the gradients of ``w_k L_k``. Task ``k``'s private
      parameters (tower, gate) get ``w_k`` times their own gradient, as TorchJD's
      ``mtl_backward`` gives them their own task's gradient.
    - **Deviations from TorchJD.** TorchJD normalises ``G`` and adds a small multiple of the
      identity before calling a generic QP solver; here the problem is solved exactly on ``G``
      (non-negative least squares in float64 on the host).
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights`` (the
      coefficients ``v`` of ``d`` on the task gradients, at least ``1 / T`` each under
      ``"mean"``), ``cosine`` (mean pairwise cosine of the task gradients).
    - Cost per step: ``T`` backward passes, one ``T x T`` matrix copied to the host and one
      non-negative least-squares problem of size ``T``.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.dualproj import DualProj
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=DualProj(), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> min(clf.history_[-1, "optim_weights"]) >= 0.5
    True
    """

    _weights_scale_private = False

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "reduction": [Options("mean", "sum")],
    }

    def __init__(self, reduction="mean"):
        self.reduction = reduction

    def _combine(self, grads, gram, losses, state):
        n = grads.shape[0]
        (G,) = gram_to_numpy(gram)
        base = 1.0 / n if self.reduction == "mean" else 1.0
        weights = project_weights(G, np.full(n, base))
        coefficients = torch.as_tensor(weights, dtype=grads.dtype).to(grads.device, non_blocking=True)
        return coefficients @ grads, coefficients, {}
