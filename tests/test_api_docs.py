"""The API reference (docs/api.rst) lists every public name, and only names that exist.

``__all__`` is read from the source (no import needed, so a module with an optional
dependency is checked too); a name exported by a subpackage counts as documented when it is
documented under that subpackage or under a package above it (``sklearn_mtr.MMoEClassifier``
documents ``sklearn_mtr.estimators.MMoEClassifier``).
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sklearn_mtr"
API_RST = ROOT / "docs" / "api.rst"

# Public modules that are not a Python API (the console entry point). Everything else at the
# top level of the package that is not private must declare __all__.
NOT_API = {"sklearn_mtr.cli"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_public(module: str) -> bool:
    return not any(part.startswith("_") for part in module.split(".")[1:])


def _static_all(path: Path) -> list[str] | None:
    """The ``__all__`` of a source file (read without importing when it is a literal), or None
    when it has none."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            try:
                return list(ast.literal_eval(node.value))
            except ValueError:  # computed (from the estimator registry): the imported module's
                return list(importlib.import_module(_module_name(path)).__all__)
    return None


def public_modules() -> dict[str, list[str] | None]:
    """Every public module of the package, mapped to its ``__all__`` (None: no __all__)."""
    return {
        _module_name(path): _static_all(path)
        for path in sorted(PACKAGE.rglob("*.py"))
        if _is_public(_module_name(path))
    }


def api_text() -> str:
    """docs/api.rst as Sphinx reads it: with the estimator sections docs/conf.py writes from the registry."""
    from sklearn_mtr.estimators._registry import api_autosummary

    return API_RST.read_text(encoding="utf-8").replace(".. include:: _api_estimators.rst", api_autosummary())


def documented_names(text: str) -> set[str]:
    """Fully qualified names listed in autosummary blocks, under the current module."""
    names, module, in_autosummary = set(), None, False
    for line in text.splitlines():
        if match := re.match(r"\.\. (?:current)?module:: (\S+)", line):
            module = match.group(1)
        if line.startswith(".. autosummary::"):
            in_autosummary = True
            continue
        if in_autosummary:
            stripped = line.strip()
            if line and not line.startswith(" "):
                in_autosummary = False
            elif stripped and not stripped.startswith(":"):
                names.add(f"{module}.{stripped}")
    return names


def _is_documented(module: str, name: str, documented: set[str]) -> bool:
    parts = module.split(".")
    return any(".".join([*parts[:i], name]) in documented for i in range(len(parts), 0, -1))


def test_documented_names_parser():
    text = """
.. currentmodule:: pkg.sub

.. autosummary::
   :toctree: generated/
   :template: class.rst

   First
   Second

Second

.. autosummary::

   Third
"""
    assert documented_names(text) == {"pkg.sub.First", "pkg.sub.Second", "pkg.sub.Third"}
    assert _is_documented("pkg.sub.deep", "First", {"pkg.sub.First"})
    assert not _is_documented("pkg.other", "First", {"pkg.sub.First"})


def _documented_objects(documented: set[str]) -> set[int]:
    """The ids of the objects the documented names refer to (a name that re-exports one of them,
    as ``sklearn_mtr.extending`` does, is documented where that object is)."""
    ids = set()
    for qualified in documented:
        module, _, name = qualified.rpartition(".")
        try:
            ids.add(id(getattr(importlib.import_module(module), name)))
        except (ImportError, AttributeError):  # an optional dependency; a stale name fails below
            pass
    return ids


def _reexports_documented(module: str, name: str, objects: set[int]) -> bool:
    try:
        return id(getattr(importlib.import_module(module), name)) in objects
    except (ImportError, AttributeError):
        return False


def test_every_public_name_is_documented():
    documented = documented_names(api_text())
    objects = _documented_objects(documented)
    missing = [
        f"{module}.{name}"
        for module, names in public_modules().items()
        for name in names or ()
        if not (name.startswith("__") and name.endswith("__"))
        and not _is_documented(module, name, documented)
        and not _reexports_documented(module, name, objects)
    ]
    assert not missing, f"add these to docs/api.rst: {missing}"


def test_public_top_level_modules_declare_all():
    # A module below a package that has __all__ (estimators/mmoe.py) is an implementation
    # file re-exported by the package; the package and top-level modules must say what is public.
    undeclared = [
        module
        for module, names in public_modules().items()
        if module.count(".") <= 1 and names is None and module not in NOT_API
    ]
    assert not undeclared, f"these public modules have no __all__: {undeclared}"


@pytest.mark.parametrize("qualified", sorted(documented_names(api_text())))
def test_documented_name_exists(qualified):
    module, _, name = qualified.rpartition(".")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:  # an optional dependency of that module
        pytest.skip(f"{module} needs an optional dependency: {exc}")
    assert hasattr(mod, name), f"docs/api.rst lists {qualified}, which does not exist"


def _estimator_classes():
    from sklearn_mtr import estimators

    return [getattr(estimators, name) for name in estimators.__all__ if name.endswith("Classifier")]


@pytest.mark.parametrize("cls", _estimator_classes(), ids=lambda c: c.__name__)
def test_documented_defaults_are_the_signature_defaults(cls):
    """Each ``name : type, default=value`` entry of an estimator's docstring (its own and the
    common ones, where a class may replace an entry) states the constructor's default."""
    import ast
    import inspect

    defaults = {n: p.default for n, p in inspect.signature(cls.__init__).parameters.items()}
    checked = 0
    for name, text in re.findall(r"^ {4}(\w+) : [^\n]*?default=([^\n]+)$", cls.__doc__, re.MULTILINE):
        if name not in defaults:
            continue
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            continue  # a default described in words
        assert value == defaults[name], f"{cls.__name__}.{name}: documented {text!r}, signature {defaults[name]!r}"
        checked += 1
    assert checked >= 10
