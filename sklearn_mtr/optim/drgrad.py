"""DRGrad: Direct Routing Gradient (Liu, Miao & Xia, AAAI 2025, arXiv 2510.09643)."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import ClassVar

import torch
from torch import nn

from .._constraints import InstanceOf, Interval, Options
from ._base import MultiTaskOptimizer, StepContext

_MODES = ("split", "tower", "released")
_PAIRINGS = ("consistent", "literal")
_MIXINGS = ("share", "mean", "cumulative")


# --------------------------------------------------------------------------------------
# the router (pure functions on flat gradient vectors)
# --------------------------------------------------------------------------------------
def _cosine(a: torch.Tensor, b: torch.Tensor, norm_a: torch.Tensor, norm_b: torch.Tensor) -> torch.Tensor:
    """Cosine of two vectors; 0 when one of them is zero."""
    tiny = torch.finfo(a.dtype).tiny
    return torch.dot(a, b) / (norm_a * norm_b).clamp_min(tiny)


def _scale(norm_a: torch.Tensor, norm_b: torch.Tensor, gamma: float) -> torch.Tensor:
    """``clip(||a|| / ||b||, 0, 1) ** gamma`` (1 for a zero ``b`` and non-zero ``a``, 0 for a zero ``a``)."""
    tiny = torch.finfo(norm_a.dtype).tiny
    return (norm_a / norm_b.clamp_min(tiny)).clamp(0.0, 1.0) ** gamma


def _ratio(norm_a: torch.Tensor, norm_b: torch.Tensor) -> torch.Tensor:
    """Unclipped ``||a|| / ||b||`` for the diagnostics; 0 when ``b`` is zero."""
    return torch.where(norm_b > 0, norm_a / norm_b.clamp_min(torch.finfo(norm_b.dtype).tiny), torch.zeros_like(norm_a))


def route_coefficients(
    g_primary: torch.Tensor,
    g_split: torch.Tensor,
    g_aux: torch.Tensor,
    *,
    gamma: float = 1.0,
    pairing: str = "consistent",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """DRGrad's router on the flat tower gradients ``g1'``, ``g1''`` and ``g_aux``.

    Returns ``(a_split, a_aux, c_split, info)`` such that the routed gradients are::

        g_R1'  = a_split * g1'' + a_aux * g_aux        (added to T1''s gradient)
        g_R1'' = c_split * g1''                        (added to T1'''s gradient)

    With ``xi_s = cos(g1', g1'')``, ``xi_a = cos(g1', g_aux)`` and
    ``rho(a, b) = clip(||a|| / ||b||, 0, 1) ** gamma``:

    - ``"consistent"``: each routed gradient is gated by its own cosine with ``g1'`` and
      scaled by its own norm ratio: ``a_split = (1 - min(xi_s, 0)) rho(g1', g1'')``,
      ``a_aux = 1[xi_a >= 0] rho(g1', g_aux)``;
    - ``"literal"``: the paper's Eqs. 1-3 as printed: ``a_split = (1 - min(xi_a, 0))
      rho(g1', g_aux)``, ``a_aux = 1[xi_s >= 0] rho(g1', g1'')``;

    and in both ``c_split = -min(xi_a xi_s, 0)``. ``info`` holds the two cosines and the
    unclipped norm ratios ``||g1'|| / ||g_aux||``, ``||g1'|| / ||g1''||``.
    """
    n1, ns, na = g_primary.norm(), g_split.norm(), g_aux.norm()
    xi_s = _cosine(g_primary, g_split, n1, ns)
    xi_a = _cosine(g_primary, g_aux, n1, na)
    rho_s, rho_a = _scale(n1, ns, gamma), _scale(n1, na, gamma)
    if pairing == "consistent":
        a_split = (1.0 - xi_s.clamp(max=0.0)) * rho_s
        a_aux = (xi_a >= 0).to(xi_a.dtype) * rho_a
    elif pairing == "literal":
        a_split = (1.0 - xi_a.clamp(max=0.0)) * rho_a
        a_aux = (xi_s >= 0).to(xi_s.dtype) * rho_s
    else:
        raise ValueError(f"pairing must be one of {list(_PAIRINGS)}, got {pairing!r}.")
    c_split = -(xi_a * xi_s).clamp(max=0.0)
    info = {
        "cosine_primary_aux": xi_a,
        "cosine_primary_split": xi_s,
        "norm_ratio_aux": _ratio(n1, na),
        "norm_ratio_split": _ratio(n1, ns),
    }
    return a_split, a_aux, c_split, info


def tower_route_coefficient(g_own: torch.Tensor, g_other: torch.Tensor, *, gamma: float = 1.0) -> torch.Tensor:
    """Coefficient of ``g_other`` added to a tower whose own gradient is ``g_own``:
    ``1[cos(g_own, g_other) >= 0] clip(||g_own|| / ||g_other||, 0, 1) ** gamma``."""
    n_own, n_other = g_own.norm(), g_other.norm()
    gate = (_cosine(g_own, g_other, n_own, n_other) >= 0).to(g_own.dtype)
    return gate * _scale(n_own, n_other, gamma)


def released_route_coefficient(
    g_own: torch.Tensor, g_other: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The released code's rule: coefficient of ``g_other`` added to ``g_own`` (first kernels).

    The released code normalises each kernel gradient along an axis of length one (it wraps
    the flattened gradient in a one-element list), so every entry becomes its own sign
    (``x / (|x| + 1e-8)``). Its "cosine" is then the mean sign agreement
    ``s = mean(sign(g_own) sign(g_other))`` and its weight
    ``w = mean(clip(sign(g_own) / sign(g_other), 0.1, 5))`` (0 where ``g_other`` is 0, before
    the clip), i.e. ``0.1 + 0.9 x`` (fraction of same-sign entries) for non-zero gradients.
    The coefficient is ``w (1 - min(s, 0))``: the other head's gradient is always added,
    amplified when the signs disagree on average. Returns ``(coefficient, s, w)``.
    """
    a = g_own / (g_own.abs() + 1e-8)
    b = g_other / (g_other.abs() + 1e-8)
    s = (a * b).mean()
    ratio = torch.where(b != 0, a / torch.where(b != 0, b, torch.ones_like(b)), torch.zeros_like(a))
    w = ratio.clamp(0.1, 5.0).mean()
    return w * (1.0 - s.clamp(max=0.0)), s, w


# --------------------------------------------------------------------------------------
# flat gradients of a tower
# --------------------------------------------------------------------------------------
def _params(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def _flat_grad(params: list[nn.Parameter]) -> torch.Tensor:
    return torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in params])


def _write_grad(params: list[nn.Parameter], flat: torch.Tensor) -> None:
    """``.grad`` of ``params`` as views into ``flat`` (a fresh tensor the caller no longer writes)."""
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad = g.view_as(p)


def _first_linear(module: nn.Module) -> nn.Linear:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            return m
    raise ValueError(f"DRGrad: the tower {type(module).__name__} has no nn.Linear layer.")


# --------------------------------------------------------------------------------------
# the updater of the split primary tower's mixing weights
# --------------------------------------------------------------------------------------
@torch.no_grad()
def update_mixing(model: nn.Module, norms: torch.Tensor, *, rule: str = "share", temperature: float = 1.0) -> None:
    """Add the routed gradient norms ``(||g1'+g_R1'||, ||g1''+g_R1''||)`` to the split primary
    tower's ``sigma`` and recompute its ``mixing``: ``softmax(log(sigma / n) / temperature)``
    (``"share"``: the mean norms' shares, scale-free; kept while both sums are 0),
    ``softmax(sigma / (n temperature))`` (``"mean"``) or ``softmax(sigma / temperature)``
    (``"cumulative"``), ``n`` updates so far. ``model`` holds the three buffers ``mixing``,
    ``sigma`` and ``n_updates`` (:class:`sklearn_mtr.models.SplitPrimaryTower`)."""
    sigma, mixing = model.sigma, model.mixing
    sigma.add_(norms.to(sigma.dtype))  # in place: no Module.__setattr__ per step
    model.n_updates.add_(1)
    if rule == "share":
        # softmax(log x / T) = x^(1/T) / sum x^(1/T); torch.where: no host sync.
        powered = (sigma / sigma.max().clamp_min(torch.finfo(sigma.dtype).tiny)) ** (1.0 / temperature)
        total = powered.sum()
        mixing.copy_(torch.where(total > 0, powered / total.clamp_min(torch.finfo(total.dtype).tiny), mixing))
        return
    s = sigma if rule == "cumulative" else sigma / model.n_updates
    mixing.copy_(torch.softmax(s / temperature, dim=0))


# --------------------------------------------------------------------------------------
# the method
# --------------------------------------------------------------------------------------
class DRGrad(MultiTaskOptimizer):
    """Direct Routing Gradient: route cooperating tower gradients into the primary task.

    Liu, Miao & Xia, "Direct Routing Gradient (DRGrad): A Personalized Information Surgery
    for Multi-Task Learning (MTL) Recommendations", AAAI 2025 (arXiv 2510.09643).

    One task is *primary* (``primary_task``). In the paper's ``"split"`` mode its tower is
    split in two same-shaped sub-towers with the same label: ``T1'`` on the primary task's own
    tower input ``v1`` (the backbone's tower) and ``T1''`` on the shared representation
    ``v_s`` that the auxiliary towers read. The primary logit is
    ``mu' T1'(v1) + mu'' T1''(v_s)``. Each step runs **one** forward and **one** backward
    pass of ``sum_k w_k L_k`` (``w`` = the estimator's ``task_weights``, plus the
    architecture's auxiliary loss); then the **router** adds cooperating gradients to the
    two sub-towers (flattened over all their weights and biases, one vector per tower)::

        xi_s = cos(g1', g1'')      xi_a = cos(g1', g_aux)
        rho(a, b) = clip(||a|| / ||b||, 0, 1) ** gamma
        g_R1'  = (1 - min(xi_s, 0)) rho(g1', g1'') g1''  +  1[xi_a >= 0] rho(g1', g_aux) g_aux
        g_R1'' = -min(xi_a xi_s, 0) g1''

    (``pairing="consistent"``; see below for the paper's printed pairing), the towers'
    gradients are replaced by ``g + g_R`` and the torch optimizer (AdamW) steps; all other
    gradients are those of the backward pass. The **updater** then adds the routed norms
    ``||g1' + g_R1'||``, ``||g1'' + g_R1''||`` to ``sigma' , sigma''`` and recomputes
    ``(mu', mu'')`` from them (``mixing``; ``mu`` starts at ``(mixing_init, 1 - mixing_init)``
    and is not trained by gradient descent). ``mu`` and ``sigma`` are buffers of the trained
    module, so they survive pickling and ``partial_fit``.

    Two modes change no architecture and work on any backbone whose towers have identical
    parameter shapes. ``"tower"`` routes with the paper's gate and scale between whole
    towers: the primary tower receives ``1[cos(g_p, g_aux) >= 0] rho(g_p, g_aux) g_aux``.
    ``"released"`` is the rule of the released code (github.com/logwhistle/drgrad_for_aaai25),
    which differs from the paper: on the **first kernel** (weight of the first linear layer)
    of every tower only, each tower receives ``w (1 - min(s, 0)) g_other`` where ``g_other``
    is the other towers' first-kernel gradient (summed beyond two tasks), ``s`` the mean sign
    agreement of the two kernels' gradients and ``w = mean(clip(sign ratio, 0.1, 5))``
    (``0.1 + 0.9 x`` the fraction of same-sign entries; see
    :func:`released_route_coefficient`): the other head's gradient is **always** added,
    amplified when the signs mostly disagree, never gated off.

    Parameters
    ----------
    mode : {"split", "tower", "released"}, default="split"
        ``"split"``: the paper's split primary tower, router and updater (the backbone must
        expose ``tower_inputs``, as MMoE, PLE and Shared-Bottom do). ``"tower"``: the
        paper's gate and scale between whole towers, no architecture change, no ``mu``.
        ``"released"``: the released code's first-kernel rule, both ways (formula above).
    primary_task : int, default=0
        Index of the primary task (label order); every other task is auxiliary.
    gamma : float, default=1.0
        Exponent ``gamma > 0`` of the clipped norm ratios (not given in the paper).
    pairing : {"consistent", "literal"}, default="consistent"
        Which cosine gates and which norm ratio scales each routed gradient in ``g_R1'``.
        ``"consistent"`` gates and scales each by its own relation to ``g1'`` (formulas
        above). ``"literal"`` is Eqs. 1-3 as printed: the ``g1''`` term is scaled by
        ``(1 - min(xi_a, 0)) rho(g1', g_aux)`` and the ``g_aux`` term by
        ``1[xi_s >= 0] rho(g1', g1'')``. ``g_R1''`` is the same in both.
    mixing : {"share", "mean", "cumulative"}, default="share"
        Updater (split mode), from the sums ``sigma`` of the routed norms after ``t`` steps.

        - ``"share"``: ``mu = softmax(log(sigma / t) / temperature)``, i.e. with the default
          temperature each sub-tower's share of the mean routed norm,
          ``mu' = sigma' / (sigma' + sigma'')``. Scale-free: the same ``mu`` whatever the
          size of the gradients, so it moves as soon as one sub-tower's routed gradients are
          larger than the other's. T1' receives the routed gradients, so ``mu'`` grows; and
          since the gradient of T1'' is proportional to its own ``mu''``, the shift feeds
          itself: measured ``mu'`` 0.93-0.99 after 10-30 epochs on the conflicting synthetic
          tasks (``benchmarks/pub_drgrad_evidence.py``), where the split then mostly reduces
          to the backbone plus the routed gradients on T1' (AUC equal to equal weights within
          the benchmark's resolution). ``temperature > 1`` damps it.
        - ``"mean"``: ``mu = softmax(sigma / (t temperature))`` on the running mean of the
          norms. Not scale-free: with tower gradient norms of order 0.01 to 0.1 (a BCE
          loss) the softmax stays within 0.50 to 0.55 unless ``temperature`` is about the
          norms' size.
        - ``"cumulative"``: the paper's printed form ``mu = softmax(sigma / temperature)``
          with ``sigma`` the running sum, which saturates to 0 / 1 within a few hundred
          steps when the two norms differ.
    temperature : float, default=1.0
        Temperature ``> 0`` of the updater's softmax. With ``"share"`` it sharpens
        (``< 1``) or flattens (``> 1``) the shares: ``mu_i`` is proportional to the mean
        norm to the power ``1 / temperature``.
    mixing_init : float, default=0.5
        ``mu'`` before the first update (``mu'' = 1 - mu'``), in ``(0, 1)``. The paper
        starts at 0.5; with ``"share"`` it is also what ``mu`` stays at while no routed
        gradient has reached either sub-tower.
    symmetric : bool, default=False
        Tower mode only: every tower ``k`` (not only the primary one) receives the sum of
        the other towers' gradients with the same gate and scale relative to its own
        gradient, as the released code routes both ways.
    personalized_features : list of str or int, default=None
        Split mode only: categorical columns (names, or indices for array input) whose
        embeddings feed the personalized gate (PPNet): every auxiliary tower input (hence
        ``v_s``) is multiplied by ``2 sigmoid(Linear(concat of their embeddings))``. The
        embeddings are the backbone's own (``embedding.categorical``) and are trained by
        the gate as well. None is "DRGrad w/o PPNet", what the paper reports on Census.

    Notes
    -----
    Readings taken where the paper is ambiguous (reference note section 2.11):

    - **Wiring of v1 / v_s.** ``v1`` is the primary task's own tower input; ``v_s`` the mean
      of the auxiliary tasks' tower inputs (for two tasks: the auxiliary task's, which matches
      the inferred Fig. 2). On Shared-Bottom both are the bottom output, so the split is
      two differently initialised towers on the same vector. In split mode an auxiliary
      task's gate or experts now also feed ``T1''``, so only its tower stays private
      (``task_parameters``). Split mode runs the backbone through ``tower_inputs``, so an
      auxiliary loss returned by the backbone's ``forward`` is not seen.
    - **More than two tasks.** ``g_aux`` is the *sum* of the auxiliary towers' gradients
      (in both modes); with ``symmetric=True`` tower ``k`` relates to the sum of all other
      towers' gradients.
    - **Granularity.** One flat vector per tower (all weights and biases), one cosine per
      tower pair (the released code, ``mode="released"``, uses the first kernel only).
    - **Updater.** The paper's softmax of summed norms saturates (``"cumulative"``), and the
      running mean that avoids this barely moves at the gradients' scale (``"mean"``); the
      default ``"share"`` is the softmax of the log mean norms, which is scale-free.
    - **Mixing on logits**, then sigmoid: ``predict_proba``'s primary column is
      ``sigmoid(mu' T1' + mu'' T1'')``.
    - **Order.** Routing uses the raw gradients; AdamW then normalises ``g + g_R`` per
      coordinate. Task weights ``alpha_i`` of Algorithm 1 are the estimator's ``task_weights``.
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means):
      ``cosine_primary_aux``, ``norm_ratio_aux`` (``||g1'|| / ||g_aux||``, unclipped, 0 when
      ``g_aux`` is zero) and, in split mode, ``cosine_primary_split``, ``norm_ratio_split``
      and ``mixing`` (``mu', mu''`` after the step's update); in released mode
      ``sign_agreement`` (``s``) and ``route_weight`` (``w``) of the primary tower's kernel.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.drgrad import DRGrad
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, expert_hidden_sizes=(8,), tower_hidden_sizes=(4,),
    ...                      optimizer=DRGrad(), max_epochs=2, random_state=0).fit(X, Y)
    >>> clf.predict_proba(X).shape
    (300, 2)
    >>> len(clf.history_[-1, "optim_mixing"])
    2
    >>> clf_tower = MMoEClassifier(n_experts=2, expert_hidden_sizes=(8,), tower_hidden_sizes=(4,),
    ...                            optimizer=DRGrad(mode="tower", symmetric=True), max_epochs=2,
    ...                            random_state=0).fit(X, Y)
    >>> sorted(k for k in clf_tower.history_[-1] if k.startswith("optim_"))
    ['optim_cosine_primary_aux', 'optim_norm_ratio_aux']
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "mode": [Options(*_MODES)],
        "pairing": [Options(*_PAIRINGS)],
        "mixing": [Options(*_MIXINGS)],
        "gamma": [Interval(numbers.Real, 0, closed="right")],
        "temperature": [Interval(numbers.Real, 0, closed="right")],
        "mixing_init": [Interval(numbers.Real, 0, 1, closed="neither")],
        "symmetric": [Options(True, False)],
        "primary_task": [Interval(numbers.Integral, 0)],
        "personalized_features": [
            Options(None),
            InstanceOf((list, tuple), "a list of categorical column names or indices"),
        ],
    }

    def __init__(
        self,
        mode="split",
        primary_task=0,
        gamma=1.0,
        pairing="consistent",
        mixing="share",
        temperature=1.0,
        mixing_init=0.5,
        symmetric=False,
        personalized_features=None,
    ):
        self.mode = mode
        self.primary_task = primary_task
        self.gamma = gamma
        self.pairing = pairing
        self.mixing = mixing
        self.temperature = temperature
        self.mixing_init = mixing_init
        self.symmetric = symmetric
        self.personalized_features = personalized_features

    # ------------------------------------------------------------------ validation
    def _check_parameter_combinations(self) -> None:
        name = type(self).__name__
        if self.symmetric and self.mode != "tower":
            raise ValueError(f"{name}: symmetric=True applies to mode='tower' only.")
        if self.personalized_features is not None:
            if self.mode != "split":
                raise ValueError(f"{name}: personalized_features needs mode='split' (the gate acts on v_s).")
            if len(self.personalized_features) == 0:
                raise ValueError(f"{name}: personalized_features is empty; use None for no personalized gate.")

    def _check_model(self, model: nn.Module, n_tasks: int) -> None:
        name = type(self).__name__
        if n_tasks < 2:
            raise ValueError(f"{name} needs at least two tasks (one primary, one auxiliary), got {n_tasks}.")
        if self.primary_task >= n_tasks:
            raise ValueError(f"{name}: primary_task={self.primary_task} is out of range for {n_tasks} tasks.")
        towers = getattr(model, "towers", None)
        if not isinstance(towers, nn.ModuleList) or len(towers) != n_tasks:
            raise ValueError(f"{name}: the architecture {type(model).__name__} has no tower per task to route between.")
        if not model.same_shaped_towers():
            raise ValueError(
                f"{name}: the towers of {type(model).__name__} have different parameter shapes; "
                "routing adds one tower's gradient to another, so they must be identical."
            )

    # ------------------------------------------------------------------ the interface
    def wrap_module(
        self,
        model: nn.Module,
        n_tasks: int,
        *,
        wrappers: Mapping[str, Callable[..., nn.Module]] | None = None,
    ) -> nn.Module:
        self._check_model(model, n_tasks)
        if self.mode != "split":
            return model
        if wrappers is None or "split_primary" not in wrappers:
            raise ValueError(
                "DRGrad(mode='split') builds the split primary tower from wrappers['split_primary'] "
                "(sklearn_mtr.models.MODULE_WRAPPERS, which the estimators pass)."
            )
        return wrappers["split_primary"](
            model,
            self.primary_task,
            personalized_features=self.personalized_features,
            mixing_init=float(self.mixing_init),
        )

    def backward(self, task_losses: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        model = ctx.model
        n_tasks = task_losses.shape[0]
        if self.primary_task >= n_tasks:
            raise ValueError(f"DRGrad: primary_task={self.primary_task} is out of range for {n_tasks} tasks.")
        if self.mode == "split" and getattr(model, "split_tower", None) is None:
            raise ValueError(
                "DRGrad(mode='split') trains the module returned by its wrap_module (the split primary tower)."
            )
        self.weighted_total(task_losses, ctx).backward()  # the one backward pass
        with torch.no_grad():
            if self.mode == "split":
                return self._route_split(model, n_tasks)
            if self.mode == "released":
                return self._route_released(model, n_tasks)
            return self._route_towers(model, n_tasks)

    def _route_split(self, model: nn.Module, n_tasks: int) -> dict[str, torch.Tensor]:
        p = self.primary_task
        primary, split = _params(model.towers[p]), _params(model.split_tower)
        g1, gs = _flat_grad(primary), _flat_grad(split)
        g_aux = sum(_flat_grad(_params(model.towers[k])) for k in range(n_tasks) if k != p)
        a_split, a_aux, c_split, info = route_coefficients(g1, gs, g_aux, gamma=self.gamma, pairing=self.pairing)
        new_primary = g1 + a_split * gs + a_aux * g_aux
        new_split = gs + c_split * gs
        _write_grad(primary, new_primary)
        _write_grad(split, new_split)
        update_mixing(
            model,
            torch.stack([new_primary.norm(), new_split.norm()]),
            rule=self.mixing,
            temperature=float(self.temperature),
        )
        return {**info, "mixing": model.mixing.detach().clone()}

    def _route_towers(self, model: nn.Module, n_tasks: int) -> dict[str, torch.Tensor]:
        p = self.primary_task
        params = [_params(model.towers[k]) for k in range(n_tasks)]
        grads = [_flat_grad(ps) for ps in params]
        total = torch.stack(grads).sum(0)
        receivers = range(n_tasks) if self.symmetric else [p]
        for k in receivers:
            others = total - grads[k]
            coefficient = tower_route_coefficient(grads[k], others, gamma=self.gamma)
            _write_grad(params[k], grads[k] + coefficient * others)
        g_aux = total - grads[p]
        n1, na = grads[p].norm(), g_aux.norm()
        return {"cosine_primary_aux": _cosine(grads[p], g_aux, n1, na), "norm_ratio_aux": _ratio(n1, na)}

    def _route_released(self, model: nn.Module, n_tasks: int) -> dict[str, torch.Tensor]:
        kernels = [_first_linear(model.towers[k]).weight for k in range(n_tasks)]
        grads = [torch.zeros_like(w) if w.grad is None else w.grad.clone() for w in kernels]
        total = torch.stack(grads).sum(0)
        info = {}
        for k in range(n_tasks):  # both ways, from the gradients before any routing
            coefficient, s, w = released_route_coefficient(grads[k], total - grads[k])
            kernels[k].grad = grads[k] + coefficient * (total - grads[k])
            if k == self.primary_task:
                info = {"sign_agreement": s, "route_weight": w}
        return info
