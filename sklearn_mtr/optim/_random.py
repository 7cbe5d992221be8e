"""The state of a method that draws random numbers: a seeded generator that survives saving."""

from __future__ import annotations

import torch
from torch import nn


class SeededState(nn.Module):
    """A method's state module holding a ``torch.Generator`` seeded from the global torch random
    stream (which the estimator seeds from ``random_state``), so training is deterministic.

    The generator pickles with the net, and its position is in the ``state_dict`` (extra
    state), so a model saved in the safe format and loaded again continues the same random
    stream. Methods add their buffers to it with ``register_buffer``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))

    def get_extra_state(self):
        return self.generator.get_state()

    def set_extra_state(self, state) -> None:
        self.generator.set_state(state)
