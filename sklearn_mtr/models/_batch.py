"""The batch a model receives: its features by name, plus what is not a feature."""

from __future__ import annotations

import torch


class Batch(dict):
    """A model's input: the encoded features (``name -> tensor``, read as ``batch["categorical"]``,
    ``batch["numeric"]``, ...; :class:`~sklearn_mtr.extending.FeatureSchema` lists the keys), and
    two attributes that are not features.

    Attributes
    ----------
    group : Tensor of shape (n,) or None
        Request codes: rows sharing a code form one request (architectures that score a
        request's candidates as a set read it; the others ignore it). None: no requests.
    labels : Tensor of shape (n, n_tasks) or None
        The task labels (NaN: missing), present in training and validation batches for
        architectures whose auxiliary loss needs them; None at prediction.

    A plain ``dict`` of features is a valid batch too: every model reads ``group`` and
    ``labels`` through :func:`batch_group` and :func:`batch_labels`, which give None for it.
    """

    def __init__(
        self,
        features: dict[str, torch.Tensor],
        *,
        group: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> None:
        super().__init__(features)
        self.group = group
        self.labels = labels

    def to(self, device, non_blocking: bool = False) -> Batch:
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)
        return Batch({k: move(v) for k, v in self.items()}, group=move(self.group), labels=move(self.labels))


def batch_group(batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The request codes of ``batch`` (None for a plain dict of features)."""
    return getattr(batch, "group", None)


def batch_labels(batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The labels of ``batch`` (None for a plain dict of features or at prediction)."""
    return getattr(batch, "labels", None)
