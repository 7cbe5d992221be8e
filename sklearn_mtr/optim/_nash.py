"""Nash-bargaining task weights: solve ``G @ alpha = 1 / alpha`` with ``alpha > 0``.

Shared by the methods that weight tasks by the Nash bargaining solution (PUB on the Gram
matrix of per-task Adam updates, Nash-MTL on the Gram matrix of per-task gradients).

Given vectors ``u_1 .. u_T`` (rows of ``U``) with Gram matrix ``G = U U^T``, the Nash
bargaining direction is ``d = sum_i alpha_i u_i`` with ``u_i . d = 1 / alpha_i`` for every
task, i.e. ``G alpha = 1 / alpha``. Equivalently ``alpha`` minimises the strictly convex

    f(alpha) = 1/2 alpha^T G alpha - sum_i log(alpha_i)        on alpha > 0,

whose gradient is ``G alpha - 1/alpha`` and whose Hessian ``G + diag(1 / alpha^2)`` is positive
definite. At the solution ``||d||^2 = alpha^T G alpha = T`` whatever the scale of ``U``, and
scaling ``G`` by ``c`` scales ``alpha`` by ``1 / sqrt(c)``.

Solution method (no cvxpy):

- ``T = 1``: ``alpha = 1 / sqrt(G_11)``;
- ``T = 2``: closed form ``alpha_i = 1 / (||u_i|| sqrt(1 + cos theta))`` read off the Gram
  entries (``cos theta = G_12 / sqrt(G_11 G_22)``);
- ``T > 2``: damped Newton on ``f`` (Cholesky solve of the positive definite Hessian, a
  fraction-to-the-boundary step that keeps ``alpha > 0`` and Armijo backtracking on ``f``,
  in numpy: a T x T problem is far below torch's per-op overhead),
  started from ``init`` (warm start) or from ``1 / ||u_i||``, rescaled along its ray to the
  best multiple. The problem is solved on ``G / mean(diag G)`` in float64 on the CPU (a ``T x T``
  matrix: one small host transfer) and the answer is scaled back.

The system has no positive solution when a task's vector is zero (a zero diagonal entry of
``G``), when two tasks' vectors point in exactly opposite directions (a cosine of -1), or more
generally when a non-negative combination of the vectors vanishes; the solver then reports
``ok=False`` and returns the fallback (``init``, or ones), which callers keep.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["nash_residual", "solve_nash_weights"]

# Relative size under which a diagonal entry of G counts as zero (a task without an update).
_ZERO_DIAG = 1e-12
# Cosines at or below -1 + _OPPOSITE count as exactly opposite directions.
_OPPOSITE = 1e-6


def nash_residual(gram: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Scale-free residual ``max_i |alpha_i (G alpha)_i - 1|`` (0 at the Nash solution)."""
    gram = gram.detach().to(torch.float64)
    alpha = alpha.detach().to(gram)
    return (alpha * (gram @ alpha) - 1.0).abs().max()


def _fallback(init: torch.Tensor | None, n: int, device, dtype) -> torch.Tensor:
    if init is None:
        return torch.ones(n, device=device, dtype=dtype)
    return init.detach().to(device=device, dtype=dtype).clone()


def _objective(G: np.ndarray, a: np.ndarray) -> float:
    return float(0.5 * a @ (G @ a) - np.log(a).sum())


def _newton(G: np.ndarray, a: np.ndarray, max_iter: int, tol: float) -> tuple[np.ndarray, bool]:
    """Damped Newton on ``f(a) = a.G.a / 2 - sum log a`` (``G`` float64, well scaled)."""
    jitter = 1e-14 * float(G.diagonal().max())
    for _ in range(max_iter):
        Ga = G @ a
        if float(np.abs(a * Ga - 1.0).max()) <= tol:
            return a, True
        grad = Ga - 1.0 / a
        hess = G + np.diag(1.0 / (a * a) + jitter)
        try:
            chol = np.linalg.cholesky(hess)
        except np.linalg.LinAlgError:
            return a, False
        d = -np.linalg.solve(chol.T, np.linalg.solve(chol, grad))
        decrement = float(-(grad @ d))  # Newton decrement squared, >= 0
        if not math.isfinite(decrement):
            return a, False
        # Largest step keeping every alpha_i strictly positive (fraction to the boundary).
        neg = d < 0
        t = min(1.0, 0.99 * float((-a[neg] / d[neg]).min())) if neg.any() else 1.0
        if decrement > 1e-12:  # far from the solution: Armijo backtracking on f
            f0 = _objective(G, a)
            while t > 1e-12 and _objective(G, a + t * d) > f0 - 1e-4 * t * decrement:
                t *= 0.5
            if t <= 1e-12:
                return a, False
        a = a + t * d
        if not np.isfinite(a).all() or (a <= 0).any():
            return a, False
    return a, float(np.abs(a * (G @ a) - 1.0).max()) <= tol


def solve_nash_weights(
    gram: torch.Tensor,
    init: torch.Tensor | None = None,
    *,
    max_iter: int = 50,
    tol: float = 1e-10,
) -> tuple[torch.Tensor, bool]:
    """Positive weights ``alpha`` with ``G @ alpha = 1 / alpha`` (Nash bargaining).

    Parameters
    ----------
    gram : Tensor of shape (T, T)
        Gram matrix ``U U^T`` of the per-task vectors (symmetric positive semi-definite; it
        is symmetrised before use). Any device and floating dtype.
    init : Tensor of shape (T,), optional
        Warm start (the previous solution). Only its direction matters: it is rescaled to the
        best multiple before Newton starts. Non-positive or non-finite entries are ignored.
        Also the value returned when the solve fails.
    max_iter : int, default=50
        Newton iterations (``T > 2``).
    tol : float, default=1e-10
        Convergence when the scale-free residual ``max_i |alpha_i (G alpha)_i - 1|`` is at
        most ``tol``.

    Returns
    -------
    alpha : Tensor of shape (T,)
        The weights, on ``gram``'s device and dtype. When ``ok`` is False: ``init`` (or ones
        when there is none), to be ignored or kept by the caller.
    ok : bool
        False when ``gram`` is not finite, a task's vector is zero, two tasks' vectors are
        opposite (cosine -1), or Newton did not converge (no positive solution exists).

    Examples
    --------
    >>> import torch
    >>> from sklearn_mtr.optim._nash import solve_nash_weights
    >>> U = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> alpha, ok = solve_nash_weights(U @ U.T)
    >>> alpha, ok
    (tensor([1.0000, 0.5000]), True)
    """
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] == 0:
        raise ValueError(f"gram must be a non-empty square (T, T) matrix, got shape {tuple(gram.shape)}")
    n = gram.shape[0]
    device = gram.device
    dtype = gram.dtype if gram.is_floating_point() else torch.float64
    fail = _fallback(init, n, device, dtype), False

    G = gram.detach().to(device="cpu", dtype=torch.float64).numpy()
    if not np.isfinite(G).all():
        return fail
    G = 0.5 * (G + G.T)
    diag = G.diagonal()
    scale = float(diag.mean())
    if not scale > 0 or (diag <= _ZERO_DIAG * float(diag.max())).any():
        return fail  # a task without a vector: (G alpha)_i = 0 can never equal 1 / alpha_i
    Gs = G / scale
    norms = np.sqrt(Gs.diagonal())
    cos = Gs / np.outer(norms, norms)
    if n > 1 and (cos[~np.eye(n, dtype=bool)] <= -1.0 + _OPPOSITE).any():
        return fail

    if n == 1:
        a = 1.0 / norms
        ok = True
    elif n == 2:
        a = 1.0 / (norms * math.sqrt(1.0 + float(cos[0, 1])))
        ok = True
    else:
        a0 = 1.0 / norms
        if init is not None:
            warm = init.detach().to(device="cpu", dtype=torch.float64).reshape(-1).numpy()
            if warm.shape == a0.shape and np.isfinite(warm).all() and (warm > 0).all():
                a0 = warm.copy()
        # Best multiple c * a0 along the ray: minimises c^2 q / 2 - T log c  ->  c = sqrt(T / q).
        q = float(a0 @ (Gs @ a0))
        if not q > _ZERO_DIAG * float((a0 * a0) @ Gs.diagonal()):
            return fail  # a positive combination of the vectors (nearly) vanishes: no solution
        a0 = a0 * math.sqrt(n / q)
        a, ok = _newton(Gs, a0, max_iter, tol)
    if not ok:
        return fail
    alpha = torch.from_numpy(a / math.sqrt(scale))
    return alpha.to(device=device, dtype=dtype), True
