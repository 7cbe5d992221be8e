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
    info = _common.fit_on_train_select_on_valid(clf, data, args.max_epochs, args.patience)
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
    return {v: {"seconds": s, "ratio_to_standard": float(np.median(np.asarray(s) / base))} for v, s in seconds.items()}


def write(name: str, config: dict, runs: dict, variants: dict, first_piecewise: str):
    """Summaries and paired differences of the runs so far, written to ``results/<name>.json``."""
    results = {}
    for model, per_variant in runs.items():
        entry = {}
        for variant, rs in per_variant.items():
            base = "standard" if variant != "control" else first_piecewise
            n = min(len(rs), len(per_variant.get(base, [])))  # seeds run by both
            compared = variant != base and base in per_variant and n > 0
            entry[variant] = {
                "params": {k: list(v) if isinstance(v, tuple) else v for k, v in variants[variant].items()},
                "runs": rs,
                "test_auc": {t: _common.summary([r["test_auc"][t] for r in rs]) for t in TASKS},
                "seconds_per_epoch": _common.summary(
                    [r["seconds_per_epoch"] for r in rs if r.get("seconds_per_epoch") is not None]
                ),
                "paired_vs": base if compared else None,
                "paired_difference": {
                    t: paired([r["test_auc"][t] for r in per_variant[base][:n]], [r["test_auc"][t] for r in rs[:n]])
                    for t in TASKS
                }
                if compared
                else None,
            }
        results[model] = entry
    return _common.write_results(name, {"config": config, "tasks": TASKS, "models": results})


def runs_from_log(path: str, runs: dict) -> dict:
    """The runs a stopped benchmark printed (``model variant seed {auc} 123s`` lines): test AUC
    and fit seconds; the epoch counts are not printed and stay unknown."""
    import ast

    with open(path) as log:
        lines = log.readlines()
    for line in lines:
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[0] in runs and parts[1] in runs[parts[0]]:
            auc_text, seconds = parts[3].rsplit(" ", 1)
            runs[parts[0]][parts[1]].append(
                {
                    "seed": int(parts[2]),
                    "test_auc": ast.literal_eval(auc_text),
                    "fit_seconds": float(seconds.strip().rstrip("s")),
                    "source": "log",
                }
            )
    return runs


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
    parser.add_argument("--from-log", default=None, help="rebuild the results from a stopped run's printed lines")
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
    name = args.output or ("numeric_encoding_quick" if args.quick else "numeric_encoding")
    config = {k: v for k, v in vars(args).items() if k not in ("output", "from_log")}
    runs: dict = {model: {v: [] for v in variants} for model in args.models}
    if args.from_log:
        runs = runs_from_log(args.from_log, runs)
    else:
        for model in args.models:
            for seed in seeds:  # seeds outermost: an interrupted run still holds paired results
                for variant, params in variants.items():
                    run = run_one(model, params, seed, data, args)
                    runs[model][variant].append(run)
                    print(model, variant, seed, run["test_auc"], f"{run['fit_seconds']:.0f}s", flush=True)
                    write(name, config, runs, variants, first_piecewise)  # after every run
    path = write(name, config, runs, variants, first_piecewise)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
