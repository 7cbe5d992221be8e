"""The CLI demo (``python -m sklearn_mtr demo``) with 1 and 2 torch threads, interleaved.

Each round runs the demo once per thread count, in alternating order, as a fresh process
(``--threads N``, i.e. the estimators' ``n_threads``), and records the fit time the demo
prints, the process's wall time and the 1-minute load average before the run. The ratio of a
round is 2-thread fit time / 1-thread fit time; the summary is the median over rounds.

    python benchmarks/threads_demo.py --rounds 4      # -> benchmarks/results/threads_demo.json
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

import _common
import numpy as np


def run_demo(threads: int) -> dict:
    load = os.getloadavg()[0]
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_mtr", "demo", "--threads", str(threads)],
        cwd=_common.REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - start
    match = re.search(r"trained (\d+) epochs in ([\d.]+) s", result.stdout)
    return {
        "threads": threads,
        "fit_s": float(match.group(2)),
        "epochs": int(match.group(1)),
        "wall_s": round(wall, 2),
        "load1_before": round(load, 2),
        "mean_test_auc": float(result.stdout.strip().splitlines()[-1].split()[1]),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    runs, ratios = [], []
    for r in range(args.rounds):
        by_threads = {}
        for threads in (1, 2) if r % 2 == 0 else (2, 1):  # alternate who goes first
            row = {"round": r, **run_demo(threads)}
            print(row, flush=True)
            runs.append(row)
            by_threads[threads] = row["fit_s"]
        ratios.append(by_threads[2] / by_threads[1])
    fit = {t: [row["fit_s"] for row in runs if row["threads"] == t] for t in (1, 2)}
    payload = {
        "command": "python -m sklearn_mtr demo --threads N (20,000 rows, MMoE 4 experts of (64, 32), batch 512)",
        "runs": runs,
        "fit_s_1_thread": _common.summary(fit[1]),
        "fit_s_2_threads": _common.summary(fit[2]),
        "ratio_2_over_1_per_round": [round(x, 2) for x in ratios],
        "median_ratio_2_over_1": float(np.median(ratios)),
    }
    path = _common.write_results("threads_demo", payload)
    print(f"median fit-time ratio 2 threads / 1 thread: {payload['median_ratio_2_over_1']:.2f} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
