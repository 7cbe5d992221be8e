"""GPU behaviour; every test here skips cleanly on machines without CUDA (CI has none)."""

import pickle

import numpy as np
import pytest
import torch

from sklearn_mtr import MMoEClassifier, PLEClassifier
from sklearn_mtr.datasets import make_multitask_classification

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

TINY = {
    "expert_hidden_sizes": (16,),
    "tower_hidden_sizes": (8,),
    "embedding_dim": 4,
    "max_epochs": 2,
    "random_state": 0,
}


@pytest.fixture
def data():
    return make_multitask_classification(n_samples=2000, n_features=6, n_categorical=2, as_frame=True, random_state=0)


@pytest.mark.parametrize("cls", [MMoEClassifier, PLEClassifier])
def test_auto_device_trains_on_cuda_and_matches_cpu_closely(cls, data):
    X, Y = data
    gpu = cls(**TINY, device="auto").fit(X, Y)
    assert gpu.device_.startswith("cuda")
    assert next(gpu.net_.module_.parameters()).is_cuda
    cpu = cls(**TINY, device="cpu").fit(X, Y)
    # Same seed and data: kernels differ, so allow small numerical drift.
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), atol=5e-3)


def test_bf16_precision_trains_and_predicts(data):
    X, Y = data
    clf = MMoEClassifier(**TINY, device="cuda", precision="bf16").fit(X, Y)
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64 and np.isfinite(proba).all()
    assert clf.score(X, Y) > 0.5


def test_gpu_model_unpickles_on_a_cpu_only_process(data, monkeypatch):
    X, Y = data
    clf = MMoEClassifier(**TINY, device="cuda").fit(X, Y)
    expected = clf.predict_proba(X)
    blob = pickle.dumps(clf)
    # As on a CPU-only machine: skorch then maps every tensor to the CPU, with a warning.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(Warning):
        loaded = pickle.loads(blob)
    assert str(loaded.net_.device) == "cpu"
    assert not next(loaded.net_.module_.parameters()).is_cuda
    np.testing.assert_allclose(loaded.predict_proba(X), expected, atol=1e-5)


# -- every estimator, every method, the safe format (added with OneRank / GRec) ---------


def _fit_on(cls, device, **params):
    """A small fit of any public estimator; funnel models get nested labels, OneRank requests."""
    from sklearn_mtr.datasets import make_funnel_classification

    if cls.__name__ in ("ESMMClassifier", "AITMClassifier", "ESCM2Classifier"):
        X, Y = make_funnel_classification(n_samples=1500, n_features=6, n_categorical=2, as_frame=True, random_state=0)
    else:
        X, Y = make_multitask_classification(
            n_samples=1500, n_features=6, n_categorical=2, as_frame=True, random_state=0
        )
    fit_params = {}
    if cls.__name__ == "OneRankClassifier":
        fit_params["groups"] = np.arange(len(X)) // 12
    clf = cls(max_epochs=1, random_state=0, device=device, **params).fit(X, Y, **fit_params)
    return clf, X, Y, fit_params


def _public_estimators():
    from sklearn_mtr.estimators import ESTIMATORS

    return list(ESTIMATORS.values())


@pytest.mark.parametrize("cls", _public_estimators(), ids=lambda c: c.__name__)
def test_every_estimator_trains_on_cuda_in_fp32_and_bf16(cls):
    for precision in ("fp32", "bf16"):
        clf, X, _, fit_params = _fit_on(cls, "cuda", precision=precision)
        assert next(clf.net_.module_.parameters()).is_cuda
        kwargs = {"groups": fit_params["groups"]} if fit_params else {}
        proba = clf.predict_proba(X, **kwargs)
        assert np.isfinite(proba).all()


@pytest.mark.parametrize(
    "name",
    [
        "adam",
        "pub",
        "drgrad",
        "uw",
        "dwa",
        "gradnorm",
        "famo",
        "adatask",
        "mgda",
        "pcgrad",
        "cagrad",
        "imtl_g",
        "nash_mtl",
        "rlw",
        "graddrop",
        "gradvac",
        "config",
        "upgrad",
        "dualproj",
        "aligned_mtl",
        "db_mtl",
        "metabalance",
        "stch",
        "fairgrad",
        "excess_mtl",
        "gls",
        "moco",
        "sdmgrad",
        "modo",
    ],
)
def test_every_method_keeps_its_state_on_the_gpu(name):
    clf, X, _, _ = _fit_on(MMoEClassifier, "cuda", optimizer=name, expert_hidden_sizes=(16,), tower_hidden_sizes=(8,))
    state = getattr(clf.net_, "mto_state_", None)
    tensors = [] if state is None else list(state.parameters()) + list(state.buffers())
    assert all(t.is_cuda for t in tensors)
    assert np.isfinite(clf.predict_proba(X)).all()


def test_safe_format_written_on_gpu_loads_on_a_cpu_only_process(tmp_path, monkeypatch):
    from sklearn_mtr.persistence import load, save

    clf, X, _, _ = _fit_on(PLEClassifier, "cuda", expert_hidden_sizes=(16,), tower_hidden_sizes=(8,))
    expected = clf.predict_proba(X)
    save(clf, tmp_path / "model.mtr")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = load(tmp_path / "model.mtr")
    assert loaded.device_ == "cpu" and not next(loaded.net_.module_.parameters()).is_cuda
    np.testing.assert_allclose(loaded.predict_proba(X), expected, atol=1e-5)
