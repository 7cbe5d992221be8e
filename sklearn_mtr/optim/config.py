"""ConFIG: conflict-free inverse gradients (Liu, Chu, Thuerey, 2024)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ._combination import GradientCombination, active_tasks, gram_to_numpy


class ConFIG(GradientCombination):
    """Conflict-free inverse gradients: the direction at an equal angle to every task gradient.

    Liu, Chu & Thuerey, "ConFIG: Towards Conflict-free Training of Physics Informed Neural
    Networks", ICLR 2025 (arXiv 2408.11104; Eq. 2, equal weights and the projection length).
    With ``u_i = g_i / ||g_i||`` the unit task gradients (the rows of ``U``)::

        g_u = pinv(U) 1                      (least-norm solution of U g_u = 1)
        d   = (sum_i g_i . g_u / ||g_u||)  g_u / ||g_u||

    ``U g_u = 1`` gives ``g_u`` the same positive inner product with every unit gradient,
    so ``d`` has the same cosine ``1 / ||g_u||`` with every task gradient and decreases every
    task's loss; its length is the sum of the task gradients' projections on it. Through
    ``pinv(U) = U^T pinv(U U^T)`` everything follows from the ``T x T`` Gram matrix:
    ``g_u = sum_k a_k u_k`` with ``a = pinv(C) 1``, ``C`` the Gram matrix of the unit gradients.

    The class has no hyper-parameters.

    Notes
    -----
    - **Task weights.** The user's ``task_weights`` ``w`` scale the task losses first: the
      method works on the gradients of ``w_k L_k``. As in IMTL-G, positive task weights do not
      change the direction (it depends on the unit gradients only), only its length (a weight
      of 0 removes the task).
    - **Private parameters.** The coefficients of ``d`` on the task gradients may be
      negative (three or more tasks), so task ``k``'s private parameters (tower, gate) get
      their own gradient times ``w_k`` only.
    - **Deviations from the paper.** The pseudo-inverse is taken on the Gram matrix ``C`` in
      float64, discarding eigenvalues below ``T`` times the machine epsilon of the gradients'
      dtype times the largest (the authors' ``torch.linalg.pinv`` of the ``T x P`` matrix cuts
      singular values below ``max(T, P) eps`` relative, which for a large ``P`` is a much
      coarser cut). A task whose gradient is zero in the batch (none of its labels present) is
      left out of ``U``. If ``g_u`` vanishes (1 orthogonal to the range of ``C``, e.g. two
      exactly opposite gradients) the shared update is zero.
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights`` (the
      coefficients of ``d`` on the task gradients), ``cosine`` (mean pairwise cosine of the
      task gradients) and ``common_cosine`` (the cosine ``1 / ||g_u||`` of ``d`` with every
      task gradient; their mean when the unit gradients are linearly dependent).
    - Cost per step: ``T`` backward passes and one ``T x T`` matrix copied to the host.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.config import ConFIG
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=ConFIG(), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> 0 < clf.history_[-1, "optim_common_cosine"] <= 1
    True
    """

    _weights_scale_private = False

    def __init__(self):
        pass

    def _combine(self, grads, gram, losses, state):
        (G,) = gram_to_numpy(gram)
        eps = float(torch.finfo(grads.dtype).eps)
        weights, common = config_weights(G, eps)
        coefficients = torch.as_tensor(weights, dtype=grads.dtype).to(grads.device, non_blocking=True)
        return coefficients @ grads, coefficients, {"common_cosine": torch.tensor(common, dtype=grads.dtype)}


def config_weights(G: np.ndarray, eps: float = 2.0**-23) -> tuple[np.ndarray, float]:
    """ConFIG's coefficients on the gradients whose Gram matrix is ``G``, and the common cosine."""
    n = G.shape[0]
    weights = np.zeros(n)
    idx = np.nonzero(active_tasks(G))[0]
    if idx.size == 0:
        return weights, 0.0
    Ga = G[np.ix_(idx, idx)]
    norms = np.sqrt(np.diag(Ga))
    C = Ga / np.outer(norms, norms)  # Gram matrix of the unit gradients
    C = 0.5 * (C + C.T)
    lam, V = np.linalg.eigh(C)
    keep = lam > idx.size * eps * lam.max()
    a = V[:, keep] @ ((V[:, keep].T @ np.ones(idx.size)) / lam[keep])  # pinv(C) 1
    sq = float(a @ C @ a)  # ||g_u||^2
    if not sq > 0 or not math.isfinite(sq):
        return weights, 0.0
    beta = a / norms  # g_u = sum_k beta_k g_k over the active tasks
    length = float((G[:, idx] @ beta).sum()) / math.sqrt(sq)  # sum_i g_i . g_u / ||g_u||
    weights[idx] = length * beta / math.sqrt(sq)
    return weights, float((C @ a).mean()) / math.sqrt(sq)  # 1 / ||g_u|| when C a = 1
