"""Prediction under load: several threads at once, and many rows in bounded memory."""

from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import numpy as np
import pandas as pd
import pytest

import sklearn_mtr._prediction as base
from sklearn_mtr import MMoEClassifier, PLEClassifier
from sklearn_mtr.datasets import make_multitask_classification


@pytest.fixture(scope="module")
def data():
    X, Y = make_multitask_classification(n_samples=300, n_features=6, n_categorical=2, as_frame=True, random_state=0)
    X["history"] = [[f"i{j % 7}" for j in range(i % 5)] for i in range(len(X))]
    return X, Y


@pytest.mark.parametrize("cls", [MMoEClassifier, PLEClassifier])
def test_predict_proba_from_several_threads_matches_serial_predictions(cls, data):
    X, Y = data
    # batch norm and dropout make eval mode matter: every thread must see it
    clf = cls(embedding_dim=4, expert_hidden_sizes=(8,), batch_norm=True, dropout=0.2, max_epochs=1, random_state=0)
    clf.set_params(sequence_features=["history"]).fit(X, Y)
    parts = [X.iloc[i::7] for i in range(7)] * 4
    expected = [clf.predict_proba(part) for part in parts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(clf.predict_proba, parts))
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_predict_encodes_at_most_one_chunk_of_rows_at_a_time(data):
    X, Y = data
    clf = MMoEClassifier(embedding_dim=4, expert_hidden_sizes=(8,), max_epochs=1, random_state=0).fit(X.iloc[:, :6], Y)
    expected = clf.predict_proba(X.iloc[:, :6])
    sizes = []
    transform = clf.feature_encoder_.transform

    def recording(frame):
        sizes.append(len(frame))
        return transform(frame)

    with mock.patch.object(base, "_PREDICT_CHUNK", 64), mock.patch.object(clf.feature_encoder_, "transform", recording):
        got = clf.predict_proba(X.iloc[:, :6])
    assert sizes == [64, 64, 64, 64, 44]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)
    assert isinstance(got, np.ndarray) and got.shape == (len(X), 2)


def test_predict_on_a_frame_with_a_non_default_index(data):
    X, Y = data
    clf = MMoEClassifier(embedding_dim=4, expert_hidden_sizes=(8,), max_epochs=1, random_state=0).fit(X.iloc[:, :6], Y)
    shuffled = X.iloc[:, :6].set_index(pd.Index(np.arange(len(X))[::-1] * 10))
    with mock.patch.object(base, "_PREDICT_CHUNK", 50):
        np.testing.assert_allclose(clf.predict_proba(shuffled), clf.predict_proba(X.iloc[:, :6]), rtol=0, atol=1e-7)
