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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=list(vs_sklearn.DATASETS), default=["clothing", "census"])
    parser.add_argument("--models", nargs="+", default=["MMoE"], choices=list(vs_sklearn.MODELS))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default="lr_schedule")
    args = parser.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    vs_sklearn.run_variants(args, make, args.output, "constant", __doc__)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
