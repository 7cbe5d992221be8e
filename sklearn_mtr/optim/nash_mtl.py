"""Nash-MTL: task weights from the Nash bargaining solution (Navon et al., 2022)."""

from __future__ import annotations

import numbers
from typing import ClassVar

import torch
from torch import nn

from .._constraints import Interval, Options
from ._base import StepContext
from ._combination import (
    GradientCombination,
    active_tasks,
    gram_to_numpy,
    mean_pairwise_cosine,
)
from ._nash import solve_nash_weights


class _NashState(nn.Module):
    """Current weights and last gradient cosine (buffers: they move and pickle with the net)."""

    def __init__(self, n_tasks: int):
        super().__init__()
        self.register_buffer("alpha", torch.ones(n_tasks))
        self.register_buffer("cosine", torch.ones(()))
        self.n_steps = 0  # a host-side counter: the refresh schedule never reads the device


class NashMTL(GradientCombination):
    """Nash bargaining over the task gradients: ``G alpha = 1 / alpha``.

    Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya, "Multi-Task Learning
    as a Bargaining Game", ICML 2022. With ``G`` the Gram matrix of the tasks' gradients
    ``g_t`` on the shared parameters, the weights ``alpha > 0`` solve ``G alpha = 1 / alpha``:
    each task's improvement ``g_t . d`` along ``d = sum_t alpha_t g_t`` is inversely
    proportional to its weight, the Nash bargaining solution of the tasks' utilities. The
    loss ``sum_t alpha_t L_t`` is then back-propagated, and the gradient of the shared
    parameters is clipped to norm ``max_norm`` as in the authors' reference setup.

    The weights come from :func:`sklearn_mtr.optim._nash.solve_nash_weights` (closed form
    for two tasks, damped Newton beyond; no cvxpy), warm-started from the previous weights.

    Parameters
    ----------
    update_weights_every : int, default=1
        Refresh ``alpha`` every this many steps (the paper's default 1). Between refreshes the
        previous weights are reused and the step costs one backward pass instead of ``T``.
    max_norm : float or None, default=1.0
        Clip the norm of the shared parameters' gradient to this value after weighting (the
        authors' default); ``None`` or 0 disables clipping.
    max_iter : int, default=50
        Newton iterations of the weight solver (three or more tasks).
    tol : float, default=1e-10
        Solver tolerance on ``max_t |alpha_t (G alpha)_t - 1|``.

    Notes
    -----
    - **Task weights.** The user's ``task_weights`` ``w`` scale the task losses first: ``G``
      is the Gram matrix of the gradients of ``w_t L_t`` and the objective back-propagated is
      ``sum_t alpha_t w_t L_t``. As Nash-MTL is invariant to the scale of each gradient, a
      positive ``w_t`` is absorbed into ``alpha_t``: task weights only matter by removing a
      task (0).
    - **Private parameters.** Task ``t``'s private parameters (tower, gate) get
      ``alpha_t w_t`` times their own gradient, as in the reference code.
    - **Deviations from the paper.** The optimisation problem is solved by Newton's method
      on ``G alpha = 1 / alpha`` instead of the reference code's sequence of convex programs
      (cvxpy); both reach the same solution, Newton to ``tol``. When the solver fails (two
      gradients exactly opposite, no positive solution) the previous weights are kept, as in
      the reference code. A task whose gradient is zero in a batch (none of its labels
      present) is left out of the bargaining and keeps its previous weight; its gradient is
      zero anyway. The architecture's auxiliary loss (if any) is added unweighted before
      clipping.
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights``
      (``alpha``), ``cosine`` (mean pairwise cosine of the task gradients at the last refresh)
      and ``solve_failed`` (fraction of steps whose refresh failed).
    - Cost per refresh step: ``T`` backward passes and one ``T x T`` matrix copied to the host.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.nash_mtl import NashMTL
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=NashMTL(update_weights_every=2),
    ...                      max_epochs=2, random_state=0).fit(X, Y)
    >>> len(clf.history_[-1, "optim_weights"])
    2
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "update_weights_every": [Interval(numbers.Integral, 1)],
        "max_norm": [Options(None), Interval(numbers.Real, 0)],
        "max_iter": [Interval(numbers.Integral, 1)],
        "tol": [Interval(numbers.Real, 0, closed="right")],
    }

    def __init__(self, update_weights_every=1, max_norm=1.0, max_iter=50, tol=1e-10):
        self.update_weights_every = update_weights_every
        self.max_norm = max_norm
        self.max_iter = max_iter
        self.tol = tol

    def create_state(self, model, n_tasks):
        return _NashState(n_tasks)

    def _refresh(self, gram: torch.Tensor, state: _NashState) -> torch.Tensor:
        """Solve for new weights into ``state.alpha``; return 1.0 when the solve failed."""
        G, previous = gram_to_numpy(gram, state.alpha)
        G_host = torch.from_numpy(G)
        idx = torch.from_numpy(active_tasks(G)).nonzero().reshape(-1)
        ok = True
        if idx.numel():
            init = torch.from_numpy(previous)[idx]
            alpha, ok = solve_nash_weights(
                G_host[idx][:, idx], init if bool((init > 0).all()) else None, max_iter=self.max_iter, tol=self.tol
            )
            if ok:
                new = torch.from_numpy(previous).clone()
                new[idx] = alpha
                state.alpha.copy_(new.to(state.alpha.dtype))
        return torch.tensor(0.0 if ok else 1.0)

    def _combine(self, grads, gram, losses, state):
        failed = self._refresh(gram, state)
        coefficients = state.alpha.to(device=grads.device, dtype=grads.dtype)
        return coefficients @ grads, coefficients, {"solve_failed": failed}

    def backward(self, task_losses: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        state = ctx.state
        task_weights = ctx.task_weights.to(device=task_losses.device, dtype=task_losses.dtype)
        failed = torch.tensor(0.0)
        if state.n_steps % self.update_weights_every == 0:
            raw, private, shared = ctx.task_gradients(task_losses)
            grads = raw * task_weights[:, None].to(raw.dtype)
            gram = grads @ grads.T
            failed = self._refresh(gram, state)
            state.cosine.copy_(mean_pairwise_cosine(gram))
            alpha = state.alpha.to(raw.dtype)
            ctx.write_gradients(shared, alpha @ grads, private, alpha * task_weights.to(raw.dtype))
        else:
            shared = ctx.model.shared_parameters()
            self.weighted_total(state.alpha.to(task_losses.dtype) * task_losses, ctx).backward()
        state.n_steps += 1
        if self.max_norm:
            torch.nn.utils.clip_grad_norm_(shared, self.max_norm)
        return {"weights": state.alpha.clone(), "cosine": state.cosine.clone(), "solve_failed": failed}
