import os
from pathlib import Path

import pytest
import torch

# The tests train tiny models: intra-op threads only add synchronisation, and on a busy
# 2-core machine OpenMP spinning makes a 0.1 ms step take 30 ms.
torch.set_num_threads(1)

SHARED_DATA = Path(os.environ.get("SKLEARN_MTR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def every_term_deep(monkeypatch):
    """Text terms and sparse columns of any training frequency get deep vectors: the tiny frames
    of the model tests have no term in DEEP_MIN_DF rows, which would leave the deep tables empty."""
    from sklearn_mtr.features import _text

    monkeypatch.setattr(_text, "DEEP_MIN_DF", 1)
