"""A copy of what training changes in a fitted skorch net, to undo a continuation that failed.

A continuation (``partial_fit``, a ``warm_start`` fit) trains the fitted net in place. When it
fails part-way (an exception in a callback, divergence, an interrupt) the estimator must be
left exactly as before the call, weights and optimizer state in step with ``n_iter_`` and
``history_``, so that its predictions are unchanged and a later continuation repeats one that
never failed. Copying only the training state, once per call, is cheaper than training a copy
of the whole net (which would duplicate it on the device and copy the whole history).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

# The attributes every nn.Module has (parameter, buffer, submodule and hook registries);
# anything else in a module's __dict__ is its own Python state.
_MODULE_INTERNALS = frozenset(vars(nn.Module()))


class _ModuleSnapshot:
    """Every parameter and buffer of ``module`` (non-persistent buffers too, which
    ``state_dict`` leaves out) copied to the CPU, and each submodule's own Python attributes
    (counters such as a refresh schedule's step count, and the state of its random generators)."""

    def __init__(self, module: nn.Module):
        self.tensors = [(t, t.detach().to("cpu", copy=True)) for t in [*module.parameters(), *module.buffers()]]
        self.attributes = []
        for sub in module.modules():
            own = {k: v for k, v in vars(sub).items() if k not in _MODULE_INTERNALS}
            generators = {k: v.get_state() for k, v in own.items() if isinstance(v, torch.Generator)}
            self.attributes.append((sub, own, generators))

    def restore(self) -> None:
        with torch.no_grad():
            for live, saved in self.tensors:
                live.copy_(saved)  # in place: the optimizer keeps pointing at the same tensors
        for sub, own, generators in self.attributes:
            for key in [k for k in vars(sub) if k not in _MODULE_INTERNALS and k not in own]:
                delattr(sub, key)
            vars(sub).update(own)
            for key, state in generators.items():
                own[key].set_state(state)


def _optimizer_snapshot(optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state_dict with every tensor copied to the CPU (``state_dict`` itself
    returns the live tensors, which the next step updates in place)."""
    state = optimizer.state_dict()
    copies = {
        index: {k: v.detach().to("cpu", copy=True) if torch.is_tensor(v) else copy.deepcopy(v) for k, v in s.items()}
        for index, s in state["state"].items()
    }
    return {**state, "state": copies, "param_groups": copy.deepcopy(state["param_groups"])}


class NetSnapshot:
    """The training state of an initialized skorch ``NeuralNet``, taken before a continuation.

    It holds the net's attribute bindings (history, callbacks, learning rate, ...), the
    number of history rows, and CPU copies of the tensors and Python state of its modules
    (the model, the multi-task method's state, the criterion) and of its optimizers.
    :meth:`restore` puts all of them back in the objects that are live, so references held
    elsewhere (the estimator's ``history_``, the optimizer's parameters) stay valid.

    History rows present at the snapshot are not copied: training only appends rows and
    writes to the last one, so the rows it added are dropped instead.
    """

    def __init__(self, net):
        self.attributes = dict(vars(net))
        self.history = net.history
        self.n_epochs = len(net.history)
        # what training changes in a MultiTaskNet: the module, the criterion, the method's state
        # and the torch optimizer
        self.modules = [
            _ModuleSnapshot(module)
            for module in (net.module_, net.criterion_, net.mto_state_)
            if isinstance(module, nn.Module)
        ]
        self.optimizers = [(net.optimizer_, _optimizer_snapshot(net.optimizer_))]

    def restore(self, net) -> None:
        """Put ``net`` back in the state it had when the snapshot was taken."""
        for key in [k for k in vars(net) if k not in self.attributes]:
            delattr(net, key)
        vars(net).update(self.attributes)
        del self.history[self.n_epochs :]
        for module in self.modules:
            module.restore()
        for optimizer, state in self.optimizers:
            optimizer.load_state_dict(state)
