"""Where the training defaults come from: a small grid of learning rate, batch size and weight
decay, against the estimator's own default fit.

For each data set (``--datasets``) and estimator (``--models``), every grid point is the
estimator with its defaults except ``lr`` / ``batch_size`` / ``weight_decay``, trained one
epoch at a time (``partial_fit``) with the epoch chosen on the validation split (best mean
validation AUC, ``--patience`` epochs without improvement stop it, at most ``--max-epochs``).
The ``default`` row is the estimator exactly as a user gets it (``fit`` on the training
split, its own early stopping, no validation split of ours): the issue's criterion is that it
lands within noise of the grid's best point. Seeds pair every row (same ``random_state``).

Data sets: ``census`` (Census-Income KDD, the MMoE split), ``movielens`` (MovieLens-100K like /
love, global temporal split, as in ``funnel_models.py``) and ``synthetic``
(``make_multitask_classification``, 40,000 / 10,000 / 10,000 rows, task correlation 0.5) and
``clothing`` (Women's E-Commerce Clothing Reviews, ``_text_data.load_clothing_reviews``, 80 / 10
/ 10; review text and title as ``text_features``).

Run ``python benchmarks/defaults_grid.py --datasets census --seeds 3``. Writes
``benchmarks/results/defaults_grid_<dataset>.json``.
"""

from __future__ import annotations

import argparse
import itertools
import time

import _common
import numpy as np
from funnel_models import Split, load_census, load_movielens
from numeric_encoding import paired


def load_synthetic() -> Split:
    from sklearn_mtr.datasets import make_multitask_classification

    X, Y = make_multitask_classification(
        n_samples=60_000, n_features=16, task_correlation=0.5, as_frame=True, random_state=0
    )
    data = Split()
    for part, sl in {"train": slice(0, 40_000), "valid": slice(40_000, 50_000), "test": slice(50_000, None)}.items():
        data[f"X_{part}"] = X.iloc[sl].reset_index(drop=True)
        data[f"Y_{part}"] = Y.iloc[sl].reset_index(drop=True)
    data["description"] = "make_multitask_classification(60,000 rows, 16 features, correlation 0.5), 40k/10k/10k"
    return data


def load_clothing() -> Split:
    """Women's E-Commerce Clothing Reviews (text, categorical and numeric columns, 3 tasks)."""
    from _text_data import CLOTHING_TEXT, load_clothing_reviews

    return Split(load_clothing_reviews(), estimator_params={"text_features": CLOTHING_TEXT})


LOADERS = {"census": load_census, "movielens": load_movielens, "synthetic": load_synthetic, "clothing": load_clothing}


def _auc(Y, proba) -> list[float]:
    from sklearn_mtr.metrics import per_task_roc_auc

    return [float(a) for a in per_task_roc_auc(np.asarray(Y, dtype=float), proba)]


def run_point(model: str, params: dict, seed: int, data, args) -> dict:
    import sklearn_mtr

    default = params.get("_default", False)
    params = {**data.get("estimator_params", {}), **{k: v for k, v in params.items() if k != "_default"}}
    clf = getattr(sklearn_mtr, model)(random_state=seed, **params)
    t0 = time.perf_counter()
    if default:
        clf.fit(data.X_train, data.Y_train)
        info = {"epochs_trained": int(clf.n_iter_)}
    else:
        info = _common.fit_on_train_select_on_valid(clf, data, args.max_epochs, args.patience)
        info.pop("valid_curve")
    seconds = time.perf_counter() - t0
    auc = _auc(data.Y_test, clf.predict_proba(data.X_test))
    return {"seed": seed, "test_auc": auc, "test_mean_auc": float(np.mean(auc)), "fit_seconds": seconds, **info}


TASKS_OF = {
    "census": ["income", "never_married"],
    "movielens": ["like", "love"],
    "synthetic": ["task0", "task1"],
    "clothing": ["recommended", "five_star", "helpful"],
}


def write(dataset: str, config: dict, description: str, tasks: list, runs: dict, suffix: str):
    """Summaries, the best grid point (by mean test AUC over the seeds run) and paired differences
    with it, written to ``results/defaults_grid_<dataset><suffix>.json``."""
    models = {}
    for model, per_point in runs.items():
        done = {name: rs for name, rs in per_point.items() if rs}
        means = {name: np.mean([r["test_mean_auc"] for r in rs]) for name, rs in done.items() if name != "default"}
        best = max(means, key=means.get) if means else None
        points = {}
        for name, rs in done.items():
            n = min(len(rs), len(done.get(best, [])))
            points[name] = {
                "runs": rs,
                "test_auc": {t: _common.summary([r["test_auc"][k] for r in rs]) for k, t in enumerate(tasks)},
                "fit_seconds": _common.summary([r["fit_seconds"] for r in rs]),
                "paired_vs_best": None
                if best is None or name == best or n == 0
                else {
                    t: paired([r["test_auc"][k] for r in done[best][:n]], [r["test_auc"][k] for r in rs[:n]])
                    for k, t in enumerate(tasks)
                },
            }
        models[model] = {"best_grid_point": best, "points": points}
    return _common.write_results(
        f"defaults_grid_{dataset}{suffix}",
        {"config": config, "dataset": dataset, "description": description, "tasks": tasks, "models": models},
    )


def runs_from_log(path: str, dataset: str, models: list, grid: dict) -> dict:
    """The runs a stopped benchmark printed (``dataset model point seed [aucs] 123s epochs``)."""
    import ast
    import re

    runs = {model: {name: [] for name in grid} for model in models}
    pattern = re.compile(r"^(\S+) (\S+) (.+) (\d+) (\[.*\]) (\d+)s (\d+)$")
    with open(path) as log:
        lines = log.readlines()
    for line in lines:
        match = pattern.match(line.strip())
        if match and match[1] == dataset and match[2] in runs and match[3] in grid:
            auc = [float(a) for a in ast.literal_eval(match[5])]
            runs[match[2]][match[3]].append(
                {
                    "seed": int(match[4]),
                    "test_auc": auc,
                    "test_mean_auc": float(np.mean(auc)),
                    "fit_seconds": float(match[6]),
                    "epochs_trained": int(match[7]),
                    "source": "log",
                }
            )
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=list(LOADERS), default=["census"])
    parser.add_argument("--models", nargs="+", default=["MMoEClassifier"])
    parser.add_argument("--lr", nargs="+", type=float, default=[1e-3, 3e-3])
    parser.add_argument("--batch-size", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--weight-decay", nargs="+", type=float, default=[0.0])
    parser.add_argument("--no-default", action="store_true", help="skip the default-fit row")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--max-train-rows", type=int, default=None)
    parser.add_argument("--suffix", default="")
    parser.add_argument("--from-log", default=None, help="rebuild the results from a stopped run's printed lines")
    args = parser.parse_args(argv)
    grid = {
        f"lr={lr:g} batch={b} wd={wd:g}": {"lr": lr, "batch_size": b, "weight_decay": wd}
        for lr, b, wd in itertools.product(args.lr, args.batch_size, args.weight_decay)
    }
    if not args.no_default:
        grid["default"] = {"_default": True}
    config = {k: v for k, v in vars(args).items() if k not in ("datasets", "from_log")}
    for dataset in args.datasets:
        if args.from_log:  # a stopped run: only what it printed (epochs yes, valid curves no)
            data = Split(description=LOADERS[dataset].__doc__ or dataset, Y_train=None)
            runs = runs_from_log(args.from_log, dataset, args.models, grid)
            tasks = TASKS_OF.get(dataset) or [f"task{k}" for k in range(2)]
            write(dataset, config, data.description, tasks, runs, args.suffix)
            continue
        data = LOADERS[dataset]()
        if args.max_train_rows:
            keep = np.random.RandomState(0).permutation(len(data.X_train))[: args.max_train_rows]
            data.X_train, data.Y_train = data.X_train.iloc[keep], data.Y_train.iloc[keep]
        tasks = list(data.Y_train.columns)
        runs = {model: {name: [] for name in grid} for model in args.models}
        for model in args.models:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                for name, params in grid.items():
                    run = run_point(model, params, seed, data, args)
                    runs[model][name].append(run)
                    print(
                        dataset,
                        model,
                        name,
                        seed,
                        [round(a, 4) for a in run["test_auc"]],
                        f"{run['fit_seconds']:.0f}s",
                        run["epochs_trained"],
                        flush=True,
                    )
                    write(dataset, config, data.description, tasks, runs, args.suffix)  # after every run
        print(f"wrote {write(dataset, config, data.description, tasks, runs, args.suffix)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
