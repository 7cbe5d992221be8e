"""The defining mechanism of each architecture of issue 19 (OMoE, DSelect-k, cross-stitch,
PEPNet, DBMTL, ESCM2), and a fit of each through its estimator with several multi-task methods.

The generic model tests (shapes, options, parameter groups, gradient isolation) cover them
through test_models.py's MODELS / SMALL; the scikit-learn checks through the registry."""

import numpy as np
import pytest
import torch
from test_models import BATCH_SIZE, SCHEMA, build, logits_of, make_batch

from sklearn_mtr import (
    CrossStitchClassifier,
    DBMTLClassifier,
    DSelectKClassifier,
    ESCM2Classifier,
    ESMMClassifier,
    OMoEClassifier,
    PEPNetClassifier,
)
from sklearn_mtr.datasets import make_funnel_classification, make_multitask_classification
from sklearn_mtr.models import ESCM2, DSelectK, PEPNet
from sklearn_mtr.models.dselect_k import DSelectKGate, smooth_step
from sklearn_mtr.models.esmm import chained_product_logits


def _grad_nonzero(params):
    return any(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in params)


# --------------------------------------------------------------------------------------
# OMoE
# --------------------------------------------------------------------------------------


def test_omoe_has_one_gate_and_every_task_reads_the_same_mixture():
    model = build("omoe", 3, n_experts=4)
    assert not hasattr(model, "gates") and model.gate.out_features == 4
    batch = make_batch()
    weights = model.gate_weights(batch)
    assert weights.shape == (BATCH_SIZE, 4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(BATCH_SIZE))
    inputs = model.tower_inputs(batch)
    assert len(inputs) == 3 and all(x is inputs[0] for x in inputs)
    # the mixture is the gate's weighted sum of the experts
    experts = model.experts(model.embedding(batch))
    torch.testing.assert_close(inputs[0], torch.einsum("be,beh->bh", weights, experts))
    # the gate is shared: every task's loss reaches it, and a task owns its tower only
    for k in range(3):
        assert model.task_modules(k) == [model.towers[k]]
        model.zero_grad(set_to_none=True)
        model(batch)[:, k].sum().backward()
        assert _grad_nonzero(model.gate.parameters())


# --------------------------------------------------------------------------------------
# DSelect-k
# --------------------------------------------------------------------------------------


def test_smooth_step_matches_the_paper():
    gamma = 2.0
    t = torch.tensor([-5.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    expected = torch.where(
        t <= -1, torch.zeros_like(t), torch.where(t >= 1, torch.ones_like(t), -2 / 8 * t**3 + 3 / 4 * t + 0.5)
    )
    torch.testing.assert_close(smooth_step(t, gamma), expected)
    assert smooth_step(torch.tensor(0.0), gamma) == 0.5
    # continuous and flat at the ends of the cubic region
    torch.testing.assert_close(smooth_step(torch.tensor([-1.0, 1.0]), gamma), torch.tensor([0.0, 1.0]))
    x = torch.tensor([-0.999999, 0.999999], requires_grad=True)
    smooth_step(x, gamma).sum().backward()
    assert x.grad.abs().max() < 1e-4


@pytest.mark.parametrize("per_example", [True, False])
def test_dselect_k_with_one_expert_selects_it(per_example):
    gate = DSelectKGate(6, 1, 1, 1.0, per_example)
    assert gate.n_bits == 0
    weights, r = gate(torch.randn(5, 6))
    torch.testing.assert_close(weights, torch.ones(5, 1))
    torch.testing.assert_close(r, torch.ones(5, 1, 1))


@pytest.mark.parametrize("n_experts", [4, 5, 8])
@pytest.mark.parametrize("per_example", [True, False])
def test_dselect_k_selectors_are_distributions_over_the_binary_codes(n_experts, per_example):
    torch.manual_seed(0)
    gate = DSelectKGate(6, n_experts, 3, 1.0, per_example)
    assert gate.n_bits == int(np.ceil(np.log2(n_experts)))
    # binary codes, most significant bit first: expert j's code is j
    codes = gate.codes.long()
    values = (codes * (2 ** torch.arange(gate.n_bits - 1, -1, -1))).sum(-1)
    assert values.tolist() == list(range(n_experts))
    x = torch.randn(5, 6) * 50  # large inputs: some bits saturate, some do not
    weights, r = gate(x)
    assert r.shape == (5, 3, n_experts) and weights.shape == (5, n_experts)
    assert (r >= 0).all() and (weights >= 0).all()
    if n_experts & (n_experts - 1) == 0:  # every code is an expert: each selector sums to 1
        torch.testing.assert_close(r.sum(-1), torch.ones(5, 3))
        torch.testing.assert_close(weights.sum(-1), torch.ones(5))
    else:
        assert (r.sum(-1) <= 1 + 1e-6).all()


def _saturate(gate, experts_per_selector, alpha=(0.3, -0.2)):
    """Static gate logits that make selector i pick ``experts_per_selector[i]`` exactly."""
    with torch.no_grad():
        for i, j in enumerate(experts_per_selector):
            bits = [(j >> (gate.n_bits - 1 - b)) & 1 for b in range(gate.n_bits)]
            gate.z_logits[i] = torch.tensor([gate.gamma if bit else -gate.gamma for bit in bits])
        gate.w_logits.copy_(torch.tensor(alpha))


def test_dselect_k_saturated_gate_selects_exactly_k_experts():
    gate = DSelectKGate(6, 8, 2, 1.0, per_example=False)
    _saturate(gate, [5, 2])
    weights, r = gate(torch.randn(4, 6))
    # each selector is one-hot, and the gate's weights are k-sparse and sum to 1
    assert torch.equal(r[0], torch.eye(8)[[5, 2]])
    assert (torch.count_nonzero(weights, dim=-1) == 2).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(4))
    softmax = torch.softmax(torch.tensor([0.3, -0.2]), 0)
    torch.testing.assert_close(weights[0, [5, 2]], softmax)
    # saturated selectors have no gradient on their bits (the smooth step is flat there)
    weights.sum().backward()
    assert torch.count_nonzero(gate.z_logits.grad) == 0
    # two selectors on the same expert: fewer than k
    _saturate(gate, [3, 3])
    assert (torch.count_nonzero(gate(torch.randn(4, 6))[0], dim=-1) == 1).all()


def test_dselect_k_per_example_gate_is_sparse_when_logits_saturate():
    torch.manual_seed(0)
    gate = DSelectKGate(6, 8, 3, 1.0, per_example=True)
    with torch.no_grad():
        gate.z_logits.weight.mul_(1e4)  # the selector logits are far outside (-gamma/2, gamma/2)
    weights, r = gate(torch.randn(16, 6))
    assert ((r == 0) | (r == 1)).all()
    assert (torch.count_nonzero(weights, dim=-1) <= 3).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(16))


def test_dselect_k_training_converges_to_k_sparse_gates():
    # a static gate trained on a task that wants one particular expert: the smooth step
    # saturates and the gate ends exactly k-sparse (the paper's claim for first-order training)
    torch.manual_seed(0)
    gate = DSelectKGate(3, 8, 2, 1.0, per_example=False)
    target = torch.zeros(8)
    target[6] = 1.0
    opt = torch.optim.Adam(gate.parameters(), lr=0.05)
    for _ in range(300):
        weights, _ = gate(torch.zeros(1, 3))
        loss = -(weights * target).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    weights, r = gate(torch.zeros(1, 3))
    assert ((r == 0) | (r == 1)).all()
    assert torch.count_nonzero(weights) <= 2 and weights[0, 6] > 0.99


def test_dselect_k_aux_loss():
    batch = make_batch()
    # power of 2 and no entropy term: no auxiliary loss
    model = build("dselect_k", 2, n_experts=4, entropy_reg=0.0)
    assert model(batch)[1] == 0
    # the entropy term, in training only, reaching only the gates
    model = build("dselect_k", 2, n_experts=4, entropy_reg=0.5)
    _, aux = model(batch)
    entropy = 0.0
    x = model.embedding(batch)
    for gate in model.gates:
        r = gate(x)[1]
        entropy = entropy + 0.5 * (-(r * torch.log(r + 1e-6)).sum((1, 2))).mean()
    torch.testing.assert_close(aux, entropy)
    model.zero_grad(set_to_none=True)
    aux.backward()
    assert _grad_nonzero(model.gates.parameters())
    assert not _grad_nonzero(model.towers.parameters()) and not _grad_nonzero(model.experts.parameters())
    model.eval()
    assert model(batch)[1] == 0
    # 3 experts: the reachability term 1 / sum_j r_ij is added (>= 1 per selector)
    model = build("dselect_k", 2, n_experts=3, k=2, entropy_reg=0.0)
    assert model(batch)[1] >= 2 * 2


def test_dselect_k_task_modules_and_invalid_parameters():
    model = build("dselect_k", 2)
    assert model.task_modules(1) == [model.gates[1], model.towers[1]]
    assert model.gate_weights(make_batch()).shape == (BATCH_SIZE, 2, 3)
    for bad in ({"k": 0}, {"k": 4}, {"k": 1.5}, {"gamma": 0}, {"entropy_reg": -1}, {"n_experts": 0}):
        with pytest.raises(ValueError):
            build("dselect_k", 2, **bad)
    assert DSelectK.hyperparameters()["k"].default == 2


# --------------------------------------------------------------------------------------
# Cross-stitch
# --------------------------------------------------------------------------------------


def test_cross_stitch_units_start_near_identity():
    model = build("cross_stitch", 2)
    for alpha in model.stitch_matrices():
        torch.testing.assert_close(alpha, torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
    model = build("cross_stitch", 3, stitch_init=0.8)
    alpha = model.stitch_matrices()[0]
    torch.testing.assert_close(alpha.sum(1), torch.ones(3))
    torch.testing.assert_close(alpha.diagonal(), torch.full((3,), 0.8))
    with pytest.raises(ValueError):
        build("cross_stitch", 2, stitch_init=1.5)
    with pytest.raises(ValueError):
        build("cross_stitch", 2, column_hidden_sizes=())


def _column_params(model, t):
    return [p for layer in model.columns for p in layer[t].parameters()]


def test_cross_stitch_identity_units_keep_the_columns_independent():
    model = build("cross_stitch", 2, stitch_init=1.0)
    model.eval()
    batch = make_batch()
    model.zero_grad(set_to_none=True)
    model(batch)[:, 0].sum().backward()
    assert _grad_nonzero(_column_params(model, 0))
    assert not _grad_nonzero(_column_params(model, 1))  # task 0's loss does not reach column 1
    # but the units themselves learn: the off-diagonal weight of task 0's rows has a gradient
    assert model.stitches[0][0].alpha.grad[1] != 0


def test_cross_stitch_mixing_units_share_the_columns():
    model = build("cross_stitch", 2)  # 0.9 / 0.1
    model.eval()
    batch = make_batch()
    model.zero_grad(set_to_none=True)
    model(batch)[:, 0].sum().backward()
    assert _grad_nonzero(_column_params(model, 1))
    # the unit mixes: x_t' = sum_s alpha[t, s] x_s
    x = model.embedding(batch)
    h = torch.stack([layer(x) for layer in model.columns[0]], dim=1)
    first = [row(h) for row in model.stitches[0]]
    torch.testing.assert_close(first[0], 0.9 * h[:, 0] + 0.1 * h[:, 1])
    # the last unit's row t is private to task t
    assert model.stitches[-1][1] in model.task_modules(1)
    assert model.stitches[0][1] not in model.task_modules(1)


# --------------------------------------------------------------------------------------
# PEPNet
# --------------------------------------------------------------------------------------


def test_pepnet_gates_are_two_times_a_sigmoid_of_the_gate_features():
    model = build("pepnet", 2, gate_features=["a"])
    assert model.gate_features == ("a",)
    batch = make_batch()
    delta_domain, delta_tasks = model.gates(batch)
    in_dim = model.embedding.out_dim
    assert delta_domain.shape == (BATCH_SIZE, in_dim)
    assert [tuple(d.shape) for d in delta_tasks] == [(BATCH_SIZE, 2, in_dim), (BATCH_SIZE, 2, 8), (BATCH_SIZE, 2, 4)]
    for delta in [delta_domain, *delta_tasks]:
        assert ((delta > 0) & (delta < 2)).all()
    # the Gate NU: gamma * sigmoid(W' relu(W x + b) + b'), gamma = 2
    with torch.no_grad():
        model.epnet.out.weight.zero_()
        model.epnet.out.bias.fill_(0.7)
    torch.testing.assert_close(
        model.gates(batch)[0], torch.full((BATCH_SIZE, in_dim), 2 * torch.sigmoid(torch.tensor(0.7)))
    )
    # with zero output weights and biases, every gate is neutral (2 * sigmoid(0) = 1)
    with torch.no_grad():
        for gate in [model.epnet, *model.ppnet]:
            gate.out.weight.zero_()
            gate.out.bias.zero_()
    plain = torch.cat([tower(model.embedding(batch)) for tower in model.towers], dim=1)
    torch.testing.assert_close(model(batch), plain)


def test_pepnet_gates_depend_on_the_gate_features_embedding():
    model = build("pepnet", 2, gate_features=["b"])
    batch = make_batch()
    before = model.gates(batch)
    # change only the gate column's embedding rows: the gates change
    with torch.no_grad():
        offset = int(model.embedding.offsets[1])
        model.embedding.categorical.weight[offset : offset + 4] += 1.0
    after = model.gates(batch)
    assert not torch.allclose(before[0], after[0])
    assert not torch.allclose(before[1][0], after[1][0])
    # the gates read the prior's embedding; the general input only through a stop-gradient
    model.zero_grad(set_to_none=True)
    model.gates(batch)[0].sum().backward()
    grad = model.embedding.categorical.weight.grad
    rows_a = slice(0, int(model.embedding.offsets[1]))
    assert torch.count_nonzero(grad[rows_a]) == 0  # column "a" reaches the gate only as sg(E)
    assert torch.count_nonzero(grad[offset:]) > 0


def test_pepnet_gate_features_validation_and_defaults():
    assert build("pepnet", 2).gate_features == ("a", "b")
    assert build("pepnet", 2, gate_features="a").gate_features == ("a",)
    with pytest.raises(ValueError, match="nope"):
        build("pepnet", 2, gate_features=["nope"])
    with pytest.raises(ValueError, match="gate_features lists a column more than once"):
        build("pepnet", 2, gate_features=["a", "a"])
    for bad in ({"gate_scale": 0}, {"gate_hidden_size": 0}):
        with pytest.raises(ValueError):
            build("pepnet", 2, **bad)
    model = build("pepnet", 2, epnet=False, gate_features=[])
    delta_domain, delta_tasks = model.gates(make_batch())
    assert delta_domain is None and len(delta_tasks) == 3
    assert logits_of(model(make_batch())).shape == (BATCH_SIZE, 2)
    assert PEPNet.hyperparameters()["gate_features"].default is None


def test_input_embedding_categorical_columns():
    model = build("pepnet", 2)
    emb, batch = model.embedding, make_batch()
    torch.testing.assert_close(emb.categorical_columns(batch, ["b", "a"]), emb.fields(batch)[:, [1, 0]])
    with pytest.raises(ValueError, match="categorical columns"):
        emb.categorical_columns(batch, ["x"])


# --------------------------------------------------------------------------------------
# DBMTL
# --------------------------------------------------------------------------------------


def _dbmtl_output_grads(model, batch, k):
    """Which tasks' relation outputs task k's logit depends on."""
    inputs = model.tower_inputs(batch)
    for x in inputs:
        x.retain_grad()
    logits = torch.cat([tower(x) for tower, x in zip(model.towers, inputs)], dim=1)
    logits[:, k].sum().backward()
    return [x.grad is not None and torch.count_nonzero(x.grad) > 0 for x in inputs]


def test_dbmtl_task_depends_on_earlier_tasks_only():
    model = build("dbmtl", 3)
    model.eval()
    batch = make_batch()
    assert model.parents == [[], [0], [0, 1]]
    assert _dbmtl_output_grads(model, batch, 0) == [True, False, False]
    assert _dbmtl_output_grads(model, batch, 1) == [True, True, False]
    assert _dbmtl_output_grads(model, batch, 2) == [True, True, True]
    # changing a later task's tower leaves the earlier tasks' outputs alone
    before = model(batch)
    with torch.no_grad():
        model.task_mlps[1][0].weight.add_(1.0)
    after = model(batch)
    torch.testing.assert_close(after[:, 0], before[:, 0])
    assert not torch.allclose(after[:, 1], before[:, 1]) and not torch.allclose(after[:, 2], before[:, 2])


def test_dbmtl_relations_and_private_parameters():
    model = build("dbmtl", 3, relations="previous")
    assert model.parents == [[], [0], [1]]
    model.eval()
    assert _dbmtl_output_grads(model, make_batch(), 2) == [True, True, True]  # through task 1
    assert model.task_modules(0) == [model.towers[0]]
    assert model.task_modules(2) == [model.task_mlps[2], model.relation_mlps[2], model.towers[2]]
    model = build("dbmtl", 3, relations=[[], [], [0]])
    assert model.task_modules(1) == [model.task_mlps[1], model.relation_mlps[1], model.towers[1]]
    model.eval()
    assert _dbmtl_output_grads(model, make_batch(), 2) == [True, False, True]
    none = build("dbmtl", 2, relations="none")
    assert none.parents == [[], []]
    for bad in ("some", [[], [1]], [[]], [[], ["x"]]):
        with pytest.raises(ValueError):
            build("dbmtl", 2, relations=bad)
    with pytest.raises(ValueError, match="lists a parent of task 1 more than once"):
        build("dbmtl", 2, relations=[[], [0, 0]])


# --------------------------------------------------------------------------------------
# fitting through the estimators, with multi-task methods
# --------------------------------------------------------------------------------------

ESTIMATORS = {
    "omoe": (OMoEClassifier, {"n_experts": 2, "expert_hidden_sizes": (8,)}),
    "dselect_k": (DSelectKClassifier, {"n_experts": 4, "k": 2, "entropy_reg": 1e-3, "expert_hidden_sizes": (8,)}),
    "cross_stitch": (CrossStitchClassifier, {"column_hidden_sizes": (8,)}),
    "pepnet": (PEPNetClassifier, {"gate_hidden_size": 8}),
    "dbmtl": (DBMTLClassifier, {"bottom_hidden_sizes": (8,), "relation_hidden_sizes": (4,)}),
}
TINY = {"tower_hidden_sizes": (4,), "embedding_dim": 4, "max_epochs": 2, "batch_size": 64, "random_state": 0}


@pytest.fixture(scope="module")
def data():
    return make_multitask_classification(n_samples=300, n_features=6, n_categorical=2, n_tasks=3, random_state=0)


@pytest.mark.parametrize("optimizer", ["adam", "pcgrad", "pub"])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_fit_with_multi_task_methods(name, optimizer, data):
    X, Y = data
    Estimator, params = ESTIMATORS[name]
    clf = Estimator(optimizer=optimizer, **params, **TINY).fit(X, Y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.isfinite(proba).all()
    assert len(clf.history_) == 2


def test_pepnet_estimator_with_named_gate_features():
    X, Y = make_multitask_classification(n_samples=200, n_categorical=2, as_frame=True, random_state=0)
    cat = [c for c in X.columns if str(X[c].dtype) in ("category", "object", "str", "string")]
    clf = PEPNetClassifier(gate_features=cat[:1], gate_hidden_size=8, **TINY).fit(X, Y)
    assert clf.net_.module_.gate_features == (str(cat[0]),)
    with pytest.raises(ValueError, match="not categorical"):
        PEPNetClassifier(gate_features=["no_such_column"], **TINY).fit(X, Y)


# --------------------------------------------------------------------------------------
# ESCM2
# --------------------------------------------------------------------------------------


def _escm2(counterfactual, seed=0, **kw):
    torch.manual_seed(seed)
    return ESCM2(SCHEMA, 2, embedding_dim=4, tower_hidden_sizes=(6,), counterfactual=counterfactual, **kw)


FUNNEL_LABELS = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])


@pytest.mark.parametrize("counterfactual", ["ips", "dr"])
def test_escm2_is_esmm_plus_a_counterfactual_risk_in_training(counterfactual):
    model = _escm2(counterfactual)
    batch = make_batch()
    logits, aux = model(batch)  # no labels: no risk
    assert aux == 0
    conditional = torch.cat([tower(model.embedding(batch)) for tower in model.towers], dim=1)
    torch.testing.assert_close(logits, chained_product_logits(conditional))
    logits2, aux = model(batch, labels=FUNNEL_LABELS)
    torch.testing.assert_close(logits2, logits)  # the labels never reach the predictions
    assert aux > 0
    model.eval()
    assert model(batch, labels=FUNNEL_LABELS)[1] == 0
    assert len(model.imputation) == (1 if counterfactual == "dr" else 0)


def _manual_risk(model, batch, labels):
    x = model.embedding(batch)
    conditional = torch.cat([tower(x) for tower in model.towers], dim=1)
    o, r = labels[:, 0], labels[:, 1]
    propensity = torch.sigmoid(conditional[:, 0]).clamp(min=model.min_propensity)  # pCTR
    e = torch.nn.functional.binary_cross_entropy_with_logits(conditional[:, 1], r, reduction="none")
    if model.counterfactual == "ips":
        return model.counterfactual_weight * (o * e / propensity).mean()
    e_hat = torch.nn.functional.softplus(model.imputation[0](x).squeeze(1))
    dr = e_hat + o * (e - e_hat) / propensity
    imputation = o * (e - e_hat) ** 2 / propensity
    return model.counterfactual_weight * (dr + imputation).mean()


@pytest.mark.parametrize("counterfactual", ["ips", "dr"])
def test_escm2_risk_matches_the_paper(counterfactual):
    model = _escm2(counterfactual, counterfactual_weight=0.7, min_propensity=0.3)
    batch = make_batch()
    aux = model(batch, labels=FUNNEL_LABELS)[1]
    torch.testing.assert_close(aux, _manual_risk(model, batch, FUNNEL_LABELS))
    # the propensity is detached: the risk does not train the CTR tower
    model.zero_grad(set_to_none=True)
    aux.backward()
    assert not _grad_nonzero(model.towers[0].parameters())
    assert _grad_nonzero(model.towers[1].parameters())
    if counterfactual == "dr":
        assert _grad_nonzero(model.imputation.parameters())
        assert all(id(p) in {id(q) for q in model.shared_parameters()} for p in model.imputation.parameters())
    # unclicked rows enter only through the imputed error (DR) or not at all (IPS)
    unclicked = FUNNEL_LABELS.clone()
    unclicked[:, 0] = 0
    unclicked[:, 1] = 0
    aux0 = model(batch, labels=unclicked)[1]
    assert (aux0 == 0) if counterfactual == "ips" else (aux0 > 0)


def test_escm2_missing_labels_are_left_out():
    model = _escm2("ips")
    batch = make_batch()
    labels = FUNNEL_LABELS.clone()
    labels[0, 1] = float("nan")  # clicked, conversion unknown
    labels[2, 0] = float("nan")  # click unknown
    aux = model(batch, labels=labels)[1]
    keep = [1, 3, 4, 5]
    sub = {k: v[keep] for k, v in batch.items()}
    torch.testing.assert_close(aux, _manual_risk(model, sub, FUNNEL_LABELS[keep]))
    for bad in ({"counterfactual": "snips"}, {"counterfactual_weight": -1}, {"min_propensity": 0}):
        with pytest.raises(ValueError):
            _escm2(**{"counterfactual": "ips", **bad})


def _funnel_data(n=300):
    return make_funnel_classification(n_samples=n, n_features=5, n_categorical=2, random_state=0)


def test_escm2_without_the_risk_is_esmm():
    X, Y = _funnel_data()
    tiny = {**TINY, "tower_hidden_sizes": (8,)}
    plain = ESMMClassifier(**tiny).fit(X, Y)
    escm2 = ESCM2Classifier(counterfactual="ips", counterfactual_weight=0.0, **tiny).fit(X, Y)
    np.testing.assert_allclose(escm2.predict_proba(X), plain.predict_proba(X), rtol=1e-6, atol=1e-7)
    weighted = ESCM2Classifier(counterfactual="ips", **tiny).fit(X, Y)  # the labels reach the risk
    assert not np.allclose(weighted.predict_proba(X), plain.predict_proba(X))
    assert weighted.history_[-1, "train_loss"] > plain.history_[-1, "train_loss"]


@pytest.mark.parametrize("optimizer", ["adam", "pcgrad", "pub"])
@pytest.mark.parametrize("counterfactual", ["ips", "dr"])
def test_escm2_fits_with_multi_task_methods(counterfactual, optimizer):
    X, Y = _funnel_data()
    clf = ESCM2Classifier(counterfactual=counterfactual, optimizer=optimizer, **TINY).fit(X, Y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.isfinite(proba).all()
    assert (proba[:, 1] <= proba[:, 0] + 1e-6).all()  # pCTCVR <= pCTR
    assert clf.predict_cvr(X).shape == (len(X),)
    bad = Y.copy()
    bad[:, 0], bad[:, 1] = 0, 1
    with pytest.raises(ValueError, match="funnel label contract"):
        ESCM2Classifier(**TINY).fit(X, bad)


def test_only_architectures_whose_auxiliary_loss_needs_labels_take_them():
    from sklearn_mtr import models

    takes = {
        name
        for name in models.__all__
        if isinstance(getattr(models, name), type)
        and issubclass(getattr(models, name), models.MultiTaskModule)
        and getattr(models, name).reads_labels()
    }
    assert takes == {"ESCM2", "OneRank"}
