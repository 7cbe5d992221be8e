"""GRec: routing, router losses, the parallel Transformer, text / sequence inputs, estimator."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from model_fixtures import SCHEMA, make_batch
from skorch.callbacks import Callback

from sklearn_mtr import GRecClassifier
from sklearn_mtr.datasets import make_multitask_classification
from sklearn_mtr.features import TabularEncoder
from sklearn_mtr.models import GRec
from sklearn_mtr.models._moe import SwitchMoE, load_balancing_loss, route, router_z_loss
from sklearn_mtr.models._transformer import ParallelBlock, SequenceEncoder, apply_rotary, rotary_tables
from sklearn_mtr.optim import OPTIMIZERS

TINY = {"d_model": 8, "n_heads": 2, "n_experts": 3, "head_hidden_sizes": (8,), "embedding_dim": 4}


def build(schema=SCHEMA, n_tasks=2, seed=0, **kwargs):
    torch.manual_seed(seed)
    return GRec(schema, n_tasks, **{**TINY, **kwargs})


def messy_frame(n=24):
    """Text with empty strings, unicode and None; sequences with empty lists."""
    titles = ["Red shoes", "", None, "café crème 世界", "ÅNGSTRÖM ångström", "the the the", "🙂 emoji"]
    histories = [["a", "b"], [], ["c"], [], ["a", "b", "c", "a", "b"], ["d"], []]
    return pd.DataFrame(
        {
            "item": pd.Categorical([["a", "b", "c", "d"][i % 4] for i in range(n)]),
            "user": pd.Categorical([f"u{i % 5}" for i in range(n)]),
            "price": np.linspace(0.0, 1.0, n),
            "title": [titles[i % len(titles)] for i in range(n)],
            "history": [histories[i % len(histories)] for i in range(n)],
        }
    )


def messy_labels(n=24):
    rng = np.random.RandomState(0)
    return pd.DataFrame({"click": rng.randint(0, 2, n), "buy": rng.randint(0, 2, n)})


def encoded(frame):
    enc = TabularEncoder(sequence_features={"history": "item"}, text_features=["title"]).fit(frame)
    return enc.schema_, enc.transform(frame)


# --------------------------------------------------------------------------------------
# routing
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("top_k", [1, 2, 3])
@pytest.mark.parametrize("capacity", [None, 1, 4, 7])
def test_route_respects_top_k_and_capacity(top_k, capacity):
    g = torch.Generator().manual_seed(top_k * 10 + (capacity or 0))
    probs = torch.softmax(3 * torch.randn(20, 5, generator=g), dim=-1)
    index, gates, kept = route(probs, top_k, capacity)
    assert index.shape == gates.shape == kept.shape == (20, top_k)
    torch.testing.assert_close(index, probs.topk(top_k, dim=-1).indices)
    assert all(len(set(row.tolist())) == top_k for row in index)  # k distinct experts per unit
    counts = torch.bincount(index[kept], minlength=5)
    demand = torch.bincount(index.flatten(), minlength=5)
    if capacity is None:
        assert kept.all()
        assert torch.equal(counts, demand)
    else:
        # each expert takes min(demand, capacity): nothing refused below capacity, nothing above
        assert torch.equal(counts, demand.clamp(max=capacity))
    assert torch.all(gates[~kept] == 0)
    expected = probs.topk(top_k, dim=-1).values
    if top_k > 1:
        expected = expected / expected.sum(-1, keepdim=True)
    torch.testing.assert_close(gates[kept], expected[kept])


def test_route_serves_first_choices_before_second_choices():
    # every unit prefers expert 0 and then expert 1; capacity 2
    probs = torch.tensor([[0.6, 0.3, 0.1]] * 3)
    index, _, kept = route(probs, 2, capacity=2)
    # units 0 and 1 get expert 0 (first choices, in order), unit 2 is refused by expert 0;
    # expert 1 takes the second choices of units 0 and 1 and refuses unit 2's
    assert kept[:, 0].tolist() == [True, True, False]
    assert kept[:, 1].tolist() == [True, True, False]
    # unit 0 prefers expert 1: units 1 and 2 fill expert 0 with first choices, so unit 0's
    # second choice (expert 0) is refused although unit 0 comes first
    probs = torch.tensor([[0.3, 0.6, 0.1], [0.6, 0.3, 0.1], [0.6, 0.3, 0.1]])
    index, _, kept = route(probs, 2, capacity=2)
    assert index[0].tolist() == [1, 0] and kept[0].tolist() == [True, False]
    # expert 1 holds unit 0's first choice, then unit 1's second choice; unit 2's is refused
    assert kept[1].tolist() == [True, True] and kept[2].tolist() == [True, False]


def test_switch_moe_capacity_in_training_only_and_statistics():
    torch.manual_seed(0)
    moe = SwitchMoE(6, 3, 5, top_k=1, capacity_factor=0.5, router_jitter=0.1)
    x = torch.randn(30, 1, 6)
    moe.train()
    out, _, _ = moe(x)
    capacity = moe.capacity(30)
    assert capacity == 5  # ceil(0.5 * 30 / 3)
    assert moe.assigned.max() <= capacity and moe.assigned.sum() + moe.dropped == moe.total == 30
    assert moe.dropped >= 15  # at most 3 * 5 of 30 units fit
    dropped_rows = (out.abs().sum(dim=(1, 2)) == 0).sum()
    assert dropped_rows == moe.dropped  # a dropped unit gets no expert output
    moe.eval()
    moe.reset_statistics()
    out, _, _ = moe(x)
    assert moe.capacity(30) is None and (out.abs().sum(dim=(1, 2)) > 0).all()
    assert moe.total == 0  # statistics count training batches only


def test_statistics_count_a_unit_dropped_only_when_all_its_experts_refused_it():
    moe = SwitchMoE(6, 3, 5, top_k=2).train()
    index = torch.tensor([[0, 1], [0, 1], [0, 1]])
    kept = torch.tensor([[True, True], [False, True], [False, False]])
    moe.record(index, kept)
    # unit 1 still reached expert 1: only unit 2 skipped the MoE (counting refused assignments would give 3 of 6)
    assert moe.dropped == 1 and moe.total == 3
    assert moe.assigned.tolist() == [1.0, 2.0, 0.0]
    moe.eval()
    moe.record(index, kept)
    assert moe.total == 3  # inference batches are not counted


def test_sentence_routing_sends_every_token_of_a_sentence_to_the_same_expert():
    torch.manual_seed(0)
    moe = SwitchMoE(6, 4, 5, top_k=1, capacity_factor=None).eval()
    x, router_input = torch.randn(10, 5, 6), torch.randn(10, 6)
    out, _, _ = moe(x, router_input=router_input)
    probs = torch.softmax(moe.router_logits(router_input), dim=-1)
    gate, expert = probs.max(-1)
    for i in range(10):
        e = expert[i]
        manual = torch.nn.functional.leaky_relu(x[i] @ moe.w_in[e], 0.2) @ moe.w_out[e] * gate[i]
        torch.testing.assert_close(out[i], manual)


def test_sentence_capacity_drops_whole_sentences():
    model = build(capacity_factor=0.3, routing="sentence").train()
    schema_batch = make_batch(n=16)
    x = model.sentences(schema_batch).flatten(0, 1)
    normed = model.moe_norm(x + model.mixing(x))
    out, _, _ = model.moe(normed, router_input=normed[:, -1])
    per_token = out.abs().sum(-1) > 0  # (sentences, tokens)
    assert model.moe.dropped > 0
    # every sentence is either fully processed or fully passed through
    assert torch.all(per_token.all(1) | ~per_token.any(1))
    assert (~per_token.any(1)).sum() == model.moe.dropped


def test_token_routing_counts_tokens():
    model = build(routing="token", capacity_factor=None).train()
    logits, aux = model(make_batch(n=8))
    assert logits.shape == (8, 2) and aux.ndim == 0
    assert model.moe.total == 8 * 2 * model.n_tokens  # one unit per token of every sentence


def test_router_noise_only_in_training():
    torch.manual_seed(0)
    moe = SwitchMoE(6, 4, 5, router_jitter=0.2)
    x = torch.randn(10, 6)
    moe.eval()
    torch.testing.assert_close(moe.router_logits(x), moe.router_logits(x), rtol=0, atol=0)
    torch.testing.assert_close(moe.router_logits(x), moe.router(x))
    moe.train()
    assert not torch.equal(moe.router_logits(x), moe.router_logits(x))


# --------------------------------------------------------------------------------------
# router losses
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_experts", [2, 4, 8])
def test_load_balancing_loss_is_minimal_for_uniform_routing(n_experts):
    n = 8 * n_experts
    uniform_probs = torch.full((n, n_experts), 1.0 / n_experts)
    balanced = torch.arange(n)[:, None] % n_experts
    assert load_balancing_loss(uniform_probs, balanced).item() == pytest.approx(1.0)
    # collapse on one expert: the maximum, E
    one_hot = torch.nn.functional.one_hot(torch.zeros(n, dtype=torch.long), n_experts).float()
    assert load_balancing_loss(one_hot, torch.zeros(n, 1, dtype=torch.long)).item() == pytest.approx(n_experts)
    # any routing whose probabilities agree with its dispatch: E * sum f^2 >= 1, equality iff uniform
    g = torch.Generator().manual_seed(n_experts)
    for _ in range(50):
        index = torch.randint(0, n_experts, (n, 1), generator=g)
        probs = torch.nn.functional.one_hot(index[:, 0], n_experts).float()
        value = load_balancing_loss(probs, index).item()
        balanced_draw = torch.bincount(index[:, 0], minlength=n_experts).unique().numel() == 1
        assert value >= 1.0 - 1e-6 and (value > 1.0 + 1e-6 or balanced_draw)
    # uniform routing is a stationary point: no gradient on the router logits
    logits = torch.zeros(n, n_experts, requires_grad=True)
    load_balancing_loss(torch.softmax(logits, -1), balanced).backward()
    assert logits.grad.abs().max() < 1e-7


def test_load_balancing_loss_reads_probabilities_not_logits():
    torch.manual_seed(0)
    moe = SwitchMoE(6, 4, 5, capacity_factor=None).eval()
    x = torch.randn(12, 1, 6)
    _, balance, z = moe(x)
    logits = moe.router(x[:, 0])
    probs = torch.softmax(logits, -1)
    torch.testing.assert_close(balance, load_balancing_loss(probs, probs.argmax(-1, keepdim=True)))
    torch.testing.assert_close(z, router_z_loss(logits))
    # the released code's bug would make the loss move with a constant shift of the logits
    with torch.no_grad():
        moe.router.bias += 5.0
    _, shifted, _ = moe(x)
    torch.testing.assert_close(shifted, balance)


def test_z_loss():
    logits = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    expected = (np.log(2) ** 2 + np.log(np.exp(1) + np.exp(2)) ** 2) / 2
    assert router_z_loss(logits).item() == pytest.approx(expected, rel=1e-6)


def test_aux_loss_uses_the_coefficients():
    batch = make_batch(n=8)
    off = build(balance_loss_coef=0.0, z_loss_coef=0.0).eval()
    assert off(batch)[1].item() == 0.0
    on = build(balance_loss_coef=1.0, z_loss_coef=0.0).eval()
    assert 0.0 < on(batch)[1].item() <= TINY["n_experts"] + 1e-6


# --------------------------------------------------------------------------------------
# transformer pieces
# --------------------------------------------------------------------------------------


def test_rotary_scores_depend_on_relative_position_only():
    torch.manual_seed(0)
    q, k = torch.randn(8), torch.randn(8)
    cos, sin = rotary_tables(12, 8, "cpu", torch.float32)

    def score(m, n):
        return apply_rotary(q, cos[m], sin[m]) @ apply_rotary(k, cos[n], sin[n])

    assert score(3, 1).item() == pytest.approx(score(10, 8).item(), abs=1e-5)
    assert score(3, 1).item() != pytest.approx(score(3, 2).item(), abs=1e-3)


def test_padding_does_not_change_a_sequence_token():
    torch.manual_seed(0)
    encoder = SequenceEncoder(4, 8, n_layers=2, n_heads=2).eval()
    seq = torch.randn(1, 3, 4)
    alone = encoder(seq, torch.tensor([3]))
    padded = torch.cat([seq, torch.randn(1, 5, 4)], dim=1)  # garbage in the padding
    torch.testing.assert_close(encoder(padded, torch.tensor([3])), alone)
    empty = encoder(torch.randn(2, 4, 4), torch.tensor([0, 0]))
    torch.testing.assert_close(empty, encoder.project_out.bias.expand(2, -1))
    assert torch.isfinite(encoder(torch.zeros(2, 0, 4), torch.tensor([0, 0]))).all()


def test_parallel_block_is_multi_query():
    block = ParallelBlock(8, n_heads=4, dim_head=2)
    # fused projection: 4 query heads, one key head, one value head, SwiGLU input
    assert block.fused_in.weight.shape == (4 * 2 + 2 + 2 + 2 * 4 * 8, 8)
    assert all(m.bias is None for m in (block.fused_in, block.attn_out, block.ff_out))
    with pytest.raises(ValueError, match="even"):
        ParallelBlock(8, n_heads=1, dim_head=3)


@pytest.mark.parametrize("task_batch", [1, 5])
def test_shared_prefix_block_equals_the_block_on_each_sequence(task_batch):
    torch.manual_seed(0)
    block = ParallelBlock(8, n_heads=2, dim_head=4).eval()
    prefix, suffix = torch.randn(5, 3, 8), torch.randn(task_batch, 4, 8)
    fast = block.forward_shared_prefix(prefix, suffix)
    suffix = suffix.expand(5, -1, -1)
    slow = torch.stack([block(torch.cat([prefix, suffix[:, k : k + 1]], dim=1)) for k in range(4)], dim=1)
    torch.testing.assert_close(fast, slow)


@pytest.mark.parametrize("routing", ["sentence", "token"])
def test_forward_equals_mixing_every_sentence(routing):
    schema, batch = encoded(messy_frame())
    model = build(schema, n_tasks=3, routing=routing, task_features=["user"]).eval()
    x = model.sentences(batch).flatten(0, 1)
    x = x + model.mixing(x)
    normed = model.moe_norm(x)
    if routing == "sentence":
        out, _, _ = model.moe(normed, router_input=normed[:, -1])
    else:
        out = model.moe(normed.reshape(-1, 1, x.shape[-1]))[0].view_as(x)
    h = model.head((x + out).flatten(1)).view(24, 3, -1)
    expected = torch.cat([tower(h[:, k]) for k, tower in enumerate(model.towers)], dim=1)
    torch.testing.assert_close(model(batch)[0], expected)


def task_routing_reference(model, batch):
    """Task routing written out task by task: route the task embedding, run the sentence of
    shared tokens through that task's experts (weighted by the mean gate of the tasks that
    share the path), the head and the task's tower."""
    shared = model.shared_tokens(batch)
    x = shared + model.mixing(shared)
    normed = model.moe_norm(x)
    probs = torch.softmax(model.moe.router(model.moe_norm(torch.stack(list(model.task_tokens)))), -1)
    top_p, top_e = probs.topk(model.moe.top_k, -1)
    gates = top_p / top_p.sum(-1, keepdim=True) if model.moe.top_k > 1 else top_p
    columns = []
    for k in range(model.n_tasks):
        same = [j for j in range(model.n_tasks) if set(top_e[j].tolist()) == set(top_e[k].tolist())]
        y = x.clone()
        for e in top_e[k].tolist():
            gate = torch.stack([gates[j][top_e[j] == e][0] for j in same]).mean()
            y = y + gate * torch.nn.functional.leaky_relu(normed @ model.moe.w_in[e], 0.2) @ model.moe.w_out[e]
        columns.append(model.towers[k](model.head(y.flatten(1))))
    return model.embedding.bags.add_to(torch.cat(columns, 1), batch)


@pytest.mark.parametrize("top_k", [1, 2])
def test_task_routing_equals_routing_each_task_on_its_embedding(top_k):
    schema, batch = encoded(messy_frame())
    model = build(schema, n_tasks=6, routing="task", top_k=top_k, seed=3).eval()
    assert model.n_tokens == 4  # context, history, title, item: no task token
    torch.testing.assert_close(model(batch)[0], task_routing_reference(model, batch))


def count_expert_runs(model, monkeypatch) -> list:
    calls = []
    original = model.moe.expert

    def counted(e, x):
        calls.append((e, x.shape[0]))
        return original(e, x)

    monkeypatch.setattr(model.moe, "expert", counted)
    return calls


@pytest.mark.parametrize("n_tasks", [2, 12])
def test_task_routing_runs_each_expert_once_per_batch_however_many_tasks(n_tasks, monkeypatch):
    schema, batch = encoded(messy_frame())
    model = build(schema, n_tasks=n_tasks, routing="task", n_experts=3).eval()
    calls = count_expert_runs(model, monkeypatch)
    logits, _ = model(batch)
    paths, path_of, _ = model.task_paths(*model.route_tasks()[2:], 3)
    # one run per distinct expert over the batch's rows (not per (row, task) sentence)
    assert sorted(e for e, _ in calls) == sorted({e for p in paths for e in p}) and len(calls) <= 3
    assert all(rows == 24 for _, rows in calls)
    assert len(set(path_of)) == len(paths) <= 3 and logits.shape == (24, n_tasks)


@pytest.mark.parametrize("routing", ["task", "sentence", "token"])
def test_scoring_some_tasks_equals_slicing_all_and_builds_only_theirs(routing, monkeypatch):
    schema, batch = encoded(messy_frame())
    model = build(schema, n_tasks=5, routing=routing, n_experts=3, tower_hidden_sizes=()).eval()
    full, _ = model(batch)
    calls = count_expert_runs(model, monkeypatch)
    some, _ = model(batch, tasks=[4, 1])
    torch.testing.assert_close(some, full[:, [4, 1]])
    if routing == "task":
        paths, path_of, _ = model.task_paths(*model.route_tasks()[2:], 3)
        assert sorted(e for e, _ in calls) == sorted({e for k in (4, 1) for e in paths[path_of[k]]})
    else:  # two sentences per row, not five
        assert sum(rows for _, rows in calls) == 24 * 2 * (model.n_tokens if routing == "token" else 1)
    with pytest.raises(ValueError, match="task indices"):
        model(batch, tasks=[5])


def test_task_routing_counts_every_row_of_a_task_and_drops_nothing():
    model = build(n_tasks=3, routing="task", capacity_factor=0.1).train()
    model(make_batch(n=8))
    assert model.moe.total == 8 * 3 and model.moe.dropped == 0 and model.moe.assigned.sum() == 8 * 3


def test_window_keeps_the_last_sequence_items_and_the_first_text_tokens():
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 0, 0], [0, 0, 0, 0]])
    lengths = torch.tensor([4, 2, 0])
    last, kept = GRec._window(ids, lengths, 3, last=True)
    assert last.tolist() == [[6, 7, 8], [5, 6, 0], [0, 0, 0]] and kept.tolist() == [3, 2, 0]
    first, kept = GRec._window(ids, lengths, 3, last=False)
    assert first.tolist() == [[5, 6, 7], [5, 6, 0], [0, 0, 0]] and kept.tolist() == [3, 2, 0]


# --------------------------------------------------------------------------------------
# the module
# --------------------------------------------------------------------------------------


def test_output():
    model = build(n_tasks=3).eval()
    logits, aux = model(make_batch())
    assert logits.shape == (8, 3) and aux.ndim == 0 and torch.isfinite(logits).all()
    assert model.routing == "task" and model.n_tokens == 1  # context only (the task picks the path)
    assert build(n_tasks=3, routing="sentence").n_tokens == 2  # context + task token


def test_tokens_from_text_and_sequences():
    schema, batch = encoded(messy_frame())
    model = build(schema, routing="sentence").eval()
    assert model.n_tokens == 5  # context, history, title, item, task
    assert model.item_columns.tolist() == [0] and model.context_columns.tolist() == [1]
    logits, _ = model(batch)
    assert torch.isfinite(logits).all()
    explicit = build(schema, item_features=["item", "user"], routing="sentence").eval()
    assert explicit.context_columns.numel() == 0 and explicit.n_tokens == 5  # wide half only in context


def test_task_features_shift_every_task_token():
    schema, batch = encoded(messy_frame())
    model = build(schema, task_features=["user"], routing="sentence").eval()
    sentences = model.sentences(batch)
    base = torch.stack(list(model.task_tokens))
    shift = sentences[:, :, -1, :] - base[None]
    torch.testing.assert_close(shift[:, 0], shift[:, 1])  # the same auxiliary token for each task
    assert shift.abs().sum() > 0


def reached_by(model, batch):
    """For every parameter, the set of tasks whose logit it influences (by autograd)."""
    logits, _ = model(batch)
    params = dict(model.named_parameters())
    reach = {name: set() for name in params}
    for k in range(logits.shape[1]):
        grads = torch.autograd.grad(logits[:, k].sum(), list(params.values()), retain_graph=True, allow_unused=True)
        for name, g in zip(params, grads):
            if g is not None and g.abs().sum() > 0:
                reach[name].add(k)
    return reach


@pytest.mark.parametrize("routing", ["task", "sentence", "token"])
def test_parameter_groups(routing):
    schema, batch = encoded(messy_frame())
    model = build(schema, n_tasks=3, routing=routing, top_k=2, tower_hidden_sizes=(4,)).eval()
    reach = reached_by(model, batch)
    names = {id(p): n for n, p in model.named_parameters()}
    private = set()
    for k in range(3):
        declared = {names[id(p)] for p in model.task_parameters(k)}
        truly = {n for n, tasks in reach.items() if tasks == {k}}
        if routing == "task":  # a task embedding is shared: its path's gate reaches every task on the path
            truly -= {f"task_tokens.{j}" for j in range(3)}
            assert {k} <= reach[f"task_tokens.{k}"]
        assert declared == truly, (k, declared ^ truly)
        private |= declared
    shared = {names[id(p)] for p in model.shared_parameters()}
    assert shared.isdisjoint(private) and shared | private == set(names.values())
    own = {"towers.0.1.weight"} | ({"task_tokens.0"} if routing != "task" else set())
    assert own <= {names[id(p)] for p in model.task_parameters(0)}
    assert model.same_shaped_towers()


def test_tower_inputs_match_forward():
    model = build(n_tasks=3).eval()
    batch = make_batch()
    inputs = model.tower_inputs(batch)
    manual = torch.cat([tower(x) for tower, x in zip(model.towers, inputs)], dim=1)
    torch.testing.assert_close(manual, model(batch)[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"routing": "expert"}, "routing"),
        ({"top_k": 4}, "top_k"),
        ({"d_model": 10, "n_heads": 2}, "even head width"),
        ({"d_model": 9, "n_heads": 2}, "multiple of n_heads"),
        ({"capacity_factor": 0.0}, "capacity_factor"),
        ({"router_jitter": 1.5}, "router_jitter"),
        ({"item_features": ["nope"]}, "item_features names 'nope'"),
        ({"task_features": ["a", "a"]}, "twice"),
        ({"balance_loss_coef": -1.0}, "balance_loss_coef"),
        ({"n_sequence_layers": -1}, "n_sequence_layers"),
        ({"expert_hidden_dim": 0}, "expert_hidden_dim"),
        ({"routing": "task", "task_features": ["a"]}, "task_features feed the task token"),
    ],
)
def test_invalid_hyper_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(**kwargs)


# --------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------

EST = {"d_model": 8, "n_experts": 3, "head_hidden_sizes": (8,), "embedding_dim": 4, "batch_size": 16, "random_state": 0}


def test_text_and_sequence_columns_with_empty_unicode_and_none():
    X, Y = messy_frame(), messy_labels()
    clf = GRecClassifier(sequence_features={"history": "item"}, text_features=["title"], max_epochs=2, **EST)
    proba = clf.fit(X, Y).predict_proba(X)
    assert proba.shape == (24, 2) and np.isfinite(proba).all()
    # unseen words, only empty histories, only missing titles at predict time
    X_new = X.copy()
    X_new["title"] = [None, "", "völlig neue wörter", "?"] * 6
    X_new["history"] = [[] for _ in range(24)]
    assert np.isfinite(clf.predict_proba(X_new)).all()
    history = clf.history_
    assert 0.0 <= history[-1, "capacity_dropped_fraction"] <= 1.0
    load = history[-1, "router_expert_load"]
    assert len(load) == 3 and sum(load) == pytest.approx(1.0)


@pytest.mark.parametrize("routing", ["task", "sentence", "token"])
def test_predict_proba_is_deterministic_and_batch_independent(routing):
    X, Y = make_multitask_classification(n_samples=120, n_features=4, n_categorical=1, as_frame=True, random_state=0)
    clf = GRecClassifier(routing=routing, capacity_factor=0.5, max_epochs=2, **EST).fit(X, Y)
    p1, p2 = clf.predict_proba(X), clf.predict_proba(X)
    np.testing.assert_array_equal(p1, p2)  # no router noise at inference
    np.testing.assert_allclose(clf.predict_proba(X.iloc[:7]), p1[:7], rtol=1e-5, atol=1e-6)  # dropless
    again = GRecClassifier(routing=routing, capacity_factor=0.5, max_epochs=2, **EST).fit(X, Y)
    np.testing.assert_allclose(again.predict_proba(X), p1, rtol=1e-5, atol=1e-6)  # seeded fit
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), p1)


@pytest.mark.parametrize("routing", ["task", "sentence"])
def test_predict_proba_for_some_tasks_equals_slicing_predict_proba(routing):
    X, Y = make_multitask_classification(n_samples=80, n_tasks=3, n_features=4, as_frame=True, random_state=0)
    clf = GRecClassifier(routing=routing, max_epochs=1, **EST).fit(X, Y)
    names = list(clf.task_names_)
    full = clf.predict_proba(X)
    np.testing.assert_allclose(clf.predict_proba_for(X, [names[2], names[0]]), full[:, [2, 0]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba_for(X, 1), full[:, [1]], rtol=1e-5, atol=1e-6)
    assert clf.predict_proba(X).shape == (80, 3)  # the module scores every task again afterwards
    with pytest.raises(ValueError, match="not a task"):
        clf.predict_proba_for(X, ["nope"])


def test_training_drops_at_low_capacity():
    X, Y = make_multitask_classification(n_samples=64, n_features=4, as_frame=True, random_state=0)
    clf = GRecClassifier(routing="sentence", capacity_factor=0.25, max_epochs=1, **EST).fit(X, Y)
    # ceil(0.25 * 32 / 3) = 3 of 32 sentences per expert per batch: at least 23 of 32 dropped
    assert clf.history_[-1, "capacity_dropped_fraction"] >= 23 / 32


class RouteEverythingTo(Callback):
    """Forces a collapse: a router that sends every unit to one expert, whatever its input."""

    def __init__(self, expert):
        self.expert = expert

    def on_train_begin(self, net, **kwargs):
        router = net.module_.moe.router
        with torch.no_grad():
            router.weight.zero_()
            router.bias.fill_(0.0)
            router.bias[self.expert] = 50.0


def test_a_collapsed_expert_is_reported_once_per_fit():
    X, Y = make_multitask_classification(n_samples=64, n_features=4, as_frame=True, random_state=0)
    clf = GRecClassifier(
        routing="sentence", max_epochs=3, callbacks=[RouteEverythingTo(1)], capacity_factor=None, **EST
    )
    with pytest.warns(RuntimeWarning, match="collapse") as caught:
        clf.fit(X, Y)
    messages = [str(w.message) for w in caught if "collapse" in str(w.message)]
    assert len(messages) == 1  # three epochs of 4 batches, one warning
    assert "expert 0 (load 0.0000)" in messages[0] and "expert 2 (load 0.0000)" in messages[0]
    assert "expert 1" not in messages[0]
    assert clf.history_[-1, "router_expert_load"] == [0.0, 1.0, 0.0]
    with pytest.warns(RuntimeWarning, match="collapse"):  # a new fit reports again
        clf.fit(X, Y)


@pytest.mark.parametrize("optimizer", ["adam", "drgrad"])  # drgrad wraps the module
def test_no_collapse_warning_when_task_routing_has_fewer_choices_than_experts(optimizer):
    X, Y = make_multitask_classification(n_samples=64, n_features=4, as_frame=True, random_state=0)
    # 2 tasks, 3 experts: one is idle by design
    clf = GRecClassifier(routing="task", optimizer=optimizer, max_epochs=2, **EST)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        clf.fit(X, Y)
    assert clf.history_[-1, "router_expert_load"].count(0.0) >= 1
    assert clf.history_[:, "capacity_dropped_fraction"] == [0.0, 0.0]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_trains_grec(name):
    X, Y = make_multitask_classification(n_samples=96, n_features=4, n_categorical=1, as_frame=True, random_state=0)
    clf = GRecClassifier(optimizer=name, max_epochs=1, **{**EST, "batch_size": 48})
    proba = clf.fit(X, Y).predict_proba(X)
    assert proba.shape == (96, 2) and np.isfinite(proba).all()
    assert np.isfinite(clf.history_[-1, "train_loss"])


# --------------------------------------------------------------------------------------
# pluggable sentence encoder
# --------------------------------------------------------------------------------------


TEXT = {"sequence_features": {"history": "item"}, "text_features": ["title"]}


def char_hash_encoder(texts):
    """Deterministic toy sentence encoder: character codes hashed into 8 bins, plus the length."""
    out = np.zeros((len(texts), 8))
    for i, text in enumerate(texts):
        assert isinstance(text, str)
        for j, char in enumerate(text):
            out[i, (ord(char) * 31 + j) % 7] += 1.0
        out[i, 7] = len(text) / 10.0
    return out


def test_sentence_encoder_fits_predicts_and_replaces_the_word_encoder():
    X, Y = messy_frame(), messy_labels()
    seen = []

    def encoder(texts):
        seen.append(list(texts))
        return char_hash_encoder(texts)

    clf = GRecClassifier(**TEXT, sentence_encoder=encoder, max_epochs=2, **EST).fit(X, Y)
    assert clf.sentence_dims_ == {"title": 8}
    assert seen[0][:7] == ["Red shoes", "", "", "café crème 世界", "ÅNGSTRÖM ångström", "the the the", "🙂 emoji"]
    model = clf.net_.module_
    assert set(model.sentence_projections) == {"title"} and "title" not in model.text_encoders
    assert not model.embedding.bags.deep["text__title"].table.weight.requires_grad  # never read: frozen
    proba = clf.predict_proba(X)
    assert proba.shape == (24, 2) and np.isfinite(proba).all()
    X_new = X.copy()
    X_new["title"] = [None, "", "völlig neue wörter", np.nan] * 6
    assert np.isfinite(clf.predict_proba(X_new)).all()
    assert seen[-1][:4] == ["", "", "völlig neue wörter", ""]
    # the vectors reach the model: another encoder output, other predictions
    clf.set_params(sentence_encoder=lambda texts: char_hash_encoder(texts)[:, ::-1] * 3.0)
    assert np.abs(clf.predict_proba(X) - proba).max() > 1e-4
    # and the word encoder path is unchanged without one
    plain = GRecClassifier(**TEXT, max_epochs=1, **EST).fit(X, Y)
    assert plain.sentence_dims_ == {} and len(plain.net_.module_.sentence_projections) == 0


def test_sentence_encoder_tensor_output_and_pickling():
    X, Y = messy_frame(), messy_labels()
    clf = GRecClassifier(
        sequence_features={"history": "item"},
        text_features=["title"],
        sentence_encoder=char_hash_encoder,
        max_epochs=1,
        **EST,
    ).fit(X, Y)
    proba = clf.predict_proba(X)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), proba)
    joblib = pytest.importorskip("joblib")
    import io

    buffer = io.BytesIO()
    joblib.dump(clf, buffer)
    buffer.seek(0)
    np.testing.assert_array_equal(joblib.load(buffer).predict_proba(X), proba)
    # a torch tensor output is accepted too
    clf.set_params(sentence_encoder=lambda texts: torch.from_numpy(char_hash_encoder(texts)))
    np.testing.assert_allclose(clf.predict_proba(X), proba, rtol=1e-6)


def test_sentence_encoder_get_params_and_clone():
    from sklearn.base import clone

    clf = GRecClassifier(text_features=["title"], sentence_encoder=char_hash_encoder)
    assert clf.get_params()["sentence_encoder"] is char_hash_encoder
    cloned = clone(clf)
    assert cloned.get_params()["sentence_encoder"] is char_hash_encoder
    assert GRecClassifier().get_params()["sentence_encoder"] is None


@pytest.mark.parametrize(
    ("encoder", "match"),
    [
        (lambda texts: np.zeros(len(texts)), r"shape \(n, d\) = \(24, d >= 1\).*'title'.*got shape \(24,\)"),
        (lambda texts: np.zeros((len(texts) - 1, 4)), r"'title'.*got shape \(23, 4\)"),
        (lambda texts: np.zeros((len(texts), 0)), r"'title'.*got shape \(24, 0\)"),
        (
            lambda texts: np.where(np.arange(len(texts))[:, None] == 3, np.nan, 1.0) * np.ones((1, 4)),
            r"non-finite.*'title'.*row 3",
        ),
        (lambda texts: [["a", "b"]] * len(texts), r"array of floats.*'title'"),
        ("not callable", "sentence_encoder must be a callable"),
    ],
)
def test_bad_sentence_encoder_output_raises(encoder, match):
    X, Y = messy_frame(), messy_labels()
    with pytest.raises(ValueError, match=match):
        GRecClassifier(**TEXT, sentence_encoder=encoder, max_epochs=1, **EST).fit(X, Y)


def test_sentence_dimension_must_not_change_at_predict():
    X, Y = messy_frame(), messy_labels()
    clf = GRecClassifier(**TEXT, sentence_encoder=char_hash_encoder, max_epochs=1, **EST).fit(X, Y)
    clf.set_params(sentence_encoder=lambda texts: char_hash_encoder(texts)[:, :5])
    with pytest.raises(ValueError, match=r"dimension 5 for text column 'title'.*fitted on dimension 8"):
        clf.predict_proba(X)
    clf.set_params(sentence_encoder=lambda texts: np.full((len(texts), 8), np.inf))
    with pytest.raises(ValueError, match="non-finite.*'title'"):
        clf.predict_proba(X)


def test_sentence_dims_validated_by_the_model():
    schema, _ = encoded(messy_frame())
    with pytest.raises(ValueError, match="'price', which is not a text column"):
        build(schema, sentence_dims={"price": 4})
    with pytest.raises(ValueError, match=r"sentence_dims\['title'\] must be a positive integer"):
        build(schema, sentence_dims={"title": 0})
    model = build(schema, sentence_dims={"title": 3})
    _, batch = encoded(messy_frame())
    with pytest.raises(ValueError, match="no 'sentence__title'"):
        model(batch)
    logits, _ = model({**batch, "sentence__title": torch.randn(24, 3)})
    assert logits.shape == (24, 2)


def test_safe_save_refuses_a_sentence_encoder(tmp_path):
    from sklearn_mtr.persistence import save

    clf = GRecClassifier(text_features=["title"], sentence_encoder=char_hash_encoder)
    with pytest.raises(ValueError, match="sentence_encoder"):
        save(clf, tmp_path / "model.mtr")
