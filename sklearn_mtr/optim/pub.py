"""PUB: Parameter Update Balancing (Yuan, Cai & Dong, ICDM 2024, arXiv 2410.05806)."""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch

from ._base import MultiTaskOptimizer, StepContext
from ._grads import task_gradients
from ._nash import solve_nash_weights

_NORMALIZATIONS = ("sum_to_one", "sum_to_T", "none")
# Key of PUB's own entry in the torch optimizer's ``state`` (next to the per-parameter
# entries); ``Optimizer.state_dict`` / ``load_state_dict`` keep non-parameter keys as they are.
_KEY = "pub"


class PUB(MultiTaskOptimizer):
    """Parameter Update Balancing: a Nash-bargaining combination of per-task Adam updates.

    Gradient-balancing methods (MGDA, Nash-MTL, ...) choose the best joint *gradient* on the
    shared parameters and hand it to Adam, whose momentum and per-coordinate scaling then
    change it. PUB balances the *updates* Adam would apply instead. At each step, for every
    task ``t`` it forms the update Adam would make if it saw that task's gradient ``g_t`` alone
    on top of the common history (a virtual one-step look-ahead; only one pair of moments is
    stored, as in plain Adam)::

        m_t = b1 m + (1 - b1) g_t          v_t = b2 v + (1 - b2) g_t**2
        u_t = (m_t / (1 - b1**s)) / (sqrt(v_t / (1 - b2**s)) + eps)

    and moves the shared parameters by ``-lr * sum_t w_t u_t``. The weights come from the Nash
    bargaining condition ``G alpha = 1 / alpha`` on the Gram matrix ``G = [u_i . u_j]``
    (each task's gain ``u_t . d`` from the joint update ``d = sum alpha_t u_t`` is ``1 / alpha_t``:
    the Pareto-optimal bargaining point), ``w = normalise(task_weights * alpha)``. The stored
    moments are then advanced with ``sum_t w_t g_t``. Task-private parameters (towers, task
    gates) get a plain Adam step on their own task's gradient times its ``task_weights``.

    Parameters
    ----------
    refresh_every : int, default=10
        Steps between two solves for ``alpha``; the weights are kept in between. The first
        solve happens at the second step (the first step's look-ahead has no history yet and
        uses uniform weights), then every ``refresh_every`` steps (steps 2, 12, 22, ... by
        default; every step from the second when 1).
    normalization : {"sum_to_one", "sum_to_T", "none"}, default="sum_to_one"
        Scale of the weights applied to the updates.

        - ``"sum_to_one"``: ``w / sum(w)``. The shared step is a convex combination of
          per-task Adam steps, the same size as a plain Adam step with the same ``lr``; the
          moments advance with a convex combination of the task gradients, and coordinates
          that no task's loss reaches get exactly Adam's momentum update.
        - ``"sum_to_T"``: ``T * w / sum(w)``: ``T`` times larger (equal weights of 1 when the
          solver fails, which is what the released code runs; see Notes).
        - ``"none"``: the raw Nash weights. The joint update then has norm ``sqrt(T)`` whatever
          the size of the ``u_t`` (whose norm is about the square root of the number of shared
          values), so the step is orders of magnitude smaller than Adam's and needs a much
          larger ``lr``. Weights are 1 until the first solve.
    betas : tuple of float, default=(0.9, 0.999)
        Adam's moment decay rates.
    eps : float, default=1e-8
        Adam's denominator term.

    Notes
    -----
    ``lr`` and ``weight_decay`` are the estimator's. Weight decay is decoupled (as in AdamW)
    and applied once per step to every parameter. With one task, or with identical task
    gradients and equal ``task_weights``, PUB with ``normalization="sum_to_one"`` is AdamW. The training history records, averaged per epoch,
    ``optim_weights`` (the applied weights ``w``, shape ``(T,)``), ``optim_update_norm``
    (``||u_t||``) and ``optim_update_cosine`` (the cosines between the tasks' updates, pairs
    ``(0, 1), (0, 2), ..., (1, 2), ...``) from the latest Gram matrix (computed at the
    first step and at every refresh).

    Cost per step: one forward pass and ``T`` backward passes (``torch.autograd.grad`` on the
    shared and the task's own parameters, graph kept), elementwise work on a ``(T, P)`` matrix
    for ``P`` shared values, and at a refresh a ``T x T`` Gram matrix whose solve runs on the
    CPU (one small host transfer; closed form for two tasks, damped Newton beyond; see
    :func:`sklearn_mtr.optim._nash.solve_nash_weights`). Memory: two ``(T, P)`` matrices
    beyond plain Adam.

    Readings taken where the paper (whose body text was not available to us) and its released
    code (github.com/yjdy/Multitask-Optimization-Recommendation-Library) leave a choice, and
    deviations from that code:

    - Per-task moments are the virtual look-ahead above with one shared pair of moments (the
      released code's choice), not persistent per-task moments.
    - Weights: the released code calls a solver that does not exist (``cp.QSOP``); the error
      is swallowed and the weights stay 1 for the whole run, so its effective method is
      ``normalization="sum_to_T"`` without solves. We solve the Nash system exactly (closed
      form ``alpha_i = 1 / (||u_i|| sqrt(1 + cos))`` for two tasks, Newton beyond) instead of
      its concave-convex procedure through cvxpy, which reaches the same point
      (no cvxpy dependency, sub-millisecond solves).
    - Scale: the code multiplies Adam-normalised updates by ``alpha``; a working solver would
      shrink the step by about ``1 / ||u||`` (``||d|| = sqrt(T)`` at the solution). The default
      ``"sum_to_one"`` keeps Adam's step size; the other scales are options.
    - ``task_weights`` (the estimator's) multiply ``alpha`` before normalisation (under
      the normalised modes only their ratios matter for the shared parameters); the task
      gradients themselves are unweighted, so the weights are not undone by the balancing.
    - The Gram matrix is built from the shared parameters only (the code also includes each
      task's own tower in its row, inflating the diagonal); ``alpha`` applies to every shared
      parameter.
    - ``T`` backward passes per step, not ``T + 1``: the towers' gradients come from the same
      passes (tower ``k`` only depends on ``L_k``), and the refresh reuses them instead of
      computing the per-task gradients a second time. The code's towers get the gradient of
      the unweighted loss sum, which is the same thing.
    - Weight decay is applied once per step (the code applies it once per task on shared
      parameters).
    - The look-ahead of a refresh uses the bias corrections of the step being taken (the code
      uses the previous step's); the first solve is at the second step (the code's first is
      at the second step too, steps 2, 12, 22, ...).
    - When the solve fails (a task without an update, two opposite updates, no positive
      solution) the previous weights are kept.
    - An architecture's auxiliary loss (load balancing, ...) is added to every task's loss
      before the per-task passes, so with weights summing to one the shared parameters see
      it exactly once; the task-private parameters see ``task_weights[k]`` times it.
    - The shared parameters' ``.grad`` holds ``sum_t w_t g_t`` after :meth:`backward`, the
      gradient that advances the moments (the update direction is built from the per-task
      look-aheads, not from ``.grad``).

    State (moments, step counts, ``alpha``, the latest solve's Gram statistics) lives in the
    torch optimizer (:class:`PUBAdam`), so it survives pickling and ``partial_fit``.

    References
    ----------
    J. Yuan, G. Cai, Z. Dong. "A Parameter Update Balancing Algorithm for Multi-task Ranking
    Models in Recommendation Systems". ICDM 2024. arXiv:2410.05806.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.pub import PUB
    >>> X, Y = make_multitask_classification(n_samples=200, random_state=0)[:2]
    >>> clf = MMoEClassifier(optimizer=PUB(refresh_every=5), n_experts=2, expert_hidden_sizes=(16,),
    ...                      max_epochs=2, random_state=0).fit(X, Y)
    >>> len(clf.history_[-1, "optim_weights"]) == Y.shape[1]
    True
    """

    def __init__(self, refresh_every=10, normalization="sum_to_one", betas=(0.9, 0.999), eps=1e-8):
        self.refresh_every = refresh_every
        self.normalization = normalization
        self.betas = betas
        self.eps = eps

    def _validate(self) -> None:
        if (
            not isinstance(self.refresh_every, Integral)
            or isinstance(self.refresh_every, bool)
            or self.refresh_every < 1
        ):
            raise ValueError(f"PUB: refresh_every must be an integer >= 1, got {self.refresh_every!r}.")
        if self.normalization not in _NORMALIZATIONS:
            raise ValueError(f"PUB: normalization must be one of {_NORMALIZATIONS}, got {self.normalization!r}.")
        betas = tuple(self.betas) if isinstance(self.betas, (tuple, list)) else ()
        if len(betas) != 2 or not all(isinstance(b, Real) and 0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"PUB: betas must be two numbers in [0, 1), got {self.betas!r}.")
        if not isinstance(self.eps, Real) or not self.eps >= 0.0:
            raise ValueError(f"PUB: eps must be a non-negative number, got {self.eps!r}.")

    def create_optimizer(self, model, state, *, lr: float, weight_decay: float) -> PUBAdam:
        self._validate()
        if not (hasattr(model, "shared_parameters") and hasattr(model, "task_parameters")):
            raise TypeError("PUB needs a multi-task module with shared_parameters() and task_parameters(k).")
        n_tasks = int(model.n_tasks)
        shared = list(model.shared_parameters())
        seen = {id(p) for p in shared}
        private = []
        for k in range(n_tasks):
            own = [p for p in model.task_parameters(k) if id(p) not in seen]
            seen.update(id(p) for p in own)
            private.append(own)
        extra = [] if state is None else [p for p in state.parameters() if p.requires_grad and id(p) not in seen]
        return PUBAdam(
            shared,
            private,
            extra,
            n_tasks=n_tasks,
            lr=lr,
            betas=tuple(float(b) for b in self.betas),
            eps=float(self.eps),
            weight_decay=weight_decay,
            refresh_every=int(self.refresh_every),
            normalization=self.normalization,
        )

    def backward(self, task_losses: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        optimizer = ctx.optimizer
        if not isinstance(optimizer, PUBAdam):
            raise TypeError(
                f"PUB drives its own torch optimizer (PUBAdam, from PUB.create_optimizer); got {type(optimizer).__name__}."
            )
        losses = task_losses if ctx.aux_loss is None else task_losses + ctx.aux_loss
        grads, private, shared = task_gradients(losses, ctx)
        diagnostics = optimizer.prepare(shared, grads, ctx.task_weights)
        optimizer.set_task_gradients(private, ctx.task_weights, ctx.model)
        return diagnostics

    def step(self, ctx: StepContext) -> None:
        ctx.optimizer.step()


class PUBAdam(torch.optim.Optimizer):
    """The torch optimizer behind :class:`PUB` (built by ``PUB.create_optimizer``).

    Parameter groups: ``role="shared"`` gets PUB's balanced update from the per-task
    gradients handed to :meth:`prepare`; ``role="task"`` (one group per task, key ``task``)
    and ``role="extra"`` get a plain AdamW step on ``.grad``. Per-parameter state as in
    ``torch.optim.AdamW`` (``step``, ``exp_avg``, ``exp_avg_sq``); ``state["pub"]`` holds the
    method's own state: ``alpha`` (raw Nash weights of the latest successful solve),
    ``update_norm`` / ``update_cosine`` (of the latest Gram matrix), the counts ``n_solves`` /
    ``n_failed`` and the settings ``n_tasks``, ``refresh_every``, ``normalization``.

    Call order per step: :meth:`prepare` (after the per-task backward passes, before the
    parameters change), then :meth:`step`.
    """

    def __init__(
        self,
        shared,
        private,
        extra=(),
        *,
        n_tasks: int,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        refresh_every: int = 10,
        normalization: str = "sum_to_one",
    ):
        if normalization not in _NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}.")
        shared, private, extra = list(shared), [list(ps) for ps in private], list(extra)
        if len(private) != n_tasks:
            raise ValueError(f"expected one list of private parameters per task ({n_tasks}), got {len(private)}.")
        groups = [{"params": shared, "role": "shared"}]
        groups += [{"params": ps, "role": "task", "task": k} for k, ps in enumerate(private) if ps]
        if extra:
            groups.append({"params": extra, "role": "extra"})
        super().__init__(groups, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})
        device = shared[0].device if shared else torch.device("cpu")
        n_pairs = n_tasks * (n_tasks - 1) // 2
        self.state[_KEY] = {
            "n_tasks": int(n_tasks),
            "refresh_every": int(refresh_every),
            "normalization": normalization,
            "alpha": torch.ones(n_tasks, device=device),
            "update_norm": torch.zeros(n_tasks, device=device),
            "update_cosine": torch.zeros(n_pairs, device=device),
            "n_solves": 0,
            "n_failed": 0,
        }
        self._pending = None

    # -- helpers -------------------------------------------------------------------------
    def _group(self, role: str) -> dict | None:
        for group in self.param_groups:
            if group.get("role") == role:
                return group
        return None

    def _param_state(self, p: torch.Tensor) -> dict:
        st = self.state[p]
        if not st:
            st["step"] = torch.tensor(0.0)
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return st

    def _buffer(self, name: str, shape: tuple, like: torch.Tensor) -> torch.Tensor:
        """A work buffer reused from step to step (not part of the state; not pickled)."""
        work = self.__dict__.setdefault("_workspace", {})
        buf = work.get(name)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = work[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buf

    def _normalise(self, alpha: torch.Tensor, task_weights: torch.Tensor | None) -> torch.Tensor:
        weights = alpha if task_weights is None else alpha * task_weights.to(alpha)
        mode = self.state[_KEY]["normalization"]
        if mode == "none":
            return weights
        total = weights.sum().clamp_min(torch.finfo(weights.dtype).tiny)
        scale = 1.0 if mode == "sum_to_one" else float(self.state[_KEY]["n_tasks"])
        return weights * (scale / total)

    def _is_refresh(self, step: int) -> bool:
        k = self.state[_KEY]["refresh_every"]
        return step >= 2 and (step - 2) % k == 0

    # -- the two phases of a step --------------------------------------------------------
    @torch.no_grad()
    def prepare(
        self,
        shared: list[torch.Tensor],
        grads: torch.Tensor,
        task_weights: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Take the per-task gradients ``(T, P)`` on the shared parameters (flattened in the
        order of ``shared``, which must be this optimizer's shared group), refresh ``alpha``
        when due, write ``sum_t w_t g_t`` into the shared ``.grad`` and return diagnostics."""
        group = self._group("shared")
        params = group["params"]
        pub = self.state[_KEY]
        n_tasks = pub["n_tasks"]
        if len(shared) != len(params) or any(a is not b for a, b in zip(shared, params)):
            raise ValueError("PUBAdam.prepare: the shared parameters differ from the optimizer's shared group.")
        if grads.ndim != 2 or grads.shape[0] != n_tasks:
            raise ValueError(
                f"PUBAdam.prepare: expected per-task gradients of shape ({n_tasks}, P), got {tuple(grads.shape)}."
            )
        device = grads.device
        for key in ("alpha", "update_norm", "update_cosine"):
            if pub[key].device != device:
                pub[key] = pub[key].to(device)

        states = [self._param_state(p) for p in params]
        step = int(states[0]["step"].item()) + 1 if states else 1
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        bc1 = 1.0 - beta1**step
        bc2_sqrt = math.sqrt(1.0 - beta2**step)
        n_tasks_, n_values = grads.shape
        exp_avg = self._buffer("exp_avg", (n_values,), grads)
        exp_avg_sq = self._buffer("exp_avg_sq", (n_values,), grads)
        torch.cat([st["exp_avg"].reshape(-1) for st in states], out=exp_avg)
        torch.cat([st["exp_avg_sq"].reshape(-1) for st in states], out=exp_avg_sq)

        # Per-task look-ahead Adam updates u_t, rows of a (T, P) matrix:
        # u_t = c (b1 m + (1 - b1) g_t) / (sqrt(b2 v + (1 - b2) g_t^2) + eps sqrt(bc2)),
        # c = sqrt(bc2) / bc1: four passes over (T, P) buffers that are reused between steps.
        c = bc2_sqrt / bc1
        updates = self._buffer("updates", (n_tasks_, n_values), grads)
        denom = self._buffer("denom", (n_tasks_, n_values), grads)
        torch.add(exp_avg.mul(beta1 * c), grads, alpha=(1.0 - beta1) * c, out=updates)
        torch.addcmul(exp_avg_sq.mul(beta2), grads, grads, value=1.0 - beta2, out=denom).sqrt_().add_(eps * bc2_sqrt)
        updates.div_(denom)

        if step == 1 or self._is_refresh(step):
            self._refresh(updates, solve=step >= 2)
        weights = self._normalise(pub["alpha"], task_weights)
        joint = weights @ grads
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = joint[offset : offset + n].view_as(p)
            offset += n
        self._pending = {
            "step": step,
            "updates": updates,
            "joint": joint,
            "weights": weights,
            "exp_avg": exp_avg,
            "exp_avg_sq": exp_avg_sq,
        }
        diagnostics = {"weights": weights.detach(), "update_norm": pub["update_norm"]}
        if n_tasks > 1:
            diagnostics["update_cosine"] = pub["update_cosine"]
        return diagnostics

    def _refresh(self, updates: torch.Tensor, solve: bool) -> None:
        pub = self.state[_KEY]
        n_tasks = updates.shape[0]
        device = updates.device
        gram = updates @ updates.T
        # One device -> host transfer: the Gram matrix and the warm start.
        host = torch.cat([gram.reshape(-1), pub["alpha"].to(gram.dtype)]).to("cpu", torch.float64)
        gram_h, alpha_h = host[: n_tasks * n_tasks].view(n_tasks, n_tasks), host[n_tasks * n_tasks :]
        norms = gram_h.diagonal().clamp_min(0.0).sqrt()
        cos = gram_h / (norms[:, None] * norms[None, :]).clamp_min(torch.finfo(torch.float64).tiny)
        rows, cols = torch.triu_indices(n_tasks, n_tasks, offset=1)
        out = [norms, cos[rows, cols]]
        if solve:
            alpha, ok = solve_nash_weights(gram_h, alpha_h)
            pub["n_solves"] += 1
            if not ok:
                pub["n_failed"] += 1
            out.append(alpha_h if not ok else alpha)
        # One host -> device transfer back.
        back = torch.cat(out).to(device=device, dtype=pub["alpha"].dtype)
        pub["update_norm"] = back[:n_tasks]
        pub["update_cosine"] = back[n_tasks : n_tasks + len(rows)]
        if solve:
            pub["alpha"] = back[n_tasks + len(rows) :]

    @torch.no_grad()
    def set_task_gradients(self, private_grads, task_weights: torch.Tensor, model=None) -> None:
        """Set ``.grad`` of task ``k``'s private parameters to ``task_weights[k]`` times
        ``private_grads[k]`` (gradients in the order of ``model.task_parameters(k)``)."""
        groups = {g["task"]: g["params"] for g in self.param_groups if g.get("role") == "task"}
        for k, task_grads in enumerate(private_grads):
            params = groups.get(k, [])
            if len(params) != len(task_grads):  # a parameter listed by several tasks
                params = model.task_parameters(k)
            pairs = [(p, g) for p, g in zip(params, task_grads) if g is not None]
            for p, g in zip(params, task_grads):
                if g is None:
                    p.grad = None
            if pairs:
                scaled = torch._foreach_mul([g for _, g in pairs], task_weights[k])
                for (p, _), g in zip(pairs, scaled):
                    p.grad = g

    @torch.no_grad()
    def step(self, closure=None):
        """Apply the update prepared by :meth:`prepare` (shared) and AdamW (private)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        others = {}
        for group in self.param_groups:
            if group.get("role") == "shared":
                self._step_shared(group)
            else:  # one AdamW call for all groups with the same settings
                key = (group["lr"], tuple(group["betas"]), group["eps"], group["weight_decay"])
                others.setdefault(key, []).extend(group["params"])
        for (lr, betas, eps, weight_decay), params in others.items():
            self._adamw(params, lr, betas, eps, weight_decay)
        return loss

    def _step_shared(self, group: dict) -> None:
        pending = getattr(self, "_pending", None)
        if pending is None:
            raise RuntimeError(
                "PUBAdam.step() needs the per-task gradients of the step: call prepare() first "
                "(sklearn_mtr.optim.PUB.backward does)."
            )
        self._pending = None
        params = group["params"]
        lr, wd = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        direction = pending["weights"] @ pending["updates"]
        joint = pending["joint"]
        exp_avg = pending["exp_avg"].mul_(beta1).add_(joint, alpha=1.0 - beta1)
        exp_avg_sq = pending["exp_avg_sq"].mul_(beta2).addcmul_(joint, joint, value=1.0 - beta2)
        states = [self.state[p] for p in params]
        sizes = [p.numel() for p in params]
        if wd != 0:
            torch._foreach_mul_(params, 1.0 - lr * wd)
        torch._foreach_add_(params, [d.view_as(p) for d, p in zip(direction.split(sizes), params)], alpha=-lr)
        torch._foreach_copy_(
            [st["exp_avg"] for st in states], [d.view_as(p) for d, p in zip(exp_avg.split(sizes), params)]
        )
        torch._foreach_copy_(
            [st["exp_avg_sq"] for st in states], [d.view_as(p) for d, p in zip(exp_avg_sq.split(sizes), params)]
        )
        for st in states:
            st["step"].fill_(pending["step"])

    def _adamw(self, all_params, lr, betas, eps, weight_decay) -> None:
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        for p in all_params:
            if p.grad is None:
                continue
            st = self._param_state(p)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(st["exp_avg"])
            exp_avg_sqs.append(st["exp_avg_sq"])
            steps.append(st["step"])
        if not params:
            return
        beta1, beta2 = betas
        torch._foreach_add_(steps, 1.0)
        if weight_decay != 0:
            torch._foreach_mul_(params, 1.0 - lr * weight_decay)
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
        counts = torch.stack(steps).tolist()  # CPU step counters: no device sync
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, [math.sqrt(1.0 - beta2**s) for s in counts])
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denom, [-lr / (1.0 - beta1**s) for s in counts])
