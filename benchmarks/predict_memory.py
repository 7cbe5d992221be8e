"""Peak memory of ``predict_proba`` against the number of rows predicted.

A small ``MMoEClassifier`` (4 experts of [64], towers [16], embeddings of 8) is fitted on
20,000 synthetic rows; then each configuration runs in a fresh child process, which builds
``rows`` narrow rows (4 float64 numeric columns and 2 categorical columns of 1,000 and 100
categories, pandas ``category`` dtype) and calls ``predict_proba`` once. The child reads its
resident set size from ``/proc/self/status`` just before the call (``VmRSS``), resets the
peak (``/proc/self/clear_refs``) and reads the peak after the call (``VmHWM``). Reported per
configuration: the input's and the output's sizes, the memory the call added on top of the
input (peak minus the RSS before the call), and predict throughput.

Two modes: ``chunked`` (the library as it is: rows are encoded and predicted 65,536 at a
time) and ``unchunked`` (the whole input encoded at once, as before the chunking), so the
bound is visible next to what it replaced.

Run ``nice -n 10 python benchmarks/predict_memory.py`` (1M and 10M rows, a few minutes on
one thread) or ``--rows 100000 1000000`` for a quick look. Writes
``benchmarks/results/predict_memory.json``. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

MODEL = {
    "n_experts": 4,
    "expert_hidden_sizes": (64,),
    "tower_hidden_sizes": (16,),
    "embedding_dim": 8,
    "batch_size": 1024,
    "max_epochs": 1,
    "early_stopping": False,  # explicit: "auto" would hold out rows above 10,000
    "random_state": 0,
}


def _frame(n: int, seed: int):
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            **{f"x{j}": rng.standard_normal(n) for j in range(4)},
            "item": pd.Categorical.from_codes(rng.integers(0, 1000, n), categories=[f"i{k}" for k in range(1000)]),
            "shop": pd.Categorical.from_codes(rng.integers(0, 100, n), categories=[f"s{k}" for k in range(100)]),
        }
    )


def _mib(kib: int) -> float:
    return round(kib / 1024, 1)


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])  # kB
    raise RuntimeError(f"{key} not in /proc/self/status")


def child(rows: int, mode: str) -> dict:
    import torch

    torch.set_num_threads(1)
    import sklearn_mtr._prediction as base
    from sklearn_mtr import MMoEClassifier

    X_train = _frame(20_000, 0)
    Y_train = (X_train[["x0", "x1"]].to_numpy() + np.random.default_rng(1).standard_normal((20_000, 2)) > 0).astype(int)
    clf = MMoEClassifier(**MODEL).fit(X_train, Y_train)
    if mode == "unchunked":
        base._PREDICT_CHUNK = 1 << 62
    X = _frame(rows, 2)
    del X_train, Y_train
    gc.collect()
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    start = time.perf_counter()
    proba = clf.predict_proba(X)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    return {
        "rows": rows,
        "mode": mode,
        "input_mib": round(X.memory_usage(deep=True).sum() / 2**20, 1),
        "output_mib": round(proba.nbytes / 2**20, 1),
        "rss_before_mib": _mib(before),
        "peak_rss_mib": _mib(peak),
        "added_by_predict_mib": _mib(peak - before),
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--modes", nargs="+", default=["chunked", "unchunked"], choices=["chunked", "unchunked"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="predict_memory")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.rows[0], args.modes[0])))
        return
    runs = []
    for rows in args.rows:
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--child", "--rows", str(rows), "--modes", mode]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
            print(runs[-1], flush=True)
    payload = {
        "description": "peak RSS added by one predict_proba call vs rows, chunked (65,536 rows) and unchunked",
        "model": {k: list(v) if isinstance(v, tuple) else v for k, v in MODEL.items()},
        "columns": "4 float64 numeric + 2 pandas category columns (1,000 and 100 categories)",
        "torch_threads": 1,
        "runs": runs,
    }
    path = _common.write_results(args.out, payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
