"""Shared machinery of the gradient-combination methods (MGDA, PCGrad, CAGrad, IMTL-G, Nash-MTL, ...).

Every method here follows the same step (:meth:`GradientCombination.backward`):

1. ``T`` backward passes give the ``(T, P)`` matrix of the tasks' gradients on the shared
   parameters (:meth:`StepContext.task_gradients`); row ``k`` is scaled by the
   user's ``task_weights[k]``, i.e. the methods combine the gradients of ``w_k L_k``;
2. the method reads the ``T x T`` Gram matrix of these rows and returns coefficients
   ``beta`` such that the shared gradient is ``sum_k beta_k w_k g_k`` (every method here
   yields a combination of the task gradients, so the combination itself is one
   ``(T,) @ (T, P)`` product on the device);
3. :meth:`StepContext.write_gradients` stores it, task ``k``'s private
   parameters getting ``beta_k w_k`` times their own gradient (or ``w_k`` for the methods
   whose coefficients are not task weights).

The small solvers work on the Gram matrix in float64 on the CPU (one ``T x T`` transfer
per step; PCGrad needs none): the min-norm point (closed form for two tasks, an exact
active-set quadratic-programming solver on the simplex beyond) and CAGrad's dual (closed
form for two tasks; beyond, a one-dimensional search over ``||g_w||`` whose inner problem is
the same simplex QP). Nash-MTL's weights come from :mod:`sklearn_mtr.optim._nash`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._base import MultiTaskOptimizer, StepContext

# A task whose squared gradient norm is at most this fraction of the largest one has no
# gradient in the batch (typically: none of its labels is present) and is left out of the solve.
ZERO_GRADIENT = 1e-12


# --------------------------------------------------------------------------------------
# small solvers on the simplex (numpy, float64)
# --------------------------------------------------------------------------------------
def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``v`` onto the probability simplex (sort-based, exact)."""
    v = np.asarray(v, dtype=np.float64)
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u) - 1.0
    ranks = np.arange(1, v.size + 1)
    rho = np.nonzero(u - cumulative / ranks > 0)[0][-1]
    theta = cumulative[rho] / (rho + 1.0)
    return np.maximum(v - theta, 0.0)


def project_onto_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of a vector onto the probability simplex, on its device (no host sync)."""
    n = v.shape[0]
    u, _ = torch.sort(v, descending=True)
    cumulative = torch.cumsum(u, 0) - 1.0
    ranks = torch.arange(1, n + 1, device=v.device, dtype=v.dtype)
    rho = (u - cumulative / ranks > 0).sum() - 1  # the condition holds on a prefix; never empty
    theta = cumulative.gather(0, rho.reshape(1)) / (rho + 1).to(v.dtype)
    return torch.clamp_min(v - theta, 0.0)


def active_tasks(gram: np.ndarray) -> np.ndarray:
    """Boolean mask of the tasks whose gradient is not (numerically) zero."""
    diag = np.diag(gram)
    top = diag.max() if diag.size else 0.0
    if not np.isfinite(top) or top <= 0:
        return np.zeros(diag.shape, dtype=bool)
    return np.isfinite(diag) & (diag > ZERO_GRADIENT * top)


def _min_norm_two(g11: float, g12: float, g22: float) -> float:
    """Weight ``gamma`` of the first vector in the min-norm point of the segment [v1, v2]."""
    denom = g11 - 2.0 * g12 + g22
    if denom <= 1e-15 * max(g11 + g22, 1e-300):
        return 0.5  # identical vectors: every point of the segment is the same
    return float(np.clip((g22 - g12) / denom, 0.0, 1.0))


def simplex_qp(
    Q: np.ndarray, c: np.ndarray | None = None, w0: np.ndarray | None = None, *, max_iter: int = 250, tol: float = 1e-12
) -> np.ndarray:
    """``argmin_{w in simplex} w^T Q w / 2 + c^T w`` for a small positive semi-definite ``Q``.

    A primal active-set method (exact in finitely many steps): on the current support ``F``
    solve the equality-constrained problem ``[Q_FF 1; 1^T 0] [z; nu] = [-c_F; 1]`` (least
    squares, so a singular ``Q_FF`` is fine when ``c`` lies in the range of ``Q``, as it does
    for the min-norm and CAGrad problems); step towards ``z`` until a weight reaches zero
    (dropping it) or, at ``z``, add the coordinate whose multiplier is most negative; stop
    when none is. Started from ``w0`` (its support) or from the best vertex. Should the active
    set not certify optimality within ``max_iter`` changes, accelerated projected gradient
    (FISTA) from the best point found finishes the job.
    """
    Q = 0.5 * (Q + Q.T)
    n = Q.shape[0]
    c = np.zeros(n) if c is None else np.asarray(c, dtype=np.float64)

    def f(w):
        return 0.5 * float(w @ Q @ w) + float(c @ w)

    if w0 is None:
        w = np.zeros(n)
        w[int(np.argmin(0.5 * np.diag(Q) + c))] = 1.0
    else:
        w = np.maximum(np.asarray(w0, dtype=np.float64), 0.0)
        w /= w.sum()
    free = w > 0
    span = max(float(np.abs(Q).max()), float(np.abs(c).max()), 1e-300)
    for _ in range(max_iter):
        idx = np.nonzero(free)[0]
        m = idx.size
        kkt = np.zeros((m + 1, m + 1))
        kkt[:m, :m] = Q[np.ix_(idx, idx)]
        kkt[:m, m] = kkt[m, :m] = 1.0
        sol = np.linalg.lstsq(kkt, np.append(-c[idx], 1.0), rcond=1e-13)[0]
        z, nu = sol[:m], sol[m]
        if not np.all(np.isfinite(sol)):
            break
        if z.min() >= 0.0:
            w = np.zeros(n)
            w[idx] = z
            # KKT: (Q w + c)_i + nu = lambda_i >= 0 for the coordinates held at zero.
            multipliers = Q @ w + c + nu
            multipliers[idx] = np.inf
            j = int(np.argmin(multipliers))
            if multipliers[j] >= -1e-12 * span:
                return w
            free[j] = True
        else:
            # Move from w towards z until the first weight hits zero; drop it.
            current = w[idx]
            shrinking = z < current
            ratios = current[shrinking] / (current[shrinking] - z[shrinking])
            step = float(min(1.0, ratios.min()))
            w = np.zeros(n)
            w[idx] = current + step * (z - current)
            w[w <= 1e-15] = 0.0
            if not w.sum() > 0:
                break
            w /= w.sum()
            free = w > 0
    # Fallback (not expected for well-posed inputs): FISTA with adaptive restart.
    step = 1.0 / max(float(np.linalg.eigvalsh(Q)[-1]), 1e-300)
    w = w if np.all(np.isfinite(w)) and w.sum() > 0 else np.full(n, 1.0 / n)
    fw, y, t = f(w), w.copy(), 1.0
    for _ in range(50 * max_iter):
        w_new = project_simplex(y - step * (Q @ y + c))
        f_new = f(w_new)
        if f_new > fw:
            y, t = w.copy(), 1.0
            w_new = project_simplex(w - step * (Q @ w + c))
            f_new = f(w_new)
        done = np.abs(w_new - w).max() <= tol
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        y = w_new + ((t - 1.0) / t_new) * (w_new - w)
        w, fw, t = w_new, f_new, t_new
        if done:
            break
    return w


def min_norm_weights(gram: np.ndarray, *, max_iter: int = 250, tol: float = 1e-12) -> np.ndarray:
    """``argmin_{w in simplex} w^T G w``: the convex combination of the vectors with least norm.

    Exact for one and two vectors (the clipped line-search formula). Beyond: :func:`simplex_qp`
    started from the best vertex or pairwise min-norm point (Sener & Koltun's initialisation).
    """
    G = np.asarray(gram, dtype=np.float64)
    n = G.shape[0]
    if n == 1:
        return np.ones(1)
    if n == 2:
        gamma = _min_norm_two(G[0, 0], G[0, 1], G[1, 1])
        return np.array([gamma, 1.0 - gamma])
    scale = np.trace(G) / n
    if not scale > 0:
        return np.full(n, 1.0 / n)
    G = 0.5 * (G + G.T) / scale
    best, best_value = np.full(n, 1.0 / n), float(np.full(n, 1.0 / n) @ G @ np.full(n, 1.0 / n))
    for i in range(n):
        for j in range(i + 1, n):
            gamma = _min_norm_two(G[i, i], G[i, j], G[j, j])
            cand = np.zeros(n)
            cand[i], cand[j] = gamma, 1.0 - gamma
            value = float(cand @ G @ cand)
            if value < best_value:
                best, best_value = cand, value
    return simplex_qp(G, None, best, max_iter=max_iter, tol=tol)


def conflict_averse_weights(
    gram: np.ndarray, b: np.ndarray, s: float, *, max_iter: int = 100, tol: float = 1e-10
) -> np.ndarray:
    """``argmin_{w in simplex} w^T b + s sqrt(w^T G w)`` (CAGrad's dual, ``b = G_full 1 / T``).

    Two tasks: closed form (the stationary point of a convex function of one variable,
    clipped to [0, 1]). More: ``sqrt(q) = min_{r > 0} (q / r + r) / 2`` turns the problem into
    ``min_{r > 0} phi(r)`` with ``phi(r) = min_w b^T w + s (w^T G w / r + r) / 2``, convex in
    ``r``, whose inner problem is a quadratic program on the simplex (:func:`simplex_qp`) and
    whose derivative has the sign of ``r - ||g_w(r)||``: a safeguarded secant (Illinois)
    search on that sign finds ``r* = ||g_w*||`` and with it ``w*``, to ``tol`` times the
    largest gradient norm (which also covers the non-differentiable case where the optimal
    combination vanishes, ``r* = 0``). ``s = 0``
    leaves the weights irrelevant; the barycentre is returned.
    """
    G = np.asarray(gram, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n = G.shape[0]
    if n == 1:
        return np.ones(1)
    scale = np.trace(G) / n
    if not scale > 0:
        return np.full(n, 1.0 / n)
    # F(kG, kb, sqrt(k)s) = k F(G, b, s): solve the well-scaled problem.
    G = 0.5 * (G + G.T) / scale
    b = b / scale
    s = s / math.sqrt(scale)
    if not s > 0:
        return np.full(n, 1.0 / n)  # the dual weights play no part when c = 0
    if n == 2:
        return _conflict_averse_two(G, b, s)

    def inner(r, w0):
        w = simplex_qp((s / r) * G, b, w0)
        return w, r - math.sqrt(max(float(w @ G @ w), 0.0))

    hi = top = math.sqrt(float(np.diag(G).max()))  # ||g_w|| <= the largest norm, so psi(hi) >= 0
    w_hi, psi_hi = inner(hi, None)
    if psi_hi <= tol * top:
        return w_hi
    lo, psi_lo = 0.0, -math.sqrt(max(float(w_hi @ G @ w_hi), 0.0))  # psi(0+) <= 0
    side = 0
    w = w_hi
    for _ in range(max_iter):
        r = (lo * psi_hi - hi * psi_lo) / (psi_hi - psi_lo)  # secant point of the bracket
        if not lo < r < hi:
            r = 0.5 * (lo + hi)
        w, psi = inner(r, w)
        if abs(psi) <= tol * top or hi - lo <= tol * top:
            break
        if psi > 0:
            hi, psi_hi = r, psi
            if side == 1:
                psi_lo *= 0.5  # Illinois: keep the stale end from stalling the secant
            side = 1
        else:
            lo, psi_lo = r, psi
            if side == -1:
                psi_hi *= 0.5
            side = -1
    return w


def _conflict_averse_two(G: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    # w = (p, 1 - p): g_w = g_2 + p (g_1 - g_2), ||g_w||^2 = A p^2 + 2 B p + C,
    # F(p) = beta p + const + s sqrt(A p^2 + 2 B p + C),
    # F'(p) = beta + s (A p + B) / ||g_w||.
    A = G[0, 0] - 2.0 * G[0, 1] + G[1, 1]
    B = G[0, 1] - G[1, 1]
    C = G[1, 1]
    beta = b[0] - b[1]
    if A <= 1e-15 * (G[0, 0] + G[1, 1]):
        return np.array([0.5, 0.5])  # g_1 == g_2: F is constant
    k = -beta / s  # the stationary point solves (A p + B) / ||g_w|| = k, |k| < sqrt(A)
    if k * k >= A:
        p = 1.0 if k > 0 else 0.0  # F is monotone on [0, 1]
    else:
        D = max(A * C - B * B, 0.0)  # ||g_w||^2 = ((A p + B)^2 + D) / A
        y = k * math.sqrt(D / (A - k * k))
        p = float(np.clip((y - B) / A, 0.0, 1.0))
    return np.array([p, 1.0 - p])


# --------------------------------------------------------------------------------------
# the common step
# --------------------------------------------------------------------------------------
def mean_pairwise_cosine(gram: torch.Tensor) -> torch.Tensor:
    """Mean cosine over the pairs ``i < j`` of the vectors whose Gram matrix is ``gram`` (on device)."""
    n = gram.shape[0]
    gram = gram.detach()
    if n < 2:
        return gram.new_ones(())
    norms = gram.diagonal().clamp_min(0).sqrt()
    cos = gram / (norms[:, None] * norms[None, :]).clamp_min(torch.finfo(gram.dtype).tiny)
    return (cos.sum() - cos.diagonal().sum()) / (n * (n - 1))


def gram_to_numpy(gram: torch.Tensor, *extra: torch.Tensor) -> tuple[np.ndarray, ...]:
    """``gram`` (and small extra vectors) on the host in float64, in one transfer."""
    n = gram.shape[0]
    flat = torch.cat([gram.detach().reshape(-1)] + [e.detach().reshape(-1).to(gram.dtype) for e in extra])
    host = flat.to("cpu", torch.float64).numpy()
    out, offset = [host[: n * n].reshape(n, n)], n * n
    for e in extra:
        out.append(host[offset : offset + e.numel()])
        offset += e.numel()
    return tuple(out)


class GradientCombination(MultiTaskOptimizer):
    """Base of the methods that combine the per-task gradients of the shared parameters.

    Subclasses implement :meth:`_combine` and declare ``_parameter_constraints``; the class
    attribute ``_weights_scale_private`` says whether a task's private parameters get the
    method's coefficient for that task (True) or only the user's task weight (False).
    """

    _weights_scale_private = True

    def create_state(self, model, n_tasks):
        return None  # no state by default

    def _combine(
        self, grads: torch.Tensor, gram: torch.Tensor, losses: torch.Tensor | None, state
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``(direction (P,), coefficients (T,), extra diagnostics)`` from the ``(T, P)`` gradients."""
        raise NotImplementedError

    def combine(self, grads: torch.Tensor, losses: torch.Tensor | None = None, state=None):
        """Combine a ``(T, P)`` matrix of task gradients into one update direction.

        Parameters
        ----------
        grads : Tensor of shape (n_tasks, n_values)
            Row ``k`` is task ``k``'s gradient (already multiplied by any task weight).
        losses : Tensor of shape (n_tasks,), optional
            The task losses (only for methods or options that read them).
        state : nn.Module, optional
            The method's state (:meth:`create_state`); a fresh one when omitted.

        Returns
        -------
        direction : Tensor of shape (n_values,)
            The combined gradient (what a descent step subtracts).
        coefficients : Tensor of shape (n_tasks,)
            ``direction == coefficients @ grads`` for the methods that combine the task
            gradients linearly (all but GradDrop, whose ``coefficients`` are the share of each
            task's gradient it kept, and DB-MTL, which combines running averages; see their
            class docstrings).
        """
        self.check_parameters()  # a standalone call: no fit checked them
        grads = grads.detach()
        if state is None:
            state = self.create_state(None, grads.shape[0])
        direction, coefficients, _ = self._combine(grads, grads @ grads.T, losses, state)
        return direction, coefficients

    def backward(self, task_losses: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        raw, private, shared = ctx.task_gradients(task_losses)
        task_weights = ctx.task_weights.to(device=raw.device, dtype=raw.dtype)
        grads = raw * task_weights[:, None]
        gram = grads @ grads.T
        losses = task_losses.detach().to(raw.dtype) * task_weights
        direction, coefficients, extra = self._combine(grads, gram, losses, ctx.state)
        scales = coefficients * task_weights if self._weights_scale_private else task_weights
        ctx.write_gradients(shared, direction, private, scales)
        return {"weights": coefficients.detach(), "cosine": mean_pairwise_cosine(gram), **extra}
