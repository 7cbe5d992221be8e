"""The safe save / load format of sklearn_mtr.persistence."""

import hashlib
import io
import json
import pickle
import threading
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from skorch.callbacks import Checkpoint

import sklearn_mtr.estimators as estimators_module
from sklearn_mtr import MMoEClassifier, SharedBottomClassifier
from sklearn_mtr.datasets import make_funnel_classification
from sklearn_mtr.optim import EW, PUB
from sklearn_mtr.persistence import FORMAT_VERSION, PIPELINE_FORMAT_VERSION, load, save

TINY = {"embedding_dim": 4, "max_epochs": 1, "batch_size": 64, "random_state": 0}


@pytest.fixture(scope="module")
def funnel():
    # Nested labels suit every estimator, the funnel ones (ESMM, AITM) included.
    return make_funnel_classification(
        n_samples=150, n_features=5, stage_rates=(0.5, 0.5), n_categorical=2, as_frame=True, random_state=0
    )


def _rewrite(path, member, data, fix_checksum):
    """Replace one member of a saved file, optionally with a matching checksum."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members[member] = data
    if fix_checksum:
        header = json.loads(members["format.json"])
        header["sha256"][member] = hashlib.sha256(data).hexdigest()
        members["format.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)


@pytest.mark.parametrize("name", sorted(c.__name__ for c in estimators_module.ESTIMATORS.values()))
def test_every_public_estimator_round_trips_with_identical_predictions(name, funnel, tmp_path):
    X, Y = funnel
    clf = getattr(estimators_module, name)(**TINY, n_threads=1).fit(X, Y)
    save(clf, tmp_path / "model.mtr")
    loaded = load(tmp_path / "model.mtr")
    assert type(loaded) is type(clf)
    assert (loaded.n_threads, loaded.early_stopping) == (1, "auto")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert repr(loaded.get_params(deep=False)) == repr(clf.get_params(deep=False))
    assert list(loaded.task_names_) == list(clf.task_names_)
    assert loaded.history_[:, "train_loss"] == clf.history_[:, "train_loss"]


def test_round_trip_keeps_every_feature_kind_and_string_labels(tmp_path):
    rng = np.random.RandomState(0)
    n = 120
    items = np.array(["a", "b", "c", "d"], dtype=object)
    X = pd.DataFrame(
        {
            "num": np.where(rng.rand(n) < 0.1, np.nan, rng.randn(n)),
            "item": pd.Series(rng.choice(items, n), dtype="str"),
            "user": rng.randint(0, 10**15, n),  # huge integer ids as a declared categorical
            "hist": [list(rng.choice(items, rng.randint(0, 4))) for _ in range(n)],
            "title": [None if i % 7 == 0 else f"Title {i % 5} words" for i in range(n)],
        }
    )
    y = np.where(rng.rand(n) < 0.5, "no", "yes")
    clf = MMoEClassifier(
        **TINY,
        n_experts=2,
        expert_hidden_sizes=(8,),
        categorical_features=["item", "user"],
        sequence_features={"hist": "item"},
        text_features=["title"],
    ).fit(X, y)
    save(clf, tmp_path / "model.mtr")
    loaded = load(tmp_path / "model.mtr")
    X_new = X.copy()
    X_new.loc[0, "item"] = "never seen"
    np.testing.assert_array_equal(loaded.predict_proba(X_new), clf.predict_proba(X_new))
    assert list(loaded.classes_) == ["no", "yes"]
    assert list(loaded.predict(X)) == list(clf.predict(X))


def test_a_loaded_estimator_continues_training_exactly_like_the_original(funnel, tmp_path):
    X, Y = funnel
    clf = MMoEClassifier(**TINY, n_experts=2, optimizer=PUB(refresh_every=2), early_stopping=True).fit(X, Y)
    save(clf, tmp_path / "model.mtr")
    loaded = load(tmp_path / "model.mtr")
    clf.partial_fit(X, Y)
    loaded.partial_fit(X, Y)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert loaded.n_iter_ == clf.n_iter_ == 2


def test_an_unfitted_estimator_round_trips_unfitted(tmp_path, funnel):
    clf = SharedBottomClassifier(optimizer=EW(), task_weights=np.array([1.0, 2.0]), bottom_hidden_sizes=(8, 4))
    save(clf, tmp_path / "model.mtr")
    loaded = load(tmp_path / "model.mtr")
    assert repr(loaded.get_params()) == repr(clf.get_params())
    assert isinstance(loaded.bottom_hidden_sizes, tuple)
    with pytest.raises(NotFittedError):
        loaded.predict_proba(funnel[0])


def test_a_model_saved_from_a_gpu_loads_on_a_cpu_only_machine(funnel, tmp_path, monkeypatch):
    X, Y = funnel
    clf = SharedBottomClassifier(**TINY).fit(X, Y)
    expected = clf.predict_proba(X)
    clf.device_ = "cuda:0"  # what a GPU fit records; save always writes CPU tensors
    save(clf, tmp_path / "model.mtr")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = load(tmp_path / "model.mtr")
    assert loaded.device_ == "cpu"
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_loading_onto_cuda_without_cuda_says_cuda_is_not_available(funnel, tmp_path, monkeypatch, device):
    X, Y = funnel
    save(SharedBottomClassifier(**TINY).fit(X, Y), tmp_path / "model.mtr")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=f"device='{device}' was requested but CUDA is not available"):
        load(tmp_path / "model.mtr", device=device)


def test_loading_onto_a_device_that_is_not_a_torch_device_names_it(funnel, tmp_path):
    X, Y = funnel
    save(SharedBottomClassifier(**TINY).fit(X, Y), tmp_path / "model.mtr")
    with pytest.raises(ValueError, match="device='gpu0' is not a torch device"):
        load(tmp_path / "model.mtr", device="gpu0")


def test_a_loaded_model_still_matches_integer_column_labels_by_label(tmp_path):
    X = pd.DataFrame(np.random.RandomState(0).randn(60, 3))  # integer labels 0, 1, 2
    Y = (np.random.RandomState(1).rand(60, 2) < 0.5).astype(int)
    save(SharedBottomClassifier(**TINY).fit(X, Y), tmp_path / "model.mtr")
    loaded = load(tmp_path / "model.mtr")
    with pytest.raises(ValueError, match="another order"):
        loaded.predict_proba(X[[2, 1, 0]])
    assert loaded.predict_proba(X.to_numpy()).shape == (60, 2)  # an array is still read by position


def test_a_modified_file_is_refused(funnel, tmp_path):
    X, Y = funnel
    path = tmp_path / "model.mtr"
    save(SharedBottomClassifier(**TINY).fit(X, Y), path)
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json")
    _rewrite(path, "config.json", config.replace(b'"max_epochs",1', b'"max_epochs",2'), fix_checksum=False)
    with pytest.raises(ValueError, match="checksum"):
        load(path)


def test_an_unknown_format_version_gives_a_clear_error(funnel, tmp_path):
    path = tmp_path / "model.mtr"
    save(SharedBottomClassifier(**TINY), path)
    with zipfile.ZipFile(path) as archive:
        header = json.loads(archive.read("format.json"))
    header["format_version"] = PIPELINE_FORMAT_VERSION + 1
    _rewrite(path, "format.json", json.dumps(header).encode(), fix_checksum=False)
    expected = (
        f"format version {PIPELINE_FORMAT_VERSION + 1}.*reads version {FORMAT_VERSION} .* and {PIPELINE_FORMAT_VERSION}"
    )
    with pytest.raises(ValueError, match=expected):
        load(path)


def test_files_that_are_not_model_files_are_refused(tmp_path):
    (tmp_path / "a.mtr").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a zip archive"):
        load(tmp_path / "a.mtr")
    with zipfile.ZipFile(tmp_path / "b.mtr", "w") as archive:
        archive.writestr("format.json", json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="does not name"):
        load(tmp_path / "b.mtr")


def test_unknown_classes_and_types_are_refused_even_with_valid_checksums(tmp_path):
    path = tmp_path / "model.mtr"
    save(SharedBottomClassifier(), path)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    _rewrite(path, "config.json", json.dumps({**config, "class": "subprocess.Popen"}).encode(), fix_checksum=True)
    with pytest.raises(ValueError, match="estimator class 'subprocess.Popen'"):
        load(path)
    bad_param = {"t": "object", "cls": "Popen", "v": {"t": "dict", "v": []}}
    config["params"]["v"].append(["optimizer", bad_param])
    _rewrite(path, "config.json", json.dumps(config).encode(), fix_checksum=True)
    with pytest.raises(ValueError, match="class 'Popen'"):
        load(path)


class _Payload:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_a_pickle_payload_in_place_of_the_weights_is_refused_and_never_run(funnel, tmp_path, monkeypatch):
    X, Y = funnel
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "model.mtr"
    save(SharedBottomClassifier(**TINY).fit(X, Y), path)
    for payload in (pickle.dumps({"module": _Payload()}), _torch_save({"module": _Payload()})):
        _rewrite(path, "weights.safetensors", payload, fix_checksum=True)
        with pytest.raises(ValueError, match="not a valid safetensors buffer"):
            load(path)
    assert not (tmp_path / "PWNED").exists()


def _torch_save(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_a_version_1_file_is_refused_by_its_version_before_its_pickle_is_read(tmp_path, monkeypatch):
    # Version 1 held the tensors in torch's pickle-based weights.pt; nothing of it is unpickled now.
    monkeypatch.chdir(tmp_path)
    members = {"config.json": b"{}", "weights.pt": _torch_save({"module": _Payload()})}
    header = {"format": "sklearn-mtr-safe", "format_version": 1, "sklearn_mtr_version": "0.1.0"}
    header["sha256"] = {k: hashlib.sha256(v).hexdigest() for k, v in members.items()}
    with zipfile.ZipFile(tmp_path / "old.mtr", "w") as archive:
        archive.writestr("format.json", json.dumps(header))
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match="format version 1 .*reads version 2 .*Version 1 stored the tensors in torch"):
        load(tmp_path / "old.mtr")
    assert not (tmp_path / "PWNED").exists()


class MyEW(EW):
    pass


@pytest.mark.parametrize(
    "params, match",
    [
        ({"callbacks": [Checkpoint()]}, "callbacks"),
        ({"optimizer": MyEW()}, "MyEW.*joblib"),
        ({"task_weights": lambda: 1}, "function.*joblib"),
    ],
)
def test_objects_the_format_cannot_hold_raise_and_point_to_joblib(params, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        save(SharedBottomClassifier(**params), tmp_path / "model.mtr")


def test_save_refuses_objects_that_are_not_estimators_of_this_package(tmp_path):
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(ValueError, match="joblib"):
        save(LogisticRegression(), tmp_path / "model.mtr")


def test_clone_of_a_loaded_estimator_is_unfitted(funnel, tmp_path):
    X, Y = funnel
    save(SharedBottomClassifier(**TINY).fit(X, Y), tmp_path / "model.mtr")
    twin = clone(load(tmp_path / "model.mtr"))
    assert not twin.__sklearn_is_fitted__()


def test_a_failed_save_leaves_the_previous_file_intact(funnel, tmp_path, monkeypatch):
    X, Y = funnel
    path = tmp_path / "model.mtr"
    clf = SharedBottomClassifier(**TINY).fit(X, Y)
    save(clf, path)
    before = path.read_bytes()

    def crash(self, name, data, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", crash)
    with pytest.raises(OSError, match="disk full"):
        save(clf, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.mtr"]


def test_threads_saving_to_one_path_do_not_collide(funnel, tmp_path, monkeypatch):
    X, Y = funnel
    path = tmp_path / "model.mtr"
    models = [SharedBottomClassifier(**TINY).fit(X, Y), SharedBottomClassifier(**{**TINY, "random_state": 1}).fit(X, Y)]
    # Both saves hold their archive open at once: with a temporary name shared by the process,
    # one thread truncates or renames the other's half-written file.
    barrier = threading.Barrier(2, timeout=10)
    writestr = zipfile.ZipFile.writestr

    def synchronised_writestr(self, name, data, *args, **kwargs):
        if name == "format.json":
            barrier.wait()
        return writestr(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", synchronised_writestr)
    errors = []

    def save_one(clf):
        try:
            save(clf, path)
        except Exception as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=save_one, args=(clf,)) for clf in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.mtr"]
    proba = load(path).predict_proba(X)
    assert any(np.array_equal(proba, clf.predict_proba(X)) for clf in models)


def _config(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))


def _set_param(config, key, value):
    """config.json with parameter ``key`` replaced by the tagged JSON ``value``."""
    pairs = [pair for pair in config["params"]["v"] if pair[0] != key]
    return {**config, "params": {"t": "dict", "v": [*pairs, [key, value]]}}


@pytest.mark.parametrize("tag", ["ndarray", "index"])
def test_a_string_dtype_wider_than_its_strings_is_refused_before_allocating(tmp_path, tag):
    # "<U100000" for 300 one-letter strings: 120 MB from a few hundred bytes of JSON (the attack
    # used "<U100000000", 2 GiB); the test stays fast without the check too.
    path = tmp_path / "model.mtr"
    save(SharedBottomClassifier(), path)
    value = {"t": tag, "dtype": "<U100000", "shape": [300], "v": ["a"] * 300}
    _rewrite(path, "config.json", json.dumps(_set_param(_config(path), "task_weights", value)).encode(), True)
    with pytest.raises(ValueError, match=r"parameter\['task_weights'\] declares strings of 100000 characters"):
        load(path)


def test_string_arrays_keep_their_width_when_small_and_are_narrowed_when_large(tmp_path):
    small = np.array(["a", "b"], dtype="<U10")  # a subset keeps the width of its source
    large = np.array(["a"] * 2000, dtype="<U50")
    for array, dtype in ((small, "<U10"), (large, "<U1")):
        save(SharedBottomClassifier(task_weights=array), tmp_path / "model.mtr")
        loaded = load(tmp_path / "model.mtr").task_weights
        assert loaded.dtype == np.dtype(dtype) and list(loaded) == list(array)


def test_a_member_larger_than_its_cap_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    from sklearn_mtr import persistence

    path = tmp_path / "model.mtr"
    save(SharedBottomClassifier(), path)
    padded = json.dumps(_config(path)).encode() + b" " * 5000  # whitespace deflates to almost nothing
    _rewrite(path, "config.json", padded, fix_checksum=True)
    monkeypatch.setattr(persistence, "MAX_CONFIG_BYTES", 4096)
    with pytest.raises(ValueError, match="config.json declares .* more than the 4096.*MAX_CONFIG_BYTES"):
        load(path)
    with zipfile.ZipFile(path) as archive:
        header = archive.read("format.json")
    _rewrite(path, "format.json", header + b" " * (1 << 17), fix_checksum=False)
    with pytest.raises(ValueError, match="format.json declares .* more than the 65536"):
        load(path)


def _patch_central_size(path, member, size):
    """Make the zip's central directory declare ``size`` uncompressed bytes for ``member``."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    at = data.index(b"PK\x01\x02")
    while data[at + 46 : at + 46 + len(name)] != name:
        at = data.index(b"PK\x01\x02", at + 4)
    data[at + 24 : at + 28] = size.to_bytes(4, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("member", ["config.json", "weights.safetensors"])
def test_a_member_longer_than_its_declared_size_is_refused(funnel, tmp_path, member):
    X, Y = funnel
    path = tmp_path / "model.mtr"
    save(SharedBottomClassifier(**TINY).fit(X, Y), path)
    _patch_central_size(path, member, 100)
    with pytest.raises(ValueError, match=f"not a valid sklearn-mtr model file: {member}"):
        load(path)


def test_a_damaged_deflate_stream_gives_the_documented_value_error(funnel, tmp_path):
    X, Y = funnel
    path = tmp_path / "model.mtr"
    save(SharedBottomClassifier(**TINY).fit(X, Y), path)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("config.json")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 10 : start + 60] = bytes(50)  # zeros in the middle of the deflated data
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not a valid sklearn-mtr model file: config.json cannot be read"):
        load(path)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("optimizer", {"t": "optimizer", "cls": "PUB", "v": {"t": "list", "v": [1]}}),  # not keyword arguments
        ("task_weights", {"t": "dict", "v": [[{"t": "list", "v": []}, 1]]}),  # an unhashable key
        ("task_weights", {"t": "dict", "v": [[1]]}),  # not a [key, value] pair
        ("task_weights", {"t": "ndarray", "dtype": "<f8", "shape": ["a"], "v": [1.0]}),
        ("task_weights", {"t": "ndarray", "dtype": "(4,)f8", "shape": [1], "v": [1.0]}),
        ("task_weights", {"t": "ndarray", "dtype": "<U1", "shape": [1], "v": [1]}),
        ("task_weights", {"t": "dataclass", "cls": "TextInput", "v": {"t": "dict", "v": [["nope", 1]]}}),
    ],
)
def test_malformed_tagged_values_give_the_documented_value_error(tmp_path, key, value):
    path = tmp_path / "model.mtr"
    save(SharedBottomClassifier(), path)
    _rewrite(path, "config.json", json.dumps(_set_param(_config(path), key, value)).encode(), fix_checksum=True)
    with pytest.raises(ValueError, match="not a valid sklearn-mtr model file"):
        load(path)


def test_sizes_the_weights_do_not_back_are_refused_before_the_network_is_built(funnel, tmp_path, monkeypatch):
    # bottom_hidden_sizes=(24000,) in the configuration, 8-wide weights in the file: the check
    # runs on the meta device, so the 24000-wide network is never allocated nor initialised.
    X, Y = funnel
    path = tmp_path / "model.mtr"
    save(SharedBottomClassifier(**TINY, bottom_hidden_sizes=(8,)).fit(X, Y), path)
    wide = _set_param(_config(path), "bottom_hidden_sizes", {"t": "tuple", "v": [24000]})
    _rewrite(path, "config.json", json.dumps(wide).encode(), fix_checksum=True)
    built = []
    monkeypatch.setattr(SharedBottomClassifier, "_make_net", lambda self, valid: built.append(1))
    with pytest.raises(
        ValueError, match=r"weights.safetensors holds .* of shape \(8, .*where the configuration builds \(24000,"
    ):
        load(path)
    assert not built


def test_torch_compile_options_in_a_file_are_refused_on_load(funnel, tmp_path):
    # torch.compile "options" can name a C++ compiler that predict_proba would run.
    X, Y = funnel
    path = tmp_path / "model.mtr"
    save(SharedBottomClassifier(**TINY).fit(X, Y), path)
    options = {"t": "dict", "v": [["options", {"t": "dict", "v": [["cpp.cxx", "/tmp/evil"]]}]]}
    _rewrite(path, "config.json", json.dumps(_set_param(_config(path), "compile", options)).encode(), True)
    with pytest.raises(ValueError, match="parameters are not valid for SharedBottomClassifier: compile.*'options'"):
        load(path)


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write_members(path, members, compress=None):
    """Write ``members`` (name, bytes pairs) with checksums that match; ``compress`` names the
    members to deflate."""
    header = json.loads(dict(members)["format.json"])
    header["sha256"] = {name: hashlib.sha256(data).hexdigest() for name, data in members if name != "format.json"}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            data = json.dumps(header).encode() if name == "format.json" else data
            method = zipfile.ZIP_DEFLATED if name in (compress or ()) else zipfile.ZIP_STORED
            archive.writestr(name, data, compress_type=method)


@pytest.fixture
def saved(funnel, tmp_path):
    X, Y = funnel
    path = tmp_path / "model.mtr"
    save(MMoEClassifier(**TINY, n_experts=2, expert_hidden_sizes=(4,)).fit(X, Y), path)
    return path


def test_the_weights_member_must_be_stored_uncompressed(saved):
    # a deflated member could inflate ~1000 times; stored, the weights are bytes of the file
    _write_members(saved, list(_members(saved).items()), compress={"weights.safetensors"})
    with pytest.raises(ValueError, match="weights.safetensors is compressed"):
        load(saved)


def test_a_compression_bomb_is_refused_by_its_ratio_before_it_is_inflated(saved):
    members = _members(saved)
    members["config.json"] += b" " * (4 << 20)  # valid JSON that deflates about 1000 times
    _write_members(saved, list(members.items()), compress={"config.json"})
    with pytest.raises(ValueError, match="config.json declares .* MAX_COMPRESSION_RATIO=32 times"):
        load(saved)


@pytest.mark.parametrize("change", ["duplicate", "extra"])
def test_duplicate_or_unexpected_members_are_refused(saved, change):
    members = list(_members(saved).items())
    members.append(("config.json", b"{}") if change == "duplicate" else ("notes.txt", b"hello"))
    with pytest.warns(UserWarning, match="Duplicate name") if change == "duplicate" else _nothing():
        _write_members(saved, members)
    with pytest.raises(
        ValueError, match="appears twice" if change == "duplicate" else "unexpected ones \\['notes.txt'"
    ):
        load(saved)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _retarget(config, old, new):
    """config.json with the tensor reference ``old`` renamed ``new``."""
    return json.loads(json.dumps(config).replace(json.dumps(old), json.dumps(new), 1))


@pytest.mark.parametrize("fault", ["unplaced", "twice"])
def test_each_tensor_is_placed_exactly_once(saved, fault):
    from sklearn_mtr._safetensors import dumps, loads

    members = _members(saved)
    tensors, _ = loads(members["weights.safetensors"])
    config = json.loads(members["config.json"])
    first, second = list(tensors)[:2]
    if fault == "unplaced":
        tensors["spare"] = torch.zeros(3)
    else:  # two places share one tensor: load_state_dict would copy it twice
        config = _retarget(config, second, first)
        del tensors[second]
    members["config.json"], members["weights.safetensors"] = json.dumps(config).encode(), dumps(tensors)
    _write_members(saved, list(members.items()))
    with pytest.raises(ValueError, match="does not place" if fault == "unplaced" else "absent from .* or named twice"):
        load(saved)


def test_tensors_are_refused_outside_the_training_state(saved):
    config = _set_param(_config(saved), "task_weights", {"t": "tensor", "name": "state['module']['gates.0.bias']"})
    _rewrite(saved, "config.json", json.dumps(config).encode(), fix_checksum=True)
    with pytest.raises(ValueError, match="unknown value tag 'tensor'"):
        load(saved)


def test_counts_the_weights_do_not_back_stop_the_build_before_it_grows(saved):
    # Widths cost nothing on the meta device (experts are batched: n_experts is a width), but
    # 50,000 tower layers are 100,000 Python modules; the build stops once it registers more
    # than the file's tensors allow.
    config = _set_param(_config(saved), "tower_hidden_sizes", {"t": "tuple", "v": [4] * 50_000})
    _rewrite(saved, "config.json", json.dumps(config).encode(), fix_checksum=True)
    with pytest.raises(ValueError, match="builds a network of more than \\d+ (modules|tensors), where"):
        load(saved)


def test_a_number_of_tasks_the_weights_do_not_back_is_refused(saved):
    config = _config(saved)
    pairs = config["fitted"]["v"]
    config["fitted"]["v"] = [[k, 10**9 if k == "n_tasks_" else v] for k, v in pairs]
    _rewrite(saved, "config.json", json.dumps(config).encode(), fix_checksum=True)
    with pytest.raises(ValueError, match="n_tasks_=1000000000 is not a count of tasks"):
        load(saved)


def _edit_encoder(config, edit):
    """config.json with the fitted TabularEncoder's attribute table passed through ``edit``."""
    for pair in config["fitted"]["v"]:
        if pair[0] == "feature_encoder_":
            pair[1]["v"]["v"] = edit(pair[1]["v"]["v"])
    return config


@pytest.mark.parametrize(
    "edit",
    [
        lambda pairs: [p for p in pairs if p[0] != "scale_"],  # found by the fuzz suite: AttributeError
        lambda pairs: [[k, "x" if k == "scale_" else v] for k, v in pairs],
    ],
)
def test_fitted_state_that_cannot_predict_is_refused_on_load_not_at_the_first_predict(saved, edit):
    config = _edit_encoder(_config(saved), edit)
    _rewrite(saved, "config.json", json.dumps(config).encode(), fix_checksum=True)
    with pytest.raises(ValueError, match="the rebuilt estimator cannot predict"):
        load(saved)


def test_a_module_tensor_of_another_dtype_is_refused(saved):
    from sklearn_mtr._safetensors import dumps, loads

    members = _members(saved)
    tensors, _ = loads(members["weights.safetensors"])
    name = next(n for n in tensors if n.startswith("state['module']"))
    tensors[name] = tensors[name].double()
    _rewrite(saved, "weights.safetensors", dumps(tensors), fix_checksum=True)
    with pytest.raises(
        ValueError, match=r"holds .* \(torch.float64\), where the configuration builds .* \(torch.float32\)"
    ):
        load(saved)


def test_the_load_time_prediction_check_does_not_compile(funnel, tmp_path, monkeypatch):
    # compile=True is kept for the user's predict; the check must not run torch.compile (slow,
    # and it may need a compiler the loading machine lacks).
    X, Y = funnel
    save(SharedBottomClassifier(**TINY).fit(X, Y).set_params(compile=True), tmp_path / "model.mtr")
    calls = []
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: calls.append(kwargs) or module)
    loaded = load(tmp_path / "model.mtr")
    assert calls == [] and loaded.net_.compile_module is True
    loaded.predict_proba(X)
    assert calls == [{}]
