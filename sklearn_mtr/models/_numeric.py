"""Numeric columns as embeddings: a linear map of each column's piecewise-linear code."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class PiecewiseLinearEmbedding(nn.Module):
    """One ``dim``-vector per numeric input, from the piecewise-linear encoding of its value.

    The piecewise-linear encoding (Gorishniy et al., "On Embeddings for Numerical Features
    in Tabular Deep Learning", arXiv 2203.05556) of a value ``x`` over the edges
    ``b_0 < ... < b_T`` is ``T`` numbers, one per bin: ``clip((x - b_{t-1}) / (b_t - b_{t-1}), 0, 1)``
    (1 for every bin below ``x``, the position of ``x`` inside its own bin, 0 above). Each
    column's code goes through a linear map of its own, so the column's embedding is a learned
    piecewise-linear function of its value, with a kink at every edge: the thresholds a ReLU
    network learns poorly from one standardised number. Values outside the training range are
    clipped to it (an unseen extreme reads as the training extreme, as in trees). No separate
    scaled value is needed next to the code: the clipped value itself is a linear function of
    it (``b_0 + sum_t code_t * (b_t - b_{t-1})``), which the linear map can represent.

    Parameters
    ----------
    edges : sequence of sequences of float
        The sorted, distinct edges of each value column (in the units the batch holds them);
        fewer than two edges (a constant or empty column) leaves the column a constant.
    n_flags : int
        Columns after the value columns that are 0/1 missing-value indicators: each becomes
        ``flag * w + b``, so every input has the same width.
    dim : int
        Width of each embedding.

    Forward: ``(batch, len(edges) + n_flags)`` -> ``(batch, len(edges) + n_flags, dim)``.
    """

    def __init__(self, edges: Sequence[Sequence[float]], n_flags: int, dim: int) -> None:
        super().__init__()
        n_bins = [max(len(e) - 1, 0) for e in edges]
        width = max(n_bins, default=0) or 1
        lower = torch.zeros(len(edges), width)
        span = torch.ones(len(edges), width)
        used = torch.zeros(len(edges), width)
        for c, e in enumerate(edges):
            if n_bins[c]:
                e = torch.tensor([float(v) for v in e], dtype=torch.float64)
                lower[c, : n_bins[c]] = e[:-1].float()
                # Edges distinct in float64 may meet in float32: a tiny span makes that bin a step.
                span[c, : n_bins[c]] = (e[1:].float() - e[:-1].float()).clamp_min(1e-30)
                used[c, : n_bins[c]] = 1.0
        # Derived from the schema, which the safe format stores: not saved with the weights.
        self.register_buffer("lower", lower, persistent=False)
        self.register_buffer("span", span, persistent=False)
        self.register_buffer("used", used, persistent=False)
        self.n_values, self.n_flags, self.dim = len(edges), n_flags, dim
        self.weight = nn.Parameter(torch.empty(len(edges), width, dim))
        self.bias = nn.Parameter(torch.empty(len(edges), dim))
        # absent rather than empty without flags: an empty parameter trips reductions over the state
        self.flag_weight = nn.Parameter(torch.empty(n_flags, dim)) if n_flags else None
        self.flag_bias = nn.Parameter(torch.empty(n_flags, dim)) if n_flags else None
        self._n_bins = n_bins
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default per column: uniform within 1 / sqrt(number of bins)
        for c, t in enumerate(self._n_bins):
            bound = 1.0 / max(t, 1) ** 0.5
            nn.init.uniform_(self.weight[c], -bound, bound)
            nn.init.uniform_(self.bias[c], -bound, bound)
        if self.n_flags:
            nn.init.uniform_(self.flag_weight, -1.0, 1.0)
            nn.init.uniform_(self.flag_bias, -1.0, 1.0)

    def codes(self, values: torch.Tensor) -> torch.Tensor:
        """The piecewise-linear codes ``(batch, n_values, max_bins)`` of the value columns."""
        x = values[:, : self.n_values, None].float()
        return ((x - self.lower) / self.span).clamp(0.0, 1.0) * self.used

    def forward(self, numeric: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.n_values:
            codes = self.codes(numeric).to(self.weight.dtype)
            parts.append(torch.einsum("bct,ctd->bcd", codes, self.weight) + self.bias)
        if self.n_flags:
            flags = numeric[:, self.n_values :, None].to(self.flag_weight.dtype)
            parts.append(flags * self.flag_weight + self.flag_bias)
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
