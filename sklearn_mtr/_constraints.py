"""Declarative parameter constraints: one table per class, checked once at the start of fit.

A table maps a parameter name to the list of what it may be (any one suffices): an
:class:`Interval` of integers or finite numbers, :class:`Options` (exact values: strings,
True / False, None), :func:`Pair` (two numbers, as Adam's ``betas``), :class:`Sequence`
(a tuple or list of numbers) or :class:`InstanceOf`. :func:`check_parameters` reads the values from the object and
raises a ``ValueError`` naming the parameter, what it may be and what it got. Constraints that
involve several parameters (or the data) stay in code next to the table.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Interval:
    """Integers (``kind=numbers.Integral``) or finite numbers (``numbers.Real``) between
    ``low`` and ``high`` (None: unbounded); ``closed`` says which ends belong to it."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"  # "both", "left", "right" or "neither"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, self.kind):
            return False
        if self.kind is not numbers.Integral and not math.isfinite(value):
            return False
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and not (value >= self.low if left else value > self.low):
            return False
        return self.high is None or (value <= self.high if right else value < self.high)

    def describe(self) -> str:
        noun = "integer" if self.kind is numbers.Integral else "number"
        if self.low is None and self.high is None:
            return "an integer" if noun == "integer" else "a finite number"
        if self.high is None and self.low == 0:
            return f"a non-negative {noun}" if self.closed in ("both", "left") else f"a positive {noun}"
        if self.high is None and self.low == 1 and noun == "integer":
            return "a positive integer"
        if self.high is None:
            return f"an {noun} >{'=' if self.closed in ('both', 'left') else ''} {self.low}"
        if self.low is None:
            return f"a {noun} <{'=' if self.closed in ('both', 'right') else ''} {self.high}"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        return f"a{'n' if noun == 'integer' else ''} {noun} in {left}{self.low}, {self.high}{right}"


@dataclass(frozen=True)
class Options:
    """Exact values: a string matches strings only, True / False match booleans only (never 1
    or 0), None matches None."""

    values: tuple

    def __init__(self, *values: Any) -> None:
        object.__setattr__(self, "values", values)

    def accepts(self, value: Any) -> bool:
        for option in self.values:
            if option is None and value is None:
                return True
            if isinstance(option, bool) and isinstance(value, (bool, np.bool_)) and bool(value) is option:
                return True
            if isinstance(option, str) and isinstance(value, str) and value == option:
                return True
        return False

    def describe(self) -> str:
        shown = [repr(v) for v in self.values]
        return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


@dataclass(frozen=True)
class Sequence:
    """A tuple, list or 1-D array of ``length`` items (any length when None), each in ``item``."""

    item: Interval
    length: int | None = None
    what: str = ""

    def accepts(self, value: Any) -> bool:
        if isinstance(value, np.ndarray) and value.ndim == 1:
            value = value.tolist()
        if not isinstance(value, (tuple, list)) or (self.length is not None and len(value) != self.length):
            return False
        return all(self.item.accepts(v) for v in value)

    def describe(self) -> str:
        count = "a tuple" if self.length is None else f"{self.length} numbers:"
        return self.what or f"{count} of {self.item.describe().removeprefix('a ').removeprefix('an ')}s"


@dataclass(frozen=True)
class InstanceOf:
    """An instance of one of ``types`` (``what`` says it in words)."""

    types: tuple
    what: str

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.types)

    def describe(self) -> str:
        return self.what


def Pair(item: Interval, what: str = "") -> Sequence:
    """Two numbers, each in ``item`` (Adam's ``betas``)."""
    return Sequence(item, 2, what)


def check_value(name: str, value: Any, allowed: list, prefix: str = "") -> None:
    """Check one value against its list of constraints (a function's argument, say).

    Raises
    ------
    ValueError
        ``"<prefix>: <name> must be <what it may be>, got <value>."`` when it matches none.
    """
    if any(c.accepts(value) for c in allowed):
        return
    what = " or ".join(c.describe() for c in allowed)
    raise ValueError(f"{prefix + ': ' if prefix else ''}{name} must be {what}, got {value!r}.")


def check_parameters(owner: Any, constraints: dict[str, list], prefix: str | None = None) -> None:
    """Check every parameter of ``constraints`` on ``owner`` (read with ``getattr``).

    Raises
    ------
    ValueError
        ``"<prefix>: <name> must be <what it may be>, got <value>."`` for the first parameter
        that matches none of its constraints (``prefix``: the owner's class name by default,
        none when ``""``).
    """
    head = type(owner).__name__ if prefix is None else prefix
    for name, allowed in constraints.items():
        check_value(name, getattr(owner, name), allowed, head)
