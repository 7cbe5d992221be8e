"""The description of encoded inputs that the feature layer hands to the models.

It is plain data (no numpy, pandas or sklearn) so that ``models/`` can depend on it
without depending on the feature layer itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Index conventions shared by every id-valued input (categorical, sequence, text):
PAD_INDEX = 0  # padding in sequences and texts; never a real value
OOV_INDEX = 1  # missing value or category unseen during fit
N_RESERVED = 2  # first index of a known category


@dataclass(frozen=True)
class SequenceInput:
    """A list-valued column encoded as padded ids.

    Attributes
    ----------
    name : str
        Column name; the batch holds ``"seq__<name>"`` (ids) and ``"len__<name>"``.
    vocab_size : int
        Size of the embedding table the ids index (reserved indices included).
    shared_with : str or None
        Name of the categorical column whose vocabulary and embedding table the
        sequence uses, or None for a vocabulary of its own.
    """

    name: str
    vocab_size: int
    shared_with: str | None = None


@dataclass(frozen=True)
class TextInput:
    """A text column encoded as a weighted bag of hashed word uni- and bigrams:
    ``"text__<name>"`` (padded term ids, 0 = padding) and ``"weight__<name>"`` (their
    TF-IDF-like weights, 0 at padding).

    Attributes
    ----------
    name : str
        Column name.
    vocab_size : int
        Size of the tables the term ids index (padding included).
    deep_size : int
        Size of the deep tables: ids from ``deep_size`` on (terms of few training texts) are
        read by the wide path only.
    """

    name: str
    vocab_size: int
    deep_size: int


@dataclass(frozen=True)
class SparseInput:
    """The columns of a sparse X, encoded as the stored values of each row:
    ``"sparse__ids"`` (padded column ids, 0 = padding) and ``"sparse__values"``.

    Attributes
    ----------
    n_columns : int
        Number of columns of X.
    deep_size : int
        Size of the deep table: ids from ``deep_size`` on (columns stored in few training
        rows) are read by the wide path only.
    """

    n_columns: int
    deep_size: int


@dataclass(frozen=True)
class FeatureSchema:
    """What a model needs to know to build its input layers.

    The batch a model receives is a flat ``dict[str, Tensor]``:

    - ``"categorical"``: ``LongTensor (batch, n_categorical)``, one column per categorical
      feature, in the order of ``categorical_names`` (absent when there is none);
    - ``"numeric"``: ``FloatTensor (batch, n_numeric)``, standardised values followed by
      missing-value indicators (absent when there is none);
    - ``"seq__<name>"`` / ``"len__<name>"`` and ``"text__<name>"`` / ``"weight__<name>"``;
    - ``"sparse__ids"`` / ``"sparse__values"`` when X was a sparse matrix (``sparse``).

    ``numeric_bins`` is None when the models read each numeric input as one number, or the
    bin edges of each value column (in the standardised units of the batch) when they embed
    it through its piecewise-linear code (``numeric_encoding="piecewise"``).
    """

    categorical_names: tuple[str, ...] = ()
    categorical_cardinalities: tuple[int, ...] = ()
    n_numeric: int = 0
    sequences: tuple[SequenceInput, ...] = ()
    texts: tuple[TextInput, ...] = ()
    numeric_names: tuple[str, ...] = field(default=())
    numeric_bins: tuple[tuple[float, ...], ...] | None = None
    sparse: SparseInput | None = None

    @property
    def n_categorical(self) -> int:
        return len(self.categorical_cardinalities)
