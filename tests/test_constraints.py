"""The declarative parameter constraints: what each kind accepts, and the error naming it."""

import numbers

import numpy as np
import pytest

from sklearn_mtr import MMoEClassifier
from sklearn_mtr.extending import InstanceOf, Interval, Options, Pair, check_parameters
from sklearn_mtr.optim import PCGrad


@pytest.mark.parametrize(
    ("constraint", "accepted", "refused"),
    [
        (Interval(numbers.Integral, 1), [1, 7, np.int64(3)], [0, -1, 1.0, True, "2", None]),
        (Interval(numbers.Real, 0, closed="right"), [1e-9, 2, 0.5], [0, 0.0, -1, float("inf"), float("nan"), False]),
        (Interval(numbers.Real, 0, 1, closed="neither"), [0.5], [0, 1, 1.0, -0.1]),
        (Interval(numbers.Real, 0, 1, closed="left"), [0, 0.999], [1, 1.0]),
        (Options("auto", True, False), ["auto", True, False, np.bool_(True)], [1, 0, "on", None]),
        (Options(None), [None], [0, "None", False]),
        (
            Pair(Interval(numbers.Real, 0, 1, closed="left")),
            [(0.9, 0.999), [0, 0.5], np.array([0.9, 0.99])],
            [(0.9,), (0.9, 1.0), 0.9, "ab", np.array([[0.9, 0.99]])],
        ),
        (InstanceOf((list, tuple), "a list"), [[], ()], [None, "abc", {}]),
    ],
)
def test_each_constraint_accepts_exactly_its_values(constraint, accepted, refused):
    assert all(constraint.accepts(v) for v in accepted)
    assert not any(constraint.accepts(v) for v in refused)


@pytest.mark.parametrize(
    ("constraint", "text"),
    [
        (Interval(numbers.Integral, 1), "a positive integer"),
        (Interval(numbers.Integral, 0), "a non-negative integer"),
        (Interval(numbers.Real, 0, closed="right"), "a positive number"),
        (Interval(numbers.Real, 0, 1, closed="left"), "a number in [0, 1)"),
        (Interval(numbers.Integral, 2), "an integer >= 2"),
        (Interval(numbers.Real), "a finite number"),
        (Options("mean", "sum"), "'mean' or 'sum'"),
    ],
)
def test_each_constraint_says_what_it_accepts(constraint, text):
    assert constraint.describe() == text


def test_the_error_names_the_owner_the_parameter_what_it_may_be_and_the_value():
    with pytest.raises(ValueError, match=r"^PCGrad: reduction must be 'sum' or 'mean', got 'max'\.$"):
        PCGrad(reduction="max").check_parameters()
    with pytest.raises(ValueError, match=r"^n_threads must be None or a positive integer, got 0\.$"):
        MMoEClassifier(n_threads=0).fit(np.zeros((20, 2)), np.arange(20) % 2)


def test_a_table_is_checked_in_its_order_and_stops_at_the_first_bad_parameter():
    class Owner:
        a, b = 0, "x"

    with pytest.raises(ValueError, match="a must be"):
        check_parameters(Owner(), {"a": [Interval(numbers.Integral, 1)], "b": [Options("y")]})
    check_parameters(Owner(), {"b": [Options("x")]})


# -- the architectures' tables ------------------------------------------------------------------
def _architectures():
    from sklearn_mtr import models

    return [
        getattr(models, name)
        for name in models.__all__
        if isinstance(getattr(models, name), type)
        and issubclass(getattr(models, name), models.MultiTaskModule)
        and name not in ("MultiTaskModule", "SplitPrimaryTower")
    ]


@pytest.mark.parametrize("architecture", _architectures(), ids=lambda a: a.__name__)
def test_every_architecture_parameter_has_a_constraint_its_default_satisfies(architecture):
    table = architecture.parameter_constraints()
    assert set(table) == set(architecture.hyperparameters())
    architecture.check_hyperparameters({n: p.default for n, p in architecture.hyperparameters().items()})


def test_an_architecture_checks_its_table_when_built_directly():
    from model_fixtures import SCHEMA

    from sklearn_mtr.models import PLE, MMoE

    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\), got 1.5"):
        MMoE(SCHEMA, 2, dropout=1.5)
    with pytest.raises(ValueError, match="n_shared_experts must be a positive integer, got 0"):
        PLE(SCHEMA, 2, n_shared_experts=0)


def _refused_value(allowed):
    return next(v for v in (-1, "not-an-option", (0,), 0.5) if not any(c.accepts(v) for c in allowed))


@pytest.mark.parametrize("name", sorted(__import__("sklearn_mtr.estimators", fromlist=["ESTIMATORS"]).ESTIMATORS))
def test_an_estimator_checks_its_architecture_table_before_touching_the_data(name):
    from sklearn_mtr.estimators import ESTIMATORS

    cls = ESTIMATORS[name]
    architecture = cls._architecture
    table = architecture.parameter_constraints() if architecture is not None else cls._parameter_constraints
    table = {n: c for n, c in table.items() if n != "embedding_dim"}  # a shared parameter, checked anyway
    assert table, f"{cls.__name__} checks no architecture parameter"
    for param, allowed in table.items():
        est = cls(**{param: _refused_value(allowed)})
        with pytest.raises(ValueError, match=f"^{param} must be"):
            est.fit(np.zeros((4, 2)), np.zeros((4, 2), dtype=int))
        assert not hasattr(est, "feature_encoder_")  # refused before any encoding
