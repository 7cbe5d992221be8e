"""Weight averaging of a default fit: an exponential moving average of the weights or none.

The estimators keep an exponential moving average of their weights over about
``ema_epochs`` epochs of steps (Polyak averaging): validation, early stopping's choice of
epoch and the fitted model use the average, training moves the raw weights. This benchmark
measures what that default is worth:

- ``none``: the estimator with ``ema_epochs=None`` (the last step's weights; the reference);
- ``ema-0.5``, ``ema-1``, ``ema-2``: ``ema_epochs`` 0.5, 1 (the default) and 2;
- ``ema-1-max20``: the default with ``max_epochs=20`` (averaged fits often run to the cap of 10);
- ``ema-1-lr2e-3``: the default with ``lr=2e-3`` (twice the default rate);
- ``ema-1-d64``: the default with ``d_model=64`` (OneRank and GRec: twice the token width);
  ``ema-1-d64-max20`` with ``max_epochs=20`` too;
- ``control``: ``none`` with ``task_weights`` 1 / n_tasks each, which Adam's scale
  invariance makes a no-op up to rounding: its difference from ``none`` is the resolution.

Data sets and their loading are those of ``vs_sklearn.py``; everything else is the
estimator's defaults (``fit``, early stopping on a held-out tenth). Seeds pair the variants.

Fits are deterministic on the CPU (a seed fixes the split, the initialisation and the batch
order), and ``ema_epochs=None`` is the code path ``vs_sklearn.py`` measured before the
default changed. ``--none-from-vs-sklearn`` takes the ``none`` runs from
``results/vs_sklearn.json`` instead of fitting them again (on Census, SharedBottom's seeds
0 and 1 were refitted and matched to the last digit); those runs are marked
``measured_before``. ``--measured-as ema-1`` takes them as another variant instead: for an
estimator whose stored runs were measured with today's defaults (OneRank and GRec on Census).
Each fitted run keeps its validation AUC per epoch (``valid_auc``, the early-stopping score).
``--reuse NAME`` takes the runs fitted in ``results/NAME.json`` (a screen on fewer seeds)
instead of fitting them again.

Run ``python benchmarks/weight_averaging.py --datasets census --models SharedBottom ResFlow
--seeds 5``. Writes ``benchmarks/results/weight_averaging.json`` after every fit.
``--timing-rounds 7 --models MMoE SharedBottom`` instead times Census epochs with and
without the average, interleaved, and writes ``weight_averaging_timing.json``.
"""

from __future__ import annotations

import argparse
import json

import _common
import vs_sklearn

VARIANTS = {
    "none": {"ema_epochs": None},
    "ema-0.5": {"ema_epochs": 0.5},
    "ema-1": {"ema_epochs": 1.0},
    "ema-2": {"ema_epochs": 2.0},
    "ema-1-max20": {"ema_epochs": 1.0, "max_epochs": 20},
    "ema-1-lr2e-3": {"ema_epochs": 1.0, "lr": 2e-3},
    "ema-1-d64": {"ema_epochs": 1.0, "d_model": 64},
    "ema-1-d64-max20": {"ema_epochs": 1.0, "d_model": 64, "max_epochs": 20},
    "control": {"ema_epochs": None},
}


def make(model: str, variant: str, seed: int, data: dict):
    clf = vs_sklearn.make_estimator(model, seed, data).set_params(**VARIANTS[variant])
    if variant == "control":
        n = len(data["tasks"])
        clf.set_params(task_weights=[1.0 / n] * n)
    return clf


def add_baseline_deltas(output: str) -> None:
    """Pair every variant of ``results/<output>.json`` by seed with the scikit-learn baseline
    runs of ``results/vs_sklearn.json`` on the same data set (the baseline does not depend
    on our code): ``delta_vs_baseline`` per variant, and the baseline's label and AUC."""
    path = _common.RESULTS_DIR / f"{output}.json"
    results = json.loads(path.read_text())
    earlier = json.loads((_common.RESULTS_DIR / "vs_sklearn.json").read_text())["datasets"]
    for key, info in results["datasets"].items():
        base = earlier.get(key.split(" · ")[0])
        if base is None:
            continue
        runs = base["baseline"]["runs"]
        info["baseline"] = {
            "label": base["baseline_label"],
            "auc": {t: _common.summary([r["auc"][t] for r in runs]) for t in info["tasks"]},
        }
        for entry in info["variants"].values():
            entry["delta_vs_baseline"] = vs_sklearn.paired_delta(entry["runs"], runs, info["tasks"])
    path.write_text(json.dumps(results, indent=2) + "\n")


def time_epochs(model: str, rounds: int) -> dict:
    """Seconds of one training epoch on Census's whole training file, ``ema_epochs=None``
    against 1.0, in interleaved rounds (``warm_start`` fits of one epoch, so the encoding
    is left out), and the median over rounds of the ratio to ``none``."""
    import time

    import numpy as np

    data = vs_sklearn.prepare(vs_sklearn.load_census(), None, None)
    clfs = {
        v: vs_sklearn.make_estimator(model, 0, data).set_params(
            **VARIANTS[v], max_epochs=1, early_stopping=False, warm_start=True
        )
        for v in ("none", "ema-1")
    }
    for clf in clfs.values():
        clf.fit(data["X_train"], data["Y_train"])
    seconds: dict = {v: [] for v in clfs}
    for _ in range(rounds):
        for v, clf in clfs.items():
            t0 = time.perf_counter()
            clf.fit(data["X_train"], data["Y_train"])
            seconds[v].append(time.perf_counter() - t0)
    base = np.asarray(seconds["none"])
    return {v: {"seconds": s, "ratio_to_none": float(np.median(np.asarray(s) / base))} for v, s in seconds.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=list(vs_sklearn.DATASETS), default=["census", "clothing"])
    parser.add_argument("--models", nargs="+", default=["SharedBottom"], choices=list(vs_sklearn.MODELS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["none", "ema-1", "control"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default="weight_averaging")
    parser.add_argument("--reference", default="none", choices=list(VARIANTS), help="the variant others pair with")
    parser.add_argument("--none-from-vs-sklearn", action="store_true", help="reuse vs_sklearn.json's runs as 'none'")
    parser.add_argument(
        "--measured-as", default="none", choices=list(VARIANTS), help="the variant vs_sklearn.json's runs stand for"
    )
    parser.add_argument("--reuse", default=None, help="take the runs fitted in results/<REUSE>.json, not again")
    parser.add_argument("--timing-rounds", type=int, default=0, help="only time Census epochs, in interleaved rounds")
    parser.add_argument(
        "--add-baseline-deltas",
        action="store_true",
        help="fit nothing: add to --output each variant's paired difference to vs_sklearn.json's baseline (same seeds)",
    )
    args = parser.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    if args.timing_rounds:
        timing = {model: time_epochs(model, args.timing_rounds) for model in args.models}
        print({m: t["ema-1"]["ratio_to_none"] for m, t in timing.items()})
        _common.write_results(args.output + "_timing", {"config": vars(args), "timing": timing})
        return 0
    if args.add_baseline_deltas:
        add_baseline_deltas(args.output)
        return 0
    measured = None
    if args.none_from_vs_sklearn:
        earlier = json.loads((_common.RESULTS_DIR / "vs_sklearn.json").read_text())["datasets"]
        measured = {
            name: {model: {args.measured_as: earlier[name]["models"][model]["runs"]} for model in args.models}
            for name in args.datasets
            if name in earlier
        }
    if args.reuse:
        measured = measured or {}
        earlier = json.loads((_common.RESULTS_DIR / f"{args.reuse}.json").read_text())
        for key, info in earlier["datasets"].items():
            name, _, model = key.partition(" · ")
            model = model or earlier["config"]["models"][0]
            for variant, entry in info["variants"].items():
                fitted = [r for r in entry["runs"] if not r.get("measured_before")]
                measured.setdefault(name, {}).setdefault(model, {}).setdefault(variant, []).extend(fitted)
    vs_sklearn.run_variants(args, make, args.output, args.reference, __doc__, measured)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
