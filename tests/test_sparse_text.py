"""Text columns as TF-IDF-weighted hashed uni- and bigrams, and scipy sparse X, end to end."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import sklearn_mtr.estimators as estimators_module
from sklearn_mtr import MMoEClassifier
from sklearn_mtr.persistence import load, save

TINY = {"embedding_dim": 4, "batch_size": 32, "random_state": 0}
WORDS = ["not", "good", "bad", "very", "film", "plot", "acting", "the", "was", "really"]


def bigram_texts(n, seed=0):
    """Texts whose label is the bigram "not good"; "not" and "good" also occur apart, so no
    unigram (and no mean of word vectors) separates the classes."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        words = list(rng.choice(WORDS, rng.integers(3, 7)))
        words = [w for w in words if w not in ("not", "good")]
        positive = i % 2 == 0
        if positive:
            words.insert(rng.integers(0, len(words) + 1), "not good")
        else:  # both words, never adjacent in that order
            words = ["good", *words, "not"]
        texts.append(" ".join(words))
        labels.append(float(positive))
    return texts, np.array(labels)


def text_frame(n=200, seed=0):
    texts, y = bigram_texts(n, seed)
    rng = np.random.default_rng(seed + 1)
    X = pd.DataFrame({"review": texts, "shop": rng.choice(["a", "b", "c"], n)})
    Y = np.column_stack([y, y * rng.integers(0, 2, n)]).astype(float)  # a funnel: stage 1 implies 0
    return X, Y


def sparse_problem(n=300, d=40, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.15, random_state=seed, format="csr") * 3.0
    dense = X.toarray()
    score = dense[:, 0] - dense[:, 1] + dense[:, 2]
    first = score > np.median(score)
    Y = np.column_stack([first, first & (dense[:, 3] + rng.normal(0, 0.3, n) > 0.2)]).astype(float)
    return X, Y


# ------------------------------------------------------------------------------ text


def test_a_label_set_by_a_bigram_is_learned_through_the_wide_path():
    X, Y = text_frame(300)
    X_test, Y_test = text_frame(200, seed=7)
    clf = MMoEClassifier(**TINY, n_experts=2, text_features=["review"], lr=1e-2, max_epochs=15).fit(X, Y)
    proba = clf.predict_proba(X_test)
    assert roc_auc_score(Y_test[:, 0], proba[:, 0]) > 0.97
    wide = clf.net_.module_.embedding.bags.wide["text__review"].table.weight
    assert wide.abs().sum() > 0  # trained from its zero initialisation
    with torch.no_grad():
        wide.zero_()
    assert np.abs(clf.predict_proba(X_test) - proba).max() > 1e-3


def test_rare_terms_reach_the_logits_through_the_wide_path_only():
    X, Y = text_frame(400)  # common words are in over 100 texts, most bigrams in fewer
    clf = MMoEClassifier(max_epochs=1, text_features=["review"], **TINY).fit(X, Y)
    text = clf.feature_encoder_.schema_.texts[0]
    bags = clf.net_.module_.embedding.bags
    assert 1 < text.deep_size < text.vocab_size
    assert bags.deep["text__review"].table.num_embeddings == text.deep_size
    rare = torch.tensor([[text.deep_size, text.vocab_size - 1]])
    batch = {"text__review": rare, "weight__review": torch.tensor([[0.6, 0.8]])}
    assert torch.count_nonzero(bags.field(batch, "text__review")) == 0
    with torch.no_grad():
        bags.wide["text__review"].table.weight[text.deep_size].fill_(1.0)
    assert torch.all(bags.add_to(torch.zeros(1, 2), batch) > 0)


def test_sparse_columns_of_few_training_rows_have_no_deep_vector():
    from sklearn_mtr.features._sparse import SparseColumns

    X = sp.csr_matrix(np.column_stack([np.ones(150), np.arange(150) % 50 == 0, np.zeros(150), np.ones(150)]))
    enc = SparseColumns().fit(X)  # columns stored in 150, 3, 0 and 150 rows
    assert enc.deep_size == 3 and enc.ids_.tolist() == [1, 3, 4, 2]
    ids, values = enc.transform(X[:1])
    assert ids.tolist() == [[1, 3, 2]] and values.tolist() == [[1.0, 1.0, 1.0]]


def test_empty_missing_and_unseen_texts_predict_finite_values():
    X, Y = text_frame(60)
    clf = MMoEClassifier(**TINY, n_experts=2, text_features=["review"], max_epochs=1).fit(X, Y)
    new = pd.DataFrame({"review": [None, "", "zebra quux", np.nan, "NOT GOOD!!"], "shop": ["a", "z", "b", None, "c"]})
    proba = clf.predict_proba(new)
    assert proba.shape == (5, 2) and np.isfinite(proba).all()
    # texts with no term seen in fit are all the empty text
    np.testing.assert_allclose(proba[1], clf.predict_proba(new.assign(shop="z").iloc[[2]])[0])


@pytest.mark.parametrize("name", sorted(c.__name__ for c in estimators_module.ESTIMATORS.values()))
def test_every_estimator_fits_text_and_sparse_x_with_the_wide_term(name):
    cls = getattr(estimators_module, name)
    X, Y = text_frame(64)
    clf = cls(**TINY, max_epochs=1, text_features=["review"]).fit(X, Y)
    assert clf.predict_proba(X).shape == (64, 2)
    assert "text__review" in clf.net_.module_.embedding.bags.wide
    Xs, Ys = sparse_problem(64)
    clf = cls(**TINY, max_epochs=1).fit(Xs, Ys)
    proba = clf.predict_proba(Xs)
    assert proba.shape == (64, 2) and np.isfinite(proba).all()
    with torch.no_grad():
        clf.net_.module_.embedding.bags.wide["sparse"].table.weight.add_(1.0)
    assert np.abs(clf.predict_proba(Xs) - proba).max() > 1e-3  # the wide term reaches the logits


# ------------------------------------------------------------------------------ sparse X


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_and_equivalent_dense_x_reach_the_same_quality(fmt):
    X, Y = sparse_problem(400)
    X_test, Y_test = sparse_problem(300, seed=3)
    params = {**TINY, "n_experts": 2, "max_epochs": 20, "lr": 1e-2}
    sparse_clf = MMoEClassifier(**params).fit(X.asformat(fmt), Y)
    dense_clf = MMoEClassifier(**params).fit(X.toarray(), Y)
    auc_sparse = roc_auc_score(Y_test[:, 0], sparse_clf.predict_proba(X_test.asformat(fmt))[:, 0])
    auc_dense = roc_auc_score(Y_test[:, 0], dense_clf.predict_proba(X_test.toarray())[:, 0])
    assert auc_sparse > 0.9 and abs(auc_sparse - auc_dense) < 0.05


def test_sparse_x_is_never_densified_in_training():
    X, Y = sparse_problem(100)
    clf = MMoEClassifier(**TINY, n_experts=2, max_epochs=1).fit(X, Y)
    batch = clf.feature_encoder_.transform(X)
    assert set(batch) == {"sparse__ids", "sparse__values"}
    assert batch["sparse__ids"].shape[1] == np.diff(X.indptr).max()  # the widest row, not 40 columns
    assert clf.feature_encoder_.schema_.sparse.n_columns == 40


def test_column_transformer_of_tfidf_and_one_hot_feeds_the_estimator():
    X, Y = text_frame(120)
    X = X.rename(columns={"review": "text", "shop": "c"})
    pipe = make_pipeline(
        ColumnTransformer([("txt", TfidfVectorizer(), "text"), ("cat", OneHotEncoder(handle_unknown="ignore"), ["c"])]),
        MMoEClassifier(**TINY, n_experts=2, max_epochs=2),
    )
    pipe.fit(X, Y)
    proba = pipe.predict_proba(X.assign(c="unseen"))
    assert proba.shape == (120, 2) and np.isfinite(proba).all()
    search = GridSearchCV(pipe, {"mmoeclassifier__lr": [1e-3, 1e-2]}, cv=2).fit(X, Y)
    assert np.isfinite(search.best_score_)


def test_sparse_x_continues_with_partial_fit():
    X, Y = sparse_problem(120)
    clf = MMoEClassifier(**TINY, n_experts=2)
    clf.partial_fit(X[:60], Y[:60]).partial_fit(X[60:], Y[60:])
    assert clf.n_iter_ == 2 and clf.predict_proba(X).shape == (120, 2)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_sparse_values_raise(bad):
    X, Y = sparse_problem(50)
    X = X.copy()
    X.data[3] = bad
    with pytest.raises(ValueError, match="sparse matrix holding (NaN|infinite)"):
        MMoEClassifier(**TINY, max_epochs=1).fit(X, Y)
    good, _ = sparse_problem(50)
    clf = MMoEClassifier(**TINY, max_epochs=1).fit(good, Y)
    with pytest.raises(ValueError, match="sparse matrix holding"):
        clf.predict_proba(X)


@pytest.mark.parametrize(
    "param, value",
    [
        ("categorical_features", [0]),
        ("categorical_features", [True] + [False] * 39),
        ("text_features", [0]),
        ("sequence_features", [1]),
    ],
)
def test_sparse_x_with_named_column_parameters_raises(param, value):
    X, Y = sparse_problem(50)
    with pytest.raises(ValueError, match=f"{param}=.*sparse"):
        MMoEClassifier(**TINY, max_epochs=1, **{param: value}).fit(X, Y)


def test_sparse_x_accepts_the_default_column_parameters():
    X, Y = sparse_problem(50)
    for value in ("from_dtype", None, [False] * 40, []):
        MMoEClassifier(**TINY, max_epochs=1, categorical_features=value).fit(X, Y)


def test_dense_and_sparse_x_do_not_mix_and_shapes_are_checked():
    X, Y = sparse_problem(50)
    clf = MMoEClassifier(**TINY, max_epochs=1).fit(X, Y)
    with pytest.raises(ValueError, match="dense matrix but the model was fitted on a sparse"):
        clf.predict_proba(X.toarray())
    with pytest.raises(ValueError, match="features"):
        clf.predict_proba(X[:, :10])
    dense = MMoEClassifier(**TINY, max_epochs=1).fit(X.toarray(), Y)
    with pytest.raises(ValueError, match="sparse matrix but the model was fitted on a dense"):
        dense.predict_proba(X)


def test_one_very_wide_row_is_refused_rather_than_padding_every_row():
    from sklearn_mtr.features import _sparse

    X, Y = sparse_problem(50)
    clf = MMoEClassifier(**TINY, max_epochs=1).fit(X, Y)
    wide = sp.vstack([sp.csr_matrix(np.ones((1, 40))), sp.csr_matrix((5000, 40))]).tocsr()
    old = _sparse._FREE_CELLS
    _sparse._FREE_CELLS = 1000
    try:
        with pytest.raises(ValueError, match="row 0 stores 40 values"):
            clf.predict_proba(wide)
    finally:
        _sparse._FREE_CELLS = old


# ------------------------------------------------------------------------------ save / export


@pytest.mark.parametrize("kind", ["text", "sparse"])
def test_safe_save_load_predicts_identically(kind, tmp_path):
    X, Y = text_frame(80) if kind == "text" else sparse_problem(80)
    clf = MMoEClassifier(**TINY, n_experts=2, max_epochs=2, text_features=["review"] if kind == "text" else None)
    clf.fit(X, Y)
    save(clf, tmp_path / "m.mtr")
    loaded = load(tmp_path / "m.mtr")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    loaded.partial_fit(X, Y)  # and continues


@pytest.mark.parametrize("kind", ["text", "sparse"])
def test_onnx_export_matches_predict_proba(kind, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from sklearn_mtr.export import encode_for_onnx, export_onnx

    X, Y = text_frame(80) if kind == "text" else sparse_problem(80)
    clf = MMoEClassifier(**TINY, n_experts=2, max_epochs=2, text_features=["review"] if kind == "text" else None)
    clf.fit(X, Y)
    names = export_onnx(clf, tmp_path / "m.onnx")  # traced on the schema's example
    assert ("weight__review" in names) if kind == "text" else names == ["sparse__ids", "sparse__values"]
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for rows in (slice(0, 3), slice(None)):
        Xr = X.iloc[rows] if kind == "text" else X[rows]
        _, proba = session.run(["logits", "proba"], encode_for_onnx(clf, Xr))
        np.testing.assert_allclose(proba, clf.predict_proba(Xr), rtol=0, atol=1e-5)
