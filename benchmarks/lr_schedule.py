"""Learning-rate schedule of a default fit: constant, reduced on a plateau, or cosine-annealed.

The estimators train with a constant ``lr`` and stop early on a held-out tenth of the
training rows (``early_stopping="auto"``, the best epoch's weights kept). This benchmark asks
whether a schedule, passed as a skorch ``LRScheduler`` callback, would make a better default:

- ``constant``: the estimator with its defaults (the reference);
- ``plateau``: ``ReduceLROnPlateau`` on the validation AUC (factor 0.2, patience 0: the
  epoch after one without improvement runs at a fifth of the rate);
- ``cosine``: ``CosineAnnealingLR`` over ``max_epochs`` (stepped once per epoch);
- ``control``: the defaults with ``task_weights`` 1 / n_tasks each, which Adam's scale
  invariance makes a no-op up to rounding: its difference from ``constant`` is the resolution.

Data sets and their loading are those of ``vs_sklearn.py`` (``--datasets census clothing``).
Everything else is the estimator's defaults; seeds pair the variants. Reported per data set:
test ROC AUC per task (mean ± std) and the paired difference to ``constant`` with a 95 %
t-interval, epochs and fit seconds.

Run ``python benchmarks/lr_schedule.py --datasets clothing census --seeds 3``. Writes
``benchmarks/results/lr_schedule.json`` after every fit.
"""

from __future__ import annotations

import argparse
import time

import _common
import numpy as np
import vs_sklearn

VARIANTS = ("constant", "plateau", "cosine", "control")


def make(model: str, variant: str, seed: int, data: dict):
    from skorch.callbacks import LRScheduler
    from torch.optim.lr_scheduler import CosineAnnealingLR, ReduceLROnPlateau

    clf = vs_sklearn.make_estimator(model, seed, data)
    if variant == "plateau":
        scheduler = LRScheduler(ReduceLROnPlateau, monitor="valid_auc", mode="max", factor=0.2, patience=0)
        clf.set_params(callbacks=[scheduler])
    elif variant == "cosine":
        clf.set_params(callbacks=[LRScheduler(CosineAnnealingLR, T_max=clf.max_epochs)])
    elif variant == "control":
        n = len(data["tasks"])
        clf.set_params(task_weights=[1.0 / n] * n)
    return clf


def run(model: str, variant: str, seed: int, data: dict) -> dict:
    clf = make(model, variant, seed, data)
    t0 = time.perf_counter()
    clf.fit(data["X_train"], data["Y_train"])
    fit_seconds = time.perf_counter() - t0
    P = np.asarray(clf.predict_proba(data["X_test"]), dtype=float)
    auc = vs_sklearn._auc(data["Y_test"], P, data["tasks"])
    return {"seed": seed, "auc": auc, "fit_seconds": fit_seconds, "epochs": len(clf.history_)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=list(vs_sklearn.DATASETS), default=["clothing", "census"])
    parser.add_argument("--model", default="MMoE", choices=list(vs_sklearn.MODELS))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default="lr_schedule")
    args = parser.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    results: dict = {"config": {**vars(args), "protocol": __doc__}, "datasets": {}}
    for name in args.datasets:
        data = vs_sklearn.prepare(vs_sklearn.DATASETS[name](), None, None)
        runs: dict = {v: [] for v in args.variants}
        for seed in range(args.seeds):  # seeds outermost: a stopped run still holds paired results
            for variant in args.variants:
                r = run(args.model, variant, seed, data)
                runs[variant].append(r)
                aucs = " / ".join(f"{a:.4f}" for a in r["auc"].values())
                print(f"{name} {variant:>8} seed {seed}: AUC {aucs}, {r['epochs']} epochs, {r['fit_seconds']:.0f} s")
                results["datasets"][name] = {
                    "tasks": data["tasks"],
                    "variants": vs_sklearn.summarise_variants(runs, data["tasks"], "constant"),
                }
                _common.write_results(args.output, results)
    print(f"wrote {_common.RESULTS_DIR / (args.output + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
