"""PaLM-style parallel Transformer block: multi-query attention with rotary positions.

Used by :class:`~sklearn_mtr.models.GRec` for its behaviour-sequence and text towers and
for mixing the tokens of a sentence. As in the released example code of GRec (arXiv
2504.05318), one block is::

    h = LayerNorm(x)                                   # gain only, no bias
    q (H heads), k, v (one shared head), f = split(W_in h)
    attn = softmax(rope(q) rope(k)^T / sqrt(d_head) + padding mask) v
    block(x) = W_o attn + W_ff2 SwiGLU(f)               # attention and FFN in parallel

with no bias anywhere; the caller adds the residual ``x + block(x)``. There is no causal
mask (the released code builds one but never uses it).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def rotary_tables(length: int, dim: int, device, dtype, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` tables ``(length, dim)`` of rotary position embeddings (RoFormer)."""
    inv_freq = 1.0 / base ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``(..., length, dim)`` by position: ``x cos + rotate_half(x) sin``."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class GainLayerNorm(nn.Module):
    """LayerNorm with a learned gain and no bias (PaLM)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weight)


class ParallelBlock(nn.Module):
    """One parallel attention + SwiGLU feed-forward block; returns ``block(x)`` (no residual).

    Parameters
    ----------
    dim : int
        Token width.
    n_heads : int
        Query heads; keys and values have a single shared head (multi-query attention).
    dim_head : int
        Width of each head; even (rotary embeddings rotate pairs of features).
    ff_mult : int
        The feed-forward hidden width is ``ff_mult * dim``.
    dropout : float
        Dropout on the attention weights.
    """

    def __init__(self, dim: int, n_heads: int, dim_head: int, ff_mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if dim_head % 2:
            raise ValueError(f"the attention head width must be even for rotary positions, got {dim_head}.")
        self.n_heads, self.dim_head = n_heads, dim_head
        self.norm = GainLayerNorm(dim)
        ff_inner = ff_mult * dim
        self.splits = (n_heads * dim_head, dim_head, dim_head, 2 * ff_inner)
        self.fused_in = nn.Linear(dim, sum(self.splits), bias=False)
        self.attn_out = nn.Linear(n_heads * dim_head, dim, bias=False)
        self.ff_out = nn.Linear(ff_inner, dim, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(B, L, dim)``; ``key_mask`` ``(B, L)`` bool, True where a position is real.

        A row whose every key is masked (an empty sequence) attends uniformly to padding
        instead of producing NaN; the caller ignores such rows when pooling.
        """
        batch, length, _ = x.shape
        q, k, v, ff = self.fused_in(self.norm(x)).split(self.splits, dim=-1)
        q = q.view(batch, length, self.n_heads, self.dim_head).transpose(1, 2)  # (B, H, L, dh)
        cos, sin = rotary_tables(length, self.dim_head, x.device, q.dtype)
        q = apply_rotary(q, cos, sin) * self.dim_head**-0.5
        k = apply_rotary(k, cos, sin).unsqueeze(1)  # (B, 1, L, dh): one head shared by all queries
        scores = q @ k.transpose(-1, -2)  # (B, H, L, L)
        if key_mask is not None:
            # finite fill (not -inf) so that a fully masked row stays finite
            scores = scores.masked_fill(~key_mask[:, None, None, :], torch.finfo(scores.dtype).min)
        weights = self.dropout(torch.softmax(scores, dim=-1))
        attn = (weights @ v.unsqueeze(1)).transpose(1, 2).reshape(batch, length, self.n_heads * self.dim_head)
        gate, value = ff.chunk(2, dim=-1)
        return self.attn_out(attn) + self.ff_out(F.silu(gate) * value)

    def forward_shared_prefix(self, prefix: torch.Tensor, suffix: torch.Tensor) -> torch.Tensor:
        """``block(x)`` for the K sequences ``x_k = [prefix ; suffix_k]`` without repeating the prefix.

        ``prefix`` ``(B, S, dim)`` is shared by the K sequences, ``suffix`` ``(B or 1, K, dim)``
        holds each one's last token; the result is ``(B, K, S + 1, dim)``, equal to stacking
        ``forward(cat([prefix, suffix[:, k:k+1]], 1))`` over k (no padding). Everything that is
        per token (normalisation, projections, rotary positions, the feed-forward) runs once for
        the prefix; per sequence only the attention weights and their weighted sums are computed.
        The output projection is folded into the values head by head (``W_o`` is linear), so
        the per-sequence sums are already ``dim`` wide.
        """
        batch, n_prefix, dim = prefix.shape
        n_seq = suffix.shape[1]
        heads, dh = self.n_heads, self.dim_head
        qp, kp, vp, ffp = self.fused_in(self.norm(prefix)).split(self.splits, dim=-1)
        qs, ks, vs, ffs = self.fused_in(self.norm(suffix)).split(self.splits, dim=-1)
        cos, sin = rotary_tables(n_prefix + 1, dh, prefix.device, qp.dtype)
        scale = dh**-0.5
        qp = apply_rotary(qp.view(batch, n_prefix, heads, dh).transpose(1, 2), cos[:n_prefix], sin[:n_prefix]) * scale
        kp = apply_rotary(kp, cos[:n_prefix], sin[:n_prefix])
        qs = apply_rotary(qs.view(*qs.shape[:2], heads, dh), cos[n_prefix], sin[n_prefix]) * scale
        ks = apply_rotary(ks, cos[n_prefix], sin[n_prefix])
        w_out = self.attn_out.weight.view(dim, heads, dh).permute(1, 2, 0)  # (H, dh, dim)
        up = torch.einsum("bsd,hde->bhse", vp, w_out)  # prefix values through W_o, per head
        us = torch.einsum("bkd,hde->bkhe", vs, w_out)
        ks_b, us_b = ks.expand(batch, -1, -1), us.expand(batch, -1, -1, -1)
        qs_b = qs.expand(batch, -1, -1, -1)

        # prefix queries: keys = the prefix (shared) and the sequence's own last token
        pp = (qp @ kp.transpose(1, 2).unsqueeze(1)).unsqueeze(1).expand(-1, n_seq, -1, -1, -1)  # (B, K, H, S, S)
        ps = torch.einsum("bhsd,bkd->bkhs", qp, ks_b).unsqueeze(-1)  # (B, K, H, S, 1)
        w = self.dropout(torch.softmax(torch.cat([pp, ps], dim=-1), dim=-1))
        # contiguous slices: batched matmuls on strided operands copy batch by batch on CPU
        out_p = torch.einsum("bkhst,bhte->bkse", w[..., :n_prefix].contiguous(), up)
        out_p = out_p + (w[..., n_prefix, None] * us_b.unsqueeze(3)).sum(2)  # a sum over the few heads
        # the last token's query
        sp = torch.einsum("bkhd,bsd->bkhs", qs_b, kp)
        ss = (qs_b * ks_b.unsqueeze(2)).sum(-1, keepdim=True)  # (B, K, H, 1)
        w = self.dropout(torch.softmax(torch.cat([sp, ss], dim=-1), dim=-1))
        out_s = torch.einsum("bkhs,bhse->bke", w[..., :n_prefix].contiguous(), up)
        out_s = out_s + (w[..., n_prefix, None] * us_b).sum(2)

        gate, value = ffp.chunk(2, dim=-1)
        ff_p = self.ff_out(F.silu(gate) * value)  # (B, S, dim), once per sample
        gate, value = ffs.chunk(2, dim=-1)
        ff_s = self.ff_out(F.silu(gate) * value)  # (B or 1, K, dim)
        out_p = out_p + ff_p.unsqueeze(1)
        out_s = out_s + ff_s
        return torch.cat([out_p, out_s.unsqueeze(2)], dim=2)


class SequenceEncoder(nn.Module):
    """Parallel Transformer over a padded token sequence, pooled into one token.

    ``n_layers`` residual :class:`ParallelBlock` s (``x + block(x)``) with a padding mask,
    then the mean and the max over the **real** positions only (the released code averages
    padding in), concatenated and projected to one ``dim`` vector. An empty sequence pools
    to zeros (its token is then the projection's bias).
    """

    def __init__(self, in_dim: int, dim: int, n_layers: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.project_in = nn.Linear(in_dim, dim, bias=False)
        self.blocks = nn.ModuleList(
            ParallelBlock(dim, n_heads, dim // n_heads, dropout=dropout) for _ in range(n_layers)
        )
        self.norm = GainLayerNorm(dim)
        self.project_out = nn.Linear(2 * dim, dim)

    def forward(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``embedded`` ``(B, L, in_dim)``, ``lengths`` ``(B,)`` -> ``(B, dim)``."""
        x = self.project_in(embedded)
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        for block in self.blocks:
            x = x + block(x, mask)
        x = self.norm(x)
        present = mask.unsqueeze(-1)
        mean = (x * present).sum(1) / lengths.clamp(min=1).to(x.dtype).unsqueeze(1)
        if x.shape[1]:
            peak = x.masked_fill(~present, torch.finfo(x.dtype).min).amax(1)
            peak = torch.where(lengths[:, None] > 0, peak, torch.zeros_like(peak))
        else:
            peak = torch.zeros_like(mean)
        return self.project_out(torch.cat([mean, peak], dim=-1))
