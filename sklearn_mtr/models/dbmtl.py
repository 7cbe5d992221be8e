"""DBMTL: deep Bayesian multi-target learning (Wang et al., Alibaba, arXiv:1902.09154)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from .._constraints import InstanceOf, Options
from .._schema import FeatureSchema
from ._base import MultiTaskModule
from ._blocks import MLP, InputEmbedding


def parse_relations(relations, n_tasks: int) -> list[list[int]]:
    """The parents of each task from ``"all"``, ``"previous"``, ``"none"`` or one sequence of
    earlier task indices per task; a ValueError otherwise."""
    if isinstance(relations, str):
        choices = {
            "all": lambda k: list(range(k)),
            "previous": lambda k: [k - 1] if k else [],
            "none": lambda k: [],
        }
        if relations not in choices:
            raise ValueError(f"relations must be 'all', 'previous', 'none' or parents per task, got {relations!r}.")
        return [choices[relations](k) for k in range(n_tasks)]
    try:
        listed = [[int(j) for j in p] for p in relations]
    except (TypeError, ValueError):
        raise ValueError(
            f"relations must be 'all', 'previous', 'none' or parents per task, got {relations!r}."
        ) from None
    for k, p in enumerate(listed):
        if len(set(p)) != len(p):
            raise ValueError(f"relations lists a parent of task {k} more than once: {p}.")
    parents = [sorted(p) for p in listed]
    if len(parents) != n_tasks:
        raise ValueError(f"relations lists the parents of {len(parents)} tasks; Y has {n_tasks}.")
    for k, p in enumerate(parents):
        if any(not 0 <= j < k for j in p):
            raise ValueError(f"task {k}'s parents {p} must be earlier tasks (indices in [0, {k})).")
    return parents


class DBMTL(MultiTaskModule):
    """DBMTL (Wang et al., arXiv:1902.09154): a shared bottom, task towers, and relation layers
    that pass each task's representation on to the tasks that depend on it.

    The tasks form a directed acyclic graph in the order of the columns of ``Y``: task ``k``
    may depend on earlier tasks only (``relations``). The shared bottom MLP reads the embedded
    input; task ``k``'s tower MLP maps it to ``h_k``; its relation MLP reads ``h_k`` joined with
    the relation outputs ``r_j`` of its parents and gives ``r_k``; a linear layer maps ``r_k``
    to task ``k``'s logit. This models ``P(t_k | x, t_parents)`` as the paper's Bayesian
    network over targets does (its ``f_k(x, f_parents)``), as TorchEasyRec's DBMTL builds it.
    The paper's bottom may be an MMoE; here it is an MLP. (Not the multi-task optimization
    method :class:`sklearn_mtr.optim.DBMTL`, dual-balancing, which is an ``optimizer=``.)

    Private parameters: a task with dependents shares its tower and relation MLP with them,
    so it owns only its logit layer (``towers[k]``); a task no other task depends on owns
    its tower and relation MLP as well.

    Parameters
    ----------
    relations : "all", "previous", "none" or list of lists of int, default="all"
        The parents of each task: every earlier task, the one before, none, or one list of
        earlier task indices per task.
    bottom_hidden_sizes : tuple of int, default=(256, 128)
        Widths of the shared bottom MLP.
    tower_hidden_sizes : tuple of int, default=(64,)
        Widths of each task's tower MLP (on the bottom), before its relation MLP.
    relation_hidden_sizes : tuple of int, default=(32,)
        Widths of each task's relation MLP (on its tower and its parents' relation outputs).
    activation : str, default="relu"
        Hidden activation: "relu", "prelu", "gelu", "silu", "tanh" or "leaky_relu".
    dropout : float, default=0.0
        Dropout after every hidden layer.
    batch_norm : bool, default=False
        Batch normalisation after every hidden linear layer.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "relations": [
            Options("all", "previous", "none"),
            InstanceOf((list, tuple), "the parents of each task: a list of lists of earlier task indices"),
        ],
    }

    def __init__(
        self,
        schema: FeatureSchema,
        n_tasks: int,
        *,
        embedding_dim: int = 16,
        relations: str | Sequence[Sequence[int]] = "all",
        bottom_hidden_sizes: Sequence[int] = (256, 128),
        tower_hidden_sizes: Sequence[int] = (64,),
        relation_hidden_sizes: Sequence[int] = (32,),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.check_hyperparameters(locals())
        if not list(bottom_hidden_sizes):  # widths checked by the table
            raise ValueError("bottom_hidden_sizes needs at least one layer.")
        self.n_tasks = n_tasks
        self.parents = parse_relations(relations, n_tasks)
        self.embedding = InputEmbedding(schema, embedding_dim, n_tasks)
        layer = {"activation": activation, "dropout": dropout, "batch_norm": batch_norm}
        self.bottom = MLP(self.embedding.out_dim, bottom_hidden_sizes, **layer)
        self.task_mlps = nn.ModuleList(MLP(self.bottom.out_dim, tower_hidden_sizes, **layer) for _ in range(n_tasks))
        h = self.task_mlps[0].out_dim
        self.relation_mlps = nn.ModuleList()
        for k in range(n_tasks):
            in_dim = h + sum(self.relation_mlps[j].out_dim for j in self.parents[k])
            self.relation_mlps.append(MLP(in_dim, relation_hidden_sizes, **layer))
        # the logit layers
        self.towers = nn.ModuleList(MLP(self.relation_mlps[k].out_dim, (), output_dim=1) for k in range(n_tasks))
        self.has_dependents = [any(k in p for p in self.parents) for k in range(n_tasks)]

    def task_modules(self, k: int) -> list[nn.Module]:
        if self.has_dependents[k]:
            return [self.towers[k]]
        return [self.task_mlps[k], self.relation_mlps[k], self.towers[k]]

    def tower_inputs(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Each task's relation output ``r_k``, the input of its logit layer."""
        shared = self.bottom(self.embedding(batch))
        r: list[torch.Tensor] = []
        for k in range(self.n_tasks):
            h = self.task_mlps[k](shared)
            r.append(self.relation_mlps[k](torch.cat([h, *(r[j] for j in self.parents[k])], dim=1)))
        return r

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = torch.cat([tower(x) for tower, x in zip(self.towers, self.tower_inputs(batch))], dim=1)
        return self.embedding.bags.add_to(logits, batch)
