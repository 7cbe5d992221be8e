"""Public building blocks for new architectures, multi-task methods and estimators.

Everything :doc:`extending` uses is importable from here; the private modules it comes from
may move between releases, these names will not.

- **An architecture** subclasses :class:`MultiTaskModule`, reads its input through
  :class:`InputEmbedding` (categorical, sequence, text, sparse and numeric inputs of a
  :class:`FeatureSchema`) and builds towers with :class:`MLP` (:func:`tower_logits` stacks
  their logits). Its input is a :class:`Batch`: the features by name, plus the request codes
  (:func:`batch_group`) for architectures that score requests as sets; one whose auxiliary loss
  needs the task labels takes them as ``forward``'s ``labels`` keyword.
- **Parameter constraints** are tables of :class:`Interval`, :class:`Options`, :func:`Pair`
  and :class:`InstanceOf`, checked by :func:`check_parameters` once when a fit starts.
- **A multi-task method** subclasses :class:`MultiTaskOptimizer`, or
  :class:`GradientCombination` when it combines per-task gradients of the shared parameters;
  at each step it receives a :class:`StepContext`, whose ``task_gradients`` and
  ``write_gradients`` do the per-task backward passes (all-reduced in a data-parallel fit).
- **Registering** an architecture (:func:`register_architecture`, one line) builds its
  estimator from the module and makes it a ``--model`` of the command line, a class the safe
  file format loads, and an entry of the API reference.
- **A hand-written estimator** (for behaviour beyond the module's) subclasses :class:`MultiTaskClassifierBase`, lists its parameters
  explicitly, stores them with :func:`store_init_params` and documents the shared ones with
  :func:`with_common_parameters`.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from sklearn_mtr.extending import MLP, InputEmbedding, MultiTaskModule, tower_logits
>>> class TwoTowers(MultiTaskModule):
...     def __init__(self, schema, n_tasks, *, embedding_dim=8):
...         super().__init__()
...         self.embed = InputEmbedding(schema, embedding_dim)
...         self.towers = nn.ModuleList(MLP(self.embed.out_dim, [8], output_dim=1) for _ in range(n_tasks))
...
...     def forward(self, batch):
...         return tower_logits(self.towers, self.embed(batch))
>>> from sklearn_mtr.extending import FeatureSchema
>>> schema = FeatureSchema(categorical_names=("city",), categorical_cardinalities=(5,), n_numeric=2)
>>> model = TwoTowers(schema, n_tasks=3)
>>> batch = {"categorical": torch.randint(0, 5, (4, 1)), "numeric": torch.randn(4, 2)}
>>> model(batch).shape
torch.Size([4, 3])
"""

from ._base import MultiTaskClassifierBase
from ._common_doc import with_common_parameters
from ._constraints import InstanceOf, Interval, Options, Pair, check_parameters
from ._params import store_init_params
from ._schema import FeatureSchema
from .estimators._registry import register_architecture, unregister_architecture
from .models import MultiTaskModule
from .models._batch import Batch, batch_group
from .models._blocks import MLP, InputEmbedding, tower_logits
from .optim import MultiTaskOptimizer, StepContext
from .optim._combination import GradientCombination

__all__ = [
    "MLP",
    "Batch",
    "FeatureSchema",
    "GradientCombination",
    "InputEmbedding",
    "InstanceOf",
    "Interval",
    "MultiTaskClassifierBase",
    "MultiTaskModule",
    "MultiTaskOptimizer",
    "Options",
    "Pair",
    "StepContext",
    "batch_group",
    "check_parameters",
    "register_architecture",
    "store_init_params",
    "tower_logits",
    "unregister_architecture",
    "with_common_parameters",
]
