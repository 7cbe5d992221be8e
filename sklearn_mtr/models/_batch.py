"""The batch a model receives: its features by name, plus what is not a feature."""

from __future__ import annotations

import torch


class Batch(dict):
    """A model's input: the encoded features (``name -> tensor``, read as ``batch["categorical"]``,
    ``batch["numeric"]``, ...; :class:`~sklearn_mtr.extending.FeatureSchema` lists the keys), and
    the request codes, which are not a feature. (The task labels are not part of it: an
    architecture that needs them takes ``labels`` in ``forward``.)

    Attributes
    ----------
    group : Tensor of shape (n,) or None
        Request codes: rows sharing a code form one request (architectures that score a
        request's candidates as a set read it; the others ignore it). None: no requests.

    A plain ``dict`` of features is a valid batch too: every model reads ``group`` through
    :func:`batch_group`, which gives None for it.
    """

    def __init__(
        self,
        features: dict[str, torch.Tensor],
        *,
        group: torch.Tensor | None = None,
    ) -> None:
        super().__init__(features)
        self.group = group

    def to(self, device, non_blocking: bool = False) -> Batch:
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)
        return Batch({k: move(v) for k, v in self.items()}, group=move(self.group))


def batch_group(batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The request codes of ``batch`` (None for a plain dict of features)."""
    return getattr(batch, "group", None)
