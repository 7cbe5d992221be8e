"""Data-parallel ``fit`` across processes (``torchrun``), multi-task methods included.

When ``fit`` / ``partial_fit`` run in a job of several processes (a ``torch.distributed``
process group of world size > 1 is initialised, or ``torchrun``'s environment variables are
set, in which case the group is created on first use: NCCL for a CUDA device, gloo
otherwise), the estimators train data-parallel; ``device="cuda"`` (or ``"auto"``) then means
``cuda:<LOCAL_RANK>`` on each rank. No constructor parameter switches it on:
the launch decides, as with ``DistributedDataParallel``; :func:`local_fit` switches it off
inside a multi-process job (e.g. a search that fits different models on each rank).

The design, and why the result equals one process on the global batch:

- **Same data on every rank, sharded by batch.** Every rank passes the same ``X, Y`` to
  ``fit`` (read from the same files) and fits the feature encoder on it, so vocabularies
  and scalers are identical without communication (checked: rows and label sums are
  compared across ranks). ``batch_size`` is the *global* batch: all ranks draw the same
  shuffled order and rank ``r`` trains on rows ``r, r + W, r + 2W, ...`` of each global
  batch. Holding the whole table on each rank is the simplest exactly-equivalent choice;
  for data larger than memory stream chunks through ``partial_fit`` on every rank
  (:mod:`sklearn_mtr.streaming`).
- **Losses of the global batch.** Each task's loss is the weighted mean over the rows of
  the global batch that carry its label: the label counts (weight sums) are all-reduced,
  each rank computes its share ``sum_{rows of r} loss / global count`` and the loss values
  are all-reduced, so every rank sees the global loss values (what loss-weighting methods
  read) while its autograd graph holds its own share. Summing the shares' gradients over
  the ranks gives exactly the gradient of the global loss.
- **Per-task gradients synchronised before they are combined.** Gradient-combining methods
  (PCGrad, MGDA, CAGrad, Nash-MTL, PUB, GradNorm, ...) obtain the ``(T, P)`` matrix of
  per-task shared gradients from :meth:`~sklearn_mtr.optim.StepContext.task_gradients`, which
  all-reduces it (and the task-private gradients) *before* the method projects, solves or
  balances, so the method sees the global batch's per-task gradients (one all-reduce of
  ``T x P`` values per step rather than ``P``). Methods with one backward pass of a
  weighted total have their ``.grad`` summed after the pass. Learnable parameters of a
  method's own state (uncertainty log-variances, GradNorm weights) get gradients computed
  from global values, identical on every rank; they are averaged.
- **Identical updates.** Every rank starts from rank 0's parameters (broadcast at the start
  of training) and the same seed, applies the same global gradient with the same optimizer
  and keeps the same method state (EMAs, moments), so the replicas stay equal; buffers
  (batch-norm running statistics) are broadcast from rank 0 after each step.

What differs from one process: batch norm normalises with each rank's rows in training (as
in DDP without SyncBatchNorm), dropout masks are drawn per rank, an architecture's
auxiliary loss (MMoE load balancing) is the mean of the ranks' values, per-step float sums
are ordered differently (differences at float rounding level), and the per-task train AUCs
in ``history_`` come from each rank's own rows (``train_loss`` is global). Validation for
early stopping runs on the whole validation split on every rank, so all ranks stop at the
same epoch. Every rank ends with the same fitted, picklable estimator (nothing of the
process group is kept); save it from rank 0.

Examples
--------
>>> from sklearn_mtr._distributed import data_parallel_context
>>> from sklearn_mtr.distributed import local_fit
>>> data_parallel_context() is None  # a single process
True
>>> with local_fit():
...     data_parallel_context() is None
True
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

_LOCAL = contextvars.ContextVar("sklearn_mtr_local_fit", default=False)


@contextlib.contextmanager
def local_fit():
    """Train in this process only, even inside a multi-process job."""
    token = _LOCAL.set(True)
    try:
        yield
    finally:
        _LOCAL.reset(token)


def _launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "MASTER_ADDR" in os.environ and "RANK" in os.environ


def setup_device(device: str) -> str:
    """Create the process group when launched by ``torchrun`` without one, and give each rank
    its own GPU (``cuda`` -> ``cuda:<LOCAL_RANK>``); ``device`` unchanged otherwise."""
    if _LOCAL.get() or not dist.is_available():
        return device
    if not dist.is_initialized() and _launched_by_torchrun():
        dist.init_process_group("nccl" if torch.device(device).type == "cuda" else "gloo")
    if dist.is_initialized() and dist.get_world_size() > 1 and device == "cuda":
        index = int(os.environ.get("LOCAL_RANK", dist.get_rank() % torch.cuda.device_count()))
        torch.cuda.set_device(index)  # NCCL communicates on the current device
        return f"cuda:{index}"
    return device


def data_parallel_context() -> DataParallel | None:
    """The data-parallel context of this process, or None for a single-process fit."""
    if _LOCAL.get() or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return None
    return DataParallel(dist.get_rank(), dist.get_world_size())


def same_on_all_ranks(seed: int) -> int:
    """Rank 0's ``seed`` (the fit's seed drawn from ``random_state``) on every rank."""
    dp = data_parallel_context()
    if dp is None:
        return seed
    value = torch.tensor([seed], dtype=torch.int64, device=dp.comm_device())
    dist.broadcast(value, src=0)
    return int(value.item())


@dataclass(frozen=True)
class DataParallel:
    """Rank and world size, with the collectives a training step needs."""

    rank: int
    world_size: int

    def comm_device(self) -> torch.device:
        # NCCL only moves CUDA tensors; gloo CPU ones.
        return (
            torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        )

    def _all_reduce(self, tensor: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
        if tensor.numel() == 0:
            return tensor
        moved = tensor.to(self.comm_device())
        dist.all_reduce(moved, op=op)
        return moved.to(tensor.device)

    # -- data ---------------------------------------------------------------------------
    def check_same_data(self, y: torch.Tensor) -> None:
        """Raise ValueError on every rank when the ranks were given different rows."""
        y = y.detach().cpu()
        labelled = ~torch.isnan(y)
        summary = torch.stack(
            [torch.tensor(float(len(y))), labelled.sum().double(), torch.where(labelled, y, 0).double().sum()]
        ).double()
        gathered = [torch.zeros_like(summary, device=self.comm_device()) for _ in range(self.world_size)]
        dist.all_gather(gathered, summary.to(self.comm_device()))
        if any(not torch.allclose(g.cpu(), gathered[0].cpu()) for g in gathered):
            raise ValueError(
                "data-parallel fit: the ranks were given different data (rows or labels differ); every rank "
                "must pass the same X and Y, each trains on its share of every batch."
            )

    def shard(self, dataset) -> RankShard:
        return RankShard(dataset, self.rank, self.world_size)

    # -- one step -----------------------------------------------------------------------
    def global_losses(
        self, losses: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, aux: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Task losses whose values are the global batch's and whose gradient is this rank's share."""
        labelled = (~torch.isnan(y)).to(losses.dtype)
        count = (labelled if w is None else labelled * w[:, None]).sum(0)
        total = self._all_reduce(count.detach().clone())
        share = losses * count / total.clamp_min(torch.finfo(losses.dtype).tiny)
        value = self._all_reduce(share.detach().clone())
        losses = share + (value - share.detach())
        if aux is not None:
            aux_share = aux / self.world_size
            aux = aux_share + (self._all_reduce(aux_share.detach().clone()) - aux_share.detach())
        return losses, aux

    def sum_task_gradients(
        self, shared_grads: torch.Tensor, private: list[list[torch.Tensor | None]]
    ) -> tuple[torch.Tensor, list[list[torch.Tensor | None]]]:
        """All-reduce the ``(T, P)`` per-task shared gradients and the private ones, in one call."""
        pieces = [shared_grads.reshape(-1)] + [g.reshape(-1) for grads in private for g in grads if g is not None]
        flat = self._all_reduce(torch.cat(pieces))
        shared_grads = flat[: shared_grads.numel()].view_as(shared_grads)
        offset, out = shared_grads.numel(), []
        for grads in private:
            row = []
            for g in grads:
                if g is None:
                    row.append(None)
                else:
                    row.append(flat[offset : offset + g.numel()].view_as(g))
                    offset += g.numel()
            out.append(row)
        return shared_grads, out

    def sum_aux_gradients(self, aux: torch.Tensor, params: list[torch.nn.Parameter]) -> None:
        """Add the all-reduced gradient of the auxiliary loss to ``.grad`` (already global)."""
        grads = torch.autograd.grad(aux, params, allow_unused=True)
        present = [(p, g) for p, g in zip(params, grads) if g is not None]
        if not present:
            return
        flat = self._all_reduce(torch.cat([g.reshape(-1) for _, g in present]))
        offset = 0
        for p, g in present:
            part = flat[offset : offset + g.numel()].view_as(g)
            offset += g.numel()
            p.grad = part.clone() if p.grad is None else p.grad + part

    def sync_gradients(self, model: torch.nn.Module, state: torch.nn.Module | None, already_summed: bool) -> None:
        """After a method's backward: sum the model's gradient shares unless the per-task gradients
        were already all-reduced; average the method state's gradients (equal on every rank)."""
        groups = []
        if not already_summed:
            groups.append(([p for p in model.parameters() if p.requires_grad], dist.ReduceOp.SUM, 1.0))
        if state is not None:
            groups.append(
                ([p for p in state.parameters() if p.requires_grad], dist.ReduceOp.SUM, 1.0 / self.world_size)
            )
        for params, op, scale in groups:
            # A parameter without gradient on this step has none on any rank (same graph).
            with_grad = [p for p in params if p.grad is not None]
            if not with_grad:
                continue
            flat = self._all_reduce(torch.cat([p.grad.reshape(-1) for p in with_grad]), op) * scale
            offset = 0
            for p in with_grad:
                p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
                offset += p.numel()

    def broadcast_from_rank0(self, tensors) -> None:
        """Rank 0's values in ``tensors`` (parameters at the start, buffers after each step)."""
        tensors = [t for t in tensors if t.numel()]
        if not tensors:
            return
        with torch.no_grad():
            flat = torch.cat([t.detach().reshape(-1).to(self.comm_device(), torch.float64) for t in tensors])
            dist.broadcast(flat, src=0)
            offset = 0
            for t in tensors:
                t.copy_(flat[offset : offset + t.numel()].view_as(t).to(t.dtype))
                offset += t.numel()


class RankShard:
    """A view of a dataset whose ``take`` keeps this rank's rows of each global batch: every
    ``world_size``-th row, or every ``world_size``-th request when the rows carry request
    codes (the dataset's ``group``, request-grouped batching)."""

    def __init__(self, dataset, rank: int, world_size: int):
        self.dataset, self.rank, self.world_size = dataset, rank, world_size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name):  # everything else (tensors, device moves) is the dataset's
        if name == "dataset":  # not set yet (copy / unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def take(self, index: torch.Tensor):
        group = self.dataset.group
        if group is None:
            return self.dataset.take(index[self.rank :: self.world_size])
        # Request-grouped batches: whole requests per rank, so that no request is split.
        _, request = torch.unique(group[index.to(group.device)], return_inverse=True)
        return self.dataset.take(index[(request % self.world_size == self.rank).to(index.device)])
