"""
======================================
A conversion funnel with ESMM and AITM
======================================

Clicks come before conversions: a row can convert only if it was clicked. ESMM and AITM
model the funnel over the *entire space* of impressions. Their ``Y`` has one column per
stage, in order (click, then click-and-conversion), and the stages must be nested.
This example compares both on a synthetic funnel, per stage, and evaluates the
conversion rate among clicked rows (pCVR), which ESMM predicts with ``predict_cvr``.
"""

# %%
import matplotlib.pyplot as plt
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from sklearn_mtr import AITMClassifier, ESMMClassifier
from sklearn_mtr.datasets import make_funnel_classification
from sklearn_mtr.metrics import per_task_roc_auc

torch.set_num_threads(1)

# 30% of the impressions are clicked; a third of the clicks convert.
X, Y = make_funnel_classification(n_samples=5000, stage_rates=(0.3, 0.33), as_frame=True, random_state=0)
Y.columns = ["click", "conversion"]  # conversion: clicked and converted
X_train, X_test, Y_train, Y_test = train_test_split(X, Y, test_size=0.3, random_state=0)
click_rate, conversion_rate = Y.mean()
print(f"click rate {click_rate:.3f}, click-and-conversion rate {conversion_rate:.3f}")

# %%
# Two funnel models
# -----------------
common = {"tower_hidden_sizes": (32,), "batch_size": 128, "max_epochs": 6, "random_state": 0}
models = {"ESMM": ESMMClassifier(**common), "AITM": AITMClassifier(**common)}
aucs = {}
for name, model in models.items():
    model.fit(X_train, Y_train)
    aucs[name] = per_task_roc_auc(Y_test, model.predict_proba(X_test))
    print(f"{name}: test AUC click {aucs[name][0]:.3f}, conversion {aucs[name][1]:.3f}")

# %%
# Conversion among clicks
# -----------------------
# pCVR is the probability of conversion given a click. ESMM's CVR tower is never trained
# on clicked rows alone, yet ranks them: evaluate it where the click happened.
clicked = Y_test["click"] == 1
cvr_auc = roc_auc_score(Y_test.loc[clicked, "conversion"], models["ESMM"].predict_cvr(X_test[clicked]))
print(f"ESMM pCVR AUC on clicked test rows: {cvr_auc:.3f}")

# %%
# Both stages at once
# -------------------
# :class:`~sklearn_mtr.inspection.TaskTradeoffDisplay` plots each model's click AUC against
# its conversion (click-and-conversion) AUC.
from sklearn_mtr.inspection import TaskTradeoffDisplay

fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
TaskTradeoffDisplay.from_estimators(models, X_test, Y_test, ax=ax)
plt.show()
