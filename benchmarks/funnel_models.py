"""Funnel and multi-task architectures on funnel data: per-task AUC, GAUC, weighted recall@K.

ResFlow, ESMM, AITM, MMoE and PLE, and the peers' architectures (ESCM2, OMoE, DSelect-k,
Cross-stitch, PEPNet, DBMTL; issue 19), at comparable small sizes (``ARCHITECTURES``).

Two funnel data sets with two nested tasks (the second implies the first):

- ``synthetic``: :func:`sklearn_mtr.datasets.make_funnel_classification` (16 features of
  which 2 categorical, stage rates (0.2, 0.2): 20 % stage 0, 4 % stage 1), one draw
  (``random_state=0``) cut into train / valid / test in row order. Requests for GAUC and
  weighted recall@K: consecutive blocks of ``--block`` (50) test rows.
- ``movielens``: MovieLens-100K ratings (read at run time from the shared data folder, never
  stored), tasks ``like`` (rating >= 4) and ``love`` (rating == 5); features ``user_id`` and
  ``movie_id`` (embedded), user ``age``, ``gender``, ``occupation``, movie ``year`` and the 19
  genre flags. Global temporal split: ratings sorted by timestamp, the last 20 % are the
  test set, the 10 % before them the validation set, the rest training. Requests: the user
  (GAUC and recall@K rank each user's test items).

Every model: embeddings of 16, Adam lr 1e-3 (or a grid, ``--lrs``), batch 512, small towers
(see ``ARCHITECTURES``). With a grid of two or more rates, each model's rate is chosen per
data set on validation (the kept epoch's mean validation AUC, averaged over the seeds), and
its test AUC is paired by seed with the reference model's at its own chosen rate (ESMM;
MMoE on Census): the mean difference per task and for the mean of the tasks. The null
control, the reference with task weights 1 / n_tasks (a no-op for Adam up to rounding), gives
the protocol's resolution.
Epochs: trained one at a time with ``partial_fit`` on train, the epoch with the best mean
validation AUC kept (at most ``--max-epochs``, patience ``--patience``), as in
``census_baselines.py``. Test metrics per seed, then mean ± sample std over seeds.

Weighted recall@K (``sklearn_mtr.metrics.weighted_recall_at_k``) is the *unverified*
ResFlow-style reading (ResFlow's exact formula is not available to us): per request the
top K candidates by one fused score, recall per feedback type pooled over requests, types
averaged with equal weights. The fused score is the additive fusion ``(p_0 + p_1) / 2`` of
the predicted task probabilities (over the entire space for every model).

Run ``python benchmarks/funnel_models.py --seeds 5`` (``--lrs 1e-3 3e-3 --output
funnel_models_lr_grid`` for the tuned, paired run); ``--quick`` is a smoke run. Writes
``benchmarks/results/funnel_models.json`` (``funnel_models_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import sys
import time

import _common
import numpy as np
import pandas as pd
import torch

# early_stopping explicit: the estimators' "auto" default would hold out rows above 10,000.
COMMON = {"embedding_dim": 16, "lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0, "early_stopping": False}

ARCHITECTURES = {
    "ResFlow": ("ResFlowClassifier", {"tower_hidden_sizes": (64, 32)}),
    "ESMM": ("ESMMClassifier", {"tower_hidden_sizes": (64, 32)}),
    "AITM": ("AITMClassifier", {"tower_hidden_sizes": (64, 32), "head_hidden_sizes": (32,)}),
    "MMoE": ("MMoEClassifier", {"n_experts": 4, "expert_hidden_sizes": (64, 32), "tower_hidden_sizes": (32,)}),
    "PLE": (
        "PLEClassifier",
        {
            "n_levels": 1,
            "n_task_experts": 1,
            "n_shared_experts": 2,
            "expert_hidden_sizes": (64, 32),
            "tower_hidden_sizes": (32,),
        },
    ),
    # the peers' architectures (issue 19), at the same sizes
    "ESCM2": ("ESCM2Classifier", {"tower_hidden_sizes": (64, 32)}),
    "OMoE": ("OMoEClassifier", {"n_experts": 4, "expert_hidden_sizes": (64, 32), "tower_hidden_sizes": (32,)}),
    "DSelectK": (
        "DSelectKClassifier",
        {"n_experts": 4, "k": 2, "expert_hidden_sizes": (64, 32), "tower_hidden_sizes": (32,)},
    ),
    "CrossStitch": ("CrossStitchClassifier", {"column_hidden_sizes": (64, 32), "tower_hidden_sizes": (32,)}),
    "PEPNet": ("PEPNetClassifier", {"tower_hidden_sizes": (64, 32)}),
    "DBMTL": ("DBMTLClassifier", {"bottom_hidden_sizes": (64, 32), "tower_hidden_sizes": (32,)}),
}
# Ablations, run only when named in --models: ESCM2's counterfactual risk weaker, or IPS.
ABLATIONS = {
    "ESCM2-w0.1": ("ESCM2Classifier", {"tower_hidden_sizes": (64, 32), "counterfactual_weight": 0.1}),
    "ESCM2-ips": ("ESCM2Classifier", {"tower_hidden_sizes": (64, 32), "counterfactual": "ips"}),
}
# The paired reference of each data set (the learning-rate grid's differences are to it), and
# the null control: the reference with task weights 1 / n_tasks, which Adam's scale invariance
# makes a no-op up to rounding.
REFERENCE = {"census": "MMoE"}
DEFAULT_REFERENCE = "ESMM"
CONTROL = "null control"

DATASETS = ("synthetic", "movielens", "movielens_user", "census")

# tasks of Census-Income are not nested: the funnel models (ESMM, AITM) do not apply there
FUNNEL_ONLY = ("ESMM", "AITM", "ESCM2", *ABLATIONS)


class Split(dict):
    __getattr__ = dict.__getitem__


# --------------------------------------------------------------------------- data


def load_synthetic(n_train: int, n_valid: int, n_test: int, block: int) -> Split:
    from sklearn_mtr.datasets import make_funnel_classification

    n = n_train + n_valid + n_test
    X, Y = make_funnel_classification(
        n_samples=n, n_features=16, n_stages=2, stage_rates=(0.2, 0.2), n_categorical=2, as_frame=True, random_state=0
    )
    Y.columns = ["stage0", "stage1"]
    cuts = {"train": slice(0, n_train), "valid": slice(n_train, n_train + n_valid), "test": slice(n_train + n_valid, n)}
    data = Split()
    for part, sl in cuts.items():
        data[f"X_{part}"] = X.iloc[sl].reset_index(drop=True)
        data[f"Y_{part}"] = Y.iloc[sl].reset_index(drop=True)
    data["oracle_test_auc"] = synthetic_oracle_auc(n_train, n_valid, n_test)
    data["groups_test"] = np.arange(n_test) // block
    data["groups_valid"] = np.arange(n_valid) // block
    data["description"] = (
        f"make_funnel_classification(n_samples={n}, n_features=16, n_stages=2, stage_rates=(0.2, 0.2), "
        f"n_categorical=2, random_state=0), rows in order: {n_train} train / {n_valid} valid / {n_test} test; "
        f"requests = consecutive blocks of {block} test rows"
    )
    return data


def synthetic_oracle_auc(n_train: int, n_valid: int, n_test: int) -> dict:
    """Test AUC of the true posterior of the synthetic funnel (an upper reference).

    Replays ``make_funnel_classification``'s random draws (same ``random_state``) to get the
    noiseless scores ``g_t = 2 w_t . x + sin(3 w_t . x)`` of the continuous features; with
    logistic noise and the sample thresholds ``c_t``, ``P(stage 0 | x) = sigmoid(g_0 - c_0)``
    and ``P(stage 1 | x) = sigmoid(g_0 - c_0) * sigmoid(g_1 - c_1)``. The models only see 8
    bins of the 2 categorical columns, so they cannot quite reach it.
    """
    from scipy.special import expit
    from sklearn.metrics import roc_auc_score

    from sklearn_mtr.datasets import make_funnel_classification

    n, d = n_train + n_valid + n_test, 16
    rng = np.random.RandomState(0)
    X = rng.standard_normal((n, d))
    basis, _ = np.linalg.qr(rng.standard_normal((d, 3)))
    proj = X @ ((basis[:, [0]] + basis[:, 1:]) / np.sqrt(2.0))
    g = 2.0 * proj + np.sin(3.0 * proj)
    s = g + rng.logistic(size=proj.shape)
    _, Y = make_funnel_classification(
        n_samples=n, n_features=d, n_stages=2, stage_rates=(0.2, 0.2), n_categorical=2, random_state=0
    )
    c0, c1 = s[Y[:, 0] == 1, 0].min(), s[Y[:, 1] == 1, 1].min()
    p0 = expit(g[:, 0] - c0)
    p1 = p0 * expit(g[:, 1] - c1)
    te = slice(n_train + n_valid, n)
    return {"stage0": float(roc_auc_score(Y[te, 0], p0[te])), "stage1": float(roc_auc_score(Y[te, 1], p1[te]))}


def load_movielens(valid_frac: float = 0.1, test_frac: float = 0.2, per_user: bool = False) -> Split:
    """MovieLens-100K as a like -> love funnel, split by timestamp.

    ``per_user=False``: global split (the last ``test_frac`` of all ratings are the test
    set). ``per_user=True``: the last ``test_frac`` of *each user's* ratings (rounded
    down) are that user's test rows, the ``valid_frac`` before them validation rows.
    Read from the shared data folder at run time (GroupLens licence: never stored or shipped).
    """
    path = _common.require_data("movielens_100k", ("ratings.csv.gz", "users.csv.gz", "items.csv.gz"))
    ratings = pd.read_csv(path / "ratings.csv.gz")
    users = pd.read_csv(path / "users.csv.gz")
    items = pd.read_csv(path / "items.csv.gz")
    genres = list(items.columns[5:])
    items["year"] = pd.to_datetime(items["release_date"], format="%d-%b-%Y", errors="coerce").dt.year
    items = items[["movie_id", "year", *genres]]
    df = ratings.merge(users[["user_id", "age", "gender", "occupation"]], on="user_id", how="left")
    df = df.merge(items, on="movie_id", how="left")
    df = df.sort_values(["timestamp", "user_id", "movie_id"], kind="stable").reset_index(drop=True)
    if per_user:
        # rank of each rating within its user's history (0 = oldest), then the user's
        # last test_frac rows as test and the valid_frac before them as validation
        pos = df.groupby("user_id").cumcount().to_numpy()
        size = df.groupby("user_id")["user_id"].transform("size").to_numpy()
        n_te = np.floor(test_frac * size).astype(int)
        n_va = np.floor(valid_frac * size).astype(int)
        part = np.where(pos >= size - n_te, 2, np.where(pos >= size - n_te - n_va, 1, 0))
        df = df.assign(_part=part).sort_values(["_part", "timestamp", "user_id", "movie_id"], kind="stable")
        df = df.reset_index(drop=True)
        n_train, n_valid = int((part == 0).sum()), int((part == 1).sum())
        n = len(df)
        n_test = n - n_train - n_valid
    else:
        n = len(df)
        n_test, n_valid = round(test_frac * n), round(valid_frac * n)
        n_train = n - n_test - n_valid
    # the year of a few movies is unknown: fill with the training median (numeric features
    # are standardised by the estimators' encoder)
    df["year"] = df["year"].fillna(df["year"].iloc[:n_train].median())
    # the id vocabularies hold the training ids only (a declared category fixes the
    # estimator's vocabulary): ids first seen in validation / test become missing values and
    # share the out-of-vocabulary embedding, as unseen ids would in production
    ids = {
        col: pd.CategoricalDtype(sorted(df[col].iloc[:n_train].astype(str).unique())) for col in ("user_id", "movie_id")
    }
    X = pd.DataFrame(
        {
            "user_id": df["user_id"].astype(str).astype(ids["user_id"]),
            "movie_id": df["movie_id"].astype(str).astype(ids["movie_id"]),
            "gender": df["gender"].astype("category"),
            "occupation": df["occupation"].astype("category"),
            "age": df["age"].astype(float),
            "year": df["year"].astype(float),
            **{f"genre_{g}": df[g].astype(float) for g in genres},
        }
    )
    Y = pd.DataFrame({"like": (df["rating"] >= 4).astype(int), "love": (df["rating"] == 5).astype(int)})
    cuts = {
        "train": slice(0, n_train),
        "valid": slice(n_train, n_train + n_valid),
        "test": slice(n_train + n_valid, n),
    }
    data = Split()
    for part, sl in cuts.items():
        data[f"X_{part}"] = X.iloc[sl].reset_index(drop=True)
        data[f"Y_{part}"] = Y.iloc[sl].reset_index(drop=True)
        data[f"groups_{part}"] = df["user_id"].to_numpy()[sl]
    test_users = set(data.groups_test)
    train_users = set(data.groups_train)
    test_items = set(df["movie_id"].iloc[cuts["test"]])
    train_items = set(df["movie_id"].iloc[cuts["train"]])
    data["stats"] = {
        "test_users": len(test_users),
        "test_users_unseen_in_train": len(test_users - train_users),
        "test_rows_of_unseen_users": int(np.isin(data.groups_test, list(test_users - train_users)).sum()),
        "test_items": len(test_items),
        "test_items_unseen_in_train": len(test_items - train_items),
        "test_users_with_more_than_10_rows": int((pd.Series(data.groups_test).value_counts() > 10).sum()),
        "test_users_with_more_than_20_rows": int((pd.Series(data.groups_test).value_counts() > 20).sum()),
    }
    if per_user:
        data["description"] = (
            f"MovieLens-100K, per-user temporal split: each user's last 20 % of ratings test ({n_test}), "
            f"the 10 % before validation ({n_valid}), the rest train ({n_train}); like = rating >= 4, "
            "love = rating == 5; requests = users"
        )
    else:
        data["description"] = (
            f"MovieLens-100K ratings sorted by timestamp: first {n_train} train / next {n_valid} valid / "
            f"last {n_test} test; like = rating >= 4, love = rating == 5; requests = users"
        )
    return data


def load_census() -> Split:
    """Census-Income (KDD) as in census_baselines.py; no requests (AUC only)."""
    from sklearn_mtr.datasets import load_census_income

    bunch = load_census_income(_common.census_dir())
    data = Split()
    for part in ("train", "valid", "test"):
        data[f"X_{part}"] = bunch[f"X_{part}"]
        data[f"Y_{part}"] = bunch[f"Y_{part}"][["income", "never_married"]]
        data[f"groups_{part}"] = None
    data["description"] = (
        "Census-Income (KDD), load_census_income: official train; official test halved into valid / test; "
        "tasks income, never_married (not nested: ESMM and AITM skipped); no requests, AUC only"
    )
    return data


# --------------------------------------------------------------------------- models


def make_estimator(model: str, seed: int, args, lr: float | None = None, reference: str | None = None):
    """``model`` (or, for ``CONTROL``, ``reference`` with task weights 1 / n_tasks) at ``lr``."""
    import sklearn_mtr

    cls_name, arch = {**ARCHITECTURES, **ABLATIONS}[reference if model == CONTROL else model]
    cls = getattr(sklearn_mtr, cls_name)
    clf = cls(
        **arch,
        **{**COMMON, **({} if lr is None else {"lr": lr})},
        batch_size=args.batch_size,
        max_epochs=args.max_epochs,
        random_state=seed,
        verbose=0,
        device="cpu",
    )
    return clf.set_params(task_weights=[0.5, 0.5]) if model == CONTROL else clf


def _metrics(Y_true, P, groups, k, tasks) -> dict:
    from sklearn_mtr.metrics import group_auc_score, per_task_roc_auc, weighted_recall_at_k

    Y_true = np.asarray(Y_true, dtype=float)
    auc = per_task_roc_auc(Y_true, P)
    if groups is None:
        return {"auc": {t: float(a) for t, a in zip(tasks, auc)}}
    gauc = group_auc_score(Y_true, P, groups)
    fused = P.mean(axis=1)
    wrecall = weighted_recall_at_k(Y_true, fused, k=k, groups=groups)
    recall = [weighted_recall_at_k(Y_true[:, j], fused, k=k, groups=groups) for j in range(len(tasks))]
    return {
        "auc": {t: float(a) for t, a in zip(tasks, auc)},
        "gauc": {t: float(a) for t, a in zip(tasks, gauc)},
        "recall_at_k": {t: float(r) for t, r in zip(tasks, recall)},
        "wrecall_at_k": float(wrecall),
    }


def run_one(model: str, seed: int, data: Split, args, tasks, lr=None, reference=None) -> dict:
    torch.manual_seed(seed)
    clf = make_estimator(model, seed, args, lr, reference)
    t0 = time.perf_counter()
    selection = _common.fit_on_train_select_on_valid(clf, data, args.max_epochs, args.patience)
    fit_seconds = time.perf_counter() - t0
    P = np.asarray(clf.predict_proba(data.X_test), dtype=float)
    out = _metrics(data.Y_test.to_numpy(), P, data.groups_test, args.k, tasks)
    # entire-space predictions of a funnel: P(stage 1) should not exceed P(stage 0)
    if data.groups_test is not None:  # the funnel sets
        out["share_rows_p1_gt_p0"] = float(np.mean(P[:, 1] > P[:, 0] + 1e-7))
    return {
        "seed": seed,
        **out,
        **selection,
        "fit_seconds": fit_seconds,
    }


def _valid_score(run: dict) -> float:
    """The run's best mean validation AUC (the epoch it kept)."""
    return max(entry["valid_mean_auc"] for entry in run["valid_curve"])


def _paired(runs: list[dict], reference: list[dict], tasks: list[str]) -> dict:
    """Per-seed test AUC differences ``run - reference`` (seeds in both), per task and for the
    mean of the tasks."""
    ref = {r["seed"]: r for r in reference}
    pairs = [(r, ref[r["seed"]]) for r in runs if r["seed"] in ref]
    out = {t: _common.summary([r["auc"][t] - q["auc"][t] for r, q in pairs]) for t in tasks}
    out["mean"] = _common.summary([np.mean([r["auc"][t] - q["auc"][t] for t in tasks]) for r, q in pairs])
    out["seeds"] = [r["seed"] for r, _ in pairs]
    return out


def _summarise(runs, tasks) -> dict:
    s = {
        metric: {t: _common.summary([r[metric][t] for r in runs]) for t in tasks}
        for metric in ("auc", "gauc", "recall_at_k")
        if metric in runs[0]
    }
    if "wrecall_at_k" in runs[0]:
        s["wrecall_at_k"] = _common.summary([r["wrecall_at_k"] for r in runs])
    s["fit_seconds"] = _common.summary([r["fit_seconds"] for r in runs])
    s["best_epoch"] = [r["best_epoch"] for r in runs]
    return s


def table(results: dict, dataset: str, k: int) -> str:
    res = results["datasets"][dataset]
    tasks = res["tasks"]
    grouped = res["n_test_groups"] is not None
    header = (
        ["model"]
        + [f"{t} AUC" for t in tasks]
        + ([f"{t} GAUC" for t in tasks] + [f"WRecall@{k}"] if grouped else [])
        + ["fit s / seed", "best epochs"]
    )
    rows = []
    for model, r in res["models"].items():
        runs = r["runs"]
        if not runs:
            rows.append([model, *(["error"] * (len(header) - 3)), "", ""])
            continue
        rows.append(
            [model]
            + [_common.mean_std([x["auc"][t] for x in runs]) for t in tasks]
            + (
                [_common.mean_std([x["gauc"][t] for x in runs]) for t in tasks]
                + [_common.mean_std([x["wrecall_at_k"] for x in runs])]
                if grouped
                else []
            )
            + [f"{np.mean([x['fit_seconds'] for x in runs]):.0f}", ",".join(str(x["best_epoch"]) for x in runs)]
        )
    return _common.markdown_table(header, rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--census-max-epochs", type=int, default=5, help="max epochs on Census (default 5)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--k", type=int, default=10, help="K of weighted recall@K (default 10)")
    parser.add_argument("--block", type=int, default=50, help="synthetic request size (default 50)")
    parser.add_argument("--n-train", type=int, default=30000, help="synthetic training rows")
    parser.add_argument("--n-valid", type=int, default=5000, help="synthetic validation rows")
    parser.add_argument("--n-test", type=int, default=10000, help="synthetic test rows")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--models", nargs="+", choices=[*ARCHITECTURES, *ABLATIONS], default=list(ARCHITECTURES))
    parser.add_argument(
        "--lrs",
        nargs="+",
        type=float,
        default=[COMMON["lr"]],
        help="learning-rate grid: with two or more, each model's rate is chosen on validation, its test "
        "metrics are paired by seed with the reference model's (ESMM; MMoE on Census) and a null control runs",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 1 epoch, small synthetic set")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.max_epochs, args.census_max_epochs = 1, 1, 1
        args.n_train, args.n_valid, args.n_test = 4000, 1000, 2000
    torch.set_num_threads(args.threads)
    name = args.output or ("funnel_models_quick" if args.quick else "funnel_models")

    results: dict = {
        "config": {
            "seeds": list(range(args.seeds)),
            "max_epochs": args.max_epochs,
            "patience": args.patience,
            "selection": "partial_fit one epoch at a time; keep the epoch with the best mean valid AUC",
            "batch_size": args.batch_size,
            "k": args.k,
            "common": COMMON,
            "lrs": args.lrs,
            "lr_selection": "per model and data set, the rate of --lrs with the best validation score (the kept "
            "epoch's mean validation AUC) averaged over the seeds",
            "null_control": "the reference model with task weights 1 / n_tasks (a no-op for Adam up to rounding), "
            "at the reference's chosen rate",
            "architectures": {
                m: {"estimator": c, **p} for m, (c, p) in {**ARCHITECTURES, **ABLATIONS}.items() if m in args.models
            },
            "fused_score": "mean of the two predicted task probabilities (additive fusion, equal weights)",
            "wrecall": "sklearn_mtr.metrics.weighted_recall_at_k, equal weights over the two tasks, per request "
            "(groups); the unverified ResFlow-style reading, not ResFlow's published formula",
            "gauc": "sklearn_mtr.metrics.group_auc_score by request (synthetic: row blocks; MovieLens: user)",
            "std": "sample standard deviation (ddof=1) over seeds; data fixed, seeds vary init and shuffling",
            "torch_threads": torch.get_num_threads(),
            "quick": args.quick,
        },
        "datasets": {},
        "reference": "The ResFlow paper's result tables are not available to us "
        "(shared/reference/resflow_baselines.md section 4); no published numbers to compare with.",
    }
    started = time.perf_counter()
    for dataset in args.datasets:
        if dataset == "synthetic":
            data = load_synthetic(args.n_train, args.n_valid, args.n_test, args.block)
        elif dataset == "census":
            data = load_census()
            if args.quick:
                for part, n in (("train", 4000), ("valid", 2000), ("test", 2000)):
                    data[f"X_{part}"] = data[f"X_{part}"].iloc[:n].reset_index(drop=True)
                    data[f"Y_{part}"] = data[f"Y_{part}"].iloc[:n].reset_index(drop=True)
        else:
            data = load_movielens(per_user=dataset == "movielens_user")
        tasks = list(data.Y_train.columns)
        info = {
            "description": data.description,
            "tasks": tasks,
            "rows": {p: len(data[f"X_{p}"]) for p in ("train", "valid", "test")},
            "positive_rate": {
                p: {t: float(data[f"Y_{p}"][t].mean()) for t in tasks} for p in ("train", "valid", "test")
            },
            "n_features": int(data.X_train.shape[1]),
            "n_test_groups": None if data.groups_test is None else len(np.unique(data.groups_test)),
            "max_epochs": args.census_max_epochs if dataset == "census" else args.max_epochs,
            **({"stats": data["stats"]} if "stats" in data else {}),
            **({"oracle_test_auc": data["oracle_test_auc"]} if "oracle_test_auc" in data else {}),
            "models": {},
        }
        results["datasets"][dataset] = info
        print(
            f"{dataset}: rows {info['rows']}, positive rates (test) {info['positive_rate']['test']}, "
            f"{info['n_test_groups']} test requests",
            flush=True,
        )
        models = [m for m in args.models if not (dataset == "census" and m in FUNNEL_ONLY)]
        max_epochs = args.max_epochs
        args.max_epochs = info["max_epochs"]
        reference = REFERENCE.get(dataset, DEFAULT_REFERENCE)
        grid = len(args.lrs) > 1
        ordered = ([reference] if reference in models else []) + [m for m in models if m != reference]
        if grid and reference in models:
            ordered.append(CONTROL)  # at the reference's chosen rate
            info["reference"] = reference
        for model in ordered:
            lrs = [info["models"][reference]["chosen_lr"]] if model == CONTROL else args.lrs
            by_lr, errors = {}, []
            for lr in lrs:
                by_lr[lr] = []
                for seed in range(args.seeds):
                    try:
                        res = run_one(model, seed, data, args, tasks, lr, reference)
                    except Exception as exc:
                        errors.append({"seed": seed, "lr": lr, "error": f"{type(exc).__name__}: {exc}"})
                        print(f"{dataset:>9} {model:>8} seed {seed}: ERROR {type(exc).__name__}: {exc}", flush=True)
                        continue
                    by_lr[lr].append(res)
                    print(
                        f"{dataset:>9} {model:>8} lr {lr:g} seed {seed}: AUC "
                        + " / ".join(f"{res['auc'][t]:.4f}" for t in tasks)
                        + (", GAUC " + " / ".join(f"{res['gauc'][t]:.4f}" for t in tasks) if "gauc" in res else "")
                        + (f", WRecall@{args.k} {res['wrecall_at_k']:.4f}" if "wrecall_at_k" in res else "")
                        + f", best epoch {res['best_epoch']}/"
                        f"{res['epochs_trained']}, fit {res['fit_seconds']:.0f} s "
                        f"(elapsed {time.perf_counter() - started:.0f} s)",
                        flush=True,
                    )
            # the rate with the best validation score averaged over the seeds (test rows unused)
            scores = {lr: float(np.mean([_valid_score(r) for r in runs])) for lr, runs in by_lr.items() if runs}
            chosen = max(scores, key=scores.get) if scores else None
            runs = by_lr.get(chosen, [])
            entry = {"runs": runs, "errors": errors, **(_summarise(runs, tasks) if runs else {})}
            if grid:
                entry["chosen_lr"] = chosen
                entry["lr_grid"] = {f"{lr:g}": {"valid_score": scores.get(lr), "runs": rs} for lr, rs in by_lr.items()}
                if model != reference and runs and info["models"].get(reference, {}).get("runs"):
                    entry["delta_vs_reference"] = _paired(runs, info["models"][reference]["runs"], tasks)
            info["models"][model] = entry
            _common.write_results(name, results)
        args.max_epochs = max_epochs
    results["total_seconds"] = time.perf_counter() - started
    path = _common.write_results(name, results)
    for dataset in args.datasets:
        print(f"\n### {dataset} (test; mean ± std over {args.seeds} seeds)\n")
        print(table(results, dataset, args.k))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
