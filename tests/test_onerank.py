"""OneRank: the semantics of the structured mask, detachment and shared-prefix attention,
and the estimator's request (groups) handling."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from sklearn_mtr import OneRankClassifier
from sklearn_mtr._schema import FeatureSchema, SequenceInput
from sklearn_mtr.models import OneRank
from sklearn_mtr.models._batch import Batch
from sklearn_mtr.models.onerank import cross_task_visibility
from sklearn_mtr.optim import OPTIMIZERS

# user (context, categorical), item + genre (candidate), age (context, numeric), price
# (candidate, numeric), hist (history sharing the item vocabulary)
SCHEMA = FeatureSchema(
    categorical_names=("user", "item", "genre"),
    categorical_cardinalities=(6, 9, 4),
    n_numeric=2,
    numeric_names=("age", "price"),
    sequences=(SequenceInput("hist", 9, "item"),),
)
GROUP = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])  # requests of 3, 2, 4 and 1 candidates
N_TASKS = 3


def make_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    options = {"d_model": 8, "n_heads": 2, "n_layers": 2, "embedding_dim": 4, "context_features": ("user", "age")}
    return OneRank(SCHEMA, N_TASKS, **{**options, **kwargs}).eval()


def make_batch(seed=0, group=GROUP):
    g = torch.Generator().manual_seed(seed)
    n = len(group)
    lengths = torch.randint(0, 6, (n,), generator=g)
    lengths[0] = 5
    ids = torch.randint(2, 9, (n, 5), generator=g)
    ids[torch.arange(5)[None, :] >= lengths[:, None]] = 0
    features = {
        "categorical": torch.stack([torch.randint(2, c, (n,), generator=g) for c in (6, 9, 4)], dim=1),
        "numeric": torch.randn(n, 2, generator=g),
        "seq__hist": ids,
        "len__hist": lengths,
    }
    return Batch(features, group=group.clone())


# ---------------------------------------------------------------------- the structured mask
@pytest.mark.parametrize("j", range(N_TASKS))
def test_task_token_j_changes_only_r_j(j):
    model, batch = make_model(), make_batch()
    with torch.no_grad():
        before, layout, _ = model.encode(batch)
        model.heads[j].token.add_(torch.randn(8))
        after, _, _ = model.encode(batch)
    valid = layout.valid
    for k in range(N_TASKS):
        diff = (after[:, :, k] - before[:, :, k]).abs()[valid].max()
        if k == j:
            assert diff > 1e-3
        else:
            assert diff == 0


def test_candidate_changes_only_its_own_group():
    model, batch = make_model(), make_batch()
    with torch.no_grad():
        before, layout, _ = model.encode(batch)
        changed = Batch({k: v.clone() for k, v in batch.items()}, group=batch.group)
        changed["categorical"][0, 1] = 8 if batch["categorical"][0, 1] != 8 else 7  # item of row 0 (request 0)
        changed["numeric"][0, 1] += 3.0  # its price
        after, _, _ = model.encode(changed)
    row0 = (layout.request[0], layout.slot[0])
    assert (after[row0] - before[row0]).abs().max() > 1e-3
    others = layout.valid.clone()
    others[row0] = False
    assert torch.equal(after[others], before[others])


def test_logits_ignore_labels_and_request_order():
    model, batch = make_model(), make_batch()
    labels = torch.ones(len(GROUP), N_TASKS)
    perm = torch.randperm(len(GROUP), generator=torch.Generator().manual_seed(1))
    # the request's first row carries its context: keep each request's first row first
    first = torch.tensor([0, 3, 5, 9])
    rest = torch.tensor([i for i in perm.tolist() if i not in first.tolist()])
    order = torch.cat([first, rest])
    shuffled = Batch({k: v[order] for k, v in batch.items()}, group=batch.group[order])
    with torch.no_grad():
        logits, _ = model(batch)
        assert torch.equal(model(batch, labels=labels)[0], logits)
        torch.testing.assert_close(model(shuffled)[0], logits[order], rtol=0, atol=1e-5)


# ---------------------------------------------------------------------- candidate access
def test_candidate_access_add_starts_task_tokens_at_token_plus_candidate():
    model, batch = make_model(candidate_access="add"), make_batch()
    with torch.no_grad():
        groups = model.initial_tokens(batch)[3]
        tokens = torch.stack([h.token for h in model.heads])
    torch.testing.assert_close(groups[:, :, 1:], tokens + groups[:, :, :1])
    assert model.candidate_type is None


def test_candidate_access_attention_leaves_task_tokens_bare():
    model, batch = make_model(candidate_access="attention"), make_batch()
    with torch.no_grad():
        groups = model.initial_tokens(batch)[3]
    tokens = torch.stack([h.token for h in model.heads])
    assert torch.equal(groups[:, :, 1:], tokens.expand_as(groups[:, :, 1:]))


def test_candidate_access_type_marks_the_candidate_token_only():
    bare, batch = make_model(candidate_access="attention"), make_batch()
    typed = make_model(candidate_access="type")
    state = {k: v for k, v in typed.state_dict().items() if k != "candidate_type"}
    bare.load_state_dict(state)  # the same weights, less the type vector
    with torch.no_grad():
        typed.candidate_type.normal_()
        a, b = bare.initial_tokens(batch), typed.initial_tokens(batch)
    torch.testing.assert_close(b[3][:, :, 0], a[3][:, :, 0] + typed.candidate_type)  # candidate marked
    assert torch.equal(b[3][:, :, 1:], a[3][:, :, 1:])  # task tokens unchanged
    assert torch.equal(b[0], a[0])  # history tokens unchanged


def test_with_added_candidate_task_token_reads_its_candidate_even_without_attention():
    # Zero the encoder's residual branches: r_k is then the initial token (through the final
    # norm), which depends on the candidate only under "add".
    def r_after_candidate_change(access):
        model, batch = make_model(candidate_access=access), make_batch()
        with torch.no_grad():
            for block in model.blocks:
                block.out.weight.zero_(), block.out.bias.zero_()
                block.ffn[-1].weight.zero_(), block.ffn[-1].bias.zero_()
            before = model.encode(batch)[0]
            changed = Batch({k: v.clone() for k, v in batch.items()}, group=batch.group)
            changed["numeric"][:, 1] += 3.0  # every candidate's price
            return (model.encode(changed)[0] - before).abs().max()

    assert r_after_candidate_change("add") > 1e-3
    assert r_after_candidate_change("attention") == 0


# ---------------------------------------------------------------------- gradient detachment
def _task_loss_grads(model, batch, k):
    model.zero_grad(set_to_none=True)
    logits, _ = model(batch)
    y = torch.randint(0, 2, logits.shape[:1], generator=torch.Generator().manual_seed(k)).float()
    F.binary_cross_entropy_with_logits(logits[:, k], y).backward()


def _grad_norm(params):
    return sum(0.0 if p.grad is None else float(p.grad.abs().sum()) for p in params)


@pytest.mark.parametrize("detach", ["input", "projection"])
@pytest.mark.parametrize("mask", ["cascade", "full"])
def test_task_loss_reaches_no_other_task_private_parameters(detach, mask):
    model, batch = make_model(detach=detach, cross_task_mask=mask).train(), make_batch()
    for k in range(N_TASKS):
        _task_loss_grads(model, batch, k)
        assert _grad_norm(model.task_parameters(k)) > 0
        for j in range(N_TASKS):
            if j != k:
                assert _grad_norm(model.task_parameters(j)) == 0, (k, j)
        # the shared cross-task weights learn from every task
        assert _grad_norm([model.cross_task.key.weight, model.cross_task.value.weight]) > 0
        if model.cross_task.visibility[k].sum() > 1:  # a softmax over one key has no query gradient
            assert _grad_norm([model.cross_task.query.weight, model.cross_task.key.weight]) > 0


def test_without_detachment_other_tasks_reach_the_heads():
    """The check above can fail: without detachment, the last task's loss reaches task 0's
    head through the full cross-task mask, and task_parameters says so."""
    model, batch = make_model(detach="none", cross_task_mask="full").train(), make_batch()
    _task_loss_grads(model, batch, N_TASKS - 1)
    assert _grad_norm(model.heads[0].parameters()) > 0
    assert not any(p is q for p in model.task_parameters(0) for q in model.heads[0].parameters())
    # with the parallel mask no task reads another, so the heads stay private
    parallel = make_model(detach="none", cross_task_mask="parallel")
    assert any(p is parallel.heads[0].token for p in parallel.task_parameters(0))


def test_detach_input_vs_projection_differ_only_in_projection_gradients():
    a, b = make_model(detach="input").train(), make_model(detach="projection").train()
    batch = make_batch()
    with torch.no_grad():
        torch.testing.assert_close(a(batch)[0], b(batch)[0])
    _task_loss_grads(a, batch, 2)
    _task_loss_grads(b, batch, 2)
    # the encoder gets the same gradient; the shared key projection differs (off-diagonal signal)
    torch.testing.assert_close(a.blocks[0].qkv.weight.grad, b.blocks[0].qkv.weight.grad)
    assert not torch.allclose(a.cross_task.key.weight.grad, b.cross_task.key.weight.grad)


# ---------------------------------------------------------------------- no dead weights
def _dead_parameters(model, batch):
    """Parameters (non-empty) that a full training loss leaves without gradient (a softmax
    over one key leaves round-off, about 1e-9)."""
    model.train().zero_grad(set_to_none=True)
    labels = torch.randint(0, 2, (len(batch["numeric"]), N_TASKS), generator=torch.Generator().manual_seed(0))
    logits, aux = model(batch, labels=labels.float())
    loss = F.binary_cross_entropy_with_logits(logits, labels.float())
    (loss if aux is None else loss + aux).backward()
    return [n for n, p in model.named_parameters() if p.numel() and (p.grad is None or p.grad.abs().max() < 1e-6)]


@pytest.mark.parametrize("context", [("user", "age"), ()])
def test_every_parameter_trains_with_requests(context):
    assert _dead_parameters(make_model(context_features=context), make_batch()) == []


@pytest.mark.parametrize("context", [("user", "age"), ()])
def test_per_row_mode_builds_no_dead_weights(context):
    per_row = dict(make_batch())  # features only: no request codes
    # a request model run per row: the descriptor, query maps and temperatures get no gradient
    assert any(
        "situation" in n or "query" in n for n in _dead_parameters(make_model(context_features=context), per_row)
    )
    model = make_model(context_features=context, requests=False)
    assert _dead_parameters(model, per_row) == []
    assert model.situation is None and model.situation_const is None and len(model.temperatures) == 0
    assert not hasattr(model.heads[0], "query")
    # request ids are ignored: each row is scored alone
    with torch.no_grad():
        torch.testing.assert_close(model(make_batch())[0], model(per_row)[0])


def test_estimator_without_groups_builds_the_per_row_model():
    X, Y, groups = request_data(n_requests=6, size=6)
    per_row = OneRankClassifier(context_features=["user"], **{**TINY, "max_epochs": 1}).fit(X, Y)
    assert per_row.net_.module_.requests is False
    # it scores rows alone, with or without groups at predict
    np.testing.assert_allclose(per_row.predict_proba(X, groups=groups), per_row.predict_proba(X), atol=1e-6)
    grouped = OneRankClassifier(context_features=["user"], **{**TINY, "max_epochs": 1}).fit(X, Y, groups=groups)
    assert grouped.net_.module_.requests is True


def test_continuation_keeps_the_request_mode():
    X, Y, groups = request_data(n_requests=6, size=6)
    clf = OneRankClassifier(warm_start=True, **{**TINY, "max_epochs": 1}).fit(X, Y, groups=groups)
    with pytest.raises(ValueError, match="fitted with groups"):
        clf.fit(X, Y)
    with pytest.raises(ValueError, match="fitted with groups"):
        clf.partial_fit(X, Y)
    clf.fit(X, Y, groups=groups)  # same mode: fine


# ---------------------------------------------------------------------- request-level columns
def test_context_column_varying_within_a_request_raises():
    X, Y, groups = request_data(n_requests=6, size=6)
    clf = OneRankClassifier(context_features=["user"], **{**TINY, "max_epochs": 1})
    bad = X.copy()
    bad.loc[14, "user"] = "4" if bad.loc[14, "user"] != "4" else "3"  # row 14 is in request 2
    with pytest.raises(ValueError, match=r"column 'user' varies within request 2 \(rows 12 and 14\)"):
        clf.fit(bad, Y, groups=groups)
    clf.fit(X, Y, groups=groups)
    with pytest.raises(ValueError, match="'user' varies within request 2"):
        clf.predict_proba(bad, groups=groups)
    # without groups nothing is request-level
    with pytest.warns(UserWarning, match="fitted with groups"):
        clf.predict_proba(bad)


def test_history_varying_within_a_request_raises_and_array_input_is_checked():
    X, Y, groups = request_data(n_requests=6, size=6, history=True)
    X.at[7, "hist"] = ["1", "2", "3", "4", "5"]  # request 1
    clf = OneRankClassifier(sequence_features={"hist": "item"}, **{**TINY, "max_epochs": 1})
    with pytest.raises(ValueError, match="'hist' varies within request 1"):
        clf.fit(X, Y, groups=groups)
    A = np.column_stack([X["user"].cat.codes, X["price"]]).astype(float)
    A[20, 0] += 1  # request 3
    with pytest.raises(ValueError, match="column 0 varies within request 3"):
        OneRankClassifier(context_features=[0], **TINY).fit(A, Y, groups=groups)


@pytest.mark.parametrize("missing", [np.nan, None])
def test_missing_group_id_raises(missing):
    X, Y, groups = request_data(n_requests=6, size=6)
    holes = groups.astype(object)
    holes[5] = missing
    clf = OneRankClassifier(**{**TINY, "max_epochs": 1})
    with pytest.raises(ValueError, match="missing request id .* at row 5"):
        clf.fit(X, Y, groups=holes)
    clf.fit(X, Y, groups=groups)
    with pytest.raises(ValueError, match="missing request id .* at row 5"):
        clf.predict_proba(X, groups=holes)


# ---------------------------------------------------------------------- formulas
def test_task_query_is_built_from_the_situation():
    model = make_model()
    head = model.heads[1]
    g = torch.Generator().manual_seed(0)
    situation, r = torch.randn(4, 8, generator=g), torch.randn(4, 5, 8, generator=g)
    valid = torch.ones(4, 5, dtype=torch.bool)
    valid[0, 3:] = False
    with torch.no_grad():
        got = head(situation, r, valid)
        # the reference: q = LN(W s + b), then the head's multi-head attention over r
        q = F.layer_norm(situation @ head.query.weight.T + head.query.bias, (8,))
        q = q * head.query_norm.weight + head.query_norm.bias
        expected, _ = head.attention(q[:, None], r, r, key_padding_mask=~valid)
        torch.testing.assert_close(got, expected[:, 0])
        # and the situation matters (a query ignoring s would give the same h_k)
        assert (head(situation.flip(0), r, valid) - got).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["dot", "bilinear"])
def test_scorer_is_scaled_matching(kind):
    from sklearn_mtr.models.onerank import Scorer

    scorer = Scorer(kind, 8, bias_init=0.3)
    with torch.no_grad():
        for p in scorer.parameters():  # away from the initialisation (W = I at step 0)
            p.add_(torch.randn_like(p))
    g = torch.Generator().manual_seed(0)
    z, r = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    W = torch.eye(8) if kind == "dot" else scorer.weight.detach()
    expected = (z * (r @ W.T)).sum(-1, keepdim=True) / math.sqrt(8) + scorer.bias.detach()
    with torch.no_grad():
        torch.testing.assert_close(scorer(torch.cat([z, r], dim=1)), expected)
    assert (kind == "dot") == (sum(p.numel() for p in scorer.parameters()) == 1)  # dot: only the bias


# ---------------------------------------------------------------------- cross-task masks
def test_parallel_mask_equals_each_task_alone():
    model = make_model(cross_task_mask="parallel")
    h = torch.randn(5, N_TASKS, 8)
    with torch.no_grad():
        together = model.cross_task(h)
        for k in range(N_TASKS):
            alone = model.cross_task(h[:, k : k + 1], visibility=torch.ones(1, 1, dtype=torch.bool))
            torch.testing.assert_close(together[:, k], alone[:, 0])


def test_cascade_mask_reads_only_earlier_tasks():
    model = make_model(cross_task_mask="cascade")
    h = torch.randn(5, N_TASKS, 8)
    changed = h.clone()
    changed[:, 1] += 1.0
    with torch.no_grad():
        z, z2 = model.cross_task(h), model.cross_task(changed)
    assert torch.equal(z[:, 0], z2[:, 0])  # task 0 does not read task 1
    assert not torch.allclose(z[:, 2], z2[:, 2])  # task 2 does


def test_visibility_matrices():
    assert cross_task_visibility("cascade", 3).tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert cross_task_visibility("parallel", 2).tolist() == [[1, 0], [0, 1]]
    hybrid = [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert cross_task_visibility(hybrid, 3).tolist() == hybrid
    with pytest.raises(ValueError, match="diagonal"):
        cross_task_visibility([[0, 1], [1, 1]], 2)
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        cross_task_visibility(np.ones((3, 3)), 2)
    with pytest.raises(ValueError, match="cross_task_mask"):
        cross_task_visibility("funnel", 2)


# ---------------------------------------------------------------------- shared prefix = dense mask
def _dense_reference(model, batch):
    """The encoder as one sequence per request with a dense S x S mask built from the rules."""
    prefix, _, prefix_valid, groups, layout, _ = model.initial_tokens(batch)
    R, H, d = prefix.shape
    N, T = groups.shape[1], groups.shape[2]
    n_fields = model.n_field_tokens
    S = H + N * T
    allowed = torch.zeros(R, S, S, dtype=torch.bool)
    for r in range(R):
        for i in range(H):  # prefix rows: fields see fields; history sees fields and earlier history
            for j in range(H):
                ok = j < n_fields if i < n_fields else j <= i
                allowed[r, i, j] = (ok and bool(prefix_valid[r, j])) or i == j
        for n in range(N):
            base = H + n * T
            for t in range(T):
                row = base + t
                allowed[r, row, :H] = prefix_valid[r]
                allowed[r, row, base] = True  # the candidate token
                allowed[r, row, row] = True  # itself (task tokens see neither each other ...)
    x = torch.cat([prefix, groups.reshape(R, N * T, d)], dim=1)
    for block in model.blocks:
        q, k, v = (t.view(R, S, block.n_heads, -1).transpose(1, 2) for t in block.qkv(block.norm1(x)).chunk(3, dim=-1))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        attn = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(R, S, d)
        x = x + block.out(attn)
        x = x + block.ffn(block.norm2(x))
    out = model.final_norm(x[:, H:].reshape(R, N, T, d)[:, :, 1:])
    return out, layout


@pytest.mark.parametrize("context", [("user", "age"), ()])
def test_shared_prefix_attention_equals_dense_masked_reference(context):
    model, batch = make_model(context_features=context), make_batch()
    with torch.no_grad():
        fast, layout, _ = model.encode(batch)
        dense, _ = _dense_reference(model, batch)
    valid = layout.valid
    torch.testing.assert_close(fast[valid], dense[valid], rtol=1e-5, atol=1e-5)


def test_history_keeps_last_items_and_is_causal():
    model = make_model(max_history=3)
    batch = make_batch()
    prefix, allowed, valid, *_ = model.initial_tokens(batch)
    n_fields = model.n_field_tokens
    assert prefix.shape[1] == n_fields + 3
    # request 0's first row has 5 history items: the last 3 are kept, all valid
    assert valid[0].tolist() == [True] * (n_fields + 3)
    assert allowed[0, n_fields, n_fields + 1].item() is False  # history is causal
    assert allowed[0, n_fields + 1, n_fields].item() is True
    assert allowed[0, 0, n_fields].item() is False  # fields do not read history
    # the kept items are the last three of the row: changing the first item changes nothing
    changed = Batch({k: v.clone() for k, v in batch.items()}, group=batch.group)
    changed["seq__hist"][0, 0] = 2 if batch["seq__hist"][0, 0] != 2 else 3
    torch.testing.assert_close(model.initial_tokens(changed)[0], prefix)


# ---------------------------------------------------------------------- InfoNCE
def test_infonce_matches_formula_and_skips_degenerate_requests():
    model = make_model(infonce_weight=0.5, temperature=0.5)
    logits = torch.randn(len(GROUP), N_TASKS)
    labels = torch.tensor(
        [
            [1, 0, 1],
            [0, 0, 1],
            [1, 0, 1],
            [1, 1, 0],
            [0, 0, 0],
            [1, 0, 0],
            [1, 0, float("nan")],
            [0, 1, 0],
            [0, 0, 0],
            [1, 1, 0],
        ]
    ).float()
    layout = model.initial_tokens(make_batch())[4]
    got = model.infonce(logits, labels, layout)
    expected = 0.0
    for k in range(N_TASKS):
        losses = []
        for g in GROUP.unique():
            rows = (GROUP == g) & ~torch.isnan(labels[:, k])
            y, s = labels[rows, k], logits[rows, k] / 0.5
            if y.sum() == 0 or y.sum() == len(y):
                continue  # no positive or no negative: skipped
            log_p = torch.log_softmax(s, 0)
            losses.append(-log_p[y == 1].mean())
        if losses:
            expected += torch.stack(losses).mean()
    torch.testing.assert_close(got, 0.5 * expected)


def test_forward_aux_loss_only_with_requests_and_labels():
    model = make_model()
    batch = make_batch()
    labels = torch.tensor([[1.0, 0.0, 1.0]] * len(GROUP))
    labels[1] = 0.0
    assert model(batch)[1] is None  # no labels: prediction
    assert model(batch, labels=labels)[1] > 0
    assert model(Batch(batch), labels=labels)[1] is None  # no request codes: every row its own request


# ---------------------------------------------------------------------- estimator
def request_data(n_requests=24, size=8, seed=0, history=False):
    rng = np.random.default_rng(seed)
    n = n_requests * size
    request = np.repeat(np.arange(n_requests), size)
    user = request % 5
    item = rng.integers(0, 12, n)
    price = rng.normal(size=n)
    X = pd.DataFrame(
        {
            "user": pd.Categorical(user.astype(str)),
            "item": pd.Categorical(item.astype(str)),
            "price": price,
        }
    )
    if history:
        per_request = [list(rng.integers(0, 12, rng.integers(0, 4)).astype(str)) for _ in range(n_requests)]
        X["hist"] = [per_request[r] for r in request]  # request-level, like the context
    click = (price + 0.3 * (item % 3) + rng.normal(scale=0.5, size=n) > 0.3).astype(int)
    buy = (click & (price > 0.8)).astype(int)
    return X, np.column_stack([click, buy]), request


TINY = {
    "d_model": 8,
    "n_layers": 1,
    "embedding_dim": 4,
    "max_epochs": 2,
    "batch_size": 32,
    "lr": 0.01,
    "random_state": 0,
}


def test_fit_predict_with_groups_scores_requests_as_sets():
    X, Y, groups = request_data(history=True)
    clf = OneRankClassifier(context_features=["user"], sequence_features={"hist": "item"}, **TINY)
    clf.fit(X, Y, groups=groups)
    assert clf.fitted_with_groups_
    assert np.isfinite(clf.history_[-1, "train_loss"])
    proba = clf.predict_proba(X, groups=groups)
    assert proba.shape == (len(X), 2) and np.all((proba > 0) & (proba < 1))
    # the same as predicting each request alone, and independent of row order
    first = groups == 0
    np.testing.assert_allclose(clf.predict_proba(X[first], groups=groups[first]), proba[first], atol=1e-5)
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(clf.predict_proba(X.iloc[order], groups=groups[order]), proba[order], atol=1e-5)
    # the candidate set matters: dropping a candidate changes the others' scores
    keep = first & (np.arange(len(X)) != 1)
    assert not np.allclose(clf.predict_proba(X[keep], groups=groups[keep]), proba[keep], atol=1e-6)
    assert clf.predict(X, groups=groups).shape == (len(X), 2)
    assert 0.0 <= clf.score(X, Y, groups=groups) <= 1.0


def test_chunked_prediction_keeps_requests_whole(monkeypatch):
    # predict encodes about _PREDICT_CHUNK rows at a time; with requests a chunk must end on a
    # request boundary, and shuffled rows must come back in their own order.
    import sklearn_mtr._prediction as base

    X, Y, groups = request_data(n_requests=12, size=5)
    clf = OneRankClassifier(context_features=["user"], **TINY).fit(X, Y, groups=groups)
    order = np.random.default_rng(1).permutation(len(X))
    whole = clf.predict_proba(X.iloc[order], groups=groups[order])
    monkeypatch.setattr(base, "_PREDICT_CHUNK", 7)  # splits every request if chunks ignored them
    np.testing.assert_allclose(clf.predict_proba(X.iloc[order], groups=groups[order]), whole, atol=1e-6)


def test_fitted_with_groups_warns_when_predicting_without():
    X, Y, groups = request_data()
    clf = OneRankClassifier(context_features=["user"], **TINY).fit(X, Y, groups=groups)
    with pytest.warns(UserWarning, match="fitted with groups"):
        proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)


def test_fit_without_groups_is_per_row_and_silent():
    X, Y, _ = request_data()
    clf = OneRankClassifier(**TINY).fit(X, Y)
    assert not clf.fitted_with_groups_
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proba = clf.predict_proba(X)
    # per-row mode: a row's score does not depend on the other rows of the batch
    np.testing.assert_allclose(clf.predict_proba(X.iloc[:3]), proba[:3], atol=1e-5)
    for i in range(3):
        np.testing.assert_allclose(clf.predict_proba(X.iloc[[i]]), proba[[i]], atol=1e-5)


def test_training_batches_hold_whole_requests():
    X, Y, groups = request_data(n_requests=10, size=7)
    seen = []

    class Spy(OneRank):
        def forward(self, batch, labels=None):
            seen.append((batch.group.clone(), labels is not None))
            return super().forward(batch, labels=labels)

    clf = OneRankClassifier(context_features=["user"], **{**TINY, "max_epochs": 1, "batch_size": 16})
    clf._build_module = lambda schema, n_tasks: Spy(schema, n_tasks, d_model=8, n_layers=1, embedding_dim=4)
    clf.fit(X, Y, groups=groups)
    assert all(has_label for _, has_label in seen)  # training steps hand forward the labels
    sizes = [torch.bincount(torch.unique(g, return_inverse=True)[1]) for g, _ in seen]
    assert all(bool((s == 7).all()) for s in sizes)  # every request complete in its batch
    assert sum(len(s) for s in sizes) == 10
    seen.clear()
    clf.predict_proba(X, groups=groups)
    assert seen and not any(has_label for _, has_label in seen)  # prediction never does


def test_base_rate_initialises_scorer_bias():
    X, Y, groups = request_data()
    clf = OneRankClassifier(**{**TINY, "max_epochs": 1, "lr": 1e-9}).fit(X, Y, groups=groups)
    bias = np.array([t.bias.item() for t in clf.net_.module_.towers])
    rate = Y.mean(0)
    np.testing.assert_allclose(bias, np.log(rate / (1 - rate)), atol=1e-4)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_fits(name):
    X, Y, groups = request_data(n_requests=6, size=6)
    clf = OneRankClassifier(optimizer=name, context_features=["user"], **{**TINY, "max_epochs": 1})
    clf.fit(X, Y, groups=groups)
    assert np.all(np.isfinite(clf.predict_proba(X, groups=groups)))


@pytest.mark.parametrize("scorer", ["dot", "mlp"])
def test_other_scorers_fit(scorer):
    X, Y, groups = request_data(n_requests=6, size=6)
    clf = OneRankClassifier(scorer=scorer, cross_task_mask="full", **{**TINY, "max_epochs": 1})
    assert clf.fit(X, Y, groups=groups).predict_proba(X, groups=groups).shape == (36, 2)


def test_array_input_with_context_index():
    X, Y, groups = request_data(n_requests=6, size=6)
    A = np.column_stack([X["user"].cat.codes, X["price"]]).astype(float)
    clf = OneRankClassifier(context_features=[0], **{**TINY, "max_epochs": 1}).fit(A, Y, groups=groups)
    assert clf.net_.module_.ctx_num == [0]


@pytest.mark.parametrize(
    "params, match",
    [
        ({"context_features": ["nope"]}, "not a column"),
        ({"context_features": ["hist"]}, "sequence feature"),
        ({"cross_task_mask": "funnel"}, "cross_task_mask"),
        ({"detach": "weights"}, "detach"),
        ({"scorer": "cosine"}, "scorer"),
        ({"candidate_access": "concat"}, "candidate_access"),
        ({"d_model": 6, "n_heads": 4}, "multiple of n_heads"),
        ({"infonce_weight": -1.0}, "infonce_weight"),
    ],
)
def test_bad_parameters_raise(params, match):
    X, Y, groups = request_data(n_requests=4, size=4, history=True)
    clf = OneRankClassifier(sequence_features={"hist": "item"}, **{**TINY, **params})
    with pytest.raises(ValueError, match=match):
        clf.fit(X, Y, groups=groups)


def test_every_column_in_context_raises():
    X, Y, _ = request_data(n_requests=4, size=4)
    clf = OneRankClassifier(context_features=["user", "item", "price"], **TINY)
    with pytest.raises(ValueError, match="at least one candidate feature"):
        clf.fit(X, Y)


def test_bad_groups_at_predict():
    X, Y, groups = request_data(n_requests=4, size=4)
    clf = OneRankClassifier(**{**TINY, "max_epochs": 1}).fit(X, Y, groups=groups)
    with pytest.raises(ValueError, match="groups must have shape"):
        clf.predict_proba(X, groups=groups[:-1])


def test_text_context_and_metadata_routing_in_a_pipeline():
    import sklearn
    from sklearn.pipeline import make_pipeline

    X, Y, groups = request_data(n_requests=6, size=6)
    X["query"] = np.array(["red shoes", "blue bag", "", None, "red bag", "shoes"], dtype=object)[groups]
    with sklearn.config_context(enable_metadata_routing=True):
        clf = OneRankClassifier(context_features=["user", "query"], text_features=["query"], **TINY)
        clf.set_fit_request(groups=True).set_predict_proba_request(groups=True)
        pipe = make_pipeline(clf).fit(X, Y, groups=groups)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # groups reach predict_proba: no warning
            proba = pipe.predict_proba(X, groups=groups)
    assert clf.net_.module_ is not None and pipe[-1].net_.module_.ctx_text == [0]
    np.testing.assert_allclose(proba, pipe[-1].predict_proba(X, groups=groups))


def test_early_stopping_keeps_requests_whole_and_pickles():
    import pickle

    X, Y, groups = request_data(n_requests=12, size=6)
    clf = OneRankClassifier(context_features=["user"], early_stopping=True, validation_fraction=0.25, **TINY)
    clf.fit(X, Y, groups=groups)
    assert np.isfinite(clf.history_[-1, "valid_loss"])
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(restored.predict_proba(X, groups=groups), clf.predict_proba(X, groups=groups))


def test_gauc_scorer_passes_the_groups_to_predict_proba():
    # In a search with gauc_scorer the routed groups must reach OneRank's predict_proba too,
    # otherwise every row is scored as a request of its own (and it warns).
    import sklearn

    from sklearn_mtr.metrics import gauc_scorer, mean_group_auc_score

    X, Y, groups = request_data()
    clf = OneRankClassifier(context_features=["user"], **TINY).fit(X, Y, groups=groups)
    with warnings.catch_warnings(), sklearn.config_context(enable_metadata_routing=True):
        warnings.simplefilter("error")
        score = gauc_scorer(clf, X, Y, groups=groups)
    assert score == pytest.approx(mean_group_auc_score(Y, clf.predict_proba(X, groups=groups), groups))
