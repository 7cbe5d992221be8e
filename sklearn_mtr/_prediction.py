"""Prediction and scoring shared by every estimator: chunked, with bounded memory."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from scipy.special import expit
from sklearn.utils.validation import check_is_fitted

from ._threads import torch_threads

# Rows encoded at once by predict: bounds its memory beyond the input and the output.
_PREDICT_CHUNK = 1 << 16


class PredictionMixin:
    """``predict_proba``, ``predict`` and ``score``, and the one path they share."""

    def _predict_task_logits(self, X, groups=None) -> np.ndarray:
        """Task logits ``(n_samples, n_tasks)`` of ``X``: the one path every prediction method
        takes (input validation, chunked encoding, the check for non-finite outputs)."""
        check_is_fitted(self)
        frame = self._validate_X(X, reset=False)
        with torch_threads(self.n_threads):
            logits = self._predict_logits(frame, self._request_codes(groups, frame.shape[0]))
        bad = ~np.isfinite(logits).all(axis=1)
        if bad.any():
            raise FloatingPointError(
                f"the network produced non-finite outputs for {int(bad.sum())} row(s) (first: row "
                f"{int(np.argmax(bad))}); the model's weights or those rows' inputs hold extreme values."
            )
        return logits

    def _predict_task_proba(self, X, groups=None) -> np.ndarray:
        proba = self._predict_task_logits(X, groups).astype(np.float64)
        return expit(proba, out=proba)  # in place: no second array of the output's size

    def _predict_logits(self, frame: pd.DataFrame, codes: torch.Tensor | None = None) -> np.ndarray:
        """Logits of ``frame``, encoded and predicted about ``_PREDICT_CHUNK`` rows at a time so
        that memory beyond the input and the output stays bounded however many rows there are.

        With request ``codes`` the rows are taken request by request (a chunk ends on a request
        boundary, so every request is scored whole) and the logits put back in row order.
        """
        n = frame.shape[0]
        order = None if codes is None else torch.argsort(codes, stable=True).numpy()
        sorted_codes = None if codes is None else codes.numpy()[order]
        batch_size = max(self.batch_size, 4096)
        logits, start = None, 0
        while start < n:
            stop = min(start + _PREDICT_CHUNK, n)
            if order is None:
                rows, group = slice(start, stop), None
            else:
                stop = int(np.searchsorted(sorted_codes, sorted_codes[stop - 1], side="right"))
                rows, group = order[start:stop], torch.from_numpy(sorted_codes[start:stop])
            part, batch_size = self._predict_chunk(self._encode(_take_rows(frame, rows)), group, batch_size)
            if logits is None:
                logits = np.empty((n, part.shape[1]), dtype=part.dtype)
            logits[rows] = part
            start = stop
        return logits

    def _encode(self, frame: pd.DataFrame, reset: bool = False) -> dict[str, torch.Tensor]:
        """The model's input tensors for ``frame`` (``reset``: the first fit, which may record
        what the network is built from). Subclasses add inputs computed outside the feature layer."""
        return self.feature_encoder_.transform(frame)

    def _predict_chunk(self, encoded: dict, group: torch.Tensor | None, batch_size: int) -> tuple[np.ndarray, int]:
        """Logits of one encoded chunk (with its request codes), and the batch size that fitted
        on the device."""
        while True:
            try:
                return self.net_.predict_logits(encoded, batch_size, group), batch_size
            except torch.cuda.OutOfMemoryError as exc:
                if batch_size <= self.batch_size:
                    raise torch.cuda.OutOfMemoryError(
                        f"CUDA ran out of memory while predicting in batches of {batch_size} rows on "
                        f"{self.device_}; set a smaller batch_size (set_params(batch_size=...)): predict "
                        "then uses batches of batch_size rows."
                    ) from exc
                # Predict batches default to at least 4096 rows: fall back to batch_size rows.
                warnings.warn(
                    f"CUDA ran out of memory predicting {batch_size} rows per batch; retrying with "
                    f"batch_size={self.batch_size}.",
                    RuntimeWarning,
                )
                torch.cuda.empty_cache()
                batch_size = self.batch_size

    def _proba_output(self, proba: np.ndarray) -> np.ndarray:
        """Task probabilities as ``predict_proba`` returns them (two columns for a 1-D ``y``)."""
        if self.binary_:
            return np.column_stack([1.0 - proba[:, 0], proba[:, 0]])
        return proba

    def _decisions(self, proba: np.ndarray) -> np.ndarray:
        """Task probabilities as ``predict`` returns them: 0/1 per task, or class labels."""
        if self.binary_:
            return self.classes_[(proba[:, 0] > 0.5).astype(int)]
        return (proba > 0.5).astype(np.int64)

    def _mean_task_auc(self, proba: np.ndarray, y, sample_weight) -> float:
        """What :meth:`score` returns, from already predicted task probabilities."""
        from sklearn.exceptions import UndefinedMetricWarning

        from .metrics import per_task_roc_auc

        y, _ = self._validate_y(y, first=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            aucs = per_task_roc_auc(y, proba, sample_weight=sample_weight)
        undefined = np.isnan(aucs)
        if undefined.any():
            names = [str(t) for t, u in zip(self.task_names_, undefined) if u]
            warnings.warn(
                f"ROC AUC is undefined for task(s) {names}: their labelled rows in y hold one class only; "
                + ("the score is NaN." if undefined.all() else "the score is the mean over the other tasks."),
                UndefinedMetricWarning,
            )
        return float(np.nanmean(aucs)) if not undefined.all() else float("nan")

    def predict_proba(self, X):
        """Probability of the positive label for every task.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_tasks), or (n_samples, 2) for a 1-D ``y``
            Column ``k`` is task ``k``'s probability, in the order of ``task_names_``
            (the marginal probability of that label). A binary classifier returns the
            usual two columns, ordered as ``classes_``.
        """
        return self._proba_output(self._predict_task_proba(X))

    def predict(self, X):
        """0/1 decisions per task (probability > 0.5), shape (n_samples, n_tasks).

        With a 1-D ``y`` the predicted class labels, shape (n_samples,).
        """
        return self._decisions(self._predict_task_proba(X))

    def score(self, X, y, sample_weight=None):
        """Mean over tasks of the ROC AUC of ``predict_proba`` (not accuracy).

        Missing labels (NaN) are left out per task; a task with a single class in ``Y`` (a
        cross-validation fold where it is constant, say) is skipped with an
        ``UndefinedMetricWarning``, and the score is NaN, with the same warning, when every
        task is. This is what ``GridSearchCV`` maximises when ``scoring`` is not given.
        """
        return self._mean_task_auc(self._predict_task_proba(X), y, sample_weight)


def _take_rows(frame, rows):
    """Rows of a DataFrame or a CSR matrix (slicing CSR rows copies only theirs)."""
    return frame[rows] if sp.issparse(frame) else frame.iloc[rows]
