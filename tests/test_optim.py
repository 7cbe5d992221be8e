"""The optimizer interface and equal weighting."""

import copy

import numpy as np
import pytest
import torch
from sklearn.base import clone

from sklearn_mtr import MMoEClassifier
from sklearn_mtr._schema import FeatureSchema
from sklearn_mtr.datasets import make_multitask_classification
from sklearn_mtr.estimators import ESTIMATORS
from sklearn_mtr.models import MMoE
from sklearn_mtr.optim import EW, OPTIMIZERS, DRGrad, MultiTaskOptimizer, StepContext, resolve_optimizer


def test_names_resolve_to_fresh_instances_and_instances_are_cloned():
    assert isinstance(resolve_optimizer("adam"), EW)
    assert isinstance(resolve_optimizer("EW"), EW)
    spec = EW()
    assert resolve_optimizer(spec) is not spec
    with pytest.raises(ValueError, match="optimizer='sgdx'"):
        resolve_optimizer("sgdx")
    assert set(OPTIMIZERS) >= {"adam", "ew"}


def test_equal_weighting_step_equals_adamw_on_the_weighted_sum():
    torch.manual_seed(0)
    schema = FeatureSchema(categorical_names=("a",), categorical_cardinalities=(6,), n_numeric=3)
    model = MMoE(schema, 2, n_experts=2, expert_hidden_sizes=(8,), tower_hidden_sizes=(4,))
    reference = copy.deepcopy(model)
    batch = {"categorical": torch.randint(0, 6, (16, 1)), "numeric": torch.randn(16, 3)}
    y = torch.randint(0, 2, (16, 2)).float()
    weights = torch.tensor([1.0, 3.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    method = EW()
    opt = method.create_optimizer(model, None, lr=0.01, weight_decay=0.1)
    ref_opt = torch.optim.AdamW(reference.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        losses = torch.stack([bce(model(batch)[:, k], y[:, k]) for k in range(2)])
        ctx = StepContext(model, opt, None, weights)
        assert method.backward(losses, ctx) == {}
        method.step(ctx)
        ref_opt.zero_grad()
        out = reference(batch)
        (bce(out[:, 0], y[:, 0]) + 3.0 * bce(out[:, 1], y[:, 1])).backward()
        ref_opt.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)


class _Balanced(MultiTaskOptimizer):
    """A toy method: weights tasks by inverse running loss, kept in a state buffer."""

    def __init__(self, momentum=0.9):
        self.momentum = momentum

    def create_state(self, model, n_tasks):
        state = torch.nn.Module()
        state.register_buffer("running", torch.ones(n_tasks))
        return state

    def backward(self, task_losses, ctx):
        running = ctx.state.running
        running.mul_(self.momentum).add_((1 - self.momentum) * task_losses.detach())
        weights = 1.0 / running
        weights = weights / weights.sum()
        (weights * task_losses).sum().backward()
        return {"weights": weights}


def test_a_new_method_plugs_in_without_touching_the_estimator():
    X, Y = make_multitask_classification(n_samples=200, n_features=4, random_state=0)
    clf = MMoEClassifier(
        n_experts=2,
        expert_hidden_sizes=(8,),
        tower_hidden_sizes=(4,),
        max_epochs=2,
        optimizer=_Balanced(),
        random_state=0,
    ).fit(X, Y)
    weights = clf.history_[-1, "optim_weights"]
    assert len(weights) == 2 and sum(weights) == pytest.approx(1.0, abs=1e-5)
    # The method's state is a registered module: it moves with the net and survives pickling.
    assert clf.net_.mto_state_.running.shape == (2,)
    assert not torch.equal(clf.net_.mto_state_.running, torch.ones(2))
    params = clone(clf).get_params()
    assert params["optimizer__momentum"] == 0.9
    assert np.isfinite(clf.predict_proba(X)).all()


@pytest.mark.parametrize("name", ["mmoe", "ple", "shared_bottom"])
def test_task_gradients_recombined_with_the_weights_equal_plain_backward(name):
    from sklearn_mtr.models import PLE, MMoE, SharedBottom

    torch.manual_seed(0)
    schema = FeatureSchema(categorical_names=("a",), categorical_cardinalities=(6,), n_numeric=3)
    model = {"mmoe": MMoE, "ple": PLE, "shared_bottom": SharedBottom}[name](
        schema, 3, embedding_dim=4, tower_hidden_sizes=(4,)
    )
    batch = {"categorical": torch.randint(0, 6, (16, 1)), "numeric": torch.randn(16, 3)}
    y = torch.randint(0, 2, (16, 3)).float()
    weights = torch.tensor([1.0, 2.0, 0.5])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    losses = torch.stack([bce(model(batch)[:, k], y[:, k]) for k in range(3)])
    ctx = StepContext(model, None, None, weights)

    shared_grads, private, shared = ctx.task_gradients(losses)
    assert shared_grads.shape == (3, sum(p.numel() for p in shared))
    ctx.write_gradients(shared, weights @ shared_grads, private)
    combined = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.zero_grad(set_to_none=True)
    (weights * torch.stack([bce(model(batch)[:, k], y[:, k]) for k in range(3)])).sum().backward()
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(combined[n], p.grad, rtol=1e-5, atol=1e-6)


# OneRank and GRec run every method in their own test files (test_onerank.py, test_grec.py).
MATRIX = sorted(name for name in ESTIMATORS if name not in ("onerank", "grec"))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("arch", MATRIX)
def test_every_registered_method_trains_every_registered_architecture(name, arch):
    from test_sklearn_compat import small_estimator

    from sklearn_mtr.datasets import make_funnel_classification
    from sklearn_mtr.estimators._registry import _FAMILY_OF

    funnel = _FAMILY_OF[arch] == "funnel" or arch == "resflow"
    make = make_funnel_classification if funnel else make_multitask_classification
    X, Y = make(n_samples=120, n_features=4, n_categorical=1, as_frame=True, random_state=0)
    # Funnel towers are entangled (flows, products, transfers) and PEPNet gates every layer of
    # its towers: DRGrad routes between them without the split tower, which needs tower_inputs.
    optimizer = DRGrad(mode="tower") if name == "drgrad" and (funnel or arch == "pepnet") else name
    clf = small_estimator(arch, ESTIMATORS[arch]).set_params(max_epochs=2, batch_size=32, optimizer=optimizer)
    proba = clf.fit(X, Y).predict_proba(X)
    assert proba.shape == (120, 2) and np.isfinite(proba).all()
    assert np.isfinite(clf.history_[-1, "train_loss"])


@pytest.mark.parametrize("arch", ["ResFlowClassifier", "ESMMClassifier", "AITMClassifier"])
def test_drgrad_split_mode_explains_what_to_use_on_entangled_towers(arch):
    import sklearn_mtr
    from sklearn_mtr.datasets import make_funnel_classification

    X, Y = make_funnel_classification(n_samples=60, n_features=4, random_state=0)
    clf = getattr(sklearn_mtr, arch)(tower_hidden_sizes=(8, 8), max_epochs=1, optimizer="drgrad")
    with pytest.raises(ValueError, match="mode='tower'"):
        clf.fit(X, Y)
