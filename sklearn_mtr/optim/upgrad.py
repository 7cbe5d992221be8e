"""UPGrad: unconflicting projection of gradients (Quinton & Rey, 2024)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from scipy.optimize import lsq_linear, nnls

from .._constraints import Options
from ._combination import GradientCombination, gram_to_numpy


def project_weights(gram: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Weights of the projections of ``J^T u`` onto the dual cone of the rows of ``J``.

    With ``G = J J^T`` (Quinton & Rey, Proposition 1), the projection of ``J^T u`` onto
    ``{x : J x >= 0}`` is ``J^T v`` with::

        v in argmin_{v >= u}  v^T G v

    ``u`` is one vector ``(T,)`` or a batch ``(k, T)`` (one problem per row); returns ``v`` with
    the same shape. Writing ``G = A^T A`` (``A = Lambda^1/2 V^T`` from the eigendecomposition,
    negative eigenvalues of rounding clipped to 0) and ``v = u + z``, each problem is the
    non-negative least-squares problem ``min_{z >= 0} ||A z + A u||``, solved exactly by
    Lawson-Hanson's active-set method (:func:`scipy.optimize.nnls`; bounded-variable least
    squares should it not converge). ``J^T v`` is unique even
    where ``v`` is not (a singular ``G``).
    """
    G = np.asarray(gram, dtype=np.float64)
    U = np.atleast_2d(np.asarray(u, dtype=np.float64))
    out = U.copy()
    scale = float(np.trace(G)) / G.shape[0]
    if not scale > 0 or not np.all(np.isfinite(G)):
        return out.reshape(np.shape(u))  # every gradient is zero: nothing to project
    G = 0.5 * (G + G.T) / scale  # the minimiser does not depend on the scale of G
    lam, V = np.linalg.eigh(G)
    A = np.sqrt(np.clip(lam, 0.0, None))[:, None] * V.T
    for r, row in enumerate(U):
        try:
            z, _ = nnls(A, -(A @ row), maxiter=50 * G.shape[0])
        except RuntimeError:  # not expected at this size; bounded-variable least squares is exact too
            z = lsq_linear(A, -(A @ row), bounds=(0.0, np.inf), method="bvls").x
        out[r] = row + z
    return out.reshape(np.shape(u))


class UPGrad(GradientCombination):
    """Unconflicting projection of gradients: average the task gradients' projections onto the dual cone.

    Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024 (arXiv
    2406.16232; the aggregator of TorchJD). Each task gradient ``g_i`` is projected onto the
    dual cone of all of them, ``{x : g_j . x >= 0 for every j}`` (the directions that
    increase no task's loss to first order), and the projections are averaged::

        d = (1 / T) sum_i pi(g_i),   pi(g_i) = J^T v_i,   v_i = argmin_{v >= e_i} v^T G v

    where ``J`` has the task gradients as rows, ``G = J J^T`` is their Gram matrix and ``e_i``
    the ``i``-th basis vector (the paper's Proposition 1: the projection is a small quadratic
    program in ``T`` dimensions on ``G``). ``d`` is then in the dual cone (``g_j . d >= 0`` for
    every ``j``), and equals the task gradients' mean when they do not conflict. Each QP is
    solved exactly on the Gram matrix (see ``project_weights``); no ``T x P`` work beyond the
    Gram matrix and the final combination.

    Parameters
    ----------
    reduction : {"mean", "sum"}, default="mean"
        Combine the projections by their mean (the paper and TorchJD's default preference
        vector ``1 / T``) or their sum (equal weighting's scale).

    Notes
    -----
    - **Task weights.** The user's ``task_weights`` ``w`` scale the task losses first: the
      method projects the gradients of ``w_k L_k`` (TorchJD's preference vector plays a
      different role, weighting the projections; it is not offered). Task ``k``'s private
      parameters (tower, gate) get ``w_k`` times their own gradient, as TorchJD's
      ``mtl_backward`` gives them their own task's gradient.
    - **Deviations from TorchJD.** TorchJD normalises ``G`` and adds a small multiple of the
      identity before calling a generic QP solver (``quadprog``); here the problems are solved
      exactly on ``G`` itself (non-negative least squares in float64 on the host), so the
      result is the exact projection.
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights`` (the
      coefficients of ``d`` on the task gradients, ``mean_i v_i``: at least ``1 / T`` each under
      ``"mean"``), ``cosine`` (mean pairwise cosine of the task gradients).
    - Cost per step: ``T`` backward passes, one ``T x T`` matrix copied to the host and ``T``
      non-negative least-squares problems of size ``T``.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.upgrad import UPGrad
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=UPGrad(), max_epochs=2,
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
        weights = project_weights(G, np.eye(n)).sum(0)
        if self.reduction == "mean":
            weights /= n
        coefficients = torch.as_tensor(weights, dtype=grads.dtype).to(grads.device, non_blocking=True)
        return coefficients @ grads, coefficients, {}
