"""Multi-task methods on Census-Income (KDD) under the evidence protocol: full data, a
learning-rate grid per method chosen on validation, early stopping to convergence, seeds
paired, and a null control beside every difference.

Question: is a method (``optimizer=``: PUB, DRGrad, or any registered one) better than equal
weighting (``"ew"``) on Census income / never_married, when every method gets the same
tuning budget?

Protocol:

- Data and estimator: those of ``vs_sklearn.py`` (the MMoE-paper split: the official training
  file, 199,523 rows; the official test file halved, the test half used for the numbers
  only), ``MMoEClassifier`` with its defaults, except ``optimizer``, ``lr`` and
  ``max_epochs`` (``--max-epochs``, 20: at lr 1e-3 some Census fits reach the default cap of
  10 before early stopping ends them). Early stopping is the estimator's own (a held-out tenth of the
  training rows, patience 3 on the mean validation AUC); its best validation AUC is the
  score a learning rate is chosen on.
- Learning rates ``--lrs`` (1e-3, the default, and 2e-3) for every method: the same budget.
  Per method, the rate with the best validation score averaged over the seeds is chosen;
  the test rows never take part in a choice.
- Seeds ``0 .. --seeds - 1`` are each fit's ``random_state`` (split, initialisation, batch
  order), the same for every method: differences are paired by seed.
- Reported (``--summarise``): per method and rate the test AUC per task; the paired
  difference, method at its chosen rate minus equal weighting at its chosen rate, mean over
  seeds with a 95 % t-interval, per task and for the mean of the two tasks; and the same
  at every rate of the grid. Null control: ``ew_half``, equal weights 0.5 / 0.5 at the
  default rate against 1 / 1 (Adam is invariant to the loss scale, so only rounding that
  training amplifies can move it): its interval is the protocol's resolution.

Fitting runs through ``vs_sklearn.run_variants`` (seeds outermost, the JSON rewritten after
every fit, so a stopped run still holds paired results). Split the variants over processes
with ``--output`` and join them with ``--summarise``::

    python benchmarks/census_methods.py --variants "ew lr=0.001" "pub lr=0.001" ... \\
        --output census_methods_part_a
    python benchmarks/census_methods.py --summarise census_methods_part_a census_methods_part_b

``--summarise`` writes ``benchmarks/results/census_methods.json``. One MMoE fit is 4-8
minutes on one CPU thread, so the full grid for three methods is 35 fits: hours on this
2-core machine, minutes on a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys

import _common
import numpy as np
import vs_sklearn

MODEL = "MMoE"
REFERENCE_METHOD = "ew"
CONTROL = "ew_half"
DEFAULT_LRS = (1e-3, 2e-3)
DEFAULT_METHODS = ("ew", "pub", "drgrad")


def variant_name(method: str, lr: float) -> str:
    return f"{method} lr={lr:g}"


def parse_variant(variant: str) -> tuple[str, float]:
    """``"pub lr=0.002"`` -> ``("pub", 0.002)``."""
    method, _, lr = variant.partition(" lr=")
    if not lr:
        raise ValueError(f"variant {variant!r} is not '<method> lr=<rate>'")
    return method, float(lr)


def make_factory(max_epochs: int):
    def make(model: str, variant: str, seed: int, data: dict):
        method, lr = parse_variant(variant)
        clf = vs_sklearn.make_estimator(model, seed, data).set_params(lr=lr, max_epochs=max_epochs)
        if method == CONTROL:
            n = len(data["tasks"])
            return clf.set_params(optimizer=REFERENCE_METHOD, task_weights=[1.0 / n] * n)
        return clf.set_params(optimizer=method)

    return make


def _mean_auc(run: dict) -> float:
    return float(np.mean(list(run["auc"].values())))


def _paired(runs: list[dict], reference: list[dict], tasks: list[str]) -> dict:
    """Per task and for the mean of the tasks: the paired difference (seeds in both)."""
    out = vs_sklearn.paired_delta(runs, reference, tasks)
    as_mean = [{"seed": r["seed"], "auc": {"mean": _mean_auc(r)}} for r in runs]
    ref_mean = [{"seed": r["seed"], "auc": {"mean": _mean_auc(r)}} for r in reference]
    out["mean"] = vs_sklearn.paired_delta(as_mean, ref_mean, ["mean"])["mean"]
    return out


def summarise(parts: list[str], output: str) -> dict:
    """Join the part files' runs and write the chosen rates and paired differences."""
    runs: dict[str, dict[int, dict]] = {}
    tasks = config = None
    environments = {}
    for part in parts:
        data = json.loads((_common.RESULTS_DIR / f"{part}.json").read_text())
        config = config or data["config"]
        environments[part] = data.get("environment")
        for info in data["datasets"].values():
            tasks = info["tasks"]
            for variant, entry in info["variants"].items():
                for r in entry["runs"]:
                    runs.setdefault(variant, {})[r["seed"]] = r
    if tasks is None:
        raise ValueError(f"no runs in {parts}")
    by_method: dict[str, dict[float, list[dict]]] = {}
    for variant, seeded in runs.items():
        method, lr = parse_variant(variant)
        by_method.setdefault(method, {})[lr] = [seeded[s] for s in sorted(seeded)]
    methods: dict = {}
    for method, grid in by_method.items():
        # Choose on the seeds every rate has, so that no rate is favoured by its seeds.
        common = set.intersection(*({r["seed"] for r in rs} for rs in grid.values()))
        scores = {
            lr: float(np.mean([max(r["valid_auc"]) for r in rs if r["seed"] in common])) for lr, rs in grid.items()
        }
        methods[method] = {
            "chosen_lr": max(scores, key=scores.get),
            "valid_score": {f"{lr:g}": s for lr, s in scores.items()},
            "lrs": {
                f"{lr:g}": {
                    "runs": rs,
                    "auc": {t: _common.summary([r["auc"][t] for r in rs]) for t in tasks},
                    "epochs": _common.summary([r["epochs"] for r in rs]),
                    "fit_seconds": _common.summary([r["fit_seconds"] for r in rs]),
                }
                for lr, rs in sorted(grid.items())
            },
        }
    if REFERENCE_METHOD not in methods:
        raise ValueError(f"the reference method {REFERENCE_METHOD!r} has no runs")
    ref = methods[REFERENCE_METHOD]
    ref_chosen = ref["lrs"][f"{ref['chosen_lr']:g}"]["runs"]
    for method, entry in methods.items():
        if method in (REFERENCE_METHOD, CONTROL):
            continue
        entry["delta_vs_ew"] = _paired(entry["lrs"][f"{entry['chosen_lr']:g}"]["runs"], ref_chosen, tasks)
        entry["delta_vs_ew_per_lr"] = {
            lr: _paired(e["runs"], ref["lrs"][lr]["runs"], tasks) for lr, e in entry["lrs"].items() if lr in ref["lrs"]
        }
    null = None
    if CONTROL in methods:
        control = methods.pop(CONTROL)
        lr, entry = next(iter(control["lrs"].items()))
        if lr in ref["lrs"]:
            null = {"lr": float(lr), **entry, "delta_vs_ew": _paired(entry["runs"], ref["lrs"][lr]["runs"], tasks)}
    payload = {
        "config": {**config, "protocol": __doc__.split("\n\n", 1)[1]},
        "parts": [{"name": part} for part in parts],
        "model": MODEL,
        "tasks": tasks,
        "reference": REFERENCE_METHOD,
        "methods": methods,
        "null_control": null,
    }
    # The fits ran in the parts: their environment (threads, commit, load) is the one to report
    # (a payload's "environment" replaces the one write_results would add).
    here = _common.environment()
    _common.write_results(
        output,
        {
            **payload,
            "environment": environments[parts[0]] or here,
            "summarised_in": here,
            "part_environments": environments,
        },
    )
    return payload


def diagnostics(methods: list[tuple[str, float]], epochs: int, seed: int) -> dict:
    """What each method reports in ``history_`` (its ``optim_*`` keys, epoch means) over the first
    ``epochs`` epochs of a fit on the whole training file, at the given rate, without early
    stopping: PUB's weights and the cosine of its per-task look-ahead updates, DRGrad's
    mixing weights and gradient cosines."""
    data = vs_sklearn.prepare(vs_sklearn.load_census(), None, None)
    out = {}
    for method, lr in methods:
        clf = vs_sklearn.make_estimator(MODEL, seed, data).set_params(
            optimizer=method, lr=lr, max_epochs=epochs, early_stopping=False
        )
        clf.fit(data["X_train"], data["Y_train"])
        out[variant_name(method, lr)] = [
            {k[len("optim_") :]: v for k, v in h.items() if k.startswith("optim_")} for h in clf.history_
        ]
        print(variant_name(method, lr), out[variant_name(method, lr)][-1], flush=True)
    return {"config": {"seed": seed, "epochs": epochs, "model": MODEL}, "diagnostics": out}


def print_summary(payload: dict) -> None:
    null = payload["null_control"]
    if null:
        d = null["delta_vs_ew"]["mean"]
        print(f"null control (ew 0.5/0.5 vs 1/1): {d['mean']:+.4f} {d['ci95']}")
    for method, entry in payload["methods"].items():
        delta = entry.get("delta_vs_ew", {}).get("mean")
        text = f"{delta['mean']:+.4f} {delta['ci95']}" if delta else "(reference)"
        print(f"{method}: lr {entry['chosen_lr']:g}, valid {entry['valid_score']}, mean-AUC Δ vs ew {text}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--lrs", nargs="+", type=float, default=list(DEFAULT_LRS))
    parser.add_argument("--variants", nargs="+", default=None, help="'<method> lr=<rate>' (default: methods x lrs)")
    parser.add_argument("--control", action="store_true", help=f"add the null control {CONTROL!r} at the first rate")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed-start", type=int, default=0, help="first seed (split a run by seed over processes)")
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default="census_methods_part")
    parser.add_argument("--summarise", nargs="+", default=None, metavar="PART", help="join part files; fit nothing")
    parser.add_argument(
        "--diagnostics",
        type=int,
        default=0,
        metavar="EPOCHS",
        help="only record each variant's history_ diagnostics over this many epochs (seed 0)",
    )
    args = parser.parse_args(argv)
    if args.summarise:
        print_summary(summarise(args.summarise, "census_methods"))
        return 0
    import torch
    from threadpoolctl import threadpool_limits

    from sklearn_mtr.optim import OPTIMIZERS

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    if args.diagnostics:
        chosen = [parse_variant(v) for v in args.variants or []]
        _common.write_results("census_methods_diagnostics", diagnostics(chosen, args.diagnostics, seed=0))
        return 0
    variants = args.variants or [variant_name(m, lr) for m in args.methods for lr in args.lrs]
    if args.control:
        variants.append(variant_name(CONTROL, args.lrs[0]))
    for variant in variants:
        method, _ = parse_variant(variant)
        if method != CONTROL and method not in OPTIMIZERS:
            parser.error(f"unknown method {method!r}; registered: {sorted(OPTIMIZERS)}")
    args.variants, args.datasets, args.models = variants, ["census"], [MODEL]
    reference = variant_name(REFERENCE_METHOD, args.lrs[0])
    vs_sklearn.run_variants(args, make_factory(args.max_epochs), args.output, reference, __doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
