"""MoCo: multi-objective gradient correction (Fernando, Shen, Liu, Chaudhury, Murugesan & Chen, ICLR 2023)."""

from __future__ import annotations

import numbers
from typing import ClassVar

import torch
from torch import nn

from .._constraints import Interval, Options
from ._base import device_of
from ._combination import GradientCombination, project_onto_simplex

NORMALIZATIONS = ("loss", "none")


class _MoCoState(nn.Module):
    """The tracked gradients ``y`` (T x P), the weights ``lambda`` and the step count (buffers)."""

    def __init__(self, n_tasks: int, n_values: int, device):
        super().__init__()
        self.register_buffer("tracked", torch.zeros(n_tasks, n_values, device=device))
        self.register_buffer("lambd", torch.full((n_tasks,), 1.0 / n_tasks, device=device))
        self.register_buffer("step", torch.zeros((), dtype=torch.long, device=device))


class MoCo(GradientCombination):
    """MoCo: MGDA's weights learnt on tracked (bias-corrected) gradients, one projected step at a time.

    Fernando, Shen, Liu, Chaudhury, Murugesan & Chen, "Mitigating Gradient Bias in
    Multi-objective Learning: A Provably Convergent Approach", ICLR 2023 (arXiv 2210.12624),
    Algorithm 1. Stochastic MGDA is biased because the min-norm weights are a nonlinear
    function of noisy gradients; MoCo tracks each task's gradient with a moving estimate
    ``y_i`` and updates the weights ``lambda`` by one projected gradient step on MGDA's
    objective ``||Y lambda||^2 / 2`` (plus ``rho ||lambda||^2 / 2``) per training step::

        y_i    <- y_i - beta_t (y_i - h_i)                              (every task i)
        lambda <- Proj_simplex( lambda - gamma_t (Y^T Y + rho I) lambda )
        d      =  Y lambda

    with ``beta_t = beta / t^beta_sigma`` and ``gamma_t = gamma / t^gamma_sigma`` at step ``t``
    (from 1), ``Y = [y_1 .. y_T]`` and ``h_i`` task ``i``'s stochastic gradient on the shared
    parameters. As in the authors' multi-task code, ``h_i`` is the gradient rescaled to the
    norm of its loss, ``h_i = L_i g_i / ||g_i||`` (``normalization="loss"``; ``"none"``: the raw
    gradient). The task gradients are those of ``u_i L_i``, where ``u`` are the estimator's
    ``task_weights`` (ones by default).

    Parameters
    ----------
    beta : float, default=0.5
        Step size ``beta`` in (0, 1] of the gradient tracking (the authors' and LibMTL's 0.5).
    beta_sigma : float, default=0.5
        Decay exponent of ``beta_t`` (LibMTL's 0.5).
    gamma : float, default=0.1
        Step size ``gamma > 0`` of the weights (LibMTL's 0.1).
    gamma_sigma : float, default=0.5
        Decay exponent of ``gamma_t`` (LibMTL's 0.5).
    rho : float, default=0.0
        L2 regularisation ``rho >= 0`` of the weights' objective (LibMTL's 0).
    normalization : {"loss", "none"}, default="loss"
        ``h_i = L_i g_i / ||g_i||`` (the authors' code) or ``h_i = g_i`` (the paper's
        algorithm as printed).

    Notes
    -----
    - **Task weights.** ``u`` scale the task gradients (and losses) before tracking, as for the
      other gradient methods; task ``i``'s private parameters get ``u_i`` times their own
      gradient (MoCo corrects the shared parameters' direction only, as in the authors' code).
    - **Deviations from the paper.** The weights are projected onto the simplex as in the
      paper's Algorithm 1 (the authors' and LibMTL's code apply a softmax instead); the
      projection of ``y_i`` onto a ball of radius ``L_i`` (the bounded-gradient constant of the
      analysis) is not applied, as in the authors' code. ``y`` starts at zero. No randomness.
    - :meth:`combine` returns ``lambda`` as the coefficients; the direction is ``Y lambda``, a
      combination of the *tracked* gradients, not of the step's.
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights`` =
      ``lambda`` (on the simplex) and ``cosine`` (mean pairwise cosine of the step's task
      gradients).
    - Cost per step: ``T`` backward passes, and a ``T x P`` buffer of tracked gradients in the
      method's state, which pickles with the estimator; the weights' update runs on the device.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.moco import MoCo
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=MoCo(), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> round(sum(clf.history_[-1, "optim_weights"]), 4)
    1.0
    """

    _weights_scale_private = False

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "beta": [Interval(numbers.Real, 0, 1, closed="right")],
        "beta_sigma": [Interval(numbers.Real, 0)],
        "gamma": [Interval(numbers.Real, 0, closed="right")],
        "gamma_sigma": [Interval(numbers.Real, 0)],
        "rho": [Interval(numbers.Real, 0)],
        "normalization": [Options(*NORMALIZATIONS)],
    }

    def __init__(self, beta=0.5, beta_sigma=0.5, gamma=0.1, gamma_sigma=0.5, rho=0.0, normalization="loss"):
        self.beta = beta
        self.beta_sigma = beta_sigma
        self.gamma = gamma
        self.gamma_sigma = gamma_sigma
        self.rho = rho
        self.normalization = normalization

    def create_state(self, model, n_tasks):
        shared = getattr(model, "shared_parameters", None)
        n_values = sum(p.numel() for p in shared()) if callable(shared) else 0
        device = torch.device("cpu") if model is None else device_of(model)
        return _MoCoState(n_tasks, n_values, device)

    def _combine(self, grads, gram, losses, state):
        n = grads.shape[0]
        if state.tracked.shape != grads.shape:  # a state built without the model (``combine``)
            state.tracked = torch.zeros_like(grads, dtype=state.tracked.dtype)
        if self.normalization == "loss":
            if losses is None:
                raise ValueError("MoCo(normalization='loss') needs the task losses.")
            norms = grads.norm(dim=1, keepdim=True)
            h = grads / (norms + 1e-8) * losses.detach().to(grads.dtype)[:, None]
        else:
            h = grads
        state.step.add_(1)
        t = state.step.to(grads.dtype)
        beta_t = self.beta / t**self.beta_sigma
        gamma_t = self.gamma / t**self.gamma_sigma
        y = state.tracked.to(grads.dtype)
        y = y - beta_t * (y - h)
        state.tracked.copy_(y.to(state.tracked.dtype))
        lambd = state.lambd.to(grads.dtype)
        eye = torch.eye(n, device=grads.device, dtype=grads.dtype)
        lambd = project_onto_simplex(lambd - gamma_t * ((y @ y.T + self.rho * eye) @ lambd))
        state.lambd.copy_(lambd.to(state.lambd.dtype))
        return lambd @ y, lambd, {}
