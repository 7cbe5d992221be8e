"""Architectures: plain torch modules following :class:`MultiTaskModule`'s contract.

A new architecture is one new file plus one line in ``MODELS``.
"""

from ._base import MultiTaskModule
from .aitm import AITM
from .esmm import ESMM
from .mmoe import MMoE
from .ple import PLE
from .resflow import ResFlow
from .shared_bottom import SharedBottom

MODELS: dict[str, type[MultiTaskModule]] = {
    "shared_bottom": SharedBottom,
    "mmoe": MMoE,
    "ple": PLE,
    "resflow": ResFlow,
    "esmm": ESMM,
    "aitm": AITM,
}

__all__ = ["AITM", "ESMM", "MODELS", "PLE", "MMoE", "MultiTaskModule", "ResFlow", "SharedBottom"]
