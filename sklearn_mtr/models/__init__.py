"""Architectures: plain torch modules following :class:`MultiTaskModule`'s contract.

A new architecture is one new file plus one line in ``MODELS``.
"""

from ._base import MultiTaskModule
from .mmoe import MMoE
from .ple import PLE
from .shared_bottom import SharedBottom

MODELS: dict[str, type[MultiTaskModule]] = {
    "shared_bottom": SharedBottom,
    "mmoe": MMoE,
    "ple": PLE,
}

__all__ = ["MODELS", "MultiTaskModule", "MMoE", "PLE", "SharedBottom"]
