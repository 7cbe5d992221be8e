"""Command line: ``python -m sklearn_mtr demo`` trains on synthetic data and prints metrics."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from . import MMoEClassifier, PLEClassifier, SharedBottomClassifier
from .datasets import make_multitask_classification
from .metrics import per_task_log_loss, per_task_roc_auc

_MODELS = {"mmoe": MMoEClassifier, "ple": PLEClassifier, "shared_bottom": SharedBottomClassifier}
# Sized to finish in well under a minute on a laptop CPU.
_SMALL = {
    "mmoe": dict(n_experts=4, expert_hidden_sizes=(64, 32), tower_hidden_sizes=(16,)),
    "ple": dict(n_task_experts=2, n_shared_experts=2, expert_hidden_sizes=(64, 32), tower_hidden_sizes=(16,)),
    "shared_bottom": dict(bottom_hidden_sizes=(64, 32), tower_hidden_sizes=(16,)),
}


def demo(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sklearn_mtr demo", description=demo.__doc__)
    parser.add_argument("--model", choices=sorted(_MODELS), default="mmoe")
    parser.add_argument("--optimizer", default="adam", help="a registered optimizer name")
    parser.add_argument("--n-samples", type=int, default=20_000)
    parser.add_argument("--n-tasks", type=int, default=2)
    parser.add_argument("--task-correlation", type=float, default=0.5)
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=0)
    args = parser.parse_args(argv)

    X, Y = make_multitask_classification(
        n_samples=args.n_samples,
        n_tasks=args.n_tasks,
        task_correlation=args.task_correlation,
        n_categorical=2,
        as_frame=True,
        random_state=args.random_state,
    )
    X_train, X_test, Y_train, Y_test = train_test_split(X, Y, test_size=0.25, random_state=args.random_state)
    clf = _MODELS[args.model](
        **_SMALL[args.model],
        optimizer=args.optimizer,
        max_epochs=args.max_epochs,
        batch_size=512,
        early_stopping=True,
        random_state=args.random_state,
        verbose=args.verbose,
    )
    print(
        f"{type(clf).__name__}: {len(X_train)} train / {len(X_test)} test rows, {args.n_tasks} tasks "
        f"(task correlation {args.task_correlation}), {X.shape[1]} features, device "
        f"{'cuda' if torch.cuda.is_available() else 'cpu'}"
    )
    start = time.perf_counter()
    clf.fit(X_train, Y_train)
    elapsed = time.perf_counter() - start
    proba = clf.predict_proba(X_test)
    auc = per_task_roc_auc(Y_test.to_numpy(), proba)
    loss = per_task_log_loss(Y_test.to_numpy(), proba)
    print(f"trained {clf.n_iter_} epochs in {elapsed:.1f} s\n")
    print(f"{'task':<12}{'test AUC':>10}{'log loss':>10}{'positives':>11}")
    for name, a, ll, pos in zip(clf.task_names_, auc, loss, Y_test.mean().to_numpy()):
        print(f"{name:<12}{a:>10.4f}{ll:>10.4f}{pos:>10.1%}")
    print(f"{'mean':<12}{np.nanmean(auc):>10.4f}{np.mean(loss):>10.4f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "demo":
        print("usage: python -m sklearn_mtr demo [--help]", file=sys.stderr)
        return 2
    return demo(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
