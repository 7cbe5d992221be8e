"""The public estimators, one file each; all share :class:`MultiTaskClassifierBase`."""

from .aitm import AITMClassifier
from .esmm import ESMMClassifier
from .mmoe import MMoEClassifier
from .ple import PLEClassifier
from .resflow import ResFlowClassifier
from .shared_bottom import SharedBottomClassifier

__all__ = [
    "AITMClassifier",
    "ESMMClassifier",
    "MMoEClassifier",
    "PLEClassifier",
    "ResFlowClassifier",
    "SharedBottomClassifier",
]
