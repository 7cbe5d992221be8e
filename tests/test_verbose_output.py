"""What ``verbose`` prints: a per-epoch table a person reads, clean in a log file."""

import numpy as np
import pytest

import sklearn_mtr._printlog as printlog
from sklearn_mtr import MMoEClassifier
from sklearn_mtr._printlog import summarise
from sklearn_mtr.datasets import make_multitask_classification

TINY = {
    "n_experts": 2,
    "expert_hidden_sizes": (8,),
    "tower_hidden_sizes": (4,),
    "embedding_dim": 4,
    "batch_size": 100,
    "max_epochs": 2,
    "random_state": 0,
    "verbose": 1,
}


@pytest.fixture(scope="module")
def data():
    return make_multitask_classification(n_samples=400, n_features=5, n_categorical=1, as_frame=True, random_state=0)


def test_summarise_lists_few_values_and_the_range_of_many():
    assert summarise([0.5185889601707458, 0.4814109802246094]) == "0.519/0.481"
    assert summarise([45.175777435302734]) == "45.2"
    assert summarise([0.2, 0.0312, 0.1, 0.214, 0.05, 0.1, 0.15, 0.1]) == "0.0312..0.214 (8)"


def test_a_verbose_fit_into_a_file_prints_per_task_validation_auc_summaries_and_no_escape_codes(data, capsys):
    X, Y = data  # capsys: stdout and stderr are not terminals, as in a log file
    clf = MMoEClassifier(**TINY, optimizer="pub", early_stopping=True).fit(X, Y)
    out, err = capsys.readouterr()
    header, _rule, *rows = out.strip().splitlines()
    assert {"valid_auc", "valid_auc_task0", "valid_auc_task1", "optim_weights"} <= set(header.split())
    assert len(rows) == 2 and "\x1b[" not in out and "[" not in out  # no colour, no raw lists
    weights = clf.history_[-1, "optim_weights"]
    assert f"{weights[0]:.3g}/{weights[1]:.3g}" in rows[-1]  # the table summarises ...
    assert isinstance(weights, list) and len(weights) == 2  # ... the history keeps the values
    auc = clf.history_[-1, "valid_auc_task1"]
    assert f"{auc:.4f}" in rows[-1].split()
    assert "it/s" not in err and "progress_bar" not in dict(clf.net_.callbacks_)  # no per-batch lines


def test_a_verbose_fit_in_a_terminal_keeps_colours_and_the_progress_bar(data, capsys, monkeypatch):
    X, Y = data
    monkeypatch.setattr(printlog, "is_terminal", lambda stream: True)
    clf = MMoEClassifier(**TINY, early_stopping=True).fit(X, Y)
    out = capsys.readouterr().out
    assert "\x1b[" in out  # the best epoch's values are coloured
    assert "progress_bar" in dict(clf.net_.callbacks_)
    assert np.isfinite(clf.history_[-1, "valid_auc_task0"])
