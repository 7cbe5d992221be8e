"""Bin edges of a numeric column for the piecewise-linear encoding."""

from __future__ import annotations

import numpy as np


def bin_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Sorted, distinct bin edges of ``values`` (NaN ignored) for about ``n_bins`` bins.

    - A column with at most ``n_bins + 1`` distinct values gets one edge per value: its
      piecewise-linear code is then a thermometer code of the value, and a linear map of it
      is an embedding per value.
    - Otherwise the edges are quantiles of the values, taken from the data (never between two
      data values), with point masses treated apart: a value that holds more than
      ``1 / n_bins`` of the rows (the 0 of a zero-inflated column, a cap, a default) is an
      edge together with the distinct values just below and above it. Between those
      neighbours lie no training values, so the code switches sharply on that value, and the
      quantiles are taken over the other values only: a column that is 0 for 90 % of rows
      still gets ``n_bins`` fine bins over its non-zero values, where plain quantiles would
      collapse onto the 0.

    Returns an empty array when no value is finite; a single edge for a constant column.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.empty(0)
    uniq, counts = np.unique(finite, return_counts=True)
    if len(uniq) <= n_bins + 1:
        return uniq.astype(np.float64)
    heavy = np.flatnonzero(counts > finite.size / n_bins)
    around = np.unique(np.clip(np.concatenate([heavy - 1, heavy, heavy + 1]), 0, len(uniq) - 1))
    light = np.ones(len(uniq), dtype=bool)
    light[heavy] = False
    # quantiles of the light values from their counts ("inverted CDF": always a data value)
    cdf = np.cumsum(counts[light]) / counts[light].sum()
    levels = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    inner = uniq[light][np.minimum(np.searchsorted(cdf, levels, side="left"), light.sum() - 1)]
    edges = np.concatenate([uniq[[0, -1]], uniq[around], inner])
    return np.unique(edges).astype(np.float64)
