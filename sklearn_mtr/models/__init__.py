"""Architectures: plain torch modules following :class:`MultiTaskModule`'s contract.

A new architecture is one new file here plus one registration line
(:func:`sklearn_mtr.extending.register_architecture`, or ``sklearn_mtr/estimators/__init__.py``
for one with a hand-written estimator).
"""

from ._base import MultiTaskModule
from .aitm import AITM
from .cross_stitch import CrossStitch
from .dbmtl import DBMTL
from .dselect_k import DSelectK
from .escm2 import ESCM2
from .esmm import ESMM
from .grec import GRec
from .mmoe import MMoE
from .omoe import OMoE
from .onerank import OneRank
from .pepnet import PEPNet
from .ple import PLE
from .resflow import ResFlow
from .shared_bottom import SharedBottom
from .split_primary import SplitPrimaryTower

#: Modules a multi-task method may wrap an architecture in, by name: the estimators hand this
#: mapping to ``MultiTaskOptimizer.wrap_module``, so that methods never import the architectures.
MODULE_WRAPPERS = {"split_primary": SplitPrimaryTower}

__all__ = [
    "AITM",
    "DBMTL",
    "ESCM2",
    "ESMM",
    "MODULE_WRAPPERS",
    "PLE",
    "CrossStitch",
    "DSelectK",
    "GRec",
    "MMoE",
    "MultiTaskModule",
    "OMoE",
    "OneRank",
    "PEPNet",
    "ResFlow",
    "SharedBottom",
    "SplitPrimaryTower",
]
