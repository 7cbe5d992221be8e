"""Torch's intra-op thread count for the duration of one call (the ``n_threads`` parameter)."""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def check_n_threads(n_threads) -> None:
    """``n_threads`` must be None or a positive integer."""
    if n_threads is not None and (
        not isinstance(n_threads, numbers.Integral) or isinstance(n_threads, bool) or n_threads < 1
    ):
        raise ValueError(f"n_threads must be None or a positive integer, got {n_threads!r}.")


@contextmanager
def torch_threads(n_threads) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n_threads)`` and restore the previous count
    afterwards, also when the block raises; ``None`` leaves torch's setting alone.

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    check_n_threads(n_threads)
    if n_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
