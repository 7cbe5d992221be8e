"""Numeric columns through piecewise-linear embeddings: bins, codes, and the estimator surface."""

import numpy as np
import pandas as pd
import pytest
import torch

from sklearn_mtr import MMoEClassifier, SharedBottomClassifier
from sklearn_mtr.features import TabularEncoder
from sklearn_mtr.features._bins import bin_edges
from sklearn_mtr.metrics import per_task_roc_auc
from sklearn_mtr.models._numeric import PiecewiseLinearEmbedding
from sklearn_mtr.persistence import load, save

TINY = {"embedding_dim": 4, "batch_size": 64, "random_state": 0, "max_epochs": 2}


# ---------------------------------------------------------------------------- bin edges
def test_a_zero_inflated_column_still_gets_fine_bins_over_its_non_zero_values():
    rng = np.random.default_rng(0)
    x = np.where(rng.random(20_000) < 0.9, 0.0, rng.lognormal(5, 2, 20_000))
    edges = bin_edges(x, 32)
    assert edges[0] == 0.0
    # plain quantiles would put 29 of 33 edges on the 0; here nearly all lie among the non-zero values
    assert (edges > 0).sum() >= 30
    # the value just above the point mass is an edge: nothing lies between it and the 0
    assert edges[1] == np.min(x[x > 0])


def test_a_point_mass_inside_the_range_gets_its_neighbours_as_edges():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=1000), np.full(500, 0.25)])
    edges = bin_edges(x, 16)
    uniq = np.unique(x)
    i = np.searchsorted(uniq, 0.25)
    assert {uniq[i - 1], uniq[i], uniq[i + 1]} <= set(edges)


def test_few_distinct_values_get_one_edge_each_and_nan_is_ignored():
    x = np.array([3.0, 1.0, np.nan, 2.0, 1.0, 7.0])
    np.testing.assert_array_equal(bin_edges(x, 8), [1.0, 2.0, 3.0, 7.0])
    assert bin_edges(np.array([np.nan, np.nan]), 8).size == 0
    np.testing.assert_array_equal(bin_edges(np.array([5.0, 5.0]), 8), [5.0])


def test_edges_are_data_values_and_strictly_increasing():
    x = np.random.default_rng(2).exponential(size=5000).round(2)
    edges = bin_edges(x, 32)
    assert np.all(np.diff(edges) > 0)
    assert np.isin(edges, x).all()


# ---------------------------------------------------------------------------- the codes
def test_codes_are_a_thermometer_on_the_edges_clipped_outside_and_linear_inside():
    emb = PiecewiseLinearEmbedding([(0.0, 1.0, 3.0)], n_flags=0, dim=2)
    x = torch.tensor([[-5.0], [0.0], [0.5], [1.0], [2.0], [3.0], [9.0]])
    expected = torch.tensor([[0, 0], [0, 0], [0.5, 0], [1, 0], [1, 0.5], [1, 1], [1, 1]], dtype=torch.float32)
    torch.testing.assert_close(emb.codes(x)[:, 0], expected)


def test_columns_with_different_bin_counts_and_flags_have_one_vector_each():
    emb = PiecewiseLinearEmbedding([(0.0, 1.0), (0.0, 1.0, 2.0, 3.0), (4.0,)], n_flags=1, dim=3)
    out = emb(torch.tensor([[0.5, 2.5, 4.0, 1.0], [0.5, 2.5, 9.0, 0.0]]))
    assert out.shape == (2, 4, 3)
    # a constant column (one edge) has no bins: its vector is the bias whatever the value
    torch.testing.assert_close(out[0, 2], emb.bias[2].detach())
    torch.testing.assert_close(out[1, 2], emb.bias[2].detach())
    # a missing flag is flag * w + b
    torch.testing.assert_close(out[0, 3], (emb.flag_weight[0] + emb.flag_bias[0]).detach())
    torch.testing.assert_close(out[1, 3], emb.flag_bias[0].detach())
    # the padded bins of the short column never contribute
    assert emb.codes(torch.tensor([[9.0, 0, 0, 0]]))[0, 0].tolist() == [1.0, 0.0, 0.0]


# ---------------------------------------------------------------------------- the encoder
def test_the_schema_holds_the_edges_in_standardised_units():
    X = pd.DataFrame({"a": [0.0, 0.0, 2.0, 4.0, np.nan], "c": pd.Categorical(list("xyxyx"))})
    enc = TabularEncoder(numeric_encoding="piecewise", numeric_bins=8).fit(X)
    np.testing.assert_array_equal(enc.bin_edges_[0], [0.0, 2.0, 4.0])
    expected = ((np.array([0.0, 2.0, 4.0]) - enc.mean_[0]) / enc.scale_[0]).astype(np.float32)
    np.testing.assert_array_equal(np.array(enc.schema_.numeric_bins[0], dtype=np.float32), expected)
    # a value on an edge is encoded onto exactly that edge
    values = enc.transform(X)["numeric"][:, 0].numpy()
    assert values[2] == np.float32(enc.schema_.numeric_bins[0][1])
    assert TabularEncoder(numeric_encoding="standard").fit(X).schema_.numeric_bins is None


def test_declared_edges_are_used_as_given_and_checked():
    X = pd.DataFrame({"a": np.arange(100.0), "b": np.arange(100.0) % 7})
    enc = TabularEncoder(numeric_encoding="piecewise", numeric_bins={"a": [0, 10, 50, 99]}).fit(X)
    np.testing.assert_array_equal(enc.bin_edges_[0], [0, 10, 50, 99])
    assert len(enc.bin_edges_[1]) == 7  # not declared: fitted
    with pytest.raises(ValueError, match=r"numeric_bins\['a'\] must be finite and strictly increasing"):
        TabularEncoder(numeric_encoding="piecewise", numeric_bins={"a": [0, 5, 5]}).fit(X)
    with pytest.raises(ValueError, match=r"numeric_bins names \['zzz'\]"):
        TabularEncoder(numeric_encoding="piecewise", numeric_bins={"zzz": [0, 1]}).fit(X)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"numeric_encoding": "quantile"}, "numeric_encoding must be one of"),
        ({"numeric_bins": 1}, "numeric_bins must be an integer in"),
        ({"numeric_bins": 2.5}, "numeric_bins must be an integer in"),
        ({"numeric_bins": True}, "numeric_bins must be an integer in"),
    ],
)
def test_bad_numeric_encoding_parameters_raise_value_errors_naming_them(params, match):
    X = pd.DataFrame({"a": np.arange(20.0)})
    with pytest.raises(ValueError, match=match):
        MMoEClassifier(**TINY, **params).fit(X, np.arange(20) % 2)


# ---------------------------------------------------------------------------- estimators
def _point_mass_problem(n, seed):
    """The label is whether a zero-inflated amount is exactly 0: a threshold right at the point
    mass, invisible to a standardised number dominated by the tail."""
    rng = np.random.default_rng(seed)
    amount = np.where(rng.random(n) < 0.5, 0.0, rng.lognormal(0, 3, n))
    noise = rng.normal(size=n)
    y = ((amount > 0) ^ (rng.random(n) < 0.05)).astype(float)
    X = pd.DataFrame({"amount": amount, "noise": noise})
    return X, pd.DataFrame({"a": y, "b": 1.0 - y})


def test_piecewise_embeddings_find_the_point_mass_threshold_a_standardised_number_misses():
    X, Y = _point_mass_problem(3000, 0)
    X_test, Y_test = _point_mass_problem(2000, 1)
    auc = {}
    for encoding in ("piecewise", "standard"):
        clf = SharedBottomClassifier(numeric_encoding=encoding, **TINY).fit(X, Y)
        auc[encoding] = per_task_roc_auc(Y_test.to_numpy(), clf.predict_proba(X_test))[0]
    assert auc["piecewise"] > 0.93  # the Bayes AUC is 0.95
    assert auc["piecewise"] > auc["standard"] + 0.02


def test_nan_and_values_beyond_the_training_range_predict_finite_probabilities():
    X, Y = _point_mass_problem(400, 0)
    X.loc[::7, "amount"] = np.nan
    clf = MMoEClassifier(**TINY).fit(X, Y)
    X_new = pd.DataFrame({"amount": [np.nan, -1e9, 1e12, 0.0], "noise": [0.0, 1e6, -1e6, 0.0]})
    proba = clf.predict_proba(X_new)
    assert np.isfinite(proba).all()
    # clipped to the training range: far beyond the largest amount reads as the largest amount
    far = X_new.assign(amount=[np.nanmax(X["amount"])] * 4)
    np.testing.assert_allclose(clf.predict_proba(X_new.iloc[[2]]), clf.predict_proba(far.iloc[[2]]), atol=1e-6)


def test_partial_fit_keeps_the_bins_of_the_first_chunk():
    X, Y = _point_mass_problem(600, 0)
    clf = MMoEClassifier(**TINY).partial_fit(X.iloc[:300], Y.iloc[:300])
    bins = clf.feature_encoder_.schema_.numeric_bins
    clf.partial_fit(X.iloc[300:] * 10, Y.iloc[300:])
    assert clf.feature_encoder_.schema_.numeric_bins == bins


def test_declared_bins_and_the_safe_format_round_trip_with_identical_predictions(tmp_path):
    X, Y = _point_mass_problem(400, 0)
    clf = MMoEClassifier(numeric_bins={"amount": [0.0, 0.5, 1.0, 10.0, 1000.0]}, **TINY).fit(X, Y)
    save(clf, tmp_path / "m.mtr")
    loaded = load(tmp_path / "m.mtr")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert loaded.feature_encoder_.schema_.numeric_bins == clf.feature_encoder_.schema_.numeric_bins


def test_streaming_with_declared_bins_uses_them_whatever_the_first_chunk_holds():
    from sklearn_mtr.streaming import fit_streaming

    X, Y = _point_mass_problem(600, 0)
    frame = X.assign(a=Y["a"], b=Y["b"])
    edges = [0.0, 0.1, 1.0, 10.0, 100.0]

    def chunks():
        yield frame.iloc[:300].assign(amount=0.0)  # a first chunk with no spread at all
        yield frame.iloc[300:]

    clf = fit_streaming(MMoEClassifier(numeric_bins={"amount": edges}, **TINY), chunks, ["a", "b"])
    np.testing.assert_array_equal(clf.feature_encoder_.bin_edges_[0], edges)
    assert len(clf.feature_encoder_.schema_.numeric_bins[0]) == len(edges)


def test_the_onnx_graph_computes_the_codes_with_nan_and_out_of_range_values(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from sklearn_mtr.export import encode_for_onnx, export_onnx

    X, Y = _point_mass_problem(400, 0)
    X.loc[::9, "amount"] = np.nan
    clf = MMoEClassifier(**TINY).fit(X, Y)
    X_new = pd.concat([X.iloc[:50], pd.DataFrame({"amount": [-5.0, 1e9, np.nan], "noise": [0.0, 9.0, -9.0]})])
    export_onnx(clf, tmp_path / "m.onnx", X.iloc[:4])
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    _, proba = session.run(["logits", "proba"], encode_for_onnx(clf, X_new))
    np.testing.assert_allclose(proba, clf.predict_proba(X_new), rtol=0, atol=1e-5)
