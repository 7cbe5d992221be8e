"""Aligned-MTL: independent component alignment (Senushkin et al., CVPR 2023)."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from .._constraints import Options
from ._combination import GradientCombination, gram_to_numpy

_SCALES = ("min", "median", "rmse")


def balance_transformation(gram: np.ndarray, eps: float, scale_mode: str = "min") -> tuple[np.ndarray, int, float]:
    """Aligned-MTL's ``B`` from the Gram matrix: ``B = s V Lambda^-1/2 V^T`` on the numerical rank.

    Returns ``B``, the rank kept (eigenvalues above ``T eps`` times the largest) and the
    condition number ``sqrt(lambda_max / lambda_min)`` of the task gradients on that rank.
    """
    G = np.asarray(gram, dtype=np.float64)
    n = G.shape[0]
    G = 0.5 * (G + G.T)
    lam, V = np.linalg.eigh(G)
    top = float(lam.max()) if n else 0.0
    if not top > 0 or not np.all(np.isfinite(lam)):
        return np.eye(n), 0, 1.0
    keep = lam > n * eps * top
    lam, V = lam[keep], V[:, keep]
    singular = np.sqrt(lam)  # singular values of the gradient matrix
    s = {
        "min": singular.min(),
        "median": math.sqrt(float(np.sort(lam)[(lam.size - 1) // 2])),  # the lower middle one, as torch.median
        "rmse": math.sqrt(float(lam.mean())),
    }[scale_mode]
    B = (V * (s / singular)) @ V.T
    return B, int(keep.sum()), float(singular.max() / singular.min())


class AlignedMTL(GradientCombination):
    """Aligned-MTL: make the task gradients orthogonal and of equal norm, then sum them.

    Senushkin, Patakin, Kuznetsov & Konushin, "Independent Component Alignment for
    Multi-Task Learning", CVPR 2023 (arXiv 2305.19000), Algorithm 1. With ``J`` the task
    gradients as rows, ``G = J J^T = V Lambda V^T`` its eigendecomposition (on the numerical
    rank ``R``) and ``sigma_i = sqrt(lambda_i)`` the singular values of ``J``::

        B = sigma_min V Lambda^-1/2 V^T,      alpha = B w,      d = J^T alpha

    The aligned gradients ``J^T B`` have Gram matrix ``B G B = sigma_min^2 I`` (on the rank):
    the linear system of the task gradients is balanced to condition number 1 and rescaled
    to the smallest singular value, so no task's gradient dominates and conflicting
    components cancel. ``w`` is the preference vector: ones (the authors' code sums the
    aligned gradients) or ``1 / T`` (TorchJD's mean). All from the ``T x T`` Gram matrix.

    Parameters
    ----------
    scale_mode : {"min", "median", "rmse"}, default="min"
        The common norm of the aligned gradients: the smallest singular value (the paper),
        or the median (the lower of the two middle ones for an even rank, as ``torch.median``)
        or root mean square of the singular values (the authors' code's other options).
    reduction : {"sum", "mean"}, default="sum"
        The preference vector ``w``: ones (the authors' code) or ``1 / T`` (TorchJD).

    Notes
    -----
    - **Task weights.** The user's ``task_weights`` ``w`` scale the task losses first: the
      method aligns the gradients of ``w_k L_k`` (the alignment largely undoes positive
      weights; a weight of 0 removes the task).
    - **Private parameters.** Task ``k``'s private parameters (tower, gate) get ``w_k``
      times their own gradient, as with the authors' default ``scale_decoder_grad=False``
      (``alpha`` may be negative).
    - **Deviations from the paper.** The paper's Aligned-MTL-UB aligns the gradients with
      respect to a shared representation (an upper bound that saves backward passes); the
      architectures here have no single shared representation, so the gradients of the
      shared *parameters* are aligned (the paper's Aligned-MTL). Eigenvalues below ``T``
      times the machine epsilon of the gradients' dtype times the largest are discarded (as
      in the authors' code); a task whose gradient is zero in the batch thus drops out.
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights``
      (``alpha``), ``cosine`` (mean pairwise cosine of the task gradients),
      ``condition_number`` (``sigma_max / sigma_min`` of the task gradients before alignment)
      and ``rank`` (the numerical rank ``R``).
    - Cost per step: ``T`` backward passes and one ``T x T`` matrix copied to the host.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.aligned_mtl import AlignedMTL
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=AlignedMTL(), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> clf.history_[-1, "optim_condition_number"] >= 1
    True
    """

    _weights_scale_private = False

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "scale_mode": [Options(*_SCALES)],
        "reduction": [Options("sum", "mean")],
    }

    def __init__(self, scale_mode="min", reduction="sum"):
        self.scale_mode = scale_mode
        self.reduction = reduction

    def _combine(self, grads, gram, losses, state):
        n = grads.shape[0]
        (G,) = gram_to_numpy(gram)
        B, rank, condition = balance_transformation(G, float(torch.finfo(grads.dtype).eps), self.scale_mode)
        preference = np.full(n, 1.0 if self.reduction == "sum" else 1.0 / n)
        coefficients = torch.as_tensor(B @ preference, dtype=grads.dtype).to(grads.device, non_blocking=True)
        extra = {
            "condition_number": torch.tensor(condition, dtype=grads.dtype),
            "rank": torch.tensor(float(rank), dtype=grads.dtype),
        }
        return coefficients @ grads, coefficients, extra
