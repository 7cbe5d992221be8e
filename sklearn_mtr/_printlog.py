"""What a verbose fit prints: a per-epoch table a person reads, in a terminal or a log file."""

from __future__ import annotations

import sys
from numbers import Number

from skorch.callbacks import PrintLog, ProgressBar

# A list of numbers with at most this many entries prints each of them; a longer one, its range.
_LISTED = 4


def is_terminal(stream) -> bool:
    """Whether ``stream`` is an interactive terminal (False for files, pipes and replaced streams)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed stream
        return False


def show_progress_bar() -> bool:
    """A per-batch progress bar redraws a terminal line or a notebook widget; in a log file it
    would write a line per update, so it is left out there."""
    return is_terminal(sys.stderr) or ProgressBar().in_ipynb()


def summarise(values) -> str:
    """A list of numbers in a table cell: each to 3 significant digits (``0.519/0.481``) when
    there are at most four, else the range and the count (``0.0312..0.214 (8)``)."""
    values = [float(v) for v in values]
    if len(values) <= _LISTED:
        return "/".join(f"{v:.3g}" for v in values)
    return f"{min(values):.3g}..{max(values):.3g} ({len(values)})"


class EpochTable(PrintLog):
    """skorch's :class:`~skorch.callbacks.PrintLog` with cells a person reads.

    - A list of numbers (a method's per-task weights or update norms, a router's per-expert
      load) is summarised by :func:`summarise` instead of printed as a list of 16-digit floats;
      ``history_`` keeps the full values.
    - The best epoch's values are coloured only when standard output is a terminal: a log
      file gets no ANSI escape codes.
    """

    def format_row(self, row, key, color):
        value = row[key]
        if isinstance(value, (list, tuple)) and value and all(_is_number(v) for v in value):
            return summarise(value)
        if not is_terminal(sys.stdout):
            row = {k: v for k, v in row.items() if not k.endswith("_best")}  # no best marker, no colour
        return super().format_row(row, key, color)


def _is_number(value) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)
