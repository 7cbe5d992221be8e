"""``python -m sklearn_mtr COMMAND``: the same commands as the ``sklearn-mtr`` console script.

``python -m sklearn_mtr demo`` trains on synthetic data and prints per-task metrics; see
:mod:`sklearn_mtr.cli` for ``fit``, ``evaluate`` and ``predict``.
"""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m sklearn_mtr"))
