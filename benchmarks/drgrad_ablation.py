"""Why does DRGrad score below equal weights on the synthetic benchmark? Controlled ablations.

Same data, model and training as ``optimizer_synthetic.py`` (``make_multitask_classification``
with 2 tasks, 16 features of which 2 categorical, 20,000 training and 10,000 test rows per
seed; ``MMoEClassifier`` with 4 experts of (64, 32), towers (16,), embeddings 16, lr 1e-3,
batch 256, a fixed number of epochs, no selection), one variant of DRGrad at a time:

- ``adam``: equal weights, plain MMoE;
- ``drgrad``: ``DRGrad(mixing="mean")`` (split mode, router, running-mean updater: the default when the stored results were taken);
- ``tower``: ``DRGrad(mode="tower")`` (router between the existing towers, no split);
- ``split_noroute``: the split primary tower and the updater, router off (the paper's
  "Split-MMoE");
- ``route_aux_only`` / ``route_split_only``: split + updater, only the ``g_aux`` term or only
  the ``g1''`` terms of the router;
- ``fixed05`` / ``fixed11``: split, no router, mixing frozen at (0.5, 0.5) / (1, 1);
- ``fixed05_v1``: as ``fixed05`` but ``T1''`` reads the primary task's own tower input ``v1``
  instead of ``v_s`` (an ensemble of two primary towers, no shared representation);
- ``fixed05_detach``: as ``fixed05`` with the gradient stopped at ``v_s`` (the primary loss
  trains ``T1''`` but does not reach the auxiliary gate through it);
- ``split_mu10``: the split wrapper with mixing frozen at (1, 0) (``T1''`` never contributes):
  a control that must equal ``adam`` bit for bit.

Each variant is a small subclass of ``DRGrad`` that overrides the routing step or the
wrapper's forward; nothing in ``sklearn_mtr`` is changed. Paired by seed with ``adam``.

Run ``python benchmarks/drgrad_ablation.py --corrs 0.9 -0.5 --seeds 0 1 2`` (a 24-epoch run
takes 10-30 s of CPU); writes ``benchmarks/results/drgrad_ablation_synthetic.json`` after
every run and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import _common
import numpy as np
import torch

from sklearn_mtr.models import SplitPrimaryTower
from sklearn_mtr.models._blocks import tower_logits
from sklearn_mtr.optim.drgrad import DRGrad, _flat_grad, _params, _write_grad, route_coefficients, update_mixing

ARCH = {"n_experts": 4, "expert_hidden_sizes": (64, 32), "tower_hidden_sizes": (16,), "embedding_dim": 16}


class SplitNoRoute(DRGrad):
    """Split-MMoE: the split tower and the updater on the raw norms, no router."""

    def _route_split(self, model, n_tasks):
        g1, gs = _flat_grad(_params(model.towers[0])), _flat_grad(_params(model.split_tower))
        update_mixing(model, torch.stack([g1.norm(), gs.norm()]), rule="mean", temperature=1.0)
        return {"mixing": model.mixing.detach().clone()}


class Partial(DRGrad):
    """The router with the ``g1''`` terms (``use_split``) or the ``g_aux`` term (``use_aux``) only."""

    def __init__(self, use_split=True, use_aux=True):
        super().__init__()
        self.use_split, self.use_aux = use_split, use_aux

    def _route_split(self, model, n_tasks):
        primary, split = _params(model.towers[0]), _params(model.split_tower)
        g1, gs, ga = _flat_grad(primary), _flat_grad(split), _flat_grad(_params(model.towers[1]))
        a_s, a_a, c, info = route_coefficients(g1, gs, ga, gamma=self.gamma, pairing=self.pairing)
        new_p = g1 + self.use_split * a_s * gs + self.use_aux * a_a * ga
        new_s = gs + self.use_split * c * gs
        _write_grad(primary, new_p)
        _write_grad(split, new_s)
        update_mixing(model, torch.stack([new_p.norm(), new_s.norm()]), rule="mean", temperature=1.0)
        return {**info, "mixing": model.mixing.detach().clone()}


class _SplitOnV1(SplitPrimaryTower):
    """``T1''`` reads ``v1`` (the primary task's own tower input) instead of ``v_s``."""

    def forward(self, batch):
        inputs = list(self.backbone.tower_inputs(batch))
        logits = tower_logits(self.towers, inputs)
        primary = self.mixing[0] * logits[:, 0] + self.mixing[1] * self.split_tower(inputs[0])[:, 0]
        return torch.stack([primary.float(), logits[:, 1].float()], dim=1)


class _SplitDetach(SplitPrimaryTower):
    """``T1''`` reads ``v_s`` with the gradient stopped."""

    def forward(self, batch):
        inputs = list(self.backbone.tower_inputs(batch))
        logits = tower_logits(self.towers, inputs)
        primary = self.mixing[0] * logits[:, 0] + self.mixing[1] * self.split_tower(inputs[1].detach())[:, 0]
        return torch.stack([primary.float(), logits[:, 1].float()], dim=1)


class Fixed(DRGrad):
    """Split primary tower, no router, no updater: mixing frozen at ``mix``; ``wrapper`` swaps the forward."""

    def __init__(self, mix=(0.5, 0.5), wrapper=None):
        super().__init__()
        self.mix, self.wrapper = mix, wrapper

    def wrap_module(self, model, n_tasks, *, wrappers=None):
        module = super().wrap_module(model, n_tasks, wrappers=wrappers)
        module.mixing.copy_(torch.tensor(list(self.mix)))
        if self.wrapper is not None:
            module.__class__ = self.wrapper
        return module

    def _route_split(self, model, n_tasks):
        return {"mixing": model.mixing.detach().clone()}


VARIANTS = {
    "adam": lambda: "adam",
    "drgrad": lambda: DRGrad(mixing="mean"),  # the updater of the stored results
    "tower": lambda: DRGrad(mode="tower"),
    "split_noroute": SplitNoRoute,
    "route_aux_only": lambda: Partial(use_split=False),
    "route_split_only": lambda: Partial(use_aux=False),
    "fixed05": lambda: Fixed((0.5, 0.5)),
    "fixed11": lambda: Fixed((1.0, 1.0)),
    "fixed05_v1": lambda: Fixed((0.5, 0.5), _SplitOnV1),
    "fixed05_detach": lambda: Fixed((0.5, 0.5), _SplitDetach),
    "split_mu10": lambda: Fixed((1.0, 0.0)),
}


def run(variant: str, corr: float, seed: int, epochs: int, n_train: int = 20000, n_test: int = 10000) -> dict:
    from sklearn_mtr import MMoEClassifier
    from sklearn_mtr.datasets import make_multitask_classification
    from sklearn_mtr.metrics import per_task_roc_auc

    X, Y = make_multitask_classification(
        n_train + n_test, 16, 2, task_correlation=corr, n_categorical=2, as_frame=True, random_state=100 + seed
    )
    clf = MMoEClassifier(
        **ARCH,
        optimizer=VARIANTS[variant](),
        lr=1e-3,
        batch_size=256,
        max_epochs=epochs,
        early_stopping=False,
        random_state=seed,
        device="cpu",
        verbose=0,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X.iloc[:n_train], Y.iloc[:n_train])
    auc = per_task_roc_auc(Y.iloc[n_train:].to_numpy(), clf.predict_proba(X.iloc[n_train:]))
    out = {
        "variant": variant,
        "corr": corr,
        "seed": seed,
        "epochs": epochs,
        "test_auc": [float(a) for a in auc],
        "train_loss": [float(v) for v in clf.history_[:, "train_loss"]],
        "fit_seconds": time.perf_counter() - t0,
    }
    mixing = getattr(clf.net_.module_, "mixing", None)
    if mixing is not None:
        out["mixing"] = [float(v) for v in mixing]
    return out


def summarise(runs: list[dict]) -> dict:
    """Per correlation and variant: mean AUC per task, final train loss, paired mean-AUC difference to adam."""
    runs = list({(r["variant"], r["corr"], r["seed"]): r for r in runs}.values())  # one run per key
    out: dict = {}
    for corr in sorted({r["corr"] for r in runs}):
        at = [r for r in runs if r["corr"] == corr]
        adam = {r["seed"]: r for r in at if r["variant"] == "adam"}
        out[str(corr)] = {}
        for variant in dict.fromkeys(r["variant"] for r in at):
            rs = sorted((r for r in at if r["variant"] == variant), key=lambda r: r["seed"])
            paired = [r for r in rs if r["seed"] in adam]
            out[str(corr)][variant] = {
                "seeds": [r["seed"] for r in rs],
                "task0_auc": _common.summary([r["test_auc"][0] for r in rs]),
                "task1_auc": _common.summary([r["test_auc"][1] for r in rs]),
                "final_train_loss": _common.summary([r["train_loss"][-1] for r in rs]),
                "mean_auc_minus_adam": _common.summary(
                    [np.mean(r["test_auc"]) - np.mean(adam[r["seed"]]["test_auc"]) for r in paired]
                ),
            }
    return out


def table(summary: dict) -> str:
    header = ["ρ", "variant", "seeds", "task 0 AUC", "task 1 AUC", "final train loss", "Δ mean AUC vs adam (paired)"]
    rows = []
    for corr, variants in summary.items():
        for variant, s in variants.items():
            rows.append(
                [
                    corr,
                    variant,
                    len(s["seeds"]),
                    _common.mean_std(s["task0_auc"]["values"]),
                    _common.mean_std(s["task1_auc"]["values"]),
                    _common.mean_std(s["final_train_loss"]["values"], 3),
                    "" if variant == "adam" else _common.mean_std(s["mean_auc_minus_adam"]["values"]),
                ]
            )
    return _common.markdown_table(header, rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--corrs", nargs="+", type=float, default=[0.9, -0.5])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--output", default="drgrad_ablation_synthetic")
    parser.add_argument("--merge", nargs="*", default=[], help="also include the runs of these JSON run lists")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs: list[dict] = []
    for path in args.merge:
        data = json.loads(Path(path).read_text())
        runs += data["runs"] if isinstance(data, dict) else data

    def write():
        config = {"epochs": args.epochs, "n_train": 20000, "n_test": 10000, "mmoe": ARCH, "lr": 1e-3, "batch_size": 256}
        _common.write_results(args.output, {"config": config, "runs": runs, "summary": summarise(runs)})

    done = {(r["variant"], r["corr"], r["seed"]) for r in runs}
    for corr in args.corrs:
        for seed in args.seeds:
            for variant in args.variants:
                if (variant, corr, seed) in done:
                    continue
                r = run(variant, corr, seed, args.epochs)
                runs.append(r)
                write()
                print(
                    f"{variant:>16} ρ {corr:+.1f} seed {seed}: AUC {r['test_auc'][0]:.4f} / {r['test_auc'][1]:.4f}, "
                    f"train loss {r['train_loss'][-1]:.4f}",
                    flush=True,
                )
    write()
    print(table(summarise(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
