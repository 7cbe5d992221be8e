"""Fit and predict throughput of ``MMoEClassifier`` / ``PLEClassifier`` against a plain torch
loop and torch-rechub, on Census-Income.

Two configurations, each run for MMoE and for PLE, every contender building the same
architecture (batch norm in every expert and tower layer, as torch-rechub's ``MLP`` always
adds it):

- ``rechub``: torch-rechub's own Census-Income example: embeddings of 4, batch 1024, Adam
  lr 1e-3 with weight decay 1e-4; MMoE 8 experts of [16] and towers [8]; PLE one level with
  2 task-specific experts per task and 1 shared expert of [16], towers [8].
- ``large``: the compute-bound configuration of ``flops_mmoe.py``: embeddings of 16, batch
  2048, Adam lr 1e-3; MMoE 8 experts of [256, 128] and towers [64]; PLE two levels with 1
  task-specific and 1 shared expert of [256, 128], towers [64].

Contenders, timed in interleaved rounds (ours, plain, rechub, ours, ...) so the noise of a
shared machine hits them alike:

- ``ours``: ``fit(X, Y)`` on the DataFrames, end to end (feature encoding, module
  construction, the skorch loop); ``predict_proba(X)`` on the DataFrame, end to end.
  ``ours_loop``: the same fits' training loop alone (sum of ``history_[:, "dur"]``).
- ``plain``: the very module the estimator builds (deep-copied, re-initialised), trained by a
  hand-written loop over the pre-encoded tensors (shuffled index slicing, Adam,
  BCE-with-logits averaged over tasks); predicting in batches of 4096 under ``no_grad``.
  The floor that shows the estimator's overhead.
- ``rechub``: torch-rechub's ``MMOE`` / ``PLE`` on the same encoded columns, trained by
  ``MTLTrainer.train_one_epoch`` on its ``DataGenerator`` loader and predicted by
  ``MTLTrainer.predict`` on a ``PredictDataset`` loader of batch 4096 (ours predicts in
  batches of 4096 too). Its data loaders (per-sample indexing and collation) are part of its
  fit and predict, so they are timed; model building is not.
- ``ours_bf16``: ``ours`` with ``precision="bf16"`` (bfloat16 autocast, fast on CPUs with
  AVX512-BF16 or AMX). Other numerics, so it is reported beside the targets, not against them.

Each round also records every contender's mean training AUC after its epoch, to show that all
did the same work.

Run ``python benchmarks/throughput_census.py --threads 1`` (all 199,523 training rows, one
epoch per round, 5 rounds; about 20 min on 2 CPU cores) or ``--quick``. Writes
``benchmarks/results/throughput_census.json`` (``throughput_census_quick.json`` with
``--quick``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import os
import statistics
import sys
import time
import traceback

os.environ.setdefault("TQDM_DISABLE", "1")  # torch-rechub's per-batch progress bars

import _common
import numpy as np
import torch
import torch.nn.functional as F

from sklearn_mtr.metrics import per_task_roc_auc

TASKS = ["income", "never_married"]
PREDICT_BATCH = 4096  # what predict_proba uses for batch sizes up to 4096

CONFIGURATIONS = {
    "rechub": {
        "description": "torch-rechub's Census-Income example (embeddings 4, batch 1024, weight decay 1e-4)",
        "embedding_dim": 4,
        "batch_size": 1024,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "mmoe": {"n_experts": 8, "expert_hidden_sizes": [16], "tower_hidden_sizes": [8]},
        "ple": {
            "n_levels": 1,
            "n_task_experts": 2,
            "n_shared_experts": 1,
            "expert_hidden_sizes": [16],
            "tower_hidden_sizes": [8],
        },
    },
    "large": {
        "description": "compute-bound (embeddings 16, batch 2048, experts [256, 128])",
        "embedding_dim": 16,
        "batch_size": 2048,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "mmoe": {"n_experts": 8, "expert_hidden_sizes": [256, 128], "tower_hidden_sizes": [64]},
        "ple": {
            "n_levels": 2,
            "n_task_experts": 1,
            "n_shared_experts": 1,
            "expert_hidden_sizes": [256, 128],
            "tower_hidden_sizes": [64],
        },
    },
}
MODELS = ("mmoe", "ple")


def load_data(n_rows: int | None, seed: int = 0):
    from sklearn_mtr.datasets import load_census_income

    bunch = load_census_income(_common.census_dir())
    X, Y = bunch.X_train, bunch.Y_train[TASKS]
    if n_rows is not None and n_rows < len(X):
        idx = np.sort(np.random.RandomState(seed).choice(len(X), n_rows, replace=False))
        X, Y = X.iloc[idx].reset_index(drop=True), Y.iloc[idx].reset_index(drop=True)
    return X, Y


def n_params(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


# --------------------------------------------------------------------------- ours


def make_ours(model: str, cfg: dict, seed: int, precision: str = "fp32"):
    from sklearn_mtr import MMoEClassifier, PLEClassifier

    arch = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg[model].items()}
    cls = MMoEClassifier if model == "mmoe" else PLEClassifier
    return cls(
        **arch,
        batch_norm=True,
        embedding_dim=cfg["embedding_dim"],
        batch_size=cfg["batch_size"],
        lr=cfg["lr"],
        weight_decay=cfg["weight_decay"],
        optimizer="adam",
        max_epochs=1,
        early_stopping=False,
        random_state=seed,
        verbose=0,
        device="cpu",
        precision=precision,
    )


def fit_ours(clf, X, Y) -> tuple[float, float]:
    """(end-to-end seconds, training-loop seconds from ``history_``)."""
    t0 = time.perf_counter()
    clf.fit(X, Y)
    return time.perf_counter() - t0, float(sum(clf.history_[:, "dur"]))


def predict_ours(clf, X) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    proba = clf.predict_proba(X)
    return time.perf_counter() - t0, proba


# --------------------------------------------------------------------------- plain loop


def fresh_copy(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Same architecture, freshly initialised parameters."""
    torch.manual_seed(seed)
    module = copy.deepcopy(module)
    module.apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
    return module


def logits_of(out):
    """The module returns logits, or (logits, auxiliary loss) / a dict: take the logits."""
    if isinstance(out, dict):
        return out["logits"]
    if isinstance(out, (tuple, list)):
        return out[0]
    return out


def fit_plain(module, batch: dict, Y: torch.Tensor, cfg: dict, seed: int, max_batches: int | None = None) -> float:
    # Adam with coupled L2 as torch-rechub's trainer uses it; ours uses AdamW: the same cost.
    opt = torch.optim.Adam(module.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    gen = torch.Generator().manual_seed(seed)
    bs, n = cfg["batch_size"], Y.shape[0]
    module.train()
    t0 = time.perf_counter()
    perm = torch.randperm(n, generator=gen)
    for b, start in enumerate(range(0, n, bs)):
        if max_batches is not None and b >= max_batches:
            break
        idx = perm[start : start + bs]
        loss = F.binary_cross_entropy_with_logits(logits_of(module({k: v[idx] for k, v in batch.items()})), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def predict_plain(module, batch: dict) -> tuple[float, np.ndarray]:
    n = next(iter(batch.values())).shape[0]
    module.eval()
    t0 = time.perf_counter()
    out = []
    with torch.no_grad():
        for start in range(0, n, PREDICT_BATCH):
            part = {k: v[start : start + PREDICT_BATCH] for k, v in batch.items()}
            out.append(torch.sigmoid(logits_of(module(part))).numpy())
    proba = np.concatenate(out)
    return time.perf_counter() - t0, proba


# --------------------------------------------------------------------------- torch-rechub


def rechub_inputs(batch: dict, cardinalities, embedding_dim: int):
    """Our encoded batch -> torch-rechub feature objects and its dict-of-arrays input."""
    from torch_rechub.basic.features import DenseFeature, SparseFeature

    features, x = [], {}
    if "categorical" in batch:
        cat = batch["categorical"].numpy()
        for j in range(cat.shape[1]):
            features.append(SparseFeature(f"c{j}", vocab_size=int(cardinalities[j]), embed_dim=embedding_dim))
            x[f"c{j}"] = np.ascontiguousarray(cat[:, j])  # a DataFrame column, as df_to_dict gives
    if "numeric" in batch:
        num = batch["numeric"].numpy()
        for j in range(num.shape[1]):
            features.append(DenseFeature(f"n{j}"))
            x[f"n{j}"] = np.ascontiguousarray(num[:, j])
    return features, x


def build_rechub(model: str, features, cfg: dict, seed: int):
    from torch_rechub.models.multi_task import MMOE, PLE
    from torch_rechub.trainers import MTLTrainer

    torch.manual_seed(seed)
    # SparseFeature caches its nn.Embedding on the feature object: copy the objects so that
    # every repetition gets fresh tables.
    features = copy.deepcopy(features)
    for f in features:
        if hasattr(f, "embed"):
            del f.embed
    arch, task_types = cfg[model], ["classification"] * len(TASKS)
    towers = [{"dims": list(arch["tower_hidden_sizes"])} for _ in TASKS]
    experts = {"dims": list(arch["expert_hidden_sizes"])}
    if model == "mmoe":
        net = MMOE(features, task_types, n_expert=arch["n_experts"], expert_params=experts, tower_params_list=towers)
    else:
        net = PLE(
            features,
            task_types,
            n_level=arch["n_levels"],
            n_expert_specific=arch["n_task_experts"],
            n_expert_shared=arch["n_shared_experts"],
            expert_params=experts,
            tower_params_list=towers,
        )
    trainer = MTLTrainer(
        net,
        task_types=task_types,
        optimizer_fn=torch.optim.Adam,
        optimizer_params={"lr": cfg["lr"], "weight_decay": cfg["weight_decay"]},
        n_epoch=1,
        device="cpu",
        model_path=os.devnull,
    )
    return net, trainer


def fit_rechub(trainer, x: dict, y: np.ndarray, cfg: dict, seed: int, max_batches: int | None = None) -> float:
    from torch.utils.data import DataLoader, Subset
    from torch_rechub.utils.data import DataGenerator

    torch.manual_seed(seed)
    dataset = DataGenerator(x, y).dataset
    if max_batches is not None:
        dataset = Subset(dataset, range(min(len(y), max_batches * cfg["batch_size"])))
    loader = DataLoader(dataset, batch_size=cfg["batch_size"], shuffle=True)
    # train_one_epoch prints its loss once per epoch: send that to /dev/null
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        t0 = time.perf_counter()
        trainer.train_one_epoch(loader)
        return time.perf_counter() - t0


def predict_rechub(trainer, net, x: dict) -> tuple[float, np.ndarray]:
    from torch.utils.data import DataLoader
    from torch_rechub.utils.data import PredictDataset

    loader = DataLoader(PredictDataset(x), batch_size=PREDICT_BATCH, shuffle=False)
    t0 = time.perf_counter()
    proba = np.asarray(trainer.predict(net, loader))
    return time.perf_counter() - t0, proba


# --------------------------------------------------------------------------- one cell


def run_cell(model: str, name: str, X, Y, rounds: int, use_rechub: bool) -> dict:
    """Every contender's fit and predict seconds for one (model, configuration)."""
    cfg = CONFIGURATIONS[name]
    n = len(X)
    # Untimed warm-up fit: the encoded tensors (for plain and rechub) and the module template.
    warm = make_ours(model, cfg, 0)
    fit_ours(warm, X, Y)
    batch = warm.feature_encoder_.transform(X)
    Yt = torch.tensor(Y.to_numpy(dtype=np.float32))
    template = warm.net_.module_
    cards = list(warm.feature_encoder_.schema_.categorical_cardinalities)
    fit_plain(fresh_copy(template, 0), batch, Yt, cfg, 0, max_batches=2)
    predict_ours(warm, X.iloc[:PREDICT_BATCH])

    arch = {"ours_parameters": n_params(template)}
    contenders, rechub_error = ["ours", "plain"], None
    if use_rechub:
        try:
            features, x_rh = rechub_inputs(batch, cards, cfg["embedding_dim"])
            y_rh = np.array(Y.to_numpy(dtype=np.float32))  # writable copy
            net, trainer = build_rechub(model, features, cfg, 0)
            fit_rechub(trainer, x_rh, y_rh, cfg, 0, max_batches=2)  # warm-up / smoke
            arch["rechub_parameters"] = n_params(net)
            contenders.append("rechub")
        except Exception as exc:
            rechub_error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            print(f"torch-rechub unavailable: {rechub_error}", flush=True)

    contenders.append("ours_bf16")  # bfloat16 autocast: other numerics, reported apart from the targets
    seconds = {"fit": {c: [] for c in [*contenders, "ours_loop"]}, "predict": {c: [] for c in contenders}}
    train_auc = {c: [] for c in contenders}
    for r in range(rounds):
        seed = 1000 + r
        for c in contenders:
            gc.collect()
            if c in ("ours", "ours_bf16"):
                clf = make_ours(model, cfg, seed, "bf16" if c == "ours_bf16" else "fp32")
                fit_s, loop_s = fit_ours(clf, X, Y)
                if c == "ours":
                    seconds["fit"]["ours_loop"].append(loop_s)
                pred_s, proba = predict_ours(clf, X)
                del clf
            elif c == "plain":
                module = fresh_copy(template, seed)
                fit_s = fit_plain(module, batch, Yt, cfg, seed)
                pred_s, proba = predict_plain(module, batch)
                del module
            else:
                net, trainer = build_rechub(model, features, cfg, seed)
                fit_s = fit_rechub(trainer, x_rh, y_rh, cfg, seed)
                pred_s, proba = predict_rechub(trainer, net, x_rh)
                del net, trainer
            # every contender predicted every row, one probability per task
            assert proba.shape == (n, len(TASKS)), (c, proba.shape)
            seconds["fit"][c].append(fit_s)
            seconds["predict"][c].append(pred_s)
            # the same work was done: one epoch learns about as well in every contender
            train_auc[c].append(float(np.mean(per_task_roc_auc(Y.to_numpy(dtype=float), proba))))
            print(
                f"{model:>4} {name:>6} round {r + 1}/{rounds} {c:>6}: fit {fit_s:7.2f} s "
                f"({n / fit_s:8.0f}/s)  predict {pred_s:6.2f} s ({n / pred_s:9.0f}/s)",
                flush=True,
            )

    rates = {phase: {c: [n / s for s in v] for c, v in per.items() if v} for phase, per in seconds.items()}
    ratios = {}
    for phase, per in rates.items():
        for mine in ("ours", "ours_loop", "ours_bf16"):
            for other in ("plain", "rechub"):
                if mine in per and other in per:
                    ratios[f"{phase} {mine}/{other}"] = statistics.median(a / b for a, b in zip(per[mine], per[other]))
    return {
        "model": model,
        "configuration": name,
        "architecture": arch,
        "seconds": seconds,
        "samples_per_second": {phase: {c: _common.summary(v) for c, v in per.items()} for phase, per in rates.items()},
        "median_samples_per_second": {
            phase: {c: statistics.median(v) for c, v in per.items()} for phase, per in rates.items()
        },
        "ratios_median_of_rounds": ratios,
        "train_mean_auc": {c: _common.summary(v) for c, v in train_auc.items()},
        "torch_rechub_error": rechub_error,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 8192 rows, 2 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; 2 with --quick)")
    parser.add_argument("--rows", type=int, default=None, help="rows (default: all 199,523; 8192 with --quick)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--configurations", nargs="+", choices=list(CONFIGURATIONS), default=list(CONFIGURATIONS))
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--no-rechub", action="store_true", help="skip torch-rechub")
    parser.add_argument("--output", default=None, help="results name (default throughput_census[_quick])")
    args = parser.parse_args(argv)

    rounds = args.rounds or (2 if args.quick else 5)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    name = args.output or ("throughput_census_quick" if args.quick else "throughput_census")
    X, Y = load_data(args.rows or (8192 if args.quick else None))
    print(f"Census-Income train rows: {len(X)}, rounds: {rounds}, torch threads: {threads}", flush=True)

    try:
        from importlib.metadata import version

        rechub_version = version("torch-rechub")
    except Exception:
        rechub_version = None
    cells = []
    payload = {
        "config": {
            "rows": len(X),
            "epochs_per_round": 1,
            "rounds": rounds,
            "torch_threads": threads,
            "predict_batch": PREDICT_BATCH,
            "batch_norm": True,
            "order": "per (model, configuration): interleaved rounds of ours, plain, rechub",
        },
        "configurations": CONFIGURATIONS,
        "contenders": {
            "ours": "fit(X_df, Y_df) / predict_proba(X_df), end to end (encoding included)",
            "ours_loop": "sum of history_[:, 'dur'] of the same fits (the training loop alone)",
            "ours_bf16": "the same as ours with precision='bf16' (bfloat16 autocast on the CPU): other "
            "numerics, so not counted against the targets",
            "plain": "same module (deepcopy + reset_parameters), hand-written loop on pre-encoded tensors",
            "rechub": "torch_rechub MMOE / PLE + MTLTrainer.train_one_epoch on DataGenerator's DataLoader, "
            "MTLTrainer.predict on a PredictDataset DataLoader (per-sample indexing + default collate); "
            "its gates add BatchNorm before the softmax",
        },
        "torch_rechub_version": rechub_version,
        "cells": cells,
    }
    for model in args.models:
        for configuration in args.configurations:
            cells.append(run_cell(model, configuration, X, Y, rounds, not args.no_rechub))
            path = _common.write_results(name, payload)  # resumable reading: written after each cell

    rows = []
    for cell in cells:
        for phase, med in cell["median_samples_per_second"].items():
            ratios = cell["ratios_median_of_rounds"]
            rows.append(
                [
                    cell["model"],
                    cell["configuration"],
                    phase,
                    *(
                        f"{med[c]:,.0f}" if c in med else ""
                        for c in ("ours", "ours_loop", "plain", "rechub", "ours_bf16")
                    ),
                    *(
                        f"{ratios[k]:.2f}" if k in ratios else ""
                        for k in (f"{phase} ours/plain", f"{phase} ours/rechub")
                    ),
                ]
            )
    print()
    print(
        _common.markdown_table(
            [
                "model",
                "configuration",
                "phase",
                "ours",
                "ours loop",
                "plain",
                "rechub",
                "ours bf16",
                "ours/plain",
                "ours/rechub",
            ],
            rows,
        )
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
