"""GradDrop: gradient sign dropout (Chen et al., NeurIPS 2020)."""

from __future__ import annotations

import numbers
from typing import ClassVar

import torch

from .._constraints import Interval
from ._combination import GradientCombination
from ._random import SeededState


def drop_signs(grads: torch.Tensor, uniform: torch.Tensor, leak: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """GradDrop's combination of the ``(T, P)`` task gradients for given uniform draws ``(P,)``.

    Returns the combined ``(P,)`` gradient and the ``(T, P)`` factors ``leak + (1 - leak) M``
    applied to each task's gradient, ``M_i = 1[P > U] 1[g_i > 0] + 1[P < U] 1[g_i < 0]``.
    """
    total = grads.sum(0)
    mass = grads.abs().sum(0)
    purity = 0.5 * (1.0 + total / mass.clamp_min(torch.finfo(grads.dtype).tiny))
    keep_positive = purity > uniform
    keep_negative = purity < uniform
    mask = (grads > 0) & keep_positive | (grads < 0) & keep_negative
    factors = leak + (1.0 - leak) * mask.to(grads.dtype)
    return (factors * grads).sum(0), factors


class GradDrop(GradientCombination):
    """Gradient sign dropout: per coordinate, keep only the gradients of one sign.

    Chen, Ngiam, Huang, Luong, Kretzschmar, Chai & Anguelov, "Just Pick a Sign: Optimizing
    Deep Multitask Models with Gradient Sign Dropout", NeurIPS 2020 (arXiv 2010.06808).
    For every coordinate of the shared parameters, with ``g_i`` task ``i``'s gradient, the
    sign purity (the paper's Eq. 1) is::

        P = 0.5 * (1 + sum_i g_i / sum_i |g_i|)          in [0, 1]

    A uniform ``U ~ U(0, 1)`` is drawn per coordinate; where ``P > U`` the positive task
    gradients are kept, elsewhere the negative ones (a coordinate where every task agrees is
    always kept). With the leak ``l`` (the paper's Algorithm 1)::

        M_i   = 1[P > U] 1[g_i > 0] + 1[P < U] 1[g_i < 0]
        g_new = sum_i (l + (1 - l) M_i) g_i

    The operation is elementwise on the ``(T, P)`` gradient matrix (no Gram matrix).

    Parameters
    ----------
    leak : float, default=0.0
        Share ``l`` in [0, 1] of every task gradient that passes whatever the mask (0: pure
        GradDrop, the paper's multi-task setting; 1: the plain sum of the gradients). The
        paper allows one leak per task (for transfer learning); here one value for all.

    Notes
    -----
    - **Task weights.** The user's ``task_weights`` ``w`` scale the task losses first: the
      purity and the masks are those of the gradients of ``w_k L_k``. Task ``k``'s private
      parameters (tower, gate) get ``w_k`` times their own gradient, unmasked (with one task
      per tower there is no sign to pick).
    - **Randomness.** ``U`` is drawn on the parameters' device from a generator re-seeded at
      every step from a ``torch.Generator`` that is itself seeded from the global torch random
      stream when training starts (as PCGrad's orders), so a fixed ``random_state`` of the
      estimator makes training deterministic and the generator pickles with the estimator.
    - **Deviations from the paper.** The paper applies GradDrop to the gradients of a shared
      *activation* layer (summed over the batch) and back-propagates the result; the
      architectures here have no single shared representation (MMoE and PLE give each task
      its own mixture), so it is applied to the gradients of the shared *parameters*, as in
      several re-implementations. The monotone function ``f`` of the purity is the identity
      (the paper's default).
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights`` (the
      share of each task's gradient mass ``sum |g_i|`` that was kept; GradDrop is not a
      linear combination of the task gradients, so these are not coefficients of one),
      ``cosine`` (mean pairwise cosine of the task gradients) and ``dropped`` (the share of the
      total gradient mass dropped in the step).
    - Cost per step: ``T`` backward passes, one uniform draw per shared value; nothing is
      copied to the host.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.graddrop import GradDrop
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=GradDrop(leak=0.0), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> sorted(k for k in clf.history_[-1] if k.startswith("optim_"))
    ['optim_cosine', 'optim_dropped', 'optim_weights']
    """

    _weights_scale_private = False

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "leak": [Interval(numbers.Real, 0, 1)],
    }

    def __init__(self, leak=0.0):
        self.leak = leak

    def create_state(self, model, n_tasks):
        return SeededState()

    def _combine(self, grads, gram, losses, state):
        seed = int(torch.randint(0, 2**62, (1,), generator=state.generator))
        device_generator = torch.Generator(device=grads.device).manual_seed(seed)
        uniform = torch.rand(grads.shape[1], generator=device_generator, device=grads.device, dtype=grads.dtype)
        direction, factors = drop_signs(grads, uniform, float(self.leak))
        mass = grads.abs().sum(1)
        kept = (factors * grads.abs()).sum(1)
        tiny = torch.finfo(grads.dtype).tiny
        weights = torch.where(mass > 0, kept / mass.clamp_min(tiny), torch.ones_like(mass))
        dropped = (mass.sum() - kept.sum()) / mass.sum().clamp_min(tiny)
        return direction, weights, {"dropped": dropped}
