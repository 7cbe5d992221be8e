"""Peak memory of the streaming fit against the in-memory fit when the rows grow 10x.

Synthetic click / purchase rows (6 numeric columns, 3 categorical ones with 10, 100 and
1,000 categories) are written to Parquet part files of 100,000 rows. For each size, a fresh
Python process trains a small ``MMoEClassifier`` for one epoch and reports its peak resident
memory (``ru_maxrss``) and the memory after imports, so each measurement starts from the
same state:

- ``streaming``: :func:`sklearn_mtr.streaming.fit_streaming` reading ``--batch-rows`` rows
  at a time with pyarrow, categories declared up front with ``scan_categories``;
- ``in_memory``: ``pandas.read_parquet`` of every file, then ``fit`` (one epoch).

The streaming peak should stay flat when the rows grow 10x; the in-memory one grows with
the data. Run ``python benchmarks/streaming_memory.py`` (100,000 and 1,000,000 rows) or
``--quick`` (10,000 and 100,000). Writes ``benchmarks/results/streaming_memory.json``
(``streaming_memory_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
import numpy as np
import pandas as pd

PART_ROWS = 100_000
CARDINALITIES = {"cat_a": 10, "cat_b": 100, "cat_c": 1000}
MODEL = {"n_experts": 4, "expert_hidden_sizes": (64,), "tower_hidden_sizes": (16,), "embedding_dim": 8}
# early_stopping explicit: "auto" would hold out rows in the in-memory fit above 10,000 rows.
TRAIN = {"batch_size": 2048, "lr": 1e-3, "max_epochs": 1, "early_stopping": False, "random_state": 0}


def write_parts(folder: Path, n_rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i, start in enumerate(range(0, n_rows, PART_ROWS)):
        n = min(PART_ROWS, n_rows - start)
        frame = pd.DataFrame({f"num_{j}": rng.normal(size=n).astype(np.float32) for j in range(6)})
        logit = frame["num_0"].to_numpy() - 0.5 * frame["num_1"].to_numpy()
        for name, card in CARDINALITIES.items():
            codes = rng.integers(0, card, size=n)
            frame[name] = pd.Series([f"{name}_{c}" for c in codes], dtype="str")
            logit = logit + (codes % 7 - 3) / 6
        click = (logit + rng.normal(size=n) > 0).astype(np.float32)
        frame["click"] = click
        frame["buy"] = (click * (frame["num_2"].to_numpy() + rng.normal(size=n) > 1)).astype(np.float32)
        frame.to_parquet(folder / f"part{i:04d}.parquet", index=False)


def child(mode: str, folder: str, batch_rows: int) -> dict:
    import resource

    import torch

    from sklearn_mtr import MMoEClassifier
    from sklearn_mtr.streaming import fit_streaming, scan_categories

    torch.set_num_threads(1)
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    clf = MMoEClassifier(**MODEL, **TRAIN)
    dtypes = scan_categories(folder, list(CARDINALITIES))
    if mode == "streaming":
        fit_streaming(clf, folder, ["click", "buy"], epochs=1, batch_rows=batch_rows, dtypes=dtypes)
    else:
        data = pd.read_parquet(folder).astype(dtypes)
        clf.fit(data.drop(columns=["click", "buy"]), data[["click", "buy"]])
    seconds = time.perf_counter() - start
    import pyarrow.parquet as pq

    n_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in sorted(Path(folder).glob("*.parquet")))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "mode": mode,
        "rows": n_rows,
        "peak_rss_mib": peak_kb / 1024,
        "rss_after_imports_mib": base_kb / 1024,
        "peak_above_imports_mib": (peak_kb - base_kb) / 1024,
        "seconds": seconds,
        "rows_per_second": n_rows / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 and 100,000 rows")
    parser.add_argument("--batch-rows", type=int, default=50_000, help="rows per streamed chunk")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.batch_rows)))
        return

    sizes = [10_000, 100_000] if args.quick else [100_000, 1_000_000]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_rows in sizes:
            folder = Path(tmp) / f"rows{n_rows}"
            folder.mkdir()
            write_parts(folder, n_rows)
            for mode in ("streaming", "in_memory"):
                out = subprocess.run(
                    [sys.executable, __file__, "--batch-rows", str(args.batch_rows), "--child", mode, str(folder)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                run = json.loads(out.stdout.strip().splitlines()[-1])
                runs.append(run)
                print(
                    f"{mode:>10} {run['rows']:>9} rows: peak RSS {run['peak_rss_mib']:7.1f} MiB "
                    f"({run['peak_above_imports_mib']:6.1f} above imports), {run['rows_per_second']:8.0f} rows/s"
                )

    def growth(mode):
        peaks = [r["peak_above_imports_mib"] for r in runs if r["mode"] == mode]
        return peaks[-1] / peaks[0]

    payload = {
        "config": {
            "sizes": sizes,
            "part_rows": PART_ROWS,
            "batch_rows": args.batch_rows,
            "model": MODEL,
            "train": TRAIN,
            "cardinalities": CARDINALITIES,
            "quick": args.quick,
            "measure": "ru_maxrss of a fresh process per (mode, size); 'above imports' subtracts its RSS after imports",
        },
        "runs": runs,
        "peak_above_imports_growth_10x_rows": {"streaming": growth("streaming"), "in_memory": growth("in_memory")},
    }
    path = _common.write_results("streaming_memory" + ("_quick" if args.quick else ""), payload)
    print(f"growth of the peak above imports for 10x rows: {payload['peak_above_imports_growth_10x_rows']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
