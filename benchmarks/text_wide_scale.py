"""Text: how fast the wide path learns (``models._wide.WIDE_SCALE``), against TF-IDF + logistic regression.

Women's E-Commerce Clothing Reviews (``_text_data.load_clothing_reviews``: 18,788 / 2,349 /
2,349 rows, tasks recommended, five_star, helpful; review text and title as text, four
categorical columns, age). ``MMoEClassifier`` with its defaults (``early_stopping="auto"``
holds out 10 % of the training rows) and ``text_features=["review_text", "title"]``, once per
value of ``WIDE_SCALE``; the baseline is one ``TfidfVectorizer(ngram_range=(1, 2),
sublinear_tf=True)`` per text column + one-hot categories + scaled age, then
``LogisticRegression`` per task. Seeds pair the variants.

Run ``python benchmarks/text_wide_scale.py --seeds 3``; writes
``benchmarks/results/text_wide_scale.json``.
"""

from __future__ import annotations

import argparse
import time

import _common
import numpy as np
from _text_data import CLOTHING_CATEGORICAL, CLOTHING_NUMERIC, CLOTHING_TEXT, load_clothing_reviews
from numeric_encoding import paired


def logistic_regression(data: dict) -> dict:
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    def prepared(X):
        X = X.copy()
        for c in CLOTHING_TEXT:
            X[c] = X[c].fillna("")
        for c in CLOTHING_CATEGORICAL:
            X[c] = X[c].astype(str)
        return X

    X, X_test = prepared(data["X_train"]), prepared(data["X_test"])
    auc, t0 = {}, time.perf_counter()
    for task in data["Y_train"].columns:
        columns = ColumnTransformer(
            [(c, TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), c) for c in CLOTHING_TEXT]
            + [("cat", OneHotEncoder(handle_unknown="ignore"), CLOTHING_CATEGORICAL)]
            + [("num", StandardScaler(), CLOTHING_NUMERIC)]
        )
        model = make_pipeline(columns, LogisticRegression(max_iter=2000)).fit(X, data["Y_train"][task])
        auc[task] = float(roc_auc_score(data["Y_test"][task], model.predict_proba(X_test)[:, 1]))
    return {"test_auc": auc, "fit_seconds": time.perf_counter() - t0}


def run_one(scale: float, seed: int, data: dict, lr: float | None = None) -> dict:
    from sklearn_mtr import MMoEClassifier
    from sklearn_mtr.metrics import per_task_roc_auc
    from sklearn_mtr.models import _wide

    _wide.WIDE_SCALE = scale  # read by BagInputs.add_to at every call
    t0 = time.perf_counter()
    clf = MMoEClassifier(text_features=CLOTHING_TEXT, random_state=seed, **({} if lr is None else {"lr": lr}))
    clf.fit(data["X_train"], data["Y_train"])
    auc = per_task_roc_auc(data["Y_test"].to_numpy(dtype=float), clf.predict_proba(data["X_test"]))
    return {
        "seed": seed,
        "test_auc": dict(zip(data["Y_train"].columns, map(float, auc))),
        "fit_seconds": time.perf_counter() - t0,
        "epochs_trained": int(clf.n_iter_),
        "best_epoch": int(np.nanargmax(clf.history_[:, "valid_auc"])) + 1,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", nargs="+", type=float, default=[1.0, 10.0, 30.0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=None, help="the estimator's lr (default: its default)")
    parser.add_argument("--output", default="text_wide_scale")
    args = parser.parse_args(argv)
    data = load_clothing_reviews()
    tasks = list(data["Y_train"].columns)
    baseline = logistic_regression(data)
    print("logistic regression", baseline, flush=True)
    runs: dict = {f"{s:g}": [] for s in args.scales}
    for seed in range(args.seeds):
        for scale in args.scales:
            run = run_one(scale, seed, data, args.lr)
            runs[f"{scale:g}"].append(run)
            print(f"WIDE_SCALE={scale:g}", run, flush=True)
    variants = {}
    for name, rs in runs.items():
        variants[name] = {
            "runs": rs,
            "test_auc": {t: _common.summary([r["test_auc"][t] for r in rs]) for t in tasks},
            "vs_scale_1": {
                t: paired([r["test_auc"][t] for r in runs["1"]], [r["test_auc"][t] for r in rs]) for t in tasks
            }
            if "1" in runs and name != "1"
            else None,
            "minus_logistic_regression": {
                t: _common.summary([r["test_auc"][t] - baseline["test_auc"][t] for r in rs]) for t in tasks
            },
        }
    path = _common.write_results(
        args.output,
        {
            "config": vars(args),
            "description": data["description"],
            "tasks": tasks,
            "baseline": baseline,
            "variants": variants,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
