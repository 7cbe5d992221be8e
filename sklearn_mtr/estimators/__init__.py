"""The public estimators, one file each; all share :class:`MultiTaskClassifierBase`."""

from .mmoe import MMoEClassifier
from .ple import PLEClassifier
from .shared_bottom import SharedBottomClassifier

__all__ = ["MMoEClassifier", "PLEClassifier", "SharedBottomClassifier"]
