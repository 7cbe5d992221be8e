"""The public estimators, one file each; all share :class:`MultiTaskClassifierBase`."""

from .aitm import AITMClassifier
from .esmm import ESMMClassifier
from .grec import GRecClassifier
from .mmoe import MMoEClassifier
from .onerank import OneRankClassifier
from .ple import PLEClassifier
from .resflow import ResFlowClassifier
from .shared_bottom import SharedBottomClassifier

__all__ = [
    "AITMClassifier",
    "ESMMClassifier",
    "GRecClassifier",
    "MMoEClassifier",
    "OneRankClassifier",
    "PLEClassifier",
    "ResFlowClassifier",
    "SharedBottomClassifier",
]
