"""sklearn-mtr: scikit-learn estimators for multi-task ranking in recommender systems.

>>> from sklearn_mtr import MMoEClassifier
>>> clf = MMoEClassifier(max_epochs=5, random_state=0)  # clf.fit(X, Y); clf.predict_proba(X)
"""

from . import estimators as _estimators
from .estimators import *  # every registered estimator (estimators.ESTIMATORS)

__version__ = "0.1.0"

# Read from the registry, so that registering an estimator is one line; static tools still see
# the explicitly imported classes.
__all__ = ["__version__", *sorted(cls.__name__ for cls in _estimators.ESTIMATORS.values())]  # noqa: PLE0604
