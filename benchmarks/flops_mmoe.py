"""FLOP/s of MMoE training at batch 2048 against this machine's measured matmul peak.

The model is the throughput benchmark's MMoE (8 experts of [256, 128], towers [64],
embeddings 16) on Census-Income rows, one torch thread. Measured, in interleaved rounds:

- ``peak``: the best FLOP/s of a single-thread ``float32`` matrix multiplication over a few
  square sizes (``2 n^3`` FLOPs per product) — what the machine's BLAS can reach;
- ``ours``: training steps of the fitted estimator's own net (``net_.train_step``: forward,
  masked per-task losses, the multi-task method's backward, Adam) on batches sliced from the
  encoded tensors, as ``fit`` runs them;
- ``plain``: the same module in a hand-written loop (forward, BCE, backward, Adam).

FLOPs per step are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one step
(forward and backward matrix multiplications; element-wise work and the optimizer are not
counted, so the ratio is a lower bound of the arithmetic done). Reported: achieved FLOP/s and
its ratio to the peak, per contender (medians over rounds, and the median over rounds of
each round's ratio, which is less sensitive to other jobs on a shared machine).

Run ``python benchmarks/flops_mmoe.py`` (``--rounds``, ``--steps``). Needs the Census files
(``../shared/data/census_income_kdd``). Writes ``benchmarks/results/flops_mmoe.json``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import _common
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

CONFIG = {"n_experts": 8, "expert_hidden_sizes": (256, 128), "tower_hidden_sizes": (64,), "embedding_dim": 16}
BATCH = 2048
TASKS = ["income", "never_married"]
SIZES = (1024, 2048, 3072)


def matmul_peak(repeats: int = 3) -> dict:
    best = {}
    for n in SIZES:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)  # warm up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
        best[n] = 2 * n**3 / min(times)
    return best


def setup(n_rows: int):
    from sklearn_mtr import MMoEClassifier
    from sklearn_mtr.datasets import load_census_income

    data = load_census_income(_common.census_dir())
    X, Y = data.X_train.iloc[:n_rows], data.Y_train[TASKS].iloc[:n_rows]
    clf = MMoEClassifier(
        **CONFIG, batch_size=BATCH, lr=1e-3, max_epochs=1, early_stopping=False, random_state=0, device="cpu"
    )
    clf.fit(X.iloc[: 2 * BATCH], Y.iloc[: 2 * BATCH])  # builds the net; the steps are timed below
    encoded = clf.feature_encoder_.transform(clf._validate_X(X, reset=False))
    y = torch.from_numpy(Y.to_numpy(dtype=np.float32, copy=True))
    return clf, encoded, y


def batches(encoded, y, steps: int, seed: int):
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    for i in range(steps):
        idx = order[(i * BATCH) % (len(y) - BATCH) :][:BATCH]
        yield {k: v[idx] for k, v in encoded.items()}, y[idx]


def step_ours(net):
    def step(X, y):
        net.train_step((X, (y, None)))

    return step


def step_plain(module):
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)

    def step(X, y):
        module.train()
        optimizer.zero_grad(set_to_none=True)
        out = module(X)
        logits = out[0] if isinstance(out, tuple) else out
        F.binary_cross_entropy_with_logits(logits, y).backward()
        optimizer.step()

    return step


def time_steps(step, encoded, y, steps: int, seed: int) -> float:
    data = list(batches(encoded, y, steps + 2, seed))
    for X, yb in data[:2]:  # warm up
        step(X, yb)
    start = time.perf_counter()
    for X, yb in data[2:]:
        step(X, yb)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per contender and round")
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    torch.set_num_threads(1)

    clf, encoded, y = setup(args.rows)
    net = clf.net_
    plain_module = copy.deepcopy(net.module_)
    X0, y0 = next(batches(encoded, y, 1, 0))
    with FlopCounterMode(display=False) as counter:
        step_plain(copy.deepcopy(plain_module))(X0, y0)
    flops_per_step = counter.get_total_flops()

    steps = {"ours": step_ours(net), "plain": step_plain(plain_module)}
    seconds = {name: [] for name in steps}
    peaks = []
    for r in range(args.rounds):
        peaks.append(max(matmul_peak().values()))
        for name, step in steps.items():
            seconds[name].append(time_steps(step, encoded, y, args.steps, seed=r))
        print(
            f"round {r}: peak {peaks[-1] / 1e9:6.1f} GFLOP/s, "
            + ", ".join(f"{n} {flops_per_step / s[-1] / 1e9:6.1f} GFLOP/s" for n, s in seconds.items())
        )
    peak = statistics.median(peaks)
    achieved = {name: flops_per_step / statistics.median(s) for name, s in seconds.items()}
    payload = {
        "config": {**CONFIG, "batch_size": BATCH, "rounds": args.rounds, "steps": args.steps, "rows": args.rows},
        "flops_per_step": flops_per_step,
        "flops_per_sample": flops_per_step / BATCH,
        "matmul_peak_flops": {"median_over_rounds": peak, "per_round": peaks, "sizes": list(SIZES)},
        "seconds_per_step": {name: _common.summary(s) for name, s in seconds.items()},
        "achieved_flops": achieved,
        "ratio_to_peak": {name: a / peak for name, a in achieved.items()},
        # robust to the load of a shared machine: each round's steps against that round's peak
        "ratio_to_peak_median_of_rounds": {
            name: statistics.median(flops_per_step / t / p for t, p in zip(s, peaks)) for name, s in seconds.items()
        },
        "samples_per_second": {name: BATCH / statistics.median(s) for name, s in seconds.items()},
        "note": "FLOPs: forward+backward matmuls counted by FlopCounterMode (element-wise work and Adam not counted)",
    }
    path = _common.write_results("flops_mmoe", payload)
    print(
        f"peak {peak / 1e9:.1f} GFLOP/s; "
        + ", ".join(f"{n}: {a / 1e9:.1f} GFLOP/s = {a / peak:.0%} of peak" for n, a in achieved.items())
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
