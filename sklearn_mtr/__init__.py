"""sklearn-mtr: scikit-learn estimators for multi-task ranking in recommender systems.

>>> from sklearn_mtr import MMoEClassifier
>>> clf = MMoEClassifier(max_epochs=5, random_state=0)  # clf.fit(X, Y); clf.predict_proba(X)
"""

from .estimators import MMoEClassifier, PLEClassifier, SharedBottomClassifier

__version__ = "0.1.0"

__all__ = ["MMoEClassifier", "PLEClassifier", "SharedBottomClassifier", "__version__"]
