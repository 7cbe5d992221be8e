"""Training-step time of every ``optimizer=`` method relative to equal weights ("adam").

For each number of tasks T (2, 4, 8 by default) one ``MMoEClassifier`` per registered method
is fitted for one epoch (warm-up: module, torch optimizer and method state built, first
steps taken) on the same synthetic data (``make_multitask_classification``, 8192 rows,
16 numeric features). The data are then encoded once into a ``TaskDataset`` and cut into
batches by ``clf.net_.get_iterator(dataset, training=True)``; every method then times
``clf.net_.train_step(batch)`` on those same pre-built batches. Methods are interleaved: in
each round every method (in a shuffled order) takes ``--steps`` steps, so the noise of a
shared machine hits all of them alike. Reported per method: the median milliseconds per
step over rounds, the ratio of medians to "adam" and the median of the per-round ratios
(more robust on a noisy machine), and the ratio of the fastest rounds (the least
disturbed by other load).

A second block times the default-size MMoE (8 experts of [256, 128], towers [64]) at T = 2
for "adam", "pub" and "drgrad". The issue's targets are printed next to the ratios (PUB at
most 1.15x equal weights at T = 2, DRGrad at most 1.1x; issue 17); nothing is asserted. PUB runs
its defaults: one backward pass between weight refreshes, ``T`` at a refresh (every 10 steps).

Run ``python benchmarks/optimizer_step_time.py`` (full, a few minutes) or ``--quick``.
Writes ``benchmarks/results/optimizer_step_time.json`` (``..._quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import warnings

import _common
import numpy as np
import torch

TARGETS = {"pub": 1.15, "drgrad": 1.1}  # at T = 2, relative to "adam" (issue 17)

SMALL = {"n_experts": 4, "expert_hidden_sizes": (64, 32), "tower_hidden_sizes": (16,)}
DEFAULT = {"n_experts": 8, "expert_hidden_sizes": (256, 128), "tower_hidden_sizes": (64,)}


def all_methods() -> list[str]:
    from sklearn_mtr.optim import OPTIMIZERS

    # "ew" is an alias of "adam": time it once.
    return ["adam"] + [m for m in OPTIMIZERS if m not in ("adam", "ew")]


def build(method: str, arch: dict, X, Y, batch_size: int, seed: int):
    """A fitted (one warm-up epoch) estimator and the pre-built training batches."""
    from sklearn_mtr import MMoEClassifier
    from sklearn_mtr._batches import TaskDataset

    clf = MMoEClassifier(
        **arch,
        optimizer=method,
        batch_size=batch_size,
        max_epochs=1,
        early_stopping=False,
        random_state=seed,
        device="cpu",
        verbose=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, Y)
    frame = clf._validate_X(X, reset=False)
    dataset = TaskDataset(clf.feature_encoder_.transform(frame), torch.from_numpy(np.asarray(Y, dtype=np.float32)))
    batches = list(clf.net_.get_iterator(dataset, training=True))
    return clf, batches


def time_steps(clf, batches, start: int, n_steps: int) -> float:
    """Seconds per step over ``n_steps`` consecutive ``train_step`` calls."""
    net = clf.net_
    t0 = time.perf_counter()
    for i in range(n_steps):
        net.train_step(batches[(start + i) % len(batches)])
    return (time.perf_counter() - t0) / n_steps


def measure(methods, arch, X, Y, batch_size, rounds, steps, seed, label) -> dict:
    models = {}
    for m in methods:
        t0 = time.perf_counter()
        models[m] = build(m, arch, X, Y, batch_size, seed)
        print(f"  [{label}] built + warm-up fit {m:>9}: {time.perf_counter() - t0:6.1f} s", flush=True)
    # one more untimed pass over a few steps each
    for m in methods:
        time_steps(*models[m], 0, 2)
    per_step = {m: [] for m in methods}
    rng = np.random.RandomState(seed)
    for r in range(rounds):
        order = list(methods)
        rng.shuffle(order)
        for m in order:
            gc.collect()
            per_step[m].append(time_steps(*models[m], r * steps, steps))
    ms = {m: [1000 * s for s in v] for m, v in per_step.items()}
    median = {m: statistics.median(v) for m, v in ms.items()}
    out = {}
    for m in methods:
        out[m] = {
            "median_ms_per_step": median[m],
            "ms_per_step": _common.summary(ms[m]),
            "ratio_to_adam": median[m] / median["adam"],
            "ratio_to_adam_median_of_rounds": statistics.median(a / b for a, b in zip(ms[m], ms["adam"])),
            "min_ms_per_step": min(ms[m]),
            "ratio_to_adam_of_minimums": min(ms[m]) / min(ms["adam"]),
        }
    n_params = {m: int(sum(p.numel() for p in models[m][0].net_.module_.parameters())) for m in methods}
    for m in methods:
        out[m]["module_parameters"] = n_params[m]
    return out


def table(res: dict, n_tasks: int | None = None) -> tuple[list[str], list[list[str]]]:
    header = [
        "method",
        "median ms / step",
        "× adam (ratio of medians)",
        "× adam (median of per-round ratios)",
        "× adam (ratio of fastest rounds)",
        "target (T = 2)",
    ]
    rows = []
    for m, v in res.items():
        target = ""
        if m in TARGETS and n_tasks == 2:
            ok = v["ratio_to_adam_median_of_rounds"] <= TARGETS[m]
            target = f"≤ {TARGETS[m]}× ({'met' if ok else 'NOT met'})"
        rows.append(
            [
                m,
                f"{v['median_ms_per_step']:.2f}",
                f"{v['ratio_to_adam']:.2f}",
                f"{v['ratio_to_adam_median_of_rounds']:.2f}",
                f"{v['ratio_to_adam_of_minimums']:.2f}",
                target,
            ]
        )
    return header, rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: T=2 only, 3 rounds, 2 methods + pub/drgrad")
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=21, help="interleaved rounds (default 21)")
    parser.add_argument("--steps", type=int, default=16, help="train_step calls per method per round (default 16)")
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--no-default-size", action="store_true", help="skip the default-size MMoE block")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    methods = args.methods or all_methods()
    if "adam" not in methods:
        methods = ["adam", *methods]
    tasks, rounds, steps = args.tasks, args.rounds, args.steps
    if args.quick:
        tasks, rounds, steps = [2], 3, 4
        methods = [m for m in methods if m in ("adam", "pub", "drgrad", "pcgrad")]
    name = args.output or ("optimizer_step_time_quick" if args.quick else "optimizer_step_time")

    from sklearn_mtr.datasets import make_multitask_classification

    t_start = time.perf_counter()
    result = {
        "config": {
            "rows": args.rows,
            "n_features": 16,
            "batch_size": args.batch_size,
            "rounds": rounds,
            "steps_per_round": steps,
            "torch_threads": args.threads,
            "tasks": tasks,
            "methods": methods,
            "small_mmoe": SMALL,
            "default_mmoe": DEFAULT,
            "timed": "clf.net_.train_step(batch) on batches pre-built by clf.net_.get_iterator(dataset, training=True), "
            "after a one-epoch warm-up fit; methods interleaved in a shuffled order every round",
            "targets_at_T2": TARGETS,
            "quick": args.quick,
        },
        "small": {},
        "default_size_T2": None,
    }
    for T in tasks:
        X, Y = make_multitask_classification(args.rows, 16, T, task_correlation=0.5, random_state=0)
        print(f"T = {T}: {len(methods)} methods, {rounds} rounds x {steps} steps", flush=True)
        res = measure(methods, SMALL, X, Y, args.batch_size, rounds, steps, 0, f"T={T}")
        result["small"][str(T)] = res
        header, rows = table(res, T)
        print(f"\nMMoE 4 experts (64, 32), towers (16,), T = {T}, batch {args.batch_size}:")
        print(_common.markdown_table(header, rows), "\n", flush=True)
        _common.write_results(name, result)

    if not args.no_default_size:
        dm = [m for m in ("adam", "pub", "drgrad") if m in methods]
        X, Y = make_multitask_classification(args.rows, 16, 2, task_correlation=0.5, random_state=0)
        print(f"default-size MMoE, T = 2: {dm}", flush=True)
        res = measure(dm, DEFAULT, X, Y, args.batch_size, rounds, steps, 0, "default")
        result["default_size_T2"] = res
        header, rows = table(res, 2)
        print(f"\nMMoE 8 experts (256, 128), towers (64,), T = 2, batch {args.batch_size}:")
        print(_common.markdown_table(header, rows), "\n", flush=True)

    result["wall_seconds"] = time.perf_counter() - t_start
    path = _common.write_results(name, result)
    print(f"wrote {path} ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
