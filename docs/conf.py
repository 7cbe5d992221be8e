"""Sphinx configuration: the scikit-learn stack (numpydoc, sphinx-gallery, pydata theme).

The Markdown pages of ``docs/`` are read by myst-parser as they are, so they render on GitHub
and in the site alike. Build with ``python -m sphinx -W -b html docs docs/_build/html``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# The checkout first, so that the docs describe this tree even when another copy is installed.
sys.path.insert(0, str(ROOT))

import sklearn_mtr
from sklearn_mtr.estimators._registry import api_autosummary

# The API reference's estimator sections, from the registry (docs/api.rst includes them).
(DOCS / "_api_estimators.rst").write_text(api_autosummary(), encoding="utf-8")

# The gallery examples run in this process while the site is built: never a GUI backend
# (each example also sets one torch thread, as its small models need no more).
os.environ.setdefault("MPLBACKEND", "Agg")

project = "sklearn-mtr"
author = "the sklearn-mtr developers"
copyright = "the sklearn-mtr developers, BSD-3-Clause"
version = release = sklearn_mtr.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

root_doc = "index"
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "sg_execution_times.rst", "_api_estimators.rst"]

# -- API reference -----------------------------------------------------------------------
# As in scikit-learn: autosummary writes one page per public name (api.rst lists them and
# tests/test_api_docs.py checks the list against every public module's __all__), numpydoc
# renders the docstrings, and class pages list their own methods instead of numpydoc's tables.
# The documents with autosummary tables: api.rst and the estimator sections it includes
# (excluded as a page of its own, so listed here for its stubs to be written).
autosummary_generate = ["api.rst", "_api_estimators.rst"]
autodoc_default_options = {"members": True}
autodoc_typehints = "none"  # the numpydoc "Parameters" sections already give the types
autoclass_content = "class"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = False
numpydoc_validation_checks: set[str] = set()
numpydoc_xref_param_type = False

# -- Markdown ----------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# Links that work on GitHub but point outside docs/: in the site they go to the page that
# renders the target (the gallery page of an example). The Markdown files stay as they are.
OUTSIDE_LINKS = [
    (re.compile(r"\]\(\.\./benchmarks/README\.md\)"), "](benchmark_scripts.md)"),
    (re.compile(r"\]\(\.\./examples/(\w+)\.py\)"), r"](auto_examples/\1.rst)"),
    (re.compile(r"\]\(\.\./examples/README\.txt\)"), "](auto_examples/index.rst)"),
]


def _rewrite_outside_links(app, docname, source):
    for pattern, replacement in OUTSIDE_LINKS:
        source[0] = pattern.sub(replacement, source[0])


def _drop_type_docstrings(app, what, name, obj, options, lines):
    # A constant without a ``#:`` comment would show the docstring of its type (str, int):
    # its value, which autodata prints, is the documentation.
    if what == "data" and isinstance(obj, (str, int, float)) and obj.__doc__ == type(obj).__doc__:
        lines[:] = []


# scikit-learn generates the metadata-routing methods (set_fit_request, ...) per signature;
# their docstrings point into scikit-learn's own glossary. The estimator template says what
# they do instead.
_ROUTING_METHOD = re.compile(r"set_\w+_request|get_metadata_routing")


def _skip_routing_methods(app, what, name, obj, skip, options):
    if what == "class" and _ROUTING_METHOD.fullmatch(name):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_routing_methods)
    app.connect("source-read", _rewrite_outside_links)
    # before numpydoc (priority 500) reformats the docstrings
    app.connect("autodoc-process-docstring", _drop_type_docstrings, priority=400)


# -- Gallery -----------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "reset_modules": ("matplotlib",),
    "plot_gallery": "True",
    "abort_on_example_error": True,
    "within_subsection_order": "FileNameSortKey",
    "write_computation_times": False,
}

# -- HTML --------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn-mtr {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list[str] = []
