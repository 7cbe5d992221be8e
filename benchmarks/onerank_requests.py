"""OneRank vs MMoE on request-ranking protocols: paired seeds, GAUC per request.

- ``synthetic``: :func:`sklearn_mtr.datasets.make_request_classification` with
  ``set_dependence=1``: a candidate is clicked when it is typical of its request (close to
  the request's mean along a hidden direction), which no single row reveals. 20 candidates
  per request, 8 features, a request-level ``user`` column carrying no signal; requests
  split 1000 train / 200 validation / 500 test (one draw per seed, ``random_state=seed``).
- ``synthetic_null``: the same with ``set_dependence=0`` (the order within a request is a
  function of the row alone): the null control, where seeing the set should not help.
- ``movielens``: MovieLens-100K (``funnel_models.load_movielens(per_user=True)``: each
  user's last 20 % of ratings are test, the 10 % before them validation; tasks like and
  love; read from the shared data folder at run time, never stored). A request is one
  user on one calendar day (UTC); every row gets the history of the movies that user
  rated on earlier days (the last 50), a sequence sharing ``movie_id``. GAUC per request
  and per user.

OneRank gets the request-level columns as ``context_features`` (synthetic: ``user``;
MovieLens: ``user_id, gender, occupation, age``) and ``groups`` at fit and predict time;
MMoE gets the same columns (the history mean-pooled) and no groups. Variants of OneRank
are named by ``candidate_access`` (``OneRank-add``, ``OneRank-type``,
``OneRank-attention``). Every model: embeddings of 16, Adam lr 1e-3, batch 512 rows,
epochs one at a time with the epoch of best mean validation AUC kept (at most
``--max-epochs``, patience ``--patience``). For OneRank the test set is also scored with
the request ids shuffled (rows regrouped at random into requests of the same sizes),
``*_shuffled``: its set advantage should vanish there.

Summary: mean ± sample std over seeds per model, and per OneRank variant the paired
difference to MMoE (same seed, same data) with a 95 % t interval.

Run ``python benchmarks/onerank_requests.py --datasets synthetic synthetic_null --seeds 5``
and ``--datasets movielens --seeds 5``; writes ``benchmarks/results/onerank_requests.json``
(``--out`` renames it; ``--merge`` joins parts). The stored file merges parts run side by side
(the exact commands are in ``benchmarks/README.md``; the parts' commits are under ``parts``).
"""

from __future__ import annotations

import argparse
import sys
import time

import _common
import numpy as np
import pandas as pd
import torch
from funnel_models import ARCHITECTURES, load_movielens
from scipy import stats

MODELS = ("OneRank-add", "OneRank-type", "OneRank-attention", "MMoE")
COMMON = {"embedding_dim": 16, "lr": 1e-3, "optimizer": "adam", "early_stopping": False}
ONERANK = {"d_model": 32, "n_layers": 2, "n_heads": 2, "max_history": 50}
CONTEXT = {"synthetic": ["user"], "synthetic_null": ["user"], "movielens": ["user_id", "gender", "occupation", "age"]}


class Data(dict):
    __getattr__ = dict.__getitem__


def synthetic_requests(seed: int, set_dependence: float) -> Data:
    from sklearn_mtr.datasets import make_request_classification

    sizes = {"train": 1000, "valid": 200, "test": 500}
    X, Y, groups = make_request_classification(
        n_requests=sum(sizes.values()), request_size=20, set_dependence=set_dependence, as_frame=True, random_state=seed
    )
    data, start = Data(description=f"make_request_classification(set_dependence={set_dependence})"), 0
    for part, n in sizes.items():
        rows = (groups >= start) & (groups < start + n)
        start += n
        data[f"X_{part}"] = X[rows].reset_index(drop=True)
        data[f"Y_{part}"] = Y[rows].reset_index(drop=True)
        data[f"requests_{part}"] = groups[rows]
    return data


def movielens_requests() -> Data:
    """Per-user temporal split, requests = user x day, history = earlier days' movies."""
    split = load_movielens(per_user=True)
    n_train, n_valid = len(split.X_train), len(split.X_valid)
    X = pd.concat([split.X_train, split.X_valid, split.X_test], ignore_index=True)
    path = _common.require_data("movielens_100k", ("ratings.csv.gz",))
    ratings = pd.read_csv(path / "ratings.csv.gz")
    # the loader's row order: (part, timestamp, user, movie); recompute it to get timestamps
    ratings = ratings.sort_values(["timestamp", "user_id", "movie_id"], kind="stable").reset_index(drop=True)
    size = ratings.groupby("user_id")["user_id"].transform("size").to_numpy()
    pos = ratings.groupby("user_id").cumcount().to_numpy()
    n_te, n_va = np.floor(0.2 * size).astype(int), np.floor(0.1 * size).astype(int)
    ratings["_part"] = np.where(pos >= size - n_te, 2, np.where(pos >= size - n_te - n_va, 1, 0))
    ratings = ratings.sort_values(["_part", "timestamp", "user_id", "movie_id"], kind="stable").reset_index(drop=True)
    assert (ratings["user_id"].astype(str).to_numpy() == X["user_id"].astype(str).to_numpy()).all()
    day = (ratings["timestamp"] // 86400).to_numpy()
    user = ratings["user_id"].to_numpy()
    request = pd.factorize(pd.Series(user).astype(str) + "@" + pd.Series(day).astype(str))[0]
    # history: the movies of the user's earlier days, in time order over all parts
    chrono = np.lexsort((ratings["movie_id"].to_numpy(), user, ratings["timestamp"].to_numpy()))
    history = [None] * len(ratings)
    earlier, today = {}, {}
    for i in chrono:
        u, d, m = user[i], day[i], str(ratings["movie_id"].iat[i])
        current, items = today.get(u, (None, []))
        if current != d:
            earlier.setdefault(u, []).extend(items)
            today[u] = (d, [])
        history[i] = earlier.get(u, [])[-50:]
        today[u][1].append(m)
    X["history"] = pd.Series(history, dtype=object).to_numpy()
    data = Data(description=split.description + "; per-user split; requests = user x day; history = earlier days")
    for part, sl in {
        "train": slice(0, n_train),
        "valid": slice(n_train, n_train + n_valid),
        "test": slice(n_train + n_valid, None),
    }.items():
        data[f"X_{part}"] = X.iloc[sl].reset_index(drop=True)
        data[f"Y_{part}"] = split[f"Y_{part}"].reset_index(drop=True)
        data[f"requests_{part}"] = request[sl]
        data[f"users_{part}"] = user[sl]
    return data


def make_estimator(model: str, seed: int, dataset: str, args):
    import sklearn_mtr

    extra = {"sequence_features": {"history": "movie_id"}} if dataset == "movielens" else {}
    if model.startswith("OneRank"):
        return sklearn_mtr.OneRankClassifier(
            **ONERANK,
            candidate_access=model.split("-")[1],
            context_features=CONTEXT[dataset],
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


def shuffled_requests(requests: np.ndarray, seed: int) -> np.ndarray:
    """The same request sizes, rows assigned to them at random."""
    return np.random.default_rng(seed).permutation(requests)


def run_one(model: str, seed: int, dataset: str, data: Data, args) -> dict:
    from sklearn_mtr.metrics import group_auc_score, per_task_roc_auc

    torch.manual_seed(seed)
    clf = make_estimator(model, seed, dataset, args)
    grouped = model.startswith("OneRank")

    def proba(part, requests=None):
        if grouped:
            return clf.predict_proba(
                data[f"X_{part}"], groups=data[f"requests_{part}"] if requests is None else requests
            )
        return clf.predict_proba(data[f"X_{part}"])

    t0 = time.perf_counter()
    selection = _common.fit_select_on_valid(
        clf,
        lambda: clf.partial_fit(data.X_train, data.Y_train, **({"groups": data.requests_train} if grouped else {})),
        lambda: _common.valid_mean_auc(data.Y_valid, proba("valid")),
        args.max_epochs,
        args.patience,
    )
    fit_seconds = time.perf_counter() - t0
    Y = data.Y_test.to_numpy(dtype=float)
    tasks = list(data.Y_test.columns)

    def metrics(P, suffix=""):
        out = {
            f"auc{suffix}": dict(zip(tasks, map(float, per_task_roc_auc(Y, P)))),
            f"gauc_request{suffix}": dict(zip(tasks, map(float, group_auc_score(Y, P, data.requests_test)))),
        }
        if "users_test" in data:
            out[f"gauc_user{suffix}"] = dict(zip(tasks, map(float, group_auc_score(Y, P, data.users_test))))
        return out

    out = {"seed": seed, **metrics(np.asarray(proba("test"), dtype=float))}
    if grouped:
        shuffled = shuffled_requests(data.requests_test, seed)
        # a shuffled request takes the request-level columns of its first row
        first = pd.Series(np.arange(len(shuffled))).groupby(shuffled).transform("first").to_numpy()
        X = data.X_test.copy()
        for column in [*CONTEXT[dataset], *(["history"] if dataset == "movielens" else [])]:
            X[column] = data.X_test[column].iloc[first].to_numpy()
        P = clf.predict_proba(X, groups=shuffled)
        out.update(metrics(np.asarray(P, dtype=float), "_shuffled"))
    n_params = sum(p.numel() for p in clf.net_.module_.parameters())
    return {**out, **selection, "fit_seconds": fit_seconds, "parameters": n_params}


def paired(diffs) -> dict:
    """Mean of paired differences with a 95 % t interval (None below 2 pairs)."""
    d = np.asarray(diffs, dtype=float)
    mean = float(d.mean())
    if len(d) < 2:
        return {"mean": mean, "ci95": None, "n": len(d), "values": d.tolist()}
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": len(d), "values": d.tolist()}


def summarise_dataset(entry: dict) -> None:
    """Per model mean ± std of every metric; per OneRank variant the paired difference to MMoE."""
    tasks = entry["tasks"]
    for res in entry["models"].values():
        runs = res["runs"]
        res["summary"] = {
            metric: {t: _common.summary([r[metric][t] for r in runs]) for t in tasks}
            for metric in runs[0]
            if isinstance(runs[0][metric], dict) and set(runs[0][metric]) == set(tasks)
        }
    base = entry["models"].get("MMoE")
    if base is None:
        return
    by_seed = {r["seed"]: r for r in base["runs"]}
    for name, res in entry["models"].items():
        if name == "MMoE":
            continue
        runs = [r for r in res["runs"] if r["seed"] in by_seed]
        res["vs_MMoE"] = {
            metric: {
                t: paired([r[metric][t] - by_seed[r["seed"]][metric.removesuffix("_shuffled")][t] for r in runs])
                for t in tasks
            }
            for metric in res["summary"]
            if runs
        }


def merge(names: list[str], out: str) -> dict:
    """One result file from several parts (other seeds, models or data sets)."""
    import json

    merged = {"description": __doc__, "parts": [], "datasets": {}}
    for name in names:
        part = json.loads((_common.RESULTS_DIR / f"{name}.json").read_text())
        # a part that is itself a merge contributes its own parts
        merged["parts"] += part.get("parts") or [
            {"name": name, "args": part.get("args"), "environment": part.get("environment")}
        ]
        for dataset, entry in part["datasets"].items():
            target = merged["datasets"].setdefault(dataset, {k: v for k, v in entry.items() if k != "models"})
            target.setdefault("models", {})
            for model, res in entry["models"].items():
                runs = target["models"].setdefault(model, {"runs": []})["runs"]
                seen = {r["seed"] for r in runs}
                runs.extend(r for r in res["runs"] if r["seed"] not in seen)
    for entry in merged["datasets"].values():
        summarise_dataset(entry)
    _common.write_results(out, merged)
    return merged


def report(results: dict) -> None:
    for dataset, entry in results["datasets"].items():
        print(f"\n{dataset}")
        for model, res in entry["models"].items():
            cells = [
                f"{metric} {t}: {_common.mean_std(res['summary'][metric][t]['values'])}"
                for metric in res["summary"]
                for t in entry["tasks"]
            ]
            print(f"  {model:18s} " + " | ".join(cells))
            for metric, per_task in res.get("vs_MMoE", {}).items():
                cells = []
                for t, p in per_task.items():
                    ci = "" if p["ci95"] is None else f" [{p['ci95'][0]:+.4f}, {p['ci95'][1]:+.4f}]"
                    cells.append(f"{t} {p['mean']:+.4f}{ci}")
                print(f"    - MMoE {metric}: " + " | ".join(cells))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["synthetic", "synthetic_null"],
        choices=["synthetic", "synthetic_null", "movielens"],
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed-start", type=int, default=0, help="first seed (to add seeds to an earlier run)")
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--out", default="onerank_requests")
    parser.add_argument("--merge", nargs="+", default=None, help="merge these result files (names) into --out")
    args = parser.parse_args(argv)
    if args.merge:
        report(merge(args.merge, args.out))
        return 0
    torch.set_num_threads(1)
    results = {"description": __doc__, "args": vars(args), "datasets": {}}
    for dataset in args.datasets:
        entry = {"models": {}}
        results["datasets"][dataset] = entry
        ml = movielens_requests() if dataset == "movielens" else None
        # seeds outermost: a cut-short run still holds paired seeds for every model
        for seed in range(args.seed_start, args.seed_start + args.seeds):
            data = ml if ml is not None else synthetic_requests(seed, 0.0 if dataset == "synthetic_null" else 1.0)
            entry.update(description=data["description"], tasks=list(data.Y_test.columns))
            sizes = pd.Series(data.requests_train).value_counts()
            entry["train_requests"] = {"n": len(sizes), "mean_size": float(sizes.mean()), "max_size": int(sizes.max())}
            for model in args.models:
                run = run_one(model, seed, dataset, data, args)
                entry["models"].setdefault(model, {"runs": []})["runs"].append(run)
                print(
                    f"{dataset} {model} seed {seed}: gauc {run['gauc_request']} epoch {run['best_epoch']} "
                    f"({run['fit_seconds']:.0f}s)",
                    flush=True,
                )
                summarise_dataset(entry)
                _common.write_results(args.out, results)  # partial results survive an interrupted run
    path = _common.write_results(args.out, results)
    report(results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
