"""Data-parallel training under ``torchrun``: what a user controls.

A ``fit`` launched by ``torchrun`` trains one model data-parallel across the ranks (see the
performance docs). :func:`local_fit` switches that off, for jobs whose ranks fit independent
models (a search spread over processes).
"""

from ._distributed import local_fit

__all__ = ["local_fit"]
