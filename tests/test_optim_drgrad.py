"""DRGrad (Direct Routing Gradient): router, updater, split primary tower, estimator surface."""

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from torch import nn

from sklearn_mtr import MMoEClassifier, PLEClassifier, SharedBottomClassifier
from sklearn_mtr.datasets import make_multitask_classification
from sklearn_mtr.models import MODULE_WRAPPERS, SplitPrimaryTower
from sklearn_mtr.models._base import MultiTaskModule
from sklearn_mtr.models._blocks import tower_logits
from sklearn_mtr.optim import StepContext
from sklearn_mtr.optim.drgrad import (
    DRGrad,
    released_route_coefficient,
    route_coefficients,
    tower_route_coefficient,
    update_mixing,
)

bce = torch.nn.functional.binary_cross_entropy_with_logits
t = torch.tensor


# -- the router on hand-built 2-D gradients ------------------------------------------------
G1 = t([1.0, 0.0])  # ||g1'|| = 1; rho(g1', g1'') = 1/2, rho(g1', g_aux) = 1/4 below
SPLIT = {"+": 2 * t([0.6, 0.8]), "-": 2 * t([-0.6, 0.8])}  # cos(g1', g1'') = +-0.6
AUX = {"+": 4 * t([0.8, 0.6]), "-": 4 * t([-0.8, 0.6])}  # cos(g1', g_aux) = +-0.8

# (sign of xi_a, sign of xi_s) -> (a_split, a_aux, c_split), reference note section 2.11.1
CONSISTENT = {
    ("+", "+"): (0.5, 0.25, 0.0),
    ("-", "+"): (0.5, 0.0, 0.48),  # conflicting auxiliary: not routed; T1'' amplified by |xi_a xi_s|
    ("+", "-"): (1.6 * 0.5, 0.25, 0.48),  # conflicting sibling: routed, amplified by 1 - xi_s
    ("-", "-"): (1.6 * 0.5, 0.0, 0.0),
}
# Eqs. 1-3 as printed: the g1'' term is scaled by (1 - min(xi_a, 0)) rho(g1', g_aux), the
# g_aux term gated by xi_s and scaled by rho(g1', g1'').
LITERAL = {
    ("+", "+"): (0.25, 0.5, 0.0),
    ("-", "+"): (1.8 * 0.25, 0.5, 0.48),
    ("+", "-"): (0.25, 0.0, 0.48),
    ("-", "-"): (1.8 * 0.25, 0.0, 0.0),
}


@pytest.mark.parametrize("pairing, table", [("consistent", CONSISTENT), ("literal", LITERAL)])
@pytest.mark.parametrize("signs", list(CONSISTENT))
def test_router_four_sign_cases(pairing, table, signs):
    a_sign, s_sign = signs
    a_split, a_aux, c_split, info = route_coefficients(G1, SPLIT[s_sign], AUX[a_sign], gamma=1.0, pairing=pairing)
    expected = table[signs]
    torch.testing.assert_close(torch.stack([a_split, a_aux, c_split]), t(expected))
    torch.testing.assert_close(info["cosine_primary_aux"], t(0.8 if a_sign == "+" else -0.8))
    torch.testing.assert_close(info["cosine_primary_split"], t(0.6 if s_sign == "+" else -0.6))
    torch.testing.assert_close(info["norm_ratio_aux"], t(0.25))
    torch.testing.assert_close(info["norm_ratio_split"], t(0.5))


def test_router_gamma_and_clipping():
    a_split, a_aux, _, _ = route_coefficients(G1, SPLIT["+"], AUX["+"], gamma=2.0)
    torch.testing.assert_close(torch.stack([a_split, a_aux]), t([0.25, 0.0625]))
    # a primary gradient larger than the routed ones: the ratio is clipped at 1
    a_split, a_aux, _, info = route_coefficients(10 * G1, SPLIT["+"], AUX["+"], gamma=3.0)
    torch.testing.assert_close(torch.stack([a_split, a_aux]), t([1.0, 1.0]))
    torch.testing.assert_close(info["norm_ratio_aux"], t(2.5))  # diagnostics unclipped
    # tower mode: gate on the cosine, same scale
    torch.testing.assert_close(tower_route_coefficient(G1, AUX["+"], gamma=1.0), t(0.25))
    torch.testing.assert_close(tower_route_coefficient(G1, AUX["-"], gamma=1.0), t(0.0))


@pytest.mark.parametrize("pairing", ["consistent", "literal"])
def test_router_with_zero_gradients_routes_nothing(pairing):
    zero = torch.zeros(2)
    for g1, gs, ga in [(zero, zero, zero), (G1, zero, zero), (zero, SPLIT["+"], AUX["-"])]:
        a_split, a_aux, c_split, info = route_coefficients(g1, gs, ga, pairing=pairing)
        coefficients = torch.stack([a_split, a_aux, c_split, *info.values()])
        assert bool(torch.isfinite(coefficients).all())
        routed_primary, routed_split = a_split * gs + a_aux * ga, c_split * gs
        if not g1.any():  # a zero primary gradient receives nothing (rho = 0)
            assert not routed_primary.any()
        if not gs.any() and not ga.any():
            assert not routed_primary.any() and not routed_split.any()
    assert float(tower_route_coefficient(zero, zero)) == 0.0


# -- the updater ----------------------------------------------------------------------------
class _Toy(MultiTaskModule):
    """Shared trunk, one private head per task producing its tower input, same-shaped towers."""

    def __init__(self, n_tasks=2, n_in=5, hidden=6):
        super().__init__()
        self.n_tasks = n_tasks
        self.trunk = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh())
        self.heads = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(n_tasks))
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, 3), nn.Tanh(), nn.Linear(3, 1)) for _ in range(n_tasks)
        )

    def task_modules(self, k):
        return [self.heads[k], self.towers[k]]

    def tower_inputs(self, batch):
        h = self.trunk(batch["x"])
        return [torch.tanh(head(h)) for head in self.heads]

    def forward(self, batch):
        return tower_logits(self.towers, self.tower_inputs(batch))


class _NoInputs(_Toy):
    tower_inputs = MultiTaskModule.tower_inputs

    def forward(self, batch):
        return tower_logits(self.towers, _Toy.tower_inputs(self, batch))


def _toy_data(n=128, n_in=5, n_tasks=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g)
    w = torch.randn(n_in, generator=g)
    cols = [(x @ w > 0).float()]
    for _ in range(1, n_tasks):
        cols.append((x @ (-w + 0.7 * torch.randn(n_in, generator=g)) > 0).float())  # partly conflicting
    return {"x": x}, torch.stack(cols, 1)


def _losses(model, batch, y):
    logits = model(batch)
    return torch.stack([bce(logits[:, k], y[:, k]) for k in range(y.shape[1])])


def _setup(method, n_tasks=2, seed=0):
    torch.manual_seed(seed)
    model = method.wrap_module(_Toy(n_tasks), n_tasks, wrappers=MODULE_WRAPPERS)
    opt = method.create_optimizer(model, None, lr=0.02, weight_decay=0.0)
    return model, opt


def _step(method, model, opt, batch, y, weights=None):
    opt.zero_grad(set_to_none=True)
    losses = _losses(model, batch, y)
    ctx = StepContext(model, opt, None, torch.ones(len(losses)) if weights is None else weights)
    diagnostics = method.backward(losses, ctx)
    method.step(ctx)
    return losses.detach(), diagnostics


@pytest.mark.parametrize("mixing", ["share", "mean", "cumulative"])
def test_mixing_stays_half_with_equal_norms(mixing):
    model, _ = _setup(DRGrad(mixing=mixing))
    for norm in [3.0, 0.5, 7.0, 0.0]:
        update_mixing(model, t([norm, norm]), rule=mixing, temperature=1.0)
        torch.testing.assert_close(model.mixing, t([0.5, 0.5]))
    assert int(model.n_updates) == 4


def test_mixing_mean_and_cumulative_formulas():
    for rule, temperature, expected_s in [
        ("mean", 1.0, t([2.0, 0.5])),
        ("cumulative", 1.0, t([4.0, 1.0])),
        ("mean", 0.5, t([4.0, 1.0])),
        ("share", 1.0, t([4.0, 1.0]).log()),  # mu = shares of the summed norms: 0.8 / 0.2
        ("share", 0.5, t([16.0, 1.0]).log()),  # sharpened: shares of the squares
    ]:
        model, _ = _setup(DRGrad())
        torch.testing.assert_close(model.mixing, t([0.5, 0.5]))  # mu starts at 0.5 / 0.5
        update_mixing(model, t([1.0, 0.0]), rule=rule, temperature=temperature)
        update_mixing(model, t([3.0, 1.0]), rule=rule, temperature=temperature)
        torch.testing.assert_close(model.mixing, torch.softmax(expected_s, 0))
        torch.testing.assert_close(model.sigma, t([4.0, 1.0]))


def test_zero_tower_gradients_stay_zero_and_mu_half():
    method = DRGrad()
    model, opt = _setup(method)
    batch, y = _toy_data()
    opt.zero_grad()
    diagnostics = method.backward(_losses(model, batch, y), StepContext(model, opt, None, torch.zeros(2)))
    for p in model.parameters():
        assert p.grad is not None and not p.grad.any()
    torch.testing.assert_close(model.mixing, t([0.5, 0.5]))
    assert all(bool(torch.isfinite(v).all()) for v in diagnostics.values())


# -- the split wrapper and the backward pass -------------------------------------------------
@pytest.mark.parametrize("pairing", ["consistent", "literal"])
def test_backward_replaces_the_sub_tower_gradients_only(pairing):
    method = DRGrad(pairing=pairing, gamma=1.5)
    model, opt = _setup(method, n_tasks=3, seed=1)
    batch, y = _toy_data(n_tasks=3, seed=1)
    weights = t([1.0, 2.0, 0.5])
    losses = _losses(model, batch, y)
    params = list(model.parameters())
    raw = dict(zip(params, torch.autograd.grad((weights * losses).sum(), params, retain_graph=True)))
    flat = lambda module: torch.cat([raw[p].reshape(-1) for p in module.parameters()])
    g1, gs = flat(model.towers[0]), flat(model.split_tower)
    g_aux = flat(model.towers[1]) + flat(model.towers[2])  # more than two tasks: the sum
    a_split, a_aux, c_split, info = route_coefficients(g1, gs, g_aux, gamma=1.5, pairing=pairing)
    diagnostics = method.backward(losses, StepContext(model, opt, None, weights))
    routed = {
        model.towers[0]: g1 + a_split * gs + a_aux * g_aux,
        model.split_tower: gs + c_split * gs,
    }
    for module, expected in routed.items():
        torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in module.parameters()]), expected)
    touched = {id(p) for m in routed for p in m.parameters()}
    for p in params:
        if id(p) not in touched:
            torch.testing.assert_close(p.grad, raw[p])
    assert set(diagnostics) == {*info, "mixing"}
    s = torch.stack([routed[model.towers[0]].norm(), routed[model.split_tower].norm()])
    torch.testing.assert_close(diagnostics["mixing"], s / s.sum())  # share: mu = the norms' shares
    assert int(model.n_updates) == 1


def test_split_wrapper_contract():
    torch.manual_seed(0)
    backbone = _Toy(3)
    model = DRGrad(primary_task=1).wrap_module(backbone, 3, wrappers=MODULE_WRAPPERS)
    assert isinstance(model, SplitPrimaryTower) and model.towers is backbone.towers and model.same_shaped_towers()
    # T1'' has T1''s architecture and fresh parameters
    for p, q in zip(model.split_tower.parameters(), backbone.towers[1].parameters()):
        assert p.shape == q.shape and not torch.equal(p, q)
    ids = lambda ps: {id(p) for p in ps}
    assert ids(model.task_parameters(1)) == ids(
        [*backbone.heads[1].parameters(), *backbone.towers[1].parameters(), *model.split_tower.parameters()]
    )
    assert ids(model.task_parameters(0)) == ids(backbone.towers[0].parameters())  # its head now also feeds T1''
    assert ids(backbone.heads[0].parameters()) <= ids(model.shared_parameters())
    every = ids(model.shared_parameters()) | set().union(*(ids(model.task_parameters(k)) for k in range(3)))
    assert every == ids(model.parameters())
    assert {"mixing", "sigma", "n_updates"} <= dict(model.named_buffers()).keys()
    assert {"mixing", "sigma", "n_updates"} <= model.state_dict().keys()
    # the primary logit: mu' T1'(v1) + mu'' T1''(v_s), v_s = mean of the auxiliary tower inputs
    model.mixing.copy_(t([0.3, 0.7]))
    batch, _ = _toy_data(n=8)
    inputs = backbone.tower_inputs(batch)
    v_s = (inputs[0] + inputs[2]) / 2
    expected = 0.3 * backbone.towers[1](inputs[1])[:, 0] + 0.7 * model.split_tower(v_s)[:, 0]
    out = model(batch)
    torch.testing.assert_close(out[:, 1], expected)
    torch.testing.assert_close(out[:, [0, 2]], backbone(batch)[:, [0, 2]])


@pytest.mark.parametrize(
    "method",
    [
        DRGrad(),
        DRGrad(mode="tower"),
        DRGrad(mode="tower", symmetric=True),
        DRGrad(mixing="cumulative", pairing="literal"),
    ],
    ids=["split", "tower", "symmetric", "literal"],
)
def test_drgrad_lowers_both_losses_with_one_backward_per_step(method):
    model, opt = _setup(method, seed=3)
    batch, y = _toy_data(seed=3)
    calls = []
    getattr(model, "backbone", model).trunk[0].weight.register_hook(lambda g: calls.append(1))
    first, _ = _step(method, model, opt, batch, y)
    for _ in range(60):
        last, diagnostics = _step(method, model, opt, batch, y)
    assert bool((last < 0.8 * first).all()), (first, last)
    assert len(calls) == 61  # one backward pass per step
    assert all(v.shape in {(), (2,)} and bool(torch.isfinite(v).all()) for v in diagnostics.values())


@pytest.mark.parametrize("symmetric", [False, True])
def test_tower_mode_routes_cooperating_tower_gradients(symmetric):
    method = DRGrad(mode="tower", symmetric=symmetric, primary_task=2)
    model, opt = _setup(method, n_tasks=3, seed=2)
    assert type(model) is _Toy  # no architecture change
    batch, y = _toy_data(n_tasks=3, seed=2)
    losses = _losses(model, batch, y)
    grads = [
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses.sum(), list(tw.parameters()), retain_graph=True)])
        for tw in model.towers
    ]
    diagnostics = method.backward(losses, StepContext(model, opt, None, torch.ones(3)))
    total = sum(grads)
    for k in range(3):
        expected = grads[k]
        if symmetric or k == 2:
            expected = expected + tower_route_coefficient(grads[k], total - grads[k]) * (total - grads[k])
        torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in model.towers[k].parameters()]), expected)
    assert set(diagnostics) == {"cosine_primary_aux", "norm_ratio_aux"}


# -- the estimator surface --------------------------------------------------------------------
TINY = {"tower_hidden_sizes": (4,), "embedding_dim": 4, "max_epochs": 2, "batch_size": 64, "random_state": 0}
ESTIMATORS = [
    (MMoEClassifier, {"n_experts": 2, "expert_hidden_sizes": (8,)}),
    (PLEClassifier, {"n_task_experts": 1, "n_shared_experts": 1, "expert_hidden_sizes": (8,)}),
    (SharedBottomClassifier, {"bottom_hidden_sizes": (8,)}),
]
SPLIT_KEYS = {"cosine_primary_aux", "cosine_primary_split", "norm_ratio_aux", "norm_ratio_split", "mixing"}


@pytest.fixture(scope="module")
def data():
    return make_multitask_classification(n_samples=300, n_features=6, n_categorical=2, as_frame=True, random_state=0)


def _manual_primary_logit(clf, X):
    module = clf.net_.module_
    module.eval()
    with torch.no_grad():
        batch = clf.feature_encoder_.transform(clf._validate_X(X, reset=False))
        inputs = module.backbone.tower_inputs(batch)
        p = module.primary
        v_s = torch.stack([x for k, x in enumerate(inputs) if k != p]).mean(0)
        mu = module.mixing
        return (mu[0] * module.towers[p](inputs[p])[:, 0] + mu[1] * module.split_tower(v_s)[:, 0]).numpy()


@pytest.mark.parametrize("mode", ["split", "tower"])
@pytest.mark.parametrize("Estimator, params", ESTIMATORS, ids=lambda v: getattr(v, "__name__", ""))
def test_end_to_end_with_the_baselines(Estimator, params, mode, data):
    X, Y = data
    clf = Estimator(optimizer=DRGrad(mode=mode), **params, **TINY).fit(X, Y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.isfinite(proba).all()
    keys = {k[len("optim_") :] for k in clf.history_[-1] if k.startswith("optim_")}
    if mode == "tower":
        assert keys == {"cosine_primary_aux", "norm_ratio_aux"}
        assert type(clf.net_.module_) is not SplitPrimaryTower
        return
    assert keys == SPLIT_KEYS
    module = clf.net_.module_
    assert isinstance(module, SplitPrimaryTower) and int(module.n_updates) == 10  # 2 epochs x 5 batches
    mu = np.asarray(clf.history_[-1, "optim_mixing"])
    assert mu.shape == (2,) and mu.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(float(module.mixing.sum()), 1.0, rtol=1e-6)
    # predict_proba's primary column is sigmoid(mu' T1' + mu'' T1'')
    np.testing.assert_allclose(proba[:, 0], 1 / (1 + np.exp(-_manual_primary_logit(clf, X))), rtol=1e-5, atol=1e-6)


class _SplitFrozenOff(DRGrad):
    """The split wrapper with ``T1''`` switched off (mixing frozen at (1, 0)) and no routing."""

    def wrap_module(self, model, n_tasks, *, wrappers=None):
        module = super().wrap_module(model, n_tasks, wrappers=wrappers)
        module.mixing.copy_(torch.tensor([1.0, 0.0]))
        return module

    def _route_split(self, model, n_tasks):
        return {}


@pytest.mark.parametrize("Estimator, params", ESTIMATORS[:2], ids=lambda v: getattr(v, "__name__", ""))
def test_split_wrapper_with_the_split_tower_off_trains_exactly_the_backbone(Estimator, params, data):
    # The control of benchmarks/drgrad_ablation.py: adding T1'' must not move the backbone's
    # initialisation or batch order, so that any difference to equal weights is the method's.
    X, Y = data
    plain = Estimator(optimizer="ew", **params, **TINY).fit(X, Y)
    off = Estimator(optimizer=_SplitFrozenOff(), **params, **TINY).fit(X, Y)
    assert isinstance(off.net_.module_, SplitPrimaryTower)
    np.testing.assert_allclose(off.predict_proba(X), plain.predict_proba(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "method", [DRGrad(primary_task=1), DRGrad(mode="tower", symmetric=True, primary_task=2)], ids=["split", "tower"]
)
def test_three_tasks(method):
    X, Y = make_multitask_classification(n_samples=300, n_features=6, n_tasks=3, random_state=1)
    clf = MMoEClassifier(optimizer=method, n_experts=2, expert_hidden_sizes=(8,), **TINY).fit(X, Y)
    assert clf.predict_proba(X).shape == (300, 3)
    if method.mode == "split":
        np.testing.assert_allclose(
            clf.predict_proba(X)[:, 1], 1 / (1 + np.exp(-_manual_primary_logit(clf, X))), rtol=1e-5, atol=1e-6
        )


def test_personalized_gate(data):
    X, Y = data
    clf = MMoEClassifier(
        optimizer=DRGrad(personalized_features=["cat0", "cat1"]), n_experts=2, expert_hidden_sizes=(8,), **TINY
    ).fit(X, Y)
    module = clf.net_.module_
    assert module.personal_gate.in_features == 2 * 4 and module.personal_gate.out_features == 8
    assert np.isfinite(clf.predict_proba(X)).all()
    # the gate is shared (it acts on v_s) and receives gradient
    assert {id(p) for p in module.personal_gate.parameters()} <= {id(p) for p in module.shared_parameters()}
    batch = clf.feature_encoder_.transform(clf._validate_X(X, reset=False))
    module.train()
    module.zero_grad()
    module(batch).sum().backward()
    assert float(module.personal_gate.weight.grad.abs().sum()) > 0
    # gate = 2 sigmoid(Linear(id embeddings)) multiplies the auxiliary tower input
    module.eval()
    with torch.no_grad():
        inputs = module.backbone.tower_inputs(batch)
        gate = module.personal_gate_values(batch)
        assert bool(((gate > 0) & (gate < 2)).all())
        expected = module.towers[1](inputs[1] * gate)[:, 0]
        torch.testing.assert_close(module(batch)[:, 1], expected)
    with pytest.raises(ValueError, match="not categorical columns"):
        clone(clf).set_params(optimizer=DRGrad(personalized_features=["x0"])).fit(X, Y)


def test_one_backward_pass_per_step_in_fit(data, monkeypatch):
    X, Y = data
    calls = []
    original = torch.autograd.backward
    monkeypatch.setattr(torch.autograd, "backward", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: pytest.fail("DRGrad needs no autograd.grad"))
    SharedBottomClassifier(optimizer=DRGrad(), bottom_hidden_sizes=(8,), **TINY).fit(X, Y)
    assert len(calls) == 10  # 2 epochs x 5 batches


def test_joblib_round_trip_then_partial_fit_continues(data, tmp_path):
    X, Y = data
    clf = MMoEClassifier(optimizer=DRGrad(mixing="cumulative"), n_experts=2, expert_hidden_sizes=(8,), **TINY).fit(X, Y)
    module = clf.net_.module_
    state = {k: getattr(module, k).clone() for k in ("mixing", "sigma", "n_updates")}
    assert not torch.allclose(state["mixing"], t([0.5, 0.5]))
    path = tmp_path / "drgrad.joblib"
    joblib.dump(clf, path)
    loaded = joblib.load(path)
    restored = loaded.net_.module_
    for key, value in state.items():
        torch.testing.assert_close(getattr(restored, key), value)
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X))
    loaded.partial_fit(X, Y)
    assert int(restored.n_updates) == 15 and bool((restored.sigma > state["sigma"]).all())
    assert len(loaded.history_) == 3 and len(loaded.history_[-1, "optim_mixing"]) == 2


def test_params_clone_and_grid_search(data):
    method = DRGrad(mode="tower", gamma=2.0, symmetric=True)
    assert method.get_params() == {
        "mode": "tower",
        "primary_task": 0,
        "gamma": 2.0,
        "pairing": "consistent",
        "mixing": "share",
        "temperature": 1.0,
        "mixing_init": 0.5,
        "symmetric": True,
        "personalized_features": None,
    }
    twin = clone(method)
    assert twin is not method and twin.get_params() == method.get_params()
    assert twin.set_params(gamma=0.5).gamma == 0.5 and method.gamma == 2.0
    X, Y = data
    clf = SharedBottomClassifier(bottom_hidden_sizes=(8,), **{**TINY, "max_epochs": 1})
    search = GridSearchCV(clf, param_grid={"optimizer": [DRGrad()], "optimizer__gamma": [0.5, 2.0]}, cv=KFold(2))
    search.fit(X, Y)
    assert search.best_params_["optimizer__gamma"] in (0.5, 2.0)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"mode": "both"}, "mode"),
        ({"gamma": 0.0}, "gamma"),
        ({"pairing": "paper"}, "pairing"),
        ({"mixing": "ema"}, "mixing"),
        ({"temperature": -1.0}, "temperature"),
        ({"mixing_init": 0.0}, "mixing_init"),
        ({"mode": "released", "symmetric": True}, "symmetric"),
        ({"primary_task": 2}, "out of range"),
        ({"primary_task": -1}, "primary_task"),
        ({"symmetric": True}, "symmetric"),
        ({"mode": "tower", "personalized_features": ["cat0"]}, "personalized_features"),
        ({"personalized_features": "cat0"}, "personalized_features"),
        ({"personalized_features": []}, "empty"),
    ],
)
def test_invalid_hyper_parameters_raise_at_fit(bad, message, data):
    X, Y = data
    with pytest.raises(ValueError, match=message):
        SharedBottomClassifier(optimizer=DRGrad(**bad), bottom_hidden_sizes=(8,), **TINY).fit(X, Y)


def test_unsupported_architectures_and_task_counts():
    with pytest.raises(ValueError, match="tower_inputs"):
        DRGrad().wrap_module(_NoInputs(), 2, wrappers=MODULE_WRAPPERS)
    assert isinstance(DRGrad(mode="tower").wrap_module(_NoInputs(), 2), _NoInputs)  # tower mode needs none
    with pytest.raises(NotImplementedError, match="tower_inputs"):
        _NoInputs().tower_inputs({"x": torch.zeros(2, 5)})
    with pytest.raises(ValueError, match="at least two tasks"):
        DRGrad().wrap_module(_Toy(1), 1, wrappers=MODULE_WRAPPERS)
    odd = _Toy(2)
    odd.towers[1] = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 1))
    for mode in ("split", "tower"):
        with pytest.raises(ValueError, match="parameter shapes"):
            DRGrad(mode=mode).wrap_module(odd, 2, wrappers=MODULE_WRAPPERS)
    with pytest.raises(ValueError, match="wrap_module"):
        model = _Toy(2)
        DRGrad().backward(_losses(model, *_toy_data()), StepContext(model, None, None, torch.ones(2)))


# -- the scale-free updater, mixing_init, the released rule, the PPNet gate --------------------
def test_share_updater_is_scale_free():
    model, _ = _setup(DRGrad())
    mixings = []
    for scale in (1e-4, 1.0, 1e3):
        model.sigma.zero_()
        model.n_updates.zero_()
        update_mixing(model, scale * t([3.0, 1.0]), rule="share", temperature=1.0)
        mixings.append(model.mixing.clone())
    for m in mixings:
        torch.testing.assert_close(m, t([0.75, 0.25]))


def test_share_updater_moves_mu_when_the_routed_gradients_dominate(data):
    X, Y = data
    mu = {}
    for mixing, weights in (("share", None), ("share", [100.0, 100.0]), ("mean", None)):
        clf = MMoEClassifier(
            optimizer=DRGrad(mixing=mixing), n_experts=2, expert_hidden_sizes=(8,), task_weights=weights, **TINY
        ).fit(X, Y)
        mu[mixing, weights is None] = float(clf.net_.module_.mixing[0])
    # T1' receives the routed gradients, so its routed norm dominates and mu' moves well past 0.5 ...
    assert mu["share", True] > 0.55
    # ... by the same amount whatever the loss scale (Adam's trajectory is scale-invariant) ...
    assert mu["share", False] == pytest.approx(mu["share", True], abs=1e-3)
    # ... whereas the softmax of the raw mean norms hardly leaves 0.5 at a BCE's gradient scale
    assert abs(mu["mean", True] - 0.5) < 0.02


def test_mixing_init_sets_mu_before_any_update():
    method = DRGrad(mixing_init=0.8)
    model, opt = _setup(method)
    torch.testing.assert_close(model.mixing, t([0.8, 0.2]))
    batch, y = _toy_data()
    opt.zero_grad()
    method.backward(_losses(model, batch, y), StepContext(model, opt, None, torch.zeros(2)))  # no gradient
    torch.testing.assert_close(model.mixing, t([0.8, 0.2]))  # share: kept while both sums are 0
    with pytest.raises(ValueError, match="mixing_init"):
        DRGrad(mixing_init=1.0).check_parameters()


def test_released_coefficient_on_hand_built_kernels():
    own = t([1.0, -2.0, 3.0, 0.5])
    # signs agree on 2 of 4 entries: s = 0, w = (1 + 0.1 + 0.1 + 1) / 4; never gated off
    coefficient, s, w = released_route_coefficient(own, t([2.0, 1.0, -1.0, 1.0]))
    torch.testing.assert_close((coefficient, s, w), (t(0.55), t(0.0), t(0.55)), atol=1e-6, rtol=1e-6)
    # mostly opposite signs: s = -1/2, w = (0.1 * 3 + 1) / 4, amplified by 1 - s
    coefficient, s, w = released_route_coefficient(own, t([-2.0, 1.0, -1.0, 1.0]))
    torch.testing.assert_close((s, w), (t(-0.5), t(0.325)), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(coefficient, 0.325 * 1.5 * torch.ones(()), atol=1e-6, rtol=1e-6)
    # all opposite: still added (the paper's rule would drop it), with weight 0.1 * 2
    coefficient, _, _ = released_route_coefficient(own, -own)
    torch.testing.assert_close(coefficient, t(0.2), atol=1e-6, rtol=1e-6)


def test_released_mode_routes_the_first_kernels_both_ways():
    method = DRGrad(mode="released")
    model = _Toy(2)
    model.towers = nn.ModuleList(nn.Sequential(nn.Linear(6, 3), nn.Tanh(), nn.Linear(3, 1)) for _ in range(2))
    torch.manual_seed(0)
    opt = method.create_optimizer(model, None, lr=0.02, weight_decay=0.0)
    batch, y = _toy_data()
    losses = _losses(model, batch, y)
    raw = torch.autograd.grad(losses.sum(), list(model.parameters()), retain_graph=True)
    raw = dict(zip([id(p) for p in model.parameters()], raw))
    opt.zero_grad()
    diagnostics = method.backward(losses, StepContext(model, opt, None, torch.ones(2)))
    assert set(diagnostics) == {"sign_agreement", "route_weight"}
    kernels = [model.towers[k][0].weight for k in range(2)]
    for k in range(2):
        own, other = raw[id(kernels[k])], raw[id(kernels[1 - k])]
        coefficient, _, _ = released_route_coefficient(own, other)
        torch.testing.assert_close(kernels[k].grad, own + coefficient * other)
        assert not torch.equal(kernels[k].grad, own)
    for p in model.parameters():  # everything else keeps its own gradient
        if all(p is not k for k in kernels):
            torch.testing.assert_close(p.grad, raw[id(p)])


def test_personalized_gate_leaves_v1_untouched(data):
    X, Y = data
    clf = MMoEClassifier(
        optimizer=DRGrad(personalized_features=["cat0"]), n_experts=2, expert_hidden_sizes=(8,), **TINY
    ).fit(X, Y)
    module = clf.net_.module_
    batch = clf.feature_encoder_.transform(clf._validate_X(X, reset=False))
    module.eval()
    with torch.no_grad():
        module.personal_gate.bias.fill_(-3.0)  # gate far from 1: 2 sigmoid(...) ~ 0.1
        module.mixing.copy_(t([1.0, 0.0]))  # the primary logit is T1'(v1) alone
        inputs = module.backbone.tower_inputs(batch)
        gate = module.personal_gate_values(batch)
        assert float((gate - 1).abs().min()) > 0.1
        out = module(batch)
        torch.testing.assert_close(out[:, 0], module.towers[0](inputs[0])[:, 0])  # v1 ungated
        assert not torch.allclose(out[:, 1], module.towers[1](inputs[1])[:, 0])  # v_s gated
