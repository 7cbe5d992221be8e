"""Building blocks shared by the architectures: MLPs, batched experts, the input layer."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from numbers import Integral, Real

import torch
from torch import nn
from torch.nn import functional as F

from .._constraints import Interval, Options
from .._constraints import Sequence as SequenceOf
from .._schema import FeatureSchema
from ._numeric import PiecewiseLinearEmbedding
from ._wide import BagInputs

# Experts whose every layer is at least this wide run expert by expert on a CPU.
_PER_EXPERT_MIN_WIDTH = 64

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "prelu": nn.PReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}


#: The constraints of the parameters the architectures share, by name (a module's own table,
#: ``_parameter_constraints``, adds or overrides entries): see
#: :meth:`~sklearn_mtr.models.MultiTaskModule.parameter_constraints`.
SHARED_CONSTRAINTS = {
    "embedding_dim": [Interval(Integral, 1)],
    "n_experts": [Interval(Integral, 1)],
    "activation": [Options(*_ACTIVATIONS)],
    "dropout": [Interval(Real, 0, 1, closed="left")],
    "batch_norm": [Options(True, False)],
}
#: The constraint of every ``*_hidden_sizes`` parameter: layer widths (possibly none).
LAYER_WIDTHS = [SequenceOf(Interval(Integral, 1), what="a sequence of positive integers (layer widths)")]


def check_sizes(sizes: Sequence[int], what: str) -> list[int]:
    """Layer widths as a list of positive ints, or a ValueError naming ``what``."""
    try:
        sizes = list(sizes)
    except TypeError:
        raise ValueError(f"{what} must be a sequence of positive integers, got {sizes!r}.") from None
    # numpy integers too (a grid from np.arange), as plain ints for torch
    if not all(isinstance(s, Integral) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise ValueError(f"{what} must be a sequence of positive integers, got {sizes!r}.")
    return [int(s) for s in sizes]


def check_dropout(dropout: float) -> float:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
    return dropout


def make_activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation={name!r} is not one of {sorted(_ACTIVATIONS)}.") from None


class MLP(nn.Sequential):
    """``[Linear -> (BatchNorm) -> activation -> (Dropout)]`` per hidden size.

    ``output_dim`` appends a final plain Linear (a tower's logit layer).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_sizes: Sequence[int],
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        output_dim: int | None = None,
    ) -> None:
        layers: list[nn.Module] = []
        dim = in_dim
        check_dropout(dropout)
        for size in check_sizes(hidden_sizes, "hidden sizes"):
            layers.append(nn.Linear(dim, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            dim = size
        if output_dim is not None:
            layers.append(nn.Linear(dim, output_dim))
            dim = output_dim
        super().__init__(*layers)
        self.out_dim = dim


class _ExpertGroup(nn.Module):
    """The weights of a group of same-shaped experts owned by one party (a task, or shared)."""

    def __init__(self, n_experts: int, dims: Sequence[int], batch_norm: bool) -> None:
        super().__init__()
        self.n_experts = n_experts
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(n_experts, a, b)) for a, b in pairwise(dims))
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(n_experts, b)) for b in dims[1:])
        self.norms = nn.ModuleList(nn.BatchNorm1d(n_experts * b) for b in dims[1:]) if batch_norm else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same distribution as nn.Linear's default, per expert.
        for w, b in zip(self.weights, self.biases):
            bound = 1.0 / w.shape[1] ** 0.5
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)


class BatchedExperts(nn.Module):
    """Same-shaped expert MLPs, stored as one weight tensor per owner and layer.

    ``groups`` gives how many experts each owner has (``[8]`` for MMoE; one entry per task plus
    one for the shared experts in PLE). Each owner's weights are separate parameters, so a
    multi-task optimizer can tell task-private experts from shared ones. Narrow experts (a
    layer under 64 wide) and experts on a GPU run as a single product over all experts per
    layer; wide experts on a CPU run expert by expert, with the same result (dropout draws
    one mask per expert there: the same distribution, other draws than the batched product).

    The input is ``(batch, in_dim)`` when every expert reads the same vector (the first layer
    of all experts is then one ``(batch, in) x (in, E*out)`` matmul) or
    ``(batch, n_experts, in_dim)`` when each expert has its own input (PLE's upper levels).
    The output is ``(batch, n_experts, out_dim)``, experts in group order.
    """

    def __init__(
        self,
        groups: int | Sequence[int],
        in_dim: int,
        hidden_sizes: Sequence[int],
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        groups = check_sizes([groups] if isinstance(groups, Integral) else groups, "numbers of experts")
        dims = [in_dim, *check_sizes(hidden_sizes, "expert_hidden_sizes")]
        check_dropout(dropout)
        if len(dims) < 2:
            raise ValueError("expert_hidden_sizes needs at least one layer.")
        self.group_sizes = groups
        self.n_experts = sum(groups)
        self.groups = nn.ModuleList(_ExpertGroup(n, dims, batch_norm) for n in groups)
        self.activations = nn.ModuleList(make_activation(activation) for _ in dims[1:])
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.batch_norm = batch_norm
        self.out_dim = dims[-1]

    def _layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.groups) == 1:
            return self.groups[0].weights[i], self.groups[0].biases[i]
        return (
            torch.cat([g.weights[i] for g in self.groups]),
            torch.cat([g.biases[i] for g in self.groups]),
        )

    def _normalise(self, i: int, h: torch.Tensor) -> torch.Tensor:
        parts = torch.split(h, self.group_sizes, dim=1)
        normed = [g.norms[i](p.reshape(p.shape[0], -1)).view_as(p) for g, p in zip(self.groups, parts)]
        return normed[0] if len(normed) == 1 else torch.cat(normed, dim=1)

    def _batched(self, x: torch.Tensor) -> torch.Tensor:
        """All experts as one product per layer (the owners' weights joined)."""
        for i in range(len(self.activations)):
            w, b = self._layer(i)
            if x.dim() == 2:
                h = (x @ w.permute(1, 0, 2).reshape(w.shape[1], -1)).view(x.shape[0], self.n_experts, -1)
            else:
                h = torch.einsum("bei,eio->beo", x, w)
            h = h + b
            if self.batch_norm:
                h = self._normalise(i, h)
            x = self.dropout(self.activations[i](h))
        return x

    def _group(self, group: _ExpertGroup, x: torch.Tensor) -> torch.Tensor:
        """One owner's experts, ``(B, in)`` or ``(B, n, in)`` -> ``(B, n, out)``, expert by expert.

        Each expert is a chain of contiguous ``(B, width)`` products; the group's batch norm
        is applied to each expert's block of channels (see :func:`_blockwise_batch_norm`).
        """
        n = group.n_experts
        parts = [x] * n if x.dim() == 2 else list(x.unbind(1))
        for i, (w, b) in enumerate(zip(group.weights, group.biases)):
            # unbind, not w[e]: one backward node that stacks the n gradients, instead of n
            # full-size zero tensors with one slice filled each
            # (under bf16 autocast addmm also adds the bias in bf16; the batched path adds it in fp32)
            parts = [torch.addmm(b_e, part, w_e) for part, w_e, b_e in zip(parts, w.unbind(0), b.unbind(0))]
            if self.batch_norm:
                parts = _blockwise_batch_norm(group.norms[i], parts)
            parts = [self.dropout(self.activations[i](part)) for part in parts]
        return parts[0].unsqueeze(1) if n == 1 else torch.stack(parts, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Measured on a CPU: narrow experts run faster as one batched product per layer (few
        # operators), wide ones expert by expert, where the batched form's reshapes and its
        # batch norm over one wide (B, n * out) matrix cost 5-40% of the step. GPUs keep the
        # batched product, which launches fewer kernels.
        narrow = min(w.shape[2] for w in self.groups[0].weights) < _PER_EXPERT_MIN_WIDTH
        if narrow or x.device.type != "cpu":
            return self._batched(x)
        if len(self.groups) == 1:
            return self._group(self.groups[0], x)
        outputs, start = [], 0
        for group in self.groups:
            part = x if x.dim() == 2 else x[:, start : start + group.n_experts]
            outputs.append(self._group(group, part))
            start += group.n_experts
        return torch.cat(outputs, dim=1)


def _blockwise_batch_norm(norm: nn.BatchNorm1d, parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """``norm`` (over ``n * out`` channels) applied to ``n`` blocks of ``out`` channels.

    The same result and running-statistics update as ``norm`` on the blocks joined side by
    side, without joining them: the CPU kernel is about 3x slower on one wide matrix.
    """
    if len(parts) == 1:
        return [norm(parts[0])]
    momentum = norm.momentum or 0.0  # unused in eval
    if norm.training:
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:  # cumulative average, as nn.BatchNorm1d does
            momentum = 1.0 / float(norm.num_batches_tracked)
    width = parts[0].shape[1]
    # split views: the in-place running-statistics update reaches the buffers, and the
    # parameters' gradient is joined once in backward
    blocks = (t.split(width) for t in (norm.running_mean, norm.running_var, norm.weight, norm.bias))
    return [
        F.batch_norm(part, mean, var, weight, bias, training=norm.training, momentum=momentum, eps=norm.eps)
        for part, mean, var, weight, bias in zip(parts, *blocks)
    ]


def mix(gate_logits: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Softmax-weighted sum of expert outputs: ``(B, E)`` x ``(B, E, H)`` -> ``(B, H)``."""
    weights = torch.softmax(gate_logits, dim=-1).unsqueeze(1)
    return torch.bmm(weights, experts).squeeze(1)


def masked_mean(embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean of ``(B, L, D)`` over each row's first ``lengths`` positions; zeros when empty."""
    mask = (torch.arange(embedded.shape[1], device=embedded.device)[None, :] < lengths[:, None]).to(embedded.dtype)
    total = torch.bmm(mask.unsqueeze(1), embedded).squeeze(1)
    return total / lengths.clamp(min=1).to(embedded.dtype).unsqueeze(1)


class InputEmbedding(nn.Module):
    """Embeds every input of a :class:`FeatureSchema` into one flat vector per row.

    Categorical columns share one concatenated table (one lookup for all fields); a sequence
    that shares a categorical column's vocabulary looks up that column's slice of it, so
    candidate item and history items have the same embedding. Sequences are mean-pooled over
    their non-padding positions; text columns and a sparse X are weighted bags
    (:class:`~sklearn_mtr.models._wide.BagInputs`, one field each, and with ``n_tasks`` a wide
    term that models add to their logits through ``bags.add_to``). Numeric inputs are appended
    as they are (the feature layer has standardised them), or, when the schema has
    ``numeric_bins``, as one ``embedding_dim`` vector each (:class:`PiecewiseLinearEmbedding`).
    """

    def __init__(self, schema: FeatureSchema, embedding_dim: int, n_tasks: int | None = None) -> None:
        super().__init__()
        self.schema = schema
        self.embedding_dim = embedding_dim
        cards = list(schema.categorical_cardinalities)
        offsets = [0]
        for c in cards[:-1]:
            offsets.append(offsets[-1] + c)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long), persistent=False)
        self._offset_of = dict(zip(schema.categorical_names, offsets))
        self.categorical = nn.Embedding(sum(cards), embedding_dim) if cards else None
        self.own_tables = nn.ModuleDict()
        for seq in schema.sequences:
            if seq.shared_with is None:
                self.own_tables[f"seq__{seq.name}"] = nn.Embedding(seq.vocab_size, embedding_dim)
        self.bags = BagInputs(schema, embedding_dim, n_tasks)
        bins = schema.numeric_bins
        self.numeric = (
            None
            if bins is None or not schema.n_numeric
            else PiecewiseLinearEmbedding(bins, schema.n_numeric - len(bins), embedding_dim)
        )
        # what each numeric input becomes: one number, or one embedding
        self.numeric_width = 1 if self.numeric is None else embedding_dim
        self.out_dim = (
            embedding_dim * (len(cards) + len(schema.sequences) + self.bags.n_fields)
            + schema.n_numeric * self.numeric_width
        )
        if self.out_dim == 0:
            raise ValueError("the model has no input: X has no usable column.")
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for table in [self.categorical, *self.own_tables.values()]:
            if table is not None:
                nn.init.uniform_(table.weight, -0.05, 0.05)

    def fields(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Per-field embeddings ``(B, n_fields, D)`` (categorical, sequences, texts, sparse X)."""
        parts = []
        if self.categorical is not None:
            parts.append(self.categorical(batch["categorical"] + self.offsets))
        for seq in self.schema.sequences:
            ids = batch[f"seq__{seq.name}"]
            if seq.shared_with is None:
                embedded = self.own_tables[f"seq__{seq.name}"](ids)
            else:
                embedded = self.categorical(ids + self._offset_of[seq.shared_with])
            parts.append(masked_mean(embedded, batch[f"len__{seq.name}"]).unsqueeze(1))
        parts.extend(self.bags.fields(batch))
        return torch.cat(parts, dim=1) if parts else None

    def categorical_columns(self, batch: dict[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor:
        """The embeddings of the named categorical columns, ``(B, len(names), D)``: the same
        rows of the shared table as :meth:`fields` reads (gates that read id features use it)."""
        columns = self.categorical_indices(names)
        ids = batch["categorical"][:, columns] + self.offsets[columns]
        return self.categorical(ids)

    def categorical_indices(self, names: Sequence[str]) -> list[int]:
        """Positions of the named columns in ``schema.categorical_names``; ValueError for a
        name that is not a categorical column."""
        known = list(self.schema.categorical_names)
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(
                f"{unknown} are not categorical columns of the input; the categorical columns are {known}."
            )
        return [known.index(name) for name in names]

    def numeric_fields(self, batch: dict[str, torch.Tensor], columns: Sequence[int] | None = None) -> torch.Tensor:
        """Numeric inputs (all, or the given ``columns`` of ``batch["numeric"]``) as
        ``(B, n_columns, numeric_width)``: the values themselves, or their embeddings."""
        numeric = batch["numeric"]
        out = numeric.unsqueeze(-1) if self.numeric is None else self.numeric(numeric)
        return out if columns is None else out[:, columns]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        fields = self.fields(batch)
        flat = [] if fields is None else [fields.flatten(1)]
        if self.schema.n_numeric:
            flat.append(self.numeric_fields(batch).flatten(1))
        return torch.cat(flat, dim=1) if len(flat) > 1 else flat[0]


def tower_logits(towers: nn.ModuleList, inputs: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Run tower ``k`` on ``inputs[k]`` (or on one shared input) -> logits ``(B, n_tasks)``."""
    if isinstance(inputs, torch.Tensor):
        inputs = [inputs] * len(towers)
    return torch.cat([tower(x) for tower, x in zip(towers, inputs)], dim=1)
