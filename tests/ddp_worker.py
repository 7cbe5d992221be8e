"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2`` (not a test module).

Every rank fits the same estimators on the same data (data-parallel: each trains on its share
of every batch) and saves its parameters; rank 0 also pickles the fitted estimators. Then it
checks that a rank given different data gets a clear error, and that ``local_fit`` trains each
rank on its own.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from sklearn_mtr import AITMClassifier, MMoEClassifier
from sklearn_mtr._distributed import local_fit
from sklearn_mtr.optim import DBMTL, GLS, MGDA, RLW, STCH, UW, ExcessMTL, GradDrop, MoCo, PCGrad

# rlw and graddrop draw random numbers (the ranks must draw the same ones); db_mtl divides by the
# global losses and keeps running averages of the global gradients; stch (no warm-up here) and gls
# are nonlinear in the global losses after one backward pass; excess_mtl and moco keep T x P state
# from the global gradients (moco also rescales them by the global losses).
OPTIMIZERS = {
    "ew": lambda: "ew",
    "pcgrad": PCGrad,
    "mgda": MGDA,
    "uw": UW,
    "rlw": RLW,
    "graddrop": GradDrop,
    "db_mtl": DBMTL,
    "stch": lambda: STCH(warmup_epoch=0),
    "gls": GLS,
    "excess_mtl": ExcessMTL,
    "moco": MoCo,
}


def make_data(n: int = 230, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    X["city"] = pd.Categorical(rng.choice(["x", "y", "z"], size=n))
    click = (X.a + 0.3 * rng.normal(size=n) > 0).astype(float)
    buy = (X.b + 0.3 * rng.normal(size=n) > 0.5).astype(float)
    buy[rng.random(n) < 0.3] = np.nan  # missing labels: per-rank label counts differ
    weights = rng.uniform(0.5, 2.0, size=n)
    return X, pd.DataFrame({"click": click, "buy": buy}), weights


def make_estimator(method: str, **kw) -> MMoEClassifier:
    params = {"n_experts": 2, "expert_hidden_sizes": (8,), "tower_hidden_sizes": (4,), "embedding_dim": 3}
    params.update(optimizer=OPTIMIZERS[method](), batch_size=50, lr=1e-2, max_epochs=2, random_state=0)
    params.update(kw)
    return MMoEClassifier(**params)


def fit(method: str, **kw) -> MMoEClassifier:
    X, Y, w = make_data()
    return make_estimator(method, **kw).fit(X, Y, sample_weight=w)


def fit_funnel(method: str, **kw) -> AITMClassifier:
    """AITM: an architecture with an auxiliary loss (the calibrator), on a two-stage funnel."""
    X, Y, w = make_data()
    Y["buy"] = Y["buy"] * Y["click"]  # a purchase implies a click
    params = {"tower_hidden_sizes": (8,), "head_hidden_sizes": (4,), "embedding_dim": 3}
    # lr 0.1: large enough steps that the calibrator is active (p_buy > p_click on some rows)
    params.update(optimizer=OPTIMIZERS[method](), batch_size=50, lr=0.1, max_epochs=2, random_state=0)
    return AITMClassifier(**{**params, **kw}).fit(X, Y, sample_weight=w)


def parameters(clf: MMoEClassifier) -> dict[str, torch.Tensor]:
    """The module's parameters and buffers, and the method's own (UW's log-variances)."""
    state = getattr(clf.net_, "mto_state_", None)
    extra = {} if state is None else {f"mto.{k}": v for k, v in state.state_dict().items() if v.is_floating_point()}
    return {**clf.net_.module_.state_dict(), **extra}


def main(out: Path) -> None:
    torch.set_num_threads(1)
    for method in OPTIMIZERS:
        clf = fit(method)
        rank = dist.get_rank()  # the first fit created the process group from torchrun's variables
        torch.save(parameters(clf), out / f"{method}_rank{rank}.pt")
        if rank == 0:
            (out / f"{method}.pkl").write_bytes(pickle.dumps(clf))
    for method in ("ew", "pcgrad"):
        torch.save(parameters(fit_funnel(method)), out / f"aitm_{method}_rank{rank}.pt")
    with_stopping = fit("pcgrad", early_stopping=True, max_epochs=4, n_iter_no_change=1)
    torch.save(parameters(with_stopping), out / f"stopping_rank{rank}.pt")

    X, Y, _w = make_data(seed=rank)  # each rank its own rows: refused
    try:
        make_estimator("ew").fit(X, Y)
        message = "no error"
    except ValueError as exc:
        message = str(exc)
    (out / f"mismatch_rank{rank}.txt").write_text(message)

    with local_fit():  # each rank fits its own model, without collectives
        local = make_estimator("ew").fit(X, Y)
    torch.save(parameters(local), out / f"local_rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
