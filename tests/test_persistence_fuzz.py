"""Property-based fuzzing of the safe model-file format (hypothesis).

A valid file is mutated: its JSON members (types, values, huge numbers, deep nesting, missing
and extra keys), its safetensors header and bytes, and its zip structure (truncation, flipped
bytes, duplicate members, huge declared sizes, compression bombs). Checksums are rewritten to
match wherever a mutation changes a member, so the loader's own checks are what is tested.

Every outcome is a ``ValueError`` from ``load``, or an estimator whose ``predict_proba``
returns an array of the original's shape or raises ``ValueError``. Where the mutation cannot
change what the model predicts (the zip around intact members, ``format.json``, ``history_``,
the optimizer's state), an estimator that loads predicts exactly what the original predicts.
No other exception, no unpickling, and (checked in a subprocess under ``RLIMIT_AS``) no
memory beyond what the file holds.
"""

import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pandas as pd
import pytest
import torch
from capped_load import load_each_under_memory_cap
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sklearn_mtr import MMoEClassifier
from sklearn_mtr._safetensors import dumps, loads
from sklearn_mtr.persistence import load, save

# Derandomized like tests/test_bad_input_properties.py: CI tries the same examples every run.
# SKLEARN_MTR_FUZZ=1 draws fresh ones, and more; add each failure found as an @example.
FUZZ = bool(os.environ.get("SKLEARN_MTR_FUZZ"))
FUZZ_SETTINGS = settings(
    max_examples=300 if FUZZ else 25,
    derandomize=not FUZZ,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
WEIGHTS = "weights.safetensors"
# the duplicate-member cases are written on purpose
pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")
DEEP = "__deep__"  # stands for 50,000 nested lists, spliced into the JSON text


def _frame(n=80):
    rng = np.random.RandomState(0)
    items = ["apple", "pear", "plum", "fig"]
    return pd.DataFrame(
        {
            "price": rng.lognormal(size=n),
            "item": pd.Series(rng.choice(items, n), dtype="str"),
            "history": [list(rng.choice(items, rng.randint(0, 3))) for _ in range(n)],
        }
    )


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """(members of a valid file, X, its predictions, a scratch path)."""
    X = _frame()
    Y = (np.random.RandomState(1).rand(len(X), 2) < 0.4).astype(int)
    clf = MMoEClassifier(
        n_experts=2,
        expert_hidden_sizes=(4,),
        tower_hidden_sizes=(4,),
        embedding_dim=2,
        max_epochs=1,
        categorical_features=["item"],
        sequence_features={"history": "item"},
        random_state=0,
    ).fit(X, Y)
    folder = tmp_path_factory.mktemp("fuzz")
    save(clf, folder / "model.mtr")
    with zipfile.ZipFile(folder / "model.mtr") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    return members, X, clf.predict_proba(X), folder / "case.mtr"


@pytest.fixture(autouse=True, scope="module")
def no_unpickling():
    """Nothing that unpickles or starts a process may be called while the suite runs."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model file reached an unpickler or a process")

    with pytest.MonkeyPatch.context() as patch:
        for owner, name in [(torch, "load"), (pickle, "load"), (pickle, "loads")]:
            patch.setattr(owner, name, refuse)
        patch.setattr(subprocess, "Popen", refuse)
        yield


def _archive(members, deflate=("format.json", "config.json"), fix=True):
    """Zip bytes of ``members`` (name, data pairs), with checksums that match when ``fix``."""
    members = list(members)
    if fix:
        header = json.loads(dict(members)["format.json"])
        header["sha256"] = {n: hashlib.sha256(d).hexdigest() for n, d in members if n != "format.json"}
        members = [(n, json.dumps(header).encode() if n == "format.json" else d) for n, d in members]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            method = zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED
            archive.writestr(name, data, compress_type=method)
    return buffer.getvalue()


def _check(original, data, neutral):
    """The property: ValueError, or a model that predicts (exactly the original when ``neutral``)."""
    _, X, expected, path = original
    path.write_bytes(data)
    try:
        model = load(path)
    except ValueError:
        return "refused"
    try:
        proba = model.predict_proba(X)
    except ValueError:
        assert not neutral, "a neutral mutation made predict_proba fail"
        return "predict refused"
    if neutral:
        np.testing.assert_array_equal(proba, expected)
    else:
        assert isinstance(proba, np.ndarray) and proba.shape == expected.shape
    return "loaded"


# ---------------------------------------------------------------- JSON mutations
def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


replacement = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 2**64 + 1, 10**30, -(10**30), 10**400]),
    st.integers(-1000, 1000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from(["<U100000000", "object", "cuda:7", "__sklearn_is_fitted__", "transform", "subprocess.Popen"]),
    st.just([]),
    st.just({}),
    st.just(DEEP),
    st.sampled_from(["tuple", "list", "dict", "ndarray", "index", "optimizer", "object", "dataclass", "tensor"]).map(
        lambda tag: {"t": tag, "v": []}
    ),
)


def _mutate_json(data, document):
    """``document`` changed at one drawn place: replaced, deleted, or given an extra key or item.
    Draws are made one by one, so a failing example shows the path, not the whole document."""
    doc = json.loads(json.dumps(document))
    path = data.draw(st.sampled_from(list(_paths(doc))), label="path")
    op = data.draw(st.sampled_from(["replace", "delete", "extra"] if path else ["replace", "extra"]), label="op")
    value = data.draw(replacement, label="value")
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if op == "replace":
        if not path:
            return value, path
        parent[path[-1]] = value
    elif op == "delete":
        del parent[path[-1]]
    else:
        node = parent[path[-1]] if path else doc
        if isinstance(node, dict):
            key = data.draw(st.sampled_from(["t", "v", "cls", "dtype", "shape", "extra", "name", "__class__"]))
            node[key] = value
        elif isinstance(node, list):
            node.insert(data.draw(st.integers(0, len(node)), label="at"), value)
        elif path:
            parent[path[-1]] = [node, value]
    return doc, path


def _json_bytes(doc):
    return json.dumps(doc, allow_nan=True).replace(json.dumps(DEEP), "[" * 50_000 + "]" * 50_000).encode()


@FUZZ_SETTINGS
@given(data=st.data())
def test_mutated_config_json_loads_equal_or_raises_value_error(original, data):
    members = dict(original[0])
    doc, path = _mutate_json(data, json.loads(members["config.json"]))
    members["config.json"] = _json_bytes(doc)
    _check(original, _archive(members.items()), neutral=path[:1] == ("history",) or _in_optimizer_state(doc, path))


def _in_optimizer_state(doc, path):
    """Whether ``path`` lies inside the optimizer's state (["optimizer", {...}] in the state's
    tagged dict), which does not enter predictions."""
    if len(path) < 5 or path[:2] != ("state", "v") or path[3] != 1:
        return False
    return doc["state"]["v"][path[2]][0] == "optimizer"


@FUZZ_SETTINGS
@given(data=st.data())
def test_mutated_format_json_loads_equal_or_raises_value_error(original, data):
    members = dict(original[0])
    doc, _ = _mutate_json(data, json.loads(members["format.json"]))
    members["format.json"] = _json_bytes(doc)
    _check(original, _archive(members.items(), fix=False), neutral=True)


# ---------------------------------------------------------------- safetensors mutations
def _split(weights):
    (size,) = struct.unpack("<Q", weights[:8])
    return json.loads(weights[8 : 8 + size]), weights[8 + size :]


@FUZZ_SETTINGS
@given(data=st.data())
def test_a_mutated_safetensors_header_loads_or_raises_value_error(original, data):
    members = dict(original[0])
    header, body = _split(members[WEIGHTS])
    doc, _ = _mutate_json(data, header)
    text = _json_bytes(doc)
    members[WEIGHTS] = struct.pack("<Q", len(text)) + text + body
    _check(original, _archive(members.items()), neutral=False)


@FUZZ_SETTINGS
@given(
    where=st.floats(0, 1, exclude_max=True),
    change=st.sampled_from(["flip", "truncate", "extend", "header_length"]),
    value=st.integers(0, 2**64 - 1),
)
@example(where=0.0, change="header_length", value=2**64 - 1)
@example(where=0.95, change="flip", value=77)  # a byte of a tensor: another valid model
@example(where=0.5, change="truncate", value=0)
def test_mutated_safetensors_bytes_load_or_raise_value_error(original, where, change, value):
    members = dict(original[0])
    weights = bytearray(members[WEIGHTS])
    at = int(where * len(weights))
    if change == "flip":
        weights[at] ^= 1 + value % 255
    elif change == "truncate":
        del weights[at:]
    elif change == "extend":
        weights += bytes(1 + value % 64)
    else:
        weights[:8] = struct.pack("<Q", value)
    members[WEIGHTS] = bytes(weights)
    _check(original, _archive(members.items()), neutral=False)


def test_swapped_optimizer_moments_load_as_another_valid_file(original):
    # Not every change is an error: valid tensors in valid places are a valid (different) file;
    # moments of the optimizer do not enter predictions.
    members = dict(original[0])
    tensors, _ = loads(members[WEIGHTS])
    first, second = (n for n in tensors if n.endswith("['exp_avg']") and tensors[n].shape == (1, 4))
    tensors[first], tensors[second] = tensors[second], tensors[first]
    members[WEIGHTS] = dumps(tensors)
    assert _check(original, _archive(members.items()), neutral=True).startswith("loaded")


# ---------------------------------------------------------------- zip structure
def _patch_sizes(data, name, compressed, uncompressed):
    """Rewrite the sizes the central directory and the local header declare for ``name``."""
    data = bytearray(data)
    encoded = name.encode()
    for signature, offset in ((b"PK\x01\x02", 20), (b"PK\x03\x04", 18)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            name_at = at + (46 if signature == b"PK\x01\x02" else 30)
            if data[name_at : name_at + len(encoded)] == encoded:
                data[at + offset : at + offset + 8] = struct.pack("<II", compressed, uncompressed)
            start = at + 4
    return bytes(data)


sizes = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2**31, 2**32 - 1]))


@FUZZ_SETTINGS
@given(
    change=st.sampled_from(["truncate", "flip", "sizes", "duplicate", "reorder", "bomb", "stored"]),
    where=st.floats(0, 1, exclude_max=True),
    member=st.sampled_from(["format.json", "config.json", WEIGHTS]),
    compressed=sizes,
    uncompressed=sizes,
)
@example(change="bomb", where=0.0, member="config.json", compressed=0, uncompressed=0)
@example(change="sizes", where=0.0, member=WEIGHTS, compressed=2**32 - 1, uncompressed=2**32 - 1)
def test_a_mutated_zip_structure_loads_equal_or_raises_value_error(
    original, change, where, member, compressed, uncompressed
):
    members = dict(original[0])
    data = _archive(members.items(), fix=False)
    neutral = True
    if change == "truncate":
        data = data[: int(where * len(data))]
    elif change == "flip":
        at = int(where * len(data))
        data = data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :]
        neutral = False  # a flipped byte may be a checksummed member's own
    elif change == "sizes":
        data = _patch_sizes(data, member, compressed, uncompressed)
    elif change == "duplicate":
        data = _archive([*members.items(), (member, members[member][: int(where * len(members[member]))])], fix=False)
    elif change == "reorder":
        data = _archive(reversed(list(members.items())), fix=False)
    elif change == "bomb":  # valid JSON that deflates about 1000 times, checksum fixed
        members[member] = members[member] + b" " * (3 << 20) if member != WEIGHTS else members[member]
        data = _archive(members.items(), deflate=(member,))
    else:
        data = _archive(members.items(), deflate=())
    _check(original, data, neutral=neutral)


def _write_case(path, members, pad_chunks=0, declare=None):
    """A file of ``members`` with matching checksums, or with ``pad_chunks``: a compression bomb,
    config.json followed by that many 16 MiB of spaces, deflated, declaring its real size (or
    ``declare``). Its deflate stream is one compressed chunk repeated, so it never sits in
    memory inflated; its CRC is right (reading it through is what load must not do), its
    checksum is left wrong."""
    if not pad_chunks:
        path.write_bytes(_archive(members.items()))
        return
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(members["config.json"]) + compressor.flush(zlib.Z_FULL_FLUSH)
    # after a full flush the compressor starts afresh, so the same input compresses the same
    chunk = compressor.compress(b" " * (1 << 24)) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream = head + chunk * pad_chunks + compressor.flush()
    crc = zlib.crc32(members["config.json"])
    for _ in range(pad_chunks):
        crc = zlib.crc32(b" " * (1 << 24), crc)
    data = bytearray(_archive({**members, "config.json": stream}.items(), deflate=()))
    size = len(members["config.json"]) + pad_chunks * (1 << 24) if declare is None else declare
    for signature, method_at, name_at in ((b"PK\x03\x04", 8, 30), (b"PK\x01\x02", 10, 46)):
        at = data.index(signature)
        while not data[at + name_at :].startswith(b"config.json"):
            at = data.index(signature, at + 4)
        data[at + method_at : at + method_at + 2] = struct.pack("<H", zipfile.ZIP_DEFLATED)
        # CRC-32, then compressed and uncompressed sizes: 6 bytes after the method, in both headers
        data[at + method_at + 6 : at + method_at + 10] = struct.pack("<I", crc)
        data[at + method_at + 14 : at + method_at + 18] = struct.pack("<I", size)
    path.write_bytes(bytes(data))


def _config_with(members, edit):
    config = json.loads(members["config.json"])
    edit(config)
    return {**members, "config.json": json.dumps(config).encode()}


def _param(key, value):
    def edit(config):
        config["params"]["v"] = [p for p in config["params"]["v"] if p[0] != key] + [[key, value]]

    return edit


def _fitted(key, value):
    def edit(config):
        config["fitted"]["v"] = [[k, value if k == key else v] for k, v in config["fitted"]["v"]]

    return edit


def _huge_tensor(members):
    text = json.dumps({"a": {"dtype": "F64", "shape": [2**20, 2**20], "data_offsets": [0, 8]}}).encode()
    return {**members, WEIGHTS: struct.pack("<Q", len(text)) + text + bytes(8)}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux-only")
def test_the_nastiest_files_end_in_value_error_under_a_memory_limit(original, tmp_path):
    members = original[0]
    strings = {"t": "ndarray", "dtype": "<U100000000", "shape": [8], "v": ["a"] * 8}
    cases = {
        "valid": (members, {}),
        "string width": (_config_with(members, _param("task_weights", strings)), {}),
        "index width": (_config_with(members, _param("task_weights", {**strings, "t": "index"})), {}),
        "deep nesting": ({**members, "config.json": b"[" * 10**6 + b"]" * 10**6}, {}),
        # 480 MiB of spaces (under MAX_CONFIG_BYTES), read in chunks and joined without the checks
        "config bomb": (members, {"pad_chunks": 30}),
        "lying size": (members, {"pad_chunks": 30, "declare": 100}),
        "huge tensor": (_huge_tensor(members), {}),
        "wide layers": (_config_with(members, _param("expert_hidden_sizes", {"t": "tuple", "v": [2**26]})), {}),
        "huge embedding": (_config_with(members, _param("embedding_dim", 2**27)), {}),
        "many layers": (_config_with(members, _param("tower_hidden_sizes", {"t": "tuple", "v": [1] * 200_000})), {}),
        "many tasks": (_config_with(members, _fitted("n_tasks_", 10**8)), {}),
    }
    paths = []
    for i, (case_members, options) in enumerate(cases.values()):
        paths.append(tmp_path / f"case{i}.mtr")
        _write_case(paths[-1], case_members, **options)
    with pytest.MonkeyPatch.context() as patch:  # the module-wide guard; this child is the test's own
        patch.setattr(subprocess, "Popen", _POPEN)
        lines = load_each_under_memory_cap(paths)
    outcomes = dict(zip(cases, lines, strict=True))
    assert outcomes.pop("valid") == "loaded"  # the cap leaves room for a real load
    assert outcomes == dict.fromkeys(outcomes, "ValueError")


_POPEN = subprocess.Popen
