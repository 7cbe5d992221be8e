"""
==============================
Quick start: MMoE on two tasks
==============================

Train a multi-gate mixture-of-experts model on a synthetic problem with two binary tasks
(think click and conversion), report each task's ROC AUC on held-out rows, and plot the
per-task learning curves that the estimator records in ``history_``.
"""

# %%
# Data
# ----
# :func:`~sklearn_mtr.datasets.make_multitask_classification` follows the synthetic recipe of
# the MMoE paper: ``task_correlation`` sets how related the tasks are. With
# ``as_frame=True`` the last columns are pandas ``category`` columns, which the estimator
# embeds; the other columns are numeric and standardised inside the estimator.
import matplotlib.pyplot as plt
import torch
from sklearn.model_selection import train_test_split

from sklearn_mtr import MMoEClassifier
from sklearn_mtr.datasets import make_multitask_classification
from sklearn_mtr.metrics import per_task_roc_auc

torch.set_num_threads(1)  # small models: extra threads only add synchronisation

X, Y = make_multitask_classification(
    n_samples=4000, n_tasks=2, task_correlation=0.5, n_categorical=2, as_frame=True, random_state=0
)
Y.columns = ["click", "conversion"]
X_train, X_test, Y_train, Y_test = train_test_split(X, Y, test_size=0.25, random_state=0)
X_train.dtypes.value_counts()

# %%
# Fit and evaluate
# ----------------
# ``Y`` has one 0/1 column per task (``NaN`` would mark a missing label). With
# ``early_stopping=True`` a tenth of the rows is held out and the best epoch's weights are
# kept. ``predict_proba`` returns one probability per task, in ``Y``'s column order.
clf = MMoEClassifier(
    n_experts=4,
    expert_hidden_sizes=(32,),
    tower_hidden_sizes=(16,),
    batch_size=128,
    max_epochs=8,
    early_stopping=True,
    random_state=0,
)
clf.fit(X_train, Y_train)
P = clf.predict_proba(X_test)
print("tasks:", list(clf.task_names_), "probabilities:", P.shape)
for task, auc in zip(clf.task_names_, per_task_roc_auc(Y_test, P)):
    print(f"test AUC {task}: {auc:.3f}")
print(f"score (mean per-task AUC): {clf.score(X_test, Y_test):.3f}")

# %%
# Learning curves
# ---------------
# ``history_`` has one row per epoch, with each task's loss and AUC on the training and
# validation rows. :class:`~sklearn_mtr.inspection.TaskLearningCurveDisplay` draws them:
# one colour per task, validation solid, training dashed.
from sklearn_mtr.inspection import TaskLearningCurveDisplay

fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
TaskLearningCurveDisplay.from_estimator(clf, metric="loss", ax=ax_loss)
TaskLearningCurveDisplay.from_estimator(clf, metric="auc", ax=ax_auc)
plt.show()
