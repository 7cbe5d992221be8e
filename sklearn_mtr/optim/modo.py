"""MoDo: multi-objective gradient with double sampling (Chen, Fernando, Ying & Chen, NeurIPS 2023)."""

from __future__ import annotations

import numbers
from typing import ClassVar

import torch
from torch import nn

from .._constraints import Interval
from ._base import device_of
from ._combination import GradientCombination, project_onto_simplex


class _MoDoState(nn.Module):
    """The weights ``lambda`` on the simplex, carried from step to step (a buffer)."""

    def __init__(self, n_tasks: int, device):
        super().__init__()
        self.register_buffer("lambd", torch.full((n_tasks,), 1.0 / n_tasks, device=device))


class MoDo(GradientCombination):
    """MoDo: MGDA's weights learnt by one projected stochastic step per training step.

    Chen, Fernando, Ying & Chen, "Three-Way Trade-Off in Multi-Objective Learning: Optimization,
    Generalization and Conflict-Avoidance", NeurIPS 2023 (arXiv 2305.20057).
    The weights ``lambda`` follow projected gradient descent on MGDA's objective
    ``||G lambda||^2 / 2 + rho ||lambda||^2 / 2`` (``G = [g_1 .. g_T]``), and the model steps
    along the combination they give::

        lambda <- Proj_simplex( lambda - gamma (G(z1)^T G(z2) lambda + rho lambda) )
        d      =  G(z3) lambda

    In the paper ``z1``, ``z2``, ``z3`` are three independent batches ("double sampling" makes
    ``G(z1)^T G(z2)`` an unbiased estimate of the Gram matrix). The task gradients ``g_i`` are
    those of ``u_i L_i``, where ``u`` are the estimator's ``task_weights`` (ones by default).

    Parameters
    ----------
    gamma : float, default=0.001
        Step size ``gamma > 0`` of the weights (LibMTL's default 0.001).
    rho : float, default=0.1
        L2 regularisation ``rho >= 0`` of the weights' objective (LibMTL's default 0.1).

    Notes
    -----
    - **Single-batch variant.** A method here sees one batch per step, so ``z1 = z2 = z3``: the
      weights' step uses the batch's own Gram matrix ``G^T G`` (biased for the stochastic
      objective, the bias double sampling removes) and ``d`` the same gradients; the authors'
      code (and LibMTL's) draws three batches per step, i.e. three forward passes.
    - **Scale.** ``gamma`` multiplies the raw Gram matrix (no normalisation, as in the
      authors' code), so how fast the weights move depends on the gradients' scale: with the
      default 0.001 and small gradients they stay near ``1 / T``.
    - **Private parameters.** Task ``i``'s private parameters get ``u_i`` times their own
      gradient (the authors' code averages the three passes' gradients of the towers).
    - **Deviations from the paper.** The single batch above. No randomness.
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights`` =
      ``lambda`` (after the step's update) and ``cosine`` (mean pairwise cosine of the task
      gradients).
    - Cost per step: ``T`` backward passes, the ``T x T`` Gram matrix and one projection, on the
      device.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.modo import MoDo
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=MoDo(gamma=0.001, rho=0.1), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> round(sum(clf.history_[-1, "optim_weights"]), 4)
    1.0
    """

    _weights_scale_private = False

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "gamma": [Interval(numbers.Real, 0, closed="right")],
        "rho": [Interval(numbers.Real, 0)],
    }

    def __init__(self, gamma=0.001, rho=0.1):
        self.gamma = gamma
        self.rho = rho

    def create_state(self, model, n_tasks):
        device = torch.device("cpu") if model is None else device_of(model)
        return _MoDoState(n_tasks, device)

    def _combine(self, grads, gram, losses, state):
        lambd = state.lambd.to(device=grads.device, dtype=grads.dtype)
        lambd = project_onto_simplex(lambd - self.gamma * (gram @ lambd + self.rho * lambd))
        state.lambd.copy_(lambd.to(state.lambd.dtype))
        return lambd @ grads, lambd, {}
