"""Saving and loading a Pipeline that ends in an estimator of this package (format version 3):
the estimator in the safe format's own members, the scikit-learn steps in ``pipeline.skops``,
read by skops behind this package's own checks and fixed list of trusted types."""

import hashlib
import importlib.util
import io
import json
import os
import pickle
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from capped_load import load_each_under_memory_cap
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import KNNImputer, SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from sklearn_mtr import MMoEClassifier, SharedBottomClassifier, persistence
from sklearn_mtr.datasets import make_multitask_classification
from sklearn_mtr.persistence import FORMAT_VERSION, PIPELINE_FORMAT_VERSION, load, save

needs_skops = pytest.mark.skipif(importlib.util.find_spec("skops") is None, reason="pip install skops")
TINY = {"embedding_dim": 4, "max_epochs": 1, "batch_size": 64, "random_state": 0, "n_threads": 1}
PAYLOAD = "import pathlib; pathlib.Path('PWNED').write_text('x')"


@pytest.fixture(autouse=True)
def no_unpickling(monkeypatch):
    """Nothing in these tests may unpickle: a model file reaching pickle fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model file reached an unpickler")

    for owner, name in [(torch, "load"), (pickle, "load"), (pickle, "loads")]:
        monkeypatch.setattr(owner, name, refuse)


def _tabular(n=120):
    X, Y = make_multitask_classification(n_samples=n, n_tasks=2, n_categorical=2, as_frame=True, random_state=0)
    cat = [c for c in X.columns if c.startswith("cat")]
    return X, Y, cat, [c for c in X.columns if c not in cat]


@pytest.fixture(scope="module")
def tabular_pipeline():
    X, Y, cat, num = _tabular()
    pre = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), cat), ("num", StandardScaler(), num)])
    return Pipeline([("pre", pre), ("clf", MMoEClassifier(**TINY))]).fit(X, Y), X


@pytest.fixture
def saved(tabular_pipeline, tmp_path):
    pipe, X = tabular_pipeline
    path = tmp_path / "pipe.mtr"
    if importlib.util.find_spec("skops") is not None:
        save(pipe, path)
    return path, pipe, X


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write(path, members, deflate=("format.json", "config.json", "pipeline.json")):
    """Write ``members`` as a model file with checksums that match them."""
    header = json.loads(members["format.json"])
    header["sha256"] = {n: hashlib.sha256(d).hexdigest() for n, d in members.items() if n != "format.json"}
    members = {**members, "format.json": json.dumps(header).encode()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED)


def _skops_zip(files, compress=()):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if name in compress else zipfile.ZIP_STORED)
    return buffer.getvalue()


def _edit_skops(path, edit):
    """Rewrite pipeline.skops of the file at ``path``: ``edit(schema, files)`` changes its
    parsed schema.json and its other files in place."""
    members = _members(path)
    with zipfile.ZipFile(io.BytesIO(members["pipeline.skops"])) as inner:
        files = {name: inner.read(name) for name in inner.namelist()}
    schema = json.loads(files.pop("schema.json"))
    edit(schema, files)
    members["pipeline.skops"] = _skops_zip({"schema.json": json.dumps(schema).encode(), **files})
    _write(path, members)


def _json_node(value):
    return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode", "content": json.dumps(value)}


# ------------------------------------------------------------------------------------ round trips


@needs_skops
def test_a_column_transformer_pipeline_round_trips_with_identical_predictions(saved):
    path, pipe, X = saved
    loaded = load(path)
    assert type(loaded) is Pipeline and [n for n, _ in loaded.steps] == ["pre", "clf"]
    assert type(loaded["clf"]) is MMoEClassifier
    assert [type(t).__name__ for _, t, _ in loaded["pre"].transformers_] == ["OneHotEncoder", "StandardScaler"]
    np.testing.assert_array_equal(loaded.predict_proba(X), pipe.predict_proba(X))
    unseen = X.head(5).assign(cat0="never seen")
    np.testing.assert_array_equal(loaded.predict_proba(unseen), pipe.predict_proba(unseen))
    assert json.loads(_members(path)["format.json"])["format_version"] == PIPELINE_FORMAT_VERSION


@needs_skops
def test_a_tfidf_text_pipeline_round_trips_with_identical_predictions(tmp_path):
    rng = np.random.default_rng(0)
    words = np.array(["not", "good", "bad", "very", "film", "plot", "acting"])
    X = pd.DataFrame(
        {
            "review": [" ".join(rng.choice(words, rng.integers(2, 6))) for _ in range(120)],
            "shop": rng.choice(["a", "b", "c"], 120),
        }
    )
    # words that are skops' own keys, in the vocabulary (a dict keyed by word): still data
    X.loc[0, "review"] = "__class__ __module__ __loader__ content good"
    Y = np.column_stack([X["review"].str.contains("good"), rng.integers(0, 2, 120)]).astype(float)
    pre = ColumnTransformer(
        [("text", TfidfVectorizer(ngram_range=(1, 2)), "review"), ("shop", OneHotEncoder(), ["shop"])]
    )
    pipe = make_pipeline(pre, FunctionTransformer(np.log1p, accept_sparse=True), SharedBottomClassifier(**TINY))
    pipe.fit(X, Y)
    save(pipe, tmp_path / "text.mtr")
    loaded = load(tmp_path / "text.mtr")
    vocabulary = loaded[0].transformers_[0][1].vocabulary_
    assert vocabulary == pipe[0].transformers_[0][1].vocabulary_ and "__class__" in vocabulary
    np.testing.assert_array_equal(loaded.predict_proba(X), pipe.predict_proba(X))


@needs_skops
def test_a_pipeline_of_the_estimator_alone_and_an_unfitted_pipeline_round_trip(tmp_path, tabular_pipeline):
    _, X = tabular_pipeline
    X, Y, _cat, num = _tabular()
    alone = Pipeline([("clf", SharedBottomClassifier(**TINY))]).fit(X, Y)
    save(alone, tmp_path / "alone.mtr")
    assert "pipeline.skops" not in _members(tmp_path / "alone.mtr")  # nothing for skops to store
    np.testing.assert_array_equal(load(tmp_path / "alone.mtr").predict_proba(X), alone.predict_proba(X))
    unfitted = make_pipeline(SimpleImputer(), "passthrough", SharedBottomClassifier(**TINY))
    save(unfitted, tmp_path / "unfitted.mtr")
    loaded = load(tmp_path / "unfitted.mtr")
    assert loaded.steps[1] == ("passthrough", "passthrough")
    assert not loaded[-1].__sklearn_is_fitted__()
    loaded.fit(X[num], Y)  # and it trains


@needs_skops
def test_every_trusted_transformer_round_trips_with_identical_output(tmp_path):
    """Each class of the list (nested, as users build them) saves and transforms as before: the
    list is complete for what these objects hold (dtypes, scalar types, slices, functions)."""
    from sklearn.decomposition import PCA, TruncatedSVD
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer, TfidfTransformer
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.pipeline import FeatureUnion
    from sklearn.preprocessing import (
        Binarizer,
        KBinsDiscretizer,
        MaxAbsScaler,
        MinMaxScaler,
        Normalizer,
        OrdinalEncoder,
        PolynomialFeatures,
        PowerTransformer,
        QuantileTransformer,
        RobustScaler,
        TargetEncoder,
    )

    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "a": np.where(rng.random(60) < 0.1, np.nan, rng.normal(size=60)),
            "b": rng.choice(["x", "y", "z", None], 60),
            "t": rng.choice(["hello world", "foo bar baz", "good plot"], 60),
            "c": rng.integers(0, 5, 60),
        }
    )
    Y = np.column_stack([rng.integers(0, 2, 60), rng.integers(0, 2, 60)]).astype(float)
    c = ["c"]
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(add_indicator=True), StandardScaler()), ["a"]),
            ("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=3), ["b"]),
            ("ord", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["b"]),
            ("te", TargetEncoder(), ["b"]),
            ("txt", TfidfVectorizer(), "t"),
            ("hash", HashingVectorizer(n_features=8), "t"),
            ("svd", make_pipeline(CountVectorizer(), TfidfTransformer(), TruncatedSVD(2, random_state=0)), "t"),
            ("q", QuantileTransformer(n_quantiles=10), c),
            ("p", PowerTransformer(), c),
            ("k", KBinsDiscretizer(n_bins=3, encode="ordinal"), c),
            ("log", FunctionTransformer(np.log1p, feature_names_out="one-to-one"), c),
            ("scalers", make_pipeline(MinMaxScaler(), RobustScaler(), MaxAbsScaler(), Normalizer()), c),
            ("poly", PolynomialFeatures(2), c),
            ("union", FeatureUnion([("pca", PCA(1)), ("vt", VarianceThreshold()), ("bin", Binarizer())]), c),
        ],
        sparse_threshold=0,
    )
    pre.fit(X, Y[:, 0])  # TargetEncoder takes one target: the steps are fitted apart, then joined
    pipe = make_pipeline(pre, SharedBottomClassifier(**TINY).fit(pre.transform(X), Y))
    save(pipe, tmp_path / "all.mtr")
    loaded = load(tmp_path / "all.mtr")
    np.testing.assert_array_equal(loaded[0].transform(X), pipe[0].transform(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), pipe.predict_proba(X))


def test_a_bare_estimator_is_still_format_2_and_needs_no_skops(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "skops", None)  # import skops now raises ImportError
    monkeypatch.setitem(sys.modules, "skops.io", None)
    X, Y, _, _ = _tabular()
    clf = SharedBottomClassifier(**TINY).fit(X, Y)
    save(clf, tmp_path / "m.mtr")
    members = _members(tmp_path / "m.mtr")
    assert sorted(members) == ["config.json", "format.json", "weights.safetensors"]
    assert json.loads(members["format.json"])["format_version"] == FORMAT_VERSION == 2
    np.testing.assert_array_equal(load(tmp_path / "m.mtr").predict_proba(X), clf.predict_proba(X))


def test_without_skops_a_pipeline_says_which_extra_to_install(tmp_path, monkeypatch, tabular_pipeline):
    pipe, _ = tabular_pipeline
    if importlib.util.find_spec("skops") is not None:
        save(pipe, tmp_path / "pipe.mtr")
    monkeypatch.setitem(sys.modules, "skops", None)
    monkeypatch.setitem(sys.modules, "skops.io", None)
    with pytest.raises(ImportError, match=r"pip install sklearn-mtr\[skops\]"):
        save(pipe, tmp_path / "other.mtr")
    assert not (tmp_path / "other.mtr").exists()
    if (tmp_path / "pipe.mtr").exists():
        with pytest.raises(ImportError, match=r"pip install sklearn-mtr\[skops\]"):
            load(tmp_path / "pipe.mtr")


@needs_skops
def test_memory_is_dropped_with_a_warning(tmp_path, tabular_pipeline):
    pipe, X = tabular_pipeline
    cached = Pipeline(pipe.steps, memory=str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match="memory is not saved"):
        save(cached, tmp_path / "m.mtr")
    loaded = load(tmp_path / "m.mtr")
    assert loaded.memory is None
    np.testing.assert_array_equal(loaded.predict_proba(X), pipe.predict_proba(X))


# ------------------------------------------------------------------------------------ refusals on save


@needs_skops
@pytest.mark.parametrize(
    "step, named",
    [
        (KNNImputer(), "KNNImputer"),  # scikit-learn type that skops trusts by default, not on our list
        (FunctionTransformer(np.positive), "numpy.positive"),
        (FunctionTransformer(lambda x: x), "<lambda>"),
    ],
)
def test_a_step_type_outside_the_allow_list_is_refused_naming_it(step, named, tmp_path):
    X, Y, _, num = _tabular()
    pipe = make_pipeline(step, SharedBottomClassifier(**TINY)).fit(X[num], Y)
    with pytest.raises(ValueError, match=f"{named}.*joblib"):
        save(pipe, tmp_path / "m.mtr")
    assert not (tmp_path / "m.mtr").exists()


@needs_skops
def test_the_last_step_must_be_an_estimator_of_this_package(tmp_path):
    pipe = make_pipeline(StandardScaler(), LogisticRegression())
    with pytest.raises(ValueError, match="last step 'logisticregression' is a sklearn.linear_model"):
        save(pipe, tmp_path / "m.mtr")


@needs_skops
def test_a_step_not_fitted_before_a_fitted_estimator_is_refused(tmp_path, tabular_pipeline):
    pipe, _ = tabular_pipeline
    with pytest.raises(ValueError, match="step 'scale' is not fitted"):
        save(Pipeline([("scale", StandardScaler()), *pipe.steps]), tmp_path / "m.mtr")


# ------------------------------------------------------------------------------------ crafted files

EVIL = {
    # each would run code or build an object outside the list, were the types not checked first
    "exec": {
        "__class__": "exec",
        "__module__": "builtins",
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [_json_node(PAYLOAD)],
        },
    },
    "eval": {"__class__": "eval", "__module__": "builtins", "__loader__": "FunctionNode"},
    "os.system": {"__class__": "system", "__module__": "os", "__loader__": "FunctionNode"},
    # skops trusts every scikit-learn estimator by default; this package does not
    "LogisticRegression": {
        "__class__": "LogisticRegression",
        "__module__": "sklearn.linear_model._logistic",
        "__loader__": "ObjectNode",
        "content": {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode", "content": {}},
    },
}


@needs_skops
@pytest.mark.parametrize("evil", list(EVIL))
def test_a_crafted_member_naming_an_untrusted_type_is_refused_and_runs_nothing(evil, saved, monkeypatch):
    path, _, _ = saved
    monkeypatch.chdir(path.parent)

    def plant(schema, files):
        schema["content"][0] = EVIL[evil]

    _edit_skops(path, plant)
    # refused by this package's own check, before skops reads anything
    import skops.io

    monkeypatch.setattr(skops.io, "loads", lambda *a, **k: pytest.fail("skops read an untrusted file"))
    with pytest.raises(ValueError, match=f"names .*{evil.split('.')[-1]}.*does not load"):
        load(path)
    assert not (path.parent / "PWNED").exists()


@needs_skops
def test_a_member_of_an_older_skops_protocol_is_refused(saved, monkeypatch):
    """Protocol 0 read a function's name from its content, not from the names checked: a node
    that names numpy.log1p there while its content says os.system is refused by its protocol."""
    path, _, _ = saved
    monkeypatch.chdir(path.parent)

    def old_protocol(schema, files):
        schema["protocol"] = 0
        schema["content"][0] = {
            "__class__": "log1p",
            "__module__": "numpy",
            "__loader__": "FunctionNode",
            "content": {"module_path": "os", "function": "system"},
        }

    _edit_skops(path, old_protocol)
    with pytest.raises(ValueError, match="skops protocol 0"):
        load(path)


@needs_skops
def test_the_payload_of_the_crafted_file_would_run_if_skops_trusted_it(tmp_path, monkeypatch):
    """The check that the crafted files above are refused means something: skops, told to trust
    ``builtins.exec``, runs the payload."""
    import skops.io

    monkeypatch.chdir(tmp_path)
    data = _skops_zip({"schema.json": json.dumps({**EVIL["exec"], "protocol": 2}).encode()})
    skops.io.loads(data, trusted=["builtins.exec"])
    assert (tmp_path / "PWNED").exists()


@needs_skops
@pytest.mark.parametrize(
    "layout, match",
    [
        ({"steps": ["pre", "pre"]}, "not unique"),
        ({"steps": ["pre", "a__b"]}, "'a__b' is not allowed"),
        ({"steps": ["clf"]}, "present for a pipeline of one step"),
        ({"steps": ["pre", "x", "clf"]}, "does not hold the 2 steps"),
        ({"verbose": "yes"}, "not a bool"),
        ({"memory": "/tmp/cache"}, "does not hold exactly"),
    ],
)
def test_crafted_pipeline_layouts_are_refused(layout, match, saved):
    path, _, _ = saved
    members = _members(path)
    members["pipeline.json"] = json.dumps({**json.loads(members["pipeline.json"]), **layout}).encode()
    _write(path, members)
    with pytest.raises(ValueError, match=match):
        load(path)


@needs_skops
def test_a_step_stored_unfitted_before_a_fitted_estimator_is_refused(saved):
    path, _, _ = saved

    def unfit(schema, files):
        attributes = schema["content"][0]["content"]["content"]  # the ColumnTransformer's
        for name in [n for n in attributes if n.endswith("_") and not n.startswith("_")]:
            del attributes[name]
        schema["content"][0]["content"]["key_types"]["content"] = [
            {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"}
        ] * len(attributes)

    _edit_skops(path, unfit)
    with pytest.raises(ValueError, match="step 'pre' is not a fitted transformer"):
        load(path)


# ------------------------------------------------------------------------------------ memory bombs


@needs_skops
def test_a_compression_bomb_as_the_pipeline_member_is_refused_by_its_ratio(saved):
    path, _, _ = saved
    members = _members(path)
    members["pipeline.skops"] = b"\0" * (64 << 20)  # deflates about 1000 times
    _write(path, members, deflate=("format.json", "config.json", "pipeline.json", "pipeline.skops"))
    with pytest.raises(ValueError, match="pipeline.skops declares .* compression bomb"):
        load(path)


@needs_skops
def test_the_pipeline_member_above_its_cap_is_refused_before_it_is_read(saved, monkeypatch):
    path, _, _ = saved
    monkeypatch.setattr(persistence, "MAX_PIPELINE_BYTES", 1000)
    with pytest.raises(ValueError, match="pipeline.skops declares .*MAX_PIPELINE_BYTES"):
        load(path)


@needs_skops
def test_a_compressed_member_inside_the_skops_zip_is_refused(saved):
    path, _, _ = saved
    members = _members(path)
    with zipfile.ZipFile(io.BytesIO(members["pipeline.skops"])) as inner:
        files = {name: inner.read(name) for name in inner.namelist()}
    files["bomb.npy"] = b"\0" * (16 << 20)
    members["pipeline.skops"] = _skops_zip(files, compress=("bomb.npy",))
    _write(path, members)
    with pytest.raises(ValueError, match="'bomb.npy' compressed"):
        load(path)


@needs_skops
@pytest.mark.parametrize("shape, dtype", [((1 << 40,), "<f8"), ((2,), "|O"), ((3,), "<f8")])
def test_an_array_header_that_does_not_match_its_bytes_is_refused_before_allocating(shape, dtype, saved):
    path, _, _ = saved

    def lie(schema, files):
        name = next(iter(files))
        header = {"descr": dtype, "fortran_order": False, "shape": shape}
        stream = io.BytesIO()
        np.lib.format.write_array_header_1_0(stream, header)
        files[name] = stream.getvalue() + b"\0" * 16  # two float64 values

    _edit_skops(path, lie)
    with pytest.raises(ValueError, match=r"dtype object|bytes\) over 16 bytes"):
        load(path)


@needs_skops
@pytest.mark.parametrize("header", [b"{'descr': '<f8', 'shape': (2,\n", b"{'descr': '<f8'\0}\n", b"[1, 2]\n"])
def test_an_array_header_that_is_not_a_header_is_refused(header, saved):
    """numpy parses the header as a Python literal; what fails there (a tokenize error found by
    the fuzz test below) is a ValueError."""
    path, _, _ = saved

    def garble(schema, files):
        files[next(iter(files))] = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header

    _edit_skops(path, garble)
    with pytest.raises(ValueError, match="not a readable .npy array"):
        load(path)


@needs_skops
@pytest.mark.parametrize("depth, match", [(300, "nests more than 200"), (100_000, "not JSON")])
def test_deep_nesting_in_the_schema_is_refused(depth, match, saved):
    path, _, _ = saved
    members = _members(path)
    with zipfile.ZipFile(io.BytesIO(members["pipeline.skops"])) as inner:
        files = {name: inner.read(name) for name in inner.namelist()}
    protocol = json.loads(files.pop("schema.json"))["protocol"]
    opening = '{"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": ['
    text = opening * depth + json.dumps(_json_node(0)) + "]}" * depth
    schema = (
        '{"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "protocol": %d, "content": [%s]}'
    )
    members["pipeline.skops"] = _skops_zip({"schema.json": (schema % (protocol, text)).encode(), **files})
    _write(path, members)
    with pytest.raises(ValueError, match=match):
        load(path)


@needs_skops
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux-only")
def test_pipeline_memory_bombs_end_in_value_error_under_a_memory_limit(saved, tmp_path):
    path, _, _ = saved
    cases = {"valid": None}

    def huge_array(elements):
        def edit(schema, files):
            stream = io.BytesIO()
            header = {"descr": "<f8", "fortran_order": False, "shape": (elements,)}
            np.lib.format.write_array_header_1_0(stream, header)
            files[next(iter(files))] = stream.getvalue() + b"\0" * 16

        return edit

    cases["array of 2^33 float64"] = huge_array(1 << 33)  # numpy would allocate 64 GiB before reading
    cases["array of 2^27 float64"] = huge_array(1 << 27)  # 1 GiB, above the cap
    paths = []
    for i, edit in enumerate(cases.values()):
        paths.append(tmp_path / f"case{i}.mtr")
        paths[-1].write_bytes(path.read_bytes())
        if edit is not None:
            _edit_skops(paths[-1], edit)
    outcomes = dict(zip(cases, load_each_under_memory_cap(paths), strict=True))
    assert outcomes.pop("valid") == "loaded"
    assert outcomes == dict.fromkeys(outcomes, "ValueError")


# ------------------------------------------------------------------------------------ fuzzing
# Derandomized like tests/test_persistence_fuzz.py (SKLEARN_MTR_FUZZ=1 draws 300 fresh ones).
FUZZ = bool(os.environ.get("SKLEARN_MTR_FUZZ"))
_NODE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 2**63, 2**64 + 1, 10**400, 1 << 40]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.sampled_from(
        ["exec", "system", "os", "builtins", "ObjectNode", "ReduceNode", "MethodNode", "CachedNode", "NdArrayNode"]
    ),
    st.sampled_from(["numpy", "json", "<f8", "|O", "schema.json", "float64", "dict", "list", "str"]),
    st.just([]),
    st.just({}),
    st.sampled_from(list(EVIL.values())),
    st.just({"__class__": "list", "__module__": "builtins", "__loader__": "CachedNode", "__id__": 1}),
)


def _schema_paths(node, prefix=()):
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield from _schema_paths(value, (*prefix, key))


@pytest.fixture(scope="module")
def fuzz_original(tabular_pipeline, tmp_path_factory):
    pytest.importorskip("skops")
    path = tmp_path_factory.mktemp("fuzz") / "pipe.mtr"
    save(tabular_pipeline[0], path)
    return path, path.parent / "case.mtr"  # paths, not bytes: hypothesis prints its arguments


FUZZ_SETTINGS = settings(
    max_examples=300 if FUZZ else 25,
    derandomize=not FUZZ,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


@needs_skops
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.InconsistentVersionWarning")  # _sklearn_version mutated
@FUZZ_SETTINGS
@given(data=st.data())
def test_a_mutated_skops_schema_loads_a_pipeline_or_raises_value_error(fuzz_original, data, monkeypatch):
    """Any change of pipeline.skops' schema (checksums rewritten): load returns a Pipeline or
    raises ValueError, never another exception, never unpickles, never runs a payload."""
    original, path = fuzz_original
    monkeypatch.chdir(path.parent)  # where the exec payload would write PWNED
    path.write_bytes(original.read_bytes())
    target = data.draw(st.sampled_from(list(_schema_paths(_read_schema(path)))), label="path")
    op = data.draw(st.sampled_from(["replace", "delete", "extra"] if target else ["replace"]), label="op")
    value = data.draw(_NODE_VALUES, label="value")

    def mutate(schema, files):
        parent = schema
        for key in target[:-1]:
            parent = parent[key]
        if not target:
            schema.clear()
            schema["content"] = value
        elif op == "replace":
            parent[target[-1]] = value
        elif op == "delete":
            del parent[target[-1]]
        elif isinstance(parent[target[-1]], dict):
            parent[target[-1]][data.draw(st.sampled_from(["content", "type", "file", "__id__", "x"]))] = value
        elif isinstance(parent[target[-1]], list):
            parent[target[-1]].append(value)

    _edit_skops(path, mutate)
    try:
        loaded = load(path)
    except ValueError:
        loaded = None
    assert loaded is None or type(loaded) is Pipeline
    assert not (path.parent / "PWNED").exists()


def _read_schema(path):
    with zipfile.ZipFile(io.BytesIO(_members(path)["pipeline.skops"])) as inner:
        return json.loads(inner.read("schema.json"))


@needs_skops
@FUZZ_SETTINGS
@given(data=st.data())
def test_mutated_array_bytes_load_a_pipeline_or_raise_value_error(fuzz_original, data):
    """A .npy array of pipeline.skops truncated, or with a byte of its header or data changed."""
    original, path = fuzz_original
    path.write_bytes(original.read_bytes())

    def mutate(schema, files):
        name = data.draw(st.sampled_from(sorted(files)), label="file")
        raw = bytearray(files[name])
        at = data.draw(st.integers(0, len(raw) - 1), label="at")
        if data.draw(st.booleans(), label="truncate"):
            files[name] = bytes(raw[:at])
        else:
            raw[at] = data.draw(st.integers(0, 255), label="byte")
            files[name] = bytes(raw)

    _edit_skops(path, mutate)
    try:
        loaded = load(path)
    except ValueError:
        loaded = None
    assert loaded is None or type(loaded) is Pipeline
