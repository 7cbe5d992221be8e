"""The registry of estimators: the one list the library reads.

The public estimators (``sklearn_mtr.<Name>``), the command line's ``--model`` names, the
safe file format's allow-list, the API reference and the test suite's scikit-learn checks are
all read from :data:`ESTIMATORS`, so a registered architecture gets each of them.
"""

from __future__ import annotations

import re
import sys

from .._base import MultiTaskClassifierBase
from ._generated import estimator_for

#: The sections of the API reference, in order; every estimator belongs to one.
FAMILIES = {
    "transformer": "Transformer rankers",
    "general": "General-purpose architectures",
    "funnel": "Funnel architectures",
}
FAMILY_NOTES = {
    "funnel": "Columns of ``Y`` are funnel stages in order (click, then click-and-conversion, ...).",
}

#: Every estimator by its short name (the command line's ``--model``), in the order of the docs.
ESTIMATORS: dict[str, type[MultiTaskClassifierBase]] = {}
_FAMILY_OF: dict[str, str] = {}
_PACKAGE = "sklearn_mtr.estimators"


def register(name: str, estimator: type[MultiTaskClassifierBase], family: str = "general") -> type:
    """Add ``estimator`` to :data:`ESTIMATORS` under ``name``, and make it importable from
    ``sklearn_mtr.estimators`` (where pickle and the safe format find it).

    Raises
    ------
    ValueError
        When ``name`` is not a lower-case identifier or is taken by another estimator, when
        ``estimator`` is not a :class:`MultiTaskClassifierBase` subclass, or ``family`` unknown.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"an estimator's name must be a lower-case identifier (like 'mmoe'), got {name!r}.")
    if not (isinstance(estimator, type) and issubclass(estimator, MultiTaskClassifierBase)):
        raise ValueError(f"{estimator!r} is not a subclass of MultiTaskClassifierBase.")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}.")
    taken = {cls.__name__: key for key, cls in ESTIMATORS.items()}
    if ESTIMATORS.get(name, estimator) is not estimator or taken.get(estimator.__name__, name) != name:
        raise ValueError(f"the name {name!r} or the class name {estimator.__name__!r} is already registered.")
    ESTIMATORS[name] = estimator
    _FAMILY_OF[name] = family
    package = sys.modules.get(_PACKAGE)
    if package is not None and estimator.__module__ == _PACKAGE:
        setattr(package, estimator.__name__, estimator)  # a generated class lives in the package
    return estimator


def register_architecture(
    name: str, architecture: type, *, class_name: str | None = None, family: str = "general"
) -> type[MultiTaskClassifierBase]:
    """Register a new architecture: its estimator is built from the torch module and gets what
    every registered estimator gets (``sklearn_mtr.estimators.<ClassName>``, the command line's
    ``--model name``, the safe file format, the test suite's scikit-learn checks and the API
    reference).

    Parameters
    ----------
    name : str
        Short lower-case name (the command line's ``--model``).
    architecture : type
        A :class:`~sklearn_mtr.models.MultiTaskModule` subclass built as
        ``architecture(schema, n_tasks, *, embedding_dim, ...)``, whose other parameters all
        have defaults and are documented in its numpydoc ``Parameters`` section.
    class_name : str, default=None
        The estimator's class name; ``<architecture name>Classifier`` by default.
    family : {"general", "transformer", "funnel"}, default="general"
        The section of the API reference it is listed in. ``"funnel"`` also makes the columns
        of ``Y`` funnel stages: the estimator enforces the funnel label contract and has
        ``predict_conditional_proba`` and ``predict_cvr``.

    Returns
    -------
    estimator : type
        The registered estimator class.

    Raises
    ------
    ValueError
        When the architecture breaks the contract above, or the name is taken.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_mtr.extending import MLP, InputEmbedding, MultiTaskModule, register_architecture
    >>> class Wide(MultiTaskModule):
    ...     '''One linear layer per task on the embedded input.
    ...
    ...     Parameters
    ...     ----------
    ...     bias : bool, default=True
    ...         Whether each task's layer has a bias.
    ...     '''
    ...
    ...     def __init__(self, schema, n_tasks, *, embedding_dim=16, bias=True):
    ...         super().__init__()
    ...         self.embedding = InputEmbedding(schema, embedding_dim)
    ...         self.towers = nn.ModuleList(nn.Linear(self.embedding.out_dim, 1, bias=bias) for _ in range(n_tasks))
    ...
    ...     def forward(self, batch):
    ...         x = self.embedding(batch)
    ...         return torch.cat([tower(x) for tower in self.towers], dim=1)
    >>> WideClassifier = register_architecture("wide", Wide)
    >>> WideClassifier(bias=False).get_params()["bias"]
    False
    >>> from sklearn_mtr.extending import unregister_architecture
    >>> unregister_architecture("wide")
    """
    class_name = class_name or f"{getattr(architecture, '__name__', 'Model')}Classifier"
    return register(name, estimator_for(architecture, class_name, funnel=family == "funnel"), family)


def unregister_architecture(name: str) -> None:
    """Remove the estimator registered under ``name`` (a temporary architecture, say): it is no
    longer a ``--model``, a class the safe format loads, or an attribute of
    ``sklearn_mtr.estimators`` when it was built there.

    Raises
    ------
    KeyError
        When nothing is registered under ``name``.
    """
    estimator = ESTIMATORS.pop(name)
    _FAMILY_OF.pop(name)
    package = sys.modules.get(_PACKAGE)
    generated = estimator.__module__ == _PACKAGE
    if package is not None and generated and getattr(package, estimator.__name__, None) is estimator:
        delattr(package, estimator.__name__)


def api_autosummary() -> str:
    """The API reference's estimator sections (reStructuredText), one per family, from the
    registry: ``docs/conf.py`` writes it where ``docs/api.rst`` includes it."""
    # its own currentmodule: autosummary reads this file alone when it writes the stub pages
    lines = [".. currentmodule:: sklearn_mtr", ""]
    for family, title in FAMILIES.items():
        names = [cls.__name__ for key, cls in ESTIMATORS.items() if _FAMILY_OF[key] == family]
        if not names:
            continue
        lines += [title, "-" * len(title), ""]
        if family in FAMILY_NOTES:
            lines += [FAMILY_NOTES[family], ""]
        lines += [".. autosummary::", "   :toctree: generated/", "   :template: estimator.rst", ""]
        lines += [f"   {name}" for name in names] + [""]
    return "\n".join(lines)
