"""Architectures: plain torch modules following :class:`MultiTaskModule`'s contract.

A new architecture is one new file plus one line in ``MODELS``.
"""

from ._base import MultiTaskModule
from .aitm import AITM
from .esmm import ESMM
from .grec import GRec
from .mmoe import MMoE
from .onerank import OneRank
from .ple import PLE
from .resflow import ResFlow
from .shared_bottom import SharedBottom

#: Registered architecture names, mapped to their :class:`MultiTaskModule` class.
MODELS: dict[str, type[MultiTaskModule]] = {
    "shared_bottom": SharedBottom,
    "mmoe": MMoE,
    "ple": PLE,
    "resflow": ResFlow,
    "esmm": ESMM,
    "aitm": AITM,
    "onerank": OneRank,
    "grec": GRec,
}

__all__ = ["AITM", "ESMM", "MODELS", "PLE", "GRec", "MMoE", "MultiTaskModule", "OneRank", "ResFlow", "SharedBottom"]
