"""Accuracy of GRec against MMoE and PLE on Census-Income (KDD) and MovieLens-100K.

- ``census``: Census-Income (KDD) as in ``funnel_models.py`` / ``census_baselines.py``
  (tasks income and never-married; official train, official test halved into validation
  and test). No text and no sequence: GRec's sentence is context + task tokens.
- ``movielens``: MovieLens-100K as in ``funnel_models.py`` (ratings sorted by time, first
  70 % train / 10 % validation / 20 % test; like = rating >= 4, love = rating == 5), plus
  two columns built here: ``title`` (the movie title, a text feature) and ``history``
  (the ids of the movies the user rated strictly before this rating's timestamp, the last
  20, a sequence sharing ``movie_id``'s vocabulary). Every model gets the same columns;
  MMoE and PLE mean-pool the history and title embeddings, GRec encodes them with its
  Transformer towers and adds a candidate item token (``movie_id``). Read from
  ``../shared/data`` at run time (GroupLens licence: never stored here).

Protocol (as ``funnel_models.py``): ``partial_fit`` one epoch at a time, keep the epoch with
the best mean validation AUC (patience ``--patience``), report test AUC (and GAUC by user on
MovieLens) per seed, then mean ± sample std over seeds. Seeds vary initialisation and
shuffling; the data split is fixed.

Run ``nice -n 10 python benchmarks/grec_accuracy.py --seeds 3`` (``--datasets``, ``--seed-start``
and ``--output`` split a long run into parts); ``--quick`` is a smoke run. Writes
``benchmarks/results/grec_accuracy.json`` (or ``<output>.json``).
"""

from __future__ import annotations

import argparse
import sys
import time

import _common
import numpy as np
import pandas as pd
import torch
from funnel_models import ARCHITECTURES as FUNNEL_ARCHITECTURES
from funnel_models import _metrics, _summarise, load_census, load_movielens

# early_stopping explicit: the estimators' "auto" default would hold out rows above 10,000.
COMMON = {"embedding_dim": 16, "lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0, "early_stopping": False}


def _grec_default(name: str):
    from sklearn_mtr import GRecClassifier

    return GRecClassifier().get_params()[name]


# the baselines exactly as in funnel_models.py, so the two benchmarks' numbers compare
ARCHITECTURES = {
    "GRec": ("GRecClassifier", {}),
    # the routing modes side by side (the default is one of them)
    "GRec-task": ("GRecClassifier", {"routing": "task"}),
    "GRec-sentence": ("GRecClassifier", {"routing": "sentence"}),
    # ablations of the MovieLens gap to MMoE, against GRec-task: wider tokens (the context
    # token's deep half is d_model / 2 = 16 wide at d_model 32, the default when this was
    # measured; the default is 64 since), and no title tower
    "GRec-task-d64": ("GRecClassifier", {"routing": "task", "d_model": 64}),
    "GRec-task-notitle": ("GRecClassifier", {"routing": "task", "drop_columns": ["title"]}),
    # GRec peaks earlier than MMoE (best epoch 1-2 against 2-3): is its sequence tower (a
    # Transformer over the history, where MMoE mean-pools it) what overfits?
    "GRec-nohistory": ("GRecClassifier", {"drop_columns": ["history"]}),
    # with the history, but movie_id kept in the context token (no candidate item token)
    "GRec-noitem": ("GRecClassifier", {"item_features": []}),
    # the history pooled (mean and max) without the Transformer layer
    "GRec-seq0": ("GRecClassifier", {"n_sequence_layers": 0}),
    # screens of the gap without history (fast): a lower rate, the candidate item token, wider
    # tokens, dropout
    "GRec-nohistory-lr5e-4": ("GRecClassifier", {"drop_columns": ["history"], "lr": 5e-4}),
    "GRec-nohistory-item": ("GRecClassifier", {"drop_columns": ["history"], "item_features": ["movie_id"]}),
    "GRec-nohistory-d128": ("GRecClassifier", {"drop_columns": ["history"], "d_model": 128}),
    "GRec-nohistory-dropout": ("GRecClassifier", {"drop_columns": ["history"], "dropout": 0.2}),
    # the learning-rate grid {5e-4, 1e-3} of the evidence protocol, for GRec and its baseline
    "GRec-lr5e-4": ("GRecClassifier", {"lr": 5e-4}),
    "MMoE-lr5e-4": (FUNNEL_ARCHITECTURES["MMoE"][0], {**FUNNEL_ARCHITECTURES["MMoE"][1], "lr": 5e-4}),
    # null control: MMoE with its losses halved (Adam is scale-invariant): the protocol's resolution
    "MMoE-half": (FUNNEL_ARCHITECTURES["MMoE"][0], {**FUNNEL_ARCHITECTURES["MMoE"][1], "task_weights": [0.5, 0.5]}),
    "MMoE-nohistory": (
        FUNNEL_ARCHITECTURES["MMoE"][0],
        {**FUNNEL_ARCHITECTURES["MMoE"][1], "drop_columns": ["history"]},
    ),
    "MMoE": FUNNEL_ARCHITECTURES["MMoE"],
    "PLE": FUNNEL_ARCHITECTURES["PLE"],
}
HISTORY_LENGTH = 20


def movielens_with_text_and_history() -> dict:
    """``funnel_models.load_movielens()`` plus a ``title`` text and a ``history`` sequence column."""
    data = load_movielens()
    path = _common.require_data("movielens_100k", ("ratings.csv.gz", "items.csv.gz"))
    ratings = pd.read_csv(path / "ratings.csv.gz")
    items = pd.read_csv(path / "items.csv.gz")[["movie_id", "movie_title"]]
    # the same row order as load_movielens (global split, stable sort)
    df = ratings.sort_values(["timestamp", "user_id", "movie_id"], kind="stable").reset_index(drop=True)
    df = df.merge(items, on="movie_id", how="left", sort=False)
    history, seen, last_ts = [], {}, {}
    for user, movie, ts in zip(df["user_id"].to_numpy(), df["movie_id"].to_numpy(), df["timestamp"].to_numpy()):
        past, pending = seen.setdefault(user, []), last_ts.setdefault(user, [])
        # strictly earlier timestamps only: ratings given in the same second are not history
        while pending and pending[0][0] < ts:
            past.append(pending.pop(0)[1])
        history.append([str(m) for m in past[-HISTORY_LENGTH:]])
        pending.append((ts, movie))
    start = 0
    for part in ("train", "valid", "test"):
        X = data[f"X_{part}"]
        rows = slice(start, start + len(X))
        known = X["movie_id"].notna().to_numpy()  # ids unseen in training are missing values in X
        ids = X["movie_id"].astype(str).to_numpy()[known]
        if not (ids == df["movie_id"].iloc[rows].astype(str).to_numpy()[known]).all():
            raise RuntimeError("row order differs from funnel_models.load_movielens")
        X = X.copy()
        X["title"] = df["movie_title"].iloc[rows].fillna("").to_numpy()
        X["history"] = history[rows]
        data[f"X_{part}"] = X
        start += len(X)
    data["description"] += f"; text = movie title; sequence = the user's last {HISTORY_LENGTH} earlier-rated movie ids"
    return data


def make_estimator(model: str, seed: int, dataset: str, args):
    import sklearn_mtr

    cls_name, arch = ARCHITECTURES[model]
    arch = {k: v for k, v in arch.items() if k != "drop_columns"}
    extra = {}
    if dataset == "movielens":
        dropped = ARCHITECTURES[model][1].get("drop_columns", ())
        text = [c for c in ["title"] if c not in dropped]
        sequence = None if "history" in dropped else {"history": "movie_id"}
        extra = {"sequence_features": sequence, "text_features": text}
    return getattr(sklearn_mtr, cls_name)(
        **{**COMMON, **arch}, **extra, batch_size=args.batch_size, max_epochs=1, random_state=seed, device="cpu"
    )


def run_one(model: str, seed: int, dataset: str, data, args, tasks, max_epochs: int) -> dict:

    clf = make_estimator(model, seed, dataset, args)
    dropped = [c for c in ARCHITECTURES[model][1].get("drop_columns", ()) if c in data["X_train"].columns]
    if dropped:
        data = {**data, **{f"X_{p}": data[f"X_{p}"].drop(columns=dropped) for p in ("train", "valid", "test")}}
    t0 = time.perf_counter()
    selection = _common.fit_select_on_valid(
        clf,
        lambda: clf.partial_fit(data["X_train"], data["Y_train"]),
        lambda: _common.valid_mean_auc(data["Y_valid"], clf.predict_proba(data["X_valid"])),
        max_epochs,
        args.patience,
    )
    fit_seconds = time.perf_counter() - t0
    P = np.asarray(clf.predict_proba(data["X_test"]), dtype=float)
    out = _metrics(data["Y_test"].to_numpy(), P, data["groups_test"], args.k, tasks)
    out.update(
        seed=seed,
        **selection,
        fit_seconds=fit_seconds,
        n_parameters=int(sum(p.numel() for p in clf.net_.module_.parameters())),
    )
    if "capacity_dropped_fraction" in clf.history_[-1]:
        out["capacity_dropped_fraction_by_epoch"] = list(clf.history_[:, "capacity_dropped_fraction"])
        out["router_expert_load_last_epoch"] = clf.history_[-1, "router_expert_load"]
    return out


def merge(parts: list[str], output: str, reference: str | None = None) -> dict:
    """One result file from runs written by several invocations (different seeds / datasets)."""

    def model_entry(runs, tasks):
        return {"runs": runs, **_summarise(runs, tasks), "seeds": [r["seed"] for r in runs]}

    top = {} if reference is None else {"reference": reference}  # what the rendered table pairs with
    return _common.merge_parts(parts, output, model_entry, **top)


def print_tables(results: dict) -> None:
    for dataset, info in results["datasets"].items():
        seeds = sorted({r["seed"] for entry in info["models"].values() for r in entry["runs"]})
        print(f"\n### {dataset} (test; mean ± std over seeds {seeds})\n")
        header = ["model"] + [f"AUC {t}" for t in info["tasks"]]
        if dataset == "movielens":
            header += [f"GAUC {t}" for t in info["tasks"]]
        header += ["best epochs", "fit s / seed"]
        rows = []
        for model, entry in info["models"].items():
            runs = entry["runs"]
            cells = [model] + [_common.mean_std([r["auc"][t] for r in runs]) for t in info["tasks"]]
            if dataset == "movielens":
                cells += [_common.mean_std([r["gauc"][t] for r in runs]) for t in info["tasks"]]
            cells += [str([r["best_epoch"] for r in runs]), f"{np.mean([r['fit_seconds'] for r in runs]):.0f}"]
            rows.append(cells)
        print(_common.markdown_table(header, rows))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-start", type=int, default=0, help="first seed (seeds seed_start, seed_start + 1, ...)")
    parser.add_argument("--datasets", nargs="+", choices=("census", "movielens"), default=["movielens", "census"])
    parser.add_argument("--models", nargs="+", choices=list(ARCHITECTURES), default=list(ARCHITECTURES))
    parser.add_argument("--max-epochs", type=int, default=8, help="MovieLens")
    parser.add_argument("--census-max-epochs", type=int, default=4)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=None)
    parser.add_argument("--merge", nargs="+", default=None, help="merge these result files (names) into --output")
    parser.add_argument("--reference", default=None, help="with --merge: the model the rendered table pairs with")
    args = parser.parse_args(argv)
    if args.merge:
        print_tables(merge(args.merge, args.output or "grec_accuracy", args.reference))
        return 0
    if args.quick:
        args.seeds, args.max_epochs, args.census_max_epochs = 1, 1, 1
    torch.set_num_threads(1)
    name = args.output or ("grec_accuracy_quick" if args.quick else "grec_accuracy")
    results: dict = {
        "config": {
            "seeds": list(range(args.seed_start, args.seed_start + args.seeds)),
            "max_epochs": {"movielens": args.max_epochs, "census": args.census_max_epochs},
            "patience": args.patience,
            "selection": "partial_fit one epoch at a time; keep the epoch with the best mean valid AUC",
            "batch_size": args.batch_size,
            "common": COMMON,
            "architectures": {m: {"estimator": c, **p} for m, (c, p) in ARCHITECTURES.items() if m in args.models},
            "grec": f"GRecClassifier defaults (d_model {_grec_default('d_model')}, 4 experts, top-1, capacity 1.25) "
            "unless the variant says",
            "std": "sample standard deviation (ddof=1) over seeds; data fixed, seeds vary init and shuffling",
            "torch_threads": 1,
        },
        "datasets": {},
    }
    started = time.perf_counter()
    for dataset in args.datasets:
        data = load_census() if dataset == "census" else movielens_with_text_and_history()
        if args.quick:
            for part, n in (("train", 4000), ("valid", 2000), ("test", 2000)):
                data[f"X_{part}"] = data[f"X_{part}"].iloc[:n].reset_index(drop=True)
                data[f"Y_{part}"] = data[f"Y_{part}"].iloc[:n].reset_index(drop=True)
                if data[f"groups_{part}"] is not None:
                    data[f"groups_{part}"] = data[f"groups_{part}"][:n]
        tasks = list(data["Y_train"].columns)
        max_epochs = args.census_max_epochs if dataset == "census" else args.max_epochs
        info = {
            "description": data["description"],
            "tasks": tasks,
            "rows": {p: len(data[f"X_{p}"]) for p in ("train", "valid", "test")},
            "max_epochs": max_epochs,
            "models": {},
        }
        results["datasets"][dataset] = info
        runs_of: dict = {model: [] for model in args.models}
        # seeds outermost: an interrupted run still compares the models
        for seed in range(args.seed_start, args.seed_start + args.seeds):
            for model in args.models:
                res = run_one(model, seed, dataset, data, args, tasks, max_epochs)
                runs = runs_of[model]
                runs.append(res)
                print(
                    f"{dataset:>9} {model:>5} seed {seed}: AUC "
                    + " / ".join(f"{res['auc'][t]:.4f}" for t in tasks)
                    + (", GAUC " + " / ".join(f"{res['gauc'][t]:.4f}" for t in tasks) if "gauc" in res else "")
                    + f", best epoch {res['best_epoch']}/{res['epochs_trained']}, fit {res['fit_seconds']:.0f} s"
                    + f" (elapsed {time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
                info["models"][model] = {"runs": runs, **_summarise(runs, tasks)}
                _common.write_results(name, results)
    results["total_seconds"] = time.perf_counter() - started
    path = _common.write_results(name, results)
    print_tables(results)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
