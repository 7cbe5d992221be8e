"""ResFlow: residual flows between task towers, its parameter groups and its estimator."""

import numpy as np
import pandas as pd
import pytest
import torch
from model_fixtures import SCHEMA, make_batch

from sklearn_mtr import ResFlowClassifier
from sklearn_mtr.datasets import make_funnel_classification
from sklearn_mtr.estimators.resflow import ordinal_labels
from sklearn_mtr.models import ResFlow
from sklearn_mtr.models.resflow import Affine


def build(n_tasks=2, seed=0, **kwargs):
    torch.manual_seed(seed)
    kwargs = {"embedding_dim": 4, "tower_hidden_sizes": (6, 5), **kwargs}
    return ResFlow(SCHEMA, n_tasks, **kwargs)


def reached_by(model, batch):
    """For every parameter, the set of tasks whose output it influences (by autograd)."""
    logits = model(batch)
    params = dict(model.named_parameters())
    reach = {name: set() for name in params}
    for k in range(logits.shape[1]):
        grads = torch.autograd.grad(logits[:, k].sum(), list(params.values()), retain_graph=True, allow_unused=True)
        for name, g in zip(params, grads):
            if g is not None and g.abs().sum() > 0:
                reach[name].add(k)
    return reach


def assert_task_parameters_exact(model, batch):
    """task_parameters(k) holds exactly the parameters that only task k's output reaches."""
    reach = reached_by(model, batch)
    names = {id(p): n for n, p in model.named_parameters()}
    for k in range(model.n_tasks):
        declared = {names[id(p)] for p in model.task_parameters(k)}
        truly = {n for n, tasks in reach.items() if tasks == {k}}
        assert declared == truly, (k, declared ^ truly)


def test_manual_wiring_of_two_towers():
    model = build(batch_norm="none").eval()
    batch = make_batch()
    t0, t1 = model.towers
    e = model.embedding(batch)
    c1 = t0.layers[0](e)
    c2 = t0.layers[1](c1)
    v1 = t1.layers[0](e)
    v2 = t1.layers[1](v1 + c1)  # task 0's layer-1 output enters task 1's layer 2
    expected = torch.cat([t0.out(c2), t1.out(v2 + c2)], dim=1)
    torch.testing.assert_close(model(batch), expected)


def test_logit_residual_adds_the_previous_logit():
    model = build(n_tasks=3, logit_residual=True, batch_norm="none").eval()
    off = build(n_tasks=3, logit_residual=False, batch_norm="none").eval()
    batch = make_batch()
    z, z_off = model(batch), off(batch)  # same seed: same weights
    torch.testing.assert_close(z[:, 0], z_off[:, 0])
    torch.testing.assert_close(z[:, 1], z_off[:, 1] + z[:, 0])
    torch.testing.assert_close(z[:, 2], z_off[:, 2] + z[:, 1])


@pytest.mark.parametrize("order", [None, [1, 0]])
def test_deeper_tower_does_not_change_shallower_output_and_the_shallower_reaches_it(order):
    model = build(task_order=order).eval()
    first, second = (0, 1) if order is None else (1, 0)
    batch = make_batch()
    base = model(batch).detach()
    with torch.no_grad():
        for p in model.towers[second].parameters():
            p.add_(torch.randn_like(p))
    moved = model(batch).detach()
    torch.testing.assert_close(moved[:, first], base[:, first])
    assert not torch.allclose(moved[:, second], base[:, second])

    # the first task's first-layer output flows into the second task
    model = build(task_order=order).eval()
    with torch.no_grad():
        model.towers[first].layers[0][0].bias.add_(1.0)
    changed = model(batch).detach()
    assert not torch.allclose(changed[:, second], base[:, second])


@pytest.mark.parametrize("logit_residual", [False, True])
@pytest.mark.parametrize("n_tasks, order", [(2, None), (3, None), (3, [2, 0, 1])])
def test_task_parameters_are_exactly_what_one_task_reaches(n_tasks, order, logit_residual):
    model = build(n_tasks=n_tasks, task_order=order, logit_residual=logit_residual, batch_norm="train")
    assert_task_parameters_exact(model, make_batch())
    last = model.order[-1]
    assert {id(p) for p in model.towers[last].parameters()} <= {id(p) for p in model.task_parameters(last)}
    for k in model.order[:-1]:
        expected = [] if logit_residual else list(model.towers[k].out.parameters())
        assert [id(p) for p in model.task_parameters(k)] == [id(p) for p in expected]


def test_logit_only_variant_chains_logits_of_independent_towers():
    model = build(n_tasks=3, hidden_residual=False, logit_residual=True, batch_norm="none").eval()
    batch = make_batch()
    e = model.embedding(batch)

    def own(tower):  # a tower on the embedding alone: no hidden flow enters it
        x = e
        for layer in tower.layers:
            x = layer(x)
        return tower.out(x)

    z0 = own(model.towers[0])
    z1 = own(model.towers[1]) + z0
    z2 = own(model.towers[2]) + z1
    torch.testing.assert_close(model(batch), torch.cat([z0, z1, z2], dim=1))


@pytest.mark.parametrize("logit_residual", [False, True])
def test_task_parameters_without_hidden_flows(logit_residual):
    model = build(n_tasks=3, task_order=[2, 0, 1], hidden_residual=False, logit_residual=logit_residual)
    assert_task_parameters_exact(model, make_batch())
    # no flow at all: every task owns its whole tower; the logit chain: only the last does
    owners = [1] if logit_residual else [0, 1, 2]
    for k in range(3):
        owned = {id(p) for p in model.task_parameters(k)}
        assert ({id(p) for p in model.towers[k].parameters()} <= owned) == (k in owners)


def test_batch_norm_modes():
    kinds = lambda m, cls: sum(isinstance(x, cls) for x in m.modules())
    assert kinds(build(batch_norm="train"), torch.nn.BatchNorm1d) == 1 + 2 * 2
    assert kinds(build(batch_norm="affine"), Affine) == 1 + 2 * 2
    none = build(batch_norm="none")
    assert kinds(none, torch.nn.BatchNorm1d) == kinds(none, Affine) == 0
    # affine: a row's output does not depend on the rest of the batch, in training too
    model = build(batch_norm="affine").train()
    batch = make_batch(n=8)
    half = {k: v[:4] for k, v in batch.items()}
    torch.testing.assert_close(model(batch)[:4], model(half))
    with pytest.raises(ValueError, match="batch_norm"):
        build(batch_norm=True)


def test_default_activation_is_prelu_and_validation():
    model = build()
    assert any(isinstance(m, torch.nn.PReLU) for m in model.modules())
    with pytest.raises(ValueError, match="task_order"):
        build(task_order=[0, 0])
    with pytest.raises(ValueError, match="task_order"):
        build(task_order=[0, 1, 2])
    with pytest.raises(ValueError, match="tower_hidden_sizes"):
        build(tower_hidden_sizes=())
    with pytest.raises(ValueError, match="activation"):
        build(activation="swish")
    assert model.same_shaped_towers()


@pytest.fixture(scope="module")
def funnel():
    X, Y = make_funnel_classification(
        n_samples=300, n_features=6, stage_rates=(0.4, 0.5), n_categorical=2, as_frame=True, random_state=0
    )
    Y.columns = ["click", "buy"]
    return X, Y


TINY = {
    "tower_hidden_sizes": (8, 4),
    "embedding_dim": 4,
    "max_epochs": 3,
    "batch_size": 64,
    "lr": 0.01,
    "random_state": 0,
}


@pytest.mark.parametrize("optimizer", ["adam", "pcgrad"])
def test_estimator_fit_predict(funnel, optimizer):
    X, Y = funnel
    clf = ResFlowClassifier(optimizer=optimizer, **TINY).fit(X, Y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.all((proba >= 0) & (proba <= 1))
    assert clf.predict(X).shape == (len(X), 2)
    assert list(clf.task_names_) == ["click", "buy"]
    assert np.isfinite(clf.history_[-1, "train_loss"])


def test_estimator_task_order_by_name(funnel):
    X, Y = funnel
    clf = ResFlowClassifier(task_order=["buy", "click"], **{**TINY, "max_epochs": 1}).fit(X, Y)
    assert clf.net_.module_.order == [1, 0]
    with pytest.raises(ValueError, match="not a task"):
        ResFlowClassifier(task_order=["buy", "view"], **TINY).fit(X, Y)
    for bad in ([0], 1, "click"):
        with pytest.raises(ValueError, match="task_order"):
            ResFlowClassifier(task_order=bad, **TINY).fit(X, Y)


def test_estimator_does_not_enforce_a_funnel():
    # ResFlow's order is a modelling choice, not a label contract: any labels are fine.
    X = pd.DataFrame({"x": np.arange(20.0), "y": np.arange(20.0) % 3})
    Y = np.column_stack([np.arange(20) % 2, (np.arange(20) + 1) % 2])
    ResFlowClassifier(**{**TINY, "max_epochs": 1}).fit(X, Y)


def test_drgrad_tower_routing_applies_and_split_mode_says_why_not(funnel):
    from sklearn_mtr.optim import DRGrad

    X, Y = funnel
    clf = ResFlowClassifier(optimizer=DRGrad(mode="tower"), **{**TINY, "max_epochs": 1}).fit(X, Y)
    assert clf.net_.module_.same_shaped_towers()
    with pytest.raises(ValueError, match="tower_inputs"):
        ResFlowClassifier(optimizer=DRGrad(mode="split"), **TINY).fit(X, Y)


def test_pos_weight_multiplies_the_positive_term_of_each_task():
    import torch

    from sklearn_mtr._task_scoring import task_losses

    logits = torch.tensor([[0.3, -1.0], [2.0, 0.5]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pw = torch.tensor([3.0, 0.5])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=pw, reduction="none").mean(0)
    torch.testing.assert_close(task_losses(logits, y, None, pw), expected)


def test_resflow_pos_weight_raises_predicted_rates_and_is_validated():
    import numpy as np
    import pytest

    from sklearn_mtr import ResFlowClassifier
    from sklearn_mtr.datasets import make_funnel_classification

    X, Y = make_funnel_classification(n_samples=400, random_state=0)
    # trained far enough that the predicted rates have left the initial 0.5 (35 steps at 1e-2)
    small = {"tower_hidden_sizes": (8, 8), "embedding_dim": 4, "max_epochs": 5, "lr": 1e-2, "random_state": 0}
    plain = ResFlowClassifier(**small).fit(X, Y).predict_proba(X).mean(0)
    weighted = ResFlowClassifier(**small, pos_weight=[5.0, 20.0]).fit(X, Y).predict_proba(X).mean(0)
    assert np.all(weighted > plain)
    with pytest.raises(ValueError, match="pos_weight"):
        ResFlowClassifier(**small, pos_weight=[1.0, -2.0]).fit(X, Y)


def test_released_funnel_loss_is_the_weighted_bce_of_the_released_code():
    X, Y = make_funnel_classification(n_samples=300, random_state=0)
    clf = ResFlowClassifier.released_funnel(**{**TINY, "max_epochs": 1})
    params = clf.get_params()
    assert (params["task_weights"], params["pos_weight"]) == ((2.0, 1.0), (100.0, 500.0))
    assert params["logit_residual"] and params["hidden_residual"] and params["batch_norm"] == "affine"
    assert ResFlowClassifier.released_funnel(pos_weight=None).get_params()["pos_weight"] is None  # overridable
    clf.fit(X, Y)
    encoded = clf._encode(clf._validate_X(X[:16], reset=False))
    y = torch.tensor(np.asarray(Y[:16], dtype=np.float32))
    loss = clf.net_.validation_step((encoded, (y, None)))["loss"]
    # by hand: 2 * mean BCE(pos_weight 100) of task 0 + 1 * mean BCE(pos_weight 500) of task 1
    p = torch.sigmoid(clf.net_.module_(encoded).double())
    yd = y.double()
    bce = -(torch.tensor([100.0, 500.0]) * yd * torch.log(p) + (1 - yd) * torch.log(1 - p)).mean(0)
    torch.testing.assert_close(loss.double(), 2 * bce[0] + bce[1], rtol=1e-5, atol=1e-6)


def test_released_ordinal_is_the_logit_only_variant_with_rising_pos_weight():
    clf = ResFlowClassifier.released_ordinal(n_tasks=3, **{**TINY, "max_epochs": 2})
    params = clf.get_params()
    assert not params["hidden_residual"] and params["logit_residual"] and params["batch_norm"] == "none"
    np.testing.assert_allclose(params["pos_weight"], [0.90, 0.95, 1.00])
    assert len(ResFlowClassifier.released_ordinal().get_params()["pos_weight"]) == 9
    assert ResFlowClassifier.released_ordinal().get_params()["pos_weight"][-1] == pytest.approx(1.30)
    with pytest.raises(ValueError, match="n_tasks"):
        ResFlowClassifier.released_ordinal(n_tasks=0)

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    graded = np.exp(X["a"] + rng.normal(scale=0.5, size=300)) * 10
    Y = ordinal_labels(graded, thresholds=[5, 10, 20])
    clf.fit(X, Y)
    module = clf.net_.module_
    assert not module.hidden_residual and module.logit_residual
    assert clf.predict_proba(X).shape == (300, 3)


def test_ordinal_labels_are_nested_thresholds_and_keep_missing():
    Y = ordinal_labels(pd.Series([3.0, 12.0, np.nan, 45.0], index=[7, 8, 9, 10]), thresholds=[5, 10, 40])
    assert list(Y.columns) == ["> 5", "> 10", "> 40"] and list(Y.index) == [7, 8, 9, 10]
    np.testing.assert_array_equal(Y.to_numpy()[[0, 1, 3]], [[0, 0, 0], [1, 1, 0], [1, 1, 1]])
    assert Y.iloc[2].isna().all()
    with pytest.raises(ValueError, match="strictly increasing"):
        ordinal_labels([1.0, 2.0], thresholds=[10, 5])
    with pytest.raises(ValueError, match="1-D"):
        ordinal_labels([[1.0, 2.0]], thresholds=[1])
