"""The safetensors reader and writer of sklearn_mtr._safetensors, and its use in model files."""

import json
import struct
import zipfile

import numpy as np
import pytest
import torch

from sklearn_mtr import SharedBottomClassifier
from sklearn_mtr._safetensors import dumps, loads
from sklearn_mtr.datasets import make_multitask_classification
from sklearn_mtr.persistence import load, save

DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]
DTYPES += [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _tensors():
    gen = torch.Generator().manual_seed(0)
    table = {}
    for dtype in DTYPES:
        name = str(dtype).removeprefix("torch.")
        if dtype is torch.bool:
            table[name] = torch.rand(3, 4, generator=gen) < 0.5
        elif dtype.is_floating_point:
            table[name] = (torch.randn(3, 4, generator=gen) * 100).to(dtype)
        else:
            table[name] = torch.randint(-100 if dtype is not torch.uint8 else 0, 100, (3, 4), generator=gen).to(dtype)
    table["scalar"] = torch.tensor(7.5)
    table["empty"] = torch.zeros(0, 5)
    table["strided"] = torch.arange(12.0).reshape(3, 4).t()  # not contiguous
    return table


def _assert_same(got, expected):
    assert sorted(got) == sorted(expected)
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype and got[name].shape == tensor.shape, name
        assert torch.equal(got[name], tensor), name


def test_every_allowed_dtype_round_trips_bit_for_bit_bf16_and_fp16_included():
    tensors = _tensors()
    got, metadata = loads(dumps(tensors, {"format": "pt"}))
    _assert_same(got, tensors)
    assert metadata == {"format": "pt"}
    nan = torch.tensor([float("nan"), float("inf"), -0.0], dtype=torch.bfloat16)
    assert torch.equal(loads(dumps({"x": nan}))[0]["x"].view(torch.int16), nan.view(torch.int16))


def test_the_data_is_little_endian_after_an_8_byte_aligned_header():
    data = dumps({"a": torch.tensor([1, 2], dtype=torch.int16)})
    (size,) = struct.unpack("<Q", data[:8])
    assert size % 8 == 0 and data[8 + size :] == b"\x01\x00\x02\x00"
    assert json.loads(data[8 : 8 + size]) == {"a": {"dtype": "I16", "shape": [2], "data_offsets": [0, 4]}}


def test_the_official_library_reads_what_we_write_and_we_read_what_it_writes():
    st = pytest.importorskip("safetensors.torch")
    tensors = _tensors()
    _assert_same(st.load(dumps(tensors)), {k: v.contiguous() for k, v in tensors.items()})
    written = st.save({k: v.contiguous() for k, v in tensors.items()}, metadata={"who": "official"})
    got, metadata = loads(written)
    _assert_same(got, tensors)
    assert metadata == {"who": "official"}


def test_a_model_files_weights_member_is_read_by_the_official_library(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    X, Y = make_multitask_classification(n_samples=60, n_features=3, random_state=0)
    clf = SharedBottomClassifier(embedding_dim=2, max_epochs=1, random_state=0).fit(X, Y)
    save(clf, tmp_path / "model.mtr")
    with zipfile.ZipFile(tmp_path / "model.mtr") as archive:
        assert archive.getinfo("weights.safetensors").compress_type == zipfile.ZIP_STORED
        tensors = st.load(archive.read("weights.safetensors"))
    for key, value in clf.net_.module_.state_dict().items():
        assert torch.equal(tensors[f"state['module'][{key!r}]"], value)
    np.testing.assert_array_equal(load(tmp_path / "model.mtr").predict_proba(X), clf.predict_proba(X))


def test_the_writer_refuses_dtypes_and_names_outside_the_format():
    with pytest.raises(ValueError, match="complex64"):
        dumps({"z": torch.zeros(2, dtype=torch.complex64)})
    with pytest.raises(ValueError, match="__metadata__"):
        dumps({"__metadata__": torch.zeros(2)})
    with pytest.raises(ValueError, match="not a torch.Tensor"):
        dumps({"a": np.zeros(2)})
    with pytest.raises(ValueError, match="metadata maps strings to strings"):
        dumps({}, {"a": 1})


def _buffer(header, data=b"", size=None):
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if size is None else size) + text + data


GOOD = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x01\x00", "fewer than the 8"),
        (_buffer({"a": GOOD}, bytes(8), size=10**12), "header declares 1000000000000 bytes"),
        (struct.pack("<Q", 5) + b"nope!", "not JSON"),
        (struct.pack("<Q", 2) + b"\xff\xfe", "not JSON"),
        (_buffer([1, 2]), "not a JSON object"),
        (struct.pack("<Q", 4000) + b"[" * 2000 + b"]" * 2000, "not JSON"),
        (struct.pack("<Q", 36) + b'{"a":{"x":1},"a":{"x":2}}'.ljust(36), "a name appears twice"),
        (_buffer({"__metadata__": {"a": 1}}), "__metadata__ is not a table of strings"),
        (_buffer({"a": {**GOOD, "extra": 1}}, bytes(8)), "not an object of dtype, shape and data_offsets"),
        (_buffer({"a": {**GOOD, "dtype": "C64"}}, bytes(8)), "dtype 'C64'"),
        (_buffer({"a": {**GOOD, "dtype": "U16"}}, bytes(8)), "dtype 'U16'"),
        (_buffer({"a": {**GOOD, "shape": [True, 2]}}, bytes(8)), "not a list of at most"),
        (_buffer({"a": {**GOOD, "shape": [-2]}}, bytes(8)), "not a list of at most"),
        (_buffer({"a": {**GOOD, "shape": [1] * 33, "data_offsets": [0, 4]}}, bytes(4)), "at most 32 sizes"),
        (_buffer({"a": {**GOOD, "shape": [2**40, 2**40]}}, bytes(8)), "8 bytes for a F32 tensor"),
        (_buffer({"a": {**GOOD, "data_offsets": [0]}}, bytes(8)), "not \\[begin, end\\]"),
        (_buffer({"a": {**GOOD, "data_offsets": [0, 8.0]}}, bytes(8)), "not \\[begin, end\\]"),
        (_buffer({"a": {**GOOD, "data_offsets": [8, 0]}}, bytes(8)), "outside the 8 data bytes"),
        (_buffer({"a": {**GOOD, "data_offsets": [0, 2**62]}}, bytes(8)), "outside the 8 data bytes"),
        (_buffer({"a": GOOD}, bytes(4)), "outside the 4 data bytes"),
        (_buffer({"a": GOOD}, bytes(12)), "end at byte 8 of a data buffer of 12"),
        (_buffer({"a": GOOD, "b": {**GOOD, "data_offsets": [4, 12]}}, bytes(12)), "starts at 4.*ends at 8"),
        (_buffer({"a": GOOD, "b": {**GOOD, "data_offsets": [12, 20]}}, bytes(20)), "starts at 12.*ends at 8"),
        (_buffer({"a": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}, b"\x00\x02"), "other than 0 and 1"),
    ],
)
def test_malformed_buffers_are_refused_with_a_value_error_before_allocating(data, match):
    with pytest.raises(ValueError, match=match):
        loads(data)


def test_zero_size_tensors_with_large_dimensions_allocate_nothing():
    data = _buffer({"a": {"dtype": "F64", "shape": [0, 2**40], "data_offsets": [0, 0]}, "b": GOOD}, bytes(8))
    tensors, _ = loads(data)
    assert tensors["a"].shape == (0, 2**40) and tensors["b"].shape == (2,)


def test_loaded_tensors_own_their_memory():
    data = bytearray(dumps({"a": torch.ones(4)}))
    tensor = loads(data)[0]["a"]
    data[-4:] = bytes(4)  # the buffer is reused: the tensor must not see it
    assert torch.equal(tensor, torch.ones(4))
