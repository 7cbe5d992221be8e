"""How numeric columns are read: standardised numbers vs piecewise-linear embeddings, on Census.

UCI Census-Income (KDD), the MMoE-paper split (``load_census_income``: the official train
file, the official test file halved into validation and test), tasks ``income`` and
``never_married``. Census has seven numeric columns, several of them heavy-tailed and
zero-inflated (``capital_gains`` is 0 for 96 % of rows, ``wage_per_hour`` for 94 %).

Each variant is the estimator with its defaults except ``numeric_encoding`` /
``numeric_bins``: ``standard`` (one standardised number per column), ``piecewise-<T>``
(a learned linear map of the piecewise-linear code over ``T`` bins per column). Epochs are
selected on the validation half (``partial_fit`` one epoch at a time, the best epoch's
weights kept, ``--patience`` epochs without improvement stop it), so every variant trains
to convergence under the same budget. Seeds pair the variants (same ``random_state``).

Reported: test ROC AUC per task (mean ± std over seeds), and the paired difference of each
variant against ``standard`` with a 95 % t-interval. The null control ``control`` is the
first piecewise variant with ``task_weights=(0.5, 0.5)``: Adam is invariant to the loss
scale, so it changes nothing but floating-point rounding, and its difference from that
variant shows what this protocol can resolve.

Run ``python benchmarks/numeric_encoding.py --seeds 5``; ``--quick`` is a smoke run.
Writes ``benchmarks/results/numeric_encoding.json``. ``--timing-rounds 5`` instead times one
training epoch of each variant in interleaved rounds (the cost ratio to ``standard``) and
writes ``numeric_encoding_timing.json``.
"""

from __future__ import annotations

import argparse
import time

import _common
import numpy as np
from scipy import stats

TASKS = ["income", "never_married"]
VARIANTS = {
    "standard": {"numeric_encoding": "standard"},
    "piecewise-16": {"numeric_encoding": "piecewise", "numeric_bins": 16},
    "piecewise-32": {"numeric_encoding": "piecewise", "numeric_bins": 32},
    "piecewise-64": {"numeric_encoding": "piecewise", "numeric_bins": 64},
}


def paired(values_a, values_b) -> dict:
    """Mean of ``b - a`` over paired seeds with its 95 % t-interval."""
    d = np.asarray(values_b, float) - np.asarray(values_a, float)
    if d.size < 2:
        return {"mean": float(d.mean()) if d.size else None, "low": None, "high": None, "n": int(d.size)}
    half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    return {"mean": float(d.mean()), "low": float(d.mean() - half), "high": float(d.mean() + half), "n": int(d.size)}


def run_one(model: str, params: dict, seed: int, data, args) -> dict:
    import sklearn_mtr
    from sklearn_mtr.metrics import per_task_roc_auc

    clf = getattr(sklearn_mtr, model)(random_state=seed, **params)
    t0 = time.perf_counter()
    info = _common.fit_select_on_valid(
        clf,
        lambda: clf.partial_fit(data.X_train, data.Y_train),
        lambda: _common.valid_mean_auc(data.Y_valid, clf.predict_proba(data.X_valid)),
        args.max_epochs,
        args.patience,
    )
    seconds = time.perf_counter() - t0
    auc = per_task_roc_auc(data.Y_test.to_numpy(dtype=float), clf.predict_proba(data.X_test))
    return {
        "seed": seed,
        "test_auc": dict(zip(TASKS, map(float, auc))),
        "fit_seconds": seconds,
        "seconds_per_epoch": seconds / info["epochs_trained"],
        **info,
    }


def time_epochs(model: str, data, args) -> dict:
    """Seconds of one training epoch on the whole training file for each variant, in
    interleaved rounds (the machine's load changes between rounds, not within one), and the
    median over rounds of each variant's ratio to ``standard``."""
    import sklearn_mtr

    variants = {v: VARIANTS[v] for v in args.variants if v in VARIANTS}
    clfs = {v: getattr(sklearn_mtr, model)(random_state=0, **p) for v, p in variants.items()}
    for clf in clfs.values():  # the first epoch also fits the encoder: left out
        clf.partial_fit(data.X_train, data.Y_train)
    seconds: dict = {v: [] for v in clfs}
    for _ in range(args.timing_rounds):
        for v, clf in clfs.items():
            t0 = time.perf_counter()
            clf.partial_fit(data.X_train, data.Y_train)
            seconds[v].append(time.perf_counter() - t0)
    base = np.asarray(seconds["standard"])
    return {
        v: {"seconds": s, "ratio_to_standard": float(np.median(np.asarray(s) / base))} for v, s in seconds.items()
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["SharedBottomClassifier", "MMoEClassifier"])
    parser.add_argument("--variants", nargs="+", choices=[*VARIANTS, "control"], default=[*VARIANTS, "control"])
    parser.add_argument("--max-train-rows", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="smoke run: 5,000 rows, 1 epoch, 1 seed")
    parser.add_argument("--output", default=None)
    parser.add_argument(
        "--timing-rounds", type=int, default=0, help="only time epochs, in this many interleaved rounds"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.max_epochs, args.max_train_rows = 1, 1, 5000
    from sklearn_mtr.datasets import load_census_income

    data = load_census_income(_common.census_dir())
    if args.max_train_rows:
        keep = np.random.RandomState(0).permutation(len(data.X_train))[: args.max_train_rows]
        data.X_train, data.Y_train = data.X_train.iloc[keep], data.Y_train.iloc[keep]
    if args.timing_rounds:
        timing = {model: time_epochs(model, data, args) for model in args.models}
        for model, t in timing.items():
            print(model, {v: round(x["ratio_to_standard"], 3) for v, x in t.items()})
        config = {k: v for k, v in vars(args).items() if k != "output"}
        path = _common.write_results(args.output or "numeric_encoding_timing", {"config": config, "timing": timing})
        print(f"wrote {path}")
        return 0
    variants = {v: VARIANTS[v] for v in args.variants if v in VARIANTS}
    first_piecewise = next((v for v in variants if v.startswith("piecewise")), "piecewise-32")
    if "control" in args.variants:
        variants["control"] = {**VARIANTS[first_piecewise], "task_weights": (0.5, 0.5)}
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    results: dict = {}
    for model in args.models:
        runs: dict = {v: [] for v in variants}
        for seed in seeds:  # seeds outermost: an interrupted run still holds paired results
            for name, params in variants.items():
                run = run_one(model, params, seed, data, args)
                runs[name].append(run)
                print(model, name, seed, run["test_auc"], f"{run['fit_seconds']:.0f}s", flush=True)
        entry = {}
        for name, rs in runs.items():
            base = "standard" if name != "control" else first_piecewise
            entry[name] = {
                "params": {k: list(v) if isinstance(v, tuple) else v for k, v in variants[name].items()},
                "runs": rs,
                "test_auc": {t: _common.summary([r["test_auc"][t] for r in rs]) for t in TASKS},
                "seconds_per_epoch": _common.summary([r["seconds_per_epoch"] for r in rs]),
                "paired_vs": base if name != base and base in runs else None,
                "paired_difference": {
                    t: paired([r["test_auc"][t] for r in runs[base]], [r["test_auc"][t] for r in rs])
                    for t in TASKS
                }
                if name != base and base in runs
                else None,
            }
        results[model] = entry
    name = args.output or ("numeric_encoding_quick" if args.quick else "numeric_encoding")
    config = {k: v for k, v in vars(args).items() if k != "output"}
    path = _common.write_results(name, {"config": config, "tasks": TASKS, "models": results})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
