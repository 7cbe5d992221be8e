"""ONNX export: the graph predicts what predict_proba predicts."""

import numpy as np
import pandas as pd
import pytest

import sklearn_mtr.estimators as estimators_module
from sklearn_mtr import MMoEClassifier
from sklearn_mtr.datasets import make_funnel_classification
from sklearn_mtr.export import encode_for_onnx, export_onnx

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TINY = {"embedding_dim": 4, "max_epochs": 1, "batch_size": 64, "random_state": 0}


def _run(path, feed):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, proba = session.run(["logits", "proba"], feed)
    return logits, proba


# Data-dependent control flow (sparse MoE routing, request-level sorting) defeats tracing.
NOT_EXPORTABLE = {"GRecClassifier", "OneRankClassifier"}


@pytest.mark.parametrize("name", sorted(c.__name__ for c in estimators_module.ESTIMATORS.values()))
def test_every_estimator_exports_with_predictions_within_1e_5_or_says_why_not(name, tmp_path):
    X, Y = make_funnel_classification(
        n_samples=150, n_features=5, stage_rates=(0.5, 0.5), n_categorical=2, as_frame=True, random_state=0
    )
    clf = getattr(estimators_module, name)(**TINY).fit(X, Y)
    if name in NOT_EXPORTABLE:
        with pytest.raises(ValueError, match=f"network of {name} could not be exported to ONNX"):
            export_onnx(clf, tmp_path / "model.onnx", X.iloc[:4])
        return
    export_onnx(clf, tmp_path / "model.onnx", X.iloc[:4])
    _, proba = _run(tmp_path / "model.onnx", encode_for_onnx(clf, X))  # another batch size than traced
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=0, atol=1e-5)


def test_esmm_probabilities_near_one_survive_the_expm1_replacement(tmp_path):
    X, Y = make_funnel_classification(n_samples=150, n_features=5, stage_rates=(0.5, 0.5), random_state=0)
    clf = estimators_module.ESMMClassifier(**TINY).fit(X, Y)
    X_far = X * 40  # pushes the stage probabilities to within float32 epsilon of 0 and 1
    export_onnx(clf, tmp_path / "model.onnx")
    logits, proba = _run(tmp_path / "model.onnx", encode_for_onnx(clf, X_far))
    assert np.isfinite(logits).all()
    np.testing.assert_allclose(proba, clf.predict_proba(X_far), rtol=0, atol=1e-5)


def test_sequences_text_and_missing_values_export_with_dynamic_widths(tmp_path):
    rng = np.random.RandomState(0)
    n = 120
    items = ["a", "b", "c", "d"]
    X = pd.DataFrame(
        {
            "num": np.where(rng.rand(n) < 0.2, np.nan, rng.randn(n)),
            "item": pd.Series(rng.choice(items, n), dtype="str"),
            "hist": [list(rng.choice(items, rng.randint(0, 6))) for _ in range(n)],
            "title": [None if i % 5 == 0 else " ".join(["word"] * (i % 9)) for i in range(n)],
        }
    )
    Y = rng.randint(0, 2, (n, 3))
    clf = MMoEClassifier(
        **TINY, n_experts=2, sequence_features={"hist": "item"}, text_features=["title"], batch_norm=True, dropout=0.1
    ).fit(X, Y)
    names = export_onnx(clf, tmp_path / "model.onnx", opset=17)  # traced on the schema's example
    assert names == ["categorical", "len__hist", "numeric", "seq__hist", "text__title", "weight__title"]
    for rows in (slice(0, 3), slice(None)):  # sequences as wide as the widest cell of each batch
        feed = encode_for_onnx(clf, X.iloc[rows])
        logits, proba = _run(tmp_path / "model.onnx", feed)
        np.testing.assert_allclose(proba, clf.predict_proba(X.iloc[rows]), rtol=0, atol=1e-5)
        np.testing.assert_allclose(1 / (1 + np.exp(-logits)), proba, rtol=0, atol=1e-6)


def test_a_binary_estimator_exports_the_positive_class(tmp_path):
    X, Y = make_funnel_classification(n_samples=100, n_features=4, stage_rates=(0.5, 0.5), random_state=0)
    clf = MMoEClassifier(**TINY, n_experts=2).fit(X, np.where(Y[:, 0] == 1, "yes", "no"))
    export_onnx(clf, tmp_path / "model.onnx")
    _, proba = _run(tmp_path / "model.onnx", encode_for_onnx(clf, X))
    np.testing.assert_allclose(proba[:, 0], clf.predict_proba(X)[:, 1], rtol=0, atol=1e-5)


def test_export_needs_a_fitted_estimator_and_a_sane_opset(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        export_onnx(MMoEClassifier(), tmp_path / "model.onnx")
    X, Y = make_funnel_classification(n_samples=60, n_features=4, stage_rates=(0.5, 0.5), random_state=0)
    clf = MMoEClassifier(**TINY, n_experts=2).fit(X, Y)
    with pytest.raises(ValueError, match="opset"):
        export_onnx(clf, tmp_path / "model.onnx", opset=7)
