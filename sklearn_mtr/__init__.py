"""sklearn-mtr: scikit-learn estimators for multi-task ranking in recommender systems.

>>> from sklearn_mtr import MMoEClassifier
>>> clf = MMoEClassifier(max_epochs=5, random_state=0)  # clf.fit(X, Y); clf.predict_proba(X)
"""

from .estimators import (
    AITMClassifier,
    ESMMClassifier,
    GRecClassifier,
    MMoEClassifier,
    OneRankClassifier,
    PLEClassifier,
    ResFlowClassifier,
    SharedBottomClassifier,
)

__version__ = "0.1.0"

__all__ = [
    "AITMClassifier",
    "ESMMClassifier",
    "GRecClassifier",
    "MMoEClassifier",
    "OneRankClassifier",
    "PLEClassifier",
    "ResFlowClassifier",
    "SharedBottomClassifier",
    "__version__",
]
