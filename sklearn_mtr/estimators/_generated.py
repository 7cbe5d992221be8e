"""The estimator of a plain architecture, built from the torch module itself.

An architecture's parameters are written once: in its module's signature and docstring. The
estimator takes them as explicit keyword arguments (its ``__init__`` signature lists them, then
the shared ones, so ``get_params``, ``clone`` and searches see them), documents them with the
module's own text, and passes them to the module in ``_build_module``.
"""

from __future__ import annotations

import inspect
import re

from .._base import MultiTaskClassifierBase
from .._common_doc import with_common_parameters
from .._params import store_init_params
from ..models import MultiTaskModule
from ._funnel import FunnelLabelsMixin, with_funnel_labels

# built by the estimator's shared parameters, not by the architecture's
_SHARED_BY_MODULES = ("embedding_dim",)


def estimator_for(
    architecture: type[MultiTaskModule], class_name: str, *, funnel: bool = False
) -> type[MultiTaskClassifierBase]:
    """A scikit-learn estimator class for ``architecture``.

    With ``funnel``, the columns of ``Y`` are funnel stages: the estimator enforces the funnel
    label contract and has ``predict_conditional_proba`` / ``predict_cvr``
    (:class:`FunnelLabelsMixin`), and its documentation says so.

    ``architecture`` is a :class:`~sklearn_mtr.models.MultiTaskModule` subclass built as
    ``architecture(schema, n_tasks, *, embedding_dim, <its parameters>)``, every parameter with
    a default and documented in the numpydoc ``Parameters`` section of its docstring.

    Raises
    ------
    ValueError
        Naming a parameter without a default or without documentation, or one that clashes
        with a shared estimator parameter.
    """
    if not (isinstance(architecture, type) and issubclass(architecture, MultiTaskModule)):
        raise ValueError(f"{architecture!r} is not a MultiTaskModule subclass.")
    own = _architecture_parameters(architecture)
    shared = [p for p in inspect.signature(MultiTaskClassifierBase.__init__).parameters.values() if p.name != "self"]
    clash = sorted({p.name for p in own} & {p.name for p in shared})
    if clash:
        raise ValueError(f"{architecture.__name__}'s parameters {clash} clash with the estimators' shared ones.")
    summary, documented = _split_docstring(architecture)
    undocumented = [p.name for p in own if p.name not in documented]
    if undocumented:
        raise ValueError(
            f"{architecture.__name__}'s docstring documents no {undocumented} in its 'Parameters' section; "
            "the estimator's documentation is the module's."
        )
    signature = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=inspect.Parameter.empty) for p in own + shared]
    )

    def __init__(self, **params):
        # bind: an unknown or positional argument is the TypeError a written signature gives
        bound = signature.bind(self, **params)
        bound.apply_defaults()
        store_init_params(self, bound.arguments)

    __init__.__signature__ = signature

    doc = _estimator_docstring(class_name, summary, [documented[p.name] for p in own], funnel)
    namespace = {
        "__init__": __init__,
        "_architecture": architecture,  # built by MultiTaskClassifierBase._build_module
        "__doc__": doc,
        "__module__": "sklearn_mtr.estimators",
        "__qualname__": class_name,
    }
    bases = (FunnelLabelsMixin, MultiTaskClassifierBase) if funnel else (MultiTaskClassifierBase,)
    cls = with_common_parameters(type(class_name, bases, namespace))
    return with_funnel_labels(cls) if funnel else cls


def _architecture_parameters(architecture: type[MultiTaskModule]) -> list[inspect.Parameter]:
    own = [p for name, p in architecture.hyperparameters().items() if name not in _SHARED_BY_MODULES]
    for p in own:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is p.empty:
            raise ValueError(
                f"{architecture.__name__}'s parameter {p.name!r} needs a default (and no *args / **kwargs): "
                "the estimator's parameters all have one."
            )
    return own


def _split_docstring(architecture: type) -> tuple[str, dict[str, str]]:
    """The summary (text before the first section) of the module's docstring, and the entries
    of its ``Parameters`` section by name (each with its description lines)."""
    doc = inspect.cleandoc(architecture.__doc__ or "")
    sections = re.split(r"\n(?=[A-Z][A-Za-z ]+\n-{3,}\n)", doc)
    summary, entries = sections[0].strip(), {}
    for section in sections[1:]:
        title, _, body = section.partition("\n")
        if title.strip() != "Parameters":
            continue
        body = body.partition("\n")[2]  # below the dashes
        for entry in re.split(r"\n(?=\S)", body.strip("\n")):
            name = entry.split(":", 1)[0].strip()
            entries[name] = entry.rstrip()
    return summary, entries


def _estimator_docstring(class_name: str, summary: str, entries: list[str], funnel: bool) -> str:
    """A numpydoc class docstring in the indented form ``with_common_parameters`` (and, for a
    funnel, ``with_funnel_labels``) fills in."""
    data = "make_funnel_classification" if funnel else "make_multitask_classification"
    lines = [
        *summary.splitlines(),
        *(["", "%(funnel)s"] if funnel else []),
        "",
        "Parameters",
        "----------",
        *"\n".join(entries).splitlines(),
        "%(common)s",
        "",
        "Examples",
        "--------",
        f">>> from sklearn_mtr.datasets import {data}",
        f">>> from sklearn_mtr.estimators import {class_name}",
        f">>> X, Y = {data}(n_samples=300, random_state=0)",
        f">>> clf = {class_name}(max_epochs=1, random_state=0).fit(X, Y)",
        ">>> clf.predict_proba(X[:3]).shape",
        "(3, 2)",
    ]
    return lines[0] + "\n" + "\n".join(("    " + line) if line else "" for line in lines[1:]) + "\n    "
