"""The scikit-learn steps of a saved ``Pipeline``: the ``pipeline.json`` and ``pipeline.skops``
members of the safe format (see :mod:`sklearn_mtr.persistence`).

The final step, an estimator of this package, is stored in the format's own members. The steps
before it go into ``pipeline.skops``, written by ``skops.io.dumps`` and read by
``skops.io.loads``, which rebuilds objects from a JSON schema and ``.npy`` arrays without
unpickling. skops trusts every scikit-learn estimator by default; this module trusts less, and
checks more, before skops sees the bytes:

- every node of the schema must use one of a few skops loaders and name a type or function of
  :data:`TRUSTED_TYPES` (a fixed list kept here; nothing is trusted because a file names it);
- the inner zip must be stored, not compressed, with member sizes that add up to no more than
  the member itself, so nothing inside inflates;
- every ``.npy`` array's header (dtype, shape) must describe exactly the bytes that follow,
  with a number or string dtype: numpy allocates the declared shape before reading;
- the schema may nest at most :data:`_MAX_DEPTH` levels, and use the protocol the installed
  skops writes (older protocols read some names from other fields).

Only then does ``skops.io.loads`` run, with the same list as its ``trusted`` argument.
"""

from __future__ import annotations

import functools
import io
import json
import zipfile
from typing import Any

import numpy as np

PIPELINE_JSON = "pipeline.json"
PIPELINE_SKOPS = "pipeline.skops"
SKOPS_HINT = "pip install sklearn-mtr[skops]"
# skops nodes this module lets through. Others load what the list of types cannot vouch for:
# methods and operator functions by name (MethodNode, OperatorFuncNode), functools.partial,
# reduce tuples (trees, losses), scipy sparse matrices (a compressed .npz inside), raw bytes.
_LOADERS = frozenset(
    {
        "CachedNode",
        "DictNode",
        "DTypeNode",
        "FunctionNode",
        "JsonNode",
        "ListNode",
        "NdArrayNode",
        "SetNode",
        "SliceNode",
        "TupleNode",
        "TypeNode",
        "ObjectNode",
    }
)
# skops node trees and their construction are recursive; a legitimate pipeline nests a few
# dozen levels (Pipeline > ColumnTransformer > Pipeline > encoder > attribute > array).
_MAX_DEPTH = 200
# .npy arrays: booleans, numbers and fixed-width strings (never objects: no pickle)
_NPY_KINDS = "biufcUS"


def _sklearn_steps() -> tuple[type, ...]:
    """The scikit-learn classes a saved pipeline may hold (as steps or inside steps): each holds
    parameters, numbers, strings and arrays only. Left out: classes holding callables or other
    estimators by design (make_column_selector, SelectKBest's score_func, IterativeImputer),
    those holding their training rows (KNNImputer), and SplineTransformer (scipy BSpline objects)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA, TruncatedSVD
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer, TfidfTransformer, TfidfVectorizer
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.impute import MissingIndicator, SimpleImputer
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.preprocessing import (
        Binarizer,
        FunctionTransformer,
        KBinsDiscretizer,
        MaxAbsScaler,
        MinMaxScaler,
        Normalizer,
        OneHotEncoder,
        OrdinalEncoder,
        PolynomialFeatures,
        PowerTransformer,
        QuantileTransformer,
        RobustScaler,
        StandardScaler,
        TargetEncoder,
    )

    return (
        ColumnTransformer,
        Pipeline,
        FeatureUnion,
        StandardScaler,
        MinMaxScaler,
        MaxAbsScaler,
        RobustScaler,
        Normalizer,
        Binarizer,
        QuantileTransformer,
        PowerTransformer,
        OneHotEncoder,
        OrdinalEncoder,
        TargetEncoder,
        KBinsDiscretizer,
        PolynomialFeatures,
        FunctionTransformer,
        SimpleImputer,
        MissingIndicator,
        CountVectorizer,
        TfidfVectorizer,
        TfidfTransformer,
        HashingVectorizer,
        PCA,
        TruncatedSVD,
        VarianceThreshold,
    )


# FunctionTransformer(func=...): numpy's elementwise functions, which compute and nothing else.
_FUNCTIONS = ("log", "log1p", "log2", "log10", "exp", "expm1", "sqrt", "cbrt", "square", "absolute", "sign", "tanh")
_NUMPY_SCALARS = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "str_",
)
_BUILTINS = ("dict", "list", "tuple", "set", "str", "int", "float", "bool", "slice", "NoneType")


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def trusted_types() -> list[str]:
    """The fixed list of type and function names that ``pipeline.skops`` may name, as skops
    writes them (``module.name``): the scikit-learn classes above, containers and scalars,
    numpy arrays, dtypes and scalar types, and a few numpy ufuncs."""
    names = [_name(cls) for cls in _sklearn_steps()]
    names += [f"builtins.{name}" for name in _BUILTINS]
    names += ["numpy.ndarray", "numpy.dtype"]
    names += [f"numpy.{name}" for name in _NUMPY_SCALARS]
    names += [f"numpy.{name}" for name in _FUNCTIONS]
    return sorted(set(names))


def import_skops():
    """``skops.io``, or an ImportError saying which extra to install."""
    try:
        import skops.io
    except ImportError:
        raise ImportError(
            "saving or loading a Pipeline needs skops, which stores its scikit-learn steps without "
            f"pickle: {SKOPS_HINT}"
        ) from None
    return skops.io


@functools.cache
def _protocol() -> int:
    """The protocol number the installed skops writes (read from its own output)."""
    with zipfile.ZipFile(io.BytesIO(import_skops().dumps([]))) as archive:
        return json.loads(archive.read("schema.json"))["protocol"]


def _bad(detail: str) -> ValueError:
    return ValueError(f"not a valid sklearn-mtr model file: {PIPELINE_SKOPS} {detail}.")


# ------------------------------------------------------------------------------------ saving
def dump_steps(steps: list, *, saving: bool = True) -> bytes:
    """``pipeline.skops`` for the objects ``steps`` (transformers, ``"passthrough"`` or None),
    refused when it names a type outside the list (the same check as on load)."""
    sio = import_skops()
    try:
        data = sio.dumps(list(steps))
    except Exception as exc:  # noqa: BLE001  (skops refuses what it cannot store, by many types)
        raise ValueError(
            f"a step of the pipeline cannot be stored without pickle ({type(exc).__name__}: {str(exc)[:200]}). "
            "Use joblib.dump for it, and load such files only from sources you trust."
        ) from None
    check(data, saving=saving)
    return data


# ------------------------------------------------------------------------------------ loading
def check(data: bytes, *, saving: bool = False) -> dict:
    """Check the skops bytes ``data`` as described in the module docstring; returns the
    parsed schema. ``saving`` words an untrusted type as the caller's choice, not a bad file."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, OSError):
        raise _bad("is not a zip archive") from None
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise _bad("names a member twice")
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size or info.flag_bits & 1:
            raise _bad(f"holds {info.filename[:80]!r} compressed or encrypted; skops stores its members as they are")
    # stored members that add up to no more than the zip: no two entries read the same bytes twice
    if sum(info.file_size for info in infos) > len(data):
        raise _bad("declares members larger than itself")
    if "schema.json" not in names:
        raise _bad("lacks schema.json")
    try:
        schema = json.loads(archive.read("schema.json"))
    except (ValueError, UnicodeDecodeError, RecursionError, zipfile.BadZipFile, OSError, EOFError):
        raise _bad("has a schema.json that is not JSON") from None
    if not isinstance(schema, dict):
        raise _bad("has a schema.json that is not a JSON object")
    # Older protocols load some nodes from other fields (protocol 0 read a function's name from
    # its content), which this walk does not vouch for: only the protocol skops writes is read.
    if schema.get("protocol") != _protocol():
        raise _bad(
            f"uses the skops protocol {str(schema.get('protocol'))[:20]}, where the installed skops writes "
            f"{_protocol()} (save the pipeline again with the installed skops)"
        )
    trusted = set(trusted_types())
    sizes = {info.filename: info.file_size for info in infos}
    files: dict[str, object] = {}
    # Iterative, depth-bounded walk over the nodes as skops reads them: a dict's content maps
    # its keys (any strings, "__class__" too: a vocabulary word) to nodes, so node-ness is
    # decided by position, not by the keys a dict happens to have.
    stack: list[tuple[Any, int]] = [(schema, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise _bad(f"nests more than {_MAX_DEPTH} levels")
        if not isinstance(node, dict):
            raise _bad(f"holds {str(node)[:80]!r} where a node belongs")
        _check_node(node, trusted, saving)
        loader = node["__loader__"]
        if loader == "NdArrayNode" and node.get("type") == "numpy":
            name = node.get("file")
            key = node.get("__id__") if node.get("__id__") is not None else id(node)
            if not isinstance(name, str) or name not in sizes:
                raise _bad(f"names an array file {str(name)[:80]!r} it does not hold")
            if files.setdefault(name, key) != key:
                raise _bad(f"reads the array file {name[:80]!r} for two objects")
            try:
                raw = archive.read(name)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
                raise _bad(f"holds {name[:80]!r}, which cannot be read") from None
            _check_npy(raw, name)
        for children in _children(node, loader):
            stack.extend((child, depth + 1) for child in children)
    return schema


# keys of a node that hold no node: names, flags, file names, JSON text
_PLAIN_KEYS = frozenset(
    {"__class__", "__module__", "__loader__", "__id__", "is_json", "type", "file", "protocol", "_skops_version"}
)


def _children(node: dict, loader: str):
    """The lists of child nodes of ``node``, where skops reads them."""
    if loader in ("JsonNode", "SliceNode"):  # JSON text, and start / stop / step as plain values
        return
    for key, value in node.items():
        if key in _PLAIN_KEYS:
            continue
        if loader == "DictNode" and key == "content":
            if not isinstance(value, dict):
                raise _bad("holds a dict whose content is not a mapping")
            yield list(value.values())
        elif isinstance(value, dict):
            yield [value]
        elif isinstance(value, list):
            yield value
        else:
            raise _bad(f"holds a {loader} whose {str(key)[:40]!r} is neither a node nor a name")


def _check_node(node: dict, trusted: set[str], saving: bool) -> None:
    """``node`` uses a loader of :data:`_LOADERS` and names a trusted type."""
    loader, module, cls = node.get("__loader__"), node.get("__module__"), node.get("__class__")
    if not all(isinstance(v, str) for v in (loader, module, cls)):
        raise _bad("holds a node without a loader, a module and a class name")
    name = f"{module}.{cls}"
    if loader not in _LOADERS or name not in trusted:
        what = name if loader in _LOADERS else f"{name} (through skops' {loader})"
        if saving:
            raise ValueError(
                f"the pipeline holds {what[:200]}, which the safe format does not store (it stores the "
                f"scikit-learn steps of sklearn_mtr.persistence.TRUSTED_PIPELINE_TYPES). Use joblib.dump for "
                "this pipeline, and load such files only from sources you trust."
            )
        raise ValueError(
            f"not a valid sklearn-mtr model file: {PIPELINE_SKOPS} names {what[:200]}, which the safe "
            "format does not load (see sklearn_mtr.persistence.TRUSTED_PIPELINE_TYPES)."
        )


def _check_npy(raw: bytes, name: str) -> None:
    """The array header of ``raw`` describes exactly the bytes that follow, with an allowed dtype."""
    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"version {version}")
    except Exception as exc:  # noqa: BLE001  (numpy parses the header as a Python literal: tokenize errors too)
        raise _bad(f"holds {name[:80]!r}, not a readable .npy array ({type(exc).__name__})") from None
    if dtype.hasobject or dtype.kind not in _NPY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise _bad(f"holds {name[:80]!r}, an array of dtype {str(dtype)[:40]}, which is not allowed")
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize != len(raw) - stream.tell():
        raise _bad(
            f"holds {name[:80]!r}, declared {shape} of {dtype} ({count * dtype.itemsize} bytes) over "
            f"{len(raw) - stream.tell()} bytes"
        )


def load_steps(data: bytes, n_steps: int) -> list:
    """The ``n_steps`` objects of ``pipeline.skops``: checked, then rebuilt by skops with the
    same list of trusted types."""
    sio = import_skops()
    check(data)
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        steps = sio.loads(data, trusted=trusted_types())
    except UntrustedTypesFoundException as exc:  # skops' own audit, after ours: same list
        raise _bad(f"names types the safe format does not load ({str(exc)[:200]})") from None
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        RecursionError,
        OverflowError,
        EOFError,
        OSError,
        NotImplementedError,
        zipfile.BadZipFile,
    ) as exc:
        raise _bad(f"cannot be rebuilt ({type(exc).__name__}: {str(exc)[:200]})") from None
    allowed = _sklearn_steps()
    if not isinstance(steps, list) or len(steps) != n_steps:
        raise _bad(f"does not hold the {n_steps} steps that {PIPELINE_JSON} names")
    for i, step in enumerate(steps):
        if not (step is None or (isinstance(step, str) and step == "passthrough") or type(step) in allowed):
            raise _bad(f"holds a {type(step).__name__} as step {i}, not a transformer")
    return steps
