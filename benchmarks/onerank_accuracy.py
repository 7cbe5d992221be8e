"""OneRank vs MMoE / PLE / ResFlow: MovieLens-100K as requests, Census-Income per row.

- ``movielens``: the ratings and features of ``funnel_models.load_movielens`` (global
  temporal split: last 20 % of ratings test, 10 % before validation; tasks ``like``
  (rating >= 4) and ``love`` (rating == 5); read from the shared data folder at run time).
  A **request** is one user on one calendar day (UTC) of rating timestamps. Every row gets
  the user's **history**: the movies the user rated before that day (the last 50), a
  sequence sharing the ``movie_id`` vocabulary. OneRank: ``user_id, gender, occupation,
  age`` are context features (request level), ``movie_id, year`` and the genre flags
  describe the candidate, ``groups`` = the requests at fit and predict time. Baselines get
  the same columns (history mean-pooled by their input layer) and no groups.
- ``census``: ``funnel_models.load_census`` (tasks income, never_married); no requests:
  OneRank runs per row (every row a request of one candidate, InfoNCE off), all columns
  describe the candidate.

Every model: embeddings of 16, Adam lr 1e-3, batch 512 rows, epochs one at a time with
``partial_fit`` and the epoch with the best mean validation AUC kept (at most
``--max-epochs``, patience ``--patience``), test AUC per task; on MovieLens also GAUC per
task grouped by request and by user. Mean ± sample std over seeds.

Run ``python benchmarks/onerank_accuracy.py --seeds 3``; writes
``benchmarks/results/onerank_accuracy.json`` (``--out`` renames it). The figures in
``docs/onerank.md`` come from runs on a shared 2-core machine (hence the Census subsample):
``--datasets movielens --max-epochs 12 --patience 2`` with ``--models OneRank`` and with
``--models MMoE PLE ResFlow``, once with ``--seeds 2`` and once with ``--seeds 3 --seed-start 2``;
``--datasets census --seeds 2 --max-epochs 5 --patience 2 --census-rows 50000``; all merged with
``--merge PART ... --out onerank_accuracy`` (the parts' commits are kept under ``parts``). The
MovieLens runs with ``--max-epochs 4 --patience 1`` (2 seeds) are ``onerank_accuracy_4epochs.json``.
"""

from __future__ import annotations

import argparse
import sys
import time

import _common
import numpy as np
import pandas as pd
import torch
from funnel_models import ARCHITECTURES, load_census, load_movielens

MODELS = ("OneRank", "MMoE", "PLE", "ResFlow")
# early_stopping explicit: the estimators' "auto" default would hold out rows above 10,000.
COMMON = {"embedding_dim": 16, "lr": 1e-3, "optimizer": "adam", "early_stopping": False}
ONERANK = {"d_model": 32, "n_layers": 2, "n_heads": 2, "max_history": 50}
CONTEXT = ["user_id", "gender", "occupation", "age"]


def movielens_requests():
    """``load_movielens`` plus request ids (user x day) and the history column."""
    data = load_movielens()
    path = _common.require_data("movielens_100k", ("ratings.csv.gz",))
    ratings = pd.read_csv(path / "ratings.csv.gz")
    # the loader's row order (timestamp, user, movie), so rows line up with its X
    ratings = ratings.sort_values(["timestamp", "user_id", "movie_id"], kind="stable").reset_index(drop=True)
    day = (ratings["timestamp"] // 86400).to_numpy()
    user = ratings["user_id"].to_numpy()
    movie = ratings["movie_id"].astype(str).to_numpy()
    request = pd.factorize(pd.Series(user).astype(str) + "@" + pd.Series(day).astype(str))[0]
    history, earlier, today = [], {}, {}  # earlier: movies of past days; today: (day, movies of the day)
    for u, d, m in zip(user, day, movie):
        current, items = today.get(u, (None, []))
        if current != d:  # a new day: the previous day becomes history
            earlier.setdefault(u, []).extend(items)
            today[u] = (d, [])
        history.append(earlier.get(u, [])[-50:])
        today[u][1].append(m)
    n_train, n_valid = len(data.X_train), len(data.X_valid)
    parts = {
        "train": slice(0, n_train),
        "valid": slice(n_train, n_train + n_valid),
        "test": slice(n_train + n_valid, None),
    }
    for part, sl in parts.items():
        data[f"X_{part}"] = data[f"X_{part}"].assign(history=pd.Series(history[sl], dtype=object).to_numpy())
        data[f"requests_{part}"] = request[sl]
        data[f"users_{part}"] = data[f"groups_{part}"]
    data["description"] += "; requests = user x day, history = the user's movies rated on earlier days (last 50)"
    return data


def make_estimator(model: str, seed: int, args, grouped: bool):
    import sklearn_mtr

    extra = {"sequence_features": {"history": "movie_id"}} if grouped else {}
    if model == "OneRank":
        return sklearn_mtr.OneRankClassifier(
            **ONERANK,
            context_features=CONTEXT if grouped else None,
            **COMMON,
            **extra,
            batch_size=args.batch_size,
            random_state=seed,
            device="cpu",
        )
    cls_name, arch = ARCHITECTURES[model]
    return getattr(sklearn_mtr, cls_name)(
        **arch, **COMMON, **extra, batch_size=args.batch_size, random_state=seed, device="cpu"
    )


def run_one(model: str, seed: int, data, args, grouped: bool) -> dict:
    from sklearn_mtr.metrics import group_auc_score, per_task_roc_auc

    torch.manual_seed(seed)
    clf = make_estimator(model, seed, args, grouped)
    fit_groups = {"groups": data.requests_train} if grouped and model == "OneRank" else {}

    def proba(part):
        if grouped and model == "OneRank":
            return clf.predict_proba(data[f"X_{part}"], groups=data[f"requests_{part}"])
        return clf.predict_proba(data[f"X_{part}"])

    t0 = time.perf_counter()
    selection = _common.fit_select_on_valid(
        clf,
        lambda: clf.partial_fit(data.X_train, data.Y_train, **fit_groups),
        lambda: _common.valid_mean_auc(data.Y_valid, proba("valid")),
        args.max_epochs,
        args.patience,
    )
    fit_seconds = time.perf_counter() - t0
    P = np.asarray(proba("test"), dtype=float)
    Y = data.Y_test.to_numpy(dtype=float)
    tasks = list(data.Y_test.columns)
    out = {"seed": seed, "auc": dict(zip(tasks, map(float, per_task_roc_auc(Y, P))))}
    if grouped:
        out["gauc_request"] = dict(zip(tasks, map(float, group_auc_score(Y, P, data.requests_test))))
        out["gauc_user"] = dict(zip(tasks, map(float, group_auc_score(Y, P, data.users_test))))
    n_params = sum(p.numel() for p in clf.net_.module_.parameters())
    return {**out, **selection, "fit_seconds": fit_seconds, "parameters": n_params}


def summarise(runs: list[dict], tasks: list[str]) -> dict:
    """Mean ± std over seeds of every per-task metric the runs hold."""
    return {
        metric: {t: _common.summary([r[metric][t] for r in runs]) for t in tasks}
        for metric in ("auc", "gauc_request", "gauc_user")
        if metric in runs[0]
    }


def merge(names: list[str], out: str) -> dict:
    """One result file from several runs' files (other seeds, models or data sets)."""
    return _common.merge_parts(
        names, out, lambda runs, tasks: {"summary": summarise(runs, tasks), "runs": runs}, description=__doc__
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["movielens", "census"], choices=["movielens", "census"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-start", type=int, default=0, help="first seed (to add seeds to an earlier run)")
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--census-rows", type=int, default=0, help="subsample the Census training set (0 = all)")
    parser.add_argument("--out", default="onerank_accuracy")
    parser.add_argument("--merge", nargs="+", default=None, help="merge these result files (names) into --out")
    args = parser.parse_args(argv)
    if args.merge:
        merge(args.merge, args.out)
        print(f"merged {args.merge} into {args.out}")
        return 0
    torch.set_num_threads(1)
    results = {"description": __doc__, "args": vars(args), "datasets": {}}
    for dataset in args.datasets:
        grouped = dataset == "movielens"
        data = movielens_requests() if grouped else load_census()
        if not grouped and args.census_rows:
            keep = np.random.default_rng(0).permutation(len(data.X_train))[: args.census_rows]
            data["X_train"] = data.X_train.iloc[keep].reset_index(drop=True)
            data["Y_train"] = data.Y_train.iloc[keep].reset_index(drop=True)
        entry = {"description": data["description"], "tasks": list(data.Y_test.columns), "models": {}}
        if grouped:
            sizes = pd.Series(data.requests_train).value_counts()
            entry["train_requests"] = {
                "n": len(sizes),
                "mean_size": float(sizes.mean()),
                "max_size": int(sizes.max()),
            }
        for model in args.models:
            runs = []
            for seed in range(args.seed_start, args.seed_start + args.seeds):
                run = run_one(model, seed, data, args, grouped)
                runs.append(run)
                print(f"{dataset} {model} seed {seed}: auc {run['auc']} ({run['fit_seconds']:.0f}s)", flush=True)
            entry["models"][model] = {"summary": summarise(runs, entry["tasks"]), "runs": runs}
            results["datasets"][dataset] = entry
            _common.write_results(args.out, results)  # partial results survive an interrupted run
    path = _common.write_results(args.out, results)
    for dataset, entry in results["datasets"].items():
        print(f"\n{dataset}")
        for model, res in entry["models"].items():
            cells = [
                f"{metric} {t}: {_common.mean_std(res['summary'][metric][t]['values'])}"
                for metric in res["summary"]
                for t in entry["tasks"]
            ]
            print(f"  {model:8s} " + " | ".join(cells))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
