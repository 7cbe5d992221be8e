"""DSelect-k: MMoE with differentiable sparse gates (Hazimeh et al., NeurIPS 2021, arXiv:2106.03760)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import ClassVar

import torch
from torch import nn

from .._constraints import Interval, Options, check_value
from .._schema import FeatureSchema
from ._base import MultiTaskModule
from ._blocks import MLP, BatchedExperts, InputEmbedding, tower_logits

# keeps log() finite in the entropy of a selector's (exactly zero) weights, as the authors' code
_EPSILON = 1e-6


def smooth_step(t: torch.Tensor, gamma: float) -> torch.Tensor:
    """The smooth-step function of the paper (eq. 2): 0 below ``-gamma / 2``, 1 above
    ``gamma / 2``, and the cubic ``-2 t^3 / gamma^3 + 3 t / (2 gamma) + 1 / 2`` between."""
    cubic = -2.0 / gamma**3 * t**3 + 3.0 / (2.0 * gamma) * t + 0.5
    return torch.where(t <= -gamma / 2, torch.zeros_like(t), torch.where(t >= gamma / 2, torch.ones_like(t), cubic))


class DSelectKGate(nn.Module):
    """One task's DSelect-k gate over ``n_experts`` experts.

    ``k`` single-expert selectors each hold ``m = ceil(log2 n_experts)`` logits ``z``; selector
    ``i`` gives expert ``j`` the weight ``r_i(z)_j = prod_b S(z_b)^[bit b of j] (1 - S(z_b))^[1 - bit b of j]``
    (``S`` the smooth step), a distribution over the ``2^m`` binary codes that is one-hot once every
    ``z_b`` is outside ``(-gamma/2, gamma/2)``. The expert weights are ``sum_i softmax(alpha)_i r_i``:
    at most ``k`` non-zero once the selectors are binary. With ``per_example`` the logits ``z`` and
    ``alpha`` are linear functions of the input (the paper's per-example gate), otherwise free
    parameters (its static, task-only gate).
    """

    def __init__(self, in_dim: int, n_experts: int, k: int, gamma: float, per_example: bool) -> None:
        super().__init__()
        self.n_experts, self.k, self.gamma, self.per_example = n_experts, k, gamma, per_example
        self.n_bits = math.ceil(math.log2(n_experts)) if n_experts > 1 else 0
        codes = [[(j >> (self.n_bits - 1 - b)) & 1 for b in range(self.n_bits)] for j in range(n_experts)]
        self.register_buffer("codes", torch.tensor(codes, dtype=torch.bool).view(n_experts, self.n_bits), False)
        if per_example:
            # one expert: no bit to learn, every selector picks it (a 0-wide Linear would warn)
            self.z_logits = nn.Linear(in_dim, k * self.n_bits) if self.n_bits else None
            self.w_logits = nn.Linear(in_dim, k)
        else:
            self.z_logits = nn.Parameter(torch.empty(k, self.n_bits))
            self.w_logits = nn.Parameter(torch.empty(k))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # the authors' initialisation: z near 0 (every expert equally likely), alpha small
        z = self.z_logits
        z = [z] if isinstance(z, nn.Parameter) else [] if z is None else list(z.parameters())
        w = [self.w_logits] if isinstance(self.w_logits, nn.Parameter) else list(self.w_logits.parameters())
        for p in z:
            nn.init.uniform_(p, -self.gamma / 100, self.gamma / 100)
        for p in w:
            nn.init.uniform_(p, -0.05, 0.05)

    def selectors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r, alpha)``: the selectors' expert weights ``(B, k, n_experts)`` and their logits
        ``(B, k)`` (broadcast over the batch for a static gate)."""
        if self.per_example:
            if self.z_logits is None:
                z = x.new_zeros(x.shape[0], self.k, 1, 0)
            else:
                z = self.z_logits(x).view(-1, self.k, 1, self.n_bits)
            alpha = self.w_logits(x)
        else:
            z = self.z_logits.view(1, self.k, 1, self.n_bits).expand(x.shape[0], -1, -1, -1)
            alpha = self.w_logits.view(1, self.k).expand(x.shape[0], -1)
        s = smooth_step(z, self.gamma)  # (B, k, 1, m)
        r = torch.where(self.codes, s, 1 - s).prod(dim=-1)  # (B, k, n_experts)
        return r, alpha

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weights, r)``: the expert weights ``(B, n_experts)`` and the selectors' ``r``."""
        r, alpha = self.selectors(x)
        weights = (torch.softmax(alpha, dim=-1).unsqueeze(-1) * r).sum(dim=1)
        return weights, r


class DSelectK(MultiTaskModule):
    """DSelect-k (Hazimeh et al., NeurIPS 2021, arXiv:2106.03760): multi-gate mixture of experts
    whose task gates are differentiable and sparse.

    ``n_experts`` expert MLPs read the embedded input, as in MMoE; task ``t``'s gate (its own)
    weighs them with at most ``k`` non-zero weights that sum to 1, and its tower reads the
    weighted sum. The gate (:class:`DSelectKGate`) is the paper's: ``k`` single-expert selectors,
    each a binary code of ``ceil(log2 n_experts)`` smooth-step relaxed bits, combined by a softmax
    over ``k`` logits; the selectors become exactly one-hot during training (the smooth step
    saturates), so the gate selects ``k`` experts (or fewer, when two selectors agree) with
    first-order training only, unlike a top-k gate.

    ``forward`` returns ``(logits, aux_loss)``; in training ``aux_loss`` is the mean over the rows
    of ``entropy_reg * sum_tasks sum_i H(r_i)`` (the paper's entropy regulariser, which drives
    the selectors to binary sooner) plus, when ``n_experts`` is not a power of 2, the authors'
    ``sum_tasks sum_i 1 / sum_j r_ij`` that keeps the codes of no expert from taking a selector;
    0 in evaluation. The authors' code sums these over the rows of a batch: here they are
    averaged, as the task losses are.

    Parameters
    ----------
    n_experts : int, default=8
        Number of experts.
    k : int, default=2
        Number of experts each task's gate selects (the number of single-expert selectors).
    gamma : float, default=1.0
        Width of the smooth step's cubic region: a selector bit is binary once its logit is
        outside ``(-gamma / 2, gamma / 2)``.
    entropy_reg : float, default=0.0
        Weight of the entropy regulariser on the selectors (0 turns it off).
    per_example : bool, default=True
        Gates conditioned on the input (the selector logits are linear in it); ``False`` gives
        each task one static gate (the paper's task-only routing).
    expert_hidden_sizes : tuple of int, default=(256, 128)
        Widths of each expert MLP.
    tower_hidden_sizes : tuple of int, default=(64,)
        Widths of each task tower before its logit.
    activation : str, default="relu"
        Hidden activation: "relu", "prelu", "gelu", "silu", "tanh" or "leaky_relu".
    dropout : float, default=0.0
        Dropout after every hidden layer.
    batch_norm : bool, default=False
        Batch normalisation after every hidden linear layer.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "k": [Interval(Integral, 1)],
        "gamma": [Interval(Real, 0, closed="right")],
        "entropy_reg": [Interval(Real, 0)],
        "per_example": [Options(True, False)],
    }

    def __init__(
        self,
        schema: FeatureSchema,
        n_tasks: int,
        *,
        embedding_dim: int = 16,
        n_experts: int = 8,
        k: int = 2,
        gamma: float = 1.0,
        entropy_reg: float = 0.0,
        per_example: bool = True,
        expert_hidden_sizes: Sequence[int] = (256, 128),
        tower_hidden_sizes: Sequence[int] = (64,),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.check_hyperparameters(locals())
        check_value("k", k, [Interval(Integral, 1, n_experts)], prefix=f"with n_experts={n_experts}")
        self.n_tasks = n_tasks
        self.entropy_reg = float(entropy_reg)
        self.embedding = InputEmbedding(schema, embedding_dim, n_tasks)
        layer = {"activation": activation, "dropout": dropout, "batch_norm": batch_norm}
        self.experts = BatchedExperts(n_experts, self.embedding.out_dim, expert_hidden_sizes, **layer)
        self.power_of_2 = n_experts & (n_experts - 1) == 0
        self.gates = nn.ModuleList(
            DSelectKGate(self.embedding.out_dim, n_experts, int(k), float(gamma), bool(per_example))
            for _ in range(n_tasks)
        )
        self.towers = nn.ModuleList(
            MLP(self.experts.out_dim, tower_hidden_sizes, **layer, output_dim=1) for _ in range(n_tasks)
        )

    def task_modules(self, k: int) -> list[nn.Module]:
        return [self.gates[k], self.towers[k]]

    def gate_weights(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each task's expert weights ``(batch, n_tasks, n_experts)``, for inspection."""
        x = self.embedding(batch)
        return torch.stack([gate(x)[0] for gate in self.gates], dim=1)

    def _mixtures(self, batch: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = self.embedding(batch)
        experts = self.experts(x)
        inputs, aux = [], x.new_zeros(())
        for gate in self.gates:
            weights, r = gate(x)
            inputs.append(torch.bmm(weights.unsqueeze(1), experts).squeeze(1))
            if self.training and self.entropy_reg > 0:
                entropy = -(r * torch.log(r + _EPSILON)).sum(dim=(1, 2))
                aux = aux + self.entropy_reg * entropy.mean()
            if self.training and not self.power_of_2:
                aux = aux + (1.0 / r.sum(dim=-1)).sum(dim=1).mean()
        return inputs, aux

    def tower_inputs(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Each task's gated sum of the experts, the input of its tower."""
        return self._mixtures(batch)[0]

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, aux = self._mixtures(batch)
        return self.embedding.bags.add_to(tower_logits(self.towers, inputs), batch), aux
