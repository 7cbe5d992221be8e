"""PUB and DRGrad against equal weights on conflicting synthetic tasks, under a protocol
that can resolve a difference (issue 17).

Question: on two conflicting tasks (``task_correlation=-0.5``), is PUB or DRGrad (default
``mixing="share"``) better than equal weights ("adam"), once each method gets its own
learning rate and is trained to convergence? PUB is run with its three scales of the weights:
``"sum_to_one"`` (the default, chosen from this run), ``"parallel_to_one"`` (keeps the
bargaining's conflict factor) and ``"unit_weights"`` (the released code's effective method).
Optional: PUB's exact per-task path (``per_task_passes="every_step"``, to check the
one-pass steps between refreshes) and DRGrad's former updater (``mixing="mean"``).

Protocol:

- Data: ``make_multitask_classification`` (the MMoE paper's recipe), 2 tasks, 16 features of
  which 2 categorical, correlation -0.5; per seed new data (``random_state=100 + seed``):
  the first ``--n-train`` rows train, the next ``--n-valid`` validate, the last ``--n-test``
  test. Model initialisation ``random_state=seed``, the same for every method (paired).
- Model: ``MMoEClassifier``, 4 experts of (64, 32), towers (16,), embeddings of 16, batch 256.
- Each method and learning rate of ``--lrs``: train one epoch at a time (``partial_fit``),
  keep the epoch with the best mean validation AUC, stop after ``--patience`` epochs without
  improvement or at ``--max-epochs`` (``_common.fit_on_train_select_on_valid``). Same budget
  for every method.
- Learning rate per method: the grid value with the best validation AUC, averaged over the
  seeds (test rows never used for a choice).
- Reported: the test mean AUC of the two tasks at the chosen lr, and the paired difference to
  "adam" (each at its own chosen lr): mean over seeds with a 95 % t-interval. The null control
  "adam_half" (equal weights 0.5 / 0.5: Adam is scale-invariant, so nothing should change
  beyond the floating-point noise that training amplifies) is reported the same way: its
  interval is the protocol's resolution. Also the paired differences at every lr of the grid.

Defaults (8,000 / 3,000 / 6,000 rows, lr in {2e-3, 5e-3}, at most 30 epochs, patience 6) were
sized to run on a shared 2-core machine: about 30 minutes per process for three methods
(``--methods``; join the outputs with ``--merge``). ``--quick`` is a smoke run. The patience
is 6 because runs sit on a plateau near 0.79 AUC for several epochs before the conflicting
task is learnt; with a patience of 3 some runs stopped on it.
Writes ``benchmarks/results/pub_drgrad_evidence.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import _common
import numpy as np
import torch

ARCH = {"n_experts": 4, "expert_hidden_sizes": (64, 32), "tower_hidden_sizes": (16,), "embedding_dim": 16}
METHODS = [
    "adam",
    "adam_half",
    "pub_sum_to_one",
    "pub_every_step",
    "pub_parallel_to_one",
    "pub_unit_weights",
    "drgrad",
    "drgrad_mean",
]
DESCRIPTIONS = {
    "adam": "equal weights 1 / 1 (the baseline)",
    "adam_half": "equal weights 0.5 / 0.5 (null control: should change nothing)",
    "pub_sum_to_one": "PUB(normalization='sum_to_one'), the default (per_task_passes='refresh')",
    "pub_every_step": "PUB(per_task_passes='every_step'): the exact per-task look-ahead at every step",
    "pub_parallel_to_one": "PUB(normalization='parallel_to_one'): keeps the bargaining's conflict factor",
    "pub_unit_weights": "PUB(normalization='unit_weights'), the released code's effective method",
    "drgrad": "DRGrad() defaults: mode='split', mixing='share'",
    "drgrad_mean": "DRGrad(mixing='mean'), the former updater",
}


def method_spec(name: str):
    """``(optimizer, task_weights)`` of a method name."""
    from sklearn_mtr.optim import PUB, DRGrad

    return {
        "adam": ("adam", None),
        "adam_half": ("adam", [0.5, 0.5]),
        "pub_sum_to_one": (PUB(normalization="sum_to_one"), None),
        "pub_every_step": (PUB(normalization="sum_to_one", per_task_passes="every_step"), None),
        "pub_parallel_to_one": (PUB(normalization="parallel_to_one"), None),
        "pub_unit_weights": (PUB(normalization="unit_weights"), None),
        "drgrad": (DRGrad(), None),
        "drgrad_mean": (DRGrad(mixing="mean"), None),
    }[name]


def make_data(seed: int, corr: float, n_train: int, n_valid: int, n_test: int) -> SimpleNamespace:
    from sklearn_mtr.datasets import make_multitask_classification

    n = n_train + n_valid + n_test
    X, Y = make_multitask_classification(
        n, 16, 2, task_correlation=corr, n_categorical=2, as_frame=True, random_state=100 + seed
    )
    a, b = n_train, n_train + n_valid
    return SimpleNamespace(
        X_train=X.iloc[:a],
        Y_train=Y.iloc[:a],
        X_valid=X.iloc[a:b],
        Y_valid=Y.iloc[a:b],
        X_test=X.iloc[b:],
        Y_test=Y.iloc[b:],
    )


def run_one(name: str, data, seed: int, lr: float, args) -> dict:
    from sklearn_mtr import MMoEClassifier
    from sklearn_mtr.metrics import per_task_roc_auc

    optimizer, task_weights = method_spec(name)
    clf = MMoEClassifier(
        **ARCH,
        optimizer=optimizer,
        task_weights=task_weights,
        lr=lr,
        batch_size=args.batch_size,
        max_epochs=1,
        early_stopping=False,
        random_state=seed,
        device="cpu",
        verbose=0,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = _common.fit_on_train_select_on_valid(clf, data, args.max_epochs, args.patience)
    seconds = time.perf_counter() - t0
    auc = per_task_roc_auc(data.Y_test.to_numpy(dtype=float), clf.predict_proba(data.X_test))
    out = {
        "test_auc": [float(a) for a in auc],
        "test_mean_auc": float(np.mean(auc)),
        "valid_mean_auc": max(e["valid_mean_auc"] for e in info["valid_curve"]),
        "best_epoch": info["best_epoch"],
        "epochs_trained": info["epochs_trained"],
        "seconds": seconds,
        "seconds_per_epoch": seconds / info["epochs_trained"],
    }
    history = clf.history_
    if "optim_weights" in history[-1]:
        out["final_epoch_weights"] = [float(w) for w in history[-1, "optim_weights"]]
    if "optim_update_cosine" in history[-1]:
        out["final_epoch_update_cosine"] = [float(c) for c in history[-1, "optim_update_cosine"]]
    if "optim_mixing" in history[-1]:
        out["final_mixing"] = [float(m) for m in history[-1, "optim_mixing"]]
    return out


def interval(values) -> dict:
    """Mean and 95 % t-interval of paired differences."""
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    n = arr.size
    if n < 2:
        return {"mean": float(arr.mean()) if n else None, "ci95": None, "n": int(n), "values": arr.tolist()}
    half = float(stats.t.ppf(0.975, n - 1) * arr.std(ddof=1) / np.sqrt(n))
    mean = float(arr.mean())
    return {"mean": mean, "ci95": [mean - half, mean + half], "half_width": half, "n": int(n), "values": arr.tolist()}


def aggregate(runs: dict, methods, lrs, seeds) -> dict:
    """runs[method][str(lr)][str(seed)] = run_one result."""

    def get(m, lr, s):
        return runs.get(m, {}).get(str(lr), {}).get(str(s))

    chosen = {}
    for m in methods:
        means = {}
        for lr in lrs:
            vals = [get(m, lr, s)["valid_mean_auc"] for s in seeds if get(m, lr, s)]
            if len(vals) == len(seeds):
                means[lr] = float(np.mean(vals))
        if means:
            chosen[m] = {"lr": max(means, key=means.get), "valid_mean_auc_by_lr": {str(k): v for k, v in means.items()}}
    result = {"chosen_lr": chosen, "at_chosen_lr": {}, "at_each_lr": {}}
    if "adam" not in chosen:
        return result
    base_lr = chosen["adam"]["lr"]
    for m in methods:
        if m not in chosen:
            continue
        lr = chosen[m]["lr"]
        test = [get(m, lr, s)["test_mean_auc"] for s in seeds]
        diff = [get(m, lr, s)["test_mean_auc"] - get("adam", base_lr, s)["test_mean_auc"] for s in seeds]
        per_task = [
            [get(m, lr, s)["test_auc"][k] - get("adam", base_lr, s)["test_auc"][k] for s in seeds] for k in range(2)
        ]
        result["at_chosen_lr"][m] = {
            "lr": lr,
            "test_mean_auc": _common.summary(test),
            "minus_adam": interval(diff),
            "minus_adam_task0": interval(per_task[0]),
            "minus_adam_task1": interval(per_task[1]),
            "best_epoch": _common.summary([get(m, lr, s)["best_epoch"] for s in seeds]),
            "seconds_per_epoch": _common.summary([get(m, lr, s)["seconds_per_epoch"] for s in seeds]),
        }
        result["at_each_lr"][m] = {}
        for lr_ in lrs:
            if all(get(m, lr_, s) and get("adam", lr_, s) for s in seeds):
                result["at_each_lr"][m][str(lr_)] = {
                    "test_mean_auc": _common.summary([get(m, lr_, s)["test_mean_auc"] for s in seeds]),
                    "minus_adam_same_lr": interval(
                        [get(m, lr_, s)["test_mean_auc"] - get("adam", lr_, s)["test_mean_auc"] for s in seeds]
                    ),
                }
    return result


def fmt_interval(entry: dict) -> str:
    if entry["ci95"] is None:
        return "n/a"
    lo, hi = entry["ci95"]
    return f"{entry['mean']:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def tables(agg: dict, methods, lrs) -> str:
    rows = []
    for m in methods:
        e = agg["at_chosen_lr"].get(m)
        if e is None:
            continue
        rows.append(
            [
                m,
                f"{e['lr']:g}",
                _common.mean_std(e["test_mean_auc"]["values"]),
                "—" if m == "adam" else fmt_interval(e["minus_adam"]),
                f"{e['best_epoch']['mean']:.1f}",
            ]
        )
    header = ["method", "chosen lr", "test mean AUC", "minus adam (95 % CI, paired)", "best epoch (mean)"]
    out = ["At each method's chosen lr:\n\n" + _common.markdown_table(header, rows)]
    rows = []
    for m in methods:
        if m == "adam" or m not in agg["at_each_lr"]:
            continue
        rows.append([m] + [fmt_interval(agg["at_each_lr"][m][str(lr)]["minus_adam_same_lr"]) for lr in lrs])
    out.append(
        "Paired difference to adam at the same lr (95 % CI):\n\n"
        + _common.markdown_table(["method"] + [f"lr {lr:g}" for lr in lrs], rows)
    )
    return "\n\n".join(out)


def merge(paths, output) -> int:
    runs, config, parts = {}, None, []
    for p in paths:
        data = json.loads(Path(p).read_text())
        config = config or data["config"]
        parts.append({"file": Path(p).name, "methods": list(data["runs"]), "environment": data["environment"]})
        for m, by_lr in data["runs"].items():
            for lr, by_seed in by_lr.items():
                runs.setdefault(m, {}).setdefault(lr, {}).update(by_seed)
    methods = [m for m in METHODS if m in runs]
    config = {**config, "methods": methods, "descriptions": {m: DESCRIPTIONS[m] for m in methods}}
    agg = aggregate(runs, methods, config["lrs"], config["seeds"])
    print(tables(agg, methods, config["lrs"]))
    path = _common.write_results(output, {"config": config, "parts": parts, "runs": runs, "results": agg})
    print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 1 lr, 2 epochs, small data")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--lrs", type=float, nargs="+", default=[2e-3, 5e-3])
    parser.add_argument("--correlation", type=float, default=-0.5)
    parser.add_argument("--n-train", type=int, default=8000)
    parser.add_argument("--n-valid", type=int, default=3000)
    parser.add_argument("--n-test", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=6)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=None)
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON", help="join runs of several outputs")
    args = parser.parse_args(argv)

    name = args.output or ("pub_drgrad_evidence_quick" if args.quick else "pub_drgrad_evidence")
    if args.merge:
        return merge(args.merge, name)
    torch.set_num_threads(args.threads)
    methods = list(args.methods)
    seeds, lrs = list(range(args.seeds)), list(args.lrs)
    if args.quick:
        seeds, lrs = [0], lrs[:1]
        args.n_train, args.n_valid, args.n_test, args.max_epochs = 2000, 1000, 1000, 2
    config = {
        "question": "PUB / DRGrad vs equal weights on conflicting synthetic tasks, lr tuned per method",
        "correlation": args.correlation,
        "n_train": args.n_train,
        "n_valid": args.n_valid,
        "n_test": args.n_test,
        "n_features": 16,
        "n_categorical": 2,
        "seeds": seeds,
        "data_random_state": "100 + seed",
        "model_random_state": "seed",
        "lrs": lrs,
        "batch_size": args.batch_size,
        "max_epochs": args.max_epochs,
        "patience": args.patience,
        "selection": "best epoch by mean validation AUC (partial_fit one epoch at a time); lr per method by the "
        "mean over seeds of that validation AUC",
        "mmoe": ARCH,
        "methods": methods,
        "descriptions": {m: DESCRIPTIONS[m] for m in methods},
        "torch_threads": args.threads,
        "quick": args.quick,
    }
    runs = {m: {str(lr): {} for lr in lrs} for m in methods}
    t_start = time.perf_counter()
    for seed in seeds:
        data = make_data(seed, args.correlation, args.n_train, args.n_valid, args.n_test)
        for lr in lrs:
            for m in methods:
                r = run_one(m, data, seed, lr, args)
                runs[m][str(lr)][str(seed)] = r
                print(
                    f"seed {seed} lr {lr:g} {m:>16}: test {r['test_mean_auc']:.4f} valid {r['valid_mean_auc']:.4f} "
                    f"epoch {r['best_epoch']}/{r['epochs_trained']} ({r['seconds']:.0f} s)",
                    flush=True,
                )
        agg = aggregate(runs, methods, lrs, seeds[: seed + 1])
        _common.write_results(
            name,
            {
                "config": config,
                "seeds_done": seed + 1,
                "wall_seconds": time.perf_counter() - t_start,
                "runs": runs,
                "results": agg,
            },
        )
    agg = aggregate(runs, methods, lrs, seeds)
    print()
    print(tables(agg, methods, lrs))
    path = _common.write_results(
        name,
        {
            "config": config,
            "seeds_done": len(seeds),
            "wall_seconds": time.perf_counter() - t_start,
            "runs": runs,
            "results": agg,
        },
    )
    print(f"wrote {path} ({time.perf_counter() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
