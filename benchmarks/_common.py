"""Shared helpers for the benchmark scripts.

- where the shared data lives (``../shared/data`` next to the repository, or the
  ``SKLEARN_MTR_SHARED_DATA`` environment variable),
- writing results as JSON under ``benchmarks/results/`` with the environment they were
  measured in,
- small formatting helpers (mean ± std, markdown tables).

The scripts are run as ``python benchmarks/<script>.py`` from the repository root; they
import this module as ``_common`` (the script's own folder is on ``sys.path``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DATA_ENV_VAR = "SKLEARN_MTR_SHARED_DATA"

# Make ``import sklearn_mtr`` work when a script is run from a checkout without installing.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def shared_data_dir() -> Path:
    """Folder holding the shared data sets.

    ``$SKLEARN_MTR_SHARED_DATA`` when set, else ``<repo>/../shared/data``.
    """
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def require_data(subdir: str, files: tuple[str, ...] = ()) -> Path:
    """Return ``shared_data_dir() / subdir``, or exit with a clear message if it is absent."""
    base = shared_data_dir()
    path = base / subdir
    missing = [f for f in files if not (path / f).is_file()]
    if not path.is_dir() or missing:
        what = f"{path}" if not path.is_dir() else ", ".join(str(path / f) for f in missing)
        sys.exit(
            f"error: benchmark data not found: {what}\n"
            f"Put the shared data folder at {Path(__file__).resolve().parents[2] / 'shared' / 'data'} "
            f"or point the {DATA_ENV_VAR} environment variable at a folder that holds "
            f"'{subdir}/'."
        )
    return path


def census_dir() -> Path:
    """The Census-Income (KDD) folder, checked to contain the train and test files."""
    return require_data("census_income_kdd", ("census-income.data.gz", "census-income.test.gz"))


def _version(module_name: str) -> str | None:
    try:
        module = __import__(module_name)
    except Exception:
        return None
    return getattr(module, "__version__", None)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except Exception:
        return None
    if out.returncode != 0:
        return None
    commit = out.stdout.strip()
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except Exception:
        dirty = ""
    return commit + ("-dirty" if dirty else "")


# The code a run measures is the one its process imported: the commit at start-up, not at the
# time of a write (a long run writes after every fit while the checkout may move on).
_COMMIT_AT_START = _git_commit()


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def environment(device: str = "cpu") -> dict:
    """Versions, machine and time of a benchmark run."""
    try:
        import torch

        n_threads = torch.get_num_threads()
        cuda = torch.cuda.is_available()
        gpu = torch.cuda.get_device_name(0) if cuda else None
    except Exception:
        n_threads, cuda, gpu = None, False, None
    try:
        from importlib.metadata import version as _dist_version

        rechub = _dist_version("torch-rechub")
    except Exception:
        rechub = None
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git_commit": _COMMIT_AT_START,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15min": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch_num_threads": n_threads,
        "device": device,
        "gpu": gpu,
        "versions": {
            "torch": _version("torch"),
            "sklearn": _version("sklearn"),
            "skorch": _version("skorch"),
            "numpy": _version("numpy"),
            "pandas": _version("pandas"),
            "sklearn_mtr": _version("sklearn_mtr"),
            "torch_rechub": rechub,
        },
    }


def _to_jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_results(name: str, payload: dict, device: str = "cpu") -> Path:
    """Write ``payload`` plus an ``environment`` block to ``benchmarks/results/<name>.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    data = {"benchmark": name, "environment": environment(device), **payload}
    path.write_text(json.dumps(_to_jsonable(data), indent=2) + "\n")
    return path


def mean_std(values, digits: int = 4) -> str:
    """``"0.9512 ± 0.0011"`` (sample std, ddof=1, over the values; ``"n/a"`` if empty)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return "n/a"
    if arr.size == 1:
        return f"{arr[0]:.{digits}f}"
    return f"{arr.mean():.{digits}f} ± {arr.std(ddof=1):.{digits}f}"


def summary(values) -> dict:
    """``{"mean", "std", "min", "max", "n", "values"}`` of a list of numbers (std: ddof=1)."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0, "values": []}
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        "min": float(arr.min()),
        "max": float(arr.max()),
        "n": int(arr.size),
        "values": [float(v) for v in arr],
    }


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fit_select_on_valid(clf, train_epoch, score_valid, max_epochs: int, patience: int) -> dict:
    """Train one epoch per ``train_epoch()`` call and keep the weights of the best epoch.

    ``score_valid()`` returns a dict with at least ``"valid_mean_auc"`` (the selection metric)
    plus anything else to record per epoch. Training stops after ``patience`` epochs without
    an improvement of 1e-5 or at ``max_epochs``; ``clf`` ends with the best epoch's weights.
    Returns ``best_epoch``, ``epochs_trained`` and ``valid_curve`` (one dict per epoch).
    """
    import copy

    curve, best, best_state, best_epoch, since = [], -np.inf, None, 0, 0
    for epoch in range(1, max_epochs + 1):
        train_epoch()
        entry = {"epoch": epoch, **score_valid()}
        curve.append(entry)
        if entry["valid_mean_auc"] > best + 1e-5:
            best, best_epoch, since = entry["valid_mean_auc"], epoch, 0
            best_state = copy.deepcopy(clf.net_.module_.state_dict())
        else:
            since += 1
            if since >= patience:
                break
    clf.net_.module_.load_state_dict(best_state)
    return {"best_epoch": best_epoch, "epochs_trained": len(curve), "valid_curve": curve}


def fit_on_train_select_on_valid(clf, data, max_epochs: int, patience: int) -> dict:
    """:func:`fit_select_on_valid` on ``data.X_train`` / ``data.Y_train``, epochs scored by the
    mean validation AUC on ``data.X_valid`` / ``data.Y_valid``."""
    return fit_select_on_valid(
        clf,
        lambda: clf.partial_fit(data.X_train, data.Y_train),
        lambda: valid_mean_auc(data.Y_valid, clf.predict_proba(data.X_valid)),
        max_epochs,
        patience,
    )


def valid_mean_auc(Y_valid, proba) -> dict:
    """``{"valid_mean_auc": mean per-task ROC AUC}``, the selection score of most benchmarks."""
    from sklearn_mtr.metrics import per_task_roc_auc

    return {"valid_mean_auc": float(np.mean(per_task_roc_auc(np.asarray(Y_valid, dtype=float), proba)))}


def merge_parts(names: list[str], output: str, model_entry, **top) -> dict:
    """One result file from the files of several runs of one benchmark (other seeds, models or
    data sets), shaped ``datasets -> {tasks, models -> {runs: [...]}}``.

    Runs are concatenated per data set and model and sorted by seed (a seed given twice is an
    error); ``model_entry(runs, tasks)`` builds each model's entry (summaries included). Each
    part's name, configuration and environment (commit, machine) are kept under ``parts``; a
    part that is itself a merge contributes its own parts. ``config`` is the first part's,
    with ``seeds`` the seeds of all runs. ``top`` adds top-level keys.
    """
    merged: dict = {**top, "parts": [], "datasets": {}}
    for name in names:
        part = json.loads((RESULTS_DIR / f"{name}.json").read_text())
        if "config" in part and "config" not in merged:
            merged["config"] = dict(part["config"])
        merged["parts"] += part.get("parts") or [
            {"name": name, "config": part.get("config", part.get("args")), "environment": part.get("environment")}
        ]
        for dataset, info in part["datasets"].items():
            target = merged["datasets"].setdefault(dataset, {k: v for k, v in info.items() if k != "models"})
            for model, entry in info["models"].items():
                target.setdefault("models", {}).setdefault(model, []).extend(entry["runs"])
    seeds = set()
    for dataset, info in merged["datasets"].items():
        for model, runs in info["models"].items():
            found = [r["seed"] for r in runs]
            if len(set(found)) != len(found):
                raise ValueError(f"{dataset} / {model}: a seed appears in several parts ({sorted(found)}).")
            seeds.update(found)
            info["models"][model] = model_entry(sorted(runs, key=lambda r: r["seed"]), info["tasks"])
    if "config" in merged:
        merged["config"]["seeds"] = sorted(seeds)
    write_results(output, merged)
    return merged
