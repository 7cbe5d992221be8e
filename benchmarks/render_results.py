"""Render ``benchmarks/results/*.json`` as a markdown page with tables and PNG plots.

    python benchmarks/render_results.py            # writes docs/benchmark_results.md, docs/img/results/*.png

Each result file is rendered by the renderer of its ``benchmark`` name (``RENDERERS``): every
benchmark declares its tables (rows, columns with units, number formats, seed counts, paired
differences with their 95 % t-interval where the runs are paired by seed). A result file of a
benchmark without a declared renderer stops the rendering with a ``ValueError``: nothing is
laid out by walking the JSON. Smoke runs (``--quick``, ``*_smoke``) are listed, not rendered.
Optimizer-accuracy files with the same setup (``*_others`` runs of more methods) are merged
into one section; the part files a merged result names in its ``parts`` are listed, not rendered
twice. A benchmark in ``BORROWS`` (an ablation) shows the rows it is paired with from another
result file of the same protocol, marked, with both files named as its source. The trade-off
plots are :class:`sklearn_mtr.inspection.TaskTradeoffDisplay` and the learning curves
:class:`sklearn_mtr.inspection.TaskLearningCurveDisplay`. The page is generated: edit this
script, not the page.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's sklearn_mtr, installed or not

from sklearn_mtr.inspection import TaskLearningCurveDisplay, TaskTradeoffDisplay


class Page:
    """Markdown lines plus the figures saved next to them."""

    def __init__(self, out: Path, img_dir: Path):
        self.out, self.img_dir, self.lines = out, img_dir, []
        img_dir.mkdir(parents=True, exist_ok=True)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def table(self, header: list[str], rows: list[list]) -> None:
        self.add("| " + " | ".join(header) + " |", "|" + "---|" * len(header))
        self.add(*("| " + " | ".join(str(c) for c in row) + " |" for row in rows))
        self.add("")

    def figure(self, fig, name: str, alt: str) -> None:
        path = self.img_dir / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.add(f"![{alt}]({Path(os.path.relpath(path, self.out.parent)).as_posix()})", "")


# ---------------------------------------------------------------------------------------- formatting
def fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_any(value) -> str:
    """A value of unknown scale: 4 significant digits, thousands separated."""
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10000:
        return f"{value:,}"
    return fmt(value)


def pm(stat: dict | None, digits: int = 4) -> str:
    """``mean ± std`` of a summary dict (``{"mean", "std", "n", ...}``)."""
    if not isinstance(stat, dict) or stat.get("mean") is None:
        return "–"
    std = stat.get("std")
    if std is None or stat.get("n", 2) < 2 or (isinstance(std, float) and math.isnan(std)):
        return f"{stat['mean']:,.{digits}f}"
    return f"{stat['mean']:,.{digits}f} ± {std:,.{digits}f}"


def environment(page: Page, data: dict, files: list[str]) -> None:
    env = data.get("environment", {})
    versions = env.get("versions", {})
    where = ", ".join(
        part
        for part in (
            env.get("cpu") and f"{env['cpu']} ({env.get('cpu_count', '?')} cores)",
            env.get("torch_num_threads") and f"{env['torch_num_threads']} torch thread(s)",
            env.get("device") and f"device {env['device']}" + (f" ({env['gpu']})" if env.get("gpu") else ""),
            versions.get("torch") and f"torch {versions['torch']}",
        )
        if part
    )
    source = ", ".join(f"`benchmarks/results/{f}`" for f in files)
    commit = env.get("git_commit", "?")
    page.add(f"*{source}; measured {env.get('date', '?')} at commit `{commit[:12]}`; {where}.*", "")


# ---------------------------------------------------------------------------------------- renderers
def render_census(page: Page, stem: str, data: dict) -> None:
    models = data["models"]
    tasks = list(next(iter(models.values()))["test_auc"])
    config = data.get("config", {})
    page.add(
        f"Seeds: {len(config.get('seeds', []))}, at most {config.get('max_epochs', '?')} epochs, model selection "
        f"`{config.get('selection', '?')}`. Mean ± sample std over seeds.",
        "",
    )
    header = ["model", *(f"{t} AUC" for t in tasks), *(f"{t} log loss" for t in tasks), "fit s"]
    rows = [
        [name, *(pm(m["test_auc"][t]) for t in tasks), *(pm(m["test_log_loss"][t]) for t in tasks)]
        + [pm(m.get("fit_seconds"), 0)]
        for name, m in models.items()
    ]
    page.table(header, rows)
    reference = data.get("reference", {})
    if reference:
        page.add("Published numbers (different preprocessing and budgets: a band, not a like-for-like comparison):", "")
        ref_rows = [
            [source, model, *(fmt(values.get(t)) for t in tasks)]
            for source, entry in reference.items()
            for model, values in entry.items()
            if isinstance(values, dict)
        ]
        page.table(["source", "model", *(f"{t} AUC" for t in tasks)], ref_rows)
    for name, check in data.get("acceptance", {}).items():
        targets = ", ".join(f"{t} ≥ {v}" for t, v in check.get("thresholds", {}).items())
        page.add(f"Acceptance ({name}: {targets}): **{'passed' if check.get('passed') else 'not met'}**.", "")

    results = {name: {t: m["test_auc"][t]["values"] for t in tasks} for name, m in models.items()}
    for source, entry in reference.items():
        for model, values in entry.items():
            if isinstance(values, dict) and all(t in values for t in tasks):
                results[f"{model} ({source.split(' ')[0]})"] = {t: values[t] for t in tasks}
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    TaskTradeoffDisplay.from_results(results, ax=ax)
    ax.set_title("Census-Income: test AUC per task (ours: mean ± std over seeds; published numbers)")
    page.figure(fig, f"{stem}_tradeoff", "Census task trade-off")

    curves = {name: _mean_valid_curve(m.get("runs", []), tasks) for name, m in models.items()}
    curves = {name: rows for name, rows in curves.items() if rows}
    if curves:
        # One panel per task, one line per model: the tasks' AUCs differ too much to share an axis.
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.6), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            for k, (name, rows) in enumerate(curves.items()):
                TaskLearningCurveDisplay.from_history(
                    rows, metric="auc", tasks=[task], ax=ax, name=f"{task}: validation AUC", label=name, color=f"C{k}"
                )
        fig.suptitle("Census-Income: mean validation AUC over seeds, per epoch")
        fig.tight_layout()
        page.figure(fig, f"{stem}_curves", "Census validation AUC per epoch")


def _mean_valid_curve(runs: list[dict], tasks: list[str]) -> list[dict]:
    """Per-epoch mean over seeds of ``valid_curve`` entries, as history rows."""
    by_epoch: dict[int, list[dict]] = {}
    for run in runs:
        for entry in run.get("valid_curve", []):
            by_epoch.setdefault(entry["epoch"], []).append(entry)
    rows = []
    for epoch in sorted(by_epoch):
        row = {"epoch": epoch}
        for task in tasks:
            for source, key in (("valid_auc", "valid_auc"), ("valid_log_loss", "valid_loss")):
                values = [e[source][task] for e in by_epoch[epoch] if task in e.get(source, {})]
                if values:
                    row[f"{key}_{task}"] = float(np.mean(values))
        rows.append(row)
    return rows if any(len(r) > 1 for r in rows) else []


def render_datasets(page: Page, stem: str, data: dict) -> None:
    """Accuracy benchmarks shaped ``datasets -> {tasks, models -> {auc, gauc, ...}}``: per data set
    the test AUC per task, GAUC and weighted recall@k where the data has requests, fit time."""
    config = data.get("config", {})
    recall = (
        f"; weighted recall@{config['k']}: per request, the fused score's top {config['k']}" if "k" in config else ""
    )
    page.add(f"Test metrics, mean ± sample std over seeds{recall}.", "")
    datasets = data["datasets"]
    for name, ds in datasets.items():
        page.add(f"### {name}", "", ds.get("description", ""), "")
        _dataset_table(page, ds, config)
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.4 * len(datasets), 4.0), squeeze=False)
    for ax, (name, ds) in zip(axes[0], datasets.items()):
        results = {m: {t: v["auc"][t]["values"] for t in ds["tasks"]} for m, v in ds["models"].items() if "auc" in v}
        TaskTradeoffDisplay.from_results(results, ax=ax)
        ax.set_title(name)
    fig.suptitle("Test AUC, task against task (mean ± std over seeds)")
    fig.tight_layout()
    page.figure(fig, f"{stem}_tradeoff", "Task trade-off per data set")


def _dataset_table(page: Page, ds: dict, config: dict, labels: dict[str, str] | None = None) -> None:
    """One data set's table of ``render_datasets``: per model the seeds, test AUC per task, GAUC
    and weighted recall@k where the data has requests, fit time; ``labels`` renames rows."""
    tasks, models, labels = ds["tasks"], ds["models"], labels or {}
    with_gauc = any(m.get("gauc") for m in models.values())
    with_recall = any(m.get("wrecall_at_k") for m in models.values())
    reference = ds.get("reference")  # a learning-rate grid: chosen rates and paired differences
    header = ["model", "seeds", *(f"{t} AUC" for t in tasks)]
    header += ["chosen lr", f"Δ mean AUC vs {reference} [95 % CI]"] if reference else []
    header += [f"{t} GAUC" for t in tasks] if with_gauc else []
    header += [f"weighted recall@{config.get('k', 'k')}"] if with_recall else []
    header += ["fit s"]
    rows, notes = [], []
    for model, m in models.items():
        label = labels.get(model, model)
        notes += [f"{label}: {err}" for err in m.get("errors", [])]
        if "auc" not in m:
            rows.append([label, 0, *(["–"] * (len(header) - 2))])
            continue
        if reference and model == "null control":
            label = f"*{reference}, task weights 1 / n_tasks (null control)*"
        cells = [label, m["auc"][tasks[0]].get("n", "?"), *(pm(m["auc"][t]) for t in tasks)]
        if reference:
            delta = m.get("delta_vs_reference")
            cells += [
                f"{m['chosen_lr']:g}",
                "(reference)" if model == reference else _delta_ci(paired(delta and delta["mean"])),
            ]
        cells += [pm(m.get("gauc", {}).get(t)) for t in tasks] if with_gauc else []
        cells += [pm(m.get("wrecall_at_k"))] if with_recall else []
        rows.append([*cells, pm(m.get("fit_seconds"), 1)])
    oracle = ds.get("oracle_test_auc")
    if oracle:
        rows.append(
            [
                "*oracle (true posterior)*",
                "–",
                *(fmt(oracle[t]) for t in tasks),
                *(["–"] * (len(header) - 2 - len(tasks))),
            ]
        )
    page.table(header, rows)
    if reference:
        page.add(
            f"Each model at the rate of {config.get('lrs')} with the best validation score averaged over the "
            f"seeds; Δ: its test AUC (mean of the tasks) minus {reference}'s at {reference}'s chosen rate, paired "
            "by seed, with the 95 % t-interval. The null control's interval is the protocol's resolution.",
            "",
        )
    if notes:
        page.add(*(f"- {n}" for n in notes), "")


def render_census_optimizers(page: Page, stem: str, data: dict) -> None:
    """Every multi-task method on each architecture (``summary -> arch -> method``), gains paired with ``ew``."""
    config = data.get("config", {})
    protocol = config.get("protocol", {})
    note = config.get("reduced_protocol_note")
    page.add(
        (note + " " if note else "")
        + f"{protocol.get('train_rows', 0):,} training / {protocol.get('valid_rows', 0):,} validation rows, at most "
        f"{protocol.get('max_epochs')} epochs (patience {protocol.get('patience')}), lr {protocol.get('lr')} for "
        f"every method. Test AUC mean ± sample std over seeds; Δ: the method's AUC minus equal weighting's (`ew`), "
        "paired by seed, with its 95 % t-interval.",
        "",
    )
    for model, methods in data["summary"].items():
        tasks = list(next(iter(methods.values()))["test_auc"])
        order = list(dict.fromkeys(m for m in ["ew", *config.get("methods", [])] if m in methods)) or list(methods)
        order += [m for m in methods if m not in order]
        page.add(f"### {model}", "")
        rows = []
        for method in order:
            entry, gain = methods[method], methods[method].get("paired_gain_vs_ew", {})
            label = f"{method} (null control: weights 0.5 / 0.5)" if method == "ew_half" else method
            rows.append(
                [label, len(entry.get("seeds", []))]
                + [pm(entry["test_auc"][t]) for t in tasks]
                + [("(reference)" if method == "ew" else _delta_ci(paired(gain.get(t)))) for t in tasks]
                + [pm(entry.get("fit_seconds"), 0)]
            )
        page.table(
            ["method", "seeds", *(f"{t} AUC" for t in tasks), *(f"Δ {t} vs ew [95 % CI]" for t in tasks), "fit s"],
            rows,
        )
    for entry in data.get("reference", {}).values():
        rows = entry.get("rows", {})
        columns = list(dict.fromkeys(c for values in rows.values() for c in values))
        page.add(
            f"Published: {_sentence(entry.get('source', ''))} Other data or protocol: a band, not a row-for-row "
            "comparison.",
            "",
        )
        page.table(["row", *columns], [[name, *(fmt(v.get(c)) for c in columns)] for name, v in rows.items()])
    models = list(data["summary"])
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.4), squeeze=False)
    for ax, model in zip(axes[0], models):
        methods = data["summary"][model]
        tasks = list(next(iter(methods.values()))["test_auc"])
        results = {m: {t: e["test_auc"][t]["values"] for t in tasks} for m, e in methods.items()}
        TaskTradeoffDisplay.from_results(results, reference="ew" if "ew" in results else None, ax=ax)
        ax.set_title(model)
    fig.suptitle("Census-Income: multi-task methods, test AUC task against task (mean ± std over seeds)")
    fig.tight_layout()
    page.figure(fig, f"{stem}_tradeoff", "Multi-task methods on Census-Income")


def render_step_time(page: Page, stem: str, data: dict) -> None:
    """Milliseconds per training step per method and task count, the ratio to equal weighting
    (``adam``) as a ratio of medians and, where per-round times are stored, paired by round
    (geometric mean, 95 % t-interval), and the targets the run was held to."""
    config = data.get("config", {})
    small = data["small"]
    tasks = list(small)
    methods = list(next(iter(small.values())))
    page.add(
        f"Median milliseconds per training step (`train_step` on a small MMoE, batch {config.get('batch_size', '?')}, "
        f"{config.get('rounds', '?')} interleaved rounds) and the ratio to equal weighting (`adam`): of the medians, "
        "and paired by round (geometric mean of the per-round ratios with its 95 % t-interval).",
        "",
    )

    def paired_to_adam(per_method: dict, method: str) -> str:
        rounds = [per_method.get(m, {}).get("ms_per_step", {}).get("values") for m in (method, "adam")]
        if not all(rounds) or len(rounds[0]) != len(rounds[1]):
            return "–"
        return _ratio_ci(_paired_ratio(*rounds))

    header = ["method", *(f"T={t} ms" for t in tasks), *(f"T={t} ×adam" for t in tasks)]
    header += [f"T={t} ×adam, paired [95 % CI]" for t in tasks]
    rows = [
        [m, *(fmt(small[t][m]["median_ms_per_step"], 2) for t in tasks)]
        + [fmt(small[t][m].get("ratio_to_adam"), 2) for t in tasks]
        + ["(reference)" if m == "adam" else paired_to_adam(small[t], m) for t in tasks]
        for m in methods
    ]
    page.table(header, rows)
    targets, at_t2 = config.get("targets_at_T2"), small.get("2", {})
    if targets and at_t2:
        measured = {m: at_t2.get(m, {}).get("ratio_to_adam_median_of_rounds") for m in targets}
        page.add(
            "Targets at T=2, on the median of the per-round ratios to `adam`: "
            + "; ".join(
                f"`{m}` {'–' if r is None else f'{r:.2f}×'} (target ≤ {v:.2f}×"
                + ("" if r is None else ", met" if r <= v else ", not met")
                + ")"
                for (m, v), r in zip(targets.items(), measured.values())
            )
            + ".",
            "",
        )
    default = data.get("default_size_T2")
    if default:
        page.add("Default-size MMoE (8 experts of [256, 128]), T=2:", "")
        page.table(
            ["method", "ms / step", "×adam", "×adam, paired [95 % CI]"],
            [
                [m, fmt(v["median_ms_per_step"], 2), fmt(v.get("ratio_to_adam"), 2)]
                + ["(reference)" if m == "adam" else paired_to_adam(default, m)]
                for m, v in default.items()
            ],
        )
    fig, ax = plt.subplots(figsize=(max(6.4, 0.6 * len(methods)), 3.8))
    width = 0.8 / len(tasks)
    x = np.arange(len(methods))
    for i, t in enumerate(tasks):
        ax.bar(x + i * width, [small[t][m].get("ratio_to_adam", np.nan) for m in methods], width, label=f"T={t}")
    ax.axhline(1.0, color="0.5", linewidth=1, linestyle=":")
    ax.set_xticks(x + width * (len(tasks) - 1) / 2, methods, rotation=45, ha="right")
    ax.set_ylabel("step time / equal weighting")
    ax.set_ylim(bottom=0)
    ax.legend(title="tasks")
    ax.set_title("Cost of a training step relative to equal weighting")
    page.figure(fig, f"{stem}_ratios", "Optimizer step time relative to equal weighting")


def render_synthetic(page: Page, stem: str, data: dict) -> None:
    """Multi-task methods on the synthetic generator: the mean of the two tasks' test AUCs per task
    correlation, then each method's difference with equal weighting (``adam``) paired by seed."""
    config = data["config"]
    results, runs = data["results"], data.get("runs", {})
    correlations = list(results)
    methods = list(dict.fromkeys(m for c in correlations for m in results[c]))
    if "adam" in methods:
        methods = ["adam", *(m for m in methods if m != "adam")]
    mmoe = config.get("mmoe", {})
    page.add(
        f"{config.get('n_tasks', 2)} tasks of the synthetic generator ({config.get('n_train', 0):,} training / "
        f"{config.get('n_test', 0):,} test rows, data seed 100 + seed), from conflicting to aligned tasks (ρ: task "
        f"correlation). MMoE of {mmoe.get('n_experts')} experts of {tuple(mmoe.get('expert_hidden_sizes', []))}, "
        f"{config.get('epochs', '?')} epochs, lr {config.get('lr')}, batch {config.get('batch_size')}, each "
        "method's defaults, the model after the last epoch. Mean test AUC of the two tasks, mean ± sample std over "
        "seeds.",
        "",
    )
    header = ["method", "seeds", *(f"ρ = {float(c):g}" for c in correlations)]
    rows = []
    for m in methods:
        seeds = {results[c][m].get("n_seeds") for c in correlations if m in results[c]}
        cells = [pm(results[c].get(m, {}).get("mean_auc")) for c in correlations]
        rows.append([m, ", ".join(str(n) for n in sorted(seeds)), *cells])
    page.table(header, rows)
    page.add("Mean-AUC difference with `adam`, paired by seed, and its 95 % t-interval:", "")
    rows = [
        [m, *(_delta_ci(paired(results[c].get(m, {}).get("mean_auc_minus_adam"))) for c in correlations)]
        for m in methods
        if m != "adam"
    ]
    page.table(["method", *(f"Δ vs adam, ρ = {float(c):g}" for c in correlations)], rows)
    fig, axes = plt.subplots(1, len(correlations), figsize=(4.0 * len(correlations), 4.0), squeeze=False)
    for ax, c in zip(axes[0], correlations):
        per_method = {m: [run["test_auc"] for run in runs.get(c, {}).get(m, [])] for m in methods}
        per_method = {m: v for m, v in per_method.items() if v}
        if not per_method:  # no per-seed runs stored: the means
            per_method = {
                m: [results[c][m]["task0_auc"]["mean"], results[c][m]["task1_auc"]["mean"]]
                for m in methods
                if m in results[c]
            }
        TaskTradeoffDisplay.from_results(per_method, reference="adam" if "adam" in per_method else None, ax=ax)
        ax.set_title(f"task correlation {c}")
    fig.suptitle(f"Optimizers on synthetic tasks ({config.get('epochs', '?')} epochs): task 0 against task 1 AUC")
    fig.tight_layout()
    page.figure(fig, f"{stem}_tradeoff", "Optimizer task trade-off on synthetic tasks")


def paired(stat) -> dict | None:
    """Mean and 95 % t-interval of a paired difference, from its per-seed ``values`` (a summary
    dict or a list); ``ci95`` is None for a single seed."""
    values = stat.get("values") if isinstance(stat, dict) else stat
    if values is None:
        return None
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return None
    mean = float(arr.mean())
    if arr.size < 2:
        return {"mean": mean, "ci95": None, "n": 1}
    half = float(stats.t.ppf(0.975, arr.size - 1) * arr.std(ddof=1) / math.sqrt(arr.size))
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": int(arr.size)}


def _delta_ci(stat: dict | None) -> str:
    """``+0.0036 [-0.0010, +0.0082]``: a paired difference and its 95 % t-interval."""
    if not isinstance(stat, dict) or stat.get("mean") is None:
        return "–"
    ci = stat.get("ci95")
    if not ci:
        return f"{stat['mean']:+.4f} (n={stat.get('n', 1)}, no interval)"
    return f"{stat['mean']:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]"


def _seed_differences(runs: list[dict], reference_runs: list[dict], value: Callable[[dict], float]) -> list[float]:
    """``value(run) - value(reference run)`` for every seed both lists have (runs carry ``seed``)."""
    reference = {r["seed"]: r for r in reference_runs}
    return [value(r) - value(reference[r["seed"]]) for r in runs if r["seed"] in reference]


def _paired_ratio(numerator, denominator) -> dict | None:
    """Geometric mean of per-round ratios and its 95 % t-interval (on log ratios; rounds paired)."""
    logs = paired(np.log(np.asarray(numerator, dtype=float) / np.asarray(denominator, dtype=float)))
    if logs is None:
        return None
    ci = logs["ci95"] and [math.exp(c) for c in logs["ci95"]]
    return {"geometric_mean": math.exp(logs["mean"]), "ci95": ci, "n": logs["n"]}


def _ratio_ci(stat: dict | None, digits: int = 2) -> str:
    """``1.07× [0.92, 1.24]``: a geometric-mean ratio and its 95 % interval (``ci95``, or ``low`` and
    ``high``)."""
    if not isinstance(stat, dict) or stat.get("geometric_mean") is None:
        return "–"
    ci = stat.get("ci95") or ([stat.get("low"), stat.get("high")] if "low" in stat else None)
    mean = f"{stat['geometric_mean']:.{digits}f}×"
    if not ci or any(c is None or math.isnan(c) for c in ci):
        return f"{mean} (n={stat.get('n', stat.get('n_rounds', 1))}, no interval)"
    return f"{mean} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def render_vs_sklearn(page: Page, stem: str, data: dict) -> None:
    """Per data set: the estimators with their defaults against the scikit-learn baseline, one row
    per model, per task the test AUC and the paired difference to the baseline, fit time as a
    ratio; the null control (the baseline against itself) shows what difference is noise."""
    config = data.get("config", {})
    seeds = config.get("seeds", [])
    rows_note = f", training rows sub-sampled to {config['max_train_rows']:,}" if config.get("max_train_rows") else ""
    page.add(
        f"Every estimator with its defaults (only `random_state`, `text_features` where there is text, and "
        f"`groups` for OneRank where there are requests) against the scikit-learn baseline a user tries first. "
        f"{len(seeds)} seed(s){rows_note}; test ROC AUC, mean ± sample std over seeds; Δ = mean paired difference "
        "model − baseline (same seed) with its 95 % t-interval; fit time as a multiple of the baseline's. "
        "The null-control row is the baseline against itself: differences inside its interval are noise.",
        "",
    )
    for name, ds in data["datasets"].items():
        tasks = ds["tasks"]
        rows = ds.get("rows", {})
        page.add(f"### {name}", "", ds.get("description", ""), "")
        page.add(
            f"{rows.get('train', 0):,} training / {rows.get('test', 0):,} test rows. "
            f"Baseline: {ds.get('baseline_label', '?')}. Null control: {ds.get('null_control_label', '?')}.",
            "",
        )
        header = ["model"]
        for t in tasks:
            header += [f"{t} AUC", f"{t} Δ vs baseline [95 % CI]"]
        header += ["fit s", "fit time ÷ baseline"]
        entries = [("scikit-learn baseline", ds.get("baseline"), True)]
        entries += [(model, entry, False) for model, entry in ds.get("models", {}).items()]
        entries += [("*null control: baseline vs itself*", ds.get("null_control"), False)]
        table = []
        for label, entry, is_baseline in entries:
            if not entry:
                continue
            cells = [label]
            for t in tasks:
                delta = "(reference)" if is_baseline else _delta_ci(entry.get("delta_vs_baseline", {}).get(t))
                cells += [pm(entry.get("auc", {}).get(t)), delta]
            ratio = entry.get("fit_time_ratio")
            cells += [pm(entry.get("fit_seconds"), 1), "1" if is_baseline else (f"{ratio:.2f}×" if ratio else "–")]
            table.append(cells)
        page.table(header, table)
        notes = [f"{m} skipped: {why}." for m, why in ds.get("skipped", {}).items()]
        notes += [f"{m}: {err}" for m, e in ds.get("models", {}).items() for err in e.get("errors", [])]
        if notes:
            page.add(*(f"- {n}" for n in notes), "")


def _interval(stat: dict | None) -> dict | None:
    """A paired difference written as ``{mean, low, high}`` in the ``{mean, ci95}`` form."""
    if isinstance(stat, dict) and "low" in stat:
        ci = [stat["low"], stat["high"]] if stat.get("low") is not None else None
        return {"mean": stat.get("mean"), "ci95": ci, "n": stat.get("n")}
    return stat


def render_numeric_encoding(page: Page, stem: str, data: dict) -> None:
    """Per estimator: each numeric encoding's test AUC per task, its paired difference with
    ``standard``, and the null control's difference with the variant it copies."""
    config = data.get("config", {})
    if "timing" in data:
        page.add(
            f"One training epoch on the whole training file per variant, {config.get('timing_rounds')} interleaved "
            "rounds; the ratio is the median over rounds of the variant's seconds over `standard`'s.",
            "",
        )
        rows = [
            [model, variant, pm(_common_summary(t["seconds"]), 1), f"{t['ratio_to_standard']:.2f}×"]
            for model, per in data["timing"].items()
            for variant, t in per.items()
        ]
        page.table(["model", "variant", "epoch s", "÷ standard"], rows)
        return
    tasks = data.get("tasks", [])
    page.add(
        f"{config.get('seeds')} seed(s) paired by `random_state`; epochs chosen on the validation half (at most "
        f"{config.get('max_epochs')}, patience {config.get('patience')}). Δ: mean paired difference with its 95 % "
        "t-interval, against `standard` (the control: against the variant it copies, with task weights 0.5 / 0.5, "
        "which Adam ignores; its interval is the protocol's resolution).",
        "",
    )
    header = ["model", "variant"] + [h for t in tasks for h in (f"{t} AUC", f"{t} Δ [95 % CI]")] + ["s / epoch"]
    rows = []
    for model, per in data["models"].items():
        for variant, entry in per.items():
            cells = [model, variant + (f" (vs {entry['paired_vs']})" if variant == "control" else "")]
            for t in tasks:
                diff = (entry.get("paired_difference") or {}).get(t)
                cells += [pm(entry["test_auc"][t]), _delta_ci(_interval(diff)) if diff else "(reference)"]
            cells.append(pm(entry.get("seconds_per_epoch"), 1))
            rows.append(cells)
    page.table(header, rows)


def render_variants(page: Page, stem: str, data: dict) -> None:
    """Variants of one estimator's defaults (``vs_sklearn.summarise_variants``), per data set:
    seeds, test AUC per task, paired difference to the reference variant, epochs and fit time;
    variants whose runs were measured before (``measured_before``) are marked; where the
    variants are paired with a scikit-learn baseline (``delta_vs_baseline``), that difference
    too. A timing file (``timing``) is a table of epoch seconds and ratios instead."""
    config = data.get("config", {})
    if "timing" in data:
        _render_variant_timing(page, data)
        return
    protocol = str(config.get("protocol", "")).split("\n\n")[0].replace("\n", " ")
    datasets = data.get("datasets", {})
    with_control = any("control" in info["variants"] for info in datasets.values())
    page.add(
        f"{protocol} Model: {config.get('model')}; {config.get('seeds')} seed(s) requested, paired by "
        "`random_state` (the seeds column: those run). Δ: mean paired difference to the reference with its 95 % "
        "t-interval"
        + (
            "; the control row is a no-op (task weights 1 / n_tasks, which Adam ignores): its interval is the "
            "protocol's resolution."
            if with_control
            else "."
        ),
        "",
    )
    earlier = False
    for dataset, info in datasets.items():
        tasks, variants = info["tasks"], info["variants"]
        reference = info.get("reference") or next(
            (k[len("delta_vs_") :] for e in variants.values() for k in e if k.startswith("delta_vs_")), None
        )
        page.add(f"### {dataset}", "")
        header = ["variant", "seeds"] + [h for t in tasks for h in (f"{t} AUC", f"{t} Δ [95 % CI]")]
        with_baseline = "baseline" in info
        if with_baseline:
            header += [f"{t} Δ vs baseline [95 % CI]" for t in tasks]
        header += ["epochs", "fit s"]
        rows = []
        for name, entry in variants.items():
            delta = entry.get(f"delta_vs_{reference}", {})
            before = any(r.get("measured_before") for r in entry.get("runs", []))
            earlier |= before
            cells = [name + (" (reference)" if name == reference else "") + (" ‡" if before else "")]
            cells.append(entry["auc"][tasks[0]].get("n", "?"))
            for t in tasks:
                cells += [pm(entry["auc"][t]), _delta_ci(delta.get(t)) if delta else "(reference)"]
            if with_baseline:
                cells += [_delta_ci(entry.get("delta_vs_baseline", {}).get(t)) for t in tasks]
            cells += [pm(entry.get("epochs"), 1), pm(entry.get("fit_seconds"), 1)]
            rows.append(cells)
        page.table(header, rows)
        if with_baseline:
            aucs = " / ".join(pm(info["baseline"]["auc"][t]) for t in tasks)
            page.add(f"Baseline ({info['baseline']['label']}, the same seeds): {aucs}.", "")
        _variant_curves(page, variants)
    if earlier:
        page.add(
            "‡ runs taken from an earlier measurement (`measured_before`), not re-run here: their fit seconds "
            "were measured under another load of the shared machine.",
            "",
        )


def _variant_curves(page: Page, variants: dict) -> None:
    """Where runs kept their validation AUC per epoch (``valid_auc``, early stopping's score):
    per run, the score at epochs 5 and 10, its highest value with the epoch (early stopping keeps
    the last epoch that improved on the best by more than ``tol``, which can be earlier) and the
    number of epochs run."""
    rows = []
    for name, entry in variants.items():
        for run in entry.get("runs", []):
            curve = run.get("valid_auc")
            if not curve:
                continue
            best = int(np.argmax(curve))
            at = [fmt(curve[e - 1]) if len(curve) >= e else "–" for e in (5, 10)]
            rows.append([name, run["seed"], *at, f"{fmt(curve[best])} ({best + 1})", len(curve)])
    if rows:
        page.add("Validation AUC (mean over tasks, early stopping's score) per fitted run:", "")
        page.table(["variant", "seed", "epoch 5", "epoch 10", "highest (epoch)", "epochs run"], rows)


def _render_variant_timing(page: Page, data: dict) -> None:
    """Epoch seconds per variant in interleaved rounds, and the median per-round ratio to the
    first variant (the reference)."""
    config = data.get("config", {})
    page.add(
        f"One training epoch on the whole training file per variant, {config.get('timing_rounds')} interleaved "
        "rounds on one thread; the ratio is the median over rounds of the variant's seconds over the reference's.",
        "",
    )
    rows = []
    for model, per in data["timing"].items():
        for variant, t in per.items():
            ratio = next((v for k, v in t.items() if k.startswith("ratio_to_")), None)
            rows.append([model, variant, pm(_common_summary(t["seconds"]), 1), f"{ratio:.2f}×"])
    page.table(["model", "variant", "epoch s", "÷ reference"], rows)


def _common_summary(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0, "n": int(arr.size)}


def render_defaults_grid(page: Page, stem: str, data: dict) -> None:
    """One row per grid point (and the default fit): test AUC per task, paired difference with
    the grid's best point, epochs trained and fit time."""
    config, tasks = data.get("config", {}), data.get("tasks", [])
    page.add(
        f"{data.get('description', '')}. {config.get('seeds')} seed(s); grid points train one epoch at a time with "
        f"the epoch chosen on the validation split (at most {config.get('max_epochs')}, patience "
        f"{config.get('patience')}); `default` is the estimator as a user gets it (`fit`, its own early stopping). "
        "Δ: mean paired difference with the grid's best point (95 % t-interval).",
        "",
    )
    header = ["model", "point"] + [h for t in tasks for h in (f"{t} AUC", f"{t} Δ vs best")] + ["epochs", "fit s"]
    rows = []
    for model, entry in data["models"].items():
        for name, point in entry["points"].items():
            label = name + (" (best)" if name == entry.get("best_grid_point") else "")
            cells = [model, label]
            for t in tasks:
                diff = (point.get("paired_vs_best") or {}).get(t)
                cells += [pm(point["test_auc"][t]), _delta_ci(_interval(diff)) if diff else "–"]
            epochs = [r.get("epochs_trained") for r in point["runs"]]
            cells += [", ".join(str(e) for e in epochs), pm(point.get("fit_seconds"), 0)]
            rows.append(cells)
    page.table(header, rows)


def render_throughput(page: Page, stem: str, data: dict) -> None:
    """One row per (model, configuration, phase): samples/s of every contender and the ratios
    (median of the per-round ratios), plus a plot of ours / torch-rechub and ours / plain."""
    configurations = data.get("configurations", {})
    for name, cfg in configurations.items():
        page.add(f"- `{name}`: {cfg.get('description', '')}.")
    config = data.get("config", {})
    page.add(
        "",
        f"{_count(config.get('rows', '?'))} rows, one epoch per fit, {config.get('rounds', '?')} interleaved rounds; "
        "samples per second (mean ± std over rounds); ratios are medians of the per-round ratios.",
        "",
    )
    known = ["ours", "ours_loop", "plain", "rechub", "ours_bf16"]
    seen = {c for cell in data["cells"] for rates in cell["samples_per_second"].values() for c in rates}
    contenders = [c for c in known if c in seen]
    rows, labels, vs_rechub, vs_plain = [], [], [], []
    for cell in data["cells"]:
        ratios = cell.get("ratios_median_of_rounds", {})
        for phase, rates in cell["samples_per_second"].items():
            rows.append(
                [cell["model"], cell["configuration"], phase, *(pm(rates.get(c), 0) for c in contenders)]
                + [fmt(ratios.get(f"{phase} ours/plain"), 2), fmt(ratios.get(f"{phase} ours/rechub"), 2)]
            )
            labels.append(f"{cell['model']} {cell['configuration']} {phase}")
            vs_rechub.append(ratios.get(f"{phase} ours/rechub", np.nan))
            vs_plain.append(ratios.get(f"{phase} ours/plain", np.nan))
    page.table(["model", "configuration", "phase", *contenders, "ours/plain", "ours/rechub"], rows)
    aucs = [cell for cell in data["cells"] if cell.get("train_mean_auc")]
    if aucs:
        page.add("Mean training AUC after the timed epoch (the contenders did the same work):", "")
        names = [c for c in contenders if any(c in cell["train_mean_auc"] for cell in aucs)]
        page.table(
            ["model", "configuration", *names],
            [
                [cell["model"], cell["configuration"], *(pm(cell["train_mean_auc"].get(c)) for c in names)]
                for cell in aucs
            ],
        )
    descriptions = data.get("contenders", {})
    page.table(["contender", "what is timed"], [[c, descriptions.get(c, "")] for c in contenders])
    fig, ax = plt.subplots(figsize=(6.4, 0.35 * len(labels) + 1.2))
    y = np.arange(len(labels))
    ax.barh(y - 0.2, vs_rechub, height=0.4, label="ours / torch-rechub", color="C0")
    ax.barh(y + 0.2, vs_plain, height=0.4, label="ours / plain loop", color="C1")
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.axvline(2.0, color="C0", lw=0.8, ls="--")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("speed ratio (median of per-round ratios; > 1: ours faster)")
    ax.legend(loc="lower right", fontsize=8)
    page.figure(fig, f"{stem}_ratios", "Throughput ratios")


# ---------------------------------------------------------------------------------------- speed and memory
def render_flops(page: Page, stem: str, data: dict) -> None:
    """FLOP/s of one MMoE training step, ours and a plain loop, against a matmul peak."""
    config, peak = data.get("config", {}), data["matmul_peak_flops"]
    page.add(
        f"MMoE of {config.get('n_experts')} experts of {tuple(config.get('expert_hidden_sizes', []))}, towers "
        f"{tuple(config.get('tower_hidden_sizes', []))}, batch {config.get('batch_size')}, {config.get('steps')} "
        f"steps per round, {config.get('rounds')} interleaved rounds. {_gflop(data['flops_per_step'])} per step "
        f"({_gflop(data['flops_per_sample'], 'MFLOP', 1e6)} per sample); single-thread float32 matmul peak "
        f"{_gflop(peak['median_over_rounds'], 'GFLOP/s')} (median of {len(peak.get('per_round', []))} rounds, "
        f"sizes {', '.join(map(str, peak.get('sizes', [])))}). {_sentence(data.get('note', ''))}",
        "",
    )
    rows = [
        [
            contender,
            pm(_scaled(stat, 1e3), 1),
            f"{data['samples_per_second'][contender]:,.0f}",
            _gflop(data["achieved_flops"][contender], "")[:-1].strip(),
            f"{data['ratio_to_peak'][contender]:.1%}",
            f"{data['ratio_to_peak_median_of_rounds'][contender]:.1%}",
        ]
        for contender, stat in data["seconds_per_step"].items()
    ]
    page.table(
        ["contender", "ms / step", "samples / s", "GFLOP/s", "of matmul peak", "of peak (median of rounds)"], rows
    )


def _count(value) -> str:
    """An integer with thousands separators (anything else as it is)."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _sentence(text: str) -> str:
    """``text`` capitalised and ending with a full stop."""
    text = str(text).strip()
    if not text:
        return ""
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _gflop(value: float, unit: str = "GFLOP", scale: float = 1e9) -> str:
    return f"{value / scale:,.1f} {unit}"


def _scaled(stat: dict, factor: float) -> dict:
    """A summary dict in other units (seconds to milliseconds)."""
    return {**stat, "mean": stat["mean"] * factor, "std": (stat.get("std") or 0.0) * factor}


def render_task_scaling(page: Page, stem: str, data: dict) -> None:
    """predict_proba throughput per model as the number of tasks grows, one table per input setting;
    time ratios to the smallest task count as a ratio of medians and, where stored, paired by round
    (geometric mean, 95 % t-interval) and of the fastest rounds; the null control (an identical copy
    of a model timed alongside it) in its own table."""
    config = data.get("config", {})
    base = (config.get("tasks") or [2])[0]
    cells = [c for models in data["results"].values() for per in models.values() for c in per.values()]
    page.add(
        f"`predict_proba` on {config.get('n_predict', 0):,} rows after one epoch on {config.get('n_fit', 0):,}; "
        f"each estimator's defaults, 1 torch thread, {config.get('rounds')} interleaved rounds. Samples per second "
        f"(mean ± std over rounds); time ratio: time per sample over the {base}-task model's, as the ratio of the "
        "medians"
        + (
            ", paired by round (geometric mean of the per-round ratios with its 95 % t-interval)"
            if any(f"end_to_end_time_ratio_vs_{base}_tasks_paired" in c for c in cells)
            else ""
        )
        + (
            " and as the ratio of the fastest rounds (interference on a shared machine only slows a round down)"
            if any(f"end_to_end_time_ratio_vs_{base}_tasks_fastest_rounds" in c for c in cells)
            else ""
        )
        + ".",
        "",
    )
    kinds = (("end_to_end", "end-to-end"), ("model", "network"))
    for setting, models in data["results"].items():
        page.add(f"### {setting.replace('_', ' + ')} inputs", "")
        cells = [cell for per_tasks in models.values() for cell in per_tasks.values()]
        with_paired = any(f"end_to_end_time_ratio_vs_{base}_tasks_paired" in c for c in cells)
        with_fastest = any(f"end_to_end_time_ratio_vs_{base}_tasks_fastest_rounds" in c for c in cells)
        # an identical copy timed alongside a model: "<kind>_time_ratio_vs_<model>" (copy's time ÷ model's)
        copies = {
            model: original
            for model, per_tasks in models.items()
            for key in next(iter(per_tasks.values()))
            if key.startswith("end_to_end_time_ratio_vs_")
            and (original := key[len("end_to_end_time_ratio_vs_") :]) in models
        }
        header = ["model", "tasks", "parameters", "end to end, samples / s", "network only, samples / s"]
        header += [f"{label} time ÷ {base} tasks" for _, label in kinds]
        header += [f"{label} time ÷ {base} tasks, paired [95 % CI]" for _, label in kinds] if with_paired else []
        header += [f"{label} time ÷ {base} tasks, fastest rounds" for _, label in kinds] if with_fastest else []
        rows = []
        for model, per_tasks in models.items():
            label = f"*{model} (null control)*" if model in copies else model
            for tasks, cell in per_tasks.items():
                row = [label, tasks, f"{cell['parameters']:,}", pm(cell["end_to_end_samples_per_s"], 0)]
                row += [pm(cell["model_samples_per_s"], 0)]
                row += [f"{cell[f'{kind}_time_ratio_vs_{base}_tasks']:.2f}×" for kind, _ in kinds]
                if with_paired:
                    row += [_ratio_ci(cell.get(f"{kind}_time_ratio_vs_{base}_tasks_paired")) for kind, _ in kinds]
                if with_fastest:
                    fastest = [cell.get(f"{kind}_time_ratio_vs_{base}_tasks_fastest_rounds") for kind, _ in kinds]
                    row += ["–" if f is None else f"{f:.2f}×" for f in fastest]
                rows.append(row)
        page.table(header, rows)
        for copy, original in copies.items():
            page.add(
                f"Null control: `{copy}` is an identical `{original}` timed alongside it; its time ÷ the "
                "original's, paired by round (1 up to the machine's noise):",
                "",
            )
            page.table(
                ["tasks", *(f"{label} time, {copy} ÷ {original} [95 % CI]" for _, label in kinds)],
                [
                    [tasks, *(_ratio_ci(cell.get(f"{kind}_time_ratio_vs_{original}")) for kind, _ in kinds)]
                    for tasks, cell in models[copy].items()
                ],
            )


def render_onerank_scaling(page: Page, stem: str, data: dict) -> None:
    """OneRank's forward time and FLOPs per candidate against candidates per request, next to a dense mask."""
    config, params, slope = data.get("config", {}), data.get("parameters", {}), data.get("loglog_slope", {})
    page.add(
        f"One request: a {config.get('history')}-item history and N candidates, {config.get('n_tasks')} tasks; "
        f"d_model {config.get('d_model')}, {config.get('n_layers')} layers, {config.get('n_heads')} heads; "
        f"{params.get('total', 0):,} parameters ({params.get('embeddings', 0):,} in embeddings). Eval-mode forward "
        f"time, median of {data.get('repeats')} repeats; FLOPs counted by `FlopCounterMode` (forward). Log-log "
        f"slope of time against N for N ≥ 256: shared-prefix forward {slope.get('forward', float('nan')):.2f}, "
        f"encoder {slope.get('encoder', float('nan')):.2f}, dense-mask encoder {slope.get('dense', float('nan')):.2f} "
        "(1 is linear).",
        "",
    )
    rows = []
    for r in data["rows"]:
        dense = r.get("dense_encoder_s")
        rows.append(
            [
                f"{r['candidates']:,}",
                f"{r['forward_s'] * 1e3:.1f}",
                f"{r['encoder_s'] * 1e3:.1f}",
                f"{r['us_per_candidate']:.1f}",
                f"{r['flops_per_candidate'] / 1e6:.2f}",
                "–" if dense is None else f"{dense * 1e3:.1f}",
                "–" if dense is None else f"{dense / r['encoder_s']:.2f}×",
                "–" if r.get("dense_max_abs_diff") is None else f"{r['dense_max_abs_diff']:.1e}",
            ]
        )
    page.table(
        [
            "candidates N",
            "forward ms",
            "encoder ms",
            "µs / candidate",
            "MFLOP / candidate",
            "dense-mask encoder ms",
            "dense ÷ shared prefix",
            "max abs diff vs dense",
        ],
        rows,
    )


def render_predict_memory(page: Page, stem: str, data: dict) -> None:
    """Peak memory and speed of one predict_proba call, chunked and not, against rows."""
    model = data.get("model", {})
    page.add(
        f"{_sentence(data.get('description', ''))} MMoE of {model.get('n_experts')} experts of "
        f"{tuple(model.get('expert_hidden_sizes', []))}; {data.get('columns', '')}; "
        f"{data.get('torch_threads')} torch thread(s); one fresh process per row of the table (one run each).",
        "",
    )
    rows = [
        [f"{r['rows']:,}", r["mode"], f"{r['input_mib']:,.1f}", f"{r['output_mib']:,.1f}"]
        + [f"{r['rss_before_mib']:,.0f}", f"{r['peak_rss_mib']:,.0f}", f"{r['added_by_predict_mib']:,.0f}"]
        + [f"{r['seconds']:.1f}", f"{r['rows_per_second']:,.0f}"]
        for r in data["runs"]
    ]
    page.table(
        [
            "rows",
            "prediction",
            "input MiB",
            "output MiB",
            "RSS before MiB",
            "peak RSS MiB",
            "added by predict MiB",
            "s",
            "rows / s",
        ],
        rows,
    )


def render_streaming_memory(page: Page, stem: str, data: dict) -> None:
    """Peak memory of one epoch, streaming fit against in-memory fit, when the rows grow 10×."""
    config = data.get("config", {})
    page.add(
        f"One epoch of a small MMoE; Parquet parts of {config.get('part_rows', 0):,} rows, streamed in chunks of "
        f"{config.get('batch_rows', 0):,}; one fresh process per row of the table (one run each): "
        f"{config.get('measure', '')}.",
        "",
    )
    rows = [
        [r["mode"].replace("_", " "), f"{r['rows']:,}", f"{r['peak_rss_mib']:,.0f}"]
        + [f"{r['peak_above_imports_mib']:,.0f}", f"{r['seconds']:.1f}", f"{r['rows_per_second']:,.0f}"]
        for r in data["runs"]
    ]
    page.table(["fit", "rows", "peak RSS MiB", "peak above imports MiB", "s", "rows / s"], rows)
    growth = data.get("peak_above_imports_growth_10x_rows", {})
    if growth:
        page.add(
            "Peak above imports, 10× the rows: "
            + ", ".join(f"{mode.replace('_', ' ')} {g:.2f}×" for mode, g in growth.items())
            + ".",
            "",
        )


def render_threads_demo(page: Page, stem: str, data: dict) -> None:
    """Fit seconds with 1 and 2 torch threads, round by round, on a shared machine."""
    page.add(
        f"`{data.get('command', '')}`, 1 and 2 threads alternated in each round; the 1-minute load average "
        "before each fit shows how busy the shared machine was.",
        "",
    )
    by_round: dict[int, dict[int, dict]] = {}
    for r in data["runs"]:
        by_round.setdefault(r["round"], {})[r["threads"]] = r
    rows = []
    for rnd, per in sorted(by_round.items()):
        one, two = per.get(1, {}), per.get(2, {})
        ratio = two["fit_s"] / one["fit_s"] if one and two else None
        rows.append(
            [rnd, fmt(one.get("fit_s"), 1), fmt(two.get("fit_s"), 1), "–" if ratio is None else f"{ratio:.2f}×"]
            + [fmt(one.get("load1_before"), 1), fmt(two.get("load1_before"), 1)]
            + [fmt(one.get("mean_test_auc"), 4), fmt(two.get("mean_test_auc"), 4)]
        )
    page.table(
        [
            "round",
            "fit s, 1 thread",
            "fit s, 2 threads",
            "2 ÷ 1 threads",
            "load before, 1 thread",
            "load before, 2 threads",
            "mean test AUC, 1 thread",
            "mean test AUC, 2 threads",
        ],
        rows,
    )
    page.add(
        f"Fit seconds over {data['fit_s_1_thread']['n']} rounds: 1 thread {pm(data['fit_s_1_thread'], 1)}, "
        f"2 threads {pm(data['fit_s_2_threads'], 1)}; median ratio 2 ÷ 1 threads "
        f"{data['median_ratio_2_over_1']:.2f}×.",
        "",
    )


# ---------------------------------------------------------------------------------------- accuracy
def render_drgrad_ablation(page: Page, stem: str, data: dict) -> None:
    """Per task correlation: each DRGrad variant's test AUCs, final training loss and its mean-AUC
    difference with equal weighting (``adam``), paired by seed."""
    config = data.get("config", {})
    mmoe = config.get("mmoe", {})
    page.add(
        f"MMoE of {mmoe.get('n_experts')} experts of {tuple(mmoe.get('expert_hidden_sizes', []))} on the 2-task "
        f"synthetic generator ({config.get('n_train', 0):,} training / {config.get('n_test', 0):,} test rows), "
        f"{config.get('epochs')} epochs, lr {config.get('lr')}, batch {config.get('batch_size')}, no selection. "
        "What each variant changes: the docstring of `benchmarks/drgrad_ablation.py`. Test AUC mean ± sample std "
        "over seeds; Δ: the mean of the two tasks' AUCs minus `adam`'s, paired by seed, with its 95 % t-interval.",
        "",
    )
    fit_s: dict[tuple, list[float]] = {}
    for run in data.get("runs", []):
        seconds = run.get("fit_seconds", run.get("fit_s"))  # older runs wrote fit_s
        if seconds is not None:
            fit_s.setdefault((str(run["corr"]), run["variant"]), []).append(seconds)
    for corr, variants in data["summary"].items():
        page.add(f"### Task correlation ρ = {float(corr):g}", "")
        order = ["adam", *(v for v in variants if v != "adam")] if "adam" in variants else list(variants)
        rows = []
        for name in order:
            entry = variants[name]
            delta = "(reference)" if name == "adam" else _delta_ci(paired(entry.get("mean_auc_minus_adam")))
            seconds = fit_s.get((corr, name))
            rows.append(
                [name, _seed_list(entry.get("seeds"))]
                + [pm(entry["task0_auc"]), pm(entry["task1_auc"]), pm(entry.get("final_train_loss"))]
                + [delta, pm(_common_summary(seconds), 0) if seconds else "–"]
            )
        page.table(
            ["variant", "seeds", "task 0 AUC", "task 1 AUC", "final train loss", "Δ mean AUC vs adam [95 % CI]"]
            + ["fit s"],
            rows,
        )


def _seed_list(seeds) -> str:
    return "–" if not seeds else f"{len(seeds)} ({', '.join(map(str, seeds))})"


def render_onerank_accuracy(page: Page, stem: str, data: dict) -> None:
    """Per data set: test AUC (and GAUC by request and by user where there are requests) per model,
    with each baseline's AUC difference to OneRank paired by seed."""
    description = str(data.get("description", "")).strip().split("\n\n")[0].replace("\n", " ")
    page.add(
        f"{description} Mean ± sample std over seeds; Δ: the model's test AUC minus OneRank's, paired by seed, "
        "with its 95 % t-interval; epochs: the selected epoch of each seed.",
        "",
    )
    parts = [p.get("name", "?") for p in data.get("parts", [])]
    if parts:
        page.add("Merged from the runs " + ", ".join(f"`{p}`" for p in parts) + ".", "")
    for name, ds in data["datasets"].items():
        tasks, models = ds["tasks"], ds["models"]
        page.add(f"### {name}", "", ds.get("description", ""), "")
        requests = ds.get("train_requests")
        if requests:
            page.add(
                f"{requests['n']:,} training requests of {requests['mean_size']:.1f} candidates on average "
                f"(at most {requests['max_size']:,}).",
                "",
            )
        metrics = [m for m in ("auc", "gauc_request", "gauc_user") if any(m in e["summary"] for e in models.values())]
        labels = {"auc": "AUC", "gauc_request": "GAUC by request", "gauc_user": "GAUC by user"}
        reference = "OneRank" if "OneRank" in models else next(iter(models))
        rows = []
        for model, entry in models.items():
            runs = entry.get("runs", [])
            cells = [model, len(runs)]
            cells += [pm(entry["summary"].get(m, {}).get(t)) for m in metrics for t in tasks]
            for t in tasks:
                diffs = _seed_differences(runs, models[reference].get("runs", []), lambda r, t=t: r["auc"][t])
                cells.append("(reference)" if model == reference else _delta_ci(paired(diffs)) if diffs else "–")
            cells += [", ".join(str(r.get("best_epoch", "?")) for r in runs)]
            params = runs[0].get("parameters") if runs else None
            cells += [f"{params:,}" if params else "–", pm(_common_summary([r["fit_seconds"] for r in runs]), 0)]
            rows.append(cells)
        page.table(
            ["model", "seeds", *(f"{t} {labels[m]}" for m in metrics for t in tasks)]
            + [f"Δ {t} AUC vs {reference} [95 % CI]" for t in tasks]
            + ["epochs", "parameters", "fit s"],
            rows,
        )


def render_text_wide_scale(page: Page, stem: str, data: dict) -> None:
    """Per scale of the text's wide term: test AUC per task, the difference with the (deterministic)
    logistic-regression baseline and, where scale 1 was run, the paired difference with it."""
    tasks, baseline = data["tasks"], data["baseline"]
    variants = data["variants"]
    with_scale_1 = any(v.get("vs_scale_1") for v in variants.values())
    page.add(
        f"{_sentence(data.get('description', ''))} MMoE with its defaults but the wide term's scale; "
        f"{data.get('config', {}).get('seeds')} seeds. Baseline: TF-IDF (1-2-grams) + one-hot + "
        "`LogisticRegression` per task, deterministic, fitted once. Δ: difference with it (or, paired by seed, "
        "with scale 1), mean and 95 % t-interval over seeds.",
        "",
    )
    header = ["wide scale", "seeds"] + [f"{t} AUC" for t in tasks] + [f"{t} Δ vs LR [95 % CI]" for t in tasks]
    if with_scale_1:
        header += [f"{t} Δ vs scale 1 [95 % CI]" for t in tasks]
    header += ["epochs trained", "fit s"]
    rows = [
        [
            "LR baseline",
            "deterministic",
            *(fmt(baseline["test_auc"][t]) for t in tasks),
            *(["(reference)"] * len(tasks)),
        ]
    ]
    rows[0] += ["–"] * len(tasks) * with_scale_1 + ["–", fmt(baseline.get("fit_seconds"), 1)]
    for scale, entry in variants.items():
        runs = entry.get("runs", [])
        cells = [f"{float(scale):g}", len(runs), *(pm(entry["test_auc"][t]) for t in tasks)]
        cells += [_delta_ci(paired(entry["minus_logistic_regression"][t])) for t in tasks]
        if with_scale_1:
            vs = entry.get("vs_scale_1") or {}
            cells += [_delta_ci(_interval(vs[t])) if t in vs else "(reference)" for t in tasks]
        cells += [", ".join(str(r["epochs_trained"]) for r in runs)]
        cells += [pm(_common_summary([r["fit_seconds"] for r in runs]), 1)]
        rows.append(cells)
    page.table(header, rows)


# ---------------------------------------------------------------------------------------- GRec variants
GREC_REFERENCE = "GRec-task"  # the default routing: what routing modes and ablations are paired with


def render_grec_variants(page: Page, stem: str, data: dict) -> None:
    """GRec variants (routing modes, ablations) per data set: the metrics table of
    ``render_datasets``, then each model's difference with ``GRec-task``, paired by seed. Rows
    borrowed from another result file (``borrowed_from``) are marked and named below the table."""
    config = data.get("config") or next((p.get("config") for p in data.get("parts", []) if p.get("config")), {})
    reference = data.get("reference", GREC_REFERENCE)
    seeds = config.get("seeds", [])
    page.add(
        f"Selection: {config.get('selection', '?')}. {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); the data "
        "split is fixed, seeds vary initialisation and shuffling. Test metrics mean ± sample std over seeds; "
        f"Δ: the model's metric minus `{reference}`'s (same seed), mean and 95 % t-interval over seeds.",
        "",
    )
    variants = {}  # a merged file: the variants of every part
    for part in data.get("parts", []):
        variants.update((part.get("config") or {}).get("architectures", {}))
    variants = variants or config.get("architectures", {})
    if variants:
        page.add(
            *(
                f"- `{name}`: {arch.get('estimator', '?')}("
                + ", ".join(f"{k}={v!r}" for k, v in arch.items() if k != "estimator")
                + ")"
                for name, arch in variants.items()
            ),
            "",
        )
    for name, ds in data["datasets"].items():
        tasks, models = ds["tasks"], ds["models"]
        page.add(f"### {name}", "", ds.get("description", ""), "")
        borrowed = {m: e["borrowed_from"] for m, e in models.items() if e.get("borrowed_from")}
        _dataset_table(page, ds, config, labels={m: f"{m} †" for m in borrowed})
        if borrowed:
            sources = ", ".join(sorted({f"`benchmarks/results/{f}.json`" for f in borrowed.values()}))
            page.add(f"† from {sources}: the same protocol, data split and seeds.", "")
        if reference not in models:
            page.add(f"No `{reference}` runs on this data set: no paired differences.", "")
            continue
        metrics = [("auc", "AUC")] + ([("gauc", "GAUC")] if any(e.get("gauc") for e in models.values()) else [])
        reference_runs = models[reference].get("runs", [])
        rows = []
        for model, entry in models.items():
            if model == reference:
                continue
            runs = [r for r in entry.get("runs", []) if all(key in r for key, _ in metrics)]
            cells = [model, len(_seed_differences(runs, reference_runs, lambda r, t=tasks[0]: r["auc"][t]))]
            for key, _ in metrics:
                for t in tasks:
                    cells.append(
                        _delta_ci(paired(_seed_differences(runs, reference_runs, lambda r, k=key, t=t: r[k][t])))
                    )
            rows.append(cells)
        page.table(
            ["model", "paired seeds"]
            + [f"Δ {t} {label} vs {reference} [95 % CI]" for _, label in metrics for t in tasks],
            rows,
        )


def borrow_models(data: dict, lender: dict, lender_stem: str, models: tuple[str, ...]) -> dict:
    """``data`` with those of ``models`` it lacks taken from ``lender``, on every data set both ran
    with the same rows and epochs (the same protocol), marked ``borrowed_from`` and listed first."""
    data = json.loads(json.dumps(data))
    for name, ds in data.get("datasets", {}).items():
        other = lender.get("datasets", {}).get(name)
        if not other or (other.get("rows"), other.get("max_epochs")) != (ds.get("rows"), ds.get("max_epochs")):
            continue
        extra = {
            m: {**other["models"][m], "borrowed_from": lender_stem}
            for m in models
            if m in other["models"] and m not in ds["models"]
        }
        ds["models"] = {**extra, **ds["models"]}
    return data


# Benchmarks whose variants are paired with rows of another result file: its stem and the models taken.
BORROWS = {"grec_gap_ablation": ("grec_routing", (GREC_REFERENCE, "MMoE"))}


# ---------------------------------------------------------------------------------------- reliability
def render_continuation_snapshot(page: Page, stem: str, data: dict) -> None:
    """What the state snapshot of a continuation costs: geometric-mean time ratios of the arms
    over paired rounds, the null control (a second snapshot arm) and the snapshot timed alone."""
    setup = data["setup"]
    page.add(
        f"{setup.get('model')} ({setup.get('n_parameters', 0):,} parameters): `partial_fit` on "
        f"{setup.get('rows', 0):,} rows in batches of {setup.get('batch_size')} ({setup.get('steps_per_call')} steps "
        f"per call), {setup.get('calls_per_arm_and_round')} calls per arm and round, {setup.get('threads')} "
        "thread(s); the arms interleaved in a rotating order within each round. Ratios of the arms' seconds per "
        "round: geometric mean over rounds with its 95 % t-interval (log ratios, rounds paired). The control is a "
        "second `snapshot` arm: its interval is what the protocol resolves.",
        "",
    )
    rows = [
        [label, data[key].get("n_rounds", "?"), _ratio_ci(data[key], 3)]
        for key, label in (
            ("snapshot_over_no_snapshot", "snapshot ÷ no snapshot (the overhead)"),
            ("control_over_snapshot", "*null control: control ÷ snapshot*"),
            ("one_plus_snapshot_share_timed_alone", "1 + snapshot seconds timed alone ÷ no-snapshot seconds"),
        )
        if key in data
    ]
    page.table(["time ratio", "rounds", "geometric mean [95 % CI]"], rows)
    page.add(
        f"A call without the snapshot: {data['median_seconds_per_call_no_snapshot'] * 1e3:,.0f} ms (median over "
        f"rounds); one snapshot: {data['snapshot_seconds'] * 1e3:.1f} ms (median, timed alone), "
        f"{data['snapshot_megabytes']:.1f} MiB.",
        "",
    )


# ---------------------------------------------------------------------------------------- OneRank requests
def render_onerank_requests(page: Page, stem: str, data: dict) -> None:
    """Per request protocol: each metric of every model, OneRank's also with the request ids
    shuffled (the control: its set advantage should vanish), and the difference with MMoE
    paired by seed."""
    description = str(data.get("description", "")).strip().split("\n\n")[0].replace("\n", " ")
    page.add(
        f"{description} Mean ± sample std over seeds; Δ: the model's metric minus MMoE's on the same seed and "
        "data, mean and 95 % t-interval over seeds. *Shuffled*: OneRank scored with the test rows regrouped at "
        "random into requests of the same sizes, against MMoE's unshuffled metric: the control, where seeing the "
        "request should not help. A data set named `*_null` is the null protocol: labels do not depend on the "
        "request.",
        "",
    )
    parts = [p.get("name", "?") for p in data.get("parts", [])]
    if parts:
        page.add("Merged from the runs " + ", ".join(f"`{p}`" for p in parts) + ".", "")
    labels = {"auc": "AUC", "gauc_request": "GAUC by request", "gauc_user": "GAUC by user"}
    for name, ds in data["datasets"].items():
        tasks, models = ds["tasks"], ds["models"]
        page.add(f"### {name}" + (" (null protocol)" if name.endswith("_null") else ""), "")
        page.add(ds.get("description", ""), "")
        requests = ds.get("train_requests")
        if requests:
            page.add(
                f"{requests['n']:,} training requests of {requests['mean_size']:.1f} candidates on average "
                f"(at most {requests['max_size']:,}).",
                "",
            )
        reference = "MMoE" if "MMoE" in models else None
        order = ([reference] if reference else []) + [m for m in models if m != reference]
        present = {k for e in models.values() for k in e.get("summary", {})}
        rows = []
        for metric in (m for m in labels if m in present):
            for model in order:
                for key, requests_as in ((metric, "as given"), (f"{metric}_shuffled", "*shuffled*")):
                    summary = models[model].get("summary", {}).get(key)
                    if not summary:
                        continue
                    vs = models[model].get("vs_MMoE", {}).get(key, {})
                    cells = [labels[metric], model, requests_as, summary[tasks[0]].get("n", "?")]
                    for t in tasks:
                        delta = "(reference)" if model == reference else _delta_ci(paired(vs.get(t))) if vs else "–"
                        cells += [pm(summary.get(t)), delta]
                    rows.append(cells)
        delta_label = f"Δ vs {reference} [95 % CI]" if reference else "Δ"
        page.table(
            ["metric", "model", "requests", "seeds"] + [h for t in tasks for h in (t, f"{t} {delta_label}")], rows
        )
        page.table(
            ["model", "seeds", "best epochs", "parameters", "fit s"],
            [
                [
                    model,
                    len(runs := models[model].get("runs", [])),
                    ", ".join(str(r.get("best_epoch", "?")) for r in runs),
                    f"{runs[0]['parameters']:,}" if runs and runs[0].get("parameters") else "–",
                    pm(_common_summary([r["fit_seconds"] for r in runs]), 0) if runs else "–",
                ]
                for model in order
            ],
        )


# ---------------------------------------------------------------------------------------- PUB / DRGrad
def render_pub_drgrad_evidence(page: Page, stem: str, data: dict) -> None:
    """PUB and DRGrad variants against equal weights (``adam``), each at its own learning rate:
    test mean AUC and the paired difference with ``adam`` (the null control ``adam_half`` shown
    the same way), then the validation AUC and paired difference at every learning rate."""
    config, results = data["config"], data.get("results", {})
    mmoe, seeds, lrs = config.get("mmoe", {}), config.get("seeds", []), config.get("lrs", [])
    page.add(
        f"{_sentence(config.get('question', ''))} Two tasks of `make_multitask_classification` (correlation "
        f"{config.get('correlation')}, {config.get('n_features')} features of which {config.get('n_categorical')} "
        f"categorical; {config.get('n_train', 0):,} training / {config.get('n_valid', 0):,} validation / "
        f"{config.get('n_test', 0):,} test rows; data `random_state` {config.get('data_random_state')}, model "
        f"`random_state` {config.get('model_random_state')}). MMoE of {mmoe.get('n_experts')} experts of "
        f"{tuple(mmoe.get('expert_hidden_sizes', []))}, towers {tuple(mmoe.get('tower_hidden_sizes', []))}, batch "
        f"{config.get('batch_size')}; at most {config.get('max_epochs')} epochs (patience {config.get('patience')}). "
        f"Selection: {config.get('selection', '?')}. {len(seeds)} seed(s), paired. Δ: the method's test mean AUC "
        "of the two tasks minus `adam`'s (each at its chosen lr), mean and 95 % t-interval over seeds.",
        "",
    )
    descriptions = config.get("descriptions", {})
    if descriptions:
        page.add(*(f"- `{m}`: {d}" for m, d in descriptions.items()), "")
    chosen, at_chosen = results.get("chosen_lr", {}), results.get("at_chosen_lr", {})
    if not at_chosen:
        page.add("No `adam` runs on every seed in this file: no paired differences.", "")
    rows = []
    for method, entry in at_chosen.items():
        null = "null control" in descriptions.get(method, "")
        label = f"*{method} (null control)*" if null else method
        deltas = (
            ["(reference)"] * 3
            if method == "adam"
            else [_delta_ci(paired(entry.get(key))) for key in ("minus_adam", "minus_adam_task0", "minus_adam_task1")]
        )
        rows.append(
            [label, f"{entry['lr']:g}", entry["test_mean_auc"].get("n", "?"), pm(entry["test_mean_auc"]), *deltas]
            + [pm(entry.get("best_epoch"), 1), pm(entry.get("seconds_per_epoch"), 1)]
        )
    if rows:
        page.table(
            ["method", "chosen lr", "seeds", "test mean AUC", "Δ mean AUC vs adam [95 % CI]", "Δ task 0 AUC"]
            + ["Δ task 1 AUC", "best epoch", "s / epoch"],
            rows,
        )
    at_each = results.get("at_each_lr", {})
    if chosen:
        page.add(
            "At every learning rate of the grid: the validation mean AUC averaged over seeds (what chose the lr) "
            "and the test mean AUC's paired difference with `adam` at the same lr.",
            "",
        )
        rows = []
        for method, entry in chosen.items():
            cells = [method]
            for lr in lrs:
                valid = entry.get("valid_mean_auc_by_lr", {}).get(str(lr))
                same = at_each.get(method, {}).get(str(lr), {}).get("minus_adam_same_lr")
                mark = " (chosen)" if lr == entry.get("lr") else ""
                cells += [fmt(valid) + mark, "(reference)" if method == "adam" else _delta_ci(paired(same))]
            rows.append(cells)
        page.table(
            ["method"] + [h for lr in lrs for h in (f"lr {lr:g}: valid mean AUC", f"lr {lr:g}: Δ test vs adam")], rows
        )
    merged = [p.get("file", "?") for p in data.get("parts", [])]
    if merged:
        page.add("Merged from " + ", ".join(f"`{f}`" for f in merged) + ".", "")


def render_census_methods(page: Page, stem: str, data: dict) -> None:
    """Methods on Census under the evidence protocol (``census_methods.py --summarise``): per
    method the learning rate chosen on validation, the test AUC per task there, and the paired
    difference with equal weighting (each at its chosen rate) for the mean of the tasks and per
    task; the null control in the same columns; then every rate of the grid."""
    tasks, methods, null = data["tasks"], data.get("methods", {}), data.get("null_control")
    protocol = str(data.get("config", {}).get("protocol", "")).split("\n\n")[0].replace("\n", " ")
    page.add(
        f"{protocol} Model: {data.get('model')}; seeds paired by `random_state`. Δ: mean paired difference "
        "with `ew` (equal weighting, each method at its own chosen rate) and its 95 % t-interval; the null "
        "control's interval is the protocol's resolution.",
        "",
    )
    header = ["method", "chosen lr", "seeds", *(f"{t} AUC" for t in tasks), "Δ mean AUC [95 % CI]"]
    header += [f"Δ {t} [95 % CI]" for t in tasks] + ["epochs", "fit s"]
    rows = []

    def row(label: str, lr: float, entry: dict, delta: dict | None) -> list:
        n = entry["auc"][tasks[0]].get("n", "?")
        cells = [label, f"{lr:g}", n, *(pm(entry["auc"][t]) for t in tasks)]
        if delta is None:
            cells += ["(reference)"] * (len(tasks) + 1)
        else:
            cells += [_delta_ci(paired(delta.get(k))) for k in ("mean", *tasks)]
        return cells + [pm(entry.get("epochs"), 1), pm(entry.get("fit_seconds"), 0)]

    for method, entry in methods.items():
        lr = entry["chosen_lr"]
        rows.append(row(method, lr, entry["lrs"][f"{lr:g}"], entry.get("delta_vs_ew")))
    if null:
        rows.append(row("*ew, weights 1 / n_tasks (null control)*", null["lr"], null, null["delta_vs_ew"]))
    page.table(header, rows)
    lrs = sorted({lr for entry in methods.values() for lr in entry["lrs"]}, key=float)
    page.add(
        "Every rate of the grid: the validation score averaged over the seeds every rate has (what chose "
        "the rate; early stopping's best mean validation AUC) and the test mean AUC's paired difference with "
        "`ew` at the same rate.",
        "",
    )
    grid_rows = []
    for method, entry in methods.items():
        cells = [method]
        for lr in lrs:
            chosen = " (chosen)" if float(lr) == entry["chosen_lr"] else ""
            same = entry.get("delta_vs_ew_per_lr", {}).get(lr, {}).get("mean")
            cells += [
                fmt(entry["valid_score"].get(lr)) + chosen,
                "(reference)" if method == "ew" else _delta_ci(paired(same)),
            ]
        grid_rows.append(cells)
    page.table(["method"] + [h for lr in lrs for h in (f"lr {lr}: valid score", f"lr {lr}: Δ test vs ew")], grid_rows)


def render_census_methods_diagnostics(page: Page, stem: str, data: dict) -> None:
    """What each method reported in ``history_`` (its ``optim_*`` keys, epoch means) in the first
    epochs of a Census fit: one table per method, a row per epoch, a column per key."""
    config = data.get("config", {})
    page.add(
        f"{config.get('model')} on the whole Census training file, seed {config.get('seed')}, "
        f"{config.get('epochs')} epochs without early stopping; each value is the epoch's mean of what the "
        "method reports per step (a pair is one value per task or per sub-tower).",
        "",
    )
    for variant, epochs in data.get("diagnostics", {}).items():
        keys = list(epochs[0]) if epochs else []
        page.add(f"`{variant}`:", "")

        def cell(value) -> str:
            return " / ".join(f"{v:.3f}" for v in value) if isinstance(value, list) else f"{value:.3f}"

        page.table(["epoch", *keys], [[i + 1, *(cell(e[k]) for k in keys)] for i, e in enumerate(epochs)])


# Every result file's benchmark name (the longest matching prefix) and the renderer that lays
# out its tables. A file of a benchmark not listed here stops the rendering.
RENDERERS: dict[str, Callable[[Page, str, dict], None]] = {
    "census_baselines": render_census,
    "census_optimizers": render_census_optimizers,
    "census_methods": render_census_methods,
    "census_methods_diagnostics": render_census_methods_diagnostics,
    "funnel_models": render_datasets,
    "grec_accuracy": render_datasets,
    "optimizer_step_time": render_step_time,
    "optimizer_synthetic": render_synthetic,
    "throughput_census": render_throughput,
    "vs_sklearn": render_vs_sklearn,
    "numeric_encoding": render_numeric_encoding,
    "defaults_grid": render_defaults_grid,
    "lr_schedule": render_variants,
    "weight_averaging": render_variants,
    "weight_averaging_census_cap": render_variants,
    "weight_averaging_census_grec": render_variants,
    "text_deep_min_df": render_variants,
    "text_wide_scale": render_text_wide_scale,
    "drgrad_ablation": render_drgrad_ablation,
    "onerank_accuracy": render_onerank_accuracy,
    "onerank_scaling": render_onerank_scaling,
    "grec_task_scaling": render_task_scaling,
    "flops_mmoe": render_flops,
    "predict_memory": render_predict_memory,
    "streaming_memory": render_streaming_memory,
    "threads_demo": render_threads_demo,
    "grec_routing": render_grec_variants,
    "grec_gap_ablation": render_grec_variants,
    "grec_gap_history": render_grec_variants,
    "continuation_snapshot": render_continuation_snapshot,
    "onerank_requests": render_onerank_requests,
    "pub_drgrad_evidence": render_pub_drgrad_evidence,
}
TITLES = {
    "census_baselines": "Census-Income baselines",
    "census_optimizers": "Multi-task methods on Census-Income",
    "census_methods": "Multi-task methods on Census-Income, learning rate tuned per method",
    "census_methods_diagnostics": "What PUB and DRGrad do on Census-Income (their history_ diagnostics)",
    "funnel_models": "Funnel models",
    "grec_accuracy": "GRec accuracy",
    "optimizer_step_time": "Optimizer step time",
    "optimizer_synthetic": "Optimizers on synthetic tasks",
    "throughput_census": "Fit and predict throughput (MMoE, PLE)",
    "vs_sklearn": "Defaults against scikit-learn baselines",
    "numeric_encoding": "Numeric encodings on Census-Income",
    "defaults_grid": "Training defaults: a small grid against the default fit",
    "lr_schedule": "Learning-rate schedules of a default fit",
    "weight_averaging": "Weight averaging of a default fit (ema_epochs)",
    "weight_averaging_census_cap": "OneRank and GRec on Census: 20 epochs or a faster rate (weight_averaging.py)",
    "weight_averaging_census_grec": "GRec on Census: token width d_model 64 against 32 (weight_averaging.py)",
    "text_deep_min_df": "Text and sparse X: which terms get a deep vector",
    "text_wide_scale": "Text: the scale of the wide term",
    "drgrad_ablation": "DRGrad ablations",
    "onerank_accuracy": "OneRank against MMoE, PLE and ResFlow",
    "onerank_scaling": "OneRank cost against candidates per request",
    "grec_task_scaling": "GRec, MMoE and PLE prediction throughput as tasks grow",
    "flops_mmoe": "FLOP/s of MMoE training against the matmul peak",
    "predict_memory": "Peak memory of predict_proba",
    "streaming_memory": "Peak memory of the streaming fit",
    "threads_demo": "One thread against two on a shared machine",
    "grec_routing": "GRec routing modes: task against sentence routing",
    "grec_gap_ablation": "GRec's MovieLens gap to MMoE: two ablations",
    "grec_gap_history": "GRec's MovieLens gap to MMoE: the behaviour history, and what is not the cause (5 seeds)",
    "continuation_snapshot": "The cost of transactional continuation (the state snapshot)",
    "onerank_requests": "OneRank against MMoE on request-ranking protocols",
    "pub_drgrad_evidence": "PUB and DRGrad against equal weights, lr tuned per method",
}


def renderer_of(name: str) -> str | None:
    """The declared benchmark a result file belongs to: the longest key of RENDERERS that
    starts its benchmark name, or None."""
    matches = [key for key in RENDERERS if name.startswith(key)]
    return max(matches, key=len) if matches else None


def merge_synthetic(files: dict[str, dict]) -> dict[str, tuple[list[str], dict]]:
    """Optimizer-accuracy files with the same setup but other methods become one result."""
    merged: dict[str, tuple[list[str], dict]] = {}
    for stem, data in files.items():
        config = {k: v for k, v in data["config"].items() if k != "methods"}
        for stems, base in merged.values():
            if {k: v for k, v in base["config"].items() if k != "methods"} == config:
                for c, per_method in data["results"].items():
                    for m, value in per_method.items():
                        base["results"].setdefault(c, {}).setdefault(m, value)
                        base.setdefault("runs", {}).setdefault(c, {}).setdefault(
                            m, data.get("runs", {}).get(c, {}).get(m, [])
                        )
                base["config"]["methods"] = list(dict.fromkeys(base["config"]["methods"] + data["config"]["methods"]))
                stems.append(stem)
                break
        else:
            merged[stem] = ([stem], json.loads(json.dumps(data)))
    return merged


def render(results_dir: Path, out: Path, img_dir: Path) -> list[str]:
    """Write the page; returns the result files rendered."""
    files = {}
    for path in sorted(results_dir.glob("*.json")):
        try:
            files[path.stem] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:  # a run still writing its file
            print(f"skipped {path.name}: {exc}", file=sys.stderr)
    # Smoke runs (--quick, *_smoke) check that a script works; their numbers are not results.
    quick = sorted(
        stem
        for stem, data in files.items()
        if (data.get("config") or {}).get("quick") or stem.endswith(("_quick", "_smoke"))
    )
    # Parts that a merged result names (``parts``: ``name`` or ``file``) are in it already.
    merged_into = {
        part_stem: stem
        for stem, data in files.items()
        for part in (data.get("parts") or [])
        if isinstance(part, dict)
        and (part_stem := str(part.get("name") or Path(str(part.get("file", ""))).stem)) in files
        and part_stem != stem
    }
    groups: dict[str, dict[str, dict]] = {}
    undeclared = []
    for stem, data in files.items():
        if stem in quick or stem in merged_into:
            continue
        key = renderer_of(str(data.get("benchmark", stem)))
        if key is None:
            undeclared.append(f"{stem}.json (benchmark {data.get('benchmark', stem)!r})")
        else:
            groups.setdefault(key, {})[stem] = data
    if undeclared:
        raise ValueError(
            "no table layout is declared for " + ", ".join(undeclared) + ": add a renderer to RENDERERS in "
            "benchmarks/render_results.py (results are laid out by design, never walked)."
        )
    page = Page(out, img_dir)
    page.add(
        "# Benchmark results",
        "",
        "Generated by `python benchmarks/render_results.py` from `benchmarks/results/*.json` (edit the script, "
        "not this page). How each benchmark is run and what it measures: [benchmarks/README.md]"
        "(../benchmarks/README.md); the discussion of the numbers: [Benchmarks](benchmarks.md) and "
        "[Optimizer benchmarks](optimizer_benchmarks.md).",
        "",
    )
    for key, renderer in RENDERERS.items():
        members = groups.get(key, {})
        if key == "optimizer_synthetic":
            members = {stem: data for stem, (stems, data) in merge_synthetic(members).items()}
            sources = {stem: stems for stem, (stems, _) in merge_synthetic(groups.get(key, {})).items()}
        else:
            sources = {stem: [stem] for stem in members}
        if key in BORROWS and BORROWS[key][0] in files:
            lender, models = BORROWS[key]
            members = {stem: borrow_models(data, files[lender], lender, models) for stem, data in members.items()}
            sources = {stem: [*stems, lender] for stem, stems in sources.items()}
        for stem, data in members.items():
            title = TITLES[key]
            suffix = re.sub(r"(\d+)epochs", r"\1 epochs", stem[len(key) :].strip("_").replace("_", " "))
            page.add(f"## {title}" + (f" ({suffix})" if suffix else ""), "")
            environment(page, data, [f"{s}.json" for s in sources[stem]])
            renderer(page, stem, data)
    if merged_into:
        page.add(
            "Parts of a merged result, rendered with it: "
            + ", ".join(f"`{part}.json` (in `{whole}.json`)" for part, whole in sorted(merged_into.items()))
            + ".",
            "",
        )
    if quick:
        page.add(
            "Smoke runs (`--quick`, `*_smoke`), not rendered: " + ", ".join(f"`{stem}.json`" for stem in quick) + ".",
            "",
        )
    out.write_text("\n".join(page.lines).rstrip() + "\n")
    return list(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmark_results.md")
    parser.add_argument("--img-dir", type=Path, default=ROOT / "docs" / "img" / "results")
    args = parser.parse_args(argv)
    rendered = render(args.results, args.out, args.img_dir)
    print(f"rendered {len(rendered)} result files into {args.out} and {args.img_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
