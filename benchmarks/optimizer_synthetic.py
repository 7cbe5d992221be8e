"""Multi-task methods on synthetic data of controlled task correlation.

Question (issue 3, benchmark 2): where the two tasks conflict (negative correlation), does
PUB or DRGrad beat equal weights ("adam")?

Data: ``make_multitask_classification`` (the MMoE paper's recipe) with 2 tasks, 16 features
of which 2 categorical (``n_categorical=2``), ``task_correlation`` in -0.5, 0, 0.5, 0.9;
30,000 rows per seed, the first 20,000 for training and the last 10,000 for testing. Each
seed draws new data (``random_state=100 + seed``) and a new model initialisation
(``random_state=seed``), the same for every method, so the methods' differences are paired
by seed.

Model: ``MMoEClassifier`` with 4 experts of (64, 32), towers (16,), embeddings of 16,
lr 1e-3, batch 256, a fixed number of epochs (``--epochs``, default 24; no early stopping,
no model selection). At 8 epochs most runs are still on a plateau near AUC 0.79; at 24 they
reach 0.90-0.97. Every method keeps its defaults.

Reported: per task and method, the test ROC AUC mean ± sample std over seeds, and the paired
difference to "adam" (mean ± std over seeds of ``AUC_method - AUC_adam``, mean over the two
tasks). Writes ``benchmarks/results/optimizer_synthetic.json`` (rewritten after every seed, so
an interrupted run keeps the seeds that finished), prints markdown tables, and draws
``docs/img/optimizer_synthetic.png`` (test AUC against correlation, one line per method,
error bars = std over seeds).

Run ``python benchmarks/optimizer_synthetic.py`` (all 8 methods, 3 seeds, 24 epochs: about
15-25 minutes on the shared 2-core machine; the stored results split the methods over two
runs, see benchmarks/README.md) or ``--quick``.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
import warnings
from pathlib import Path

import _common
import numpy as np
import torch

CORRELATIONS = [-0.5, 0.0, 0.5, 0.9]
METHODS = ["adam", "pub", "drgrad", "pcgrad", "cagrad", "nash_mtl", "uw", "famo"]
ARCH = {"n_experts": 4, "expert_hidden_sizes": (64, 32), "tower_hidden_sizes": (16,), "embedding_dim": 16}
PLOT_PATH = _common.REPO_ROOT / "docs" / "img" / "optimizer_synthetic.png"


def make_data(corr: float, seed: int, n_train: int, n_test: int):
    from sklearn_mtr.datasets import make_multitask_classification

    X, Y = make_multitask_classification(
        n_train + n_test, 16, 2, task_correlation=corr, n_categorical=2, as_frame=True, random_state=100 + seed
    )
    return X.iloc[:n_train], Y.iloc[:n_train], X.iloc[n_train:], Y.iloc[n_train:]


def run_one(method, data, seed, epochs, batch_size, lr) -> dict:
    from sklearn_mtr import MMoEClassifier
    from sklearn_mtr.metrics import per_task_roc_auc

    X_tr, Y_tr, X_te, Y_te = data
    clf = MMoEClassifier(
        **ARCH,
        optimizer=method,
        lr=lr,
        batch_size=batch_size,
        max_epochs=epochs,
        early_stopping=False,
        random_state=seed,
        device="cpu",
        verbose=0,
    )
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X_tr, Y_tr)
    except Exception as exc:
        return {
            "error": "".join(traceback.format_exception_only(type(exc), exc)).strip(),
            "fit_seconds": time.perf_counter() - t0,
        }
    fit_s = time.perf_counter() - t0
    proba = clf.predict_proba(X_te)
    auc = per_task_roc_auc(Y_te.to_numpy(), proba)
    return {
        "test_auc": [float(a) for a in auc],
        "final_train_loss": float(clf.history_[-1, "train_loss"]),
        "fit_seconds": fit_s,
    }


def aggregate(runs: dict, methods, corrs, n_tasks=2) -> dict:
    """runs[corr][method] = list over seeds of run_one results."""
    agg = {}
    for c in corrs:
        key = str(c)
        agg[key] = {}
        base = runs[key].get("adam", [])
        for m in methods:
            rs = runs[key].get(m, [])
            ok = [r for r in rs if "test_auc" in r]
            entry = {
                "n_seeds": len(ok),
                "errors": [r["error"] for r in rs if "error" in r],
                "fit_seconds": _common.summary([r["fit_seconds"] for r in ok]),
            }
            for k in range(n_tasks):
                entry[f"task{k}_auc"] = _common.summary([r["test_auc"][k] for r in ok])
            entry["mean_auc"] = _common.summary([float(np.mean(r["test_auc"])) for r in ok])
            diffs = [
                float(np.mean(r["test_auc"]) - np.mean(b["test_auc"]))
                for r, b in zip(rs, base)
                if "test_auc" in r and "test_auc" in b
            ]
            entry["mean_auc_minus_adam"] = _common.summary(diffs)
            agg[key][m] = entry
    return agg


def tables(agg: dict, methods, corrs) -> str:
    out = []
    header = ["method"] + [f"ρ = {c}" for c in corrs]
    for what, label in (("task0_auc", "task 0"), ("task1_auc", "task 1"), ("mean_auc", "mean of the 2 tasks")):
        rows = []
        for m in methods:
            rows.append([m] + [_common.mean_std(agg[str(c)][m][what]["values"]) for c in corrs])
        out.append(f"Test AUC, {label} (mean ± std over seeds):\n\n" + _common.markdown_table(header, rows))
    rows = []
    for m in methods:
        if m == "adam":
            continue
        rows.append([m] + [_common.mean_std(agg[str(c)][m]["mean_auc_minus_adam"]["values"]) for c in corrs])
    out.append(
        "Paired difference to adam, mean AUC of the 2 tasks (mean ± std over seeds; > 0: better than equal weights):\n\n"
        + _common.markdown_table(header, rows)
    )
    return "\n\n".join(out)


def plot(agg: dict, methods, corrs, n_seeds: int, path=PLOT_PATH, n_train=20000, n_test=10000, epochs=24) -> None:
    """Four panels: each task's test AUC, their mean, and the paired difference to adam."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.8), sharex=True)
    panels = (
        ("task0_auc", "test ROC AUC, task 0"),
        ("task1_auc", "test ROC AUC, task 1"),
        ("mean_auc", "test ROC AUC, mean of both tasks"),
        ("mean_auc_minus_adam", "mean AUC minus adam's (paired by seed)"),
    )
    width = 0.06
    styles = {
        "adam": {"color": "black", "linewidth": 2.2},
        "pub": {"color": "tab:red", "linewidth": 2.0},
        "drgrad": {"color": "tab:blue", "linewidth": 2.0},
    }
    for ax, (key, title) in zip(axes, panels):
        for i, m in enumerate(methods):
            offset = (i - (len(methods) - 1) / 2) * width / len(methods) * 2
            xs = [c + offset for c in corrs]
            mean = [agg[str(c)][m][key]["mean"] for c in corrs]
            std = [agg[str(c)][m][key]["std"] for c in corrs]
            mean = [np.nan if v is None else v for v in mean]
            std = [0.0 if v is None else v for v in std]
            kw = styles.get(m, {"linewidth": 1.0, "alpha": 0.8, "linestyle": "--"})
            ax.errorbar(xs, mean, yerr=std, marker="o", markersize=4, capsize=3, label=m, **kw)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("task correlation ρ")
        ax.set_xticks(corrs)
        ax.grid(alpha=0.3)
    axes[-1].axhline(0.0, color="grey", linewidth=0.8)
    axes[0].set_ylabel(f"mean ± std over {n_seeds} seeds")
    axes[2].legend(loc="best", fontsize=8, ncol=2)
    fig.suptitle(
        f"MMoE (4 experts (64, 32)) on make_multitask_classification, 2 tasks, "
        f"{n_train} train / {n_test} test rows, {epochs} epochs"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replot(json_paths, plot_path) -> None:
    """Redraw the plot from one or more results JSONs, without training.

    Several files (runs of the same setup with different ``--methods``) are merged: their
    methods are united, the first file's results kept for a method they share (``adam``).
    """
    import json

    merged, methods, seeds, cfg = {}, [], None, None
    for json_path in json_paths:
        data = json.loads(Path(json_path).read_text())
        c = data["config"]
        if cfg is None:
            cfg = c
        elif any(c[k] != cfg[k] for k in ("n_train", "n_test", "epochs", "correlations", "batch_size", "lr")):
            raise SystemExit(f"{json_path}: a different setup from {json_paths[0]}; not merged.")
        seeds = data["seeds_done"] if seeds is None else min(seeds, data["seeds_done"])
        for corr, per_method in data["results"].items():
            for m, entry in per_method.items():
                merged.setdefault(corr, {}).setdefault(m, entry)
        methods += [m for m in c["methods"] if m not in methods]
    plot(merged, methods, cfg["correlations"], seeds, Path(plot_path), cfg["n_train"], cfg["n_test"], cfg["epochs"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 1 epoch, 4000/2000 rows, 3 methods")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--n-test", type=int, default=10000)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--correlations", type=float, nargs="+", default=CORRELATIONS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--plot", default=None, help=f"plot path (default {PLOT_PATH.relative_to(_common.REPO_ROOT)})")
    parser.add_argument("--output", default=None)
    parser.add_argument(
        "--replot", nargs="+", default=None, metavar="JSON", help="only redraw the plot from results JSON(s), merged"
    )
    args = parser.parse_args(argv)

    if args.replot:
        replot(args.replot, args.plot or PLOT_PATH)
        return 0
    torch.set_num_threads(args.threads)
    methods = list(args.methods)
    if "adam" in methods:
        methods = ["adam"] + [m for m in methods if m != "adam"]
    corrs = list(args.correlations)
    seeds, epochs, n_train, n_test = args.seeds, args.epochs, args.n_train, args.n_test
    if args.quick:
        seeds, epochs, n_train, n_test = 1, 1, 4000, 2000
        methods = [m for m in methods if m in ("adam", "pub", "drgrad")]
    name = args.output or ("optimizer_synthetic_quick" if args.quick else "optimizer_synthetic")

    config = {
        "n_train": n_train,
        "n_test": n_test,
        "n_features": 16,
        "n_categorical": 2,
        "n_tasks": 2,
        "correlations": corrs,
        "seeds": list(range(seeds)),
        "data_random_state": "100 + seed",
        "model_random_state": "seed",
        "epochs": epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "mmoe": ARCH,
        "methods": methods,
        "method_parameters": "defaults of every method",
        "selection": "none: the model after the last epoch",
        "torch_threads": args.threads,
        "quick": args.quick,
    }
    runs = {str(c): {m: [] for m in methods} for c in corrs}
    t_start = time.perf_counter()
    for seed in range(seeds):
        for c in corrs:
            data = make_data(c, seed, n_train, n_test)
            for m in methods:
                r = run_one(m, data, seed, epochs, args.batch_size, args.lr)
                runs[str(c)][m].append(r)
                msg = r.get("error") or "AUC " + " / ".join(f"{a:.4f}" for a in r["test_auc"])
                print(f"seed {seed} ρ={c:+.1f} {m:>9}: {msg}  ({r['fit_seconds']:.1f} s)", flush=True)
        agg = aggregate(runs, methods, corrs)
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
    agg = aggregate(runs, methods, corrs)
    print()
    print(tables(agg, methods, corrs))
    if not args.no_plot:
        path = PLOT_PATH if not args.quick else PLOT_PATH.with_name("optimizer_synthetic_quick.png")
        if args.plot:
            path = Path(args.plot).resolve()
        plot(agg, methods, corrs, seeds, path, n_train, n_test, epochs)
        print(f"\nplot: {path}")
    print(f"wrote {_common.RESULTS_DIR / (name + '.json')} ({time.perf_counter() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
