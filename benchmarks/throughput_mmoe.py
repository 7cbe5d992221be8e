"""Fit throughput of ``MMoEClassifier`` against a plain torch loop and torch-rechub.

Three contenders train the same MMoE configuration on the Census-Income (KDD) training
rows (8 experts of [256, 128], towers [64], embeddings of 16, batch 2048, Adam lr 1e-3):

- ``ours``: ``MMoEClassifier.fit(X, Y)`` on the DataFrames, end to end (feature encoding,
  module construction, skorch training loop). The training loop alone (the sum of the
  epoch durations in ``history_``) is reported as well.
- ``plain``: the very torch module the estimator builds (deep-copied and re-initialised),
  trained in a hand-written loop on the already encoded tensors: shuffled index slicing,
  Adam, BCE-with-logits averaged over the tasks, zero_grad / backward / step. This is the
  floor that shows the wrapper's overhead.
- ``rechub``: torch-rechub's ``MMOE`` trained by ``MTLTrainer.train_one_epoch`` on a
  ``DataGenerator`` data loader, with the same encoded columns given as ``SparseFeature``
  (embed_dim 16) and ``DenseFeature`` objects. Its data loader (per-sample indexing and
  collation) is part of what is timed, as it is part of its fit.

Each contender trains on the same number of samples per repetition; the repetitions are
interleaved (ours, plain, rechub, ours, plain, rechub, ...) so that the noise of a shared
machine hits all of them alike. Reported: median samples/s per contender and the ratios
ours/plain and ours/rechub (of the medians and, more robust, the median of the per-round
ratios).

Run ``python benchmarks/throughput_mmoe.py`` (full) or ``--quick`` (a few thousand rows).
Writes ``benchmarks/results/throughput_mmoe.json`` (``throughput_mmoe_quick.json`` with
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

CONFIG = {
    "n_experts": 8,
    "expert_hidden_sizes": [256, 128],
    "tower_hidden_sizes": [64],
    "embedding_dim": 16,
    "batch_size": 2048,
    "lr": 1e-3,
    "optimizer": "adam",
    "weight_decay": 0.0,
}
TASKS = ["income", "never_married"]


# --------------------------------------------------------------------------- data


def load_data(quick: bool, n_rows: int | None, seed: int = 0):
    from sklearn_mtr.datasets import load_census_income

    bunch = load_census_income(_common.census_dir())
    X, Y = bunch.X_train, bunch.Y_train[TASKS]
    if n_rows is None and quick:
        n_rows = 8192
    if n_rows is not None and n_rows < len(X):
        idx = np.random.RandomState(seed).choice(len(X), n_rows, replace=False)
        idx.sort()
        X = X.iloc[idx].reset_index(drop=True)
        Y = Y.iloc[idx].reset_index(drop=True)
    return X, Y


# --------------------------------------------------------------------------- ours


def make_ours(max_epochs: int, random_state: int):
    from sklearn_mtr import MMoEClassifier

    return MMoEClassifier(
        n_experts=CONFIG["n_experts"],
        expert_hidden_sizes=tuple(CONFIG["expert_hidden_sizes"]),
        tower_hidden_sizes=tuple(CONFIG["tower_hidden_sizes"]),
        embedding_dim=CONFIG["embedding_dim"],
        batch_size=CONFIG["batch_size"],
        lr=CONFIG["lr"],
        optimizer=CONFIG["optimizer"],
        max_epochs=max_epochs,
        early_stopping=False,
        random_state=random_state,
        verbose=0,
        device="cpu",
    )


def history_train_seconds(clf) -> float | None:
    """Sum of the per-epoch durations skorch recorded (training loop only)."""
    try:
        return float(sum(clf.history_[:, "dur"]))
    except Exception:
        try:
            return float(sum(clf.net_.history[:, "dur"]))
        except Exception:
            return None


def run_ours(X, Y, epochs: int, seed: int) -> dict:
    clf = make_ours(epochs, seed)
    t0 = time.perf_counter()
    clf.fit(X, Y)
    wall = time.perf_counter() - t0
    return {"seconds": wall, "train_loop_seconds": history_train_seconds(clf), "clf": clf}


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


def run_plain(module, batch: dict, Y: torch.Tensor, epochs: int, seed: int, max_batches: int | None = None) -> dict:
    opt = torch.optim.Adam(module.parameters(), lr=CONFIG["lr"])
    gen = torch.Generator().manual_seed(seed)
    bs = CONFIG["batch_size"]
    n = Y.shape[0]
    module.train()
    seen = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for b, start in enumerate(range(0, n, bs)):
            if max_batches is not None and b >= max_batches:
                break
            idx = perm[start : start + bs]
            xb = {k: v[idx] for k, v in batch.items()}
            yb = Y[idx]
            loss = F.binary_cross_entropy_with_logits(logits_of(module(xb)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(idx)
    return {"seconds": time.perf_counter() - t0, "samples": seen}


# --------------------------------------------------------------------------- torch-rechub


def rechub_inputs(batch: dict, cardinalities, numeric_names=None):
    """Our encoded batch -> torch-rechub feature objects and its dict-of-arrays input."""
    from torch_rechub.basic.features import DenseFeature, SparseFeature

    features, x = [], {}
    if "categorical" in batch:
        cat = batch["categorical"].numpy()
        for j in range(cat.shape[1]):
            name = f"c{j}"
            features.append(SparseFeature(name, vocab_size=int(cardinalities[j]), embed_dim=CONFIG["embedding_dim"]))
            x[name] = np.ascontiguousarray(cat[:, j])  # a DataFrame column, as df_to_dict gives
    if "numeric" in batch:
        num = batch["numeric"].numpy()
        for j in range(num.shape[1]):
            name = f"n{j}"
            features.append(DenseFeature(name))
            x[name] = np.ascontiguousarray(num[:, j])
    return features, x


def build_rechub(features, seed: int):
    from torch_rechub.models.multi_task import MMOE
    from torch_rechub.trainers import MTLTrainer

    torch.manual_seed(seed)
    # SparseFeature caches its nn.Embedding on the feature object: copy the objects so
    # that every repetition gets fresh tables.
    features = copy.deepcopy(features)
    for f in features:
        if hasattr(f, "embed"):
            del f.embed
    model = MMOE(
        features,
        task_types=["classification"] * len(TASKS),
        n_expert=CONFIG["n_experts"],
        expert_params={"dims": list(CONFIG["expert_hidden_sizes"])},
        tower_params_list=[{"dims": list(CONFIG["tower_hidden_sizes"])} for _ in TASKS],
    )
    trainer = MTLTrainer(
        model,
        task_types=["classification"] * len(TASKS),
        optimizer_fn=torch.optim.Adam,
        optimizer_params={"lr": CONFIG["lr"], "weight_decay": CONFIG["weight_decay"]},
        n_epoch=1,
        device="cpu",
        model_path=os.devnull,
    )
    return model, trainer


def run_rechub(features, x: dict, y: np.ndarray, epochs: int, seed: int, max_batches: int | None = None) -> dict:
    from torch.utils.data import DataLoader, Subset
    from torch_rechub.utils.data import DataGenerator

    model, trainer = build_rechub(features, seed)
    torch.manual_seed(seed)
    dg = DataGenerator(x, y)
    loader = DataLoader(dg.dataset, batch_size=CONFIG["batch_size"], shuffle=True)
    if max_batches is not None:
        n = min(len(y), max_batches * CONFIG["batch_size"])
        loader = DataLoader(Subset(dg.dataset, range(n)), batch_size=CONFIG["batch_size"], shuffle=True)
    # train_one_epoch prints its loss once per epoch: send that to /dev/null
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        t0 = time.perf_counter()
        for _ in range(epochs):
            trainer.train_one_epoch(loader)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "samples": len(loader.dataset) * epochs, "model": model}


# --------------------------------------------------------------------------- main


def n_params(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 8192 rows, 1 epoch, 3 rounds")
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="interleaved repetitions of every contender (default 5; 3 with --quick)",
    )
    parser.add_argument("--epochs", type=int, default=1, help="epochs per repetition (default 1)")
    parser.add_argument(
        "--rows", type=int, default=None, help="train on this many rows (default: all 199,523; 8192 with --quick)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads for every contender (default: torch's default)"
    )
    parser.add_argument("--no-rechub", action="store_true", help="skip torch-rechub")
    parser.add_argument("--output", default=None, help="results name (default throughput_mmoe[_quick])")
    args = parser.parse_args(argv)

    rounds = args.rounds or (3 if args.quick else 5)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    name = args.output or ("throughput_mmoe_quick" if args.quick else "throughput_mmoe")

    X, Y = load_data(args.quick, args.rows)
    n = len(X)
    print(
        f"Census-Income train rows: {n}, epochs per repetition: {args.epochs}, "
        f"rounds: {rounds}, torch threads: {threads}",
        flush=True,
    )

    # Untimed warm-up fit of ours on the full data: it also gives the fitted encoder (the
    # tensors of the plain loop and of torch-rechub) and the module architecture.
    warm = run_ours(X, Y, 1, 0)
    clf = warm["clf"]
    batch = clf.feature_encoder_.transform(X)
    Yt = torch.tensor(Y.to_numpy(dtype=np.float32))
    template = clf.net_.module_
    schema = getattr(clf.feature_encoder_, "schema_", None)
    cards = (
        list(schema.categorical_cardinalities)
        if schema is not None
        else [int(batch["categorical"][:, j].max()) + 1 for j in range(batch["categorical"].shape[1])]
    )

    contenders = ["ours", "plain"]
    rechub_error = None
    rechub_version = None
    if not args.no_rechub:
        try:
            from importlib.metadata import version

            rechub_version = version("torch-rechub")
            features, x_rh = rechub_inputs(batch, cards)
            y_rh = np.array(Y.to_numpy(dtype=np.float32))  # writable copy
            run_rechub(features, x_rh, y_rh, 1, 0, max_batches=2)  # warm-up / smoke
            contenders.append("rechub")
        except Exception as exc:
            rechub_error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            print(f"torch-rechub unavailable: {rechub_error}", flush=True)
    run_plain(fresh_copy(template, 0), batch, Yt, 1, 0, max_batches=2)  # warm-up

    times = {c: [] for c in contenders}
    ours_loop = []
    samples = n * args.epochs
    arch = {"ours_parameters": n_params(template)}
    for r in range(rounds):
        for c in contenders:
            gc.collect()
            seed = 1000 + r
            if c == "ours":
                res = run_ours(X, Y, args.epochs, seed)
                ours_loop.append(res["train_loop_seconds"])
                del res["clf"]
            elif c == "plain":
                res = run_plain(fresh_copy(template, seed), batch, Yt, args.epochs, seed)
                assert res["samples"] == samples
            else:
                res = run_rechub(features, x_rh, y_rh, args.epochs, seed)
                arch["rechub_parameters"] = n_params(res.pop("model"))
                assert res["samples"] == samples
            times[c].append(res["seconds"])
            print(
                f"round {r + 1}/{rounds} {c:>6}: {res['seconds']:8.2f} s  {samples / res['seconds']:10.0f} samples/s",
                flush=True,
            )

    sps = {c: [samples / t for t in ts] for c, ts in times.items()}
    median = {c: statistics.median(v) for c, v in sps.items()}
    result = {
        "config": {
            **CONFIG,
            "epochs_per_repetition": args.epochs,
            "rows": n,
            "samples_per_repetition": samples,
            "rounds": rounds,
            "torch_threads": threads,
            "quick": args.quick,
            "order": "interleaved " + ", ".join(contenders),
        },
        "contenders": {
            "ours": "MMoEClassifier.fit(X_df, Y_df), end to end (encoding + skorch loop)",
            "ours_train_loop": "sum of history_[:, 'dur'] of the same fits (skorch training loop only)",
            "plain": "same module (deepcopy + reset_parameters), hand-written loop on pre-encoded tensors",
            "rechub": "torch_rechub MMOE + MTLTrainer.train_one_epoch on DataGenerator's DataLoader "
            "(per-sample dataset indexing + default collate); MLP blocks have BatchNorm "
            "(rechub's MLP always adds it), gates are Linear+BN+softmax",
        },
        "architecture": arch,
        "seconds": times,
        "samples_per_second": {c: _common.summary(v) for c, v in sps.items()},
        "median_samples_per_second": median,
        "ratios": {},
        "torch_rechub": {"version": rechub_version, "error": rechub_error},
    }
    if all(v is not None for v in ours_loop):
        loop_sps = [samples / t for t in ours_loop]
        result["seconds"]["ours_train_loop"] = ours_loop
        result["samples_per_second"]["ours_train_loop"] = _common.summary(loop_sps)
        result["median_samples_per_second"]["ours_train_loop"] = statistics.median(loop_sps)
    ratios = result["ratios"]
    for other in ("plain", "rechub"):
        if other not in times:
            continue
        ratios[f"ours/{other}"] = median["ours"] / median[other]
        ratios[f"ours/{other} (median of per-round ratios)"] = statistics.median(
            a / b for a, b in zip(sps["ours"], sps[other])
        )
        if "ours_train_loop" in result["median_samples_per_second"]:
            ratios[f"ours_train_loop/{other}"] = result["median_samples_per_second"]["ours_train_loop"] / median[other]
    if "rechub" in median:
        ratios["plain/rechub"] = median["plain"] / median["rechub"]

    path = _common.write_results(name, result)
    rows = [
        [c, f"{v:,.0f}", _common.mean_std(result["samples_per_second"][c]["values"], 0)]
        for c, v in result["median_samples_per_second"].items()
    ]
    print()
    print(_common.markdown_table(["contender", "median samples/s", "mean ± std"], rows))
    print()
    for k, v in ratios.items():
        print(f"{k}: {v:.3f}")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
