"""Request groups: the codes of their ids, and the check that request-level columns are constant
within a request."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch


def group_codes(groups, n: int) -> torch.Tensor:
    """Request codes ``0..G-1`` per row (every row its own request when ``groups`` is None)."""
    if groups is None:
        return torch.arange(n)
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {groups.shape}.")
    missing = pd.isna(groups)
    if missing.any():
        raise ValueError(
            f"groups holds a missing request id (NaN or None) at row {int(np.argmax(missing))}: every row needs "
            "a request id (missing ids would put all such rows into one request)."
        )
    codes, _ = pd.factorize(groups)
    return torch.from_numpy(codes.astype(np.int64))


def _hashable(value):
    return tuple(value) if isinstance(value, (list, tuple, np.ndarray)) else value


def check_request_columns(X, groups, columns) -> None:
    """Raise a ValueError naming the first of ``columns`` of ``X`` that is not constant within
    a request (rows sharing a ``groups`` id), and one such request."""
    groups = np.asarray(groups)
    if not columns or groups.ndim != 1 or len(groups) != np.shape(X)[0]:
        return  # shape errors are reported by the caller's own checks
    request = group_codes(groups, len(groups)).numpy()
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, dtype=object))
    n_requests = int(request.max()) + 1 if len(request) else 0
    for column in columns:
        values = frame[column].map(_hashable) if frame[column].dtype == object else frame[column]
        codes = pd.factorize(values, use_na_sentinel=False)[0]
        low = np.full(n_requests, np.iinfo(np.int64).max)
        high = np.full(n_requests, -1)
        np.minimum.at(low, request, codes)
        np.maximum.at(high, request, codes)
        varying = np.flatnonzero(low != high)
        if len(varying):
            rows = np.flatnonzero(request == varying[0])
            row = rows[np.argmax(codes[rows] != codes[rows[0]])]
            request_id = groups[rows[0]]
            request_id = request_id.item() if isinstance(request_id, np.generic) else request_id
            raise ValueError(
                f"request-level column {column!r} varies within request {request_id!r} (rows {rows[0]} and "
                f"{row}): context_features and sequence features describe the request and must be constant "
                "within it."
            )
