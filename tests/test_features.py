"""Tests for the data layer: column roles (resolve_roles) and TabularEncoder."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.feature_extraction.text import TfidfVectorizer

from sklearn_mtr._schema import N_RESERVED, OOV_INDEX, PAD_INDEX, SequenceInput, TextInput
from sklearn_mtr.features import CATEGORICAL, NUMERIC, SEQUENCE, TEXT, TabularEncoder, resolve_roles

# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def numeric_frame():
    return pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [10, 20, 30], "z": [0.5, -0.5, 0.0]})


def mixed_frame():
    """One column per kind that counts as categorical under 'from_dtype', plus numeric ones."""
    return pd.DataFrame(
        {
            "s_obj": pd.Series(["a", "b", None, "a"], dtype=object),
            "s_str": pd.Series(["x", None, "y", "x"], dtype="str"),
            "s_sd": pd.Series(["p", pd.NA, "q", "q"], dtype=pd.StringDtype()),
            "cat": pd.Series(["u", "v", "u", None], dtype="category"),
            "flag": [True, False, True, True],
            "n": [1.0, np.nan, 3.0, 4.0],
            "i": [1, 2, 3, 4],
        }
    )


def seq_frame():
    return pd.DataFrame(
        {
            "item": ["a", "b", "c", "a"],
            "hist": [["a", "z"], None, [], ["b", "c", "z"]],
            "x": [1.0, 2.0, 3.0, 4.0],
        }
    )


# --------------------------------------------------------------------------------------
# role resolution
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "series",
    [
        pd.Series(["a", "b", None], dtype=object),
        pd.Series(["a", "b", None], dtype="str"),
        pd.Series(["a", "b", None], dtype=pd.StringDtype()),
        pd.Series(["a", "b", None], dtype="category"),
        pd.Series([3, 1, 2], dtype="category"),
    ],
    ids=["object", "str", "StringDtype", "category", "int-category"],
)
def test_from_dtype_string_and_category_columns_are_categorical(series):
    X = pd.DataFrame({"c": series, "n": [1.0, 2.0, 3.0]})
    roles, shared = resolve_roles(X, "from_dtype", None, None)
    assert roles == {"c": CATEGORICAL, "n": NUMERIC}
    assert shared == {}


def test_from_dtype_on_mixed_frame():
    roles, _ = resolve_roles(mixed_frame(), "from_dtype", None, None)
    assert roles == {
        "s_obj": CATEGORICAL,
        "s_str": CATEGORICAL,
        "s_sd": CATEGORICAL,
        "cat": CATEGORICAL,
        "flag": NUMERIC,
        "n": NUMERIC,
        "i": NUMERIC,
    }


@pytest.mark.parametrize(
    "series",
    [pd.Series([True, False, True]), pd.Series([True, None, False], dtype="boolean")],
    ids=["bool", "nullable-boolean"],
)
def test_bool_columns_are_numeric(series):
    X = pd.DataFrame({"b": series})
    assert resolve_roles(X, "from_dtype", None, None)[0] == {"b": NUMERIC}
    assert resolve_roles(X, None, None, None)[0] == {"b": NUMERIC}


def test_none_makes_every_numeric_column_numeric():
    roles, shared = resolve_roles(numeric_frame(), None, None, None)
    assert roles == {"x": NUMERIC, "y": NUMERIC, "z": NUMERIC}
    assert shared == {}


@pytest.mark.parametrize(
    "spec",
    [
        [False, True, False],
        np.array([False, True, False]),
        [1],
        [-2],
        np.array([-2]),
        ["y"],
        "y",
        np.array(["y"]),
        ("y",),
    ],
    ids=["mask-list", "mask-array", "index", "neg-index", "index-array", "names", "name-str", "names-array", "tuple"],
)
def test_explicit_categorical_specs(spec):
    roles, _ = resolve_roles(numeric_frame(), spec, None, None)
    assert roles == {"x": NUMERIC, "y": CATEGORICAL, "z": NUMERIC}


def test_explicit_specs_agree_with_each_other():
    X = mixed_frame()[["s_obj", "s_str", "flag", "i"]]
    expected = {"s_obj": CATEGORICAL, "s_str": CATEGORICAL, "flag": NUMERIC, "i": CATEGORICAL}
    for spec in ([True, True, False, True], [0, 1, -1], [-4, -3, 3], ["s_obj", "s_str", "i"]):
        assert resolve_roles(X, spec, None, None)[0] == expected


def test_integer_column_keys_accept_indices_and_mask():
    X = pd.DataFrame(np.array([["a", 1, 2.0], ["b", 2, 3.0]], dtype=object))
    X[1] = X[1].astype(int)
    X[2] = X[2].astype(float)
    expected = {0: CATEGORICAL, 1: NUMERIC, 2: CATEGORICAL}
    assert resolve_roles(X, [0, -1], None, None)[0] == expected
    assert resolve_roles(X, np.array([0, 2]), None, None)[0] == expected
    assert resolve_roles(X, [True, False, True], None, None)[0] == expected
    assert resolve_roles(X, "from_dtype", None, None)[0] == {0: CATEGORICAL, 1: NUMERIC, 2: NUMERIC}


def test_sequence_and_text_roles():
    X = seq_frame().assign(t=["hello", None, "x y", ""])
    roles, shared = resolve_roles(X, "from_dtype", {"hist": "item"}, ["t"])
    assert roles == {"item": CATEGORICAL, "hist": SEQUENCE, "x": NUMERIC, "t": TEXT}
    assert shared == {"hist": "item"}
    roles, shared = resolve_roles(X, ["item"], ["hist"], "t")
    assert roles == {"item": CATEGORICAL, "hist": SEQUENCE, "x": NUMERIC, "t": TEXT}
    assert shared == {"hist": None}


@pytest.mark.parametrize("dtype", [object, "str", pd.StringDtype(), "category"])
def test_undeclared_string_column_with_none_raises(dtype):
    X = pd.DataFrame({"n": [1.0, 2.0], "city": pd.Series(["paris", "rome"], dtype=dtype)})
    with pytest.raises(ValueError, match="column 'city'"):
        resolve_roles(X, None, None, None)


def test_undeclared_string_column_with_explicit_list_raises():
    X = pd.DataFrame({"a": ["u", "v"], "city": ["paris", "rome"], "n": [1, 2]})
    with pytest.raises(ValueError, match="column 'city'"):
        resolve_roles(X, ["a"], None, None)
    with pytest.raises(ValueError, match="column 'city'"):
        resolve_roles(X, [True, False, False], None, None)


def test_undeclared_string_column_integer_keys_names_position():
    X = pd.DataFrame(np.array([["a", "b"], ["c", "d"]], dtype=object))
    with pytest.raises(ValueError, match="column 1"):
        resolve_roles(X, [0], None, None)


def test_list_column_given_as_categorical_raises():
    with pytest.raises(ValueError, match="column 'hist'"):
        resolve_roles(seq_frame(), ["item", "hist"], None, None)


def test_list_column_not_declared_as_sequence_raises():
    with pytest.raises(ValueError, match="column 'hist'.*sequence_features"):
        resolve_roles(seq_frame(), "from_dtype", None, None)
    with pytest.raises(ValueError, match="column 'hist'"):
        resolve_roles(seq_frame(), ["item"], None, None)


@pytest.mark.parametrize("mask", [[True, False], [True, False, True, False], np.array([True])])
def test_mask_of_wrong_length_raises(mask):
    with pytest.raises(ValueError, match=f"{len(mask)} entries but X has 3 columns"):
        resolve_roles(numeric_frame(), mask, None, None)


@pytest.mark.parametrize("index", [3, -4, 100])
def test_out_of_range_index_raises(index):
    with pytest.raises(ValueError, match=f"index {index}"):
        resolve_roles(numeric_frame(), [index], None, None)


def test_unknown_name_raises():
    with pytest.raises(ValueError, match="'nope'"):
        resolve_roles(numeric_frame(), ["x", "nope"], None, None)
    with pytest.raises(ValueError, match="'nope'"):
        resolve_roles(seq_frame(), "from_dtype", ["nope"], None)
    with pytest.raises(ValueError, match="'nope'"):
        resolve_roles(seq_frame(), "from_dtype", {"hist": "nope"}, None)


def test_names_with_integer_column_keys_raise():
    X = pd.DataFrame(np.arange(6.0).reshape(2, 3))
    with pytest.raises(ValueError, match="'a'.*no column names"):
        resolve_roles(X, ["a"], None, None)
    with pytest.raises(ValueError, match="'a'"):
        TabularEncoder(categorical_features="a").fit(X)


def _log_frame(n=400, seed=0):
    """An interaction log: repeated users and titles, a rating level, unique ids and reviews."""
    rng = np.random.default_rng(seed)
    words = np.array(["good", "bad", "plot", "great", "boring", "actor", "loved", "the", "ending", "slow"])
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in rng.integers(0, n // 4, n)],  # each user has several rows
            "title": [f"The movie number {i}" for i in rng.integers(0, n // 3, n)],  # items repeat
            "level": rng.choice(["low", "mid", "high"], n),
            "impression_id": [f"imp-{i:06d}" for i in range(n)],  # unique, but one word: an id
            "review": [" ".join(rng.choice(words, 6)) + f" {i}" for i in range(n)],
            "x": rng.normal(size=n),
        }
    )


def test_free_text_column_made_categorical_by_dtype_warns_with_the_fix():
    X = _log_frame()
    with pytest.warns(UserWarning, match=r"column 'review' looks like free text .*text_features=\['review'\]") as rec:
        roles, _ = resolve_roles(X, "from_dtype", None, None)
    assert roles["review"] == CATEGORICAL  # a warning, not a change of role
    assert [str(w.message).split()[1] for w in rec if "free text" in str(w.message)] == ["'review'"]
    X["review"] = X["review"].astype(pd.StringDtype())
    with pytest.warns(UserWarning, match="'review' looks like free text"):
        TabularEncoder().fit(X)


def test_declared_free_text_and_ordinary_string_columns_do_not_warn():
    X = _log_frame()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_roles(X, "from_dtype", None, ["review"])[0]["review"] == TEXT
        roles, _ = resolve_roles(X, ["user_id", "title", "level", "impression_id", "review"], None, None)
        assert roles["review"] == CATEGORICAL  # named categorical explicitly: no warning
        resolve_roles(X.astype({"review": "category"}), "from_dtype", None, None)  # a category dtype is declared
        resolve_roles(X.iloc[:50], "from_dtype", None, None)  # 50 distinct reviews: too few to tell


def test_column_both_sequence_and_text_raises():
    X = seq_frame()
    with pytest.raises(ValueError, match="column 'hist'.*sequence.*text"):
        resolve_roles(X, "from_dtype", ["hist"], ["hist"])


def test_column_both_categorical_and_sequence_raises():
    with pytest.raises(ValueError, match="column 'hist'"):
        resolve_roles(seq_frame(), ["item", "hist"], ["hist"], None)


@pytest.mark.parametrize("target", ["x", "t"])
def test_sequence_sharing_non_categorical_column_raises(target):
    X = seq_frame().assign(t=["a b", "c", None, ""])
    with pytest.raises(ValueError, match=f"column 'hist'.*column '{target}'.*not a categorical"):
        resolve_roles(X, "from_dtype", {"hist": target}, ["t"])


def test_duplicate_and_mixed_specs_raise():
    with pytest.raises(ValueError, match="twice"):
        resolve_roles(numeric_frame(), [0, -3], None, None)
    with pytest.raises(ValueError, match="mixes booleans"):
        resolve_roles(numeric_frame(), [True, 1], None, None)


# --------------------------------------------------------------------------------------
# categorical vocabularies
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [object, "str", pd.StringDtype(), "category"])
def test_categorical_known_unseen_and_missing(dtype):
    train = pd.DataFrame({"c": pd.Series(["b", "a", None, "c", "a"], dtype=dtype)})
    enc = TabularEncoder().fit(train)
    assert enc.schema_.categorical_names == ("c",)
    assert enc.schema_.categorical_cardinalities == (3 + N_RESERVED,)

    codes = enc.transform(train)["categorical"]
    assert codes.dtype == torch.int64 and codes.shape == (5, 1)
    c = codes[:, 0].tolist()
    assert c[2] == OOV_INDEX  # missing
    assert c[1] == c[4]  # same value, same index
    assert len({c[0], c[1], c[3]}) == 3
    assert all(N_RESERVED <= v < 3 + N_RESERVED for v in (c[0], c[1], c[3]))

    test = pd.DataFrame({"c": pd.Series(["a", "zzz", None, np.nan, "c"], dtype=object)})
    t = enc.transform(test)["categorical"][:, 0].tolist()
    assert t[0] == c[1] and t[4] == c[3]
    assert t[1] == OOV_INDEX and t[2] == OOV_INDEX and t[3] == OOV_INDEX
    assert PAD_INDEX not in codes and PAD_INDEX not in t


def test_categorical_pad_index_never_used():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "a": pd.Series(rng.choice(["u", "v", "w", None], size=30), dtype=object),
            "b": pd.Series(rng.choice(["p", "q"], size=30), dtype="category"),
        }
    )
    enc = TabularEncoder().fit(X)
    unseen = pd.DataFrame({"a": ["nope", None], "b": pd.Series(["r", None], dtype="category")})
    for frame in (X, unseen):
        codes = enc.transform(frame)["categorical"]
        assert (codes != PAD_INDEX).all()
        assert (codes < torch.tensor(enc.schema_.categorical_cardinalities)).all()


def test_integer_categorical_column():
    X = pd.DataFrame({"k": [30, 10, 20, 10]})
    enc = TabularEncoder(categorical_features=["k"]).fit(X)
    assert enc.schema_.categorical_cardinalities == (5,)
    assert enc.schema_.n_numeric == 0
    codes = enc.transform(X)["categorical"][:, 0].tolist()
    assert codes[1] == codes[3] and len(set(codes)) == 3 and min(codes) >= N_RESERVED
    # NaN at transform turns the column to float: known values must still be found.
    t = enc.transform(pd.DataFrame({"k": [10.0, np.nan, 99.0, 30.0]}))["categorical"][:, 0].tolist()
    assert t == [codes[1], OOV_INDEX, OOV_INDEX, codes[0]]


@pytest.mark.parametrize("dtype", [object, "str", "category", "int"])
def test_vocabulary_independent_of_row_order(dtype):
    values = ["d", "b", "c", "a", "a", "b"] if dtype != "int" else [4, 2, 3, 1, 1, 2]
    X = pd.DataFrame({"c": pd.Series(values, dtype=dtype)})
    spec = ["c"] if dtype == "int" else "from_dtype"
    enc1 = TabularEncoder(categorical_features=spec).fit(X)
    enc2 = TabularEncoder(categorical_features=spec).fit(X.sample(frac=1.0, random_state=3))
    enc3 = TabularEncoder(categorical_features=spec).fit(X.iloc[::-1].reset_index(drop=True))
    ref = enc1.transform(X)["categorical"]
    assert torch.equal(ref, enc2.transform(X)["categorical"])
    assert torch.equal(ref, enc3.transform(X)["categorical"])


def test_sequence_vocabulary_independent_of_row_order():
    X = seq_frame()
    shuffled = X.iloc[[3, 1, 0, 2]].reset_index(drop=True)
    for spec in ({"hist": "item"}, ["hist"]):
        b1 = TabularEncoder(sequence_features=spec).fit(X).transform(X)
        b2 = TabularEncoder(sequence_features=spec).fit(shuffled).transform(X)
        assert b1.keys() == b2.keys()
        for key in b1:
            assert torch.equal(b1[key], b2[key]), key


# --------------------------------------------------------------------------------------
# numeric columns
# --------------------------------------------------------------------------------------


def test_numeric_standardised_with_training_statistics():
    train = pd.DataFrame({"x": [1.0, 2.0, 4.0, 9.0], "y": [10, 20, 30, 40]})
    enc = TabularEncoder().fit(train)
    assert enc.schema_.n_numeric == 2
    assert enc.schema_.numeric_names == ("x", "y")
    mean = train.to_numpy(float).mean(axis=0)
    std = train.to_numpy(float).std(axis=0)  # population std (ddof=0)
    np.testing.assert_allclose(enc.mean_, mean)
    np.testing.assert_allclose(enc.scale_, std)

    out = enc.transform(train)["numeric"]
    assert out.dtype == torch.float32 and out.shape == (4, 2)
    np.testing.assert_allclose(out.numpy(), (train.to_numpy(float) - mean) / std, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.numpy().mean(axis=0), 0.0, atol=1e-6)

    # transform uses the training statistics, not the new data's
    test = pd.DataFrame({"x": [100.0, -3.0], "y": [0, 25]})
    np.testing.assert_allclose(
        enc.transform(test)["numeric"].numpy(), (test.to_numpy(float) - mean) / std, rtol=1e-6, atol=1e-6
    )


def test_bool_column_standardised():
    X = pd.DataFrame({"b": [True, False, True, True]})
    out = TabularEncoder().fit(X).transform(X)["numeric"][:, 0].numpy()
    v = np.array([1.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(out, (v - v.mean()) / v.std(), rtol=1e-6)


def test_numeric_missing_values_and_indicators():
    train = pd.DataFrame({"a": [1.0, np.nan, 3.0], "b": [5.0, 6.0, 7.0], "c": [np.nan, 2.0, 4.0]})
    enc = TabularEncoder().fit(train)
    s = enc.schema_
    assert s.n_numeric == 3 + 2
    assert s.numeric_names == ("a", "b", "c", "a__missing", "c__missing")
    np.testing.assert_allclose(enc.mean_, [2.0, 6.0, 3.0])

    out = enc.transform(train)["numeric"].numpy()
    assert out.shape == (3, 5)
    assert np.isfinite(out).all()
    assert out[1, 0] == 0.0 and out[0, 2] == 0.0  # imputed at the (standardised) mean
    np.testing.assert_array_equal(out[:, 3], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(out[:, 4], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(out[[0, 2], 0], [-1.0, 1.0], rtol=1e-6)


def test_numeric_missing_at_transform_without_indicator():
    train = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, np.nan, 2.0]})
    enc = TabularEncoder().fit(train)
    assert enc.schema_.n_numeric == 3  # a, b, b__missing
    out = enc.transform(pd.DataFrame({"a": [np.nan, 3.0], "b": [1.0, 2.0]}))["numeric"].numpy()
    assert out.shape == (2, 3)
    assert out[0, 0] == 0.0
    np.testing.assert_array_equal(out[:, 2], [0.0, 0.0])  # b's indicator, b is not missing here

    enc2 = TabularEncoder().fit(train[["a"]])
    out2 = enc2.transform(pd.DataFrame({"a": [np.nan, None, 2.0]}))["numeric"].numpy()
    assert out2.shape == (3, 1)  # no indicator column appears at transform
    np.testing.assert_array_equal(out2[:, 0], [0.0, 0.0, 0.0])


def test_numeric_all_missing_column():
    enc = TabularEncoder().fit(pd.DataFrame({"a": [np.nan, np.nan]}))
    assert enc.schema_.n_numeric == 2
    out = enc.transform(pd.DataFrame({"a": [np.nan, 1.0]}))["numeric"].numpy()
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[:, 1], [1.0, 0.0])


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_values_raise_naming_the_column(bad):
    X = pd.DataFrame({"ok": [1.0, 2.0], "weird": [1.0, bad]})
    with pytest.raises(ValueError, match="column 'weird'.*infinite"):
        TabularEncoder().fit(X)
    enc = TabularEncoder().fit(X.assign(weird=[1.0, 2.0]))
    with pytest.raises(ValueError, match="column 'weird'.*infinite"):
        enc.transform(X)


@pytest.mark.parametrize("dtype", [object, "str", pd.StringDtype()])
def test_numeric_column_receiving_strings_raises(dtype):
    enc = TabularEncoder().fit(pd.DataFrame({"n": [1.0, 2.0, 3.0], "m": [1, 2, 3]}))
    X = pd.DataFrame({"n": pd.Series(["a", "b", "c"], dtype=dtype), "m": [1, 2, 3]})
    with pytest.raises(ValueError, match="column 'n'.*not numbers"):
        enc.transform(X)


def test_constant_column_no_division_by_zero():
    X = pd.DataFrame({"k": [5.0, 5.0, 5.0], "x": [1.0, 2.0, 3.0]})
    enc = TabularEncoder().fit(X)
    assert enc.scale_[0] == 1.0
    with np.errstate(all="raise"):
        out = enc.transform(pd.DataFrame({"k": [5.0, 7.0], "x": [1.0, 1.0]}))["numeric"].numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, 0], [0.0, 2.0])


# --------------------------------------------------------------------------------------
# sequences
# --------------------------------------------------------------------------------------


def test_sequence_padded_ids_and_lengths():
    X = pd.DataFrame({"hist": [["a", "b", "c"], None, [], np.nan, ("b",), np.array(["c", "a"], dtype=object)]})
    enc = TabularEncoder(sequence_features=["hist"]).fit(X)
    assert enc.schema_.sequences == (SequenceInput(name="hist", vocab_size=3 + N_RESERVED, shared_with=None),)
    assert enc.schema_.n_categorical == 0 and enc.schema_.n_numeric == 0
    batch = enc.transform(X)
    assert set(batch) == {"seq__hist", "len__hist"}
    ids, lengths = batch["seq__hist"], batch["len__hist"]
    assert ids.dtype == torch.int64 and lengths.dtype == torch.int64
    assert ids.shape == (6, 3)
    assert lengths.tolist() == [3, 0, 0, 0, 1, 2]
    a, b, c = ids[0].tolist()
    assert len({a, b, c}) == 3 and min(a, b, c) >= N_RESERVED
    assert ids[1:4].eq(PAD_INDEX).all()
    assert ids[4].tolist() == [b, PAD_INDEX, PAD_INDEX]
    assert ids[5].tolist() == [c, a, PAD_INDEX]

    out = enc.transform(pd.DataFrame({"hist": [["a", "nope", None], []]}))
    assert out["seq__hist"].tolist() == [[a, OOV_INDEX, OOV_INDEX], [PAD_INDEX] * 3]
    assert out["len__hist"].tolist() == [3, 0]


def test_sequence_all_empty_batch():
    enc = TabularEncoder(sequence_features=["hist"]).fit(pd.DataFrame({"hist": [["a"], ["b"]]}))
    batch = enc.transform(pd.DataFrame({"hist": [[], None]}))
    assert batch["seq__hist"].shape == (2, 1)
    assert batch["seq__hist"].eq(PAD_INDEX).all()
    assert batch["len__hist"].tolist() == [0, 0]


def test_sequence_shared_vocabulary():
    X = seq_frame()
    enc = TabularEncoder(sequence_features={"hist": "item"}).fit(X)
    s = enc.schema_
    # item values a, b, c plus the history-only value z
    assert s.categorical_names == ("item",)
    assert s.categorical_cardinalities == (4 + N_RESERVED,)
    assert s.sequences == (SequenceInput(name="hist", vocab_size=4 + N_RESERVED, shared_with="item"),)
    assert "hist" not in enc.vocabularies_

    batch = enc.transform(X)
    item = batch["categorical"][:, 0].tolist()
    code = {"a": item[0], "b": item[1], "c": item[2]}
    assert batch["seq__hist"][0, 0].item() == code["a"]  # same value, same index
    z = batch["seq__hist"][0, 1].item()
    assert z >= N_RESERVED and z not in code.values()  # history-only item is known
    assert batch["seq__hist"][3].tolist() == [code["b"], code["c"], z]
    assert batch["len__hist"].tolist() == [2, 0, 0, 3]

    # and the categorical column knows the history-only item too
    t = enc.transform(pd.DataFrame({"item": ["z", "q"], "hist": [["q"], ["a"]], "x": [0.0, 0.0]}))
    assert t["categorical"][:, 0].tolist() == [z, OOV_INDEX]
    assert t["seq__hist"][:, 0].tolist() == [OOV_INDEX, code["a"]]


def test_sequence_shared_vocabulary_integer_items():
    X = pd.DataFrame({"item": [10, 20, 30], "hist": [[10, 40], [np.int64(20)], None]})
    enc = TabularEncoder(categorical_features=["item"], sequence_features={"hist": "item"}).fit(X)
    assert enc.schema_.categorical_cardinalities == (4 + N_RESERVED,)
    batch = enc.transform(X)
    item = batch["categorical"][:, 0].tolist()
    assert batch["seq__hist"][0, 0].item() == item[0]
    assert batch["seq__hist"][1, 0].item() == item[1]
    assert batch["seq__hist"][0, 1].item() >= N_RESERVED


@pytest.mark.parametrize("bad", ["a", 3, "a b"])
def test_sequence_non_list_cell_raises(bad):
    X = pd.DataFrame({"hist": [["a"], bad, None]})
    with pytest.raises(ValueError, match="column 'hist'.*not a list"):
        TabularEncoder(sequence_features=["hist"]).fit(X)
    enc = TabularEncoder(sequence_features=["hist"]).fit(pd.DataFrame({"hist": [["a"], []]}))
    with pytest.raises(ValueError, match="column 'hist'"):
        enc.transform(X)


def test_categorical_receiving_lists_at_transform_raises():
    enc = TabularEncoder().fit(pd.DataFrame({"item": ["a", "b"]}))
    with pytest.raises(ValueError, match="column 'item'"):
        enc.transform(pd.DataFrame({"item": [["a"], "b"]}))


# --------------------------------------------------------------------------------------
# texts
# --------------------------------------------------------------------------------------


def _dense_bag(ids, weights, size):
    """The padded (ids, weights) encoding as a dense (n, size) matrix."""
    out = np.zeros((ids.shape[0], size))
    np.add.at(out, (np.repeat(np.arange(ids.shape[0]), ids.shape[1]), ids.numpy().ravel()), weights.numpy().ravel())
    return out[:, 1:]  # id 0 is padding


@pytest.mark.parametrize("dtype", [object, "str", pd.StringDtype()])
def test_text_encoding_is_tfidf_of_hashed_uni_and_bigrams(dtype):
    texts = ["Héllo wörld", None, "", "HÉLLO, héllo! wörld", "a b a"]
    X = pd.DataFrame({"t": pd.Series(texts, dtype=dtype)})
    enc = TabularEncoder(text_features=["t"]).fit(X)
    # terms: héllo wörld, héllo_wörld, héllo_héllo, a, b, a_b, b_a
    # no term is in DEEP_MIN_DF texts: every one is read by the wide path only
    assert enc.schema_.texts == (TextInput(name="t", vocab_size=8 + 1, deep_size=1),)
    assert enc.schema_.n_categorical == 0 and enc.schema_.n_numeric == 0
    batch = enc.transform(X)
    assert set(batch) == {"text__t", "weight__t"}
    assert batch["text__t"].dtype == torch.int64 and batch["weight__t"].dtype == torch.float32
    assert batch["text__t"].shape == batch["weight__t"].shape == (5, 4)
    assert batch["text__t"][1:3].eq(PAD_INDEX).all() and batch["weight__t"][1:3].eq(0).all()  # NaN, empty

    reference = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\w+")
    expected = reference.fit_transform([t or "" for t in texts]).toarray()
    got = _dense_bag(batch["text__t"], batch["weight__t"], enc.schema_.texts[0].vocab_size)
    # same vectors up to the order of the terms
    order = lambda m: np.sort(np.round(m, 6), axis=1)
    np.testing.assert_allclose(order(got), order(expected), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got[[0, 3, 4]], axis=1), 1.0, rtol=1e-6)


def test_text_terms_unseen_in_fit_are_dropped_and_idf_stays_fixed():
    enc = TabularEncoder(text_features=["t"]).fit(pd.DataFrame({"t": ["good film", "bad film"]}))
    seen = enc.transform(pd.DataFrame({"t": ["good film"]}))
    mixed = enc.transform(pd.DataFrame({"t": ["good film zebra quux", "zebra"]}))
    # the unseen words and bigrams are left out before normalising: the same vector
    assert torch.equal(mixed["text__t"][0, :3], seen["text__t"][0])
    torch.testing.assert_close(mixed["weight__t"][0, :3], seen["weight__t"][0])
    assert mixed["weight__t"][0, 3:].eq(0).all() and mixed["weight__t"][1].eq(0).all()
    # the idf of fit is used at transform, whatever the transformed rows hold
    again = enc.transform(pd.DataFrame({"t": ["good film"] * 5}))
    torch.testing.assert_close(again["weight__t"][0], seen["weight__t"][0])


def test_text_hash_is_stable_across_processes():
    import subprocess
    import sys

    code = (
        "import pandas as pd; from sklearn_mtr.features import TabularEncoder;"
        "e = TabularEncoder(text_features=['t']).fit(pd.DataFrame({'t': ['stable hash words']}));"
        "print(e.texts_['t'].buckets_.tolist())"
    )
    runs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in (0, 1)
    }
    enc = TabularEncoder(text_features=["t"]).fit(pd.DataFrame({"t": ["stable hash words"]}))
    assert runs == {f"{enc.texts_['t'].buckets_.tolist()}\n"}


def test_text_keeps_the_heaviest_max_terms():
    from sklearn_mtr.features._text import HashedText

    enc = HashedText(max_terms=3).fit(["a a a a b c d", "b c d"])
    ids, weights = enc.transform(["a a a a b c d"])
    assert ids.shape == (1, 3)
    _, full_weights = HashedText().fit(["a a a a b c d", "b c d"]).transform(["a a a a b c d"])
    assert weights.max() == full_weights.max()  # "a" (rare and repeated) is kept
    assert np.all(weights[0] >= np.sort(full_weights[0])[-3] - 1e-7)


def test_text_terms_of_deep_min_df_texts_come_first_and_rare_ones_after():
    from sklearn_mtr.features._text import HashedText

    texts = ["a b", "a c", "a d"]
    enc = HashedText(deep_min_df=2).fit(texts)
    assert enc.deep_size == 2  # "a" (3 texts) and padding; b, c, d and the bigrams are rare
    ids, weights = enc.transform(["a b"])
    by_weight = dict(zip(ids[0].tolist(), weights[0].tolist()))
    assert min(by_weight) == 1 and all(i >= enc.deep_size for i in by_weight if i != 1)
    # only the ids move: the weights are those of the bucket-ordered encoding
    _, weights_all = HashedText(deep_min_df=1).fit(texts).transform(["a b"])
    assert HashedText(deep_min_df=1).fit(texts).deep_size == enc.size
    assert sorted(weights[0].tolist()) == pytest.approx(sorted(weights_all[0].tolist()))


@pytest.mark.parametrize("bad", [5, 1.5, ["a", "b"]])
def test_text_non_string_cell_raises(bad):
    X = pd.DataFrame({"t": pd.Series(["ok", bad, None], dtype=object)})
    with pytest.raises(ValueError, match="column 't'.*text feature"):
        TabularEncoder(text_features=["t"]).fit(X)
    enc = TabularEncoder(text_features=["t"]).fit(pd.DataFrame({"t": ["ok", "fine"]}))
    with pytest.raises(ValueError, match="column 't'"):
        enc.transform(X)


# --------------------------------------------------------------------------------------
# the schema
# --------------------------------------------------------------------------------------


def test_schema_of_a_full_frame():
    X = pd.DataFrame(
        {
            "user": ["u1", "u2", "u1", None],
            "item": pd.Series(["a", "b", "c", "a"], dtype="category"),
            "age": [20.0, np.nan, 40.0, 30.0],
            "score": [1, 2, 3, 4],
            "hist": [["a", "z"], None, ["y"], []],
            "tags": [["t1"], ["t2", "t1"], None, ["t3"]],
            "title": ["Big red bus", None, "red car", ""],
        }
    )
    enc = TabularEncoder(sequence_features={"hist": "item", "tags": None}, text_features="title").fit(X)
    s = enc.schema_
    assert s.categorical_names == ("user", "item")
    assert s.categorical_cardinalities == (2 + N_RESERVED, 5 + N_RESERVED)  # item: a b c + y z
    assert s.n_categorical == 2
    assert s.n_numeric == 2 + 1
    assert s.numeric_names == ("age", "score", "age__missing")
    assert s.sequences == (
        SequenceInput(name="hist", vocab_size=5 + N_RESERVED, shared_with="item"),
        SequenceInput(name="tags", vocab_size=3 + N_RESERVED, shared_with=None),
    )
    assert s.texts == (
        TextInput(name="title", vocab_size=7 + 1, deep_size=1),
    )  # big red bus car, big_red red_bus red_car

    batch = enc.transform(X)
    assert set(batch) == {
        "categorical",
        "numeric",
        "seq__hist",
        "len__hist",
        "seq__tags",
        "len__tags",
        "text__title",
        "weight__title",
    }
    assert batch["categorical"].shape == (4, 2)
    assert batch["numeric"].shape == (4, s.n_numeric)
    for key, size in (("seq__hist", 7), ("seq__tags", 5), ("text__title", 8)):
        assert int(batch[key].max()) < size
    cards = torch.tensor(s.categorical_cardinalities)
    assert (batch["categorical"] < cards).all()


def test_schema_with_only_numeric_columns():
    enc = TabularEncoder().fit(numeric_frame())
    s = enc.schema_
    assert s.categorical_names == () and s.categorical_cardinalities == ()
    assert s.sequences == () and s.texts == ()
    assert s.n_numeric == 3
    assert set(enc.transform(numeric_frame())) == {"numeric"}


def test_number_like_strings_in_a_numeric_column_are_rejected_at_transform():
    enc = TabularEncoder().fit(pd.DataFrame({"n": [1.0, 2.0, 3.0]}))
    with pytest.raises(ValueError, match="column 'n'"):
        enc.transform(pd.DataFrame({"n": pd.Series(["1", "2", "3"], dtype="str")}))


def test_vocabulary_of_mixed_type_values_does_not_depend_on_row_order():
    X = pd.DataFrame({"m": pd.Series(["a", 1, "b", 2], dtype=object)})
    a = TabularEncoder().fit(X).transform(X)["categorical"]
    b = TabularEncoder().fit(X.iloc[::-1]).transform(X)["categorical"]
    assert torch.equal(a, b)


def test_n_text_buckets_must_be_positive():
    X = pd.DataFrame({"t": ["a b b c c c"]})
    with pytest.raises(ValueError, match="n_text_buckets"):
        TabularEncoder(text_features=["t"], n_text_buckets=-1).fit(X)


def test_declared_categories_fix_the_vocabulary_for_later_chunks():
    dtype = pd.CategoricalDtype(["a", "b", "c"])
    first = pd.DataFrame({"c": pd.Series(["a", "a"], dtype=dtype)})
    later = pd.DataFrame({"c": pd.Series(["c", "b", "z"], dtype=object)})
    enc = TabularEncoder().fit(first)
    assert enc.schema_.categorical_cardinalities == (3 + 2,)
    codes = enc.transform(later.astype({"c": object}))["categorical"][:, 0].tolist()
    assert codes[0] >= 2 and codes[1] >= 2 and codes[2] == 1


@pytest.mark.parametrize(
    "fit_values, new_values",
    [([3, 1, 2], ["3", "1", "2"]), (["3", "1", "2"], [3, 1, 2]), (["a", "b", "c"], [1.5, np.nan, 2.0])],
)
def test_categorical_receiving_values_of_the_other_kind_raises(fit_values, new_values):
    # ids read as integers in fit and as text later (or the reverse) would all be unseen
    enc = TabularEncoder(categorical_features=["k"]).fit(pd.DataFrame({"k": fit_values}))
    with pytest.raises(ValueError, match="column 'k' is categorical with .* values from fit but holds"):
        enc.transform(pd.DataFrame({"k": new_values}))
    for same_kind in ([1.0, np.nan, 99], [None, None, None], [np.nan] * 3):  # float ids, all missing: fine
        if isinstance(fit_values[0], str) and same_kind[0] == 1.0:
            same_kind = ["3", None, "zz"]
        assert enc.transform(pd.DataFrame({"k": same_kind}))["categorical"].shape == (3, 1)


def test_value_kind_is_recorded_at_fit_and_worked_out_for_older_vocabularies():
    enc = TabularEncoder(categorical_features=["k"]).fit(pd.DataFrame({"k": [3, 1, 2]}))
    assert enc.vocabularies_["k"].kind_ == "integer"
    del enc.vocabularies_["k"].kind_  # as unpickled from a model saved before the attribute existed
    with pytest.raises(ValueError, match="integer values from fit but holds string"):
        enc.transform(pd.DataFrame({"k": ["3", "1"]}))
