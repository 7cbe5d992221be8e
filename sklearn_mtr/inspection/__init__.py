"""Plots of fitted multi-task models, as scikit-learn style Display classes.

matplotlib is optional: install it with ``pip install sklearn-mtr[plot]``. It is imported
only when something is drawn.
"""

from ._diagnostics import OptimizerDiagnosticsDisplay
from ._learning_curve import TaskLearningCurveDisplay
from ._tradeoff import TaskTradeoffDisplay

__all__ = ["OptimizerDiagnosticsDisplay", "TaskLearningCurveDisplay", "TaskTradeoffDisplay"]
