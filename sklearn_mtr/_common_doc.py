"""The documentation of the parameters every estimator shares, inserted into each class docstring."""

COMMON_PARAMETERS = """optimizer : str or MultiTaskOptimizer, default="adam"
        Multi-task optimization method: a registered name (``"adam"`` / ``"ew"`` = equal
        weighting with Adam) or an instance from :mod:`sklearn_mtr.optim`, whose own
        parameters can be searched as ``optimizer__<name>``.
    lr : float, default=1e-3
        Learning rate.
    weight_decay : float, default=0.0
        Decoupled weight decay (AdamW style).
    batch_size : int, default=256
        Rows per training step.
    max_epochs : int, default=10
        Passes over the training data (``fit``); ``partial_fit`` always runs one.
    early_stopping : "auto" or bool, default="auto"
        Hold out ``validation_fraction`` of the rows (whole groups when ``groups`` is given),
        stop when ``scoring`` on it has not improved by ``tol`` for ``n_iter_no_change``
        epochs, and restore the best epoch's weights. ``"auto"`` (as in
        :class:`~sklearn.ensemble.HistGradientBoostingClassifier`) turns it on when the
        ``fit`` call is given more than 10,000 rows and off otherwise, decided anew at each
        call (a ``warm_start`` fit included); ``partial_fit`` never stops early.
    validation_fraction : float, default=0.1
        Share of rows held out for early stopping.
    n_iter_no_change : int, default=3
        Patience of early stopping, in epochs.
    scoring : {"auc", "loss"}, default="auc"
        Early-stopping criterion: mean per-task validation ROC AUC, or validation loss.
    tol : float, default=1e-4
        Minimum improvement that resets the patience.
    ema_epochs : float or None, default=1.0
        Horizon, in epochs, of an exponential moving average of the weights (Polyak
        averaging): training moves the raw weights, while validation, early stopping's
        choice of epoch and the fitted model use the average. The decay per step is
        ``1 - 1 / (ema_epochs * steps_per_epoch)``, so the horizon does not depend on the
        data or batch size. It costs one extra copy of the weights (1.06x a SharedBottom
        epoch on Census) and lifted Census income AUC by 0.0011 (SharedBottom) and 0.0014
        (ResFlow) over 5 paired seeds; MMoE and PLE gained about 0.001 over 3 seeds, within
        noise (see the benchmarks page). ``None`` or 0 turns it off. Each fit call (``partial_fit`` and warm starts included) starts a new
        average from its starting weights.
    categorical_features : "from_dtype", None, array-like of bool, int or str, default="from_dtype"
        Columns embedded as categories, with the value space of
        :class:`~sklearn.ensemble.HistGradientBoostingClassifier`: a boolean mask, column
        indices, column names, or ``"from_dtype"`` (pandas ``category`` columns and string
        columns, including pandas 3's ``str`` dtype). String columns that are not declared
        categorical raise an error. Each category gets an embedding; categories unseen in
        ``fit`` and missing values share an out-of-vocabulary embedding. Values must be
        numbers or text: ``bytes`` (``b"a"``, which is not ``"a"``) are a ``ValueError``
        naming the column; decode them first (``X[col].str.decode("utf-8")``).
    sequence_features : list or dict, default=None
        List-valued columns (ids per row, e.g. a user's recent items). A dict maps a sequence
        column to the categorical column whose vocabulary and embedding it shares (``None``
        for a vocabulary of its own). Missing cells are empty sequences.
    text_features : list, default=None
        String columns read as bags of lower-cased ``\\w+`` words and word pairs, hashed
        into 2**18 buckets and weighted as TF-IDF (``1 + log tf`` times the idf of the first
        fit, l2-normalised per row; terms unseen in that fit are dropped). Each column is one
        field of the deep input (a weighted sum of learned term vectors) and a linear term
        added to every task's logit (wide & deep). A missing value is an empty text.
        A ``scipy.sparse`` X (e.g. a ``ColumnTransformer`` of ``TfidfVectorizer`` and
        ``OneHotEncoder``) is read the same way, without densifying: its stored values,
        scaled by each column's largest training magnitude, as one field and a linear term;
        it cannot be combined with the column-role parameters, and NaN or infinite stored
        values are an error.
    numeric_encoding : {"piecewise", "standard"}, default="piecewise"
        How the network reads numeric columns. ``"piecewise"``: each column becomes an
        ``embedding_dim`` vector, a learned linear map of its piecewise-linear code over
        ``numeric_bins`` bins fitted on the training values (Gorishniy et al., arXiv
        2203.05556), so the network can place thresholds on a heavy-tailed or zero-inflated
        column as a tree does; a column with few distinct values gets one bin per value
        (an embedding per value). ``"standard"``: the standardised value as one number.
        Either way a missing value is the training mean plus a missing-indicator input.
    numeric_bins : int or dict, default=32
        Bins per numeric column for ``numeric_encoding="piecewise"``: edges at the training
        quantiles, with a value holding more than ``1 / numeric_bins`` of the rows (the 0 of
        a zero-inflated column) given edges of its own so the other values still get fine
        bins. A dict maps columns to their bin edges (sorted numbers), fixed up front as
        streaming fits need; the other columns get 32 fitted bins.
    embedding_dim : int, default=16
        Size of every embedding.
    task_weights : array-like of shape (n_tasks,), default=None
        Fixed weight of each task's loss (ones by default).
    device : str, default="auto"
        Torch device; ``"auto"`` uses CUDA when available.
    precision : {"fp32", "bf16"}, default="fp32"
        ``"bf16"`` runs the forward pass under bfloat16 autocast: on GPUs, and on CPUs with
        AVX512-BF16 or AMX, where it trained a large MMoE about 1.9x faster than fp32 (see
        the performance docs). Weights and optimizer state stay float32, and the logits are
        cast back to float32 before the losses and probabilities.
    compile : bool or dict, default=False
        Run the network's forward pass through ``torch.compile`` (a dict is passed to it as
        keyword arguments, e.g. ``{"mode": "max-autotune"}``; it may hold only ``mode``,
        ``backend`` (``"inductor"``, ``"aot_eager"`` or ``"eager"``), ``fullgraph`` and
        ``dynamic``, since other arguments can run programs). The first batches of each shape
        and mode pay the compilation (tens of seconds); it pays off on GPUs and long fits. The
        plain module is what is trained, saved and exported: the compiled function shares its
        weights and is rebuilt after unpickling.
    n_threads : int, default=None
        Torch intra-op threads (``torch.set_num_threads``) for the duration of each ``fit``,
        ``partial_fit``, ``predict_proba``, ``predict`` and ``score`` call; the previous count
        is restored afterwards. None leaves torch's own setting (by default one thread per
        core) alone. On a busy machine a small model can run much faster with 1; see the
        performance docs.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling, dropout and the validation split. A fixed
        value gives identical predictions for repeated fits on CPU (GPU kernels may differ).
        Each fit call draws its seed from it, a continuation included: with the same int a
        continuation repeats the seeded run, and a new value reseeds the epochs that follow.
    verbose : int, default=0
        When positive, print a per-epoch table: losses, the mean and (with a validation
        split) each task's validation AUC, and the method's diagnostics summarised (a list of
        numbers as its values to 3 digits, or its range when longer than four); plus a
        progress bar per epoch in a terminal or a notebook. Written to a file or a pipe, the
        output has no colour codes and no progress bar.
    callbacks : list of skorch callbacks, default=None
        Extra skorch callbacks (``Checkpoint``, ``LRScheduler``, loggers, ...), each a callback
        or a ``(name, callback)`` pair; copied at each ``fit`` and ``partial_fit`` call, so a
        continuation runs the list the parameter holds then (``set_params(callbacks=...)``).
    warm_start : bool, default=False
        When True, ``fit`` continues training the fitted model (same features and tasks)
        instead of starting over. A continuation applies the training parameters (``lr``,
        ``batch_size``, ``max_epochs``, early stopping, ...); changing a parameter that built
        the model (architecture, features, ``optimizer``, ...) in between is a ``ValueError``.

    Attributes
    ----------
    classes_ : list of ndarray, or ndarray
        ``[array([0, 1])] * n_tasks`` (per task, as :class:`~sklearn.multioutput.MultiOutputClassifier`
        keeps them, so scorers see a multilabel problem even with two tasks); the two
        labels for a 1-D ``y``.
    n_tasks_ : int
        Number of tasks.
    task_names_ : ndarray of str
        Task names: ``Y``'s column names for a DataFrame, else ``task0, task1, ...``; for a
        1-D ``y``, its name when it is a named Series, else ``"y"``.
    n_features_in_ : int
        Number of columns of ``X``.
    feature_names_in_ : ndarray of str
        Column names of ``X`` when it is a DataFrame with string column names.
    feature_encoder_ : TabularEncoder
        The fitted column roles, vocabularies and scalers.
    net_ : skorch.NeuralNet
        The private skorch net that trained the model (``net_.module_`` is the torch module).
    history_ : skorch.History
        Per epoch: ``train_loss``, ``valid_loss``, ``train_loss_<task>``, ``train_auc_<task>``,
        ``train_auc``, the ``valid_`` counterparts with early stopping, ``dur``, and
        ``optim_<name>`` diagnostics from the optimization method.
    n_iter_ : int
        Number of epochs trained.
    device_ : str
        The device training ran on."""


def with_common_parameters(cls=None, **entries):
    """Insert the shared parameters' documentation where a class docstring says ``%(common)s``.

    Used bare (``@with_common_parameters``), or with keyword ``entries`` that replace the entry
    of a shared parameter whose default the class changes. An entry is the whole numpydoc
    entry as text: its first line (``"max_epochs : int, default=20"``), then its description
    on lines indented by 8 spaces, as in the shared text.

    Raises
    ------
    ValueError
        When an entry names a parameter that is not a shared one.
    """

    def decorate(cls):
        # an entry is a line "    name : ..." (the first one unindented) and its indented description
        blocks: list[list[str]] = []
        for line in COMMON_PARAMETERS.split("\n    "):
            if line.startswith(" ") and blocks:
                blocks[-1].append(line)
            else:
                blocks.append([line])
        found = set()
        for block in blocks:
            name = block[0].split(" : ", 1)[0]
            if name in entries:
                block[:] = [entries[name].rstrip()]
                found.add(name)
        if found != set(entries):
            raise ValueError(f"not common parameters: {sorted(set(entries) - found)}")
        cls.__doc__ = cls.__doc__.replace("%(common)s", "\n    ".join(line for b in blocks for line in b))
        return cls

    return decorate(cls) if cls is not None else decorate
