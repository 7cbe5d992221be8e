"""What transactional continuation costs: ``partial_fit`` with and without the state snapshot.

A continuation (``partial_fit``, a ``warm_start`` fit) copies the net's training state to the
CPU before it trains (``sklearn_mtr._snapshot.NetSnapshot``: weights, buffers, optimizer and
method state), so that a failure can put it back. The copy is paid once per call, so its
relative cost is largest for the smallest calls: one epoch on a small chunk. This script
times that case.

Three arms, each its own estimator fitted identically (one first epoch, same seed), then
``--calls`` ``partial_fit`` calls per arm and round, the arms interleaved in a rotating order
within each round (the machine's load changes between rounds, not within one):

- ``snapshot``: the estimator as shipped;
- ``no_snapshot``: the baseline, ``NetSnapshot`` replaced by a class that copies nothing
  (the behaviour before transactional continuation);
- ``control``: a second ``snapshot`` arm, the null control: its ratio to ``snapshot`` shows
  what this protocol resolves.

Reported: per round the ratio of the arms' total seconds; the geometric mean over rounds of
``snapshot / no_snapshot`` and of ``control / snapshot`` with 95 % t-intervals (on log
ratios, rounds paired); the snapshot's own seconds, timed alone in each round (as many as an
arm takes), as a share of the baseline's seconds in that round (a less noisy estimate of the
same overhead on a shared machine); and the snapshot's size.

Run ``python benchmarks/continuation_snapshot.py`` (about two minutes on one thread);
writes ``benchmarks/results/continuation_snapshot.json``.
"""

from __future__ import annotations

import argparse
import time

import _common
import numpy as np
import torch
from scipy import stats


class _NoSnapshot:
    """Copies nothing and restores nothing: the baseline before transactional continuation."""

    def __init__(self, net):
        pass

    def restore(self, net) -> None:
        pass


def log_ratio_interval(ratios) -> dict:
    """Geometric mean of paired ratios with its 95 % t-interval (computed on the logs)."""
    logs = np.log(np.asarray(ratios, float))
    half = stats.t.ppf(0.975, logs.size - 1) * logs.std(ddof=1) / np.sqrt(logs.size)
    return {
        "geometric_mean": float(np.exp(logs.mean())),
        "low": float(np.exp(logs.mean() - half)),
        "high": float(np.exp(logs.mean() + half)),
        "n_rounds": int(logs.size),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=3, help="partial_fit calls per arm and round")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import sklearn_mtr._fitting as base
    from sklearn_mtr import MMoEClassifier
    from sklearn_mtr._snapshot import NetSnapshot
    from sklearn_mtr.datasets import make_multitask_classification

    X, Y = make_multitask_classification(
        n_samples=args.rows, n_features=16, n_categorical=4, as_frame=True, random_state=0
    )
    # The estimator's default architecture (8 experts of (256, 128), towers of (64,)).
    params = {"batch_size": args.batch_size, "max_epochs": 1, "random_state": 0, "n_threads": args.threads}
    arms = ["snapshot", "no_snapshot", "control"]
    clfs = {arm: MMoEClassifier(**params).fit(X, Y) for arm in arms}
    snapshot_class = {"snapshot": NetSnapshot, "no_snapshot": _NoSnapshot, "control": NetSnapshot}

    def timed(arm: str) -> float:
        base.NetSnapshot = snapshot_class[arm]
        try:
            start = time.perf_counter()
            for _ in range(args.calls):
                clfs[arm].partial_fit(X, Y)
            return time.perf_counter() - start
        finally:
            base.NetSnapshot = NetSnapshot

    def snapshot_time() -> float:
        start = time.perf_counter()
        for _ in range(args.calls):
            NetSnapshot(clfs["snapshot"].net_)
        return time.perf_counter() - start

    for arm in arms:  # warm-up, not recorded
        timed(arm)
    rounds = []
    for r in range(args.rounds):
        order = arms[r % 3 :] + arms[: r % 3]
        rounds.append({arm: timed(arm) for arm in order})
        rounds[-1]["snapshots_alone"] = snapshot_time()  # as many snapshots as an arm takes in a round
        print(f"round {r + 1}: " + ", ".join(f"{a} {t:.3f}s" for a, t in rounds[-1].items()), flush=True)

    net = clfs["snapshot"].net_
    snap = NetSnapshot(net)
    snapshot_seconds = float(np.median([r["snapshots_alone"] for r in rounds])) / args.calls
    n_bytes = sum(t.numel() * t.element_size() for m in snap.modules for _, t in m.tensors) + sum(
        v.numel() * v.element_size()
        for _, state in snap.optimizers
        for s in state["state"].values()
        for v in s.values()
        if torch.is_tensor(v)
    )
    overhead = log_ratio_interval([r["snapshot"] / r["no_snapshot"] for r in rounds])
    control = log_ratio_interval([r["control"] / r["snapshot"] for r in rounds])
    # The snapshot's own share of a call, timed alone in the same rounds: less noisy than the
    # difference of two whole arms on a shared machine.
    direct = log_ratio_interval([1 + r["snapshots_alone"] / r["no_snapshot"] for r in rounds])
    per_call = float(np.median([r["no_snapshot"] for r in rounds])) / args.calls
    payload = {
        "setup": {
            "model": "MMoEClassifier, default architecture",
            "rows": args.rows,
            "batch_size": args.batch_size,
            "steps_per_call": -(-args.rows // args.batch_size),
            "calls_per_arm_and_round": args.calls,
            "threads": args.threads,
            "n_parameters": sum(p.numel() for p in net.module_.parameters()),
        },
        "snapshot_over_no_snapshot": overhead,
        "control_over_snapshot": control,
        "one_plus_snapshot_share_timed_alone": direct,
        "median_seconds_per_call_no_snapshot": per_call,
        "snapshot_seconds": snapshot_seconds,
        "snapshot_megabytes": n_bytes / 2**20,
        "rounds": rounds,
    }
    path = _common.write_results("continuation_snapshot", payload)
    print(
        f"snapshot / no_snapshot: {overhead['geometric_mean']:.4f} [{overhead['low']:.4f}, {overhead['high']:.4f}]; "
        f"control / snapshot: {control['geometric_mean']:.4f} [{control['low']:.4f}, {control['high']:.4f}]; "
        f"1 + snapshot share timed alone: {direct['geometric_mean']:.4f} [{direct['low']:.4f}, {direct['high']:.4f}]; "
        f"snapshot {snapshot_seconds * 1e3:.2f} ms, {n_bytes / 2**20:.2f} MiB; a call {per_call * 1e3:.0f} ms"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
