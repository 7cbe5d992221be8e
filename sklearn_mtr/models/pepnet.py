"""PEPNet: parameter and embedding personalized network (Chang et al., KDD 2023, arXiv:2302.01115)."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import ClassVar

import torch
from torch import nn

from .._constraints import InstanceOf, Interval, Options
from .._schema import FeatureSchema
from ._base import MultiTaskModule
from ._blocks import MLP, InputEmbedding


class GateNU(nn.Module):
    """The paper's Gate Neural Unit: ``delta = gamma * sigmoid(W' relu(W x + b) + b')``, in ``(0, gamma)``."""

    def __init__(self, in_dim: int, hidden_size: int, out_dim: int, gamma: float) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_dim, hidden_size)
        self.out = nn.Linear(hidden_size, out_dim)
        self.gamma = gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * torch.sigmoid(self.out(torch.relu(self.hidden(x))))


class PEPNet(MultiTaskModule):
    """PEPNet (Chang et al., KDD 2023, arXiv:2302.01115): the embedding and every tower layer
    scaled by gates on personalized prior features.

    The gates read the embeddings of ``gate_features``, categorical id columns (the user,
    item or author ids, a domain id), and each is the paper's Gate NU,
    ``delta = gate_scale * sigmoid(W' relu(W x + b) + b')`` with values in ``(0, gate_scale)``
    (``gate_scale = 2``, the paper's ``gamma``, leaves a neutral gate at 1).

    - EPNet: ``delta_domain = GateNU(E(gate_features) + sg(E))`` over the embedded input ``E``
      (``+`` concatenation, ``sg`` stop-gradient) scales ``E`` element-wise:
      ``O_ep = delta_domain * E``.
    - PPNet: before each layer of the task towers (the logit layer included), one Gate NU per
      layer reads ``E(gate_features) + sg(O_ep)`` and gives each task its own slice
      ``delta_task``, which scales that task's hidden vector (the towers read ``O_ep``).

    The paper feeds EPNet domain-side features and PPNet user / item / author ids; here both
    read ``gate_features``. ``None`` takes every categorical column; with no categorical
    column the gates read only the stop-gradient input. Private parameters: the gate units
    serve every task (their outputs are split by task), so a task owns its tower.

    Parameters
    ----------
    gate_features : list of str, default=None
        Names of the categorical columns whose embeddings feed the gates (the personalized
        prior); ``None`` for every categorical column.
    gate_hidden_size : int, default=64
        Width of each Gate NU's hidden layer.
    gate_scale : float, default=2.0
        The Gate NU's ``gamma``: its output is ``gamma * sigmoid(...)``.
    epnet : bool, default=True
        Whether the embedding is gated (EPNet); ``False`` leaves PPNet only.
    tower_hidden_sizes : tuple of int, default=(128, 64)
        Widths of each task tower before its logit; a PPNet gate scales the input of every
        tower layer.
    activation : str, default="relu"
        Hidden activation of the towers: "relu", "prelu", "gelu", "silu", "tanh" or "leaky_relu".
    dropout : float, default=0.0
        Dropout after every hidden layer of the towers.
    batch_norm : bool, default=False
        Batch normalisation after every hidden linear layer of the towers.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "gate_features": [
            Options(None),
            InstanceOf((str, list, tuple), "a categorical column name or a list of names or indices"),
        ],
        "gate_hidden_size": [Interval(Integral, 1)],
        "gate_scale": [Interval(Real, 0, closed="right")],
        "epnet": [Options(True, False)],
    }

    def __init__(
        self,
        schema: FeatureSchema,
        n_tasks: int,
        *,
        embedding_dim: int = 16,
        gate_features: Sequence[str] | None = None,
        gate_hidden_size: int = 64,
        gate_scale: float = 2.0,
        epnet: bool = True,
        tower_hidden_sizes: Sequence[int] = (128, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.check_hyperparameters(locals())
        if isinstance(gate_features, str):
            gate_features = [gate_features]
        self.n_tasks = n_tasks
        self.embedding = InputEmbedding(schema, embedding_dim, n_tasks)
        names = list(schema.categorical_names) if gate_features is None else [str(f) for f in gate_features]
        self.embedding.categorical_indices(names)  # a ValueError naming an unknown column
        if len(set(names)) != len(names):
            raise ValueError(f"gate_features lists a column more than once: {names}.")
        self.gate_features = tuple(names)
        prior_dim = embedding_dim * len(names)
        dim = self.embedding.out_dim
        gate = {"hidden_size": int(gate_hidden_size), "gamma": float(gate_scale)}
        self.epnet = GateNU(prior_dim + dim, out_dim=dim, **gate) if epnet else None
        layer = {"activation": activation, "dropout": dropout, "batch_norm": batch_norm}
        self.towers = nn.ModuleList(MLP(dim, tower_hidden_sizes, **layer, output_dim=1) for _ in range(n_tasks))
        widths = [m.in_features for m in self.towers[0] if isinstance(m, nn.Linear)]
        self.ppnet = nn.ModuleList(GateNU(prior_dim + dim, out_dim=n_tasks * w, **gate) for w in widths)

    def prior(self, batch: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The gate features' embeddings, flat ``(B, embedding_dim * len(gate_features))``."""
        if not self.gate_features:
            return x.new_zeros(x.shape[0], 0)
        return self.embedding.categorical_columns(batch, self.gate_features).flatten(1)

    def gates(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """``(delta_domain, delta_tasks)``: EPNet's gate ``(B, in_dim)`` (``None`` without
        EPNet) and PPNet's gate per tower layer, ``(B, n_tasks, layer input width)``."""
        return self._run(batch)[1:]

    def _run(self, batch):
        e = self.embedding(batch)
        prior = self.prior(batch, e)
        delta_domain = None
        o_ep = e
        if self.epnet is not None:
            delta_domain = self.epnet(torch.cat([prior, e.detach()], dim=1))
            o_ep = delta_domain * e
        ppnet_input = torch.cat([prior, o_ep.detach()], dim=1)
        delta_tasks = [gate(ppnet_input).view(e.shape[0], self.n_tasks, -1) for gate in self.ppnet]
        return o_ep, delta_domain, delta_tasks

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        o_ep, _, delta_tasks = self._run(batch)
        logits = []
        for t, tower in enumerate(self.towers):
            h, layer = o_ep, 0
            for module in tower:
                if isinstance(module, nn.Linear):
                    h = h * delta_tasks[layer][:, t]
                    layer += 1
                h = module(h)
            logits.append(h)
        return self.embedding.bags.add_to(torch.cat(logits, dim=1), batch)
