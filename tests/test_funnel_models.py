"""ESMM and AITM: product / transfer wiring, calibration loss, label contract, estimators."""

import copy
import math
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch
from model_fixtures import SCHEMA, make_batch

import sklearn_mtr._prediction as base
from sklearn_mtr import AITMClassifier, ESCM2Classifier, ESMMClassifier
from sklearn_mtr.datasets import make_funnel_classification
from sklearn_mtr.estimators._funnel import check_funnel_labels
from sklearn_mtr.models import AITM, ESCM2, ESMM, ResFlow
from sklearn_mtr.models.esmm import chained_product_logits


def esmm(n_tasks=2, seed=0, **kw):
    torch.manual_seed(seed)
    return ESMM(SCHEMA, n_tasks, **{"embedding_dim": 4, "tower_hidden_sizes": (6,), "activation": "tanh", **kw})


def aitm(n_tasks=2, seed=0, **kw):
    torch.manual_seed(seed)
    kw = {"embedding_dim": 4, "tower_hidden_sizes": (6,), "head_hidden_sizes": (3,), "activation": "tanh", **kw}
    return AITM(SCHEMA, n_tasks, **kw)


def logits_of(model, batch):
    out = model(batch)
    return out[0] if isinstance(out, tuple) else out


def assert_task_parameters_exact(model, batch):
    """task_parameters(k) holds exactly the parameters that only task k's output reaches."""
    logits = logits_of(model, batch)
    params = dict(model.named_parameters())
    reach = {n: set() for n in params}
    for k in range(logits.shape[1]):
        grads = torch.autograd.grad(logits[:, k].sum(), list(params.values()), retain_graph=True, allow_unused=True)
        for n, g in zip(params, grads):
            if g is not None and g.abs().sum() > 0:
                reach[n].add(k)
    names = {id(p): n for n, p in params.items()}
    for k in range(model.n_tasks):
        declared = {names[id(p)] for p in model.task_parameters(k)}
        assert declared == {n for n, tasks in reach.items() if tasks == {k}}, k


# ----------------------------------------------------------------------------- ESMM
@pytest.mark.parametrize("n_tasks", [1, 2, 3])
def test_esmm_outputs_are_chained_products(n_tasks):
    model = esmm(n_tasks).eval()
    batch = make_batch()
    cond = torch.sigmoid(model.conditional_logits(batch).double())
    expected = torch.cumprod(cond, dim=1)
    torch.testing.assert_close(torch.sigmoid(model(batch).double()), expected, rtol=1e-5, atol=1e-7)


def test_chained_product_logits_is_stable_at_extremes():
    a = torch.tensor([[30.0, -30.0], [-30.0, 30.0], [100.0, 100.0], [-100.0, -100.0], [0.0, 0.0], [5.0, -2.0]])
    z = chained_product_logits(a)
    assert torch.isfinite(z).all()
    a64 = a.double()
    log_prod = torch.nn.functional.logsigmoid(a64).cumsum(1)
    # compare in log space where probabilities underflow
    torch.testing.assert_close(torch.nn.functional.logsigmoid(z.double()), log_prod, rtol=1e-5, atol=1e-6)
    assert z[4, 1].item() == pytest.approx(math.log(0.25 / 0.75), rel=1e-6)
    # finite gradients everywhere, including where the product rounds to 0 or 1
    a = a.clone().requires_grad_(True)
    chained_product_logits(a).sum().backward()
    assert torch.isfinite(a.grad).all()


def test_esmm_task_parameters():
    model = esmm(3)
    assert_task_parameters_exact(model, make_batch())
    assert model.task_parameters(0) == [] and model.task_parameters(1) == []
    assert {id(p) for p in model.task_parameters(2)} == {id(p) for p in model.towers[2].parameters()}


# ----------------------------------------------------------------------------- AITM
def test_aitm_calibration_loss_zero_when_monotone_positive_otherwise():
    model = aitm(3, calibration_weight=0.6)
    monotone = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, -5.0]])
    assert model.calibration_loss(monotone).item() == 0.0
    violating = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    expected = 0.6 * (torch.sigmoid(torch.tensor(1.0)) - 0.5).item() / 2  # one positive gap, mean over 2 rows
    assert model.calibration_loss(violating).item() == pytest.approx(expected, rel=1e-6)
    assert aitm(3, calibration_weight=0.0).calibration_loss(violating).item() == 0.0
    assert aitm(1).calibration_loss(torch.zeros(4, 1)).item() == 0.0
    for bad in (-1.0, float("nan"), "0.6", None):
        with pytest.raises(ValueError, match="calibration_weight"):
            aitm(2, calibration_weight=bad)


def test_aitm_forward_returns_logits_and_calibration_loss():
    model = aitm(2).eval()
    logits, aux = model(make_batch())
    assert logits.shape == (8, 2)
    torch.testing.assert_close(aux, model.calibration_loss(logits))


def test_aitm_transfer_is_attention_over_info_and_own():
    model = aitm(2).eval()
    ait = model.transfers[0]
    z_prev, q = torch.randn(5, 6), torch.randn(5, 6)
    u = torch.stack([ait.info(z_prev), q], 1)
    s = (ait.query(u) * ait.key(u)).sum(-1) / math.sqrt(6)
    expected = (torch.softmax(s, 1).unsqueeze(-1) * ait.value(u)).sum(1)
    torch.testing.assert_close(ait(z_prev, q), expected)


def test_aitm_wiring_flows_forward_only():
    model = aitm(2).eval()
    batch = make_batch()
    base = logits_of(model, batch).detach()
    with torch.no_grad():
        for m in (model.towers[1], model.heads[1], model.transfers[0]):
            for p in m.parameters():
                p.add_(torch.randn_like(p))
    moved = logits_of(model, batch).detach()
    torch.testing.assert_close(moved[:, 0], base[:, 0])
    model = aitm(2).eval()
    with torch.no_grad():
        model.towers[0][0].bias.add_(1.0)
    assert not torch.allclose(logits_of(model, batch)[:, 1], base[:, 1])


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_aitm_task_parameters(n_tasks):
    model = aitm(n_tasks)
    assert_task_parameters_exact(model, make_batch())
    for k in range(n_tasks - 1):
        assert [id(p) for p in model.task_parameters(k)] == [id(p) for p in model.heads[k].parameters()]


# ----------------------------------------------------------------------------- label contract
def test_check_funnel_labels():
    ok = np.array([[1, 1], [1, 0], [0, 0], [np.nan, 1], [0, np.nan]], dtype=float)
    check_funnel_labels(ok, ["click", "buy"])
    bad = np.array([[1, 1], [0, 1], [0, 0]], dtype=float)
    with pytest.raises(ValueError, match=r"'buy'.*'click'.*1 row\(s\) \(first: row 1\)"):
        check_funnel_labels(bad, ["click", "buy"])
    three = np.array([[1, 0, 1]], dtype=float)
    with pytest.raises(ValueError, match="'s2'.*'s1'"):
        check_funnel_labels(three, ["s0", "s1", "s2"])


@pytest.fixture(scope="module")
def funnel():
    X, Y = make_funnel_classification(
        n_samples=300, n_features=6, stage_rates=(0.4, 0.5), n_categorical=2, as_frame=True, random_state=0
    )
    Y.columns = ["click", "buy"]
    return X, Y


TINY = {
    "tower_hidden_sizes": (8,),
    "embedding_dim": 4,
    "max_epochs": 3,
    "batch_size": 64,
    "lr": 0.01,
    "random_state": 0,
}
FUNNEL_ESTIMATORS = [ESMMClassifier, AITMClassifier, ESCM2Classifier]


@pytest.mark.parametrize("cls", FUNNEL_ESTIMATORS)
def test_estimator_rejects_a_later_stage_without_the_earlier(cls, funnel):
    X, Y = funnel
    Y = Y.copy()
    Y.iloc[5] = [0, 1]
    with pytest.raises(ValueError, match="'buy'.*'click'"):
        cls(**TINY).fit(X, Y)
    with pytest.raises(ValueError, match="'buy'.*'click'"):
        cls(**TINY).partial_fit(X, Y)
    with pytest.raises(ValueError, match="'task1'.*'task0'"):
        cls(**TINY).fit(X, Y.to_numpy())
    Y.iloc[5] = [np.nan, 1]  # missing labels are not checked
    cls(**{**TINY, "max_epochs": 1}).fit(X, Y)


@pytest.mark.parametrize("cls", FUNNEL_ESTIMATORS)
@pytest.mark.parametrize("optimizer", ["adam", "pcgrad"])
def test_estimator_fit_predict(cls, optimizer, funnel):
    X, Y = funnel
    clf = cls(optimizer=optimizer, **TINY).fit(X, Y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.all((proba >= 0) & (proba <= 1))
    pred = clf.predict(X)
    assert pred.shape == (len(X), 2) and set(np.unique(pred)) <= {0, 1}
    assert np.isfinite(clf.history_[-1, "train_loss"])
    cvr = clf.predict_cvr(X)
    assert cvr.shape == (len(X),) and np.all((cvr >= 0) & (cvr <= 1))
    cond = clf.predict_conditional_proba(X)
    np.testing.assert_allclose(cond[:, 0], proba[:, 0], rtol=1e-6)
    if cls is ESMMClassifier:
        # the product structure: pCTCVR = pCTR * pCVR, and pCVR is the CVR tower's output
        np.testing.assert_allclose(proba[:, 1], proba[:, 0] * cvr, rtol=1e-5)
        module = clf.net_.module_
        module.eval()
        batch = clf.feature_encoder_.transform(X)
        with torch.no_grad():
            tower = torch.sigmoid(module.conditional_logits(batch)[:, 1]).numpy()
        np.testing.assert_allclose(cvr, tower, rtol=1e-4, atol=1e-7)


def _error_of(method, X):
    try:
        method(X)
    except Exception as exc:  # noqa: BLE001 - the type and message are what is compared
        return type(exc), str(exc)
    return None


def _nan_weights(clf):
    poisoned = copy.deepcopy(clf)
    with torch.no_grad():
        next(poisoned.net_.module_.parameters()).fill_(float("nan"))
    return poisoned


@pytest.mark.parametrize("cls", FUNNEL_ESTIMATORS)
@pytest.mark.parametrize(
    "case",
    ["infinite value", "too many columns", "unknown column", "no rows", "text in a numeric column", "nan weights"],
)
def test_conditional_predictions_raise_the_error_predict_proba_raises(cls, case, funnel):
    X, Y = funnel
    clf = cls(**{**TINY, "max_epochs": 1}).fit(X, Y)
    numeric = X.columns[0]
    bad = {
        "infinite value": X.assign(**{numeric: np.inf}),
        "too many columns": X.assign(extra=1.0),
        "unknown column": X.rename(columns={numeric: "other"}),
        "no rows": X.iloc[:0],
        "text in a numeric column": X.assign(**{numeric: "a"}),
        "nan weights": X,  # the network's outputs are NaN: predict_proba raises FloatingPointError
    }[case]
    if case == "nan weights":
        clf = _nan_weights(clf)
    expected = _error_of(clf.predict_proba, bad)
    assert expected is not None
    assert _error_of(clf.predict_conditional_proba, bad) == expected
    assert _error_of(clf.predict_cvr, bad) == expected


@pytest.mark.parametrize("cls", FUNNEL_ESTIMATORS)
def test_conditional_predictions_encode_at_most_one_chunk_of_rows_at_a_time(cls, funnel):
    X, Y = funnel
    clf = cls(**{**TINY, "max_epochs": 1}).fit(X, Y)
    expected_cond, expected_cvr = clf.predict_conditional_proba(X), clf.predict_cvr(X)
    sizes, transform = [], clf.feature_encoder_.transform

    def recording(frame):
        sizes.append(len(frame))
        return transform(frame)

    with (
        mock.patch.object(base, "_PREDICT_CHUNK", 128),
        mock.patch.object(clf.feature_encoder_, "transform", recording),
    ):
        cond, cvr = clf.predict_conditional_proba(X), clf.predict_cvr(X)
    assert sizes == [128, 128, 44] * 2
    np.testing.assert_allclose(cond, expected_cond, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(cvr, cond[:, 1])
    assert cvr.flags.owndata and np.all((cond >= 0) & (cond <= 1))
    np.testing.assert_allclose(cvr, expected_cvr, rtol=0, atol=1e-7)


@pytest.mark.parametrize("cls", FUNNEL_ESTIMATORS)
def test_single_stage_is_a_plain_classifier(cls, funnel):
    X, Y = funnel
    clf = cls(**{**TINY, "max_epochs": 1}).fit(X, Y["click"])
    assert clf.predict_proba(X).shape == (len(X), 2)
    with pytest.raises(ValueError, match="two funnel stages"):
        clf.predict_cvr(X)


def test_three_stage_esmm(funnel):
    X, _ = funnel
    _, Y = make_funnel_classification(
        n_samples=len(X), n_features=6, n_stages=3, stage_rates=(0.5, 0.5, 0.5), random_state=1
    )
    clf = ESMMClassifier(**{**TINY, "max_epochs": 1}).fit(X, Y)
    proba = clf.predict_proba(X)
    assert np.all(np.diff(proba, axis=1) <= 1e-7)  # deeper stages never more likely
    np.testing.assert_allclose(np.cumprod(clf.predict_conditional_proba(X), axis=1), proba, rtol=1e-5)


# ----------------------------------------------------------------------------- common contract
CHAINED_MODELS = {"resflow": ResFlow, "esmm": ESMM, "aitm": AITM, "escm2": ESCM2}
CHAINED = {
    "resflow": {"embedding_dim": 4, "tower_hidden_sizes": (6, 5)},
    "esmm": {"embedding_dim": 4, "tower_hidden_sizes": (6,)},
    "aitm": {"embedding_dim": 4, "tower_hidden_sizes": (6,), "head_hidden_sizes": (3,)},
    "escm2": {"embedding_dim": 4, "tower_hidden_sizes": (6,)},
}


@pytest.mark.parametrize("n_tasks", [1, 2, 3])
@pytest.mark.parametrize("name", list(CHAINED))
def test_chained_models_output_and_parameter_groups(name, n_tasks):
    torch.manual_seed(0)
    model = CHAINED_MODELS[name](SCHEMA, n_tasks, **CHAINED[name])
    batch = make_batch()
    for train in (True, False):
        model.train(train)
        logits = logits_of(model, batch)
        assert logits.shape == (8, n_tasks) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    groups = [model.shared_parameters()] + [model.task_parameters(k) for k in range(n_tasks)]
    ids = [id(p) for g in groups for p in g]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    assert len(model.task_parameters(n_tasks - 1)) > 0  # the last task owns its tower
    assert model.same_shaped_towers()


@pytest.mark.usefixtures("every_term_deep")
@pytest.mark.parametrize("name", list(CHAINED))
def test_chained_models_on_sequence_and_text_inputs(name):
    from sklearn_mtr.features import TabularEncoder

    X = pd.DataFrame(
        {
            "item": ["a", "b", "c", "a"],
            "age": [20.0, np.nan, 35.0, 41.0],
            "hist": [["a", "z"], None, [], ["b"]],
            "title": ["Red bus", None, "", "blue car"],
        }
    )
    enc = TabularEncoder(sequence_features={"hist": "item"}, text_features=["title"]).fit(X)
    torch.manual_seed(0)
    model = CHAINED_MODELS[name](enc.schema_, 2, **CHAINED[name])
    out = logits_of(model, enc.transform(X))
    assert out.shape == (4, 2) and torch.isfinite(out).all()
    out.sum().backward()
    assert model.embedding.bags.deep["text__title"].table.weight.grad.abs().sum() > 0
