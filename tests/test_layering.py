"""The one-way layering: architectures and methods are plain torch, the methods never import
the architectures, and neither imports the estimator layer."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sklearn_mtr"
# The package-level modules that both plain-torch layers may use: neither knows estimators.
NEUTRAL = {"_constraints", "_schema"}


def _package_imports(path: Path, layer: str) -> set[str]:
    """The ``sklearn_mtr`` modules ``path`` imports (docstring examples are not code), as
    dotted names relative to the package: ``"models._base"``, ``"_constraints"``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names = [node.module] if node.module and node.module.startswith("sklearn_mtr") else []
                found.update(n.removeprefix("sklearn_mtr").lstrip(".") for n in names)
            elif node.level == 1:
                found.add(f"{layer}.{node.module}" if node.module else layer)
            else:  # from .. (the package) or further up
                found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix("sklearn_mtr").lstrip(".") for a in node.names if a.name.startswith("sklearn_mtr")
            )
    return found


@pytest.mark.parametrize("layer", ["models", "optim"])
def test_plain_torch_layers_import_only_themselves_and_neutral_modules(layer):
    offending = {}
    for path in sorted((PACKAGE / layer).glob("*.py")):
        bad = {
            name
            for name in _package_imports(path, layer)
            if name.split(".")[0] != layer and name.split(".")[0] not in NEUTRAL
        }
        if bad:
            offending[path.name] = sorted(bad)
    assert not offending, f"{layer}/ imports outside its layer: {offending}"


def test_the_import_scan_sees_a_forbidden_import(tmp_path):
    # The scan itself: a relative import of the other layer is reported.
    probe = tmp_path / "probe.py"
    probe.write_text('"""x"""\nfrom ..models._base import MultiTaskModule\nfrom ._base import StepContext\n')
    assert _package_imports(probe, "optim") == {"models._base", "optim._base"}
