"""A small hand-made schema and batch shared by the architecture tests."""

import torch

from sklearn_mtr._schema import FeatureSchema

SCHEMA = FeatureSchema(
    categorical_names=("a", "b"), categorical_cardinalities=(5, 4), n_numeric=3, numeric_names=("x", "y", "z")
)


def make_batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "categorical": torch.stack([torch.randint(0, c, (n,), generator=g) for c in (5, 4)], dim=1),
        "numeric": torch.randn(n, 3, generator=g),
    }
