"""Data sets for multi-task binary classification and ranking.

- :func:`make_multitask_classification`: the synthetic benchmark of the MMoE paper,
  with a controllable correlation between tasks.
- :func:`load_census_income`: the UCI Census-Income (KDD) data in the MMoE / PLE
  two-task setup (income above 50K, never married). The files are read from a
  local folder; nothing is ever downloaded.
- :func:`make_funnel_classification`: nested funnel labels (click, then conversion,
  ...) with controllable conditional rates, for ESMM / AITM / ResFlow.
- :func:`make_request_classification`: requests of candidates whose relevance depends
  on the other candidates of the request, for request-aware rankers (OneRank).
"""

from __future__ import annotations

import numbers
import os
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtri
from sklearn.utils import Bunch, check_random_state

from ._constraints import Interval, check_value

__all__ = [
    "load_census_income",
    "make_funnel_classification",
    "make_multitask_classification",
    "make_request_classification",
]


# ---------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------


def _check_int(value, name, *, min_value):
    check_value(name, value, [Interval(numbers.Integral, min_value)])
    return int(value)


def _check_real(value, name):
    check_value(name, value, [Interval(numbers.Real)])
    return float(value)


def _task_weights(n_features, n_tasks, task_correlation, rng):
    """Weight vectors, shape (n_features, n_tasks), all with cosine ``p`` to task 0."""
    # QR of a Gaussian matrix gives orthonormal columns u_0, ..., u_{T-1}
    basis, _ = np.linalg.qr(rng.standard_normal((n_features, n_tasks)))
    weights = np.empty((n_features, n_tasks))
    weights[:, 0] = basis[:, 0]
    p = task_correlation
    weights[:, 1:] = p * basis[:, [0]] + np.sqrt(1.0 - p**2) * basis[:, 1:]
    return weights


def _make_multitask_continuous(n_samples, n_features, n_tasks, task_correlation, n_sinusoids, noise, rng):
    """Draw features and the continuous (pre-threshold) targets.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    Y_cont : ndarray of shape (n_samples, n_tasks)
    weights : ndarray of shape (n_features, n_tasks)
    """
    weights = _task_weights(n_features, n_tasks, task_correlation, rng)
    X = rng.standard_normal((n_samples, n_features))
    Z = X @ weights
    Y_cont = Z.copy()
    # a_i = i and b_i = (i - 1)^2: the paper leaves them open, these are the values
    # of google-research's reference generator
    for i in range(1, n_sinusoids + 1):
        Y_cont += np.sin(i * Z + (i - 1) ** 2)
    Y_cont += noise * rng.standard_normal((n_samples, n_tasks))
    return X, Y_cont, weights


def make_multitask_classification(
    n_samples: int = 10000,
    n_features: int = 16,
    n_tasks: int = 2,
    *,
    task_correlation: float = 0.5,
    n_sinusoids: int = 10,
    noise: float = 0.01,
    n_categorical: int = 0,
    n_categories: int = 8,
    label_mode: str = "median",
    as_frame: bool = False,
    random_state: int | np.random.RandomState | None = None,
) -> tuple[np.ndarray | pd.DataFrame, np.ndarray | pd.DataFrame]:
    """Generate a synthetic multi-task binary problem with controlled task correlation.

    This is the synthetic recipe of the MMoE paper [1]_. Orthonormal unit vectors
    ``u_0, ..., u_{T-1}`` are drawn in ``R^d`` (QR decomposition of a Gaussian
    matrix) and the task weight vectors are::

        w_0 = u_0
        w_k = p * u_0 + sqrt(1 - p^2) * u_k        for k >= 1

    with ``p = task_correlation``. Features are ``x ~ N(0, I_d)`` and the continuous
    target of task ``k`` is::

        y_k = w_k . x + sum_{i=1}^{m} sin(a_i * w_k . x + b_i) + eps,
        eps ~ N(0, noise^2)

    with ``m = n_sinusoids``. The paper does not give ``a_i`` and ``b_i``; like
    google-research's reference generator, this function uses ``a_i = i`` and
    ``b_i = (i - 1)^2`` (and the scale ``c = 1``). Each ``y_k`` is then turned into
    a binary label (see ``label_mode``).

    Parameters
    ----------
    n_samples : int, default=10000
        Number of samples.

    n_features : int, default=16
        Number of features ``d``. Must be at least ``n_tasks`` (one orthonormal
        direction per task).

    n_tasks : int, default=2
        Number of tasks ``T``.

    task_correlation : float, default=0.5
        Cosine ``p`` between the weight vector of task 0 and that of every other
        task, in ``[-1, 1]``. Negative values give conflicting tasks.

        For ``n_tasks > 2`` the correlation is anchored on task 0: every task has
        cosine ``p`` with task 0, and any two tasks ``j, k >= 1`` have cosine
        ``p^2`` with each other (their private directions ``u_j`` and ``u_k`` are
        orthogonal). With a negative ``p`` the tasks ``k >= 1`` thus conflict with
        task 0 but agree with one another.

        ``p`` is the correlation of the linear parts ``w_k . x``. The sinusoidal
        terms are much less correlated than the linear parts, so the correlation of
        the continuous targets (and even more that of the binary labels) has the
        sign of ``p`` and grows with ``|p|`` but is smaller in magnitude (about
        ``0.45`` for ``p = 0.9`` with the default ``n_sinusoids=10``), except at
        ``|p| = 1`` where the tasks coincide (or are mirror images).

    n_sinusoids : int, default=10
        Number ``m`` of sinusoidal terms (the non-linear part). ``0`` gives a
        linear problem whose target correlation is ``p``.

    noise : float, default=0.01
        Standard deviation of the Gaussian noise added to each continuous target.

    n_categorical : int, default=0
        Number of feature columns, taken from the end, that are replaced by the
        codes of equal-probability bins (quantiles of the standard normal
        distribution, so the binning does not depend on the sample). Labels are
        computed from the continuous features, so these columns only carry a coarse
        version of their information.

    n_categories : int, default=8
        Number of levels of each categorical column.

    label_mode : {"median", "bernoulli"}, default="median"
        How continuous targets become binary labels:

        - ``"median"``: ``1`` where ``y_k`` is above its sample median (balanced
          labels, no label noise);
        - ``"bernoulli"``: a draw from ``Bernoulli(sigmoid(y_k - median(y_k)))``
          (noisy labels, roughly balanced).

    as_frame : bool, default=False
        If True, return pandas DataFrames: numeric columns ``x0, x1, ...`` as
        float64, categorical columns ``cat0, cat1, ...`` with the ``category`` dtype
        and levels ``"c0", "c1", ...``, and targets ``task0, task1, ...``.

    random_state : int, RandomState instance or None, default=None
        Determines random number generation. Pass an int for reproducible output
        across multiple function calls.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features) or DataFrame
        Features. As an array, categorical columns hold their integer codes as
        floats and come last.

    Y : ndarray of shape (n_samples, n_tasks) of int or DataFrame
        Binary labels, one column per task.

    References
    ----------
    .. [1] J. Ma, Z. Zhao, X. Yi, J. Chen, L. Hong and E. H. Chi, "Modeling Task
       Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts",
       KDD 2018.

    Examples
    --------
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> X, Y = make_multitask_classification(
    ...     n_samples=1000, n_tasks=3, task_correlation=0.8, random_state=0)
    >>> X.shape, Y.shape
    ((1000, 16), (1000, 3))
    >>> Y.mean(axis=0)
    array([0.5, 0.5, 0.5])
    >>> X, Y = make_multitask_classification(
    ...     n_samples=100, n_categorical=2, as_frame=True, random_state=0)
    >>> list(X.columns[-3:])
    ['x13', 'cat0', 'cat1']
    >>> X["cat0"].cat.categories.tolist()
    ['c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7']
    """
    n_samples = _check_int(n_samples, "n_samples", min_value=1)
    n_features = _check_int(n_features, "n_features", min_value=1)
    n_tasks = _check_int(n_tasks, "n_tasks", min_value=1)
    if n_features < n_tasks:
        raise ValueError(
            f"n_features must be >= n_tasks (one orthonormal direction per task), "
            f"got n_features={n_features} and n_tasks={n_tasks}."
        )
    task_correlation = _check_real(task_correlation, "task_correlation")
    if not -1.0 <= task_correlation <= 1.0:
        raise ValueError(f"task_correlation must be in [-1, 1], got {task_correlation}.")
    n_sinusoids = _check_int(n_sinusoids, "n_sinusoids", min_value=0)
    noise = _check_real(noise, "noise")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}.")
    n_categorical = _check_int(n_categorical, "n_categorical", min_value=0)
    if n_categorical > n_features:
        raise ValueError(
            f"n_categorical must be <= n_features, got n_categorical={n_categorical} and n_features={n_features}."
        )
    n_categories = _check_int(n_categories, "n_categories", min_value=2)
    if label_mode not in ("median", "bernoulli"):
        raise ValueError(f"label_mode must be 'median' or 'bernoulli', got {label_mode!r}.")
    if not isinstance(as_frame, (bool, np.bool_)):
        raise ValueError(f"as_frame must be a bool, got {as_frame!r}.")
    rng = check_random_state(random_state)

    X, Y_cont, _ = _make_multitask_continuous(n_samples, n_features, n_tasks, task_correlation, n_sinusoids, noise, rng)

    centred = Y_cont - np.median(Y_cont, axis=0)
    if label_mode == "median":
        Y = (centred > 0).astype(np.int64)
    else:
        proba = 1.0 / (1.0 + np.exp(-centred))
        Y = (rng.uniform(size=centred.shape) < proba).astype(np.int64)

    return _finish_features(X, Y, n_categorical, n_categories, as_frame, [f"task{k}" for k in range(n_tasks)])


def _finish_features(X, Y, n_categorical, n_categories, as_frame, task_names):
    """Quantise the last ``n_categorical`` columns of the N(0, 1) features into categories
    and, with ``as_frame``, build the DataFrames (``x*`` floats, ``cat*`` categoricals)."""
    n_numeric = X.shape[1] - n_categorical
    if n_categorical:
        # equal-probability bins of N(0, 1): every level is about as frequent
        edges = ndtri(np.arange(1, n_categories) / n_categories)
        X[:, n_numeric:] = np.searchsorted(edges, X[:, n_numeric:], side="right")
    if not as_frame:
        return X, Y
    columns = {f"x{j}": X[:, j] for j in range(n_numeric)}
    levels = [f"c{c}" for c in range(n_categories)]
    for j in range(n_categorical):
        columns[f"cat{j}"] = pd.Categorical.from_codes(X[:, n_numeric + j].astype(np.int64), categories=levels)
    return pd.DataFrame(columns), pd.DataFrame(Y, columns=task_names)


# ---------------------------------------------------------------------------
# Census-Income (KDD)
# ---------------------------------------------------------------------------

CENSUS_COLUMNS = (
    "age",
    "class_worker",
    "det_ind_code",
    "det_occ_code",
    "education",
    "wage_per_hour",
    "hs_college",
    "marital_stat",
    "major_ind_code",
    "major_occ_code",
    "race",
    "hisp_origin",
    "sex",
    "union_member",
    "unemp_reason",
    "full_or_part_emp",
    "capital_gains",
    "capital_losses",
    "stock_dividends",
    "tax_filer_stat",
    "region_prev_res",
    "state_prev_res",
    "det_hh_fam_stat",
    "det_hh_summ",
    "instance_weight",
    "mig_chg_msa",
    "mig_chg_reg",
    "mig_move_reg",
    "mig_same",
    "mig_prev_sunbelt",
    "num_emp",
    "fam_under_18",
    "country_father",
    "country_mother",
    "country_self",
    "citizenship",
    "own_or_self",
    "vet_question",
    "vet_benefits",
    "weeks_worked",
    "year",
    "income_50k",
)

CENSUS_CONTINUOUS = (
    "age",
    "wage_per_hour",
    "capital_gains",
    "capital_losses",
    "stock_dividends",
    "num_emp",
    "weeks_worked",
)

_CENSUS_TASKS = ("income", "never_married")
_CENSUS_NOT_FEATURES = ("income_50k", "marital_stat", "instance_weight")
_CENSUS_LEAKY = ("det_hh_fam_stat", "det_hh_summ")
_CENSUS_ENV = "SKLEARN_MTR_CENSUS_PATH"
_CENSUS_URL = "https://archive.ics.uci.edu/dataset/117/census+income+kdd"

_CENSUS_DESCR_TITLE = """\
Census-Income (KDD), multi-task version
---------------------------------------

"""

# one paragraph per item; filled to 79 columns when the Bunch is built
_CENSUS_DESCR_PARAGRAPHS = (
    (
        "Weighted census records from the 1994 and 1995 Current Population Surveys of "
        "the U.S. Census Bureau, as published in the UCI Machine Learning Repository: "
        "Census-Income (KDD), donated by Terran Lane and Ronny Kohavi, {url}, licensed "
        "under CC BY 4.0."
    ),
    (
        "Tasks (as in the MMoE paper, Ma et al., KDD 2018, and PLE): 'income' (total "
        "person income above 50,000 USD, label '50000+.') and 'never_married' (marital "
        "status 'Never married')."
    ),
    (
        "Preprocessing: 'marital_stat' and the income label are removed from the "
        "features, and so is 'instance_weight', a sampling weight that UCI says is not "
        "a feature (it is returned as sample_weight_*). Continuous columns (float64): "
        "{continuous}. Every other column, the integer-coded ones included, is "
        "categorical with string levels; '?' (not recorded) is kept as a level of its "
        "own and spaces around levels are stripped. A column has the same sorted "
        "levels, the union of those of the official train and test files, in the three "
        "splits. {leaky}"
    ),
    (
        "Split: train is the whole official train file ({n_train} rows); the official "
        "test file is cut at random into two halves, valid ({n_valid} rows) and test "
        "({n_test} rows)."
    ),
)


def _find_census_file(folder, stem):
    for name in (f"{stem}.gz", stem):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _census_missing_message(where):
    return (
        f"{where} The Census-Income (KDD) files are not shipped and never "
        f"downloaded: get them from the UCI Machine Learning Repository ({_CENSUS_URL}), "
        f"put 'census-income.data' and 'census-income.test' (or their '.gz' "
        f"versions) in one folder, and pass that folder as `path` or set the "
        f"environment variable {_CENSUS_ENV}."
    )


def _strip_levels(column):
    """Strip spaces around the levels of a categorical Series, merging any clashes."""
    levels, codes = np.unique(
        np.asarray(column.cat.categories.str.strip(), dtype=object),
        return_inverse=True,
    )
    # work on the few levels rather than on every row: much faster
    return pd.Series(
        pd.Categorical.from_codes(codes[column.cat.codes], categories=list(levels)),
        index=column.index,
        name=column.name,
    )


def _read_census_file(path):
    # read codes as text (not "category", which would parse "04" as the integer 4)
    dtypes = {c: "float64" if c in CENSUS_CONTINUOUS else str for c in CENSUS_COLUMNS}
    dtypes["instance_weight"] = "float64"
    frame = pd.read_csv(
        path,
        header=None,
        names=list(CENSUS_COLUMNS),
        skipinitialspace=True,
        dtype=dtypes,
        # "?" and any other text must stay a level, never become NaN
        keep_default_na=False,
        na_values=[],
    )
    for column in CENSUS_COLUMNS:
        if column not in CENSUS_CONTINUOUS and column != "instance_weight":
            # some levels end with a space in the raw files ("... of U S ")
            frame[column] = _strip_levels(frame[column].astype("category"))
    return frame


def load_census_income(
    path: str | os.PathLike | None = None,
    *,
    drop_leaky: bool = False,
    split_random_state: int | np.random.RandomState | None = 0,
) -> Bunch:
    """Load the UCI Census-Income (KDD) data as a two-task problem.

    The tasks are those of the MMoE paper [1]_ (also used by PLE): ``income``
    (income above 50K) and ``never_married`` (marital status "Never married").
    The split follows the MMoE protocol: train is the whole official train file
    (199,523 rows) and the official test file (99,762 rows) is halved at random
    into a validation and a test set.

    The files are never downloaded: get them from the UCI Machine Learning
    Repository (https://archive.ics.uci.edu/dataset/117/census+income+kdd).

    Parameters
    ----------
    path : str, path-like or None, default=None
        Folder holding ``census-income.data.gz`` and ``census-income.test.gz``
        (the uncompressed ``census-income.data`` and ``census-income.test`` are
        accepted too). If None, the environment variable ``SKLEARN_MTR_CENSUS_PATH``
        is used.

    drop_leaky : bool, default=False
        If True, also drop ``det_hh_fam_stat`` and ``det_hh_summ``. Their levels
        (e.g. "Child 18+ never marr Not in a subfamily", "Spouse of householder")
        nearly encode marital status, which makes ``never_married`` close to
        trivial. The default keeps them, to match the published torch-rechub and
        PaddleRec setups of this benchmark.

    split_random_state : int, RandomState instance or None, default=0
        Seed of the random halving of the official test file into valid and test.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        X_train, X_valid, X_test : DataFrame
            Features. Continuous columns are float64; every other column has the
            ``category`` dtype with string levels, the same levels in the three
            frames.
        Y_train, Y_valid, Y_test : DataFrame of int64
            Binary labels, columns ``["income", "never_married"]``.
        sample_weight_train, sample_weight_valid, sample_weight_test : ndarray
            The census ``instance_weight`` of each row (not a feature).
        task_names : list of str
            ``["income", "never_married"]``.
        feature_names : list of str
            Columns of the ``X_*`` frames.
        categorical_features : list of str
            The categorical columns among ``feature_names``.
        DESCR : str
            Description of the data, its preprocessing and its attribution.

    Raises
    ------
    FileNotFoundError
        If neither ``path`` nor ``SKLEARN_MTR_CENSUS_PATH`` is given, or if the
        folder lacks one of the two files.

    Notes
    -----
    Data: UCI Machine Learning Repository, Census-Income (KDD), donated by Terran
    Lane and Ronny Kohavi, licensed under CC BY 4.0.

    References
    ----------
    .. [1] J. Ma, Z. Zhao, X. Yi, J. Chen, L. Hong and E. H. Chi, "Modeling Task
       Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts",
       KDD 2018.

    Examples
    --------
    >>> from sklearn_mtr.datasets import load_census_income
    >>> data = load_census_income("/path/to/census")  # doctest: +SKIP
    >>> data.X_train.shape, data.X_valid.shape, data.X_test.shape  # doctest: +SKIP
    ((199523, 39), (49881, 39), (49881, 39))
    >>> data.Y_train.mean().round(3)  # doctest: +SKIP
    income           0.062
    never_married    0.434
    dtype: float64
    """
    if not isinstance(drop_leaky, (bool, np.bool_)):
        raise ValueError(f"drop_leaky must be a bool, got {drop_leaky!r}.")
    if path is None:
        env_path = os.environ.get(_CENSUS_ENV)
        if not env_path:
            raise FileNotFoundError(
                _census_missing_message(f"No folder given: `path` is None and {_CENSUS_ENV} is not set.")
            )
        path = env_path
    folder = Path(path).expanduser()
    files = {}
    for split, stem in (("train", "census-income.data"), ("test", "census-income.test")):
        found = _find_census_file(folder, stem)
        if found is None:
            raise FileNotFoundError(
                _census_missing_message(f"Neither {stem}.gz nor {stem} was found in {str(folder)!r}.")
            )
        files[split] = found
    rng = check_random_state(split_random_state)

    train = _read_census_file(files["train"])
    test = _read_census_file(files["test"])

    def targets(frame):
        return pd.DataFrame(
            {
                "income": (frame["income_50k"] == "50000+.").astype(np.int64),
                "never_married": (frame["marital_stat"] == "Never married").astype(np.int64),
            }
        )

    dropped = set(_CENSUS_NOT_FEATURES)
    if drop_leaky:
        dropped.update(_CENSUS_LEAKY)
    feature_names = [c for c in CENSUS_COLUMNS if c not in dropped]
    categorical = [c for c in feature_names if c not in CENSUS_CONTINUOUS]

    X_train = train[feature_names].copy()
    X_test_full = test[feature_names].copy()
    for column in categorical:
        # one dtype for all splits, so that codes mean the same thing everywhere
        levels = sorted(set(X_train[column].cat.categories) | set(X_test_full[column].cat.categories))
        dtype = pd.CategoricalDtype(categories=levels, ordered=False)
        X_train[column] = X_train[column].astype(dtype)
        X_test_full[column] = X_test_full[column].astype(dtype)

    n_full = len(test)
    permutation = rng.permutation(n_full)
    # keep file order inside each half: easier to compare with the raw file
    valid_idx = np.sort(permutation[: n_full // 2])
    test_idx = np.sort(permutation[n_full // 2 :])

    def take(frame, idx):
        return frame.iloc[idx].reset_index(drop=True)

    Y_test_full = targets(test)
    weight_test_full = test["instance_weight"].to_numpy(dtype=np.float64)

    leaky = (
        "'det_hh_fam_stat' and 'det_hh_summ', whose levels nearly encode marital status, are dropped (drop_leaky=True)."
        if drop_leaky
        else "'det_hh_fam_stat' and 'det_hh_summ' are kept (drop_leaky=False, as in "
        "torch-rechub and PaddleRec) although their levels nearly encode marital "
        "status."
    )
    fields = {
        "url": _CENSUS_URL,
        "continuous": ", ".join(CENSUS_CONTINUOUS),
        "leaky": leaky,
        "n_train": len(train),
        "n_valid": len(valid_idx),
        "n_test": len(test_idx),
    }
    descr = _CENSUS_DESCR_TITLE + "\n\n".join(
        textwrap.fill(paragraph.format(**fields), width=79) for paragraph in _CENSUS_DESCR_PARAGRAPHS
    )

    return Bunch(
        X_train=X_train,
        Y_train=targets(train),
        X_valid=take(X_test_full, valid_idx),
        Y_valid=take(Y_test_full, valid_idx),
        X_test=take(X_test_full, test_idx),
        Y_test=take(Y_test_full, test_idx),
        sample_weight_train=train["instance_weight"].to_numpy(dtype=np.float64),
        sample_weight_valid=weight_test_full[valid_idx],
        sample_weight_test=weight_test_full[test_idx],
        task_names=list(_CENSUS_TASKS),
        feature_names=feature_names,
        categorical_features=categorical,
        DESCR=descr,
    )


# ---------------------------------------------------------------------------
# Funnel data
# ---------------------------------------------------------------------------


def make_funnel_classification(
    n_samples: int = 10000,
    n_features: int = 16,
    n_stages: int = 2,
    *,
    stage_rates=(0.2, 0.1),
    n_categorical: int = 0,
    as_frame: bool = False,
    random_state: int | np.random.RandomState | None = None,
) -> tuple[np.ndarray | pd.DataFrame, np.ndarray | pd.DataFrame]:
    """Generate a synthetic conversion funnel: nested binary labels, one per stage.

    Stage ``t`` (click, add-to-cart, order, ...) can only be positive where stage
    ``t - 1`` is, and ``stage_rates[t]`` sets its rate *among the rows positive at
    stage t - 1* (for stage 0: among all rows). Features are ``x ~ N(0, I_d)``. Each
    stage has a unit weight vector ``w_t = (u_0 + u_{t+1}) / sqrt(2)`` (orthonormal
    ``u``: the stages share one direction and each has one of its own) and a latent
    score ``s_t = 2 w_t . x + sin(3 w_t . x) + logistic noise``. Among the rows positive
    at stage ``t - 1``, the ``stage_rates[t]`` fraction with the highest ``s_t`` is
    positive at stage ``t`` (ties aside, the rates are met exactly on the sample).
    Each label column is thus a funnel stage over the entire space: column 1 is the
    CTCVR label (click and conversion), as ESMM and AITM expect.

    Parameters
    ----------
    n_samples : int, default=10000
        Number of samples.

    n_features : int, default=16
        Number of features ``d``; at least ``n_stages + 1``.

    n_stages : int, default=2
        Number of funnel stages (label columns).

    stage_rates : sequence of float, default=(0.2, 0.1)
        Conditional positive rate of each stage given the previous one, each in (0, 1);
        one per stage. The marginal rate of stage ``t`` is their product up to ``t``.

    n_categorical : int, default=0
        Number of feature columns, taken from the end, replaced by the codes of 8
        equal-probability bins (as in :func:`make_multitask_classification`); labels
        come from the continuous values.

    as_frame : bool, default=False
        If True, return DataFrames: ``x0, x1, ...`` (float64), ``cat0, ...``
        (``category``, levels ``"c0"``..``"c7"``) and targets ``stage0, stage1, ...``.

    random_state : int, RandomState instance or None, default=None
        Determines random number generation.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features) or DataFrame
        Features; as an array, categorical codes come last as floats.

    Y : ndarray of shape (n_samples, n_stages) of int or DataFrame
        Nested 0/1 labels: ``Y[:, t] <= Y[:, t - 1]``.

    Examples
    --------
    >>> from sklearn_mtr.datasets import make_funnel_classification
    >>> X, Y = make_funnel_classification(n_samples=1000, stage_rates=(0.2, 0.1), random_state=0)
    >>> Y.mean(axis=0)
    array([0.2 , 0.02])
    """
    n_samples = _check_int(n_samples, "n_samples", min_value=1)
    n_features = _check_int(n_features, "n_features", min_value=1)
    n_stages = _check_int(n_stages, "n_stages", min_value=1)
    if n_features < n_stages + 1:
        raise ValueError(
            f"n_features must be >= n_stages + 1 (one shared and one own direction per stage), "
            f"got n_features={n_features} and n_stages={n_stages}."
        )
    try:
        rates = [float(r) for r in stage_rates]
    except (TypeError, ValueError):
        raise ValueError(f"stage_rates must be a sequence of numbers in (0, 1), got {stage_rates!r}.") from None
    if len(rates) != n_stages:
        raise ValueError(f"stage_rates must have one rate per stage ({n_stages}), got {len(rates)}: {list(rates)}.")
    if not all(0.0 < r < 1.0 for r in rates):
        raise ValueError(f"every stage rate must be in (0, 1), got {list(rates)}.")
    n_categorical = _check_int(n_categorical, "n_categorical", min_value=0)
    if n_categorical > n_features:
        raise ValueError(
            f"n_categorical must be <= n_features, got n_categorical={n_categorical} and n_features={n_features}."
        )
    if not isinstance(as_frame, (bool, np.bool_)):
        raise ValueError(f"as_frame must be a bool, got {as_frame!r}.")
    rng = check_random_state(random_state)

    X = rng.standard_normal((n_samples, n_features))
    basis, _ = np.linalg.qr(rng.standard_normal((n_features, n_stages + 1)))
    weights = (basis[:, [0]] + basis[:, 1:]) / np.sqrt(2.0)
    projection = X @ weights
    noise = rng.logistic(size=projection.shape)
    scores = 2.0 * projection + np.sin(3.0 * projection) + noise

    Y = np.zeros((n_samples, n_stages), dtype=np.int64)
    eligible = np.arange(n_samples)
    for t, rate in enumerate(rates):
        n_pos = round(rate * len(eligible))
        if n_pos:
            top = np.argsort(-scores[eligible, t], kind="stable")[:n_pos]
            Y[eligible[top], t] = 1
        eligible = np.flatnonzero(Y[:, t])

    return _finish_features(X, Y, n_categorical, 8, as_frame, [f"stage{t}" for t in range(n_stages)])


# ---------------------------------------------------------------------------
# Request data
# ---------------------------------------------------------------------------


def make_request_classification(
    n_requests: int = 1000,
    request_size: int = 20,
    n_features: int = 8,
    *,
    set_dependence: float = 1.0,
    request_spread: float = 2.0,
    click_rate: float = 0.3,
    noise: float = 0.1,
    n_users: int = 50,
    as_frame: bool = False,
    random_state: int | np.random.RandomState | None = None,
):
    """Generate ranking requests whose labels depend on the other candidates of the request.

    Each request ``r`` has a hidden centre ``c_r ~ N(0, request_spread^2 I_d)`` and
    ``request_size`` candidates ``x_i = c_r + N(0, I_d)``. With a hidden unit direction
    ``w`` and the request's mean ``m_r`` of ``u_i = w . x_i``, a candidate's relevance is
    its *typicality* ``s_i = -|u_i - set_dependence * m_r| + noise * logistic``, and the
    ``click_rate`` fraction of each request with the highest ``s_i`` is clicked (task 0).
    Task 1 (buy) is a click with ``v . x_i > 0``, ``v`` a second hidden unit direction
    orthogonal to ``w``. Each request also has a ``user`` id drawn at random: a
    request-level column that carries no information about the labels.

    With ``set_dependence=1`` the order of the candidates within a request depends on
    the request's mean, which no single row reveals (the centres spread along ``w`` as
    well): a model that scores rows one by one cannot rank them, while one that sees the
    candidate set can. With ``set_dependence=0`` the order is that of ``-|u_i|``, a
    function of the row alone: the null control, where seeing the set should not help.

    Parameters
    ----------
    n_requests : int, default=1000
        Number of requests.

    request_size : int, default=20
        Candidates per request (at least 2).

    n_features : int, default=8
        Candidate features ``d`` (at least 2).

    set_dependence : float, default=1.0
        Weight of the request mean in the relevance, ``lambda`` above (0: relevance
        depends on the candidate alone).

    request_spread : float, default=2.0
        Standard deviation of the request centres; the candidates' own spread is 1.

    click_rate : float, default=0.3
        Fraction of each request that is clicked, in (0, 1); rounded to a count per
        request (at least 1 and at most ``request_size - 1``).

    noise : float, default=0.1
        Scale of the logistic noise on the relevance (non-negative).

    n_users : int, default=50
        Number of distinct user ids.

    as_frame : bool, default=False
        If True, ``X`` is a DataFrame with columns ``x0, x1, ...`` (float64) and ``user``
        (``category``) and ``Y`` a DataFrame with columns ``click, buy``.

    random_state : int, RandomState instance or None, default=None
        Determines random number generation.

    Returns
    -------
    X : ndarray of shape (n_requests * request_size, n_features + 1) or DataFrame
        Candidate features, then the user id (as a float code in an array).

    Y : ndarray of shape (n_requests * request_size, 2) of int or DataFrame
        Click and buy labels; ``Y[:, 1] <= Y[:, 0]``.

    groups : ndarray of shape (n_requests * request_size,) of int
        Request id of each row (rows of a request are contiguous).

    Examples
    --------
    >>> from sklearn_mtr.datasets import make_request_classification
    >>> X, Y, groups = make_request_classification(n_requests=100, request_size=10, random_state=0)
    >>> X.shape, Y[groups == 0, 0].sum()
    ((1000, 9), np.int64(3))
    """
    n_requests = _check_int(n_requests, "n_requests", min_value=1)
    request_size = _check_int(request_size, "request_size", min_value=2)
    n_features = _check_int(n_features, "n_features", min_value=2)
    n_users = _check_int(n_users, "n_users", min_value=1)
    set_dependence = _check_real(set_dependence, "set_dependence")
    request_spread = _check_real(request_spread, "request_spread")
    noise = _check_real(noise, "noise")
    click_rate = _check_real(click_rate, "click_rate")
    if request_spread < 0 or noise < 0:
        raise ValueError(f"request_spread and noise must be >= 0, got {request_spread} and {noise}.")
    if not 0.0 < click_rate < 1.0:
        raise ValueError(f"click_rate must be in (0, 1), got {click_rate}.")
    if not isinstance(as_frame, (bool, np.bool_)):
        raise ValueError(f"as_frame must be a bool, got {as_frame!r}.")
    rng = check_random_state(random_state)

    centres = request_spread * rng.standard_normal((n_requests, 1, n_features))
    X = (centres + rng.standard_normal((n_requests, request_size, n_features))).reshape(-1, n_features)
    basis, _ = np.linalg.qr(rng.standard_normal((n_features, 2)))
    u = (X @ basis[:, 0]).reshape(n_requests, request_size)
    relevance = -np.abs(u - set_dependence * u.mean(axis=1, keepdims=True))
    relevance += noise * rng.logistic(size=relevance.shape)
    n_clicks = min(max(round(click_rate * request_size), 1), request_size - 1)
    rank = np.argsort(np.argsort(-relevance, axis=1, kind="stable"), axis=1, kind="stable")
    click = (rank < n_clicks).reshape(-1)
    buy = click & (X @ basis[:, 1] > 0)
    Y = np.column_stack([click, buy]).astype(np.int64)
    groups = np.repeat(np.arange(n_requests), request_size)
    user = np.repeat(rng.randint(n_users, size=n_requests), request_size)

    if not as_frame:
        return np.column_stack([X, user.astype(float)]), Y, groups
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(n_features)])
    frame["user"] = pd.Categorical(user)
    return frame, pd.DataFrame(Y, columns=["click", "buy"]), groups
