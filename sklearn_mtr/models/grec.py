"""GRec: the Generalist Recommender (Wang et al., CIKM 2023, arXiv 2504.05318)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .._schema import FeatureSchema
from ._base import MultiTaskModule
from ._blocks import InputEmbedding, check_dropout, check_sizes
from ._moe import SwitchMoE, load_balancing_loss, route, router_z_loss
from ._transformer import ParallelBlock, SequenceEncoder

_ROUTING = ("task", "sentence", "token")


def _leaky_mlp(in_dim: int, sizes: Sequence[int], dropout: float) -> nn.Sequential:
    """``[Linear -> LeakyReLU(0.2) -> (Dropout)]`` per size (the released heads' activation)."""
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [nn.Linear(in_dim, size), nn.LeakyReLU(0.2)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_dim = size
    return nn.Sequential(*layers)


class GRec(MultiTaskModule):
    """Token sentences per (sample, task), mixed by a parallel Transformer block, routed
    through a sparse task-sentence mixture of experts, scored by a shared head.

    Per sample the tokens are (each absent when its inputs are):

    - **context** (wide & deep): the categorical columns' embeddings through
      ``Linear -> LeakyReLU`` (deep half) and the numeric columns through
      ``BatchNorm -> Linear -> LeakyReLU`` (wide half), concatenated;
    - one **behaviour-sequence** token per sequence column: a parallel Transformer
      (multi-query attention, rotary positions, padding mask) over the last
      ``max_sequence_length`` items, mean ‖ max pooled over the real positions;
    - one **text** token per text column: a learned ``Linear(embedding_dim, d_model)`` of the
      column's weighted bag of hashed word uni- and bigrams (TF-IDF weights, the encoding of
      every model; ``n_text_layers`` and ``max_text_length`` no longer apply to it); or, for
      the columns of ``sentence_dims``, a learned ``Linear(d, d_model)`` of a precomputed
      sentence vector read from ``batch["sentence__<column>"]`` (``(B, d)`` floats, e.g. a
      frozen pretrained encoder's);
    - one **sparse** token when X was a sparse matrix: a learned projection of its columns'
      weighted bag;
    - the **candidate item**: the embeddings of the ``item_features`` columns, projected;
    - the **task token**: one learned vector per task, plus (optionally) a projection of
      the ``task_features`` columns' embeddings (GRec's auxiliary task tokens).

    Each sentence goes through ``x + ParallelBlock(x)`` (the released mixing block has no
    residual; one is added), then ``x + Dropout(MoE(RMSNorm(x)))``, is flattened and read by
    a shared ``LeakyReLU`` head; ``towers[k]`` (task ``k``'s output unit) turns it into the
    logit. The shared tokens are computed once per sample, and so is every per-token step of
    the mixing block on them (normalisation, projections, feed-forward): per (sample, task)
    only the task token's attention, the MoE and the head run
    (:meth:`ParallelBlock.forward_shared_prefix`, equal to mixing each sentence).

    ``forward`` returns ``(logits, aux_loss)`` with ``aux_loss = balance_loss_coef *
    load balancing + z_loss_coef * router z-loss``. The logits include the wide term of
    the text columns and sparse X (:class:`~sklearn_mtr.models._wide.BagInputs`).

    Routing (the paper's "task-sentence" routing is read three ways):

    - ``"task"``: the router reads the task embedding (the learned task vector, without
      ``task_features``), so each task's expert path is chosen once per batch, not per
      sentence (Task-MoE, Kudugunta et al. 2021, arXiv 2110.03742). The shared tokens do not
      attend to the task token (it reads them and itself), so their mixed states are the
      same for every task: per sample the mixing runs once, each *distinct* expert on the
      tasks' paths runs once on the shared tokens (at most ``n_experts`` runs however many
      tasks), and the head's first layer is folded over the experts (it is linear), so a task
      adds only its token's attention over the sentence and a few ``head_hidden_sizes[0]``-wide
      sums. The task token skips the experts (its path is its own). Capacity does not
      apply: an expert runs on every row of its tasks.
    - ``"sentence"``: each (sample, task) sentence is routed as a unit on its post-mixing
      task-token state, so all its tokens go to the same experts and capacity counts
      sentences (a sentence is never partly dropped, unlike the released code's per-token
      capacity). Every token attends to every token; the MoE and the head run per sentence.
    - ``"token"``: every token of every sentence is routed on its own state (the released
      code's mode).

    ``forward(batch, tasks)`` scores only the tasks listed (all when None): only their
    sentences are built.

    Parameter groups: task ``k`` owns its task token and its output tower; everything else
    (embeddings, encoders, mixing block, router, experts, shared head) is shared.
    """

    def __init__(
        self,
        schema: FeatureSchema,
        n_tasks: int,
        *,
        embedding_dim: int = 16,
        d_model: int = 32,
        n_heads: int = 2,
        n_sequence_layers: int = 1,
        n_text_layers: int = 1,
        max_sequence_length: int = 50,
        max_text_length: int = 32,
        item_features: Sequence[str] | None = None,
        task_features: Sequence[str] | None = None,
        n_experts: int = 4,
        expert_hidden_dim: int | None = None,
        top_k: int = 1,
        routing: str = "sentence",
        capacity_factor: float | None = 1.25,
        router_jitter: float = 0.1,
        balance_loss_coef: float = 1e-4,
        z_loss_coef: float = 1e-4,
        head_hidden_sizes: Sequence[int] = (64,),
        tower_hidden_sizes: Sequence[int] = (),
        dropout: float = 0.0,
        sentence_dims: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        sentence_dims = dict(sentence_dims or {})
        texts = [t.name for t in schema.texts]
        for name, dim in sentence_dims.items():
            if name not in texts:
                raise ValueError(f"sentence_dims names {name!r}, which is not a text column; text columns: {texts}.")
            if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
                raise ValueError(f"sentence_dims[{name!r}] must be a positive integer, got {dim!r}.")
        for name, value in (
            ("d_model", d_model),
            ("n_heads", n_heads),
            ("max_sequence_length", max_sequence_length),
            ("max_text_length", max_text_length),
            ("n_experts", n_experts),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        for name, value in (("n_sequence_layers", n_sequence_layers), ("n_text_layers", n_text_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise ValueError(
                f"d_model={d_model} must be a multiple of n_heads={n_heads} with an even head width "
                "(rotary positions rotate pairs of features)."
            )
        if routing not in _ROUTING:
            raise ValueError(f"routing must be one of {_ROUTING}, got {routing!r}.")
        for name, value in (("balance_loss_coef", balance_loss_coef), ("z_loss_coef", z_loss_coef)):
            if not value >= 0:
                raise ValueError(f"{name} must be non-negative, got {value!r}.")
        hidden = d_model if expert_hidden_dim is None else expert_hidden_dim
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
            raise ValueError(f"expert_hidden_dim must be a positive integer or None, got {expert_hidden_dim!r}.")
        check_dropout(dropout)
        head_sizes = check_sizes(head_hidden_sizes, "head_hidden_sizes")
        tower_sizes = check_sizes(tower_hidden_sizes, "tower_hidden_sizes")

        self.n_tasks = n_tasks
        self.d_model, self.routing = d_model, routing
        self.max_sequence_length, self.max_text_length = max_sequence_length, max_text_length
        self.balance_loss_coef, self.z_loss_coef = balance_loss_coef, z_loss_coef
        self.embedding = InputEmbedding(schema, embedding_dim, n_tasks)  # the tables (shared item rows included)
        names = list(schema.categorical_names)
        item = self._columns(item_features, names, "item_features")
        if item_features is None:  # the columns whose vocabulary a behaviour sequence shares
            item = [names.index(s.shared_with) for s in schema.sequences if s.shared_with is not None]
            item = sorted(set(item))
        task_cols = self._columns(task_features, names, "task_features")
        context = [j for j in range(len(names)) if j not in item]
        self.register_buffer("item_columns", torch.tensor(item, dtype=torch.long), persistent=False)
        self.register_buffer("task_columns", torch.tensor(task_cols, dtype=torch.long), persistent=False)
        self.register_buffer("context_columns", torch.tensor(context, dtype=torch.long), persistent=False)

        # context token: deep half on categorical embeddings, wide half on numeric columns
        n_numeric = schema.n_numeric * self.embedding.numeric_width  # numbers, or their embeddings
        deep_dim = (d_model + 1) // 2 if context and n_numeric else (d_model if context else 0)
        wide_dim = d_model - deep_dim if n_numeric else 0
        self.deep = (
            nn.Sequential(nn.Linear(len(context) * embedding_dim, deep_dim), nn.LeakyReLU(0.2)) if context else None
        )
        self.wide = (
            nn.Sequential(nn.BatchNorm1d(n_numeric), nn.Linear(n_numeric, wide_dim), nn.LeakyReLU(0.2))
            if n_numeric
            else None
        )
        self.sequence_encoders = nn.ModuleDict(
            {
                s.name: SequenceEncoder(embedding_dim, d_model, n_sequence_layers, n_heads, dropout)
                for s in schema.sequences
            }
        )
        self.text_encoders = nn.ModuleDict(
            {t.name: nn.Linear(embedding_dim, d_model) for t in schema.texts if t.name not in sentence_dims}
        )
        self.sparse_projection = nn.Linear(embedding_dim, d_model) if schema.sparse is not None else None
        # sentence vectors (frozen, computed outside) replace the word encoder: a learned projection
        self.sentence_projections = nn.ModuleDict(
            {name: nn.Linear(dim, d_model) for name, dim in sentence_dims.items()}
        )
        for name in sentence_dims:  # the deep bag is never read for these columns
            self.embedding.bags.deep[f"text__{name}"].requires_grad_(False)
        self.item = nn.Linear(len(item) * embedding_dim, d_model) if item else None
        self.task_tokens = nn.ParameterList(nn.Parameter(torch.randn(d_model) * 0.1) for _ in range(n_tasks))
        self.task_context = nn.Linear(len(task_cols) * embedding_dim, d_model, bias=False) if task_cols else None
        self.n_tokens = (
            int(self.deep is not None or self.wide is not None)
            + len(schema.sequences)
            + len(schema.texts)
            + int(self.sparse_projection is not None)
            + int(self.item is not None)
            + 1
        )

        self.mixing = ParallelBlock(d_model, n_heads, d_model // n_heads, dropout=dropout)
        self.moe_norm = nn.RMSNorm(d_model)
        self.moe = SwitchMoE(
            d_model,
            n_experts,
            hidden,
            top_k=top_k,
            capacity_factor=capacity_factor,
            router_jitter=router_jitter,
            dropout=dropout,
        )
        self.moe_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = _leaky_mlp(self.n_tokens * d_model, head_sizes, dropout)
        head_out = head_sizes[-1] if head_sizes else self.n_tokens * d_model
        self.towers = nn.ModuleList(
            nn.Sequential(
                _leaky_mlp(head_out, tower_sizes, dropout), nn.Linear(tower_sizes[-1] if tower_sizes else head_out, 1)
            )
            for _ in range(n_tasks)
        )

    @staticmethod
    def _columns(spec: Sequence[str] | None, names: list[str], what: str) -> list[int]:
        if spec is None:
            return []
        if isinstance(spec, str):
            spec = [spec]
        columns = []
        for name in spec:
            if str(name) not in names:
                raise ValueError(
                    f"{what} names {name!r}, which is not a categorical column; categorical columns: {names}."
                )
            columns.append(names.index(str(name)))
        if len(set(columns)) != len(columns):
            raise ValueError(f"{what} names a column twice: {list(spec)!r}.")
        return columns

    def task_modules(self, k: int) -> list[nn.Module]:
        return [self.towers[k]]

    def task_parameters(self, k: int) -> list[nn.Parameter]:
        return [self.task_tokens[k], *super().task_parameters(k)]

    # ------------------------------------------------------------------ tokens
    def _lookup(self, batch: dict[str, torch.Tensor], columns: torch.Tensor) -> torch.Tensor:
        """Embeddings of the chosen categorical columns, flattened ``(B, n * embedding_dim)``."""
        ids = batch["categorical"][:, columns] + self.embedding.offsets[columns]
        return self.embedding.categorical(ids).flatten(1)

    @staticmethod
    def _window(ids: torch.Tensor, lengths: torch.Tensor, size: int, last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """At most ``size`` ids per row: the last ones (sequences) or the first (texts)."""
        kept = lengths.clamp(max=size)
        width = min(size, ids.shape[1])
        if not last or width == 0:
            return ids[:, :width], kept
        start = (lengths - kept).clamp(min=0)
        index = (start[:, None] + torch.arange(width, device=ids.device)[None, :]).clamp(max=ids.shape[1] - 1)
        window = ids.gather(1, index)
        return window.masked_fill(torch.arange(width, device=ids.device)[None, :] >= kept[:, None], 0), kept

    def shared_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The task-independent tokens of each sample, ``(B, n_tokens - 1, d_model)``."""
        tokens = []
        if self.deep is not None or self.wide is not None:
            parts = []
            if self.deep is not None:
                parts.append(self.deep(self._lookup(batch, self.context_columns)))
            if self.wide is not None:
                parts.append(self.wide(self.embedding.numeric_fields(batch).flatten(1)))
            tokens.append(torch.cat(parts, dim=-1))
        schema = self.embedding.schema
        for seq in schema.sequences:
            ids, lengths = self._window(
                batch[f"seq__{seq.name}"], batch[f"len__{seq.name}"], self.max_sequence_length, last=True
            )
            if seq.shared_with is None:
                embedded = self.embedding.own_tables[f"seq__{seq.name}"](ids)
            else:
                embedded = self.embedding.categorical(ids + self.embedding._offset_of[seq.shared_with])
            tokens.append(self.sequence_encoders[seq.name](embedded, lengths))
        for text in schema.texts:
            if text.name in self.sentence_projections:
                key = f"sentence__{text.name}"
                if key not in batch:
                    raise ValueError(f"the batch has no {key!r}: text column {text.name!r} reads sentence vectors.")
                tokens.append(self.sentence_projections[text.name](batch[key]))
                continue
            tokens.append(self.text_encoders[text.name](self.embedding.bags.field(batch, f"text__{text.name}")))
        if self.sparse_projection is not None:
            tokens.append(self.sparse_projection(self.embedding.bags.field(batch, "sparse")))
        if self.item is not None:
            tokens.append(self.item(self._lookup(batch, self.item_columns)))
        return torch.stack(tokens, dim=1)

    def _task_tokens(self, batch: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        """Task tokens ``(1, n_tasks, d_model)``, or ``(B, n_tasks, d_model)`` with ``task_features``."""
        task = torch.stack(list(self.task_tokens)).to(dtype)[None]
        if self.task_context is not None:
            task = task + self.task_context(self._lookup(batch, self.task_columns))[:, None, :]
        return task

    @staticmethod
    def _join(shared: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        batch_size, n_tasks = shared.shape[0], task.shape[1]
        shared = shared[:, None].expand(-1, n_tasks, -1, -1)
        return torch.cat([shared, task.expand(batch_size, -1, -1)[:, :, None, :]], dim=2)

    def sentences(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One sentence per (sample, task): ``(B, n_tasks, n_tokens, d_model)``, task token last."""
        shared = self.shared_tokens(batch)
        return self._join(shared, self._task_tokens(batch, shared.dtype))

    # ------------------------------------------------------------------ sentence top
    def _check_tasks(self, tasks: Sequence[int] | None) -> list[int] | None:
        if tasks is None:
            return None
        tasks = [int(k) for k in tasks]
        bad = [k for k in tasks if not 0 <= k < self.n_tasks]
        if bad or not tasks:
            raise ValueError(f"tasks must list task indices in [0, {self.n_tasks}), got {tasks!r}.")
        return tasks

    def _top(self, batch: dict[str, torch.Tensor], tasks: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The shared head's output per sentence ``(B, n_tasks or len(tasks), h)`` and the aux loss."""
        if self.routing == "task":
            return self._top_task(batch, tasks)
        shared = self.shared_tokens(batch)
        task = self._task_tokens(batch, shared.dtype)
        if tasks is not None:
            task = task[:, tasks]
        # x + block(x) for every sentence; the shared tokens' per-token work runs once per sample
        x = self._join(shared, task) + self.mixing.forward_shared_prefix(shared, task)
        batch_size, n_tasks, n_tokens, dim = x.shape
        x = x.reshape(batch_size * n_tasks, n_tokens, dim)
        normed = self.moe_norm(x.float())  # float32 (under bf16 autocast too): the norm's weight is float32
        if self.routing == "sentence":
            moe_out, balance, z = self.moe(normed, router_input=normed[:, -1])
        else:
            moe_out, balance, z = self.moe(normed.reshape(-1, 1, dim))
            moe_out = moe_out.view_as(x)
        x = x + self.moe_dropout(moe_out)
        aux = self.balance_loss_coef * balance + self.z_loss_coef * z
        return self.head(x.flatten(1)).view(batch_size, n_tasks, -1), aux

    def route_tasks(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Task routing: ``(logits, probs, expert_index, gates)`` of the ``n_tasks`` task
        embeddings (``(n_tasks, n_experts)`` twice, then ``(n_tasks, top_k)`` twice)."""
        task = torch.stack(list(self.task_tokens))
        logits = self.moe.router_logits(self.moe_norm(task.float()))
        probs = torch.softmax(logits, dim=-1)
        expert_index, gates, _ = route(probs, self.moe.top_k, None)  # no capacity: see the class notes
        return logits, probs, expert_index, gates

    def _top_task(
        self, batch: dict[str, torch.Tensor], tasks: list[int] | None, fold: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Task routing: the shared tokens are mixed once and run through each distinct
        expert once; ``fold=False`` builds every sentence explicitly (same result)."""
        shared = self.shared_tokens(batch)
        task = self._task_tokens(batch, shared.dtype)
        logits, probs, expert_index, gates = self.route_tasks()
        self.moe.record(expert_index, torch.ones_like(expert_index, dtype=torch.bool), weight=shared.shape[0])
        aux = self.balance_loss_coef * load_balancing_loss(probs, expert_index) + self.z_loss_coef * router_z_loss(
            logits
        )
        if tasks is not None:
            task, expert_index, gates = task[:, tasks], expert_index[tasks], gates[tasks]
        prefix_out, weights, values_p, values_s, ff_s = self.mixing.prefix_and_reader_parts(shared, task)
        x = shared + prefix_out  # (B, S, D): the same for every task
        normed = self.moe_norm(x.float())
        used = torch.unique(expert_index).tolist()
        # mix[k, u]: task k's gate on the u-th used expert
        slot = torch.full((self.moe.n_experts,), -1, dtype=torch.long, device=x.device)
        slot[used] = torch.arange(len(used), device=x.device)
        mix = (F.one_hot(slot[expert_index], len(used)) * gates[..., None]).sum(1).to(x.dtype)  # (K, U)
        outputs = torch.stack(
            [self.moe_dropout(self.moe.expert(e, normed)).to(x.dtype) for e in used], dim=1
        )  # (B, U, S, D)
        batch_size, n_prefix = x.shape[:2]
        first = self.head[0] if len(self.head) else None
        if not (fold and isinstance(first, nn.Linear)):
            # every sentence built: [x + sum_u mix_ku y_u ; z_k], z_k the task token after the mixing
            z = task + torch.einsum("bkhs,bhse->bke", weights[..., :n_prefix], values_p)
            z = z + (weights[..., n_prefix, None] * values_s).sum(2) + ff_s
            moe_out = torch.einsum("ku,busd->bksd", mix, outputs)
            sentences = torch.cat([x[:, None] + moe_out, z[:, :, None]], dim=2)  # (B, K, S + 1, D)
            h = self.head(sentences.flatten(2))
            return h, aux
        # The head's first layer W = [W_s, W_t] is linear, so for task k it is a sum of per-sample
        # vectors weighted per (sample, task): W_s x + sum_u mix_ku W_s y_u + sum_{h,s} a_khs W_t v_hs
        # + sum_h a_kh,self W_t v_k,h + W_t (t_k + ff(t_k)). Per (sample, task) only the weights
        # and one matrix product with a few rows remain.
        width = n_prefix * x.shape[2]
        w_shared, w_task = first.weight[:, :width], first.weight[:, width:]
        basis = torch.cat(
            [
                F.linear(values_p.flatten(1, 2), w_task),  # (B, H * S, h): prefix values through W_t
                F.linear(outputs.flatten(2), w_shared),  # (B, U, h): each used expert through W_s
            ],
            dim=1,
        )
        coef = torch.cat([weights[..., :n_prefix].flatten(2), mix.expand(batch_size, -1, -1)], dim=2)
        constant = F.linear(x.flatten(1), w_shared, first.bias)[:, None] + F.linear(task + ff_s, w_task)
        pre = torch.baddbmm(constant.expand(batch_size, -1, -1), coef, basis)
        self_values = F.linear(values_s, w_task)  # (B or 1, K, H, h)
        for head in range(weights.shape[2]):  # the few heads' attention on the task token itself
            pre = torch.addcmul(pre, weights[:, :, head, n_prefix, None], self_values[:, :, head])
        return self.head[1:](pre), aux

    def tower_inputs(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The shared head's output for each task's sentence: ``n_tasks`` tensors ``(B, h)``."""
        return list(self._top(batch)[0].unbind(1))

    def forward(
        self, batch: dict[str, torch.Tensor], tasks: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, aux_loss)``; with ``tasks`` (indices) only those tasks' logits
        ``(B, len(tasks))``, in that order, and only their sentences are built."""
        tasks = self._check_tasks(tasks)
        h, aux = self._top(batch, tasks)
        index = range(self.n_tasks) if tasks is None else tasks
        if all(len(self.towers[k][0]) == 0 for k in index):
            # single-unit towers: one product for all tasks instead of a small one per task
            weight = torch.cat([self.towers[k][1].weight for k in index])  # (K, h)
            bias = torch.cat([self.towers[k][1].bias for k in index])
            logits = torch.einsum("bkh,kh->bk", h, weight.to(h.dtype)) + bias.to(h.dtype)
        else:
            logits = torch.cat([self.towers[k](h[:, i]) for i, k in enumerate(index)], dim=1)
        if self.embedding.bags.wide is not None:  # the wide term is per task: add all, keep the asked ones
            wide = self.embedding.bags.add_to(torch.zeros_like(logits[:, :1]).expand(-1, self.n_tasks), batch)
            logits = logits + (wide if tasks is None else wide[:, tasks])
        return logits, aux
