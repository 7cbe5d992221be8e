"""Loss-weighting and update-level baselines: UW, DWA, GradNorm, FAMO, AdaTask, RLW, STCH, GLS."""

import copy
import io

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch import nn

from sklearn_mtr import MMoEClassifier, PLEClassifier, SharedBottomClassifier
from sklearn_mtr._schema import FeatureSchema
from sklearn_mtr.datasets import make_multitask_classification
from sklearn_mtr.models import MMoE
from sklearn_mtr.models._base import MultiTaskModule
from sklearn_mtr.optim import StepContext
from sklearn_mtr.optim.adatask import AdaTask, AdaTaskAdam
from sklearn_mtr.optim.dwa import DWA
from sklearn_mtr.optim.famo import FAMO
from sklearn_mtr.optim.gls import GLS
from sklearn_mtr.optim.gradnorm import GradNorm
from sklearn_mtr.optim.rlw import RLW
from sklearn_mtr.optim.stch import STCH
from sklearn_mtr.optim.uncertainty import UW

METHODS = {
    "uw": lambda: UW(),
    "dwa": lambda: DWA(),
    "gradnorm": lambda: GradNorm(),
    "famo": lambda: FAMO(),
    "adatask": lambda: AdaTask(),
    "rlw": lambda: RLW(),
    "stch": lambda: STCH(warmup_epoch=1),
    "gls": lambda: GLS(),
}
BCE = torch.nn.functional.binary_cross_entropy_with_logits


def _schema():
    return FeatureSchema(categorical_names=("a",), categorical_cardinalities=(6,), n_numeric=3)


def _mmoe(n_tasks=2, seed=0):
    torch.manual_seed(seed)
    return MMoE(_schema(), n_tasks, n_experts=2, expert_hidden_sizes=(8,), tower_hidden_sizes=(4,), embedding_dim=4)


def _batch(n_tasks=2, n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = {"categorical": torch.randint(0, 6, (n, 1), generator=g), "numeric": torch.randn(n, 3, generator=g)}
    return X, torch.randint(0, 2, (n, n_tasks), generator=g).float()


def _losses(model, X, y):
    out = model(X)
    return torch.stack([BCE(out[:, k], y[:, k]) for k in range(y.shape[1])])


class _Toy(MultiTaskModule):
    """A shared vector and one scalar tower per task; losses are built by hand in the tests."""

    def __init__(self, n_tasks=2, dim=4):
        super().__init__()
        self.n_tasks = n_tasks
        self.shared = nn.Parameter(torch.zeros(dim))
        self.towers = nn.ModuleList([nn.Linear(1, 1, bias=False) for _ in range(n_tasks)])


# ---------------------------------------------------------------------------- UW
def test_uw_weights_are_exp_minus_s_and_s_reaches_the_classification_optimum():
    holder = nn.Linear(1, 1)
    method = UW(log_variance_lr=0.05)
    state = method.create_state(holder, 2)
    opt = method.create_optimizer(holder, state, lr=1e-3, weight_decay=0.5)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.5, 0.0]  # s is not decayed
    fixed = torch.tensor([0.2, 1.5])
    for _ in range(150):
        opt.zero_grad()
        ctx = StepContext(holder, opt, state, torch.tensor([1.0, 3.0]))
        diag = method.backward(fixed, ctx)
        torch.testing.assert_close(diag["weights"], torch.exp(-state.log_variance.detach()))
        method.step(ctx)
    # exp(-s) L + s / 2 is minimised at s = log(2 L), whatever the user's task weights.
    torch.testing.assert_close(state.log_variance.detach(), torch.log(2 * fixed), atol=0.03, rtol=0)


# ---------------------------------------------------------------------------- DWA
def test_dwa_equal_weights_in_the_first_two_epochs_then_the_documented_softmax():
    p = torch.zeros(1, requires_grad=True)
    holder = nn.Linear(1, 1)
    method = DWA(temperature=2.0)
    state = method.create_state(holder, 2)
    user = torch.tensor([1.0, 2.0])
    per_epoch = {  # hand-made losses, three steps per epoch
        0: [[1.0, 1.0], [0.8, 1.2], [0.6, 1.1]],
        1: [[0.5, 1.0], [0.4, 1.0], [0.3, 1.0]],
        2: [[0.3, 0.9], [0.2, 0.9], [0.2, 0.8]],
        3: [[0.1, 0.8], [0.1, 0.8], [0.1, 0.7]],
    }
    means = {e: torch.tensor(v).mean(0) for e, v in per_epoch.items()}
    for epoch, rows in per_epoch.items():
        if epoch < 2:
            expected = torch.ones(2)
        else:
            expected = 2 * torch.softmax((means[epoch - 1] / means[epoch - 2]) / 2.0, dim=0)
        for row in rows:
            c = torch.tensor(row)
            p.grad = None
            diag = method.backward(c * (1 + p), StepContext(holder, None, state, user, epoch=epoch))
            torch.testing.assert_close(diag["weights"], expected)
            torch.testing.assert_close(p.grad, (user * expected * c).sum().reshape(1))
    assert not torch.allclose(expected, torch.ones(2))
    # The running statistics are buffers of the state module (they pickle and move devices).
    assert {"loss_sum", "mean_last", "mean_before_last", "epoch"} <= {n for n, _ in state.named_buffers()}


# ---------------------------------------------------------------------------- GradNorm
def test_gradnorm_keeps_the_weight_sum_and_favours_the_slower_task():
    model = _Toy()
    method = GradNorm(alpha=1.5, weight_lr=0.05)
    state = method.create_state(model, 2)
    opt = method.create_optimizer(model, state, lr=1e-3, weight_decay=0.0)
    v = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])  # equal-norm task gradients
    first = None
    for t in range(30):
        opt.zero_grad()
        fast, slow = 0.9**t, 1.0  # task 0's loss falls, task 1's does not
        towers = [model.towers[k].weight.sum() * 0.01 for k in range(2)]
        losses = torch.stack(
            [fast + 0.1 * (model.shared * v[0]).sum() + towers[0], slow + 0.1 * (model.shared * v[1]).sum() + towers[1]]
        )
        first = losses.detach() if first is None else first
        ctx = StepContext(model, opt, state, torch.ones(2))
        diag = method.backward(losses, ctx)
        assert diag["weights"].sum().item() == pytest.approx(2.0, abs=1e-5)
        method.step(ctx)
        assert state.weights.sum().item() == pytest.approx(2.0, abs=1e-5)
    torch.testing.assert_close(state.initial_losses, first)  # L(0) recorded at the first step
    w = state.weights.detach()
    assert w[1] > 1.2 and w[0] < 0.8


# ---------------------------------------------------------------------------- FAMO
def test_famo_weights_stay_on_the_simplex_and_move_to_the_slower_task():
    p = torch.zeros(1, requires_grad=True)
    holder = nn.Linear(1, 1)
    method = FAMO(weight_lr=0.025, gamma=0.001)
    state = method.create_state(holder, 2)
    first = None
    for t in range(40):
        c = torch.tensor([0.8**t, 0.99**t])  # task 0 improves fast, task 1 slowly
        p.grad = None
        diag = method.backward(c * (1 + p), StepContext(holder, None, state, torch.ones(2)))
        z = diag["weights"]
        assert torch.all(z >= 0) and z.sum().item() == pytest.approx(1.0, abs=1e-6)
        assert diag["loss_weights"].sum().item() == pytest.approx(1.0, abs=1e-5)
        # d = grad of sum_k c z_k log L_k, i.e. sum_k (c z_k / L_k) dL_k/dp.
        torch.testing.assert_close(p.grad, (diag["loss_weights"] * c).sum().reshape(1))
        first = z if first is None else first
    torch.testing.assert_close(first, torch.full((2,), 0.5))  # no decrease measured at step 0
    assert z[1] > 0.6


# ---------------------------------------------------------------------------- RLW
def test_rlw_weights_are_the_softmax_of_the_seeded_normal_draw():
    p = torch.zeros(1, requires_grad=True)
    holder = nn.Linear(1, 1)
    method = RLW()
    torch.manual_seed(3)
    state = method.create_state(holder, 3)
    twin = torch.Generator()
    twin.set_state(state.generator.get_state())
    user = torch.tensor([1.0, 2.0, 0.5])
    c = torch.tensor([0.7, 0.2, 1.3])
    seen = []
    for _ in range(5):
        expected = torch.softmax(torch.randn(3, generator=twin), dim=0)  # lambda = softmax(z), z ~ N(0, I)
        p.grad = None
        diag = method.backward(c * (1 + p), StepContext(holder, None, state, user))
        torch.testing.assert_close(diag["weights"], expected)
        assert diag["weights"].sum().item() == pytest.approx(1.0, abs=1e-6)
        # the network's gradient is that of sum_k u_k lambda_k L_k
        torch.testing.assert_close(p.grad, (user * expected * c).sum().reshape(1))
        seen.append(diag["weights"])
    assert not torch.allclose(seen[0], seen[1])  # a new draw at every step
    # The generator is seeded from the global torch stream when training starts.
    torch.manual_seed(3)
    again = method.create_state(holder, 3)
    torch.testing.assert_close(method.sample_weights(3, again), seen[0])


def test_rlw_generator_state_is_in_the_state_dict():
    # The safe format (sklearn_mtr.persistence) stores state_dict(): a loaded model continues the stream.
    method = RLW()
    state = method.create_state(None, 2)
    method.sample_weights(2, state)
    saved = state.state_dict()
    expected = method.sample_weights(2, state)
    other = method.create_state(None, 2)
    other.load_state_dict(saved)
    torch.testing.assert_close(method.sample_weights(2, other), expected)


def test_rlw_fixed_random_state_gives_identical_fits(data):
    X, Y = data
    fit = [ESTIMATORS["mmoe"](RLW(), max_epochs=2, batch_size=64, random_state=s).fit(X, Y) for s in (0, 0, 1)]
    np.testing.assert_array_equal(fit[0].predict_proba(X), fit[1].predict_proba(X))
    assert fit[0].history_[:, "optim_weights"] == fit[1].history_[:, "optim_weights"]
    assert fit[0].history_[-1, "optim_weights"] != fit[2].history_[-1, "optim_weights"]


# ---------------------------------------------------------------------------- STCH
def test_stch_weights_are_the_softmax_of_the_weighted_distances_to_the_ideal_point():
    p = torch.zeros(1, requires_grad=True)
    holder = nn.Linear(1, 1)
    mu = 0.5
    method = STCH(mu=mu, warmup_epoch=0)
    state = method.create_state(holder, 3)
    user = torch.tensor([1.0, 2.0, 0.5])
    # Warm-up (epoch 0): sum_i w_i log L_i, unit weights; its mean losses are the nadir point.
    warm = [torch.tensor([0.5, 1.0, 2.0]), torch.tensor([1.5, 3.0, 2.0])]
    for c in warm:
        p.grad = None
        diag = method.backward(c * (1 + p), StepContext(holder, None, state, user, epoch=0))
        torch.testing.assert_close(diag["weights"], torch.ones(3))
        torch.testing.assert_close(p.grad, user.sum().reshape(1))  # d/dp sum w_i log(c_i (1 + p)) at p = 0
    nadir = torch.stack(warm).mean(0)
    lowest = None
    for c in ([0.8, 1.0, 1.0], [0.4, 2.5, 1.2], [0.6, 1.5, 0.9]):
        c = torch.tensor(c)
        p.grad = None
        diag = method.backward(c * (1 + p), StepContext(holder, None, state, user, epoch=1))
        torch.testing.assert_close(state.nadir, nadir)
        f = torch.log(c / nadir)
        lowest = f if lowest is None else torch.minimum(lowest, f)  # the running minimum, this step's included
        torch.testing.assert_close(state.ideal, lowest)
        expected = 3 * torch.softmax(user * (f - lowest) / mu, dim=0)
        torch.testing.assert_close(diag["weights"], expected)
        # the gradient is that of T mu logsumexp(w (f - z) / mu): sum_i T p_i w_i grad f_i, grad f_i = 1 here
        torch.testing.assert_close(p.grad, (expected * user).sum().reshape(1))
    # ideal_point="zero": z = 0 on the normalised log scale (the authors' code).
    method = STCH(mu=mu, warmup_epoch=None, ideal_point="zero")
    state = method.create_state(holder, 3)
    c = torch.tensor([0.8, 1.0, 3.0])
    diag = method.backward(c * (1 + p), StepContext(holder, None, state, user, epoch=0))
    torch.testing.assert_close(diag["weights"], 3 * torch.softmax(user * torch.log(c) / mu, dim=0))
    # A task without labels (loss 0) is left out of the soft maximum.
    diag = method.backward(torch.tensor([0.8, 0.0, 3.0]) * (1 + p), StepContext(holder, None, state, user, epoch=1))
    assert diag["weights"][1] == 0 and diag["weights"].sum().item() == pytest.approx(3.0)


def test_stch_small_mu_approaches_the_tchebycheff_maximum():
    holder = nn.Linear(1, 1)
    c = torch.tensor([0.5, 2.0])
    method = STCH(mu=1e-3, warmup_epoch=None, ideal_point="zero")
    total, weights = method.objective(c, method.create_state(holder, 2), 0, torch.ones(2))
    torch.testing.assert_close(weights, torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(total, 2 * torch.log(c).max(), atol=1e-3, rtol=0)


# ---------------------------------------------------------------------------- GLS
def test_gls_gradient_is_that_of_the_geometric_mean():
    model = _mmoe(n_tasks=3)
    X, y = _batch(n_tasks=3)
    losses = _losses(model, X, y)
    expected = torch.autograd.grad(torch.prod(losses) ** (1 / 3), list(model.parameters()), retain_graph=True)
    method = GLS()
    diag = method.backward(losses, StepContext(model, None, None, torch.ones(3)))
    for p, g in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, g)
    # d (prod L)^(1/T) / d L_i = (prod L)^(1/T) / (T L_i)
    gm = torch.prod(losses.detach()) ** (1 / 3)
    torch.testing.assert_close(diag["weights"], gm / (3 * losses.detach()))
    # User weights are exponents: prod_i L_i^(u_i / T); a task without labels is left out.
    c = torch.tensor([0.5, 2.0, 0.0])
    p = torch.ones(1, requires_grad=True)
    total, weights = method.objective(c * p, torch.tensor([1.0, 3.0, 1.0]))
    torch.testing.assert_close(total, torch.tensor((0.5 * 2.0**3) ** (1 / 2)))
    total.backward()
    # d/dp (0.5 p)^(1/2) (2 p)^(3/2) = 2 (0.5 * 8) ^ (1/2) at p = 1
    torch.testing.assert_close(p.grad, torch.tensor([2.0 * (0.5 * 8.0) ** 0.5]))
    torch.testing.assert_close(weights, torch.tensor([2.0 / (2 * 0.5), 2.0 / (2 * 2.0), 0.0]))


# ---------------------------------------------------------------------------- AdaTask
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adatask_with_one_task_is_adam(weight_decay):
    model = _mmoe(n_tasks=1)
    reference = copy.deepcopy(model)
    method = AdaTask()
    opt = method.create_optimizer(model, None, lr=0.01, weight_decay=weight_decay)
    assert isinstance(opt, AdaTaskAdam)
    ref_cls = torch.optim.AdamW if weight_decay else torch.optim.Adam
    ref_opt = ref_cls(reference.parameters(), lr=0.01, weight_decay=weight_decay)
    X, y = _batch(n_tasks=1)
    for _ in range(4):
        opt.zero_grad()
        ctx = StepContext(model, opt, None, torch.ones(1))
        method.backward(_losses(model, X, y), ctx)
        method.step(ctx)
        ref_opt.zero_grad()
        _losses(reference, X, y).sum().backward()
        ref_opt.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)


def test_adatask_first_step_sums_the_per_task_adam_directions():
    model = _mmoe()
    method = AdaTask(eps=1e-8)
    opt = method.create_optimizer(model, None, lr=0.01, weight_decay=0.0)
    X, y = _batch()
    user = torch.tensor([1.0, 3.0])
    shared = model.shared_parameters()
    losses = _losses(model, X, y)
    per_task = [torch.autograd.grad(losses[k], shared, retain_graph=True, allow_unused=True) for k in range(2)]
    before = [p.detach().clone() for p in shared]
    ctx = StepContext(model, opt, None, user)
    assert method.backward(losses, ctx)["weights"].tolist() == [1.0, 3.0]
    method.step(ctx)
    for i, p in enumerate(shared):
        # At step 1 Adam's direction is g / (|g| + eps) for each task separately.
        grads = [torch.zeros_like(p) if g[i] is None else g[i] for g in per_task]
        expected = before[i] - 0.01 * sum(u * g / (g.abs() + 1e-8) for u, g in zip(user, grads))
        torch.testing.assert_close(p.detach(), expected)
        assert opt.state[p]["exp_avg"].shape == (2, *p.shape)


# ---------------------------------------------------------------------------- all methods
@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_lowers_both_losses_on_a_two_task_toy(name):
    model = _mmoe(seed=1)
    method = METHODS[name]()
    state = method.create_state(model, 2)
    opt = method.create_optimizer(model, state, lr=0.01, weight_decay=0.0)
    X, y = _batch(n=64, seed=1)
    with torch.no_grad():
        start = _losses(model, X, y)
    for t in range(40):
        opt.zero_grad(set_to_none=True)
        ctx = StepContext(model, opt, state, torch.ones(2), epoch=t // 8)
        diag = method.backward(_losses(model, X, y), ctx)
        assert diag["weights"].shape == (2,) and torch.isfinite(diag["weights"]).all()
        method.step(ctx)
    with torch.no_grad():
        end = _losses(model, X, y)
    assert torch.all(end < start), (start, end)


ESTIMATORS = {
    "mmoe": lambda opt, **kw: MMoEClassifier(
        n_experts=2, expert_hidden_sizes=(8,), tower_hidden_sizes=(4,), embedding_dim=4, optimizer=opt, **kw
    ),
    "ple": lambda opt, **kw: PLEClassifier(
        expert_hidden_sizes=(8,), tower_hidden_sizes=(4,), embedding_dim=4, optimizer=opt, **kw
    ),
    "shared_bottom": lambda opt, **kw: SharedBottomClassifier(
        bottom_hidden_sizes=(8,), tower_hidden_sizes=(4,), embedding_dim=4, optimizer=opt, **kw
    ),
}


@pytest.fixture(scope="module")
def data():
    return make_multitask_classification(n_samples=300, n_features=4, random_state=0)


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
@pytest.mark.parametrize("name", list(METHODS))
def test_fit_predict_end_to_end(name, estimator, data):
    X, Y = data
    clf = ESTIMATORS[estimator](METHODS[name](), max_epochs=3, batch_size=128, random_state=0).fit(X, Y)
    proba = clf.predict_proba(X)
    assert proba.shape == (300, 2) and np.isfinite(proba).all()
    weights = clf.history_[:, "optim_weights"]
    assert len(weights) == 3 and all(len(w) == 2 and np.isfinite(w).all() for w in weights)


@pytest.mark.parametrize("name", list(METHODS))
def test_missing_labels_and_small_batches_stay_finite(name, data):
    X, Y = data
    Y = Y.astype(float)
    Y[np.random.RandomState(0).rand(len(Y)) < 0.9, 1] = np.nan  # many batches lack task 1
    clf = ESTIMATORS["mmoe"](METHODS[name](), max_epochs=3, batch_size=8, random_state=0).fit(X, Y)
    assert np.isfinite(clf.predict_proba(X)).all()
    assert all(np.isfinite(w).all() for w in clf.history_[:, "optim_weights"])


def _method_state(clf):
    """Every tensor the method keeps: its state module and the torch optimizer state."""
    out = {}
    state = getattr(clf.net_, "mto_state_", None)
    if state is not None:
        out.update({f"state.{k}": v.detach().clone() for k, v in state.state_dict().items()})
    for i, s in clf.net_.optimizer_.state_dict()["state"].items():
        out.update({f"opt.{i}.{k}": torch.as_tensor(v).clone() for k, v in s.items()})
    return out


@pytest.mark.parametrize("name", list(METHODS))
def test_joblib_round_trip_keeps_the_state_and_partial_fit_continues(name, data):
    X, Y = data
    clf = ESTIMATORS["mmoe"](METHODS[name](), max_epochs=3, batch_size=128, random_state=0).fit(X, Y)
    buffer = io.BytesIO()
    joblib.dump(clf, buffer)
    buffer.seek(0)
    loaded = joblib.load(buffer)
    before, after = _method_state(clf), _method_state(loaded)
    assert before.keys() == after.keys() and before
    for key in before:
        torch.testing.assert_close(after[key], before[key], msg=key)
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), rtol=1e-6)

    loaded.partial_fit(X, Y)
    assert loaded.n_iter_ == 4
    assert len(loaded.history_[-1, "optim_weights"]) == 2
    changed = _method_state(loaded)
    assert any(not torch.equal(changed[k], before[k]) for k in before)
    if name == "dwa":  # epochs 0-2 done: the fourth epoch uses the softmax of the ratios
        st = loaded.net_.mto_state_
        assert st.epoch.item() == 3 and st.epochs_done.item() == 3
        assert loaded.history_[-1, "optim_weights"] != pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("name", list(METHODS))
def test_clone_get_params_and_validation(name, data):
    method = METHODS[name]()
    params = method.get_params()
    assert clone(method).get_params() == params
    clf = ESTIMATORS["mmoe"](method)
    assert {f"optimizer__{k}" for k in params} <= set(clf.get_params())
    bad = {
        "uw": {"log_variance_lr": 0.0},
        "dwa": {"temperature": 0},
        "gradnorm": {"alpha": -1.0},
        "famo": {"gamma": -0.1},
        "adatask": {"betas": (0.9, 1.5)},
        "rlw": None,  # no hyper-parameters
        "stch": {"mu": 0.0},
        "gls": None,  # no hyper-parameters
    }[name]
    if bad is None:
        assert params == {}
        return
    clf = ESTIMATORS["mmoe"](METHODS[name]().set_params(**bad), max_epochs=1)
    with pytest.raises(ValueError, match=next(iter(bad))):
        clf.fit(*data)


def test_user_task_weights_reach_the_network_gradient():
    """A zero user weight removes a task's gradient for the reweighting methods."""
    for name in ("uw", "dwa", "gradnorm", "famo", "rlw", "stch", "gls"):
        model = _mmoe()
        method = METHODS[name]()
        state = method.create_state(model, 2)
        opt = method.create_optimizer(model, state, lr=0.01, weight_decay=0.0)
        X, y = _batch()
        method.backward(_losses(model, X, y), StepContext(model, opt, state, torch.tensor([1.0, 0.0])))
        assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in model.task_parameters(1)), name
        assert any(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in model.task_parameters(0)), name
