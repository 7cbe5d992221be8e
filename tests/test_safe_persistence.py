"""The safe save / load format of sklearn_mtr.persistence."""

import hashlib
import io
import json
import pickle
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
from sklearn_mtr.persistence import FORMAT_VERSION, load, save

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


@pytest.mark.parametrize("name", estimators_module.__all__)
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
    header["format_version"] = FORMAT_VERSION + 1
    _rewrite(path, "format.json", json.dumps(header).encode(), fix_checksum=False)
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1}.*reads version {FORMAT_VERSION}"):
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


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_payload_in_the_weights_is_refused_and_never_run(funnel, tmp_path, monkeypatch):
    X, Y = funnel
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "model.mtr"
    save(SharedBottomClassifier(**TINY).fit(X, Y), path)
    _rewrite(path, "weights.pt", pickle.dumps({"module": _Payload()}), fix_checksum=True)
    with pytest.raises(ValueError, match="tensors only"):
        load(path)
    buffer = io.BytesIO()
    torch.save({"module": _Payload()}, buffer)
    _rewrite(path, "weights.pt", buffer.getvalue(), fix_checksum=True)
    with pytest.raises(ValueError, match="tensors only"):
        load(path)
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
