"""Multi-task optimization methods for the ``optimizer=`` parameter.

A new method is one new file plus one line in ``OPTIMIZERS``.
"""

from __future__ import annotations

from sklearn.base import clone

from ._base import MultiTaskOptimizer, StepContext
from .adatask import AdaTask
from .aligned_mtl import AlignedMTL
from .cagrad import CAGrad
from .config import ConFIG
from .db_mtl import DBMTL
from .drgrad import DRGrad
from .dualproj import DualProj
from .dwa import DWA
from .equal_weight import EW
from .excess_mtl import ExcessMTL
from .fairgrad import FairGrad
from .famo import FAMO
from .gls import GLS
from .graddrop import GradDrop
from .gradnorm import GradNorm
from .gradvac import GradVac
from .imtl_g import IMTLG
from .metabalance import MetaBalance
from .mgda import MGDA
from .moco import MoCo
from .modo import MoDo
from .nash_mtl import NashMTL
from .pcgrad import PCGrad
from .pub import PUB
from .rlw import RLW
from .sdmgrad import SDMGrad
from .stch import STCH
from .uncertainty import UW
from .upgrad import UPGrad

#: Registered names of the ``optimizer=`` parameter, mapped to the method's class.
OPTIMIZERS: dict[str, type[MultiTaskOptimizer]] = {
    "adam": EW,
    "ew": EW,
    "pub": PUB,
    "drgrad": DRGrad,
    "uw": UW,
    "dwa": DWA,
    "gradnorm": GradNorm,
    "famo": FAMO,
    "adatask": AdaTask,
    "mgda": MGDA,
    "pcgrad": PCGrad,
    "cagrad": CAGrad,
    "imtl_g": IMTLG,
    "nash_mtl": NashMTL,
    "rlw": RLW,
    "graddrop": GradDrop,
    "gradvac": GradVac,
    "config": ConFIG,
    "upgrad": UPGrad,
    "dualproj": DualProj,
    "aligned_mtl": AlignedMTL,
    "db_mtl": DBMTL,
    "metabalance": MetaBalance,
    "stch": STCH,
    "fairgrad": FairGrad,
    "excess_mtl": ExcessMTL,
    "gls": GLS,
    "moco": MoCo,
    "sdmgrad": SDMGrad,
    "modo": MoDo,
}


def resolve_optimizer(spec: str | MultiTaskOptimizer) -> MultiTaskOptimizer:
    """A fresh method instance from a registered name or an instance (which is cloned)."""
    if isinstance(spec, MultiTaskOptimizer):
        return clone(spec)
    if isinstance(spec, str) and spec.lower() in OPTIMIZERS:
        return OPTIMIZERS[spec.lower()]()
    raise ValueError(
        f"optimizer={spec!r} is not supported; use one of {sorted(OPTIMIZERS)} or a "
        "sklearn_mtr.optim.MultiTaskOptimizer instance."
    )


__all__ = [
    "DBMTL",
    "DWA",
    "EW",
    "FAMO",
    "GLS",
    "IMTLG",
    "MGDA",
    "OPTIMIZERS",
    "PUB",
    "RLW",
    "STCH",
    "UW",
    "AdaTask",
    "AlignedMTL",
    "CAGrad",
    "ConFIG",
    "DRGrad",
    "DualProj",
    "ExcessMTL",
    "FairGrad",
    "GradDrop",
    "GradNorm",
    "GradVac",
    "MetaBalance",
    "MoCo",
    "MoDo",
    "MultiTaskOptimizer",
    "NashMTL",
    "PCGrad",
    "SDMGrad",
    "StepContext",
    "UPGrad",
    "resolve_optimizer",
]
