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
