"""The data layer: column roles, vocabularies and the tensors handed to the models."""

from ._encoder import TabularEncoder
from ._roles import CATEGORICAL, NUMERIC, SEQUENCE, TEXT, resolve_roles

__all__ = ["CATEGORICAL", "NUMERIC", "SEQUENCE", "TEXT", "TabularEncoder", "resolve_roles"]
