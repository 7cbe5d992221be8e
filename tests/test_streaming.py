"""Streaming fit: chunks through partial_fit, Parquet via pyarrow, vocabularies fixed up front."""

import numpy as np
import pandas as pd
import pytest

from sklearn_mtr import MMoEClassifier
from sklearn_mtr.streaming import fit_streaming, iter_parquet, scan_categories

CITIES = [f"c{i}" for i in range(12)]


def _frame(n, seed):
    rng = np.random.default_rng(seed)
    city = rng.choice(CITIES, size=n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    city_effect = np.array([int(c[1:]) for c in city]) / len(CITIES) - 0.5
    click = (x1 + city_effect + 0.5 * rng.normal(size=n) > 0).astype(float)
    buy = (click * (x2 + city_effect + 0.5 * rng.normal(size=n) > 0.3)).astype(float)
    return pd.DataFrame({"x1": x1, "x2": x2, "city": city, "click": click, "buy": buy})


def _clf(**kw):
    params = {"n_experts": 2, "expert_hidden_sizes": (16,), "tower_hidden_sizes": (8,), "embedding_dim": 4}
    params.update(batch_size=128, lr=5e-3, max_epochs=3, random_state=0)
    params.update(kw)
    return MMoEClassifier(**params)


def test_streaming_matches_in_memory_quality(tmp_path):
    pytest.importorskip("pyarrow")
    train, test = _frame(8000, 0), _frame(4000, 1)
    for i, part in enumerate(np.array_split(np.arange(len(train)), 4)):
        train.iloc[part].to_parquet(tmp_path / f"part{i}.parquet")
    dtypes = scan_categories(tmp_path, ["city"])
    assert list(dtypes["city"].categories) == sorted(CITIES)
    features = ["x1", "x2", "city"]

    memory = _clf().fit(train[features].astype({"city": dtypes["city"]}), train[["click", "buy"]])
    streamed = fit_streaming(
        _clf(), tmp_path, ["click", "buy"], features=features, epochs=3, batch_rows=1000, dtypes=dtypes
    )
    assert streamed.n_iter_ == 3 * 8  # one partial_fit epoch per chunk, 8 chunks of 1000 rows
    X_test, Y_test = test[features].astype({"city": dtypes["city"]}), test[["click", "buy"]]
    auc_memory, auc_streamed = memory.score(X_test, Y_test), streamed.score(X_test, Y_test)
    assert auc_memory > 0.75
    assert abs(auc_memory - auc_streamed) < 0.02, (auc_memory, auc_streamed)
    # the vocabulary is the declared one, not only what the first chunk held
    assert list(streamed.feature_encoder_.vocabularies_["city"].index_) == sorted(CITIES)


def test_declared_dtype_fixes_vocabulary_from_first_chunk():
    first = _frame(300, 2)
    first = first[first.city != "c11"]  # c11 only arrives later
    later = _frame(300, 3)
    dtype = pd.CategoricalDtype(CITIES)
    clf = fit_streaming(_clf(max_epochs=1), lambda: [first, later], ["click", "buy"], dtypes={"city": dtype})
    assert "c11" in list(clf.feature_encoder_.vocabularies_["city"].index_)
    with pytest.warns(UserWarning, match="no CategoricalDtype"):
        undeclared = fit_streaming(_clf(), lambda: [first, later], ["click", "buy"])
    assert "c11" not in list(undeclared.feature_encoder_.vocabularies_["city"].index_)


def test_callable_source_is_called_once_per_epoch_and_binary_target():
    calls = []

    def source():
        calls.append(1)
        return iter([_frame(200, 4), _frame(200, 5)])

    clf = fit_streaming(_clf(), source, "click", features=["x1", "x2"], epochs=2)
    assert len(calls) == 2 and clf.binary_ and clf.n_iter_ == 4
    assert clf.predict_proba(_frame(10, 6)[["x1", "x2"]]).shape == (10, 2)


def test_streaming_bad_input(tmp_path):
    frame = _frame(50, 7)
    with pytest.raises(ValueError, match="epochs"):
        fit_streaming(_clf(), lambda: [frame], ["click"], epochs=0)
    with pytest.raises(ValueError, match="lacks the columns"):
        fit_streaming(_clf(), lambda: [frame], ["nope"], features=["x1"])
    with pytest.raises(ValueError, match="no rows"):
        fit_streaming(_clf(), lambda: [frame.iloc[:0]], ["click"], features=["x1"])
    with pytest.raises(TypeError, match="iterable of DataFrames"):
        fit_streaming(_clf(), lambda: frame, ["click"])
    with pytest.raises(TypeError, match="expected DataFrames"):
        fit_streaming(_clf(), lambda: [frame.to_numpy()], ["click"])
    with pytest.raises(ValueError, match="does not exist"):
        fit_streaming(_clf(), tmp_path / "missing.parquet", ["click"])
    with pytest.raises(ValueError, match="batch_rows"):
        next(iter_parquet(tmp_path, batch_rows=0))


def test_streaming_rejects_a_label_among_the_features_and_a_one_shot_source():
    frame = _frame(50, 7)
    # the label as an input would be trained on (the CLI refuses the same clash)
    with pytest.raises(ValueError, match=r"\['click'\] are given both as features and as targets"):
        fit_streaming(_clf(), lambda: [frame], ["click", "buy"], features=["x1", "click"])
    with pytest.raises(ValueError, match=r"\['w'\] are given both"):
        fit_streaming(_clf(), lambda: [frame.assign(w=1.0)], ["click"], features=["x1", "w"], sample_weight="w")
    # a generator is exhausted after one epoch: ask for a function instead of failing on a chunk
    with pytest.raises(TypeError, match="read once only; pass a function"):
        fit_streaming(_clf(), (c for c in [frame]), ["click"], epochs=2)
    # scan_categories reads Parquet only: a function gets a TypeError saying so
    with pytest.raises(TypeError, match="must be a Parquet file.*got function"):
        scan_categories(lambda: [frame], ["city"])
