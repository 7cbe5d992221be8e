"""OneRank: a Transformer-native multi-task ranker (Tang et al., KDD 2026, arXiv 2606.16838).

The paper has no released code. Where it is silent, the readings taken are listed in
:class:`~sklearn_mtr.OneRankClassifier`'s docstring and in the user guide (``docs/onerank.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._constraints import InstanceOf, Interval, Options
from .._schema import FeatureSchema
from ._base import MultiTaskModule
from ._batch import batch_group
from ._blocks import MLP, InputEmbedding, tower_logits

CROSS_TASK_MASKS = ("cascade", "parallel", "full")
DETACH_MODES = ("input", "projection", "none")
SCORERS = ("bilinear", "dot", "mlp")
CANDIDATE_ACCESS = ("add", "type", "attention")


def cross_task_visibility(spec, n_tasks: int) -> torch.Tensor:
    """The ``(n_tasks, n_tasks)`` boolean task-visibility matrix ``A`` (row k reads column j).

    ``"cascade"``: lower-triangular in task order (a task reads itself and the tasks before
    it, the funnel order); ``"parallel"``: the identity; ``"full"``: all ones. Any other
    mix ("hybrid", e.g. a chain over some tasks with the rest parallel) is given as the
    matrix itself; its diagonal must be true (a task always reads itself).
    """
    if isinstance(spec, str):
        if spec == "cascade":
            return torch.ones(n_tasks, n_tasks).tril().bool()
        if spec == "parallel":
            return torch.eye(n_tasks, dtype=torch.bool)
        if spec == "full":
            return torch.ones(n_tasks, n_tasks, dtype=torch.bool)
        raise ValueError(f"cross_task_mask={spec!r} is not one of {CROSS_TASK_MASKS} or a (n_tasks, n_tasks) matrix.")
    try:
        matrix = np.asarray(spec, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"cross_task_mask must be one of {CROSS_TASK_MASKS} or a 0/1 matrix, got {spec!r}.") from None
    if matrix.shape != (n_tasks, n_tasks) or not np.isin(matrix, (0.0, 1.0)).all():
        raise ValueError(
            f"cross_task_mask must be a ({n_tasks}, {n_tasks}) matrix of 0/1 for {n_tasks} tasks, got {matrix.tolist()}."
        )
    if not np.all(np.diag(matrix) == 1):
        raise ValueError("cross_task_mask must have ones on its diagonal: a task always reads itself.")
    return torch.from_numpy(matrix.astype(bool))


class EncoderBlock(nn.Module):
    """Pre-LN Transformer block run the shared-prefix way.

    The prefix (context field tokens and history) attends to itself under ``prefix_allowed``;
    every candidate group (candidate token then the K task tokens) attends to the prefix
    keys/values of the same layer plus its own tokens under the tiny ``group_allowed`` mask.
    One set of weights serves all tokens. Cost per layer is ``O(H^2 + N (K+1) (H + K + 1))``.
    """

    def __init__(self, d_model: int, n_heads: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_mult * d_model), nn.GELU(), nn.Linear(ffn_mult * d_model, d_model)
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(..., L, d)`` -> q, k, v each ``(..., heads, L, d_head)``."""
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        shape = (*x.shape[:-1], self.n_heads, -1)
        return tuple(t.reshape(shape).transpose(-2, -3) for t in (q, k, v))

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., heads, L, d_head)`` -> ``(..., L, d)``."""
        x = x.transpose(-2, -3)
        return x.reshape(*x.shape[:-2], -1)

    def forward(
        self,
        prefix: torch.Tensor,
        prefix_allowed: torch.Tensor,
        prefix_valid: torch.Tensor,
        groups: torch.Tensor,
        group_allowed: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``prefix`` (R, H, d), ``prefix_allowed`` (R, H, H) bool, ``prefix_valid`` (R, H) bool
        (keys a group may read), ``groups`` (R, N, T, d), ``group_allowed`` (T, T) bool."""
        n_prefix = prefix.shape[1]
        qg, kg, vg = self._heads(groups)  # (R, N, heads, T, dh)
        scale = 1.0 / math.sqrt(qg.shape[-1])
        scores = (qg @ kg.transpose(-1, -2)) * scale
        scores = scores.masked_fill(~group_allowed, float("-inf"))
        if n_prefix:
            qp, kp, vp = self._heads(prefix)  # (R, heads, H, dh)
            attn = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=prefix_allowed[:, None])
            prefix = prefix + self.dropout(self.out(self._merge(attn)))
            # Group queries read the prefix keys of this layer: one joint softmax over
            # [prefix keys ; own group keys], never materialising the S x S mask.
            to_prefix = torch.einsum("rnhtd,rhkd->rnhtk", qg, kp) * scale
            to_prefix = to_prefix.masked_fill(~prefix_valid[:, None, None, None, :], float("-inf"))
            probs = torch.softmax(torch.cat([to_prefix, scores], dim=-1), dim=-1)
            mixed = torch.einsum("rnhtk,rhkd->rnhtd", probs[..., :n_prefix], vp) + probs[..., n_prefix:] @ vg
        else:
            mixed = torch.softmax(scores, dim=-1) @ vg
        groups = groups + self.dropout(self.out(self._merge(mixed)))
        groups = groups + self.dropout(self.ffn(self.norm2(groups)))
        if n_prefix:
            prefix = prefix + self.dropout(self.ffn(self.norm2(prefix)))
        return prefix, groups


class CrossTaskAttention(nn.Module):
    """Masked task-to-task attention with the other tasks' inputs detached.

    ``h~_k = sum_j A[k, j] softmax_j(q_k . key_j) val_j``, ``h^_k = LN(W_O h~_k) + h_k``,
    ``z_k = LN(FFN(h^_k)) + h^_k``; one set of weights shared by the K positions.
    ``detach="input"`` computes the off-diagonal keys/values from ``h_j.detach()`` (the
    projections still learn from them); ``"projection"`` detaches the projected keys/values
    (which would stop the other tasks' pairs from training the shared projections); ``"none"`` detaches nothing (ablation V4).
    """

    def __init__(self, d_model: int, n_heads: int, ffn_mult: int, visibility: torch.Tensor, detach: str) -> None:
        super().__init__()
        if detach not in DETACH_MODES:
            raise ValueError(f"detach={detach!r} is not one of {DETACH_MODES}.")
        self.n_heads, self.detach = n_heads, detach
        self.query, self.value, self.out = (nn.Linear(d_model, d_model) for _ in range(3))
        # no key bias: it adds q_k . b to every key's score alike, which the softmax cancels
        # (its gradient is always zero)
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_mult * d_model), nn.GELU(), nn.Linear(ffn_mult * d_model, d_model)
        )
        self.register_buffer("visibility", visibility.clone())

    def _pairs(self, proj: nn.Linear, h: torch.Tensor) -> torch.Tensor:
        """Keys or values per (query task k, source task j): ``(R, K, K, d)``, live on the
        diagonal, detached off it."""
        live = proj(h)
        if self.detach == "none":
            return live[:, None].expand(-1, h.shape[1], -1, -1)
        const = proj(h.detach()) if self.detach == "input" else live.detach()
        eye = torch.eye(h.shape[1], dtype=torch.bool, device=h.device)[None, :, :, None]
        return torch.where(eye, live[:, None], const[:, None])

    def forward(self, h: torch.Tensor, visibility: torch.Tensor | None = None) -> torch.Tensor:
        """``h`` (R, K, d) -> ``z`` (R, K, d); ``visibility`` overrides the stored mask."""
        allowed = self.visibility if visibility is None else visibility
        R, K, d = h.shape
        dh = d // self.n_heads
        q = self.query(h).view(R, K, self.n_heads, dh)
        keys = self._pairs(self.key, h).reshape(R, K, K, self.n_heads, dh)
        values = self._pairs(self.value, h).reshape(R, K, K, self.n_heads, dh)
        scores = torch.einsum("rqhd,rqshd->rqhs", q, keys) / math.sqrt(dh)
        scores = scores.masked_fill(~allowed.to(h.device)[None, :, None, :], float("-inf"))
        mixed = torch.einsum("rqhs,rqshd->rqhd", torch.softmax(scores, dim=-1), values).reshape(R, K, d)
        h = self.norm1(self.out(mixed)) + h
        return self.norm2(self.ffn(h)) + h


class TaskHead(nn.Module):
    """What task ``k`` owns before scoring: its task token ``t_k``, the query map
    ``q_k = LN(W_k s + b_k)`` of the situational descriptor, and its cross-attention
    ``MHCA_k`` over the request's candidates.

    With ``over_requests=False`` (every row a request of one candidate) the attention has a
    single key, so its softmax is 1 and ``q_k`` gets no gradient: the head is then the one
    linear map ``MHCA_k`` reduces to, and no query map is built.
    """

    def __init__(self, d_model: int, n_heads: int, over_requests: bool = True) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.empty(d_model))
        if over_requests:
            self.query = nn.Linear(d_model, d_model)
            self.query_norm = nn.LayerNorm(d_model)
            self.attention = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        else:
            self.project = nn.Linear(d_model, d_model)  # W_O (W_V r + b_V) + b_O of one key
        self.over_requests = over_requests
        nn.init.normal_(self.token, std=0.02)

    def forward(self, situation: torch.Tensor | None, r: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``situation`` (R, d), ``r`` (R, N, d), ``valid`` (R, N) -> ``h_k`` (R, d)."""
        if not self.over_requests:
            return self.project(r[:, 0])
        q = self.query_norm(self.query(situation))[:, None]
        out, _ = self.attention(q, r, r, key_padding_mask=~valid, need_weights=False)
        return out[:, 0]


class Scorer(nn.Module):
    """Matching scorer ``s = z . (W r) / sqrt(d) + b`` on the input ``[z ; r]``.

    ``"bilinear"``: ``W`` starts at the identity (the paper's scorer at step 0);
    ``"dot"``: ``W = I`` fixed (the paper's form); ``"mlp"``: ``MLP([z ; r])``. The bias
    ``b`` starts at ``bias_init`` (the logit of the task's base rate).
    """

    def __init__(self, kind: str, d_model: int, bias_init: float) -> None:
        super().__init__()
        if kind not in SCORERS:
            raise ValueError(f"scorer={kind!r} is not one of {SCORERS}.")
        self.kind, self.d_model, self.bias_init = kind, d_model, float(bias_init)
        if kind == "mlp":
            self.mlp = MLP(2 * d_model, (d_model,), activation="gelu", output_dim=1)
        else:
            self.weight = nn.Parameter(torch.empty(d_model, d_model)) if kind == "bilinear" else None
            self.bias = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.kind == "mlp":
            for layer in self.mlp:
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
            nn.init.constant_(self.mlp[-1].bias, self.bias_init)
            return
        if self.weight is not None:
            nn.init.eye_(self.weight)
        nn.init.constant_(self.bias, self.bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "mlp":
            return self.mlp(x)
        z, r = x.split(self.d_model, dim=-1)
        if self.weight is not None:
            r = r @ self.weight.T
        return (z * r).sum(-1, keepdim=True) / math.sqrt(self.d_model) + self.bias


class LogTemperature(nn.Module):
    """A task's learnable InfoNCE temperature, stored as its log."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(math.log(temperature)))

    def forward(self) -> torch.Tensor:
        return self.value.exp().clamp(1e-3, 1e3)


class RequestLayout:
    """Where each row of a flat batch sits in the padded ``(R, N)`` request grid.

    Rows sharing a ``group`` code form one request (any order in the batch); without codes
    every row is its own request.
    """

    def __init__(self, group: torch.Tensor | None, n_rows: int, device: torch.device) -> None:
        if group is None:
            self.request = torch.arange(n_rows, device=device)
            counts = torch.ones(n_rows, dtype=torch.long, device=device)
        else:
            _, self.request = torch.unique(group, return_inverse=True)
            counts = torch.bincount(self.request)
        order = torch.argsort(self.request, stable=True)
        starts = counts.cumsum(0) - counts
        self.slot = torch.empty_like(self.request)
        self.slot[order] = torch.arange(n_rows, device=device) - starts[self.request[order]]
        self.first_row = order[starts]  # request-level inputs are read from this row
        self.n_requests, self.n_candidates = len(counts), int(counts.max()) if n_rows else 0
        self.valid = torch.arange(self.n_candidates, device=device)[None, :] < counts[:, None]

    def to_grid(self, rows: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """``(B, ...)`` per row -> ``(R, N, ...)``, padding filled with ``fill``."""
        grid = rows.new_full((self.n_requests, self.n_candidates, *rows.shape[1:]), fill)
        grid[self.request, self.slot] = rows
        return grid

    def to_rows(self, grid: torch.Tensor) -> torch.Tensor:
        return grid[self.request, self.slot]


class OneRank(MultiTaskModule):
    """Task tokens inside one shared Transformer, per-task situational cross-attention over the
    request's candidates, masked cross-task attention, and a matching scorer.

    Per request: the prefix (context field tokens, then history tokens with positions) and,
    for every candidate, a group ``[candidate token, t_1 .. t_K]``. Mask: the prefix
    reads itself (field tokens bidirectionally, history causally); a candidate token reads
    the prefix and itself (not its task tokens); task token ``t_k`` reads the prefix,
    its candidate and itself; groups never read each other. ``r_k^i`` is ``t_k``'s output
    in group ``i``. ``candidate_access`` sets how ``t_k`` reaches its candidate: ``"add"``
    feeds it ``t_k + e_i^C``, ``"type"`` adds a learned type vector to the candidate token,
    ``"attention"`` leaves ``t_k`` to find it by attention alone. Then ``q_k = LN(W_k s)``
    from the situational descriptor ``s = LN(Linear(context fields))``,
    ``h_k = MHCA_k(q_k, {r_k^i})``, ``z = CrossTask(h)``, and
    ``logit_k^i = scorer_k([z_k ; r_k^i])``.

    Rows of the batch sharing a request code (``batch.group`` of a
    :class:`~sklearn_mtr.extending.Batch`) form a request; the request-level inputs
    (context fields, history) are read from its first row (the estimator checks that they
    are constant within a request). With ``requests=False`` (per-row mode) the codes are
    ignored and every row is a request of one candidate; the descriptor, query maps,
    candidate attention and temperatures would get no gradient there (a softmax over one
    key, no InfoNCE), so they are not built and ``h_k`` is a linear map of ``r_k``. ``forward`` returns
    ``(logits, aux)``, ``aux`` being ``infonce_weight * sum_k InfoNCE_k`` within requests
    when ``forward`` is given the labels (training), else None.

    Task ``k`` privately owns its task token, query map, cross-attention (or per-row
    projection), scorer and temperature (``task_parameters``); with ``detach="none"`` and another task reading ``k``
    through the cross-task mask, only its scorer and temperature stay private.
    """

    # models pickled before these options existed: requests on, candidate by attention only
    requests, candidate_access = True, "attention"

    _parameter_constraints: ClassVar[dict[str, list]] = {
        **{name: [Interval(Integral, 1)] for name in ("d_model", "n_layers", "n_heads", "ffn_mult", "max_history")},
        "context_features": [InstanceOf((list, tuple), "a list of column names")],
        "cross_task_mask": [
            Options(*CROSS_TASK_MASKS),
            InstanceOf((list, tuple, np.ndarray, torch.Tensor), "a (n_tasks, n_tasks) matrix of 0/1"),
        ],
        "detach": [Options(*DETACH_MODES)],
        "scorer": [Options(*SCORERS)],
        "infonce_weight": [Interval(Real, 0)],
        "temperature": [Interval(Real, 0, closed="right")],
        "base_rates": [Options(None), InstanceOf((list, tuple, np.ndarray), "one positive rate per task")],
        "candidate_access": [Options(*CANDIDATE_ACCESS)],
        "requests": [Options(True, False)],
    }

    def __init__(
        self,
        schema: FeatureSchema,
        n_tasks: int,
        *,
        embedding_dim: int = 16,
        d_model: int = 32,
        n_layers: int = 2,
        n_heads: int = 2,
        ffn_mult: int = 4,
        dropout: float = 0.0,
        context_features: Sequence[str] = (),
        max_history: int = 50,
        cross_task_mask="cascade",
        detach: str = "input",
        scorer: str = "bilinear",
        infonce_weight: float = 0.1,
        temperature: float = 1.0,
        base_rates: Sequence[float] | None = None,
        candidate_access: str = "add",
        requests: bool = True,
    ) -> None:
        super().__init__()
        self.check_hyperparameters(locals())
        d_model, n_heads, ffn_mult, max_history = int(d_model), int(n_heads), int(ffn_mult), int(max_history)
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be a multiple of n_heads={n_heads}.")
        self.n_tasks, self.d_model, self.max_history = n_tasks, d_model, max_history
        self.candidate_access, self.requests = candidate_access, bool(requests)
        self.infonce_weight = float(infonce_weight)
        self.embedding = InputEmbedding(schema, embedding_dim, n_tasks)
        self._split_columns(schema, context_features)
        e = embedding_dim

        # candidate token: one projection of the candidate fields
        w = self.embedding.numeric_width  # 1 per number, or its embedding
        cand_in = e * (len(self.cand_cat) + len(self.cand_text) + self.cand_sparse) + len(self.cand_num) * w
        if cand_in == 0:
            raise ValueError("OneRank needs at least one candidate feature: every column is a context feature.")
        self.candidate = nn.Linear(cand_in, d_model)
        # "type": a learned token-type vector marks the candidate token, which otherwise shares
        # its projection with the history tokens and cannot be told apart by attention
        self.candidate_type = nn.Parameter(torch.randn(d_model) * 0.02) if candidate_access == "type" else None
        # context field tokens: a projection per embedded field, and per number (value * w_f + b_f
        # for a standardised value)
        n_emb_fields = len(self.ctx_cat) + len(self.ctx_text)
        self.field_weight = nn.Parameter(torch.randn(n_emb_fields, e, d_model) / math.sqrt(e))
        self.field_bias = nn.Parameter(torch.zeros(n_emb_fields, d_model))
        self.number_weight = nn.Parameter(torch.randn(len(self.ctx_num), w, d_model) / math.sqrt(w))
        self.number_bias = nn.Parameter(torch.zeros(len(self.ctx_num), d_model))
        # situational descriptor from the context fields; a learned vector without any
        # (per-row mode has no candidate attention to query, so no descriptor)
        ctx_in = e * n_emb_fields + len(self.ctx_num) * w
        with_situation = self.requests and ctx_in
        self.situation = nn.Sequential(nn.Linear(ctx_in, d_model), nn.LayerNorm(d_model)) if with_situation else None
        self.situation_const = nn.Parameter(torch.randn(d_model) * 0.02) if self.requests and not ctx_in else None
        # history: item tokens through the candidate projection's block of the shared item column
        # (Proj_shared(phi(v_t)) + p_t), or a projection of their own
        self.history_proj = nn.ModuleDict()
        self.positions = nn.ModuleDict()
        for seq in schema.sequences:
            if seq.shared_with is None or seq.shared_with not in self._cand_block:
                self.history_proj[seq.name] = nn.Linear(e, d_model)
            self.positions[seq.name] = nn.Embedding(max_history, d_model)
            nn.init.normal_(self.positions[seq.name].weight, std=0.02)

        self.blocks = nn.ModuleList(EncoderBlock(d_model, n_heads, ffn_mult, dropout) for _ in range(int(n_layers)))
        self.final_norm = nn.LayerNorm(d_model)
        self.heads = nn.ModuleList(TaskHead(d_model, n_heads, self.requests) for _ in range(n_tasks))
        self.cross_task = CrossTaskAttention(
            d_model, n_heads, ffn_mult, cross_task_visibility(cross_task_mask, n_tasks), detach
        )
        rates = np.full(n_tasks, 0.5) if base_rates is None else np.clip(np.asarray(base_rates, float), 1e-4, 1 - 1e-4)
        if rates.shape != (n_tasks,):
            raise ValueError(f"base_rates must hold {n_tasks} values, got {base_rates!r}.")
        self.towers = nn.ModuleList(Scorer(scorer, d_model, math.log(r / (1 - r))) for r in rates)
        # per-row mode has no InfoNCE (a request of one candidate), so no temperatures
        self.temperatures = nn.ModuleList(LogTemperature(temperature) for _ in range(n_tasks if self.requests else 0))
        # In-group mask over [candidate, t_1..t_K]: the candidate reads itself only; t_k reads
        # the candidate and itself (mutual invisibility).
        allowed = torch.eye(n_tasks + 1, dtype=torch.bool)
        allowed[:, 0] = True
        self.register_buffer("group_allowed", allowed, persistent=False)

    # ------------------------------------------------------------------ columns
    def _split_columns(self, schema: FeatureSchema, context_features: Sequence[str]) -> None:
        context = [str(c) for c in context_features]
        sequences = {s.name for s in schema.sequences}
        texts = [t.name for t in schema.texts]
        numeric_base = [n.removesuffix("__missing") for n in schema.numeric_names]
        known = set(schema.categorical_names) | set(texts) | set(numeric_base)
        for name in context:
            if name in sequences:
                raise ValueError(
                    f"context feature {name!r} is a sequence feature; sequences always form the history prefix."
                )
            if name not in known:
                raise ValueError(f"context feature {name!r} is not a column of X (known: {sorted(known)}).")
        ctx = set(context)
        self.ctx_cat = [i for i, n in enumerate(schema.categorical_names) if n in ctx]
        self.cand_cat = [i for i, n in enumerate(schema.categorical_names) if n not in ctx]
        self.ctx_text = [i for i, n in enumerate(texts) if n in ctx]
        self.cand_text = [i for i, n in enumerate(texts) if n not in ctx]
        self.ctx_num = [i for i, n in enumerate(numeric_base) if n in ctx]
        self.cand_num = [i for i, n in enumerate(numeric_base) if n not in ctx]
        self.cand_sparse = int(schema.sparse is not None)
        e = self.embedding.embedding_dim
        # column slice of each candidate categorical field inside the candidate projection
        self._cand_block = {schema.categorical_names[i]: slice(j * e, (j + 1) * e) for j, i in enumerate(self.cand_cat)}
        self.schema = schema

    def _field_embeddings(self, batch, cat_idx, text_idx) -> torch.Tensor | None:
        """``(B, n_fields, e)``: categorical fields then text fields (weighted bags)."""
        parts = []
        if cat_idx:
            ids = batch["categorical"][:, cat_idx] + self.embedding.offsets[cat_idx]
            parts.append(self.embedding.categorical(ids))
        for i in text_idx:
            parts.append(self.embedding.bags.field(batch, f"text__{self.schema.texts[i].name}").unsqueeze(1))
        return torch.cat(parts, dim=1) if parts else None

    # ------------------------------------------------------------------ tokens
    def _candidate_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        fields = self._field_embeddings(batch, self.cand_cat, self.cand_text)
        parts = [] if fields is None else [fields.flatten(1)]
        if self.cand_sparse:  # a sparse X: its columns are candidate features
            parts.append(self.embedding.bags.field(batch, "sparse"))
        if self.cand_num:
            parts.append(self.embedding.numeric_fields(batch, self.cand_num).flatten(1))
        return self.candidate(torch.cat(parts, dim=1))

    def _situation(self, request: dict[str, torch.Tensor], fields: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if not self.requests:
            return None
        if self.situation is None:
            return self.situation_const.expand(n, -1)
        parts = [] if fields is None else [fields.flatten(1)]
        if self.ctx_num:
            parts.append(self.embedding.numeric_fields(request, self.ctx_num).flatten(1))
        return self.situation(torch.cat(parts, dim=1))

    def _history(self, batch: dict[str, torch.Tensor], seq) -> tuple[torch.Tensor, torch.Tensor]:
        """The last ``max_history`` items of one sequence: tokens ``(R, M, d)``, valid ``(R, M)``."""
        ids, lengths = batch[f"seq__{seq.name}"], batch[f"len__{seq.name}"]
        width = ids.shape[1]
        m = min(self.max_history, int(lengths.max()) if len(lengths) else 0)
        steps = torch.arange(m, device=ids.device)
        kept = lengths.clamp(max=m)
        index = ((lengths - kept)[:, None] + steps[None, :]).clamp(max=max(width - 1, 0))
        valid = steps[None, :] < kept[:, None]
        items = torch.where(valid, ids.gather(1, index), torch.zeros_like(index)) if m else index
        if seq.shared_with is None:
            embedded = self.embedding.own_tables[f"seq__{seq.name}"](items)
        else:
            embedded = self.embedding.categorical(items + self.embedding._offset_of[seq.shared_with])
        if seq.name in self.history_proj:
            tokens = self.history_proj[seq.name](embedded)
        else:
            block = self._cand_block[seq.shared_with]
            tokens = F.linear(embedded, self.candidate.weight[:, block], self.candidate.bias)
        return tokens + self.positions[seq.name](steps)[None], valid

    def _prefix(self, batch: dict[str, torch.Tensor], fields: torch.Tensor | None):
        """Prefix tokens ``(R, H, d)``, allowed ``(R, H, H)`` and key-valid ``(R, H)`` masks."""
        n = len(next(iter(batch.values())))
        device = self.group_allowed.device
        tokens = []
        if fields is not None:
            tokens.append(torch.einsum("bfe,fed->bfd", fields, self.field_weight) + self.field_bias)
        if self.ctx_num:
            numbers = self.embedding.numeric_fields(batch, self.ctx_num)
            tokens.append(torch.einsum("bcw,cwd->bcd", numbers, self.number_weight) + self.number_bias)
        n_fields = sum(t.shape[1] for t in tokens)
        valid = [torch.ones(n, n_fields, dtype=torch.bool, device=device)]
        for seq in self.schema.sequences:
            seq_tokens, seq_valid = self._history(batch, seq)
            tokens.append(seq_tokens)
            valid.append(seq_valid)
        if not tokens:
            return None, None, None
        tokens, valid = torch.cat(tokens, dim=1), torch.cat(valid, dim=1)
        H = tokens.shape[1]
        rows = torch.arange(H, device=device)
        # field tokens read every field token; history tokens read fields and earlier history
        structure = (rows[None, :] <= rows[:, None]) | (rows[None, :] < n_fields)
        structure &= ~((rows[:, None] < n_fields) & (rows[None, :] >= n_fields))
        allowed = structure[None] & valid[:, None, :]
        allowed |= torch.eye(H, dtype=torch.bool, device=device)[None]  # padded rows read themselves
        return tokens, allowed, valid

    # ------------------------------------------------------------------ the model
    def initial_tokens(self, batch: dict[str, torch.Tensor]):
        """The encoder's input: ``prefix`` (R, H, d) with its ``allowed`` (R, H, H) and
        key-valid (R, H) masks, ``groups`` (R, N, K+1, d), the layout and the situational
        descriptor (R, d). The prefix holds the context field tokens first, then history."""
        n_rows = len(next(iter(batch.values())))
        group = batch_group(batch) if self.requests else None  # per-row mode: request codes are ignored
        layout = RequestLayout(group, n_rows, self.group_allowed.device)
        candidates = layout.to_grid(self._candidate_tokens(batch))  # (R, N, d)
        request = {k: v[layout.first_row] for k, v in batch.items()}
        ctx_fields = self._field_embeddings(request, self.ctx_cat, self.ctx_text)
        prefix, prefix_allowed, prefix_valid = self._prefix(request, ctx_fields)
        R, N = layout.n_requests, layout.n_candidates
        if getattr(self, "candidate_type", None) is not None:
            candidates = candidates + self.candidate_type
        tokens = torch.stack([head.token for head in self.heads]).to(candidates.dtype)
        tokens = tokens[None, None].expand(R, N, -1, -1)
        if self.candidate_access == "add":
            # t_k + e_i^C: the task token starts from its candidate instead of finding it by
            # attention, whose weight on the candidate shrinks as the history grows
            tokens = tokens + candidates[:, :, None]
        groups = torch.cat([candidates[:, :, None], tokens], dim=2)
        if prefix is None:
            prefix = candidates.new_zeros(R, 0, self.d_model)
            prefix_allowed = torch.zeros(R, 0, 0, dtype=torch.bool, device=candidates.device)
            prefix_valid = torch.zeros(R, 0, dtype=torch.bool, device=candidates.device)
        situation = self._situation(request, ctx_fields, R)
        return prefix, prefix_allowed, prefix_valid, groups, layout, situation

    @property
    def n_field_tokens(self) -> int:
        """Number of context field tokens at the start of the prefix."""
        return len(self.ctx_cat) + len(self.ctx_text) + len(self.ctx_num)

    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, RequestLayout, torch.Tensor]:
        """Encoder outputs at the task tokens ``r`` ``(R, N, K, d)``, the layout, and the
        situational descriptor ``(R, d)``."""
        prefix, prefix_allowed, prefix_valid, groups, layout, situation = self.initial_tokens(batch)
        for block in self.blocks:
            prefix, groups = block(prefix, prefix_allowed, prefix_valid, groups, self.group_allowed)
        return self.final_norm(groups[:, :, 1:]), layout, situation

    def task_representations(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, RequestLayout]:
        """``r`` ``(R, N, K, d)``, ``z`` ``(R, K, d)`` after cross-task attention, and the layout."""
        r, layout, situation = self.encode(batch)
        h = torch.stack([head(situation, r[:, :, k], layout.valid) for k, head in enumerate(self.heads)], dim=1)
        return r, self.cross_task(h), layout

    def _tower_inputs(self, batch):
        r, z, layout = self.task_representations(batch)
        rows_r = layout.to_rows(r)  # (B, K, d)
        rows_z = z[layout.request]
        return [torch.cat([rows_z[:, k], rows_r[:, k]], dim=1) for k in range(self.n_tasks)], layout

    def tower_inputs(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Each task's scorer input ``[z_k ; r_k^i]`` per row, ``(B, 2 d)``."""
        return self._tower_inputs(batch)[0]

    def task_modules(self, k: int) -> list[nn.Module]:
        modules = [self.towers[k], *self.temperatures[k : k + 1]]
        visibility = self.cross_task.visibility
        read_by_others = bool(visibility[:, k].sum() > 1)
        if self.cross_task.detach != "none" or not read_by_others:
            modules.append(self.heads[k])
        return modules

    def infonce(self, logits: torch.Tensor, labels: torch.Tensor, layout: RequestLayout) -> torch.Tensor | None:
        """``sum_k InfoNCE_k`` within requests (multi-positive average), skipping requests
        without a labelled positive and negative; None when no request qualifies."""
        scores = layout.to_grid(logits.float())  # (R, N, K)
        y = layout.to_grid(labels.float(), fill=float("nan"))
        labelled = ~torch.isnan(y)
        positive = labelled & (y == 1)
        usable = positive.any(1) & (labelled & (y == 0)).any(1)  # (R, K)
        if not usable.any():
            return None
        tau = torch.stack([t() for t in self.temperatures])
        log_p = torch.log_softmax((scores / tau).masked_fill(~labelled, float("-inf")), dim=1)
        per_request = -torch.where(positive, log_p, 0.0).sum(1) / positive.sum(1).clamp(min=1)
        per_task = torch.where(usable, per_request, 0.0).sum(0) / usable.sum(0).clamp(min=1)
        return self.infonce_weight * per_task.sum()

    def forward(
        self, batch: dict[str, torch.Tensor], labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        inputs, layout = self._tower_inputs(batch)
        logits = self.embedding.bags.add_to(tower_logits(self.towers, inputs), batch)
        aux = None
        if labels is not None and self.requests and self.infonce_weight > 0 and layout.n_candidates > 1:
            aux = self.infonce(logits, labels, layout)
        return logits, aux
