"""Switch-style sparse mixture of experts with top-k routing and expert capacity.

GRec's task-sentence MoE layer (arXiv 2504.05318, as in its released example code). A router
scores every *routing unit* (a token, or a whole sentence in sentence-level routing), the
top-k experts of a unit process all of its tokens, and each expert accepts at most
``capacity`` units per batch. The layer returns the experts' output (zero where a unit was
dropped, so the caller's residual passes it through unchanged) and the two router losses:

- load balancing (Switch Transformer, Fedus et al. 2021): ``E * sum_e f_e * P_e`` with
  ``f_e`` the share of top-k assignments that go to expert ``e`` and ``P_e`` the mean
  router **probability** of ``e`` (the released GRec code passes logits here: a bug);
  it equals 1 when routing is uniform and ``E`` when it collapses on one expert;
- router z-loss (ST-MoE, Zoph et al. 2022): the mean of ``logsumexp(router logits)^2``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def load_balancing_loss(probs: torch.Tensor, expert_index: torch.Tensor) -> torch.Tensor:
    """Switch load-balancing loss ``E * sum_e f_e P_e``.

    Parameters
    ----------
    probs : Tensor of shape (n_units, n_experts)
        Router probabilities (softmax output, not logits).
    expert_index : LongTensor of shape (n_units, k)
        The experts each unit was assigned to (before capacity is applied).
    """
    n_experts = probs.shape[-1]
    counts = F.one_hot(expert_index, n_experts).to(probs.dtype).sum(dim=(0, 1))
    fraction = counts / counts.sum().clamp_min(1.0)
    return n_experts * (fraction * probs.mean(0)).sum()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean squared log-partition of the router logits ``(n_units, n_experts)``."""
    return torch.logsumexp(logits, dim=-1).pow(2).mean()


def route(probs: torch.Tensor, top_k: int, capacity: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k assignment with expert capacity.

    Assignments are served choice by choice (every unit's first choice before any second
    choice), units in order within a choice, as in GShard / Switch; an expert that already
    holds ``capacity`` units refuses the rest.

    Returns
    -------
    expert_index : LongTensor (n_units, k)
        Chosen experts, best first.
    gates : Tensor (n_units, k)
        Their weights: the router probability for top-1 (Switch: renormalising a single
        gate would make it 1 and starve the router of gradient), the probabilities
        renormalised over the k chosen experts for k > 1; 0 where the unit was dropped.
    kept : BoolTensor (n_units, k)
        False where the expert was full.
    """
    top_probs, expert_index = probs.topk(top_k, dim=-1)
    gates = top_probs / top_probs.sum(-1, keepdim=True) if top_k > 1 else top_probs
    if capacity is None:
        kept = torch.ones_like(expert_index, dtype=torch.bool)
    else:
        # choice-major order: (k, n_units, E) one-hot, position of each assignment in its expert's queue
        onehot = F.one_hot(expert_index.t(), probs.shape[-1])
        position = onehot.flatten(0, 1).cumsum(0).view_as(onehot) - 1
        position = (position * onehot).sum(-1).t()  # (n_units, k)
        kept = position < capacity
    return expert_index, gates * kept, kept


class SwitchMoE(nn.Module):
    """Sparse feed-forward experts behind a top-k router.

    Parameters
    ----------
    dim : int
        Token width.
    n_experts : int
        Number of experts.
    hidden_dim : int
        Each expert is ``Linear(dim, hidden_dim) -> LeakyReLU(0.2) -> Dropout -> Linear(hidden_dim, dim)``
        (no biases, as released).
    top_k : int
        Experts per routing unit.
    capacity_factor : float or None
        Training-time capacity: an expert takes at most ``ceil(capacity_factor * n_units * k / E)``
        units of a batch; None means unlimited. Inference never drops (see Notes).
    router_jitter : float
        Multiplicative noise ``U[1 - eps, 1 + eps]`` on the router input, in training only.
    dropout : float
        Dropout inside the experts.

    Notes
    -----
    Capacity is a batch-level limit, so a unit's fate depends on the other units of its
    batch. It is applied while training only: at inference every unit reaches its experts,
    so a row's prediction does not depend on which rows share its batch (scikit-learn
    expects ``predict_proba(X[:k]) == predict_proba(X)[:k]``). Switch applies an evaluation
    capacity factor instead; "dropless" inference is the reading taken here.

    Routing statistics of training batches accumulate in the buffers ``assigned`` (units per
    expert, after capacity), ``dropped`` (units that reached none of their experts, because
    all were full) and ``total`` (units routed); call :meth:`reset_statistics` to start a new
    count. A caller that routes on its own (:meth:`route_units`, :meth:`expert`) counts with
    :meth:`record`.
    """

    def __init__(
        self,
        dim: int,
        n_experts: int,
        hidden_dim: int,
        *,
        top_k: int = 1,
        capacity_factor: float | None = 1.25,
        router_jitter: float = 0.1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be between 1 and n_experts={n_experts}, got {top_k}.")
        if capacity_factor is not None and not capacity_factor > 0:
            raise ValueError(f"capacity_factor must be positive or None, got {capacity_factor!r}.")
        if not 0 <= router_jitter < 1:
            raise ValueError(f"router_jitter must be in [0, 1), got {router_jitter!r}.")
        self.n_experts, self.top_k = n_experts, top_k
        self.capacity_factor, self.router_jitter = capacity_factor, router_jitter
        self.router = nn.Linear(dim, n_experts)
        self.w_in = nn.Parameter(torch.empty(n_experts, dim, hidden_dim))
        self.w_out = nn.Parameter(torch.empty(n_experts, hidden_dim, dim))
        self.activation = nn.LeakyReLU(0.2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.register_buffer("assigned", torch.zeros(n_experts), persistent=False)
        self.register_buffer("dropped", torch.zeros(()), persistent=False)
        self.register_buffer("total", torch.zeros(()), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w in (self.w_in, self.w_out):
            bound = 1.0 / math.sqrt(w.shape[1])
            nn.init.uniform_(w, -bound, bound)

    def reset_statistics(self) -> None:
        self.assigned.zero_()
        self.dropped.zero_()
        self.total.zero_()

    def capacity(self, n_units: int) -> int | None:
        """Units an expert accepts in a training batch of ``n_units`` (None: unlimited)."""
        if not self.training or self.capacity_factor is None:
            return None
        return max(1, math.ceil(self.capacity_factor * n_units * self.top_k / self.n_experts))

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Expert ``e``'s output for tokens ``x`` ``(..., dim)`` (no gate applied)."""
        return self.dropout(self.activation(x @ self.w_in[e])) @ self.w_out[e]

    def route_units(
        self, router_input: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Route the units whose router inputs are ``router_input`` ``(n_units, dim)``.

        Returns ``(logits, probs, expert_index, gates, kept)``: see :func:`route` for the last three.
        """
        logits = self.router_logits(router_input)
        probs = torch.softmax(logits, dim=-1)
        expert_index, gates, kept = route(probs, self.top_k, self.capacity(router_input.shape[0]))
        return logits, probs, expert_index, gates, kept

    @torch.no_grad()
    def record(self, expert_index: torch.Tensor, kept: torch.Tensor, weight: int = 1) -> None:
        """Add a training batch's routing to the statistics; each unit counts ``weight`` times
        (task routing: a task's unit stands for every row of the batch)."""
        if not self.training:
            return
        kept_experts = torch.where(kept, expert_index, torch.full_like(expert_index, self.n_experts))
        counts = torch.bincount(kept_experts.flatten(), minlength=self.n_experts + 1)[:-1]
        self.assigned += weight * counts.to(self.assigned.dtype)
        self.dropped += weight * (~kept.any(-1)).sum().to(self.dropped.dtype)
        self.total += weight * kept.shape[0]

    def router_logits(self, router_input: torch.Tensor) -> torch.Tensor:
        """Router logits in float32 (also under autocast), with training-time jitter."""
        with torch.autocast(device_type=router_input.device.type, enabled=False):
            x = router_input.float()
            if self.training and self.router_jitter > 0:
                x = x * torch.empty_like(x).uniform_(1.0 - self.router_jitter, 1.0 + self.router_jitter)
            return F.linear(x, self.router.weight.float(), self.router.bias.float())

    def forward(
        self, x: torch.Tensor, router_input: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Route and run the experts.

        Parameters
        ----------
        x : Tensor of shape (n_units, n_tokens, dim)
            The tokens, grouped by routing unit.
        router_input : Tensor of shape (n_units, dim), default=None
            What the router reads for each unit; None routes each unit on its single token
            (``n_tokens`` must then be 1, i.e. token-level routing).

        Returns
        -------
        out : Tensor like ``x``
            Gate-weighted sum of the unit's experts' outputs; zero for a dropped unit.
        balance_loss, z_loss : scalar Tensors
        """
        if router_input is None:
            if x.shape[1] != 1:
                raise ValueError("without router_input every routing unit must hold one token.")
            router_input = x[:, 0]
        logits, probs, expert_index, gates, kept = self.route_units(router_input)
        out = torch.zeros_like(x)
        for e in range(self.n_experts):
            unit, slot = torch.nonzero((expert_index == e) & kept, as_tuple=True)
            if unit.numel() == 0:
                continue
            y = self.expert(e, x[unit]) * gates[unit, slot].to(x.dtype)[:, None, None]
            out = out.index_add(0, unit, y.to(out.dtype))
        self.record(expert_index, kept)
        return out, load_balancing_loss(probs, expert_index), router_z_loss(logits)
