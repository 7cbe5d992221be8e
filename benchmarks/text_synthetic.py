"""Synthetic text benchmark: labels set by unigrams, bigrams (negations) and a category.

Compares an estimator's text encoding against TF-IDF (1-2-grams) + one-hot + a logistic
regression per task, on held-out rows, for several seeds. Run from the repository root:

    python benchmarks/text_synthetic.py [--seeds 0 1 2] [--n 6000]

Another checkout's ``sklearn_mtr`` (an older text encoding) is measured by putting it first
on ``PYTHONPATH``; ``--skip-baseline`` then leaves out the linear baseline.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

N_TASKS = 3


def make_text_tasks(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Zipf-distributed words (vocabulary 3000); each task's logit sums signed effects of 30
    unigrams and of 30 bigrams whose words are common on their own (``w1 w2`` matters, the
    words apart do not), plus a category effect. The generator (words, effects) is fixed;
    ``seed`` draws the rows."""
    gen = np.random.default_rng(12345)
    vocab = np.array([f"w{i}" for i in range(3000)])
    p = 1.0 / np.arange(1, 3001) ** 1.1
    p /= p.sum()
    unigrams = [gen.choice(3000, 30, replace=False, p=p) for _ in range(N_TASKS)]
    bigrams = [gen.choice(200, (30, 2)) for _ in range(N_TASKS)]  # pairs of frequent words
    effects = [gen.normal(0, 1.5, 30) for _ in range(N_TASKS)], [gen.normal(0, 2.5, 30) for _ in range(N_TASKS)]
    cat_effect = gen.normal(0, 0.7, (N_TASKS, 20))
    rng = np.random.default_rng(seed)
    texts, logits = [], np.zeros((n, N_TASKS))
    cats = rng.integers(0, 20, n)
    for i in range(n):
        words = rng.choice(3000, rng.integers(4, 20), p=p)
        for k in range(N_TASKS):  # plant the task's bigrams now and then
            if rng.random() < 0.3:
                j = rng.integers(30)
                at = rng.integers(0, len(words) + 1)
                words = np.insert(words, at, bigrams[k][j])
        pairs = set(zip(words[:-1].tolist(), words[1:].tolist()))
        for k in range(N_TASKS):
            logits[i, k] += sum(effects[0][k][np.flatnonzero(unigrams[k] == w)].sum() for w in set(words.tolist()))
            logits[i, k] += sum(effects[1][k][j] for j, (a, b) in enumerate(bigrams[k]) if (a, b) in pairs)
        texts.append(" ".join(vocab[words]))
    logits += cat_effect[:, cats].T - 1.0
    Y = (rng.random((n, N_TASKS)) < expit(logits)).astype(float)
    X = pd.DataFrame({"text": texts, "shop": pd.Series([f"s{c}" for c in cats], dtype="category")})
    return X, Y


def baseline(X, Y, X_test):
    pipe = lambda: make_pipeline(
        ColumnTransformer(
            [
                ("txt", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), "text"),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["shop"]),
            ]
        ),
        LogisticRegression(C=4.0, max_iter=2000),
    )
    return np.column_stack([pipe().fit(X, Y[:, k]).predict_proba(X_test)[:, 1] for k in range(N_TASKS)])


def main() -> None:
    from sklearn_mtr import MMoEClassifier

    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        X, Y = make_text_tasks(args.n, seed)
        X_test, Y_test = make_text_tasks(args.n // 2, seed + 100)
        models = {
            "mmoe": MMoEClassifier(
                text_features=["text"],
                n_experts=4,
                expert_hidden_sizes=(64,),
                tower_hidden_sizes=(32,),
                max_epochs=args.epochs,
                batch_size=128,
                random_state=seed,
            )
        }
        for name, clf in models.items():
            start = time.perf_counter()
            proba = clf.fit(X, Y).predict_proba(X_test)
            aucs = [roc_auc_score(Y_test[:, k], proba[:, k]) for k in range(N_TASKS)]
            rows.append(
                {
                    "seed": seed,
                    "model": name,
                    **{f"auc{k}": a for k, a in enumerate(aucs)},
                    "s": time.perf_counter() - start,
                }
            )
        if not args.skip_baseline:
            proba = baseline(X, Y, X_test)
            rows.append(
                {
                    "seed": seed,
                    "model": "tfidf+lr",
                    **{f"auc{k}": roc_auc_score(Y_test[:, k], proba[:, k]) for k in range(N_TASKS)},
                }
            )
    table = pd.DataFrame(rows)
    print(table.round(4).to_string(index=False))
    print(table.drop(columns="seed").groupby("model").mean().round(4).to_string())


if __name__ == "__main__":
    main()
