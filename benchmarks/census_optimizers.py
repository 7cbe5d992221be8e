"""Every ``optimizer=`` method on Census-Income (KDD) with MMoE and PLE: per-task test AUC over seeds.

Issue 3, benchmark 1. Data, models and epoch selection are those of
``census_baselines.py`` (imported, not copied): the MMoE-paper split (official train file,
199,523 rows; the official test file halved into validation and test), tasks ``income`` and
``never_married``, embeddings of 16, MMoE with 8 experts of (256, 128) and PLE with 2 levels
of 2 task + 2 shared experts of (256, 128), towers of (64,). Each epoch is one
``partial_fit`` over the whole training set; the weights of the epoch with the best mean
validation AUC are kept; the test set is only used for the final numbers.

**Reduced protocol.** The full ``census_baselines.py`` protocol (all 199,523 training rows,
batch 512, lr 1e-3, up to 5 epochs) costs about 3.5 CPU-minutes per MMoE fit with equal
weights on one thread, and up to 1.8x that for the methods with one backward pass per task:
12 methods x 2 architectures x 5 seeds would be about 10 CPU-hours, on a 2-core machine
shared with other jobs. The defaults here keep the models, batch size (512) and learning
rate (1e-3) and cut the data and the epochs: a fixed random subsample of 50,000 training
rows (``--train-rows``) and of 10,000 validation rows (``--valid-rows``), the full test half
(49,881 rows), at most 2 epochs (``--max-epochs``) with the epoch chosen on validation
(patience 1). The subsamples are the same for every method and seed. Absolute AUCs are
therefore below the full protocol's (``census_baselines.json``); the question answered is
how the methods compare with equal weights under one identical, small budget. The protocol
is written to the JSON's ``config``.

Methods: the keys of ``sklearn_mtr.optim.OPTIMIZERS`` with aliases removed ("adam" is "ew"),
each with its defaults; DRGrad in its paper's ``"split"`` mode (the primary task is
``income``, task 0), which MMoE and PLE support. Null control: ``ew_half``, equal weights
0.5 / 0.5 instead of 1 / 1 (Adam is invariant to the loss scale, so only rounding that
training amplifies can move it); its paired interval is the protocol's resolution.

``PROTOCOL_VERSION`` is part of the protocol written to the JSON, so runs of an older
version (other estimator defaults) are never merged with new ones; it was raised to 2 when
the estimators' defaults changed (weight averaging, piecewise numeric encoding).

Loop order: architecture, then seed, then method, so that a partial run already has every
method at the first seeds. After every fit the JSON is rewritten
(``benchmarks/results/census_optimizers.json``) under a file lock, merged with what is
already there for the same protocol; a (architecture, method, seed) already in it is skipped.
So a run can be resumed, seeds added later (``--seeds 3 4``), and two processes can share the
file (for example one per architecture).

Run ``python benchmarks/census_optimizers.py --models MMoE PLE --seeds 0 1 2 --threads 1``;
``--quick`` is a smoke run (4,000 training rows, 1 epoch) written to
``census_optimizers_quick.json``; ``--table`` only prints the markdown table of an existing
JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import _common
import census_baselines as cb
import numpy as np
import torch

TASKS = cb.TASKS
MODELS = ["MMoE", "PLE"]

# Published AUCs, for context only: different data, models and protocols.
DRGRAD_CENSUS = {
    "source": "DRGrad (AAAI 2025, arXiv 2510.09643) Table 3, Census column (income / marital status); "
    "authors' own re-split of the full 299,285 rows; PCGrad, CAGrad, Nash-MTL, AdaTask and DRGrad rows "
    "on their MMoE-like backbone; DRGrad is 'w/o PPNet'",
    "rows": {
        "MMoE (ew)": {"income": 0.9387, "never_married": 0.9927},
        "PLE (ew)": {"income": 0.9522, "never_married": 0.9945},
        "pcgrad": {"income": 0.9506, "never_married": 0.9931},
        "cagrad": {"income": 0.9521, "never_married": 0.9929},
        "nash_mtl": {"income": 0.9534, "never_married": 0.9946},
        "adatask": {"income": 0.9532, "never_married": 0.9947},
        "drgrad": {"income": 0.9550, "never_married": 0.9949},
    },
}

# PUB (ICDM 2024) Table II, AliExpress, AUC (CTR, CTCVR) per country, mean of 5 seeds.
_PUB_COUNTRIES = ["US", "ES", "FR", "NL"]
_PUB_ROWS = {
    ("MMoE", "ew"): [0.7092, 0.8717, 0.7290, 0.8959, 0.7274, 0.8789, 0.7247, 0.8645],
    ("PLE", "ew"): [0.7071, 0.8732, 0.7306, 0.8930, 0.7297, 0.8780, 0.7233, 0.8639],
    ("MMoE", "mgda"): [0.7060, 0.8703, 0.7294, 0.8901, 0.7279, 0.8766, 0.7231, 0.8608],
    ("PLE", "mgda"): [0.7066, 0.8674, 0.7278, 0.8928, 0.7263, 0.8806, 0.7249, 0.8583],
    ("MMoE", "nash_mtl"): [0.7088, 0.8723, 0.7285, 0.8957, 0.7241, 0.8777, 0.7255, 0.8616],
    ("PLE", "nash_mtl"): [0.7067, 0.8719, 0.7292, 0.8929, 0.7228, 0.8794, 0.7262, 0.8642],
    ("MMoE", "imtl_g"): [0.7026, 0.8643, 0.7275, 0.8922, 0.7226, 0.8742, 0.7237, 0.8609],
    ("PLE", "imtl_g"): [0.7087, 0.8707, 0.7304, 0.8897, 0.7255, 0.8796, 0.7256, 0.8645],
    ("MMoE", "pcgrad"): [0.7092, 0.8684, 0.7301, 0.8915, 0.7278, 0.8788, 0.7244, 0.8620],
    ("PLE", "pcgrad"): [0.7101, 0.8634, 0.7295, 0.8930, 0.7264, 0.8792, 0.7266, 0.8623],
    ("MMoE", "cagrad"): [0.7080, 0.8720, 0.7296, 0.8934, 0.7257, 0.8784, 0.7232, 0.8575],
    ("PLE", "cagrad"): [0.7083, 0.8725, 0.7304, 0.8950, 0.7281, 0.8782, 0.7236, 0.8604],
    ("MMoE", "uw"): [0.7050, 0.8670, 0.7286, 0.8932, 0.7248, 0.8779, 0.7245, 0.8614],
    ("PLE", "uw"): [0.7061, 0.8670, 0.7291, 0.8932, 0.7258, 0.8784, 0.7241, 0.8622],
    ("MMoE", "famo"): [0.7085, 0.8626, 0.7295, 0.8941, 0.7239, 0.8709, 0.7266, 0.8596],
    ("PLE", "famo"): [0.7082, 0.8581, 0.7307, 0.8870, 0.7266, 0.8710, 0.7245, 0.8600],
    ("MMoE", "adatask"): [0.7095, 0.8688, 0.7306, 0.8917, 0.7249, 0.8776, 0.7241, 0.8627],
    ("PLE", "adatask"): [0.7083, 0.8650, 0.7315, 0.8929, 0.7249, 0.8790, 0.7237, 0.8613],
    # FR CTR of MMoE+PUB is printed "0.730"; the row's Avg implies about 0.7306.
    ("MMoE", "pub"): [0.7121, 0.8736, 0.7323, 0.8967, 0.7306, 0.8828, 0.7268, 0.8670],
    ("PLE", "pub"): [0.7142, 0.8726, 0.7318, 0.8965, 0.7307, 0.8847, 0.7266, 0.8691],
}
PUB_ALIEXPRESS = {
    "source": "PUB (ICDM 2024, arXiv 2410.05806) Table II, AliExpress, test AUC (CTR, CTCVR) per country, "
    "mean of 5 seeds; from the image in github.com/yjdy/Multitask-Optimization-Recommendation-Library. "
    "'avg' is (CTR + CTCVR) / 2 averaged over the four countries.",
    "rows": {
        f"{arch}/{method}": {
            **{
                f"{c}_{t}": vals[2 * i + j]
                for i, c in enumerate(_PUB_COUNTRIES)
                for j, t in enumerate(("ctr", "ctcvr"))
            },
            "avg": float(np.mean(vals)),
        }
        for (arch, method), vals in _PUB_ROWS.items()
    },
}


CONTROL = "ew_half"
PROTOCOL_VERSION = 2


def method_names() -> list[str]:
    """Registry keys without aliases: one name per class, the class name's when it is a key."""
    from sklearn_mtr.optim import OPTIMIZERS

    by_class: dict[type, list[str]] = {}
    for key, cls in OPTIMIZERS.items():
        by_class.setdefault(cls, []).append(key)
    return [cls.__name__.lower() if cls.__name__.lower() in keys else keys[0] for cls, keys in by_class.items()]


def protocol(args) -> dict:
    return {
        "version": PROTOCOL_VERSION,
        "train_rows": args.train_rows,
        "valid_rows": args.valid_rows,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "max_epochs": args.max_epochs,
        "patience": args.patience,
        "selection": "valid (census_baselines.fit_select_on_valid: best mean valid AUC over epochs)",
        "quick": args.quick,
    }


def run_one(model: str, method: str, seed: int, data, args) -> dict:
    torch.manual_seed(seed)
    est_args = SimpleNamespace(batch_size=args.batch_size, max_epochs=args.max_epochs, device=args.device)
    t0 = time.perf_counter()
    if method == CONTROL:
        clf = cb.make_estimator(model, seed, est_args, optimizer="ew", lr=args.lr, task_weights=[0.5] * len(TASKS))
    else:
        clf = cb.make_estimator(model, seed, est_args, optimizer=method, lr=args.lr)
    info = cb.fit_select_on_valid(clf, data, args.max_epochs, args.patience)
    fit_seconds = time.perf_counter() - t0
    auc, ll = cb._metrics(data.Y_test.to_numpy(), clf.predict_proba(data.X_test))
    out = {
        "model": model,
        "method": method,
        "seed": seed,
        "test_auc": auc,
        "test_log_loss": ll,
        "fit_seconds": fit_seconds,
        **info,
    }
    mixing = getattr(clf.net_.module_, "mixing", None)
    if mixing is not None:  # DRGrad split mode: final (mu', mu'')
        out["drgrad_mixing"] = [float(v) for v in mixing]
    return out


def summarise(runs: list[dict]) -> dict:
    """Per architecture and method: test AUC / log loss summaries and the paired gain over "ew"."""
    out: dict = {}
    for model in sorted({r["model"] for r in runs}):
        out[model] = {}
        by_method: dict[str, dict[int, dict]] = {}
        for r in runs:
            if r["model"] == model:
                by_method.setdefault(r["method"], {})[r["seed"]] = r
        ew = by_method.get("ew", {})
        for method, seeds in by_method.items():
            rs = [seeds[s] for s in sorted(seeds)]
            entry = {
                "seeds": sorted(seeds),
                "test_auc": {t: _common.summary([r["test_auc"][t] for r in rs]) for t in TASKS},
                "test_log_loss": {t: _common.summary([r["test_log_loss"][t] for r in rs]) for t in TASKS},
                "fit_seconds": _common.summary([r["fit_seconds"] for r in rs]),
                "best_epoch": [r["best_epoch"] for r in rs],
            }
            paired = [s for s in sorted(seeds) if s in ew]
            if method != "ew" and paired:
                entry["paired_gain_vs_ew"] = {
                    "seeds": paired,
                    **{
                        t: _common.summary([seeds[s]["test_auc"][t] - ew[s]["test_auc"][t] for s in paired])
                        for t in TASKS
                    },
                }
            out[model][method] = entry
    return out


def _signed(gain: dict | None, task: str) -> str:
    """``+0.0004 ± 0.0002`` (no std for a single seed; empty without a paired ``ew`` run)."""
    if gain is None:
        return ""
    stat = gain[task]
    return f"{stat['mean']:+.4f}" + (f" ± {stat['std']:.4f}" if stat["n"] > 1 else "")


def markdown(results: dict) -> str:
    header = [
        "arch",
        "method",
        "seeds",
        "income AUC",
        "never-married AUC",
        "Δ income vs ew (paired)",
        "Δ never-married vs ew",
        "fit s",
        "DRGrad paper Census (income / marital)",
        "PUB paper AliExpress avg AUC (Δ vs backbone)",
    ]
    rows = []
    for model, methods in results["summary"].items():
        order = [m for m in ["ew", *results["config"]["methods"]] if m in methods]
        for method in dict.fromkeys(order):
            s = methods[method]
            gain = s.get("paired_gain_vs_ew")
            drg_key = f"{model} (ew)" if method == "ew" else method
            drg = DRGRAD_CENSUS["rows"].get(drg_key)
            if method != "ew" and drg_key in DRGRAD_CENSUS["rows"] and model != "MMoE":
                drg = None  # the paper's method rows sit on its MMoE-like backbone
            pub = PUB_ALIEXPRESS["rows"].get(f"{model}/{method}")
            pub_ew = PUB_ALIEXPRESS["rows"][f"{model}/ew"]["avg"]
            rows.append(
                [
                    model,
                    method,
                    str(len(s["seeds"])),
                    _common.mean_std(s["test_auc"]["income"]["values"]),
                    _common.mean_std(s["test_auc"]["never_married"]["values"]),
                    _signed(gain, "income"),
                    _signed(gain, "never_married"),
                    f"{s['fit_seconds']['mean']:.0f}",
                    "" if drg is None else f"{drg['income']:.4f} / {drg['never_married']:.4f}",
                    "" if pub is None else f"{pub['avg']:.4f} ({pub['avg'] - pub_ew:+.4f})",
                ]
            )
    return _common.markdown_table(header, rows)


@contextlib.contextmanager
def _locked(path):
    """An exclusive lock beside the JSON, so that processes running other models or seeds can share it."""
    # in the temp folder, so that no lock file lands among the results
    lock = Path(tempfile.gettempdir()) / f"sklearn_mtr_{path.stem}.lock"
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _merged_runs(path, proto: dict, runs: list[dict], failures: list[dict]) -> tuple[list[dict], list[dict]]:
    """This process's runs united with those in the JSON written with the same protocol (by model,
    method and seed; the file's copy wins, runs are never repeated on purpose)."""
    key = lambda r: (r["model"], r["method"], r["seed"])
    merged = {key(r): r for r in runs}
    fails = {key(f): f for f in failures}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("config", {}).get("protocol") == proto:
            merged.update({key(r): r for r in old.get("runs", [])})
            fails.update({key(f): f for f in old.get("failures", [])})
    return list(merged.values()), [f for k, f in fails.items() if k not in merged]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method, aliases removed")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=MODELS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seed values (default 0 1 2)")
    parser.add_argument(
        "--train-rows", type=int, default=50_000, help="random training subsample, 0 = all 199,523 (default 50,000)"
    )
    parser.add_argument(
        "--valid-rows", type=int, default=10_000, help="random validation subsample, 0 = all 49,881 (default 10,000)"
    )
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-epochs", type=int, default=2)
    parser.add_argument("--patience", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4,000 train rows, 2,000 valid/test, 1 epoch")
    parser.add_argument("--output", default=None, help="results name (default census_optimizers[_quick])")
    parser.add_argument("--table", action="store_true", help="only print the table of the existing JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.max_epochs = 1
    name = args.output or ("census_optimizers_quick" if args.quick else "census_optimizers")
    path = _common.RESULTS_DIR / f"{name}.json"
    if args.table:
        print(markdown(json.loads(path.read_text())))
        return 0
    torch.set_num_threads(args.threads)
    all_methods = [*method_names(), CONTROL]
    methods = args.methods or all_methods
    unknown = sorted(set(methods) - set(all_methods))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {all_methods}")

    # Resume / run side by side: the JSON is the shared record (see _merged_runs).
    runs, failures = _merged_runs(path, protocol(args), [], [])
    if path.is_file() and not runs:
        print(f"{path} holds no run of this protocol: its runs will be replaced", flush=True)

    from sklearn_mtr.datasets import load_census_income

    data = load_census_income(_common.census_dir())
    if args.quick:
        for part, n in (("train", 4000), ("valid", 2000), ("test", 2000)):
            data[f"X_{part}"] = cb.subsample(data[f"X_{part}"], n)
            data[f"Y_{part}"] = cb.subsample(data[f"Y_{part}"], n)
    else:
        for part, n in (("train", args.train_rows), ("valid", args.valid_rows)):
            if n:  # the same rows for every method and seed (subsample's seed 0)
                data[f"X_{part}"] = cb.subsample(data[f"X_{part}"], n)
                data[f"Y_{part}"] = cb.subsample(data[f"Y_{part}"], n)
    for part in ("train", "valid", "test"):
        data[f"Y_{part}"] = data[f"Y_{part}"][TASKS]
    n_rows = {part: len(data[f"X_{part}"]) for part in ("train", "valid", "test")}
    print(
        f"Census-Income {n_rows}; methods {methods}; models {args.models}; seeds {args.seeds}; "
        f"{protocol(args)}; torch threads {torch.get_num_threads()}",
        flush=True,
    )

    def write() -> None:
        nonlocal runs, failures
        with _locked(path):
            runs, failures = _merged_runs(path, protocol(args), runs, failures)
            _write(runs, failures)

    def _write(runs, failures) -> None:
        all_names = list(dict.fromkeys([*all_methods, *(r["method"] for r in runs)]))
        results = {
            "config": {
                "protocol": protocol(args),
                "reduced_protocol_note": (
                    "Reduced from census_baselines.py (all 199,523 training rows, up to 5 epochs, patience 2) "
                    "to fit a shared 2-core CPU: same split, models, batch size, learning rate and "
                    "validation-based epoch selection; a fixed training / validation subsample and fewer epochs."
                ),
                "methods": all_names,
                "method_params": "each method's defaults; DRGrad mode='split', primary_task=0 (income); "
                f"{CONTROL}: ew with task_weights 0.5 / 0.5 (null control)",
                "common": {**cb.COMMON, "lr": args.lr, "optimizer": "<method>"},
                "architectures": {m: {"estimator": c, **p} for m, (c, p) in cb.ARCHITECTURES.items() if m in MODELS},
                "data": {
                    **{f"{k}_rows": v for k, v in n_rows.items()},
                    "split": "official train; official test halved (split_random_state=0) into valid / test",
                },
                "threads": args.threads,
                "std": "sample standard deviation (ddof=1) over seeds; paired gains are per-seed differences "
                "to ew with the same seed (same initialisation and batch order)",
            },
            "runs": runs,
            "failures": failures,
            "summary": summarise(runs),
            "reference": {"drgrad_census": DRGRAD_CENSUS, "pub_aliexpress": PUB_ALIEXPRESS},
        }
        _common.write_results(name, results)

    started = time.perf_counter()
    for model in args.models:
        for seed in args.seeds:
            for method in methods:
                with _locked(path):  # another process may have run it meanwhile
                    runs, failures = _merged_runs(path, protocol(args), runs, failures)
                if any((r["model"], r["method"], r["seed"]) == (model, method, seed) for r in runs):
                    continue
                try:
                    res = run_one(model, method, seed, data, args)
                except Exception as exc:
                    failures.append(
                        {
                            "model": model,
                            "method": method,
                            "seed": seed,
                            "error": repr(exc),
                            "trace": traceback.format_exc(),
                        }
                    )
                    print(f"{model} {method} seed {seed}: FAILED {exc!r}", flush=True)
                    write()
                    continue
                runs.append(res)
                write()
                print(
                    f"{model:>5} {method:>9} seed {seed}: test AUC "
                    + " / ".join(f"{res['test_auc'][t]:.4f}" for t in TASKS)
                    + f", best epoch {res['best_epoch']}/{res['epochs_trained']}, fit {res['fit_seconds']:.0f} s "
                    f"(elapsed {time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
    write()
    print()
    print(markdown(json.loads(path.read_text())))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
