"""The ``sklearn-mtr`` command line: ``demo``, ``fit``, ``evaluate`` and ``predict``.

``sklearn-mtr ...`` (the console script) and ``python -m sklearn_mtr ...`` run the same
parser. ``fit`` reads a CSV or Parquet table, trains one of the public estimators on the
``--targets`` columns and writes a model file plus a JSON metrics report; ``evaluate``
scores a model file on a table; ``predict`` writes per-task probabilities.

Model files are written with :func:`sklearn_mtr.persistence.save` (the safe format, whose
files run no code when read), or with ``joblib`` under ``--format joblib``. ``evaluate`` and
``predict`` read only the safe format unless ``--trusted-joblib`` is given: loading a joblib /
pickle file runs code from the file, so a model file from elsewhere could run any program.
A safe-format file may also hold a ``Pipeline`` ending in an estimator (saved from Python with
``sklearn_mtr.persistence.save``); ``evaluate`` and ``predict`` then run the whole pipeline.

Examples
--------
>>> from sklearn_mtr.cli import build_parser
>>> args = build_parser().parse_args(["fit", "train.csv", "--targets", "click,buy", "-o", "model.mtr"])
>>> args.command, args.targets, args.model
('fit', 'click,buy', 'mmoe')
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import math
import os
import re
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

_PARQUET = (".parquet", ".pq")
_CSV = (".csv", ".tsv", ".txt")
# Options with a flag of their own; --param may not set them a second time.
_DEDICATED = {
    "optimizer": "--optimizer",
    "max_epochs": "--max-epochs",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "random_state": "--random-state",
    "early_stopping": "--early-stopping",
    "categorical_features": "--categorical-features",
    "text_features": "--text-features",
    "device": "--device",
    "verbose": "--verbose",
    "n_threads": "--threads",
}
_THREADS_HELP = "torch threads for the call (n_threads); default: torch's own setting, one per core"
_TRUSTED_HELP = (
    "also read joblib / pickle model files (written with fit --format joblib); loading one runs code "
    "from the file: use only on files you trust"
)


class CommandError(ValueError):
    """Bad input to a command; printed without a traceback."""


# ---------------------------------------------------------------------------------------- parser
def build_parser(prog: str = "sklearn-mtr") -> argparse.ArgumentParser:
    """The argument parser of every command (``demo``, ``fit``, ``evaluate``, ``predict``)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Multi-task ranking models (scikit-learn estimators) from the command line."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="train on synthetic data and print per-task test metrics (the README's demo)"
    )
    demo.add_argument("--model", choices=sorted(_DEMO_MODELS), default="mmoe")
    demo.add_argument("--optimizer", default="adam", help="a registered optimizer name")
    demo.add_argument("--n-samples", type=int, default=20_000)
    demo.add_argument("--n-tasks", type=int, default=2)
    demo.add_argument("--task-correlation", type=float, default=0.5)
    demo.add_argument("--max-epochs", type=int, default=10)
    demo.add_argument("--random-state", type=int, default=0)
    demo.add_argument("--verbose", type=int, default=0)
    demo.add_argument("--threads", type=int, help=_THREADS_HELP)
    demo.set_defaults(func=_run_demo)

    fit = commands.add_parser(
        "fit",
        help="train a model on a CSV / Parquet file; write the model and a metrics report",
        description=(
            "Train an estimator on DATA. The features are every column except the targets, the "
            "--groups / --sample-weight columns and --exclude (or exactly --features). String "
            "columns are categorical, except the --text-features. A --holdout share of the rows (whole groups with --groups) is "
            "kept out of training and scored in the report."
        ),
    )
    fit.add_argument("data", help="training table: .csv, .tsv or .parquet (optionally compressed CSV)")
    fit.add_argument("--targets", required=True, help="comma-separated 0/1 label columns, one per task, in order")
    fit.add_argument("-o", "--output", required=True, help="model file to write")
    fit.add_argument(
        "--format",
        choices=("safe", "joblib"),
        default="safe",
        help=(
            "safe (default): sklearn_mtr.persistence, a file that runs no code when loaded; or joblib, "
            "which evaluate / predict read only with --trusted-joblib"
        ),
    )
    fit.add_argument("--report", help="metrics report (JSON) to write; default: the model path with .metrics.json")
    fit.add_argument("--model", default="mmoe", help="architecture: " + ", ".join(sorted(_estimators())))
    fit.add_argument("--optimizer", help="multi-task method: adam (default), pub, drgrad, uw, dwa, ...")
    fit.add_argument("--features", help="comma-separated feature columns (default: all other columns)")
    fit.add_argument("--exclude", help="comma-separated columns that are not features (ids, timestamps, ...)")
    fit.add_argument(
        "--categorical-features", help="comma-separated columns embedded as categories, besides the string columns"
    )
    fit.add_argument(
        "--text-features", help="comma-separated string columns read as words (text_features), not as categories"
    )
    fit.add_argument("--groups", help="request / session id column: whole groups in each split, and GAUC")
    fit.add_argument("--sample-weight", help="column of non-negative row weights")
    fit.add_argument("--holdout", type=float, default=0.2, help="share of rows held out and scored (0: none)")
    fit.add_argument("--max-epochs", type=int)
    fit.add_argument("--batch-size", type=int)
    fit.add_argument("--lr", type=float)
    fit.add_argument("--random-state", type=int, default=0, help="seeds the model and the holdout split (default 0)")
    fit.add_argument(
        "--early-stopping",
        action="store_true",
        help="stop on an inner validation split (default: off; --param early_stopping=auto for the estimators' rule)",
    )
    fit.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, ...")
    fit.add_argument("--verbose", type=int, help="1 prints the per-epoch table")
    fit.add_argument("--threads", type=int, help=_THREADS_HELP + "; saved with the model")
    fit.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other constructor parameter; VALUE is a Python literal, e.g. --param 'expert_hidden_sizes=(64, 32)'",
    )
    fit.add_argument(
        "--optimizer-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of the --optimizer method, e.g. --optimizer drgrad --optimizer-param mode=split",
    )
    fit.set_defaults(func=_run_fit)

    evaluate = commands.add_parser(
        "evaluate", help="per-task AUC, log loss (and GAUC with --groups) of a model on a table, as JSON"
    )
    evaluate.add_argument("model_file", help="a model written by fit (safe format; joblib with --trusted-joblib)")
    evaluate.add_argument("data", help="table with the feature and label columns")
    evaluate.add_argument("--targets", help="comma-separated label columns (default: the model's task names)")
    evaluate.add_argument("--groups", help="request / user id column: GAUC, and requests for models that use them")
    evaluate.add_argument("--sample-weight", help="column of row weights")
    evaluate.add_argument("-o", "--output", help="write the JSON here instead of standard output")
    evaluate.add_argument("--threads", type=int, help=_THREADS_HELP + "; default: the model's n_threads")
    evaluate.add_argument("--trusted-joblib", action="store_true", help=_TRUSTED_HELP)
    evaluate.set_defaults(func=_run_evaluate)

    predict = commands.add_parser("predict", help="write per-task probabilities to a CSV / Parquet file")
    predict.add_argument("model_file", help="a model written by fit (safe format; joblib with --trusted-joblib)")
    predict.add_argument("data", help="table with the feature columns")
    predict.add_argument("-o", "--output", required=True, help="output .csv / .tsv / .parquet, or - for CSV on stdout")
    predict.add_argument("--id-column", help="comma-separated columns copied to the output first (ids)")
    predict.add_argument("--groups", help="request id column, for models that score a request's rows together")
    predict.add_argument("--threads", type=int, help=_THREADS_HELP + "; default: the model's n_threads")
    predict.add_argument("--trusted-joblib", action="store_true", help=_TRUSTED_HELP)
    predict.set_defaults(func=_run_predict)
    return parser


def main(argv: list[str] | None = None, prog: str = "sklearn-mtr") -> int:
    """Run a command; returns the exit status (0 success, 1 bad input, 2 bad usage)."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help and usage errors: return the status instead of exiting
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.func(args)
    except BrokenPipeError:  # `... -o - | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, OSError, ImportError) as exc:
        print(f"{prog} {args.command}: error: {exc}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------------------- demo
def _demo_models() -> dict:
    from . import MMoEClassifier, PLEClassifier, SharedBottomClassifier

    return {"mmoe": MMoEClassifier, "ple": PLEClassifier, "shared_bottom": SharedBottomClassifier}


_DEMO_MODELS = ("mmoe", "ple", "shared_bottom")
# Sized to finish in well under a minute on a laptop CPU.
_SMALL = {
    "mmoe": {"n_experts": 4, "expert_hidden_sizes": (64, 32), "tower_hidden_sizes": (16,)},
    "ple": {
        "n_task_experts": 2,
        "n_shared_experts": 2,
        "expert_hidden_sizes": (64, 32),
        "tower_hidden_sizes": (16,),
    },
    "shared_bottom": {"bottom_hidden_sizes": (64, 32), "tower_hidden_sizes": (16,)},
}


def _run_demo(args: argparse.Namespace) -> int:
    """Train on the synthetic generator and print per-task test AUC and log loss."""
    import torch
    from sklearn.model_selection import train_test_split

    from .datasets import make_multitask_classification
    from .metrics import per_task_log_loss, per_task_roc_auc

    X, Y = make_multitask_classification(
        n_samples=args.n_samples,
        n_tasks=args.n_tasks,
        task_correlation=args.task_correlation,
        n_categorical=2,
        as_frame=True,
        random_state=args.random_state,
    )
    X_train, X_test, Y_train, Y_test = train_test_split(X, Y, test_size=0.25, random_state=args.random_state)
    clf = _demo_models()[args.model](
        **_SMALL[args.model],
        optimizer=args.optimizer,
        max_epochs=args.max_epochs,
        batch_size=512,
        early_stopping=True,
        n_threads=args.threads,
        random_state=args.random_state,
        verbose=args.verbose,
    )
    print(
        f"{type(clf).__name__}: {len(X_train)} train / {len(X_test)} test rows, {args.n_tasks} tasks "
        f"(task correlation {args.task_correlation}), {X.shape[1]} features, device "
        f"{'cuda' if torch.cuda.is_available() else 'cpu'}, "
        f"{args.threads or torch.get_num_threads()} torch thread(s)"
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


# ---------------------------------------------------------------------------------------- fit
def _run_fit(args: argparse.Namespace) -> int:
    from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit

    cls = _estimator_class(args.model)
    if not 0 <= args.holdout < 1:
        raise CommandError(f"--holdout must be in [0, 1), got {args.holdout}.")
    frame = read_table(args.data)
    targets = _column_list(args.targets, "--targets")
    _require_columns(frame, targets, args.data, "target")
    special = [c for c in (args.groups, args.sample_weight) if c is not None]
    _require_columns(frame, special, args.data, "--groups / --sample-weight")
    if args.features is not None and args.exclude is not None:
        raise CommandError("give either --features or --exclude, not both.")
    if args.features is not None:
        features = _column_list(args.features, "--features")
        _require_columns(frame, features, args.data, "feature")
        clash = sorted(set(features) & set(targets + special))
        if clash:
            raise CommandError(f"columns {clash} are given both as features and as targets / groups / weights.")
    else:
        excluded = _column_list(args.exclude, "--exclude") if args.exclude else []
        _require_columns(frame, excluded, args.data, "--exclude")
        clash = sorted(set(excluded) & set(targets + special))
        if clash:
            raise CommandError(f"columns {clash} are given both to --exclude and as targets / groups / weights.")
        dropped = set(targets + special + excluded)
        features = [c for c in frame.columns if c not in dropped]
    if not features:
        raise CommandError("no feature column is left after removing the targets, groups, weights and --exclude.")
    params = _estimator_params(cls, args, frame[features])

    X, Y = frame[features], frame[targets]
    groups = None if args.groups is None else frame[args.groups].to_numpy()
    weight = None if args.sample_weight is None else _weight_column(frame, args.sample_weight)
    n = len(frame)
    if args.holdout > 0:
        splitter = (GroupShuffleSplit if groups is not None else ShuffleSplit)(
            n_splits=1, test_size=args.holdout, random_state=args.random_state
        )
        train, valid = next(splitter.split(np.zeros(n), groups=groups))
    else:
        train, valid = np.arange(n), np.arange(0)

    estimator = cls(**params)
    start = time.perf_counter()
    estimator.fit(_take(X, train), _take(Y, train), sample_weight=_take(weight, train), groups=_take(groups, train))
    fit_seconds = time.perf_counter() - start
    _save_model(estimator, args.output, args.format)

    subsets = {"train": train, "valid": valid} if len(valid) else {"train": train}
    report = {
        "model": type(estimator).__name__,
        "params": {k: v for k, v in estimator.get_params(deep=False).items() if k in params},
        "data": {"path": str(args.data), "n_rows": n, "features": list(features), "targets": targets},
        "holdout": args.holdout,
        "n_train": len(train),
        "n_valid": len(valid),
        "n_iter": int(estimator.n_iter_),
        "fit_seconds": round(fit_seconds, 3),
        "model_file": str(args.output),
        "format": args.format,
    }
    for subset, index in subsets.items():
        proba = _task_proba(estimator, X.iloc[index], _take(groups, index))
        report[subset] = task_metrics(
            Y.iloc[index], proba, targets, groups=_take(groups, index), sample_weight=_take(weight, index)
        )
    report_path = args.report or _default_report_path(args.output)
    Path(report_path).write_text(_dumps(report) + "\n")

    print(f"{type(estimator).__name__}: trained {estimator.n_iter_} epochs on {len(train)} rows in {fit_seconds:.1f} s")
    print(f"model written to {args.output} ({args.format}), report to {report_path}")
    if args.format == "joblib":
        print("(a joblib file: evaluate / predict read it with --trusted-joblib, as loading it runs code)")
    print()
    header = f"{'task':<16}" + "".join(f"{s + ' AUC':>12}{s + ' loss':>12}" for s in subsets)
    print(header)
    for task in targets + ["mean"]:
        key = "mean_" if task == "mean" else None
        cells = []
        for subset in subsets:
            m = report[subset]
            auc = m[f"{key}auc"] if key else m["auc"][task]
            loss = m[f"{key}log_loss"] if key else m["log_loss"][task]
            cells.append(f"{_fmt(auc):>12}{_fmt(loss):>12}")
        print(f"{task:<16}" + "".join(cells))
    return 0


def _take(values, index: np.ndarray):
    """Rows ``index`` of a DataFrame or an array; None stays None."""
    if values is None:
        return None
    return values.iloc[index] if hasattr(values, "iloc") else values[index]


def _estimators() -> dict[str, type]:
    """The registered estimators by short name (mmoe, ple, shared_bottom, ...)."""
    from .estimators import ESTIMATORS

    return dict(ESTIMATORS)


def _estimator_class(name: str) -> type:
    known = _estimators()
    key = name.strip().lower()
    by_class = {cls.__name__.lower(): cls for cls in known.values()}
    if key in known:
        return known[key]
    if key in by_class:
        return by_class[key]
    raise CommandError(f"unknown model {name!r}; choose one of {sorted(known)}.")


def _estimator_params(cls: type, args: argparse.Namespace, X: pd.DataFrame) -> dict:
    """Constructor arguments from the dedicated options and the ``--param KEY=VALUE`` pairs."""
    valid = cls().get_params(deep=False)
    params = {}
    for key in ("optimizer", "max_epochs", "batch_size", "lr", "random_state", "device", "verbose"):
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    if args.threads is not None:
        params["n_threads"] = args.threads
    if args.early_stopping:
        params["early_stopping"] = True
    if args.text_features:
        params["text_features"] = _column_list(args.text_features, "--text-features")
        _require_columns(X, params["text_features"], "the features", "--text-features")
    for text in args.param:
        key, value = parse_param(text)
        if key not in valid:
            raise CommandError(f"--param {key!r}: {cls.__name__} has no such parameter; it has {sorted(valid)}.")
        if key in params or (key == "categorical_features" and args.categorical_features):
            flag = _DEDICATED.get(key)
            raise CommandError(f"--param {key!r} is set twice" + (f" (also by {flag})." if flag else "."))
        params[key] = value
    if args.categorical_features:  # after --param, which may give other roles (text, sequence)
        params["categorical_features"] = _categorical_columns(args.categorical_features, X, params)
    # The command keeps its documented behaviour (no inner split unless asked) rather than the
    # estimators' early_stopping="auto"; --param early_stopping=auto selects that.
    params.setdefault("early_stopping", False)
    if args.optimizer_param:
        params["optimizer"] = _optimizer_instance(params.get("optimizer", "adam"), args.optimizer_param)
    return params


def _categorical_columns(option: str, X: pd.DataFrame, params: dict) -> list:
    """``--categorical-features`` plus the string columns, as the default "from_dtype" makes
    them categorical; columns with another role (text, sequence) are left to it."""
    from .features._roles import infer_kind, warn_free_text

    declared = _column_list(option, "--categorical-features")
    _require_columns(X, declared, "the features", "--categorical-features")
    other = {}
    for key in ("text_features", "sequence_features"):
        value = params.get(key) or []
        for column in [value] if isinstance(value, str) else list(value):  # a dict's keys are its columns
            other.setdefault(column, key)
    both = [c for c in declared if c in other]
    if both:
        raise CommandError(
            f"column(s) {both} are given both to --categorical-features and as {other[both[0]]}; a column has one role."
        )
    strings = [c for c in X.columns if _is_string(X[c]) and c not in declared and c not in other]
    # Categorical without being named: the same free-text warning as "from_dtype" gives.
    warn_free_text(X, [c for c in strings if infer_kind(X[c]) == "string"])
    return declared + strings


def _optimizer_instance(name, texts: list[str]):
    """A multi-task method built from its registered name and ``--optimizer-param KEY=VALUE`` pairs."""
    from .optim import OPTIMIZERS

    if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
        raise CommandError(
            f"--optimizer-param needs a registered --optimizer name ({sorted(OPTIMIZERS)}), got {name!r}."
        )
    cls = OPTIMIZERS[name.lower()]
    valid = cls().get_params(deep=False)
    kwargs = {}
    for text in texts:
        key, value = parse_param(text)
        if key not in valid:
            raise CommandError(
                f"--optimizer-param {key!r}: {cls.__name__} has no such parameter; it has {sorted(valid)}."
            )
        if key in kwargs:
            raise CommandError(f"--optimizer-param {key!r} is set twice.")
        kwargs[key] = value
    return cls(**kwargs)


def parse_param(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read by :func:`ast.literal_eval` (never executed); a bare word
    such as ``relu`` is taken as a string.

    Examples
    --------
    >>> parse_param("expert_hidden_sizes=(64, 32)")
    ('expert_hidden_sizes', (64, 32))
    >>> parse_param("activation=gelu")
    ('activation', 'gelu')
    """
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key.isidentifier():
        raise CommandError(f"--param {text!r} is not KEY=VALUE with KEY a parameter name.")
    try:
        return key, ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if re.fullmatch(r"[A-Za-z_][\w.\-]*", raw):
            return key, raw
        raise CommandError(
            f"--param {key}: cannot read {raw!r}; give a Python literal (number, 'string', tuple, list, dict, "
            "True / False / None) or a bare word."
        ) from None


def _default_report_path(model_path: str) -> str:
    path = Path(model_path)
    return str(path.with_name(path.stem + ".metrics.json")) if path.suffix else str(path) + ".metrics.json"


def _save_model(estimator, path: str, fmt: str) -> None:
    if fmt == "safe":
        try:
            from .persistence import save
        except ImportError:
            raise CommandError(
                "--format safe needs sklearn_mtr.persistence, absent from this installation; use --format joblib."
            ) from None
        try:
            save(estimator, path)
        except ValueError as exc:
            raise CommandError(
                f"the model cannot be written in the safe format ({exc}); --format joblib writes it, "
                "and evaluate / predict then read it with --trusted-joblib."
            ) from None
    else:
        import joblib

        joblib.dump(estimator, path)


def load_model(path: str, trusted_joblib: bool = False):
    """A model file written by ``fit``: the safe format (a zip archive), or joblib when
    ``trusted_joblib`` is true (loading a joblib / pickle file runs code from the file)."""
    if not Path(path).is_file():
        raise CommandError(f"model file {path!r} does not exist.")
    if zipfile.is_zipfile(path):
        from .persistence import load

        return load(path)
    if not trusted_joblib:
        raise CommandError(
            f"model file {path!r} is not a safe-format model (sklearn_mtr.persistence). If it is a joblib / "
            "pickle file (fit --format joblib) from a source you trust, pass --trusted-joblib: loading such a "
            "file runs code from it."
        )
    import joblib

    return joblib.load(path)


# ---------------------------------------------------------------------------------------- evaluate / predict
def _final(model):
    """The estimator of ``model``: itself, or the last step of a ``Pipeline`` (which holds the
    task names and classes; the pipeline as a whole predicts)."""
    from sklearn.pipeline import Pipeline

    return model[-1] if isinstance(model, Pipeline) else model


def _with_threads(model, threads):
    """The loaded model, predicting with ``--threads`` when given (else its saved n_threads)."""
    if threads is not None:
        _final(model).set_params(n_threads=threads)
    return model


def _run_evaluate(args: argparse.Namespace) -> int:
    model = _with_threads(load_model(args.model_file, args.trusted_joblib), args.threads)
    frame = read_table(args.data)
    task_names = [str(t) for t in _final(model).task_names_]
    targets = _column_list(args.targets, "--targets") if args.targets else task_names
    if len(targets) != len(task_names):
        raise CommandError(
            f"--targets names {len(targets)} columns; the model has {len(task_names)} tasks {task_names}."
        )
    _require_columns(frame, targets, args.data, "target")
    for column in (args.groups, args.sample_weight):
        if column is not None:
            _require_columns(frame, [column], args.data, "--groups / --sample-weight")
    weight = None if args.sample_weight is None else _weight_column(frame, args.sample_weight)
    groups = None if args.groups is None else frame[args.groups].to_numpy()
    labels = _labels(model, frame, targets)  # checked before predicting: a bad column fails fast
    proba = _task_proba(model, _features(model, frame, args.data), groups)
    report = {
        "model": type(model).__name__,
        "data": str(args.data),
        "n_rows": len(frame),
        **task_metrics(labels, proba, targets, groups=groups, sample_weight=weight),
    }
    text = _dumps(report)
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        print(text)
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    model = _with_threads(load_model(args.model_file, args.trusted_joblib), args.threads)
    frame = read_table(args.data)
    ids = _column_list(args.id_column, "--id-column") if args.id_column else []
    _require_columns(frame, ids, args.data, "--id-column")
    task_names = [str(t) for t in _final(model).task_names_]
    clash = sorted(set(ids) & set(task_names))
    if clash:
        raise CommandError(f"--id-column {clash} has the name of a task; the output has one column per task.")
    if args.groups is not None:
        _require_columns(frame, [args.groups], args.data, "--groups")
    groups = None if args.groups is None else frame[args.groups].to_numpy()
    proba = _task_proba(model, _features(model, frame, args.data), groups)
    out = frame[ids].reset_index(drop=True)
    for k, task in enumerate(task_names):
        out[task] = proba[:, k]
    write_table(out, args.output)
    return 0


def _features(model, frame: pd.DataFrame, source) -> pd.DataFrame:
    """The columns the model was fitted on, in the fitted order."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        raise CommandError("the model was fitted on an array, not a table; use it from Python.")
    names = [str(c) for c in names]
    _require_columns(frame, names, source, "feature")
    return frame[names]


def _labels(model, frame: pd.DataFrame, targets: list[str]) -> pd.DataFrame:
    """The label columns read as the model's ``fit`` read its labels: 0/1 numbers per task
    (NaN or empty = missing; text is an error, never mapped), or, for a binary classifier
    fitted on a 1-D ``y``, its two ``classes_`` (1 = ``classes_[1]``, the class whose
    probability is reported)."""
    if not getattr(_final(model), "binary_", False):
        return frame[targets]
    column, classes = frame[targets[0]], list(_final(model).classes_)
    present = column.notna()
    unknown = column[present & ~column.isin(classes)]
    if len(unknown):
        examples = ", ".join(repr(v) for v in list(dict.fromkeys(unknown.head(1000).tolist()))[:3])
        raise CommandError(f"label column {targets[0]!r} holds {examples}, not one of the model's classes {classes}.")
    y = np.where(present, (column == classes[1]).to_numpy(dtype=float), np.nan)
    return pd.DataFrame({targets[0]: y})


def _task_proba(model, X: pd.DataFrame, groups=None) -> np.ndarray:
    """One probability column per task; ``groups`` go to the models that score requests
    together (``predict_proba(X, groups=...)``, e.g. OneRank)."""
    takes_groups = "groups" in inspect.signature(model.predict_proba).parameters
    proba = model.predict_proba(X, groups=groups) if takes_groups and groups is not None else model.predict_proba(X)
    return proba[:, 1:] if getattr(_final(model), "binary_", False) else proba


def task_metrics(Y, proba: np.ndarray, task_names: list[str], *, groups=None, sample_weight=None) -> dict:
    """Per-task ROC AUC, log loss, GAUC (with ``groups``), label counts and their means."""
    import warnings

    from ._validation import task_label_values
    from .metrics import group_auc_score, per_task_log_loss, per_task_roc_auc

    Y = pd.DataFrame(Y)
    # Text labels are an error naming the column, as in fit: read as missing, they would leave
    # the mean AUC to the other tasks and the command would succeed.
    y = np.column_stack(
        [task_label_values(Y.iloc[:, k], f"label column {name!r}") for k, name in enumerate(task_names)]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # single-class tasks give NaN, reported as null
        auc = per_task_roc_auc(y, proba, sample_weight=sample_weight)
        loss = per_task_log_loss(y, proba, sample_weight=sample_weight)
        gauc = None if groups is None else group_auc_score(y, proba, groups, sample_weight=sample_weight)
    labelled = ~np.isnan(y)
    out = {
        "n_labelled": dict(zip(task_names, labelled.sum(0).tolist())),
        "positive_rate": dict(zip(task_names, (np.nansum(y, 0) / np.maximum(labelled.sum(0), 1)).tolist())),
        "auc": dict(zip(task_names, auc.tolist())),
        "log_loss": dict(zip(task_names, loss.tolist())),
        "mean_auc": _nanmean(auc),
        "mean_log_loss": _nanmean(loss),
    }
    if gauc is not None:
        out["gauc"] = dict(zip(task_names, np.atleast_1d(gauc).tolist()))
        out["mean_gauc"] = _nanmean(np.atleast_1d(gauc))
    return out


# ---------------------------------------------------------------------------------------- tables
def _parquet_engine(action: str) -> None:
    try:
        import pyarrow  # noqa: F401  (only its presence is checked)
    except ImportError:
        raise ImportError(
            f"{action} Parquet needs pyarrow, an optional dependency: `pip install sklearn-mtr[parquet]`."
        ) from None


def _kind(path: str) -> str:
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in _PARQUET:
        return "parquet"
    if any(s in _CSV for s in suffixes[-2:]):
        return "tsv" if ".tsv" in suffixes[-2:] else "csv"
    raise CommandError(f"{path!r}: unknown file type; use .csv, .tsv (optionally .gz, .zip, ...) or .parquet.")


def read_table(path: str) -> pd.DataFrame:
    """A CSV / TSV (compressed or not) or Parquet file as a DataFrame."""
    kind = _kind(path)
    if not Path(path).is_file():
        raise CommandError(f"data file {path!r} does not exist.")
    if kind == "parquet":
        _parquet_engine("reading")
        return pd.read_parquet(path)
    return pd.read_csv(path, sep="\t" if kind == "tsv" else ",")


def write_table(frame: pd.DataFrame, path: str) -> None:
    """Write CSV / TSV / Parquet by the file's extension; ``-`` is CSV on standard output."""
    if path == "-":
        frame.to_csv(sys.stdout, index=False)
        return
    kind = _kind(path)
    if kind == "parquet":
        _parquet_engine("writing")
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, sep="\t" if kind == "tsv" else ",", index=False)


# ---------------------------------------------------------------------------------------- helpers
def _column_list(text: str, option: str) -> list[str]:
    columns = [c.strip() for c in text.split(",")]
    if not all(columns):
        raise CommandError(f"{option} {text!r}: empty column name; give comma-separated column names.")
    if len(set(columns)) != len(columns):
        raise CommandError(f"{option} {text!r} names a column twice.")
    return columns


def _require_columns(frame: pd.DataFrame, columns: list[str], source, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        shown = [str(c) for c in frame.columns[:30]] + (["..."] if frame.shape[1] > 30 else [])
        raise CommandError(f"{what} column(s) {missing} not found in {source}; its columns are {shown}.")


def _weight_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    if np.isnan(values).any() or (values < 0).any():
        raise CommandError(f"--sample-weight column {column!r} must hold non-negative numbers, without gaps.")
    return values


def _is_string(column: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(column.dtype) or isinstance(column.dtype, pd.CategoricalDtype)


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if not np.isnan(values).all() else float("nan")


def _fmt(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _dumps(obj) -> str:
    """JSON with NaN written as null (JSON has no NaN) and tuples as lists."""

    def clean(value):
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        return repr(value)

    return json.dumps(clean(obj), indent=2)
