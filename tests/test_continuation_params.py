"""A continuation (warm_start fit, partial_fit) applies every per-call parameter, and refuses a
change to any other: the set in ``_fitting.PER_CALL_PARAMS`` cannot drift from what the code applies."""

import copy

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from sklearn_mtr import MMoEClassifier
from sklearn_mtr._fitting import PER_CALL_PARAMS
from sklearn_mtr.datasets import make_multitask_classification

N = 300
X, Y = make_multitask_classification(n_samples=N, random_state=0)
FIRST = {
    "n_experts": 2,
    "expert_hidden_sizes": (8,),
    "tower_hidden_sizes": (4,),
    "embedding_dim": 4,
    "max_epochs": 1,
    "batch_size": 64,
    "early_stopping": False,
    "ema_epochs": None,
    "warm_start": True,
    "random_state": 0,
}


class Record(Callback):
    """Records the torch thread count at each epoch (a callback the user passes)."""

    def __init__(self):
        self.threads = []

    def on_epoch_begin(self, net, **kwargs):
        self.threads.append(torch.get_num_threads())


def _callback(clf, name):
    return dict(clf.net_.callbacks_)[name]


def _valid_rows(clf):
    return sum(b.get("valid_batch_size", 0) for b in clf.history_[-1]["batches"])


def _with_stopping(**params):
    return {"early_stopping": True, **params}


# parameter -> (parameters of the first fit besides FIRST, the new value, what the continuation shows)
PROBES = {
    "batch_size": ({}, 32, lambda clf, out: len(clf.history_[-1]["batches"]) == -(-N // 32)),
    "max_epochs": ({}, 3, lambda clf, out: clf.n_iter_ == 1 + 3),
    "lr": ({}, 0.05, lambda clf, out: clf.net_.optimizer_.param_groups[0]["lr"] == 0.05),
    "compile": ({}, {"backend": "eager"}, lambda clf, out: clf.net_.compile_module == {"backend": "eager"}),
    "callbacks": ({}, [Record()], lambda clf, out: len(_callback(clf, "user_0_Record").threads) == 1),
    "early_stopping": ({}, True, lambda clf, out: "valid_loss" in clf.history_[-1]),
    "validation_fraction": (_with_stopping(), 0.5, lambda clf, out: _valid_rows(clf) == N // 2),
    "n_iter_no_change": (_with_stopping(), 7, lambda clf, out: _callback(clf, "early_stopping").patience == 7),
    "tol": (_with_stopping(), 0.25, lambda clf, out: _callback(clf, "early_stopping").threshold == 0.25),
    "scoring": (_with_stopping(), "loss", lambda clf, out: _callback(clf, "early_stopping").monitor == "valid_loss"),
    "ema_epochs": ({}, 1.0, lambda clf, out: "weight_averaging" in dict(clf.net_.callbacks_)),
    "n_threads": (
        {"callbacks": [Record()]},
        torch.get_num_threads() + 1,
        lambda clf, out: _callback(clf, "user_0_Record").threads == [torch.get_num_threads() + 1],
    ),
    "verbose": ({}, 1, lambda clf, out: "train_loss" in out),
    "warm_start": ({}, False, lambda clf, out: clf.n_iter_ == 1),
    # random_state: checked against the same continuation with the first fit's value, below
    "random_state": ({}, 1, None),
}


def test_every_per_call_parameter_has_a_probe():
    assert set(PROBES) == set(PER_CALL_PARAMS)


@pytest.mark.parametrize("name", sorted(PER_CALL_PARAMS))
def test_a_continuation_applies_the_parameter(name, capsys):
    first, value, shows = PROBES[name]
    clf = MMoEClassifier(**{**FIRST, **first}).fit(X, Y)
    same = copy.deepcopy(clf)
    capsys.readouterr()
    clf.set_params(**{name: value}).fit(X, Y)
    out = capsys.readouterr().out
    if name == "random_state":
        same.fit(X, Y)
        assert not np.allclose(clf.predict_proba(X), same.predict_proba(X))
    else:
        assert shows(clf, out), name


def test_a_continuation_with_the_same_parameters_repeats_the_seeded_run():
    # the per-call seed comes from random_state: unchanged, two copies continue identically
    clf = MMoEClassifier(**FIRST).fit(X, Y)
    other = copy.deepcopy(clf)
    np.testing.assert_array_equal(clf.fit(X, Y).predict_proba(X), other.fit(X, Y).predict_proba(X))


@pytest.mark.parametrize(("name", "value"), [("n_experts", 3), ("optimizer", "pcgrad"), ("device", "cpu")])
def test_a_continuation_refuses_a_changed_model_parameter(name, value):
    clf = MMoEClassifier(**{**FIRST, "device": "auto"}).fit(X, Y)
    before = clf.predict_proba(X)
    with pytest.raises(ValueError, match=rf"\['{name}'\] changed since the model was built") as err:
        clf.set_params(**{name: value}).partial_fit(X, Y)
    if name == "device":
        assert "load(path, device=...)" in str(err.value)
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    assert clf.n_iter_ == 1
