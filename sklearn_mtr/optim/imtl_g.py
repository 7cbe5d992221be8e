"""IMTL-G: impartial gradient weighting (Liu et al., ICLR 2021)."""

from __future__ import annotations

import numpy as np
import torch

from ._combination import GradientCombination, active_tasks, gram_to_numpy


class IMTLG(GradientCombination):
    """Impartial multi-task learning, gradient part: equal projections on every task.

    Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial Multi-task Learning",
    ICLR 2021 (IMTL-G). The shared update ``g = sum_t alpha_t g_t`` with ``sum_t alpha_t = 1``
    is the one whose projections on all the unit task gradients ``u_t = g_t / ||g_t||`` are
    equal, ``g . u_1 = g . u_t`` for every ``t``. In closed form (the paper's Eq. 8), with
    ``D`` the rows ``g_1 - g_t`` and ``U`` the rows ``u_1 - u_t`` (``t = 2..T``)::

        alpha_{2:T} = g_1 U^T (D U^T)^{-1},        alpha_1 = 1 - sum_{t >= 2} alpha_t

    Every inner product comes from the ``T x T`` Gram matrix. For two tasks this reduces to
    ``alpha = (||g_2||, ||g_1||) / (||g_1|| + ||g_2||)``, which is used directly (it is also
    the limit where the two gradients point the same way and Eq. 8 is 0/0).

    The class has no hyper-parameters.

    Notes
    -----
    - **Task weights.** The user's ``task_weights`` ``w`` scale the task losses first: the
      method balances the gradients of ``w_k L_k``. Because IMTL-G equalises projections on
      *unit* gradients, positive task weights do not change the shared direction, only its
      length (a weight of 0 removes the task).
    - **Private parameters.** ``alpha`` may be negative, so task ``k``'s private parameters
      (tower, gate) get their own gradient times ``w_k`` only, as in the paper (whose
      task-specific parameters follow their own raw loss).
    - **Deviations from the paper.** IMTL combines IMTL-G with a learned loss scaling
      (IMTL-L); this class is the gradient part alone, the variant the benchmark tables list.
      When ``D U^T`` is singular or not finite (three or more tasks with linearly dependent
      unit-gradient differences), the least-squares solution is used, and equal weights if
      that is not finite either. A task whose gradient is zero in a batch (none of its
      labels present) is left out (``alpha_k = 0``).
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights``
      (``alpha``), ``cosine`` (mean pairwise cosine of the task gradients).
    - Cost per step: ``T`` backward passes and one ``T x T`` matrix copied to the host.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.imtl_g import IMTLG
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=IMTLG(), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> round(sum(clf.history_[-1, "optim_weights"]), 4)
    1.0
    """

    _weights_scale_private = False

    def __init__(self):
        pass

    def _combine(self, grads, gram, losses, state):
        n = grads.shape[0]
        (G,) = gram_to_numpy(gram)
        weights = np.zeros(n)
        idx = np.nonzero(active_tasks(G))[0]
        if idx.size == 0:
            weights[:] = 1.0 / n  # every gradient is zero
        else:
            weights[idx] = _imtl_weights(G[np.ix_(idx, idx)])
        coefficients = torch.as_tensor(weights, dtype=grads.dtype).to(grads.device, non_blocking=True)
        return coefficients @ grads, coefficients, {}


def _imtl_weights(G: np.ndarray) -> np.ndarray:
    """IMTL-G's ``alpha`` from the Gram matrix of non-zero gradients."""
    m = G.shape[0]
    if m == 1:
        return np.ones(1)
    G = G / (np.trace(G) / m)  # alpha is scale-free
    norms = np.sqrt(np.diag(G))
    if m == 2:
        return norms[::-1] / norms.sum()
    H = G / norms[None, :]  # H[i, j] = g_i . u_j
    # M[i, j] = (g_1 - g_i) . (u_1 - u_j),  r[j] = g_1 . (u_1 - u_j)   (i, j >= 2)
    M = H[0, 0] - H[0, 1:][None, :] - H[1:, 0][:, None] + H[1:, 1:]
    r = H[0, 0] - H[0, 1:]
    # alpha_{2:T} M = r  <=>  M^T alpha_{2:T}^T = r^T
    try:
        rest = np.linalg.solve(M.T, r)
    except np.linalg.LinAlgError:
        rest = np.linalg.lstsq(M.T, r, rcond=1e-12)[0]
    if not np.all(np.isfinite(rest)) or np.linalg.cond(M) > 1e12:
        rest = np.linalg.lstsq(M.T, r, rcond=1e-12)[0]
    alpha = np.concatenate([[1.0 - rest.sum()], rest])
    return alpha if np.all(np.isfinite(alpha)) else np.full(m, 1.0 / m)
