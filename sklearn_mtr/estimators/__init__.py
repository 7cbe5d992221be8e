"""The public estimators, all sharing :class:`~sklearn_mtr.extending.MultiTaskClassifierBase`.

Each is registered here in one line (:data:`ESTIMATORS`); the package, the command line, the
safe file format, the API reference and the test suite's checks read that registry.
"""

from ..models import DBMTL, ESCM2, CrossStitch, DSelectK, OMoE, PEPNet
from ._registry import ESTIMATORS, register, register_architecture
from .aitm import AITMClassifier
from .esmm import ESMMClassifier
from .grec import GRecClassifier
from .mmoe import MMoEClassifier
from .onerank import OneRankClassifier
from .ple import PLEClassifier
from .resflow import ResFlowClassifier
from .shared_bottom import SharedBottomClassifier

register("onerank", OneRankClassifier, family="transformer")
register("grec", GRecClassifier, family="transformer")
register("shared_bottom", SharedBottomClassifier)
register("mmoe", MMoEClassifier)
register("ple", PLEClassifier)
register("resflow", ResFlowClassifier)
register_architecture("omoe", OMoE)
register_architecture("dselect_k", DSelectK)
register_architecture("cross_stitch", CrossStitch)
register_architecture("pepnet", PEPNet)
register_architecture("dbmtl", DBMTL)
register("esmm", ESMMClassifier, family="funnel")
register("aitm", AITMClassifier, family="funnel")
register_architecture("escm2", ESCM2, family="funnel")

# Read from the registry, so that registering an estimator is one line; static tools still see
# the explicitly imported classes.
__all__ = ["ESTIMATORS", *sorted(cls.__name__ for cls in ESTIMATORS.values())]  # noqa: PLE0604
