"""Saving and loading estimators in a format that runs no code when it is read.

``joblib`` / ``pickle`` keep everything but execute whatever the file says when it is loaded,
so a model file from an untrusted source is a program. :func:`save` writes a zip archive that
:func:`load` reads back without unpickling anything, not even through torch's restricted
unpickler:

- ``format.json``: the format name and version, the library versions that wrote it, and the
  SHA-256 of every other member (a damaged or edited file is refused with a clear error;
  this is an integrity check, not a signature);
- ``config.json``: the estimator's class name (one of :data:`sklearn_mtr.estimators.ESTIMATORS`),
  its ``get_params(deep=False)``, its fitted attributes (the feature encoder's roles,
  vocabularies and scalers included), ``history_`` and the layout of the training state, all
  as tagged JSON. Only plain values, numpy arrays of numbers or strings, pandas indexes and a
  fixed allow-list of this package's classes can appear; anything else is refused when
  saving, and again when loading;
- ``weights.safetensors`` (stored uncompressed): the tensors of the network's ``state_dict``,
  of the torch optimizer's state and of the multi-task method's state, in the safetensors
  format (a JSON header of names, dtypes, shapes and byte ranges, then raw bytes), which the
  official ``safetensors`` library reads too. ``config.json`` says where each tensor goes.

:func:`load` bounds what a file can make it allocate by what the file holds: each member is
read up to a cap, its declared size and (for a compressed member) a compression ratio; every
tensor's shape and byte range is checked against the bytes present; and the network is built
on the ``meta`` device, stopped as soon as it registers more parameters or modules than the
weights could fill, and built for real only once its shapes match the tensors.

A loaded estimator predicts exactly as the saved one and can continue training
(``partial_fit`` / ``warm_start``) with its optimizer state. The ``callbacks`` parameter and
``optimizer=`` instances of classes outside :mod:`sklearn_mtr.optim` hold arbitrary objects
and cannot be saved this way: use ``joblib`` for them, on files you trust.

A fitted :class:`sklearn.pipeline.Pipeline` whose last step is one of this package's estimators
is saved too, with the optional ``skops`` package (``pip install sklearn-mtr[skops]``): the final
estimator goes into the members above, the pipeline into one or two more (format version 3):

- ``pipeline.json``: the step names and the pipeline's ``verbose`` and ``transform_input``
  (``memory`` is not stored: it only caches ``fit``, and a cache directory named by a file
  should not decide where a refit writes);
- ``pipeline.skops`` (when there are steps before the estimator; stored uncompressed): those
  steps, written by ``skops.io.dumps`` and read by ``skops.io.loads`` (objects rebuilt from a
  JSON schema and ``.npy`` arrays, never unpickled). Only the scikit-learn types and numpy
  functions of :data:`TRUSTED_PIPELINE_TYPES`, a fixed list, may appear; the inner zip and
  every array header are checked against the bytes present before skops reads them.

A file holding a bare estimator is written as format version 2, as before; :func:`load`
reads versions 2 and 3 and returns what was saved.

Format version 1 (sklearn-mtr 0.1.0 before release) stored the tensors as a ``weights.pt``
member read with ``torch.load(weights_only=True)``; it is no longer read, so that no model
file goes through the pickle protocol.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
import threading
import uuid
import zipfile
import zlib
from typing import Any

import numpy as np
import pandas as pd
import torch
from skorch.history import History

from . import _pipeline_format, _safetensors
from ._params import check_common_params, resolve_device

FORMAT_NAME = "sklearn-mtr-safe"
#: Format version of a file holding an estimator (version 3 holds a ``Pipeline`` ending in one).
FORMAT_VERSION = 2
#: Format version of a file holding a ``Pipeline``: version 2 plus ``pipeline.json`` and, when
#: the pipeline has steps before the estimator, ``pipeline.skops``.
PIPELINE_FORMAT_VERSION = 3
_WEIGHTS = "weights.safetensors"
_MEMBERS = ("config.json", _WEIGHTS)
_PIPELINE_JSON, _PIPELINE_SKOPS = _pipeline_format.PIPELINE_JSON, _pipeline_format.PIPELINE_SKOPS
# Pipeline parameters a step name may not take (scikit-learn's rule), and the most steps read.
_PIPELINE_PARAMS = ("steps", "memory", "verbose", "transform_input")
_MAX_STEPS = 100  # with names of at most 200 characters, pipeline.json stays within 64 KiB
# numpy dtypes stored as JSON lists: booleans, integers, floats and fixed-width strings.
_ARRAY_KINDS = "biufU"
# Largest uncompressed size load reads of each member; a member is refused before it is inflated
# when it declares more, and while it is read when it turns out longer than it declared (a deflated
# member of a few kilobytes can inflate to gigabytes). format.json holds a few names, versions and
# digests. config.json holds the parameters, history and the fitted encoder, whose vocabularies
# grow with the categories seen: ten million 20-character categories take about 250 MB of JSON,
# and parsed JSON takes several times its size in memory, hence 512 MiB; raise MAX_CONFIG_BYTES
# to read a file with larger vocabularies. The tensors of a real model can be any size, so the
# weights member is bounded by the file itself: it must be stored uncompressed, so its bytes are
# bytes of the file.
_MAX_HEADER_BYTES = 1 << 16
#: Largest ``config.json`` (uncompressed bytes) that :func:`load` reads: 512 MiB. Raise it to
#: load a file you trust whose vocabularies are larger.
MAX_CONFIG_BYTES = 1 << 29
#: Largest ratio of uncompressed to compressed size that :func:`load` accepts for a deflated
#: member (beyond its first MiB): 32. The config.json of a model with vocabularies of 50,000
#: strings and 60,000 integer ids deflates 3.7 times; a compression bomb deflates up to about
#: 1000 times, and parsed JSON takes up to about 25 times its text in memory.
MAX_COMPRESSION_RATIO = 32
#: Largest ``pipeline.skops`` (bytes) that :func:`load` reads: 512 MiB, like ``config.json``. A
#: ``TfidfVectorizer``'s vocabulary lives there, at about 460 bytes a word in skops' schema (23 MB
#: for 50,000 words); raise it to load a file you trust with larger steps.
MAX_PIPELINE_BYTES = 1 << 29
_RATIO_SLACK = 1 << 20
_READ_CHUNK = 1 << 20
# A string array may be declared wider than its longest string only while it stays this small
# (numpy keeps the width of the array a subset came from); a wider declared width is what turns
# a few JSON characters into gigabytes ("<U100000000").
_LOOSE_STRING_ARRAY_BYTES = 1 << 16
# Failures of decoding, building or filling the network from a file's content: for a file this
# library wrote none of them happens, so each means a damaged or hand-made file.
_CORRUPT_ERRORS = (TypeError, KeyError, IndexError, AttributeError, RuntimeError, OverflowError, EOFError, zlib.error)


class _Encoder:
    """Turns the allowed Python values into tagged JSON (every container is a tagged object,
    so a JSON object is never ambiguous) and back."""

    def __init__(self, tensors: dict[str, torch.Tensor] | None = None) -> None:
        from ._schema import FeatureSchema, SequenceInput, SparseInput, TextInput
        from .estimators import ESTIMATORS
        from .features import TabularEncoder
        from .features._sparse import SparseColumns
        from .features._text import HashedText
        from .features._vocab import Vocabulary
        from .optim import OPTIMIZERS

        self.estimators = {cls.__name__: cls for cls in ESTIMATORS.values()}
        self.optimizers = {cls.__name__: cls for cls in OPTIMIZERS.values()}
        # Restored from their attribute dict, without calling __init__ or any other code.
        self.stateful = {cls.__name__: cls for cls in (TabularEncoder, Vocabulary, HashedText, SparseColumns)}
        self.dataclasses = {cls.__name__: cls for cls in (FeatureSchema, SequenceInput, TextInput, SparseInput)}
        # Training state only: tensors live in the weights member, and the tagged JSON names
        # them ({"t": "tensor", "name": ...}); each tensor is referenced exactly once, so no
        # tensor is copied into several places on load. None: tensors are not allowed.
        self.tensors = tensors
        self.used: set[str] = set()

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, value: Any, where: str) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (np.bool_,)):
            return bool(value)
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            return float(value)
        if isinstance(value, tuple):
            return {"t": "tuple", "v": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return {"t": "list", "v": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, dict):
            items = [[self.encode(k, f"{where} key"), self.encode(v, f"{where}[{k!r}]")] for k, v in value.items()]
            return {"t": "dict", "v": items}
        if isinstance(value, np.ndarray):
            return self._encode_array(value, where)
        if isinstance(value, torch.Tensor) and self.tensors is not None:
            if where in self.tensors:  # only a tensor used as a dict key could share its path
                raise ValueError(f"{where} is a tensor in a place the safe format cannot name")
            self.tensors[where] = value
            return {"t": "tensor", "name": where}
        if isinstance(value, pd.Index) and not isinstance(value, pd.MultiIndex):
            return {"t": "index", "dtype": str(value.dtype), "v": [self.encode(v, f"{where}[]") for v in value]}
        cls = type(value)
        if cls.__name__ in self.optimizers and self.optimizers[cls.__name__] is cls:
            return {"t": "optimizer", "cls": cls.__name__, "v": self.encode(value.get_params(deep=False), where)}
        if cls.__name__ in self.stateful and self.stateful[cls.__name__] is cls:
            return {"t": "object", "cls": cls.__name__, "v": self.encode(dict(vars(value)), f"{where}.")}
        if cls.__name__ in self.dataclasses and self.dataclasses[cls.__name__] is cls:
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return {"t": "dataclass", "cls": cls.__name__, "v": self.encode(fields, where)}
        raise ValueError(
            f"{where} is a {cls.__module__}.{cls.__qualname__}, which the safe format cannot store "
            "(it holds only plain values, arrays and this package's estimators, optimizers and "
            "encoders). Save this estimator with joblib.dump instead, and load such files only "
            "from sources you trust."
        )

    def _encode_array(self, array: np.ndarray, where: str) -> dict:
        if array.dtype.kind in _ARRAY_KINDS:
            values, dtype = array.ravel().tolist(), array.dtype.str
            if array.dtype.kind == "U" and array.nbytes > _LOOSE_STRING_ARRAY_BYTES:
                # as wide as its longest string, the width load accepts for a large array
                dtype = f"{dtype[:2]}{max(map(len, values), default=0)}"
            return {"t": "ndarray", "dtype": dtype, "shape": list(array.shape), "v": values}
        if array.dtype.kind == "O":
            flat = [self.encode(v, f"{where}[]") for v in array.ravel()]
            return {"t": "ndarray", "dtype": "object", "shape": list(array.shape), "v": flat}
        raise ValueError(f"{where} is an array of dtype {array.dtype}, which the safe format cannot store; use joblib.")

    # -- decoding ---------------------------------------------------------------------------
    def decode(self, value: Any, where: str) -> Any:
        """The Python value of tagged JSON ``value``; ``where`` names it in error messages."""
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if not isinstance(value, dict) or "t" not in value:
            raise _corrupt(f"{where} is an unexpected JSON value {str(value)[:80]!r}")
        tag, payload = value["t"], value.get("v")
        if tag in ("tuple", "list"):
            items = [self.decode(v, f"{where}[{i}]") for i, v in enumerate(_expect(payload, list, where))]
            return tuple(items) if tag == "tuple" else items
        if tag == "dict":
            table = {}
            for pair in _expect(payload, list, where):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise _corrupt(f"{where} holds a dict item that is not a [key, value] pair")
                key = self.decode(pair[0], f"{where} key")
                table[key] = self.decode(pair[1], f"{where}[{_short(key)}]")
            return table
        if tag == "ndarray":
            return self._decode_array(value, where)
        if tag == "index":
            items = [self.decode(v, f"{where}[]") for v in _expect(payload, list, where)]
            dtype = value.get("dtype")
            if dtype in ("object", "str", "string"):
                return pd.Index(items, dtype=object if dtype == "object" else dtype)
            return pd.Index(_typed_array(items, _safe_dtype(dtype, items, where), where))
        if tag == "optimizer":
            cls = self._lookup(self.optimizers, value, "optimizer")
            return cls(**self._table(payload, where))
        if tag == "object":
            cls = self._lookup(self.stateful, value, "class")
            obj = cls.__new__(cls)
            obj.__dict__.update(self._table(payload, f"{where}."))
            return obj
        if tag == "dataclass":
            cls = self._lookup(self.dataclasses, value, "class")
            return cls(**self._table(payload, where))
        if tag == "tensor" and self.tensors is not None:
            name = value.get("name")
            if not isinstance(name, str) or name not in self.tensors or name in self.used:
                raise _corrupt(f"{where} names the tensor {str(name)[:80]!r}, absent from {_WEIGHTS} or named twice")
            self.used.add(name)
            return self.tensors[name]
        raise _corrupt(f"{where} has an unknown value tag {tag!r}")

    def _table(self, payload: Any, where: str) -> dict:
        """A decoded dict whose keys are names: keyword arguments or attributes."""
        table = self.decode(payload, where)
        if not isinstance(table, dict) or not all(isinstance(k, str) for k in table):
            raise _corrupt(f"{where} is not a table of names")
        return table

    def _decode_array(self, value: dict, where: str) -> np.ndarray:
        shape = _expect(value.get("shape"), list, f"{where} shape")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise _corrupt(f"{where} has the shape {shape!r}, not a list of sizes")
        items = _expect(value.get("v"), list, where)
        if value.get("dtype") == "object":
            array = np.empty(len(items), dtype=object)
            for i, v in enumerate(items):  # one by one: sequences must not broadcast
                array[i] = self.decode(v, f"{where}[{i}]")
        else:
            array = _typed_array(items, _safe_dtype(value.get("dtype"), items, where), where)
        if array.size != int(np.prod(shape)):
            raise _corrupt(f"{where} has {array.size} values, which does not match its shape {shape}")
        return array.reshape(shape)

    @staticmethod
    def _lookup(table: dict, value: dict, what: str) -> type:
        name = value.get("cls")
        if name not in table:
            raise ValueError(
                f"the file names {what} {name!r}, which the safe format does not load (allowed: {sorted(table)})."
            )
        return table[name]


def _expect(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind):
        raise _corrupt(f"{where}: expected a {kind.__name__}, got {type(value).__name__}")
    return value


def _safe_dtype(text: Any, items: list, where: str) -> np.dtype:
    """The numpy dtype named ``text`` for the JSON values ``items``: a number or string dtype, a
    string width that the strings present justify."""
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError):
        raise _corrupt(f"{where} has an unknown dtype {str(text)[:80]!r}") from None
    if dtype.kind not in _ARRAY_KINDS or dtype.subdtype is not None:
        raise _corrupt(f"{where} has the dtype {str(text)[:80]!r}, which is not allowed")
    if dtype.kind == "U":
        if not all(isinstance(v, str) for v in items):
            raise _corrupt(f"{where} has the string dtype {dtype.str!r} but holds values that are not strings")
        width = dtype.itemsize // 4
        longest = max(map(len, items), default=0)
        if width > longest and len(items) * dtype.itemsize > _LOOSE_STRING_ARRAY_BYTES:
            raise _corrupt(
                f"{where} declares strings of {width} characters ({dtype.str!r}) but its longest "
                f"string has {longest}; such an array would take {len(items) * dtype.itemsize} bytes"
            )
    return dtype


def _typed_array(items: list, dtype: np.dtype, where: str) -> np.ndarray:
    try:
        return np.asarray(items, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:  # "a" as a float, 2**70 as int64, a nested list
        raise _corrupt(f"{where} holds values that are not of its dtype {dtype.str} ({str(exc)[:80]})") from None


def _short(key: Any) -> str:
    """A dict key as it appears in error paths, cut short: paths are built for every value."""
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


def _corrupt(detail: str) -> ValueError:
    return ValueError(f"not a valid sklearn-mtr model file: {detail}.")


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True, separators=(",", ":")).encode("utf-8")


def save(estimator, path: str | os.PathLike) -> None:
    """Write ``estimator`` (fitted or not) to ``path`` in the safe format.

    Parameters
    ----------
    estimator : MultiTaskClassifierBase or Pipeline
        One of the public estimators of :mod:`sklearn_mtr`, or a
        :class:`~sklearn.pipeline.Pipeline` whose last step is one (this needs ``skops``:
        ``pip install sklearn-mtr[skops]``). The steps before it may be the scikit-learn
        transformers of :data:`TRUSTED_PIPELINE_TYPES`, ``"passthrough"`` or None; the
        pipeline's ``memory`` is not stored (a warning says so when it is set).
    path : str or path-like
        File to write (conventionally ``*.mtr``); replaced if it exists.

    Raises
    ------
    ValueError
        When the estimator is not one of this package's classes, or a parameter or fitted
        attribute holds an object the format cannot represent (``callbacks``, a custom
        ``optimizer`` class, ...): such estimators are saved with ``joblib.dump``. For a
        pipeline, also when its last step is not an estimator of this package, a step or an
        object inside one is of a type outside :data:`TRUSTED_PIPELINE_TYPES` (the message
        names it), or a step is not fitted while the final estimator is.
    ImportError
        When ``estimator`` is a pipeline with steps before the estimator and ``skops`` is not
        installed.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn_mtr import SharedBottomClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.persistence import load, save
    >>> X, Y = make_multitask_classification(n_samples=100, random_state=0)
    >>> clf = SharedBottomClassifier(max_epochs=1, random_state=0).fit(X, Y)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.mtr")
    >>> save(clf, path)
    >>> bool((load(path).predict_proba(X) == clf.predict_proba(X)).all())
    True

    A pipeline ending in an estimator of this package (with ``skops`` installed):

    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> pipe = make_pipeline(StandardScaler(), SharedBottomClassifier(max_epochs=1, random_state=0)).fit(X, Y)
    >>> save(pipe, path)  # doctest: +SKIP
    >>> bool((load(path).predict_proba(X) == pipe.predict_proba(X)).all())  # doctest: +SKIP
    True
    """
    import sklearn
    from sklearn.pipeline import Pipeline

    from . import __version__

    codec = _Encoder()
    version, extra_members = FORMAT_VERSION, {}
    if isinstance(estimator, Pipeline):
        extra_members, estimator = _pipeline_members(estimator, codec)
        version = PIPELINE_FORMAT_VERSION
    name = type(estimator).__name__
    if codec.estimators.get(name) is not type(estimator):
        raise ValueError(
            f"save stores the estimators of sklearn_mtr.estimators ({sorted(codec.estimators)}); "
            f"got {type(estimator).__module__}.{type(estimator).__qualname__}. Use joblib.dump for other objects."
        )
    params = estimator.get_params(deep=False)
    if params.get("callbacks"):
        raise ValueError(
            "callbacks holds skorch callback objects, which the safe format cannot store; set "
            "callbacks=None before saving (callbacks only act during fit), or use joblib.dump."
        )
    config: dict[str, Any] = {"class": name, "params": codec.encode(params, "parameter")}
    tensors: dict[str, torch.Tensor] = {}
    if estimator.__sklearn_is_fitted__():
        net = estimator.net_
        fitted = {
            key: value
            for key, value in vars(estimator).items()
            if key.endswith("_") and not key.startswith("__") and key not in ("net_", "history_")
        }
        config["fitted"] = codec.encode(fitted, "fitted attribute")
        config["history"] = codec.encode([dict(row) for row in net.history], "history_")
        state = {"module": net.module_.state_dict(), "optimizer": net.optimizer_.state_dict()}
        if net.mto_state_ is not None:
            state["mto_state"] = net.mto_state_.state_dict()
        # the layout in config.json, each tensor replaced by its name in the weights member
        config["state"] = _Encoder(tensors).encode(state, "state")
    members = {"config.json": _json_bytes(config), _WEIGHTS: _safetensors.dumps(tensors), **extra_members}
    header = {
        "format": FORMAT_NAME,
        "format_version": version,
        "sklearn_mtr_version": __version__,
        "torch_version": torch.__version__,
        "sklearn_version": sklearn.__version__,
        "sha256": {key: hashlib.sha256(data).hexdigest() for key, data in members.items()},
    }
    # Written next to the target and renamed over it: a crash mid-save never leaves a
    # half-written file in place of a good one. The temporary name is unique per call (not per
    # process), so threads saving to one path never write into each other's file; it is created
    # exclusively ("x"), with the permissions the umask gives any new file.
    path = os.fspath(path)
    partial = f"{path}.partial-{os.getpid()}-{uuid.uuid4().hex}"
    try:
        with open(partial, "xb") as stream, zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("format.json", _json_bytes(header))
            archive.writestr("config.json", members["config.json"])
            # stored, not deflated: load bounds the weights by the file's own size (tensors
            # barely compress anyway)
            archive.writestr(_WEIGHTS, members[_WEIGHTS], compress_type=zipfile.ZIP_STORED)
            for key, data in extra_members.items():
                # pipeline.skops stored too: its indented JSON deflates about 32 times (a 50,000-word
                # vocabulary), at the ratio load takes for a bomb; stored, it is bounded by the file
                method = zipfile.ZIP_STORED if key == _PIPELINE_SKOPS else zipfile.ZIP_DEFLATED
                archive.writestr(key, data, compress_type=method)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _pipeline_members(pipeline, codec: _Encoder) -> tuple[dict[str, bytes], Any]:
    """The ``pipeline.json`` and ``pipeline.skops`` members of ``pipeline``, and its final step."""
    import warnings

    from sklearn.pipeline import Pipeline
    from sklearn.utils.validation import check_is_fitted

    if type(pipeline) is not Pipeline:
        raise ValueError(
            f"save stores a sklearn.pipeline.Pipeline, not the subclass {type(pipeline).__qualname__}. "
            "Use joblib.dump for it."
        )
    steps = list(pipeline.steps)
    if not steps:
        raise ValueError("the pipeline has no steps.")
    names = [name for name, _ in steps]
    _check_step_names(names, ValueError)
    final = steps[-1][1]
    if codec.estimators.get(type(final).__name__) is not type(final):
        raise ValueError(
            f"save stores a Pipeline whose last step is an estimator of sklearn_mtr.estimators; its last step "
            f"{names[-1]!r} is a {type(final).__module__}.{type(final).__qualname__}. Use joblib.dump for it."
        )
    if pipeline.memory is not None:
        warnings.warn(
            "the pipeline's memory is not saved (it only caches fit); the loaded pipeline has memory=None.",
            UserWarning,
            stacklevel=3,
        )
    if not isinstance(pipeline.verbose, bool):
        raise ValueError(f"the pipeline's verbose={pipeline.verbose!r} is not a bool.")
    transform_input = getattr(pipeline, "transform_input", None)
    if transform_input is not None and (
        not isinstance(transform_input, (list, tuple)) or not all(isinstance(t, str) for t in transform_input)
    ):
        raise ValueError(f"the pipeline's transform_input={transform_input!r} is not a list of names.")
    layout = {
        "steps": names,
        "verbose": pipeline.verbose,
        "transform_input": None if transform_input is None else list(transform_input),
    }
    members = {_PIPELINE_JSON: _json_bytes(layout)}
    objects = [step for _, step in steps[:-1]]
    if final.__sklearn_is_fitted__():
        for name, step in steps[:-1]:
            if step is not None and not (isinstance(step, str) and step == "passthrough"):
                try:
                    check_is_fitted(step)
                except (TypeError, ValueError, AttributeError):  # NotFittedError is both of the last two
                    raise ValueError(f"step {name!r} is not fitted while the final estimator is.") from None
    if objects:
        members[_PIPELINE_SKOPS] = _pipeline_format.dump_steps(objects)
    return members, final


def _check_step_names(names: Any, error: type) -> None:
    """scikit-learn's rules for step names (unique, no ``__``, not a parameter of Pipeline),
    and strings of reasonable length; ``error`` builds the exception."""
    if not isinstance(names, list) or not 1 <= len(names) <= _MAX_STEPS:
        raise error(f"the pipeline's steps are not a list of 1 to {_MAX_STEPS} names")
    for name in names:
        if not isinstance(name, str) or not 0 < len(name) <= 200 or "__" in name or name in _PIPELINE_PARAMS:
            raise error(f"the step name {_short(name)} is not allowed (a non-empty name without '__')")
    if len(set(names)) != len(names):
        raise error(f"the step names {[_short(n) for n in names[:10]]} are not unique")


def _read_member(archive: zipfile.ZipFile, name: str, limit: int, file_size: int, hint: str = "") -> bytes:
    """Member ``name`` of ``archive``, refused when it declares more than ``limit`` bytes, more
    than :data:`MAX_COMPRESSION_RATIO` times its compressed size, compressed bytes beyond the
    file's ``file_size``, or inflates to more than it declared: read in bounded chunks, so no
    header can make it exceed."""
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise _corrupt(f"{name} declares {info.file_size} bytes, more than the {limit} load reads of it{hint}")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _corrupt(f"{name} uses the zip compression method {info.compress_type}, which save never writes")
    if info.compress_size > file_size:
        raise _corrupt(f"{name} declares {info.compress_size} compressed bytes in a file of {file_size}")
    if info.file_size > MAX_COMPRESSION_RATIO * info.compress_size + _RATIO_SLACK:
        raise _corrupt(
            f"{name} declares {info.file_size} bytes compressed into {info.compress_size}, more than "
            f"MAX_COMPRESSION_RATIO={MAX_COMPRESSION_RATIO} times (a compression bomb; raise "
            "sklearn_mtr.persistence.MAX_COMPRESSION_RATIO to read a trusted file)"
        )
    chunks, total = [], 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(min(_READ_CHUNK, info.file_size + 1 - total)):
                total += len(chunk)
                if total > info.file_size:
                    raise _corrupt(f"{name} inflates to more than the {info.file_size} bytes it declares")
                chunks.append(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as exc:
        # damaged data (bad CRC, broken deflate stream, truncated file), or an encryption save never writes
        raise _corrupt(f"{name} cannot be read ({type(exc).__name__}: {exc})") from None
    return b"".join(chunks)


def _read_members(path: str | os.PathLike) -> tuple[dict, dict[str, bytes]]:
    try:
        archive = zipfile.ZipFile(path)
        file_size = os.fstat(archive.fp.fileno()).st_size
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, struct.error):
        raise _corrupt(f"{os.fspath(path)!r} is not a zip archive written by sklearn_mtr.persistence.save") from None
    with archive:
        listed = archive.namelist()
        names = set(listed)
        if len(names) != len(listed):
            # zipfile reads the last of two same-named members, other tools the first
            raise _corrupt("a member name appears twice in the archive")
        if "format.json" not in names:
            raise _corrupt("format.json is missing")
        text = _read_member(archive, "format.json", _MAX_HEADER_BYTES, file_size)
        try:
            header = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise _corrupt("format.json is not JSON") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise _corrupt(f"format.json does not name the {FORMAT_NAME!r} format")
        version = header.get("format_version")
        if type(version) is not int or version not in (FORMAT_VERSION, PIPELINE_FORMAT_VERSION):
            old = (
                " Version 1 stored the tensors in torch's pickle-based format, which is no longer "
                "read. To convert a file you trust: load it with the version that wrote it and "
                "joblib.dump it, then joblib.load that file here and save it."
                if version == 1
                else " Load it with the sklearn-mtr version that wrote it."
            )
            raise ValueError(
                f"the file has format version {_short(version)} (written by sklearn-mtr "
                f"{str(header.get('sklearn_mtr_version', '?'))[:40]}); this sklearn-mtr reads version "
                f"{FORMAT_VERSION} (an estimator) and {PIPELINE_FORMAT_VERSION} (a pipeline).{old}"
            )
        expected = set(_MEMBERS)
        if version == PIPELINE_FORMAT_VERSION:
            # pipeline.skops is there when the pipeline has steps before the estimator
            expected |= {_PIPELINE_JSON} | ({_PIPELINE_SKOPS} & names)
        missing = [m for m in sorted(expected) if m not in names]
        extra = sorted(names - {"format.json", *expected})
        if missing or extra:
            raise _corrupt(
                f"the archive lacks members {missing} or holds unexpected ones {[e[:40] for e in extra[:5]]}"
            )
        if archive.getinfo(_WEIGHTS).compress_type != zipfile.ZIP_STORED:
            raise _corrupt(f"{_WEIGHTS} is compressed; save stores it uncompressed, bounded by the file's size")
        hint = "; raise sklearn_mtr.persistence.MAX_CONFIG_BYTES to read a trusted file with larger vocabularies"
        members = {
            "config.json": _read_member(archive, "config.json", MAX_CONFIG_BYTES, file_size, hint),
            _WEIGHTS: _read_member(archive, _WEIGHTS, file_size, file_size),
        }
        if _PIPELINE_JSON in expected:
            members[_PIPELINE_JSON] = _read_member(archive, _PIPELINE_JSON, _MAX_HEADER_BYTES, file_size)
        if _PIPELINE_SKOPS in expected:
            hint = "; raise sklearn_mtr.persistence.MAX_PIPELINE_BYTES to read a trusted file with larger steps"
            members[_PIPELINE_SKOPS] = _read_member(archive, _PIPELINE_SKOPS, MAX_PIPELINE_BYTES, file_size, hint)
    digests = header.get("sha256")
    digests = digests if isinstance(digests, dict) else {}
    for key, data in members.items():
        if digests.get(key) != hashlib.sha256(data).hexdigest():
            raise _corrupt(f"{key} does not match its checksum (the file is damaged or was modified)")
    return header, members


def load(path: str | os.PathLike, device: str | None = None):
    """Read an estimator written by :func:`save`, running no code from the file.

    Parameters
    ----------
    path : str or path-like
        The file.
    device : str, default=None
        Torch device for the network (``"auto"``: CUDA when available). ``None`` keeps the
        device it was trained on when that is available here and otherwise uses the CPU, so a
        model trained on a GPU loads on a CPU-only machine.

    Returns
    -------
    estimator : MultiTaskClassifierBase or Pipeline
        The estimator, fitted if it was saved fitted; or the pipeline, if a pipeline was saved
        (format version 3, which needs ``skops`` when the pipeline has steps before the
        estimator), with ``memory=None``.

    Raises
    ------
    ValueError
        When the file is not a model file of this format, is damaged, names an unknown
        estimator, optimizer or type, holds parameters the estimator refuses (``compile``
        takes only allow-listed ``torch.compile`` arguments), was modified after saving, or
        has a format version this library does not read; when ``device`` is not a torch
        device or names CUDA on a machine without it. Sizes are checked before memory is
        taken: members larger than their caps (``config.json``: :data:`MAX_CONFIG_BYTES`)
        or than they declare, string arrays wider than their strings, and network sizes
        that the weights do not match are refused. For a pipeline, also when a step or an
        object inside one is of a type outside :data:`TRUSTED_PIPELINE_TYPES` (the message
        names it; nothing of the file is constructed then), ``pipeline.skops`` is above
        :data:`MAX_PIPELINE_BYTES`, holds compressed members or arrays whose headers do not
        match their bytes, or a step is not fitted while the final estimator is. The steps are
        not run at load (what they compute is declared by the file, not bounded by it): a
        hand-edited step can still fail at the first ``predict``.
    ImportError
        When the file holds a pipeline with steps before the estimator and ``skops`` is not
        installed.

    Examples
    --------
    See :func:`save`.
    """
    # Checked before the file is read: a device torch cannot use is the caller's error, not
    # a damaged file (torch.load would fail on it, and that failure reads as a corrupt file).
    device = None if device is None else resolve_device(device)
    header, members = _read_members(path)
    if header["format_version"] == PIPELINE_FORMAT_VERSION:
        return _load_pipeline(members, device)
    return _load_estimator(members, device)


def _load_estimator(members: dict[str, bytes], device: str | None):
    try:
        return _load_members(members, device)
    except _CORRUPT_ERRORS as exc:
        raise _corrupt(
            f"its content cannot be rebuilt into an estimator ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None


def _load_pipeline(members: dict[str, bytes], device: str | None):
    from sklearn.pipeline import Pipeline
    from sklearn.utils.validation import check_is_fitted

    try:
        layout = json.loads(members[_PIPELINE_JSON])
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _corrupt(f"{_PIPELINE_JSON} is not JSON") from None
    if not isinstance(layout, dict) or set(layout) != {"steps", "verbose", "transform_input"}:
        raise _corrupt(f"{_PIPELINE_JSON} does not hold exactly the steps, verbose and transform_input")
    names = layout["steps"]
    _check_step_names(names, _corrupt)
    verbose, transform_input = layout["verbose"], layout["transform_input"]
    if not isinstance(verbose, bool):
        raise _corrupt(f"{_PIPELINE_JSON} has verbose={_short(verbose)}, not a bool")
    if transform_input is not None and (
        not isinstance(transform_input, list) or not all(isinstance(t, str) for t in transform_input)
    ):
        raise _corrupt(f"{_PIPELINE_JSON} has a transform_input that is not a list of names")
    if (len(names) > 1) != (_PIPELINE_SKOPS in members):
        raise _corrupt(f"{_PIPELINE_SKOPS} is missing, or present for a pipeline of one step")
    # the scikit-learn steps are checked (types, sizes) before the network is built
    steps = _pipeline_format.load_steps(members[_PIPELINE_SKOPS], len(names) - 1) if len(names) > 1 else []
    final = _load_estimator(members, device)
    if final.__sklearn_is_fitted__():
        for name, step in zip(names, steps):
            if step is not None and not (isinstance(step, str) and step == "passthrough"):
                try:
                    check_is_fitted(step)
                except Exception as exc:  # noqa: BLE001  (NotFittedError, or state too broken to tell)
                    raise _corrupt(f"step {name!r} is not a fitted transformer ({type(exc).__name__})") from None
    # No prediction through the steps here, unlike the estimator's two-row check: what the steps
    # compute (PolynomialFeatures' degree, the widths their output names are built from) is
    # declared by the file and unbounded by its bytes, so it is predict's cost, never load's.
    return Pipeline(list(zip(names, [*steps, final])), memory=None, verbose=verbose, transform_input=transform_input)


def _load_members(members: dict[str, bytes], device: str | None):
    codec = _Encoder()
    try:
        config = json.loads(members["config.json"])
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _corrupt("config.json is not JSON") from None
    if not isinstance(config, dict):
        raise _corrupt("config.json is not a JSON object")
    cls = codec._lookup(codec.estimators, {"cls": config.get("class")}, "estimator class")
    params = codec._table(config.get("params"), "parameter")
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise ValueError(f"the file's parameters do not fit {cls.__name__} ({exc}).") from None
    try:
        # The checks fit makes, compile's allow-list included: predict runs what the
        # parameters say (torch.compile arguments, thread counts) without calling fit.
        check_common_params(estimator)
    except ValueError as exc:
        raise ValueError(f"the file's parameters are not valid for {cls.__name__}: {exc}") from None
    if "fitted" not in config:
        return estimator

    fitted = codec.decode(config["fitted"], "fitted attribute")
    if not isinstance(fitted, dict) or not all(isinstance(k, str) and k.endswith("_") for k in fitted):
        raise _corrupt("the fitted attributes are not a table of names ending in '_'")
    vars(estimator).update(fitted)
    if device is None:
        saved = torch.device(fitted.get("device_", "cpu"))
        device = str(saved) if saved.type != "cuda" or torch.cuda.is_available() else "cpu"
    estimator.device_ = str(torch.device(device))
    # every size checked against the member's bytes, which are dropped once copied into tensors
    tensors, _ = _safetensors.loads(members.pop(_WEIGHTS))
    state_codec = _Encoder(tensors)
    state = state_codec.decode(config.get("state"), "state")
    if state_codec.used != tensors.keys():
        raise _corrupt(f"{_WEIGHTS} holds tensors that config.json does not place")
    if not isinstance(state, dict) or not isinstance(state.get("module"), dict) or "optimizer" not in state:
        raise _corrupt("the training state does not hold the network's state_dict and the optimizer's state")
    _check_module_shapes(estimator, state["module"])

    devices = [torch.device(estimator.device_)] if torch.device(estimator.device_).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # building the net draws initial weights
        net = estimator._make_net(estimator._call_net_params(None))
        net.initialize()
    net.module_.load_state_dict(state["module"])
    net.optimizer_.load_state_dict(state["optimizer"])
    if (net.mto_state_ is None) != ("mto_state" not in state):
        raise _corrupt("the multi-task method's state is missing, or present for a method that has none")
    if "mto_state" in state:
        net.mto_state_.load_state_dict(state["mto_state"])
    history = codec.decode(config.get("history", {"t": "list", "v": []}), "history_")
    net.history = History(history)
    estimator.net_ = net
    estimator.history_ = net.history
    _check_predicts(estimator, len(members["config.json"]))
    return estimator


def _check_predicts(estimator, config_size: int) -> None:
    """Predict two rows of missing values, which every feature kind accepts: fitted attributes
    that are well-typed one by one but do not work together (a scaler or a vocabulary removed
    or replaced, column names that are not the encoder's) fail here, as a damaged file, rather
    than with an AttributeError or a KeyError at the user's first predict. A ValueError is
    what predict raises for input it refuses: it tells nothing about the file, so it passes."""
    import warnings

    keys = getattr(estimator, "_column_keys_", None)
    if getattr(estimator, "_labelled_columns_", False) and isinstance(keys, list):
        X = pd.DataFrame({key: [None, None] for key in keys}, columns=keys)
    else:
        n = estimator.n_features_in_
        if not isinstance(n, int) or not 0 < n <= config_size:  # each column takes bytes of config.json
            raise _corrupt(f"n_features_in_={_short(n)} is not a number of columns that config.json describes")
        X = np.full((2, n), np.nan)
    net, compile_module = estimator.net_, estimator.net_.compile_module
    net.set_compile(False)  # compiling (and the compiler it needs) is the first predict's business
    try:
        with warnings.catch_warnings(), torch.random.fork_rng():
            warnings.simplefilter("ignore")
            estimator.predict_proba(X)
    except ValueError:
        pass
    except Exception as exc:  # noqa: BLE001  (whatever fails here, the file's state is what is wrong)
        raise _corrupt(f"the rebuilt estimator cannot predict ({type(exc).__name__}: {str(exc)[:200]})") from None
    finally:
        net.set_compile(compile_module)


class _BuildBudget:
    """Global torch module-registration hooks that stop a build once it registers more tensors
    or submodules than ``tensors`` allow; active in the thread that entered it only."""

    _local = threading.local()

    def __init__(self, tensors: int) -> None:
        # Every parameter or buffer of the network is a tensor of the file; a module without
        # tensors (an activation, a container) comes with modules that have some, so a few
        # per tensor is generous (this package's networks have at most about 2).
        self.limits = {"tensors": 2 * tensors + 16, "modules": 8 * tensors + 64}

    def __enter__(self) -> None:
        from torch.nn.modules import module

        self.counts = dict.fromkeys(self.limits, 0)
        self._local.budget = self
        self.handles = [
            module.register_module_parameter_registration_hook(lambda *args: self._count("tensors")),
            module.register_module_buffer_registration_hook(lambda *args: self._count("tensors")),
            module.register_module_module_registration_hook(lambda *args: self._count("modules")),
        ]

    def _count(self, kind: str) -> None:
        if getattr(self._local, "budget", None) is not self:
            return  # another thread building its own modules
        self.counts[kind] += 1
        if self.counts[kind] > self.limits[kind]:
            raise _OverBudget(kind, self.limits[kind])

    def __exit__(self, *exc_info) -> None:
        self._local.budget = None
        for handle in self.handles:
            handle.remove()


class _OverBudget(Exception):
    pass


def _check_module_shapes(estimator, state: dict) -> None:
    """Refuse weights whose names or shapes differ from the network the configuration builds.

    The network is built on the ``meta`` device (shapes, no memory, no initialisation) before
    the real one: sizes in the configuration (categorical cardinalities, layer widths) that the
    weights do not back would otherwise allocate and initialise gigabytes first. Counts (tasks,
    experts, layers, features) make Python objects even on the meta device, so the build is
    stopped once it registers more tensors or modules than the weights hold.
    """
    n_tasks = estimator.n_tasks_
    if not isinstance(n_tasks, int) or isinstance(n_tasks, bool) or not 1 <= n_tasks <= len(state):
        # every task has a tower (at least one tensor of its own)
        raise _corrupt(f"n_tasks_={str(n_tasks)[:40]} is not a count of tasks that {len(state)} tensors can hold")
    try:
        with _BuildBudget(len(state)), torch.device("meta"):
            skeleton = estimator._build_module(estimator.feature_encoder_.schema_, n_tasks)
    except _OverBudget as exc:
        kind, limit = exc.args
        raise _corrupt(
            f"the configuration builds a network of more than {limit} {kind}, where {_WEIGHTS} holds "
            f"{len(state)} tensors of it"
        ) from None
    # dtypes too: load_state_dict would silently cast integer bytes into float weights
    expected = {name: (tuple(t.shape), t.dtype) for name, t in skeleton.state_dict().items()}
    found = {name: (tuple(t.shape), t.dtype) if isinstance(t, torch.Tensor) else None for name, t in state.items()}
    if expected.keys() != found.keys():
        missing, extra = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
        raise _corrupt(
            f"{_WEIGHTS} does not hold the network the configuration describes "
            f"(missing {missing[:5]}, unexpected {[str(e)[:80] for e in extra[:5]]})"
        )
    for name, shape in expected.items():
        if found[name] != shape:
            raise _corrupt(
                f"{_WEIGHTS} holds {name} of shape {found[name][0]} ({found[name][1]}), where the configuration "
                f"builds {shape[0]} ({shape[1]})"
            )


def __getattr__(name: str) -> Any:
    # computed on first use: naming the classes imports several scikit-learn modules
    if name == "TRUSTED_PIPELINE_TYPES":
        return tuple(_pipeline_format.trusted_types())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FORMAT_VERSION",
    "MAX_COMPRESSION_RATIO",
    "MAX_CONFIG_BYTES",
    "MAX_PIPELINE_BYTES",
    "PIPELINE_FORMAT_VERSION",
    "TRUSTED_PIPELINE_TYPES",  # noqa: F822  (computed by the module __getattr__)
    "load",
    "save",
]
