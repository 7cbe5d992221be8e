"""ONNX export of a fitted estimator's network, for serving without Python or torch.

The graph covers the network only: it maps the *encoded* input tensors to per-task
probabilities. Turning raw rows into those tensors (vocabulary look-ups, standardisation,
tokenisation) stays in Python, in :func:`encode_for_onnx`, or is reimplemented by the
serving side from the fitted encoder (``estimator.feature_encoder_``):

- ``categorical``: int64 ``(n, n_categorical)``, one column per categorical feature in
  the order of ``feature_encoder_.categorical_``; the code of a value is its position in
  ``feature_encoder_.vocabularies_[column].index_`` plus 2; 1 is a missing or unseen value
  (0 is padding and never appears here);
- ``numeric``: float32 ``(n, n_numeric)``, ``(x - mean_) / scale_`` per numeric column in
  the order of ``feature_encoder_.numeric_``, a missing value as 0, followed by one 0/1
  missing-indicator column for every column whose ``has_missing_`` is true (with
  ``numeric_encoding="piecewise"`` the graph computes the piecewise-linear codes from these
  standardised values itself, so the input is the same for both encodings);
- ``seq__<col>`` int64 ``(n, max_len)`` and ``len__<col>`` int64 ``(n,)`` per sequence column:
  each row's item codes (in the vocabulary of the column, or of the categorical column it
  shares) left-aligned and padded with 0, and its length;
- ``text__<col>`` int64 ``(n, width)`` and ``weight__<col>`` float32 ``(n, width)`` per text
  column: the ids of the row's hashed word uni- and bigrams (lower-cased ``\\w+`` words and
  adjacent pairs, ``HashingVectorizer(ngram_range=(1, 2), alternate_sign=False)`` buckets of
  ``feature_encoder_.texts_[col]``, coded as ``ids_[i]``, ``i`` the bucket's position in its
  ``buckets_``; buckets unseen in fit are dropped) and their weights ``(1 + log tf) * idf_``, l2-normalised
  per row; padded with id 0 and weight 0;
- ``sparse__ids`` int64 ``(n, width)`` and ``sparse__values`` float32 ``(n, width)`` for an
  estimator fitted on a scipy sparse X: each row's stored columns ``j`` as
  ``feature_encoder_.sparse_.ids_[j]`` and their values ``x / feature_encoder_.sparse_.scale_[j]``,
  padded with id 0 and value 0.

Outputs: ``logits`` and ``proba`` = ``sigmoid(logits)``, float32 ``(n, n_tasks)`` in the order
of ``task_names_``. For an estimator fitted on a 1-D ``y``, ``proba`` holds the positive class
(``classes_[1]``) only, where ``predict_proba`` returns both columns. The batch axis is
dynamic, as is the width of the sequence and text inputs. Exporting uses torch's tracing
(TorchScript-based) exporter and needs the ``onnx`` package; running the graph needs
``onnxruntime``: ``pip install sklearn-mtr[onnx]`` installs both.
"""

from __future__ import annotations

import copy
import os
import warnings

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

DEFAULT_OPSET = 17


class _PositionalNetwork(torch.nn.Module):
    """The model with positional tensor inputs (ONNX has no dict inputs) and both outputs."""

    def __init__(self, module: torch.nn.Module, names: list[str]):
        super().__init__()
        self.module, self.names = module, names

    def forward(self, *tensors):
        out = self.module(dict(zip(self.names, tensors)))
        logits = (out[0] if isinstance(out, tuple) else out).float()
        return logits, torch.sigmoid(logits)


def encode_for_onnx(estimator, X) -> dict[str, np.ndarray]:
    """The exported graph's inputs for the raw rows ``X``: what ``predict_proba`` feeds the network.

    Parameters
    ----------
    estimator : MultiTaskClassifierBase
        The fitted estimator that was exported.
    X : DataFrame or array-like of shape (n_samples, n_features)
        Raw rows with the columns seen in ``fit``.

    Returns
    -------
    feed : dict of str to ndarray
        Input name to array, ready for ``onnxruntime.InferenceSession.run(None, feed)``.
    """
    check_is_fitted(estimator)
    frame = estimator._validate_X(X, reset=False)
    return {name: tensor.numpy() for name, tensor in estimator.feature_encoder_.transform(frame).items()}


def export_onnx(estimator, path: str | os.PathLike, X=None, *, opset: int = DEFAULT_OPSET) -> list[str]:
    """Write the fitted network of ``estimator`` as an ONNX graph.

    Parameters
    ----------
    estimator : MultiTaskClassifierBase
        A fitted estimator of :mod:`sklearn_mtr`.
    path : str or path-like
        The ``.onnx`` file to write.
    X : DataFrame or array-like, default=None
        A few raw rows to trace the network with (recommended for architectures whose
        inputs go beyond the encoded features); by default a batch of out-of-vocabulary codes,
        zeros and one-item sequences built from the feature schema.
    opset : int, default=17
        ONNX opset version (17 is read by onnxruntime 1.14 and later).

    Returns
    -------
    input_names : list of str
        The graph's inputs, in order (see the module documentation for their encoding).

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.export import export_onnx
    >>> X, Y = make_multitask_classification(n_samples=100, n_categorical=1, as_frame=True, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, max_epochs=1, random_state=0).fit(X, Y)
    >>> export_onnx(clf, os.path.join(tempfile.mkdtemp(), "mmoe.onnx"))
    ['categorical', 'numeric']
    """
    check_is_fitted(estimator)
    try:
        import onnx  # noqa: F401  (only its presence is checked)
    except ImportError:
        raise ImportError("export_onnx needs the onnx package: pip install sklearn-mtr[onnx].") from None
    if not isinstance(opset, int) or opset < 13:
        raise ValueError(f"opset must be an integer of at least 13, got {opset!r}.")
    example = encode_for_onnx(estimator, X) if X is not None else _schema_example(estimator.feature_encoder_.schema_)
    names = sorted(example)
    # A CPU copy in eval mode: the estimator's own module is neither moved nor switched.
    module = copy.deepcopy(estimator.net_.module_).cpu().eval()
    network = _PositionalNetwork(module, names).eval()
    dynamic_axes = {name: {0: "batch"} for name in names}
    for name in names:
        if name.startswith(("seq__", "text__", "weight__", "sparse__")):
            dynamic_axes[name][1] = f"{name}_width"
    dynamic_axes.update({"logits": {0: "batch"}, "proba": {0: "batch"}})
    inputs = tuple(torch.as_tensor(example[name]) for name in names)
    torch.onnx.register_custom_op_symbolic("aten::expm1", _expm1, opset)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                network,
                inputs,
                os.fspath(path),
                dynamo=False,  # the tracing exporter: fast, and needs no onnxscript
                input_names=names,
                output_names=["logits", "proba"],
                dynamic_axes=dynamic_axes,
                opset_version=opset,
            )
    except (torch.onnx.errors.OnnxExporterError, RuntimeError) as exc:
        raise ValueError(
            f"the network of {type(estimator).__name__} could not be exported to ONNX (opset {opset}): "
            f"{str(exc).splitlines()[0]}. Architectures whose control flow depends on the data (sparse "
            "mixture-of-experts routing, request-level sorting) are not exportable by tracing; serve "
            "them with torch (save / load)."
        ) from exc
    return names


def _expm1(g, x):
    """``expm1`` for opsets that lack it: ``exp(x) - 1``, and the series ``x + x^2/2 + x^3/6``
    where ``|x| < 1e-3`` (there ``exp(x) - 1`` loses the digits that ESMM's ``log(-expm1(x))``
    needs)."""

    def const(value):
        return g.op("Constant", value_t=torch.tensor(value, dtype=torch.float32))

    series = g.op("Add", x, g.op("Mul", g.op("Mul", x, x), g.op("Add", const(0.5), g.op("Div", x, const(6.0)))))
    direct = g.op("Sub", g.op("Exp", x), const(1.0))
    small = g.op("Less", g.op("Abs", x), const(1e-3))
    return g.op("Where", small, series, direct)


def _schema_example(schema, n: int = 2) -> dict[str, np.ndarray]:
    """Out-of-vocabulary codes, zeros and one-item sequences shaped like the encoded features."""
    batch: dict[str, np.ndarray] = {}
    if schema.n_categorical:
        batch["categorical"] = np.ones((n, schema.n_categorical), dtype=np.int64)
    if schema.n_numeric:
        batch["numeric"] = np.zeros((n, schema.n_numeric), dtype=np.float32)
    for item in schema.sequences:
        batch[f"seq__{item.name}"] = np.ones((n, 2), dtype=np.int64)
        batch[f"len__{item.name}"] = np.full(n, 2, dtype=np.int64)
    bags = [(f"text__{t.name}", f"weight__{t.name}", t.vocab_size) for t in schema.texts]
    if schema.sparse is not None:
        bags.append(("sparse__ids", "sparse__values", schema.sparse.n_columns + 1))
    for ids, weights, size in bags:
        batch[ids] = np.full((n, 2), min(1, size - 1), dtype=np.int64)
        batch[weights] = np.full((n, 2), 0.5, dtype=np.float32)
    return batch


__all__ = ["DEFAULT_OPSET", "encode_for_onnx", "export_onnx"]
