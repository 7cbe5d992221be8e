"""
=============================================
Pipeline, grid search and group AUC (GAUC)
=============================================

Ranking models are judged per request: what matters is how the candidates shown *together*
are ordered. This example puts an estimator at the end of a scikit-learn
:class:`~sklearn.pipeline.Pipeline`, passes request ids as ``groups`` through metadata
routing, and tunes the learning rate and the optimization method with
:class:`~sklearn.model_selection.GridSearchCV` scored by group AUC.
"""

# %%
import numpy as np
import pandas as pd
import sklearn
import torch
from sklearn.compose import make_column_transformer
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sklearn_mtr import SharedBottomClassifier
from sklearn_mtr.datasets import make_multitask_classification
from sklearn_mtr.metrics import gauc_scorer, mean_auc_scorer

torch.set_num_threads(1)
sklearn.set_config(enable_metadata_routing=True)

X, Y = make_multitask_classification(n_samples=3000, n_tasks=2, n_categorical=1, as_frame=True, random_state=0)
# Ten candidates per request, in consecutive rows.
request_id = np.arange(len(X)) // 10

# %%
# The pipeline
# ------------
# A column transformer in front of the estimator: here it adds a feature (the first
# column's rank within its request, a typical listwise feature) and passes the others
# through. ``set_fit_request(groups=True)`` asks for the request ids in ``fit``; the
# estimator then keeps whole requests together in its validation split.


def rank_in_request(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.groupby(request_id[frame.index]).rank(pct=True).add_suffix("_rank")


preprocess = make_column_transformer(
    (FunctionTransformer(rank_in_request), ["x0"]),
    remainder="passthrough",
    verbose_feature_names_out=False,
).set_output(transform="pandas")
clf = SharedBottomClassifier(
    bottom_hidden_sizes=(32,), tower_hidden_sizes=(8,), batch_size=128, max_epochs=3, random_state=0
).set_fit_request(groups=True, sample_weight=False)
pipe = make_pipeline(preprocess, clf)

# %%
# The search
# ----------
# ``gauc_scorer`` asks for ``groups`` too: it averages the AUC of each request, weighted by
# its size, over the requests that have both labels. ``GroupKFold`` keeps each request in
# one fold.
search = GridSearchCV(
    pipe,
    {"sharedbottomclassifier__lr": [1e-3, 1e-2], "sharedbottomclassifier__optimizer": ["adam", "pub"]},
    scoring={"gauc": gauc_scorer, "auc": mean_auc_scorer},
    refit="gauc",
    cv=GroupKFold(n_splits=2),
)
search.fit(X, Y, groups=request_id)

results = pd.DataFrame(search.cv_results_)
print(results[["params", "mean_test_gauc", "mean_test_auc"]].to_string(index=False))
print("best:", search.best_params_)
sklearn.set_config(enable_metadata_routing=False)
