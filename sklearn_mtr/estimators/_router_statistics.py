"""The training statistics of GRec's mixture-of-experts router, recorded per epoch."""

from __future__ import annotations

import warnings

import torch
from skorch.callbacks import Callback

from ..models import GRec
from ..models._moe import SwitchMoE

# an expert is "collapsed" when its share of an epoch's routed units is below this fraction
# of the uniform share 1 / n_experts
COLLAPSE_FRACTION = 0.01


class RouterStatistics(Callback):
    """Records, per epoch, how the MoE router dispatched the training batches, and warns
    (once per fit) when an expert collapses.

    ``capacity_dropped_fraction``: share of the epoch's routing units (sentences in sentence
    routing, tokens in token routing) that reached none of their experts because every
    chosen expert was at capacity, so they skipped the MoE (0 in task routing, which has no
    capacity); ``router_expert_load``: share of the kept assignments each expert took (a
    list, one entry per expert; uniform routing gives ``1 / n_experts`` each).
    """

    def _layers(self, net) -> list[SwitchMoE]:
        return [m for m in net.module_.modules() if isinstance(m, SwitchMoE)]

    def on_train_begin(self, net, **kwargs):
        self.warned_ = False

    def on_epoch_begin(self, net, **kwargs):
        for layer in self._layers(net):
            layer.reset_statistics()

    def on_epoch_end(self, net, **kwargs):
        layers = self._layers(net)
        if not layers:
            return
        assigned = torch.stack([m.assigned for m in layers]).sum(0)
        total = float(sum(m.total for m in layers))
        dropped = float(sum(m.dropped for m in layers))
        net.history.record("capacity_dropped_fraction", dropped / total if total else float("nan"))
        load = (assigned / assigned.sum()).tolist() if assigned.sum() > 0 else [float("nan")] * len(assigned)
        net.history.record("router_expert_load", load)
        if not getattr(self, "warned_", False) and assigned.sum() > 0 and self._can_spread(net, len(load)):
            collapsed = [(e, share) for e, share in enumerate(load) if share < COLLAPSE_FRACTION / len(load)]
            if collapsed:
                self.warned_ = True
                names = ", ".join(f"expert {e} (load {share:.4f})" for e, share in collapsed)
                warnings.warn(
                    f"MoE expert collapse in epoch {len(net.history)}: {names} received almost none of the "
                    f"routed units (uniform share {1 / len(load):.3f}); the router sends everything to the "
                    "other experts. A larger balance_loss_coef (Switch used 1e-2) or fewer n_experts may help. "
                    "Further collapses in this fit are not reported.",
                    RuntimeWarning,
                    stacklevel=2,
                )

    @staticmethod
    def _can_spread(net, n_experts: int) -> bool:
        """Whether the routing units could reach every expert: with task routing there are only
        ``n_tasks * top_k`` choices, so idle experts are expected when that is below ``n_experts``."""
        module = next((m for m in net.module_.modules() if isinstance(m, GRec)), None)  # also when wrapped
        if module is None or module.routing != "task":
            return True
        return module.n_tasks * module.moe.top_k >= n_experts
