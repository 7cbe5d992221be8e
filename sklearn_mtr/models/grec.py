"""GRec: the Generalist Recommender (Wang et al., CIKM 2023, arXiv 2504.05318)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from .._constraints import InstanceOf, Interval, Options
from .._schema import FeatureSchema
from ._base import MultiTaskModule
from ._blocks import InputEmbedding
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

    Routing (the paper's "task-sentence" routing is read three ways; ``"task"`` is the
    default, chosen by measurement, see the estimator):

    - ``"task"``: the router reads the task embedding (the learned task vector), so each
      task's expert path is chosen once per batch, not per sentence (Task-MoE, Kudugunta et
      al. 2021, arXiv 2110.03742). The sentence then holds only the shared tokens (no task
      token: the task acts through its path; ``task_features`` are refused): it is mixed
      once per sample, each distinct expert on the needed paths runs once on it, the head
      runs once per distinct path (at most ``n_experts`` for top-1, however many tasks), and
      task ``k``'s tower reads its path's head output. A path's expert weights are the mean
      router probability of its tasks (so the router still learns from the task losses).
      Capacity does not apply: an expert runs on every row of its tasks.
    - ``"sentence"``: each (sample, task) sentence is routed as a unit on its post-mixing
      task-token state, so all its tokens go to the same experts and capacity counts
      sentences (a sentence is never partly dropped, unlike the released code's per-token
      capacity). Every token attends to every token; the MoE and the head run per sentence.
    - ``"token"``: every token of every sentence is routed on its own state (the released
      code's mode).

    ``forward(batch, tasks)`` scores only the tasks listed (all when None): only their
    sentences are built, or only their paths run.

    Parameter groups: task ``k`` owns its task token (except in task routing, where the
    mean gate of a path lets every task on it reach the embedding) and its output tower;
    everything else (embeddings, encoders, mixing block, router, experts, shared head) is
    shared.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        **{name: [Interval(Integral, 1)] for name in ("d_model", "n_heads", "max_sequence_length", "max_text_length")},
        **{name: [Interval(Integral, 0)] for name in ("n_sequence_layers", "n_text_layers")},
        **{
            name: [Options(None), InstanceOf((list, tuple), "a list of column names")]
            for name in ("item_features", "task_features")
        },
        "expert_hidden_dim": [Options(None), Interval(Integral, 1)],
        "top_k": [Interval(Integral, 1)],
        "routing": [Options(*_ROUTING)],
        "capacity_factor": [Options(None), Interval(Real, 0, closed="right")],
        "router_jitter": [Interval(Real, 0, 1, closed="left")],
        "balance_loss_coef": [Interval(Real, 0)],
        "z_loss_coef": [Interval(Real, 0)],
        "sentence_dims": [Options(None), InstanceOf(dict, "a dict of text column name -> vector width")],
    }

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
        routing: str = "task",
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
        self.check_hyperparameters(locals())
        sentence_dims = dict(sentence_dims or {})
        texts = [t.name for t in schema.texts]
        for name, dim in sentence_dims.items():
            if name not in texts:
                raise ValueError(f"sentence_dims names {name!r}, which is not a text column; text columns: {texts}.")
            if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
                raise ValueError(f"sentence_dims[{name!r}] must be a positive integer, got {dim!r}.")
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise ValueError(
                f"d_model={d_model} must be a multiple of n_heads={n_heads} with an even head width "
                "(rotary positions rotate pairs of features)."
            )
        hidden = d_model if expert_hidden_dim is None else expert_hidden_dim
        head_sizes, tower_sizes = list(head_hidden_sizes), list(tower_hidden_sizes)

        self.n_tasks = n_tasks
        self.scored_tasks: list[int] | None = None
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
        if task_cols and routing == "task":
            raise ValueError(
                "task_features feed the task token, which routing='task' does not build (the task "
                "only picks the expert path); use routing='sentence' or 'token', or leave task_features out."
            )
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
            + int(routing != "task")  # the task token (task routing has none: the task picks the path)
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
        """One sentence per (sample, task) before mixing, as sentence and token routing build them:
        ``(B, n_tasks, n_tokens, d_model)``, task token last (task routing's sentence is
        :meth:`shared_tokens`)."""
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

    def _top(
        self, batch: dict[str, torch.Tensor], tasks: list[int] | None = None
    ) -> tuple[torch.Tensor, list[int], torch.Tensor]:
        """``(h, unit, aux)``: the shared head's output per routing unit ``(B, n_units, h)``,
        the unit the i-th asked task reads, and the auxiliary loss. A unit is a sentence per
        task (sentence and token routing) or a distinct expert path (task routing)."""
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
        return self.head(x.flatten(1)).view(batch_size, n_tasks, -1), list(range(n_tasks)), aux

    def route_tasks(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Task routing: ``(logits, probs, expert_index, gates)`` of the ``n_tasks`` task
        embeddings: ``(n_tasks, n_experts)`` twice, then ``(n_tasks, top_k)`` twice."""
        task = torch.stack(list(self.task_tokens))
        logits = self.moe.router_logits(self.moe_norm(task.float()))
        probs = torch.softmax(logits, dim=-1)
        expert_index, gates, _ = route(probs, self.moe.top_k, None)  # no capacity: see the class notes
        return logits, probs, expert_index, gates

    @staticmethod
    def task_paths(expert_index: torch.Tensor, gates: torch.Tensor, n_experts: int):
        """Task routing: ``(paths, path_of, weights)``: the distinct expert sets chosen by the
        tasks, the path of each task, and each path's expert weights ``(n_paths, n_experts)``:
        the mean gate of its tasks (0 off the path)."""
        members: dict[tuple[int, ...], list[int]] = {}
        for k, row in enumerate(expert_index.tolist()):
            members.setdefault(tuple(sorted(row)), []).append(k)
        dense = torch.zeros(expert_index.shape[0], n_experts, dtype=gates.dtype, device=gates.device)
        dense = dense.scatter(1, expert_index, gates)
        weights = torch.stack([dense[tasks].mean(0) for tasks in members.values()])
        path_of = [0] * expert_index.shape[0]
        for p, tasks in enumerate(members.values()):
            for k in tasks:
                path_of[k] = p
        return list(members), path_of, weights

    def _top_task(
        self, batch: dict[str, torch.Tensor], tasks: list[int] | None
    ) -> tuple[torch.Tensor, list[int], torch.Tensor]:
        """Task routing: the shared tokens are mixed once, each expert on a needed path runs
        once on them, and the head runs once per distinct path."""
        shared = self.shared_tokens(batch)
        logits, probs, expert_index, gates = self.route_tasks()
        self.moe.record(expert_index, torch.ones_like(expert_index, dtype=torch.bool), weight=shared.shape[0])
        aux = self.balance_loss_coef * load_balancing_loss(probs, expert_index)
        aux = aux + self.z_loss_coef * router_z_loss(logits)
        paths, path_of, path_weights = self.task_paths(expert_index, gates, self.moe.n_experts)
        asked = list(range(self.n_tasks)) if tasks is None else tasks
        needed = sorted({path_of[k] for k in asked})  # only the asked tasks' paths run
        used = sorted({e for p in needed for e in paths[p]})
        x = shared + self.mixing(shared)  # (B, S, D): no task token, so the same for every task
        normed = self.moe_norm(x.float())
        outputs = torch.stack([self.moe_dropout(self.moe.expert(e, normed)) for e in used], dim=1)  # (B, U, S, D)
        mix = path_weights[needed][:, used].to(outputs.dtype)  # (P, U)
        sentences = x[:, None] + torch.einsum("pu,busd->bpsd", mix, outputs).to(x.dtype)
        h = self.head(sentences.flatten(2))  # (B, P, h)
        unit = [needed.index(path_of[k]) for k in asked]
        return h, unit, aux

    def task_parameters(self, k: int) -> list[nn.Parameter]:
        if self.routing == "task":  # a task embedding's gate reaches every task on its path: shared
            return super().task_parameters(k)
        return [self.task_tokens[k], *super().task_parameters(k)]

    def tower_inputs(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The shared head's output each task's tower reads: ``n_tasks`` tensors ``(B, h)``."""
        h, unit, _ = self._top(batch)
        return [h[:, u] for u in unit]

    def forward(
        self, batch: dict[str, torch.Tensor], tasks: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, aux_loss)``; with ``tasks`` (indices) only those tasks' logits
        ``(B, len(tasks))``, in that order, and only what they need is computed. ``tasks=None``
        reads the attribute ``scored_tasks`` (None: every task), which the estimator sets to
        predict some tasks through the usual batched prediction."""
        tasks = self._check_tasks(tasks if tasks is not None else getattr(self, "scored_tasks", None))
        h, unit, aux = self._top(batch, tasks)
        index = list(range(self.n_tasks)) if tasks is None else tasks
        if all(len(self.towers[k][0]) == 0 for k in index):
            # single-unit towers: one product per routing unit for all the tasks that read it
            weight = torch.cat([self.towers[k][1].weight for k in index]).to(h.dtype)  # (K, h)
            bias = torch.cat([self.towers[k][1].bias for k in index]).to(h.dtype)
            if unit == list(range(h.shape[1])):
                logits = torch.einsum("bkh,kh->bk", h, weight) + bias
            else:
                groups = [[i for i, v in enumerate(unit) if v == u] for u in range(h.shape[1])]
                parts = [F.linear(h[:, u], weight[cols], bias[cols]) for u, cols in enumerate(groups) if cols]
                order = torch.tensor([i for cols in groups for i in cols], device=h.device)
                logits = torch.cat(parts, dim=1)[:, torch.argsort(order)]
        else:
            logits = torch.cat([self.towers[k](h[:, u]) for k, u in zip(index, unit)], dim=1)
        if self.embedding.bags.wide is not None:  # the wide term is per task: add all, keep the asked ones
            wide = self.embedding.bags.add_to(torch.zeros_like(logits[:, :1]).expand(-1, self.n_tasks), batch)
            logits = logits + (wide if tasks is None else wide[:, tasks])
        return logits, aux
