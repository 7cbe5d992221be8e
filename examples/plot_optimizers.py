"""
=========================================
Choosing a multi-task optimization method
=========================================

Every estimator takes ``optimizer=``: equal weights (``"adam"``), PUB, DRGrad and the
methods they are compared against. This example trains the same shared-bottom network with
three of them on two *conflicting* tasks and plots task against task, one point per method: when one task
gains at the other's expense (the seesaw), the points show it. It then plots what PUB
decided during training.

On a problem this small the methods end within a few thousandths of AUC of each other, which
is of the order of the variation between seeds: one run shows how to compare, not which
method wins. The :doc:`/optimizer_benchmarks` page measures them over seeds, epochs and task
correlations.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.model_selection import train_test_split

from sklearn_mtr import SharedBottomClassifier
from sklearn_mtr.datasets import make_multitask_classification
from sklearn_mtr.metrics import per_task_roc_auc
from sklearn_mtr.optim import EW, PUB, DRGrad

torch.set_num_threads(1)

# A negative task correlation makes the tasks pull the shared layers apart.
X, Y = make_multitask_classification(n_samples=3000, n_tasks=2, task_correlation=-0.8, random_state=0)
X_train, X_test, Y_train, Y_test = train_test_split(X, Y, test_size=0.3, random_state=0)

# %%
# Three methods, same architecture
# --------------------------------
# Names and instances are interchangeable: ``optimizer="pub"`` is ``PUB()``. Instances
# expose their own parameters (``PUB(refresh_every=10)``), which a search can tune as
# ``optimizer__refresh_every``.
methods = {"EW": EW(), "PUB": PUB(refresh_every=10), "DRGrad": DRGrad()}
fitted, aucs = {}, {}
for name, method in methods.items():
    clf = SharedBottomClassifier(
        bottom_hidden_sizes=(32,),
        tower_hidden_sizes=(16,),
        optimizer=method,
        lr=1e-2,
        batch_size=128,
        max_epochs=8,
        random_state=0,
    )
    fitted[name] = clf.fit(X_train, Y_train)
    aucs[name] = per_task_roc_auc(Y_test, clf.predict_proba(X_test))
    print(f"{name:7s} per-task test AUC: {np.round(aucs[name], 4)}")

# %%
# The task trade-off
# ------------------
# :class:`~sklearn_mtr.inspection.TaskTradeoffDisplay` puts one point per model, task 0's
# test AUC against task 1's. The dotted lines go through equal weighting: points up and to
# the right beat it on both tasks, points in the other two quadrants trade one task for
# the other (the seesaw). The dashed line is the Pareto front.
from sklearn_mtr.inspection import OptimizerDiagnosticsDisplay, TaskTradeoffDisplay

fig, ax = plt.subplots(figsize=(6, 4.5), layout="constrained")
TaskTradeoffDisplay.from_estimators(fitted, X_test, Y_test, reference="EW", ax=ax)
plt.show()

# %%
# What the methods decided
# ------------------------
# Each method records its decisions in ``history_`` under ``optim_<name>``, averaged over
# the epoch's steps. PUB's task weights come from a Nash bargaining solution on the
# per-task Adam updates; it also records the norms and the cosine of those updates.
OptimizerDiagnosticsDisplay.from_estimator(fitted["PUB"])
plt.show()
