"""The per-task losses of a batch, and the callback that records each task's loss and AUC."""

from __future__ import annotations

import numpy as np
import torch
from skorch.callbacks import Callback
from torch.nn import functional as F


def task_losses(
    logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-task binary cross-entropy ``(k,)``: NaN labels masked, rows weighted by ``w``.

    Each task's loss is the weighted mean over the rows that have its label; a task with no
    label in the batch contributes 0 (and no gradient). ``pos_weight`` ``(k,)`` multiplies
    the positive term of each task, as in ``BCEWithLogitsLoss``.
    """
    labelled = ~torch.isnan(y)
    target = torch.where(labelled, y, torch.zeros_like(y))
    per_entry = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none", pos_weight=pos_weight)
    weight = labelled.to(per_entry.dtype)
    if w is not None:
        weight = weight * w[:, None]
    return (per_entry * weight).sum(0) / weight.sum(0).clamp_min(torch.finfo(per_entry.dtype).tiny)


class TaskScoring(Callback):
    """Records per-task losses and ROC AUCs for every epoch in the net's history.

    Keys: ``train_loss_<task>``, ``train_auc_<task>``, ``train_auc`` (mean over tasks), the same
    with ``valid_`` when there is a validation split, and ``optim_<name>`` for the mean of what
    the multi-task method reported during the epoch. Train AUCs are computed from the
    predictions made during the epoch's training steps (dropout on), as Keras does.
    """

    def __init__(self, task_names: list[str]):
        self.task_names = task_names

    def on_epoch_begin(self, net, **kwargs):
        self._parts = {"train": [], "valid": []}
        self._diag_sum: dict[str, tuple] = {}

    def on_batch_end(self, net, batch, training, y_pred=None, diagnostics=None, **kwargs):
        if training:  # the loss is checked in train_step, before the update
            for key, value in (diagnostics or {}).items():
                # Per key: a method may report some values only on some steps.
                total, count = self._diag_sum.get(key, (0, 0))
                self._diag_sum[key] = (total + value.detach().float(), count + 1)
        _, (y, w) = batch
        self._parts["train" if training else "valid"].append((y_pred.detach(), y, w))

    def on_epoch_end(self, net, **kwargs):
        from .metrics import per_task_roc_auc  # late import: metrics uses sklearn only

        for prefix, parts in self._parts.items():
            if not parts:
                continue
            logits = torch.cat([p[0] for p in parts]).float()
            y = torch.cat([p[1] for p in parts])
            w = None if parts[0][2] is None else torch.cat([p[2] for p in parts])
            losses = task_losses(logits, y, w, net._pos_weight(logits)).cpu().numpy()
            auc = per_task_roc_auc(
                y.cpu().numpy(),
                torch.sigmoid(logits).cpu().numpy(),
                sample_weight=None if w is None else w.cpu().numpy(),
            )
            for name, loss_k, auc_k in zip(self.task_names, losses, auc):
                net.history.record(f"{prefix}_loss_{name}", float(loss_k))
                net.history.record(f"{prefix}_auc_{name}", float(auc_k))
            net.history.record(f"{prefix}_auc", float(np.nanmean(auc)) if not np.isnan(auc).all() else float("nan"))
        for key, (total, count) in self._diag_sum.items():
            mean = (total / count).cpu().numpy()
            net.history.record(f"optim_{key}", mean.tolist() if mean.ndim else float(mean))
        self._parts = {"train": [], "valid": []}
