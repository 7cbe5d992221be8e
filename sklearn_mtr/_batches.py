"""The training data of the net and the batches it is cut into.

``TaskDataset`` holds the encoded features, labels, weights and request codes as tensors that
already sit on the device; the batchers slice them (rows, or whole requests when the rows
carry request codes) instead of collating per-sample items as a ``DataLoader`` would.
"""

from __future__ import annotations

import torch
from skorch import NeuralNet

from .models._batch import Batch


class TaskDataset(torch.utils.data.Dataset):
    """Encoded inputs (a dict of equal-length tensors), labels ``(n, k)`` with NaN, weights, and
    the request codes of the rows (``group``; None: rows are independent)."""

    def __init__(
        self,
        X: dict[str, torch.Tensor],
        y: torch.Tensor | None = None,
        w: torch.Tensor | None = None,
        group: torch.Tensor | None = None,
    ):
        self.X, self.y, self.w, self.group = X, y, w, group
        self.n = len(next(iter(X.values())))

    def __len__(self) -> int:
        return self.n

    def to(self, device) -> TaskDataset:
        move = lambda t: None if t is None else t.to(device)
        return TaskDataset({k: move(v) for k, v in self.X.items()}, move(self.y), move(self.w), move(self.group))

    def take(self, index: torch.Tensor) -> tuple[Batch, tuple]:
        """The rows ``index`` as a model's :class:`Batch` and ``(y, w)``."""
        index = index.to(next(iter(self.X.values())).device)
        y = None if self.y is None else self.y[index]
        w = None if self.w is None else self.w[index]
        group = None if self.group is None else self.group[index]
        return Batch({k: v[index] for k, v in self.X.items()}, group=group), (y, w)

    def subset(self, index: torch.Tensor) -> TaskDataset:
        """The rows ``index`` as a dataset of their own (the validation split)."""
        batch, (y, w) = self.take(index)
        return TaskDataset(dict(batch), y, w, batch.group)


class BatchIterator:
    """Batches sliced from a :class:`TaskDataset`, shuffled with a seeded generator.

    A last batch of a single row is folded into the one before it, so batch norm never sees
    a batch of one and no row is dropped.
    """

    def __init__(self, dataset: TaskDataset, batch_size: int, shuffle: bool, generator: torch.Generator | None):
        self.dataset, self.batch_size, self.shuffle, self.generator = dataset, batch_size, shuffle, generator

    def __len__(self) -> int:
        if self.dataset.group is not None:
            return len(request_batches(self.dataset.group, self.batch_size))
        return len(self._bounds())

    def _bounds(self) -> list[tuple[int, int]]:
        n, bs = len(self.dataset), self.batch_size
        bounds = [(i, min(i + bs, n)) for i in range(0, n, bs)]
        if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
            bounds[-2:] = [(bounds[-2][0], n)]
        return bounds

    def __iter__(self):
        if self.dataset.group is not None:
            for index in request_batches(self.dataset.group, self.batch_size, self.shuffle, self.generator):
                yield self.dataset.take(index)
            return
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start, stop in self._bounds():
            yield self.dataset.take(order[start:stop])


class EpochSeededBatches(BatchIterator):
    """Training batches whose shuffle is reseeded at every epoch from the net's seed and epoch
    number: an epoch's order does not depend on how many epochs the same ``fit`` call ran
    before it, so a run resumed with ``warm_start`` or from a checkpoint repeats an
    uninterrupted one."""

    def __init__(self, net: NeuralNet, dataset: TaskDataset):
        super().__init__(dataset, net.batch_size, shuffle=True, generator=torch.Generator())
        self.net = net

    def __iter__(self):
        self.generator.manual_seed(self.net.seed + len(self.net.history))
        return super().__iter__()


def request_batches(group: torch.Tensor, batch_size: int, shuffle: bool = False, generator=None) -> list[torch.Tensor]:
    """Row indices of batches that hold whole requests (rows sharing a ``group`` id).

    Requests are taken in order of first appearance (shuffled when ``shuffle``), their rows
    kept together, and whole requests are added to a batch until it holds ``batch_size``
    rows or more, so a request larger than ``batch_size`` is a batch of its own.
    """
    group = group.cpu()
    _, codes = torch.unique(group, return_inverse=True)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    first = torch.full((n_groups,), len(codes), dtype=torch.long).scatter_reduce(
        0, codes, torch.arange(len(codes)), reduce="amin"
    )
    rank = torch.empty(n_groups, dtype=torch.long)
    rank[torch.argsort(first)] = torch.arange(n_groups)  # order of first appearance
    if shuffle:
        rank = torch.randperm(n_groups, generator=generator)[rank]
    key = rank[codes]
    order = torch.argsort(key, stable=True)
    sizes = torch.bincount(key, minlength=n_groups).tolist()
    batches, start, rows = [], 0, 0
    for size in sizes:
        rows += size
        if rows >= batch_size:
            batches.append(order[start : start + rows])
            start, rows = start + rows, 0
    if rows:
        batches.append(order[start : start + rows])
    return batches
