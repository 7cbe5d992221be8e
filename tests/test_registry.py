"""A new architecture is one file (here, the module below) plus one registration line, and gets
every check the built-in ones get: scikit-learn's, the safe format, the command line, the API docs."""

import inspect
import json
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator
from test_sklearn_compat import expected_failed_checks, small_estimator
from torch import nn

import sklearn_mtr
from sklearn_mtr.cli import main
from sklearn_mtr.datasets import make_multitask_classification
from sklearn_mtr.estimators import ESTIMATORS
from sklearn_mtr.estimators._generated import estimator_for
from sklearn_mtr.estimators._registry import api_autosummary, register
from sklearn_mtr.extending import (
    MLP,
    InputEmbedding,
    MultiTaskModule,
    register_architecture,
    tower_logits,
    unregister_architecture,
)
from sklearn_mtr.persistence import load, save


class Pyramid(MultiTaskModule):
    """A shared MLP whose layers halve, then one linear head per task.

    Parameters
    ----------
    width : int, default=16
        Width of the first shared layer.
    depth : int, default=2
        Number of shared layers.
    """

    def __init__(self, schema, n_tasks, *, embedding_dim=16, width=16, depth=2):
        super().__init__()
        self.embedding = InputEmbedding(schema, embedding_dim, n_tasks)
        self.trunk = MLP(self.embedding.out_dim, [max(width >> i, 1) for i in range(depth)])
        self.towers = nn.ModuleList(nn.Linear(self.trunk.out_dim, 1) for _ in range(n_tasks))

    def forward(self, batch):
        return self.embedding.bags.add_to(tower_logits(self.towers, self.trunk(self.embedding(batch))), batch)


X, Y = make_multitask_classification(n_samples=200, n_tasks=2, as_frame=True, random_state=0)


@pytest.fixture
def pyramid():
    cls = register_architecture("pyramid", Pyramid)  # the one registration line
    yield cls
    unregister_architecture("pyramid")


def test_the_built_in_estimators_are_registered_with_their_cli_names():
    assert {name: cls.__name__ for name, cls in ESTIMATORS.items()} == {
        "onerank": "OneRankClassifier",
        "grec": "GRecClassifier",
        "shared_bottom": "SharedBottomClassifier",
        "mmoe": "MMoEClassifier",
        "ple": "PLEClassifier",
        "resflow": "ResFlowClassifier",
        "omoe": "OMoEClassifier",
        "dselect_k": "DSelectKClassifier",
        "cross_stitch": "CrossStitchClassifier",
        "pepnet": "PEPNetClassifier",
        "dbmtl": "DBMTLClassifier",
        "esmm": "ESMMClassifier",
        "aitm": "AITMClassifier",
        "escm2": "ESCM2Classifier",
    }
    assert all(getattr(sklearn_mtr, cls.__name__) is cls for cls in ESTIMATORS.values())


def test_a_registered_architecture_is_a_public_estimator_with_the_modules_parameters(pyramid):
    assert pyramid.__name__ == "PyramidClassifier" and sklearn_mtr.estimators.PyramidClassifier is pyramid
    names = list(inspect.signature(pyramid).parameters)
    assert names[:2] == ["width", "depth"] and {"lr", "embedding_dim", "optimizer"} <= set(names)
    clf = pyramid(width=8, depth=1, embedding_dim=4, max_epochs=1, random_state=0)
    assert clone(clf).get_params()["width"] == 8
    assert clf.fit(X, Y).net_.module_.trunk.out_dim == 8  # the parameters reach the module
    assert pickle.loads(pickle.dumps(clf)).predict_proba(X).shape == (200, 2)
    with pytest.raises(TypeError, match="wdith"):
        pyramid(wdith=8)
    with pytest.raises(TypeError):
        pyramid(8)  # keyword-only, as the hand-written estimators


def test_a_registered_architecture_passes_the_scikit_learn_checks(pyramid):
    estimator = small_estimator("pyramid", pyramid)
    check_estimator(estimator, expected_failed_checks=expected_failed_checks(estimator))


def test_a_registered_architecture_round_trips_through_the_safe_format(pyramid, tmp_path):
    clf = pyramid(width=8, embedding_dim=4, max_epochs=1, random_state=0).fit(X, Y)
    save(clf, tmp_path / "m.mtr")
    np.testing.assert_array_equal(load(tmp_path / "m.mtr").predict_proba(X), clf.predict_proba(X))


def test_a_registered_architecture_is_a_model_of_the_command_line(pyramid, tmp_path):
    frame = X.copy()
    frame[["click", "buy"]] = Y.to_numpy()
    frame.to_csv(tmp_path / "train.csv", index=False)
    args = ["fit", str(tmp_path / "train.csv"), "--targets", "click,buy", "--model", "pyramid", "--max-epochs", "1"]
    assert main([*args, "--param", "width=8", "-o", str(tmp_path / "m.mtr")]) == 0
    model = load(tmp_path / "m.mtr")
    assert type(model) is pyramid and model.width == 8
    assert json.loads((tmp_path / "m.metrics.json").read_text())["model"] == "PyramidClassifier"


def test_a_registered_architecture_is_in_the_api_reference_with_its_documentation(pyramid):
    assert "   PyramidClassifier" in api_autosummary().split("Funnel architectures")[0]
    doc = pyramid.__doc__
    assert "width : int, default=16" in doc and "Width of the first shared layer." in doc
    assert "ema_epochs : float or None" in doc  # the shared parameters' documentation
    assert "%(common)s" not in doc


def test_the_generated_example_runs(pyramid):
    import doctest

    (test,) = doctest.DocTestFinder(recurse=False).find(pyramid, "PyramidClassifier", globs={})
    assert len(test.examples) == 5
    assert doctest.DocTestRunner().run(test).failed == 0


class _NoDefault(MultiTaskModule):
    """Parameters
    ----------
    width : int
        Width.
    """

    def __init__(self, schema, n_tasks, *, embedding_dim=16, width):
        super().__init__()


class _Undocumented(MultiTaskModule):
    """No parameters section."""

    def __init__(self, schema, n_tasks, *, embedding_dim=16, width=3):
        super().__init__()


class _Clash(MultiTaskModule):
    """Parameters
    ----------
    lr : float, default=1.0
        A clash.
    """

    def __init__(self, schema, n_tasks, *, embedding_dim=16, lr=1.0):
        super().__init__()


@pytest.mark.parametrize(
    ("architecture", "message"),
    [
        (_NoDefault, "'width' needs a default"),
        (_Undocumented, r"documents no \['width'\]"),
        (_Clash, r"\['lr'\] clash"),
        (torch.nn.Linear, "not a MultiTaskModule subclass"),
    ],
)
def test_an_architecture_that_breaks_the_contract_is_refused_naming_what(architecture, message):
    with pytest.raises(ValueError, match=message):
        estimator_for(architecture, "XClassifier")


def test_registering_a_taken_or_bad_name_is_refused(pyramid):
    with pytest.raises(ValueError, match="already registered"):
        register_architecture("pyramid", Pyramid, class_name="OtherClassifier")
    with pytest.raises(ValueError, match="already registered"):
        register("mmoe2", sklearn_mtr.MMoEClassifier)  # one class, one name
    with pytest.raises(ValueError, match="lower-case identifier"):
        register_architecture("Bad Name", Pyramid)
    with pytest.raises(ValueError, match="family"):
        register_architecture("pyramid2", Pyramid, family="other")
    assert "pyramid2" not in ESTIMATORS


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_an_estimator_passes_its_architecture_every_hyperparameter_with_the_same_default(name):
    # the default _build_module reads the estimator's parameters named like the module's: a
    # module parameter the estimator lacks, or with another default, would silently differ
    cls = ESTIMATORS[name]
    if cls._architecture is None:
        pytest.skip(f"{cls.__name__} builds its module itself")
    params = inspect.signature(cls).parameters
    for hyper, p in cls._architecture.hyperparameters().items():
        assert hyper in params, hyper
        assert params[hyper].default == p.default, hyper
