"""PUB (Parameter Update Balancing) and its Nash-bargaining solver."""

import copy
import io
import math

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold

from sklearn_mtr import MMoEClassifier, PLEClassifier, SharedBottomClassifier
from sklearn_mtr.datasets import make_multitask_classification
from sklearn_mtr.models._base import MultiTaskModule
from sklearn_mtr.optim import StepContext
from sklearn_mtr.optim._nash import _newton, nash_residual, solve_nash_weights
from sklearn_mtr.optim.pub import PUB, PUBAdam, pub_weights

bce = torch.nn.functional.binary_cross_entropy_with_logits


# -- the solver ---------------------------------------------------------------------------
def _random_gram(T, P=40, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    U = torch.randn(T, P, generator=g, dtype=dtype)
    U = U + 1.5 * torch.randn(1, P, generator=g, dtype=dtype)  # correlated tasks
    U = U * (10.0 ** torch.empty(T, 1, dtype=dtype).uniform_(-2, 2, generator=g))  # mixed norms
    return U, U @ U.T


@pytest.mark.parametrize("T", range(2, 9))
def test_solver_satisfies_the_nash_condition(T):
    for seed in range(20):
        U, G = _random_gram(T, seed=seed)
        alpha, ok = solve_nash_weights(G)
        assert ok
        assert alpha.shape == (T,) and alpha.dtype == G.dtype and bool((alpha > 0).all())
        assert float((G @ alpha - 1 / alpha).norm()) < 1e-6
        assert float(nash_residual(G, alpha)) < 1e-9
        # ||sum_i alpha_i u_i||^2 = T whatever the scale of U
        assert float((alpha @ U).square().sum()) == pytest.approx(T, rel=1e-8)


def test_solver_warm_start_and_float32_input():
    _U, G = _random_gram(5, seed=3)
    cold, ok = solve_nash_weights(G)
    warm, ok2 = solve_nash_weights(G, init=cold * 7.0)  # only the direction of init matters
    assert ok and ok2
    torch.testing.assert_close(warm, cold, rtol=1e-9, atol=0)
    alpha32, ok = solve_nash_weights(G.float(), init=torch.tensor([1.0, -1.0, 2.0, 3.0, 4.0]))  # bad init ignored
    assert ok and alpha32.dtype == torch.float32
    torch.testing.assert_close(alpha32.double(), cold, rtol=1e-5, atol=0)


def test_two_task_closed_form_equals_newton():
    for seed in range(20):
        _U, G = _random_gram(2, seed=seed)
        alpha, ok = solve_nash_weights(G)
        assert ok
        norms = G.diagonal().sqrt()
        cos = G[0, 1] / (norms[0] * norms[1])
        torch.testing.assert_close(alpha, 1 / (norms * torch.sqrt(1 + cos)))
        scale = float(G.diagonal().mean())
        Gs = (G / scale).numpy()
        newton, converged = _newton(Gs, np.ones(2), 50, 1e-12)
        assert converged
        torch.testing.assert_close(alpha, torch.from_numpy(newton) / math.sqrt(scale), rtol=1e-9, atol=0)


def test_solver_scale_behaviour():
    _U, G = _random_gram(4, seed=1)
    alpha, _ = solve_nash_weights(G)
    for c in (1e-3, 7.0, 1e4):
        scaled, ok = solve_nash_weights(G * c**2)  # U -> c U
        assert ok
        torch.testing.assert_close(scaled, alpha / c, rtol=1e-9, atol=0)
        torch.testing.assert_close(scaled / scaled.sum(), alpha / alpha.sum(), rtol=1e-9, atol=0)


@pytest.mark.parametrize(
    "U",
    [
        [[1.0, 0.0], [0.0, 0.0]],  # a task without an update
        [[1.0, 0.0], [-2.0, 0.0]],  # opposite updates (cosine -1)
        [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]],
        [[1.0, 0.0], [-0.5, math.sqrt(3) / 2], [-0.5, -math.sqrt(3) / 2]],  # they sum to zero
        [[float("nan"), 0.0], [0.0, 1.0]],
    ],
)
def test_solver_reports_failure_and_returns_the_fallback(U):
    U = torch.tensor(U, dtype=torch.float64)
    G = U @ U.T
    alpha, ok = solve_nash_weights(G)
    assert not ok and torch.equal(alpha, torch.ones(len(U), dtype=torch.float64))
    init = torch.arange(1.0, len(U) + 1, dtype=torch.float64)
    alpha, ok = solve_nash_weights(G, init)
    assert not ok and torch.equal(alpha, init)


def test_solver_rejects_non_square_input():
    with pytest.raises(ValueError, match="square"):
        solve_nash_weights(torch.ones(2, 3))


# -- the optimizer on toy modules ---------------------------------------------------------
class _Toy(MultiTaskModule):
    """Shared linear trunk, one linear tower per task; optional auxiliary loss."""

    def __init__(self, n_tasks=2, n_in=5, hidden=6, aux=False):
        super().__init__()
        self.n_tasks = n_tasks
        self.trunk = torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.Tanh())
        self.towers = torch.nn.ModuleList(torch.nn.Linear(hidden, 1) for _ in range(n_tasks))
        self.aux = aux

    def forward(self, batch):
        h = self.trunk(batch["x"])
        logits = torch.cat([t(h) for t in self.towers], dim=1)
        if self.aux:
            return logits, 0.1 * h.square().mean()
        return logits


def _toy_data(n=64, n_in=5, n_tasks=2, seed=0, conflict=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g)
    w = torch.randn(n_in, generator=g)
    cols = [(x @ w > 0).float()]
    for _ in range(1, n_tasks):
        w2 = -w + 0.5 * torch.randn(n_in, generator=g) if conflict else torch.randn(n_in, generator=g)
        cols.append((x @ w2 > 0).float())
    return {"x": x}, torch.stack(cols, 1)


def _pub_step(method, model, opt, batch, y, weights=None, losses_fn=None):
    opt.zero_grad(set_to_none=True)
    out = model(batch)
    logits, aux = out if isinstance(out, tuple) else (out, None)
    losses = losses_fn(logits) if losses_fn else torch.stack([bce(logits[:, k], y[:, k]) for k in range(y.shape[1])])
    w = torch.ones(len(losses)) if weights is None else weights
    ctx = StepContext(model, opt, None, w, aux)
    diagnostics = method.backward(losses, ctx)
    method.step(ctx)
    return losses.detach(), diagnostics


def test_one_task_is_adamw_step_for_step():
    torch.manual_seed(0)
    model = _Toy(n_tasks=1)
    reference = copy.deepcopy(model)
    batch, y = _toy_data(n_tasks=1)
    method = PUB(refresh_every=1)
    opt = method.create_optimizer(model, None, lr=0.01, weight_decay=0.1)
    ref_opt = torch.optim.AdamW(reference.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(15):
        _, diagnostics = _pub_step(method, model, opt, batch, y)
        torch.testing.assert_close(diagnostics["weights"], torch.ones(1))
        ref_opt.zero_grad()
        bce(reference(batch)[:, 0], y[:, 0]).backward()
        ref_opt.step()
        for p, q in zip(model.parameters(), reference.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    for p, q in zip(model.parameters(), reference.parameters()):  # same moments as AdamW
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(opt.state[p][key], ref_opt.state[q][key], rtol=1e-5, atol=1e-9)
        assert float(opt.state[p]["step"]) == float(ref_opt.state[q]["step"]) == 15
    assert opt.state["pub"]["n_solves"] == 14 and opt.state["pub"]["n_failed"] == 0


def test_identical_task_gradients_give_the_adam_update():
    torch.manual_seed(1)
    model = _Toy(n_tasks=2)
    reference = copy.deepcopy(model)
    batch, y = _toy_data()
    # Both task losses are task 0's loss: identical gradients on the shared trunk (tower 1
    # gets none, so neither optimizer touches it).
    same = lambda logits: bce(logits[:, 0], y[:, 0]).repeat(2)
    # every_step: both "tasks" reach tower 0 here, which the joint pass's per-task rescaling
    # of the private gradients assumes away (tower k is only reached by L_k).
    method = PUB(refresh_every=1, per_task_passes="every_step")
    opt = method.create_optimizer(model, None, lr=0.02, weight_decay=0.0)
    ref_opt = torch.optim.Adam(reference.parameters(), lr=0.02)
    for _ in range(10):
        _, diagnostics = _pub_step(method, model, opt, batch, y, losses_fn=same)
        torch.testing.assert_close(diagnostics["weights"], torch.full((2,), 0.5))
        ref_opt.zero_grad()
        bce(reference(batch)[:, 0], y[:, 0]).backward()
        ref_opt.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(diagnostics["update_cosine"], torch.ones(1))


@pytest.mark.parametrize(
    "normalization, factor",
    [("parallel_to_one", 1.0), ("sum_to_one", 1.0), ("sum_to_T", 2.0), ("none", 2.0), ("unit_weights", 2.0)],
)
def test_every_normalization_moves_along_the_adam_update_with_identical_tasks(normalization, factor):
    torch.manual_seed(2)
    model = _Toy(n_tasks=2)
    reference = copy.deepcopy(model)
    batch, y = _toy_data()
    same = lambda logits: bce(logits[:, 0], y[:, 0]).repeat(2)
    method = PUB(normalization=normalization, per_task_passes="every_step")
    opt = method.create_optimizer(model, None, lr=0.01, weight_decay=0.0)
    ref_opt = torch.optim.Adam(reference.trunk.parameters(), lr=0.01)
    start = [p.detach().clone() for p in model.trunk.parameters()]
    _pub_step(method, model, opt, batch, y, losses_fn=same)  # first step: weights before any solve
    ref_opt.zero_grad()
    bce(reference(batch)[:, 0], y[:, 0]).backward()
    ref_opt.step()
    for p, q, p0 in zip(model.trunk.parameters(), reference.trunk.parameters(), start):
        torch.testing.assert_close(p - p0, factor * (q - p0), rtol=1e-4, atol=1e-7)


def test_normalizations_scale_the_weights():
    batch, y = _toy_data(seed=3)
    for normalization, total in (("sum_to_one", 1.0), ("sum_to_T", 2.0), ("none", None), ("parallel_to_one", "p")):
        torch.manual_seed(3)
        model = _Toy(n_tasks=2)
        method = PUB(refresh_every=1, normalization=normalization)
        opt = method.create_optimizer(model, None, lr=0.01, weight_decay=0.0)
        for _ in range(3):
            _, diagnostics = _pub_step(method, model, opt, batch, y)
        weights, alpha = diagnostics["weights"], opt.state["pub"]["alpha"]
        if total is None:  # raw Nash weights, about 1 / ||u||: far below 1
            torch.testing.assert_close(weights, alpha)
            assert float(weights.max()) < 0.5
        elif total == "p":  # divided by the Nash weights of parallel updates, 1 / (||u_i|| sqrt(2))
            norms = opt.state["pub"]["solve_norm"]
            torch.testing.assert_close(weights, alpha / (1 / (norms * math.sqrt(2))).sum())
        else:
            torch.testing.assert_close(weights, total * alpha / alpha.sum())


def test_task_weights_multiply_the_nash_weights():
    batch, y = _toy_data(seed=4)
    out = []
    for weights in (torch.ones(2), torch.tensor([3.0, 1.0])):
        torch.manual_seed(4)
        model = _Toy(n_tasks=2)
        method = PUB(refresh_every=1, normalization="sum_to_one")
        opt = method.create_optimizer(model, None, lr=0.01, weight_decay=0.0)
        _pub_step(method, model, opt, batch, y, weights=weights)
        _, diagnostics = _pub_step(method, model, opt, batch, y, weights=weights)
        out.append((diagnostics["weights"], opt.state["pub"]["alpha"]))
    (w1, _a1), (w3, a3) = out
    expected = torch.tensor([3.0, 1.0]) * a3
    torch.testing.assert_close(w3, expected / expected.sum())
    assert float(w3[0]) > float(w1[0])


def test_pub_lowers_both_losses_on_conflicting_tasks():
    torch.manual_seed(5)
    model = _Toy(n_tasks=2, hidden=8)
    batch, y = _toy_data(n=128, conflict=True, seed=5)
    method = PUB(refresh_every=2)
    opt = method.create_optimizer(model, None, lr=0.02, weight_decay=0.0)
    first, _ = _pub_step(method, model, opt, batch, y)
    for _ in range(150):
        last, diagnostics = _pub_step(method, model, opt, batch, y)
    assert bool((last < 0.8 * first).all()), (first, last)
    assert opt.state["pub"]["n_failed"] == 0
    assert diagnostics["weights"].shape == (2,) and diagnostics["update_norm"].shape == (2,)


@pytest.mark.parametrize("passes", ["refresh", "every_step"])
def test_backward_writes_gradients_and_handles_auxiliary_losses(passes):
    torch.manual_seed(6)
    model = _Toy(n_tasks=3, aux=True)
    batch, y = _toy_data(n_tasks=3, seed=6)
    method = PUB(per_task_passes=passes)
    opt = method.create_optimizer(model, None, lr=0.01, weight_decay=0.0)
    weights = torch.tensor([1.0, 2.0, 0.5])
    opt.zero_grad()
    logits, aux = model(batch)
    losses = torch.stack([bce(logits[:, k], y[:, k]) for k in range(3)])
    w = weights / weights.sum()  # first step: equal Nash weights times task_weights
    # shared .grad = sum_t w_t grad(L_t + aux) = sum_t w_t grad L_t + grad aux
    shared = torch.autograd.grad((w * losses).sum() + aux, list(model.trunk.parameters()), retain_graph=True)
    # tower k: task_weights[k] * grad(L_k + aux)
    towers = [
        torch.autograd.grad(weights[k] * (losses[k] + aux), list(model.towers[k].parameters()), retain_graph=True)
        for k in range(3)
    ]
    diagnostics = method.backward(losses, StepContext(model, opt, None, weights, aux))
    assert set(diagnostics) == {"weights", "update_norm", "update_cosine"}
    assert diagnostics["update_cosine"].shape == (3,)
    torch.testing.assert_close(diagnostics["weights"], w)
    for p, g in zip(model.trunk.parameters(), shared):
        torch.testing.assert_close(p.grad, g)
    for k in range(3):
        for p, g in zip(model.towers[k].parameters(), towers[k]):
            torch.testing.assert_close(p.grad, g)
    method.step(StepContext(model, opt, None, weights, aux))
    with pytest.raises(RuntimeError, match="prepare"):
        opt.step()  # the gradients were consumed by the previous step


def test_backward_needs_its_own_optimizer():
    model = _Toy()
    batch, y = _toy_data()
    opt = torch.optim.Adam(model.parameters())
    losses = torch.stack([bce(model(batch)[:, k], y[:, k]) for k in range(2)])
    with pytest.raises(TypeError, match="PUBAdam"):
        PUB().backward(losses, StepContext(model, opt, None, torch.ones(2)))


def test_optimizer_state_dict_round_trip_continues_identically():
    torch.manual_seed(7)
    model = _Toy(n_tasks=3)
    batch, y = _toy_data(n_tasks=3, seed=7)
    method = PUB(refresh_every=3)
    opt = method.create_optimizer(model, None, lr=0.01, weight_decay=0.01)
    for _ in range(4):
        _pub_step(method, model, opt, batch, y)
    twin = copy.deepcopy(model)
    twin_opt = method.create_optimizer(twin, None, lr=0.5, weight_decay=0.0)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    twin_opt.load_state_dict(torch.load(buffer, weights_only=False))
    assert twin_opt.state["pub"]["n_solves"] == opt.state["pub"]["n_solves"] == 1
    for _ in range(4):  # steps 5..8, a refresh at step 5 and 8
        _pub_step(method, model, opt, batch, y)
        _pub_step(method, twin, twin_opt, batch, y)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q)
    torch.testing.assert_close(opt.state["pub"]["alpha"], twin_opt.state["pub"]["alpha"])
    assert opt.state["pub"]["n_solves"] == 3


# -- the estimator surface ----------------------------------------------------------------
TINY = {"tower_hidden_sizes": (4,), "embedding_dim": 4, "max_epochs": 2, "batch_size": 64, "random_state": 0}
ESTIMATORS = [
    (MMoEClassifier, {"n_experts": 2, "expert_hidden_sizes": (8,)}),
    (PLEClassifier, {"n_task_experts": 1, "n_shared_experts": 1, "expert_hidden_sizes": (8,)}),
    (SharedBottomClassifier, {"bottom_hidden_sizes": (8,)}),
]


@pytest.fixture(scope="module")
def data():
    X, Y = make_multitask_classification(n_samples=300, n_features=6, n_categorical=2, random_state=0)
    return X, Y


@pytest.mark.parametrize("Estimator, params", ESTIMATORS, ids=lambda v: getattr(v, "__name__", ""))
def test_end_to_end_with_the_baselines(Estimator, params, data):
    X, Y = data
    clf = Estimator(optimizer=PUB(refresh_every=2), **params, **TINY).fit(X, Y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.isfinite(proba).all()
    for epoch in clf.history_:
        weights = np.asarray(epoch["optim_weights"])
        assert weights.shape == (2,) and (weights > 0).all()
        assert 0.999 < weights.sum() <= 2.0  # parallel_to_one: 1 for agreeing updates, capped at T
        assert len(epoch["optim_update_cosine"]) == 1 and len(epoch["optim_update_norm"]) == 2
    state = clf.net_.optimizer_.state["pub"]
    assert state["n_solves"] > 0 and state["n_failed"] == 0


def test_params_clone_and_grid_search(data):
    method = PUB(refresh_every=3, normalization="sum_to_T")
    assert method.get_params() == {
        "refresh_every": 3,
        "normalization": "sum_to_T",
        "per_task_passes": "refresh",
        "betas": (0.9, 0.999),
        "eps": 1e-8,
    }
    twin = clone(method)
    assert twin is not method and twin.get_params() == method.get_params()
    assert twin.set_params(refresh_every=1).refresh_every == 1
    X, Y = data
    clf = SharedBottomClassifier(bottom_hidden_sizes=(8,), **{**TINY, "max_epochs": 1})
    search = GridSearchCV(clf, param_grid={"optimizer": [PUB()], "optimizer__refresh_every": [1, 10]}, cv=KFold(2))
    search.fit(X, Y)
    assert search.best_params_["optimizer__refresh_every"] in (1, 10)
    assert isinstance(search.best_estimator_.optimizer, PUB)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


@pytest.mark.parametrize(
    "bad",
    [{"refresh_every": 0}, {"normalization": "l2"}, {"per_task_passes": "never"}, {"betas": (0.9,)}, {"eps": -1.0}],
)
def test_invalid_hyper_parameters_raise_at_fit(bad, data):
    X, Y = data
    with pytest.raises(ValueError, match="PUB"):
        SharedBottomClassifier(optimizer=PUB(**bad), bottom_hidden_sizes=(8,), **TINY).fit(X, Y)


def test_joblib_round_trip_then_partial_fit_continues(data, tmp_path):
    X, Y = data
    clf = MMoEClassifier(optimizer=PUB(refresh_every=2), n_experts=2, expert_hidden_sizes=(8,), **TINY).fit(X, Y)
    opt = clf.net_.optimizer_
    steps = int(opt.state[clf.net_.module_.shared_parameters()[0]]["step"])
    solves = opt.state["pub"]["n_solves"]
    alpha = opt.state["pub"]["alpha"].clone()
    path = tmp_path / "pub.joblib"
    joblib.dump(clf, path)
    loaded = joblib.load(path)
    state = loaded.net_.optimizer_.state
    assert isinstance(loaded.net_.optimizer_, PUBAdam)
    torch.testing.assert_close(state["pub"]["alpha"], alpha)
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X))
    loaded.partial_fit(X, Y)
    state = loaded.net_.optimizer_.state
    assert int(state[loaded.net_.module_.shared_parameters()[0]]["step"]) == steps + steps // 2  # one more epoch
    assert state["pub"]["n_solves"] > solves
    assert len(loaded.history_) == 3 and len(loaded.history_[-1, "optim_weights"]) == 2


# -- the bargaining inside training; the normalisation; the joint pass between refreshes ---
def _lookahead_gram(opt, params, grads):
    """Independent recomputation of the per-task look-ahead updates' Gram matrix."""
    beta1, beta2 = opt.param_groups[0]["betas"]
    eps = opt.param_groups[0]["eps"]
    m = torch.cat([opt.state[p]["exp_avg"].reshape(-1) for p in params]).double()
    v = torch.cat([opt.state[p]["exp_avg_sq"].reshape(-1) for p in params]).double()
    s = float(opt.state[params[0]]["step"]) + 1
    rows = []
    for g in grads:
        g = torch.cat([x.reshape(-1) for x in g]).double()
        m_t = (beta1 * m + (1 - beta1) * g) / (1 - beta1**s)
        v_t = (beta2 * v + (1 - beta2) * g * g) / (1 - beta2**s)
        rows.append(m_t / (v_t.sqrt() + eps))
    U = torch.stack(rows)
    return U @ U.T


def test_alpha_solves_the_nash_condition_on_the_lookahead_gram_in_a_training_step(data):
    from sklearn_mtr._batches import TaskDataset
    from sklearn_mtr._task_scoring import task_losses

    X, Y = data
    clf = MMoEClassifier(optimizer=PUB(refresh_every=3), n_experts=2, expert_hidden_sizes=(8,), **TINY).fit(X, Y)
    net, opt = clf.net_, clf.net_.optimizer_
    dataset = TaskDataset(
        clf.feature_encoder_.transform(clf._validate_X(X, reset=False)), torch.from_numpy(Y.astype("float32"))
    )
    batches = list(net.get_iterator(dataset, training=True))
    checked = 0
    for batch in batches * 2:
        if not opt.needs_task_gradients():  # not a refresh step: take it and go on
            net.train_step(batch)
            continue
        Xb, (yb, wb) = batch
        model = net.module_
        shared = model.shared_parameters()
        losses = task_losses(model(Xb), yb, wb)
        grads = [torch.autograd.grad(losses[k], shared, retain_graph=True, allow_unused=True) for k in range(2)]
        grads = [[torch.zeros_like(p) if g is None else g for g, p in zip(gs, shared)] for gs in grads]
        gram = _lookahead_gram(opt, shared, grads)
        solves = opt.state["pub"]["n_solves"]
        net.train_step(batch)
        assert opt.state["pub"]["n_solves"] == solves + 1
        assert float(nash_residual(gram, opt.state["pub"]["alpha"])) < 1e-4
        # the recorded norms are those of the look-ahead updates
        torch.testing.assert_close(opt.state["pub"]["update_norm"].double(), gram.diagonal().sqrt(), rtol=1e-4, atol=0)
        checked += 1
    assert checked >= 2


def test_weights_respond_to_conflict_at_two_tasks():
    norms = torch.tensor([1.0, 3.0], dtype=torch.float64)
    totals, splits = [], []
    for cos in (0.9, 0.0, -0.4):
        G = torch.tensor([[1.0, cos], [cos, 1.0]], dtype=torch.float64) * norms[:, None] * norms[None, :]
        alpha, ok = solve_nash_weights(G)
        assert ok
        w = pub_weights(alpha, norms, "parallel_to_one")
        totals.append(float(w.sum()))
        splits.append((w / w.sum()).tolist())
        torch.testing.assert_close(w.sum(), torch.tensor(math.sqrt(2 / (1 + cos)), dtype=torch.float64))
        # sum_to_one keeps only the split 1 / ||u_i||, the same for every cosine (the flaw fixed here)
        torch.testing.assert_close(
            pub_weights(alpha, norms, "sum_to_one"), torch.tensor([0.75, 0.25], dtype=torch.float64)
        )
    assert totals[0] < totals[1] < totals[2]  # the more the updates conflict, the larger the step
    np.testing.assert_allclose(splits, [[0.75, 0.25]] * 3)
    # near opposite updates the total is capped at T
    alpha = torch.tensor([1.0, 1.0 / 3.0], dtype=torch.float64) / math.sqrt(1 - 0.99)
    assert float(pub_weights(alpha, norms, "parallel_to_one").sum()) == pytest.approx(2.0)


def test_weights_respond_to_conflict_inside_training():
    batch, y = _toy_data(seed=8, conflict=True)
    totals = {}
    for name, losses_fn in (("agree", lambda logits: bce(logits[:, 0], y[:, 0]).repeat(2)), ("conflict", None)):
        torch.manual_seed(8)
        model = _Toy(n_tasks=2)
        method = PUB(refresh_every=1, normalization="parallel_to_one", per_task_passes="every_step")
        opt = method.create_optimizer(model, None, lr=0.01, weight_decay=0.0)
        for _ in range(5):
            _, diagnostics = _pub_step(method, model, opt, batch, y, losses_fn=losses_fn)
        totals[name] = float(diagnostics["weights"].sum())
        cos = float(opt.state["pub"]["update_cosine"][0])
        assert totals[name] == pytest.approx(min(math.sqrt(2 / (1 + cos)), 2.0), rel=1e-5)
    assert totals["agree"] == pytest.approx(1.0, abs=1e-6)
    assert totals["conflict"] > 1.01


def test_joint_pass_between_refreshes_applies_the_lookahead_formula(monkeypatch):
    calls = []
    real = StepContext.task_gradients
    monkeypatch.setattr(StepContext, "task_gradients", lambda *a, **k: calls.append(1) or real(*a, **k))
    torch.manual_seed(9)
    model = _Toy(n_tasks=2, hidden=7)
    batch, y = _toy_data(seed=9)
    method = PUB(refresh_every=4, normalization="parallel_to_one")
    opt = method.create_optimizer(model, None, lr=0.01, weight_decay=0.1)
    for _ in range(3):  # steps 1 (joint), 2 (refresh: per-task passes), 3 (joint)
        _pub_step(method, model, opt, batch, y)
    assert len(calls) == 1 and opt.state["pub"]["n_solves"] == 1
    assert not opt.needs_task_gradients()
    trunk = list(model.trunk.parameters())
    beta1, beta2 = opt.param_groups[0]["betas"]
    m = torch.cat([opt.state[p]["exp_avg"].reshape(-1) for p in trunk])
    v = torch.cat([opt.state[p]["exp_avg_sq"].reshape(-1) for p in trunk])
    w = pub_weights(opt.state["pub"]["alpha"], opt.state["pub"]["solve_norm"], "parallel_to_one")
    logits = model(batch)
    losses = torch.stack([bce(logits[:, k], y[:, k]) for k in range(2)])
    g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(w @ losses, trunk)])
    s = 4
    c = math.sqrt(1 - beta2**s) / (1 - beta1**s)
    direction = (
        c
        * (w.sum() * beta1 * m + (1 - beta1) * g)
        / ((beta2 * v + (1 - beta2) * g * g).sqrt() + 1e-8 * math.sqrt(1 - beta2**s))
    )
    expected = torch.cat([p.detach().reshape(-1) for p in trunk]) * (1 - 0.01 * 0.1) - 0.01 * direction
    _pub_step(method, model, opt, batch, y)  # step 4: one backward pass
    assert len(calls) == 1
    torch.testing.assert_close(torch.cat([p.detach().reshape(-1) for p in trunk]), expected)
    # the per-parameter moments are views into the flat buffers, advanced with the joint gradient
    torch.testing.assert_close(
        opt.state[trunk[0]]["exp_avg"].reshape(-1), (beta1 * m + (1 - beta1) * g)[: trunk[0].numel()]
    )
    _pub_step(method, model, opt, batch, y)  # step 5: none; step 6 would be the next refresh
    assert len(calls) == 1
    _pub_step(method, model, opt, batch, y)
    assert len(calls) == 2 and opt.state["pub"]["n_solves"] == 2


def test_unit_weights_never_solve_and_sum_the_updates():
    torch.manual_seed(10)
    model = _Toy(n_tasks=2)
    batch, y = _toy_data(seed=10)
    method = PUB(refresh_every=1, normalization="unit_weights")
    opt = method.create_optimizer(model, None, lr=0.01, weight_decay=0.0)
    for _ in range(4):
        _, diagnostics = _pub_step(method, model, opt, batch, y, weights=torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(diagnostics["weights"], torch.tensor([1.0, 2.0]))
    assert opt.state["pub"]["n_solves"] == 0
