"""Tests for the model contract (sklearn_mtr.models) and its building blocks."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from sklearn_mtr._schema import FeatureSchema, SequenceInput, TextInput
from sklearn_mtr.features import TabularEncoder
from sklearn_mtr.models import (
    AITM,
    DBMTL,
    ESMM,
    PLE,
    CrossStitch,
    DSelectK,
    GRec,
    MMoE,
    OMoE,
    OneRank,
    PEPNet,
    ResFlow,
    SharedBottom,
)
from sklearn_mtr.models._blocks import MLP, BatchedExperts, InputEmbedding, check_sizes, masked_mean

MODELS = {
    "shared_bottom": SharedBottom,
    "mmoe": MMoE,
    "ple": PLE,
    "resflow": ResFlow,
    "esmm": ESMM,
    "aitm": AITM,
    "grec": GRec,
    "onerank": OneRank,
    "omoe": OMoE,
    "dselect_k": DSelectK,
    "cross_stitch": CrossStitch,
    "pepnet": PEPNet,
    "dbmtl": DBMTL,
}
# Tiny architectures: every test runs in milliseconds.
SMALL = {
    "shared_bottom": {"embedding_dim": 4, "bottom_hidden_sizes": (8,), "tower_hidden_sizes": (4,)},
    "mmoe": {"embedding_dim": 4, "n_experts": 3, "expert_hidden_sizes": (8,), "tower_hidden_sizes": (4,)},
    "ple": {
        "embedding_dim": 4,
        "n_levels": 2,
        "n_task_experts": 2,
        "n_shared_experts": 1,
        "expert_hidden_sizes": (8, 6),
        "tower_hidden_sizes": (4,),
    },
    "omoe": {"embedding_dim": 4, "n_experts": 3, "expert_hidden_sizes": (8,), "tower_hidden_sizes": (4,)},
    # 3 experts: not a power of 2, so the reachability term of the aux loss is exercised
    "dselect_k": {
        "embedding_dim": 4,
        "n_experts": 3,
        "k": 2,
        "entropy_reg": 0.1,
        "expert_hidden_sizes": (8,),
        "tower_hidden_sizes": (4,),
    },
    "cross_stitch": {"embedding_dim": 4, "column_hidden_sizes": (8, 6), "tower_hidden_sizes": (4,)},
    "pepnet": {"embedding_dim": 4, "gate_hidden_size": 5, "tower_hidden_sizes": (8, 4)},
    "dbmtl": {
        "embedding_dim": 4,
        "bottom_hidden_sizes": (8,),
        "tower_hidden_sizes": (6,),
        "relation_hidden_sizes": (4,),
    },
}
# The generic tests below cover these models (same options, every task with a private tower;
# DSelect-k returns (logits, aux_loss), read through logits_of). ResFlow, ESMM and AITM chain their tasks, so only their last task
# owns a whole tower; they are tested in test_resflow.py and test_funnel_models.py.
GENERIC = list(SMALL)
# Gradient isolation (see test_task_gradients_are_isolated) is only checked for one PLE level.
ISOLATED = {**SMALL, "ple": {**SMALL["ple"], "n_levels": 1}}

SCHEMA = FeatureSchema(
    categorical_names=("a", "b"),
    categorical_cardinalities=(5, 4),
    n_numeric=3,
    numeric_names=("x", "y", "z"),
)
BATCH_SIZE = 6


def make_batch(schema=SCHEMA, n=BATCH_SIZE, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = {}
    if schema.n_categorical:
        batch["categorical"] = torch.stack(
            [torch.randint(0, c, (n,), generator=g) for c in schema.categorical_cardinalities], dim=1
        )
    if schema.n_numeric:
        batch["numeric"] = torch.randn(n, schema.n_numeric, generator=g)
    for prefix, inputs in (("seq", schema.sequences), ("text", schema.texts)):
        for inp in inputs:
            lengths = torch.randint(0, 4, (n,), generator=g)
            ids = torch.randint(1, inp.vocab_size, (n, 4), generator=g)
            ids[torch.arange(4)[None, :] >= lengths[:, None]] = 0
            batch[f"{prefix}__{inp.name}"] = ids
            batch[f"len__{inp.name}"] = lengths
    return batch


def logits_of(out):
    """The logits of a forward pass that may also return an auxiliary loss."""
    if isinstance(out, tuple):
        logits, aux = out
        assert aux.dim() == 0 and torch.isfinite(aux)
        return logits
    return out


def build(name, n_tasks, schema=SCHEMA, seed=0, **overrides):
    torch.manual_seed(seed)
    return MODELS[name](schema, n_tasks, **{**SMALL[name], **overrides})


def encoded_frame():
    X = pd.DataFrame(
        {
            "item": ["a", "b", "c", "a", "b", "d"],
            "user": pd.Series(["u1", "u2", None, "u1", "u3", "u2"], dtype="category"),
            "age": [20.0, np.nan, 35.0, 41.0, 28.0, 50.0],
            "hist": [["a", "z"], None, [], ["b", "c", "z"], ["q"], ["a"]],
            "title": ["Red bus", None, "", "blue car", "red CAR", "bus"],
        }
    )
    enc = TabularEncoder(sequence_features={"hist": "item"}, text_features=["title"]).fit(X)
    return enc.schema_, enc.transform(X)


# --------------------------------------------------------------------------------------
# output shape
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_tasks", [1, 2, 3])
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("name", GENERIC)
def test_output_shape(name, batch_norm, n_tasks):
    model = build(name, n_tasks, batch_norm=batch_norm)
    batch = make_batch()
    for train in (True, False):
        model.train(train)
        out = logits_of(model(batch))
        assert isinstance(out, torch.Tensor)
        assert out.shape == (BATCH_SIZE, n_tasks)
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()


@pytest.mark.usefixtures("every_term_deep")
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("name", GENERIC)
def test_models_on_an_encoded_schema_with_sequence_and_text(name, batch_norm):
    schema, batch = encoded_frame()
    assert schema.sequences[0].shared_with == "item" and schema.texts
    model = build(name, 2, schema=schema, batch_norm=batch_norm)
    out = logits_of(model(batch))
    assert out.shape == (6, 2) and torch.isfinite(out).all()
    out.sum().backward()
    emb = model.embedding
    assert emb.categorical.weight.grad is not None and emb.categorical.weight.grad.abs().sum() > 0
    assert emb.bags.deep["text__title"].table.weight.grad.abs().sum() > 0
    assert "seq__hist" not in emb.own_tables  # the shared sequence uses the categorical table


@pytest.mark.parametrize("name", GENERIC)
def test_dropout_and_activation_options(name):
    model = build(name, 2, dropout=0.3, activation="prelu")
    model.eval()
    batch = make_batch()
    torch.testing.assert_close(logits_of(model(batch)), logits_of(model(batch)))  # dropout off in eval
    assert logits_of(model(batch)).shape == (BATCH_SIZE, 2)


# --------------------------------------------------------------------------------------
# parameter groups
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_tasks", [1, 2, 3])
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("name", GENERIC)
def test_parameter_groups_partition_parameters(name, batch_norm, n_tasks):
    model = build(name, n_tasks, batch_norm=batch_norm, activation="prelu")
    groups = [model.shared_parameters()] + [model.task_parameters(k) for k in range(n_tasks)]
    ids = [id(p) for group in groups for p in group]
    assert len(ids) == len(set(ids)), "a parameter is in two groups (or twice in one)"
    assert set(ids) == {id(p) for p in model.parameters()}
    assert all(len(model.task_parameters(k)) > 0 for k in range(n_tasks))
    assert len(model.shared_parameters()) > 0
    with pytest.raises(IndexError):
        model.task_parameters(n_tasks)
    with pytest.raises(IndexError):
        model.task_parameters(-1)


@pytest.mark.parametrize("n_levels", [1, 2, 3])
def test_ple_parameter_groups_partition(n_levels):
    model = build("ple", 3, n_levels=n_levels)
    groups = [model.shared_parameters()] + [model.task_parameters(k) for k in range(3)]
    ids = [id(p) for group in groups for p in group]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}


# (batch_norm, eval_mode): with batch norm in training mode, batch statistics couple the rows.
@pytest.mark.parametrize("batch_norm, eval_mode", [(False, False), (False, True), (True, True)])
@pytest.mark.parametrize("name", GENERIC)
def test_task_gradients_are_isolated(name, batch_norm, eval_mode):
    n_tasks = 3
    torch.manual_seed(0)
    model = MODELS[name](SCHEMA, n_tasks, **ISOLATED[name], batch_norm=batch_norm)
    model.train(not eval_mode)
    batch = make_batch()
    for k in range(n_tasks):
        model.zero_grad(set_to_none=True)
        logits_of(model(batch))[:, k].sum().backward()
        for j in range(n_tasks):
            if j == k:
                continue
            for p in model.task_parameters(j):
                assert p.grad is None or torch.count_nonzero(p.grad) == 0, (k, j, p.shape)
        own = model.task_parameters(k)
        assert any(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in own)
        assert all(p.grad is not None for p in own)
        assert any(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in model.shared_parameters())
        # the last layer of task k's tower always receives a gradient
        assert torch.count_nonzero(model.towers[k][-1].bias.grad) == 1


def test_same_shaped_towers():
    for name in GENERIC:
        for n_tasks in (1, 3):
            assert build(name, n_tasks).same_shaped_towers()
            assert build(name, n_tasks, batch_norm=True).same_shaped_towers()


# --------------------------------------------------------------------------------------
# BatchedExperts
# --------------------------------------------------------------------------------------


def _act(name, h):
    return {"relu": torch.relu, "tanh": torch.tanh}[name](h)


def reference_experts(experts: BatchedExperts, x: torch.Tensor, activation: str) -> torch.Tensor:
    """Each expert run on its own, from its group's weight slice, with plain loops."""
    outputs = []
    e = 0
    for group in experts.groups:
        for local in range(group.n_experts):
            h = x if x.dim() == 2 else x[:, e]
            for i, (w, b) in enumerate(zip(group.weights, group.biases)):
                h = h @ w[local] + b[local]
                if experts.batch_norm:
                    norm = group.norms[i]
                    assert not norm.training
                    out = w.shape[2]
                    sl = slice(local * out, (local + 1) * out)
                    h = (h - norm.running_mean[sl]) / torch.sqrt(norm.running_var[sl] + norm.eps)
                    h = h * norm.weight[sl] + norm.bias[sl]
                h = _act(activation, h)
            outputs.append(h)
            e += 1
    return torch.stack(outputs, dim=1)


def _randomise_norms(experts: BatchedExperts) -> None:
    g = torch.Generator().manual_seed(1)
    for group in experts.groups:
        for norm in group.norms:
            n = norm.num_features
            norm.running_mean.copy_(torch.randn(n, generator=g))
            norm.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            with torch.no_grad():
                norm.weight.copy_(torch.randn(n, generator=g))
                norm.bias.copy_(torch.randn(n, generator=g))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("groups", [3, [3], [2, 3], [1, 2, 1]])
@pytest.mark.parametrize("shared_input", [True, False])
def test_batched_experts_match_per_expert_reference(groups, batch_norm, shared_input, activation):
    torch.manual_seed(0)
    experts = BatchedExperts(groups, 5, (7, 4), activation=activation, batch_norm=batch_norm)
    n_experts = groups if isinstance(groups, int) else sum(groups)
    assert experts.n_experts == n_experts and experts.out_dim == 4
    if batch_norm:
        _randomise_norms(experts)
    experts.eval()
    x = torch.randn(6, 5) if shared_input else torch.randn(6, n_experts, 5)
    out = experts(x)
    assert out.shape == (6, n_experts, 4)
    torch.testing.assert_close(out, reference_experts(experts, x, activation), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("groups", [[3], [1, 2, 1]])
@pytest.mark.parametrize("shared_input", [True, False])
def test_wide_experts_run_expert_by_expert_like_the_batched_product(groups, batch_norm, shared_input):
    # Layers of 64 or more run expert by expert on a CPU: the same outputs, gradients and
    # batch-norm running statistics as the one batched product (and the reference above).
    torch.manual_seed(0)
    per_expert = BatchedExperts(groups, 5, (64, 64), activation="relu", batch_norm=batch_norm)
    batched = copy.deepcopy(per_expert)
    n = sum(groups)
    x = torch.randn(16, 5) if shared_input else torch.randn(16, n, 5)
    out, ref = per_expert(x), batched._batched(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    out.pow(2).sum().backward()
    ref.pow(2).sum().backward()
    # float32 round-off relative to the largest gradient (a bias before batch norm has a
    # gradient that is round-off only)
    scale = max(float(q.grad.abs().max()) for q in batched.parameters())
    for (name, p), q in zip(per_expert.named_parameters(), batched.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5 * scale, msg=name)
    for (name, b), c in zip(per_expert.named_buffers(), batched.buffers()):
        torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-6, msg=name)
    if batch_norm:
        assert int(per_expert.groups[0].norms[0].num_batches_tracked) == 1
        _randomise_norms(per_expert)
    per_expert.eval()
    torch.testing.assert_close(per_expert(x), reference_experts(per_expert, x, "relu"), rtol=1e-5, atol=1e-5)


def test_wide_experts_with_cumulative_batch_norm_momentum():
    # momentum=None (cumulative average) works in training and in eval before any training
    torch.manual_seed(0)
    experts = BatchedExperts([2, 1], 5, (64,), batch_norm=True)
    for group in experts.groups:
        group.norms[0].momentum = None
    batched = copy.deepcopy(experts)
    x = torch.randn(16, 5)
    torch.testing.assert_close(experts.eval()(x), batched.eval()._batched(x))
    for _ in range(3):
        torch.testing.assert_close(experts.train()(x), batched.train()._batched(x), rtol=1e-5, atol=1e-5)
    for b, c in zip(experts.buffers(), batched.buffers()):
        torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-6)


def test_batched_experts_groups_are_separate_parameters():
    torch.manual_seed(0)
    experts = BatchedExperts([2, 3], 5, (7, 4))
    assert len(experts.groups) == 2
    g0, g1 = experts.groups
    assert [tuple(w.shape) for w in g0.weights] == [(2, 5, 7), (2, 7, 4)]
    assert [tuple(w.shape) for w in g1.weights] == [(3, 5, 7), (3, 7, 4)]
    assert [tuple(b.shape) for b in g1.biases] == [(3, 7), (3, 4)]
    ids0 = {id(p) for p in g0.parameters()}
    ids1 = {id(p) for p in g1.parameters()}
    assert not ids0 & ids1
    assert ids0 | ids1 == {id(p) for p in experts.parameters()}

    x = torch.randn(6, 5)
    before = experts(x).detach()
    with torch.no_grad():
        g1.weights[1].add_(1.0)
    after = experts(x).detach()
    torch.testing.assert_close(after[:, :2], before[:, :2])  # group 0's experts unchanged
    assert not torch.allclose(after[:, 2:], before[:, 2:])

    # expert e's output only reaches its own group's parameters
    experts.zero_grad(set_to_none=True)
    experts(x)[:, 0].sum().backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in g1.parameters())
    assert all(torch.count_nonzero(w.grad[1]) == 0 for w in g0.weights)  # expert 1's slice
    assert torch.count_nonzero(g0.biases[-1].grad[0]) > 0


def test_batched_experts_batch_norm_is_per_group():
    experts = BatchedExperts([2, 3], 5, (7,), batch_norm=True)
    assert [n.num_features for n in experts.groups[0].norms] == [2 * 7]
    assert [n.num_features for n in experts.groups[1].norms] == [3 * 7]
    experts.train()
    out = experts(torch.randn(8, 5))
    assert out.shape == (8, 5, 7) and torch.isfinite(out).all()


def test_batched_experts_invalid_sizes():
    with pytest.raises(ValueError):
        BatchedExperts([2, 0], 5, (4,))
    with pytest.raises(ValueError):
        BatchedExperts(2, 5, ())
    with pytest.raises(ValueError):
        BatchedExperts(2, 5, (4, -1))
    with pytest.raises(ValueError):
        BatchedExperts(2, 5, (4,), dropout=1.0)


def test_numpy_integer_sizes_are_accepted_as_ints():
    # what a grid from np.arange hands over
    experts = BatchedExperts(np.int64(3), 5, (np.int64(4),))
    assert experts.group_sizes == [3] and all(type(n) is int for n in experts.group_sizes)
    assert experts(torch.randn(2, 5)).shape == (2, 3, 4)
    assert check_sizes(np.array([8, 4]), "sizes") == [8, 4]
    with pytest.raises(ValueError, match="sizes must be a sequence of positive integers"):
        check_sizes([np.int64(0)], "sizes")
    with pytest.raises(ValueError, match="sizes must be a sequence of positive integers"):
        check_sizes([True], "sizes")


# --------------------------------------------------------------------------------------
# MMoE and PLE specifics
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_tasks", [1, 3])
def test_mmoe_gate_weights(n_tasks):
    model = build("mmoe", n_tasks, n_experts=4)
    weights = model.gate_weights(make_batch())
    assert weights.shape == (BATCH_SIZE, n_tasks, 4)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(BATCH_SIZE, n_tasks))


@pytest.mark.parametrize("n_levels", [1, 3])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_ple_levels(n_levels, batch_norm):
    model = build("ple", 3, n_levels=n_levels, batch_norm=batch_norm)
    assert len(model.levels) == n_levels
    assert model.levels[-1].shared_gate is None
    assert all(level.shared_gate is not None for level in model.levels[:-1])
    assert model(make_batch()).shape == (BATCH_SIZE, 3)
    model.eval()
    assert model(make_batch()).shape == (BATCH_SIZE, 3)


@pytest.mark.parametrize("n_levels", [1, 2, 3])
def test_ple_task_modules(n_levels):
    n_tasks = 3
    model = build("ple", n_tasks, n_levels=n_levels)
    last = model.levels[-1]
    for k in range(n_tasks):
        mods = model.task_modules(k)
        ids = {id(m) for m in mods}
        assert id(model.towers[k]) in ids
        assert id(last.task_gates[k]) in ids
        assert id(last.experts.groups[k]) in ids  # the top level's task experts are private
        for level in model.levels:
            assert id(level.experts.groups[n_tasks]) not in ids  # shared experts are shared
            if level.shared_gate is not None:
                assert id(level.shared_gate) not in ids
            for j in range(n_tasks):
                if j != k:
                    assert id(level.experts.groups[j]) not in ids
                    assert id(level.task_gates[j]) not in ids
        params = {id(p) for p in model.task_parameters(k)}
        assert {id(p) for p in last.experts.groups[k].parameters()} <= params
    if n_levels == 1:
        for k in range(n_tasks):
            assert id(model.levels[0].experts.groups[k]) in {id(m) for m in model.task_modules(k)}


def test_shared_bottom_and_mmoe_task_modules():
    sb = build("shared_bottom", 2)
    assert sb.task_modules(1) == [sb.towers[1]]
    mmoe = build("mmoe", 2)
    assert mmoe.task_modules(0) == [mmoe.gates[0], mmoe.towers[0]]


# --------------------------------------------------------------------------------------
# InputEmbedding
# --------------------------------------------------------------------------------------

EMB_SCHEMA = FeatureSchema(
    categorical_names=("user", "item"),
    categorical_cardinalities=(4, 6),
    n_numeric=2,
    sequences=(
        SequenceInput(name="hist", vocab_size=6, shared_with="item"),
        SequenceInput(name="tags", vocab_size=5),
    ),
    texts=(TextInput(name="title", vocab_size=7, deep_size=7),),
)


def emb_batch(hist, hist_len, tags=((2, 3, 0),), tags_len=(2,), title=((4, 0, 0),), title_len=(1,)):
    n = len(hist)
    return {
        "categorical": torch.tensor([[2, 3]] * n),
        "numeric": torch.arange(2 * n, dtype=torch.float32).reshape(n, 2),
        "seq__hist": torch.tensor(hist),
        "len__hist": torch.tensor(hist_len),
        "seq__tags": torch.tensor(tags * n if len(tags) == 1 else tags),
        "len__tags": torch.tensor(tags_len * n if len(tags_len) == 1 else tags_len),
        "text__title": torch.tensor(title * n if len(title) == 1 else title),
        # a weighted bag: weight 1 on the first title_len ids, 0 on the rest
        "weight__title": (
            torch.arange(len(title[0]))[None, :]
            < torch.tensor(title_len * n if len(title_len) == 1 else title_len)[:, None]
        ).float(),
    }


def test_input_embedding_layout():
    torch.manual_seed(0)
    emb = InputEmbedding(EMB_SCHEMA, 3)
    assert emb.out_dim == 3 * (2 + 2 + 1) + 2
    assert emb.categorical.num_embeddings == 4 + 6
    assert set(emb.own_tables) == {"seq__tags"}
    assert set(emb.bags.deep) == {"text__title"}
    batch = emb_batch([[3, 0, 0]], [1])
    out = emb(batch)
    assert out.shape == (1, emb.out_dim)
    fields = emb.fields(batch)
    assert fields.shape == (1, 5, 3)
    torch.testing.assert_close(out[:, :15], fields.flatten(1))
    torch.testing.assert_close(out[:, 15:], batch["numeric"])
    torch.testing.assert_close(fields[0, 0], emb.categorical.weight[2])  # user id 2, offset 0
    torch.testing.assert_close(fields[0, 1], emb.categorical.weight[4 + 3])  # item id 3, offset 4


def test_shared_sequence_uses_the_categorical_rows():
    torch.manual_seed(0)
    emb = InputEmbedding(EMB_SCHEMA, 3)
    batch = emb_batch([[3, 0, 0], [3, 5, 0]], [1, 2])
    item_row = 4 + 3  # item column offset 4 (after user's 4 rows), id 3
    with torch.no_grad():
        emb.categorical.weight[item_row] = torch.tensor([1.0, 2.0, 3.0])
        emb.categorical.weight[4 + 5] = torch.tensor([3.0, 0.0, -1.0])
    fields = emb.fields(batch)
    torch.testing.assert_close(fields[0, 1], torch.tensor([1.0, 2.0, 3.0]))  # candidate item
    torch.testing.assert_close(fields[0, 2], torch.tensor([1.0, 2.0, 3.0]))  # history [3]
    torch.testing.assert_close(fields[1, 2], torch.tensor([2.0, 1.0, 1.0]))  # mean of rows 3 and 5
    with torch.no_grad():
        emb.categorical.weight[item_row] = torch.tensor([-4.0, 0.5, 0.0])
    torch.testing.assert_close(emb.fields(batch)[0, 2], torch.tensor([-4.0, 0.5, 0.0]))
    # the user column's rows are not used by the item history
    with torch.no_grad():
        emb.categorical.weight[3] = 100.0
    torch.testing.assert_close(emb.fields(batch)[0, 2], torch.tensor([-4.0, 0.5, 0.0]))


def test_masked_mean_ignores_padding_and_empty_is_zero():
    torch.manual_seed(0)
    emb = InputEmbedding(EMB_SCHEMA, 3)
    base = emb_batch(
        [[3, 2, 0], [0, 0, 0]],
        [1, 0],
        tags=((2, 3, 4), (0, 0, 0)),
        tags_len=(2, 0),
        title=((4, 0, 0), (0, 0, 0)),
        title_len=(1, 0),
    )
    noisy = emb_batch(
        [[3, 5, 4], [1, 2, 5]],
        [1, 0],
        tags=((2, 3, 1), (4, 4, 4)),
        tags_len=(2, 0),
        title=((4, 6, 5), (2, 3, 6)),
        title_len=(1, 0),
    )
    torch.testing.assert_close(emb(base), emb(noisy))
    fields = emb.fields(noisy)
    assert torch.equal(fields[1, 2:], torch.zeros(3, 3))  # empty history, tags and title
    tags_table = emb.own_tables["seq__tags"].weight
    torch.testing.assert_close(fields[0, 3], (tags_table[2] + tags_table[3]) / 2)
    torch.testing.assert_close(fields[0, 4], emb.bags.deep["text__title"].table.weight[4])


def test_masked_mean_function():
    x = torch.arange(24, dtype=torch.float32).reshape(2, 4, 3)
    out = masked_mean(x, torch.tensor([2, 0]))
    torch.testing.assert_close(out[0], x[0, :2].mean(dim=0))
    assert torch.equal(out[1], torch.zeros(3))


def test_input_embedding_without_input_raises():
    with pytest.raises(ValueError, match="no input"):
        InputEmbedding(FeatureSchema(), 4)


def test_input_embedding_numeric_only():
    emb = InputEmbedding(FeatureSchema(n_numeric=3), 4)
    x = torch.randn(2, 3)
    assert emb.out_dim == 3
    torch.testing.assert_close(emb({"numeric": x}), x)


# --------------------------------------------------------------------------------------
# invalid hyper-parameters
# --------------------------------------------------------------------------------------

INVALID = [
    ("shared_bottom", {"bottom_hidden_sizes": (8, -2)}),
    ("shared_bottom", {"bottom_hidden_sizes": (0,)}),
    ("mmoe", {"expert_hidden_sizes": (-3,)}),
    ("mmoe", {"n_experts": 0}),
    ("ple", {"expert_hidden_sizes": (4, -1)}),
    ("ple", {"n_levels": 0}),
    ("ple", {"n_levels": -1}),
    ("ple", {"n_task_experts": 0}),
] + [
    (name, kw)
    for name in GENERIC
    for kw in (
        {"tower_hidden_sizes": (-1,)},
        {"tower_hidden_sizes": (2.5,)},
        {"dropout": 1.5},
        {"dropout": -0.1},
        {"activation": "nope"},
    )
]


@pytest.mark.parametrize("name, kwargs", INVALID, ids=[f"{n}-{min(k)}={next(iter(k.values()))}" for n, k in INVALID])
def test_invalid_hyper_parameters_raise(name, kwargs):
    with pytest.raises(ValueError):
        build(name, 2, **kwargs)


def test_mlp_blocks():
    mlp = MLP(5, (4, 3), batch_norm=True, dropout=0.2, output_dim=1)
    assert mlp.out_dim == 1
    kinds = [type(m) for m in mlp]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout] * 2 + [nn.Linear]
    assert MLP(5, ()).out_dim == 5
    with pytest.raises(ValueError, match="activation"):
        MLP(5, (3,), activation="swish")
    with pytest.raises(ValueError, match="dropout"):
        MLP(5, (3,), dropout=1.5)
    with pytest.raises(ValueError, match="positive integers"):
        MLP(5, (-3,))


@pytest.mark.parametrize("n_levels", [1, 2, 3])
def test_ple_task_parameters_are_reached_by_their_task_only(n_levels):
    torch.manual_seed(0)
    schema = FeatureSchema(categorical_names=("a", "b"), categorical_cardinalities=(5, 4), n_numeric=3)
    model = PLE(schema, 3, n_levels=n_levels, embedding_dim=4, expert_hidden_sizes=(8,), tower_hidden_sizes=(4,))
    model.eval()
    batch = {"categorical": torch.tensor([[2, 3], [4, 2], [1, 3]]), "numeric": torch.randn(3, 3)}
    names = {id(p): n for n, p in model.named_parameters()}
    for k in range(3):
        model.zero_grad(set_to_none=True)
        model(batch)[:, k].sum().backward()
        leaked = [
            names[id(p)]
            for j in range(3)
            if j != k
            for p in model.task_parameters(j)
            if p.grad is not None and torch.count_nonzero(p.grad) > 0
        ]
        assert not leaked, leaked
