"""OneRank cost against the number of candidates per request, parameter count, FLOPs per sample.

One request (user context, a 50-item history sharing the item vocabulary) with N candidates
and 3 tasks, N = 32 .. 4096. For each N the eval-mode forward pass of
:class:`sklearn_mtr.models.OneRank` (shared-prefix attention: the prefix once, every
candidate group attending to the prefix keys/values plus its own K+1 tokens) is timed
(median of ``--repeats`` after a warm-up), and its FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` (matmul-type operations, forward only). For
comparison the same encoder is run with one dense ``S x S`` attention mask over
``S = H + N (K + 1)`` tokens (the textbook implementation) up to ``--dense-max``
candidates. ``loglog_slope`` is the least-squares slope of log(time) against log(N) over
N >= 256: 1 means linear.

Model: d_model 64, 2 layers, 4 heads, FFN 4x, embeddings of 16; 1 CPU thread.

Run ``python benchmarks/onerank_scaling.py``; writes ``benchmarks/results/onerank_scaling.json``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import _common
import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from sklearn_mtr._schema import FeatureSchema, SequenceInput
from sklearn_mtr.models import OneRank

N_TASKS = 3
HISTORY = 50
CONFIG = {"embedding_dim": 16, "d_model": 64, "n_layers": 2, "n_heads": 4, "ffn_mult": 4}
SCHEMA = FeatureSchema(
    categorical_names=("user", "device", "item", "brand", "category"),
    categorical_cardinalities=(1000, 8, 5000, 200, 50),
    n_numeric=2,
    numeric_names=("hour", "price"),
    sequences=(SequenceInput("hist", 5000, "item"),),
)
CONTEXT = ("user", "device", "hour")


def request_batch(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cat = torch.stack([torch.randint(2, c, (n,), generator=g) for c in SCHEMA.categorical_cardinalities], dim=1)
    cat[:, :2] = cat[0, :2]  # one user / device per request
    numeric = torch.randn(n, 2, generator=g)
    numeric[:, 0] = numeric[0, 0]
    hist = torch.randint(2, 5000, (1, HISTORY), generator=g).expand(n, -1).clone()
    return {
        "categorical": cat,
        "numeric": numeric,
        "seq__hist": hist,
        "len__hist": torch.full((n,), HISTORY),
        "group": torch.zeros(n, dtype=torch.long),
    }


def dense_encode(model: OneRank, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The encoder with one dense S x S boolean mask (what the shared-prefix path avoids)."""
    prefix, prefix_allowed, prefix_valid, groups, _, _ = model.initial_tokens(batch)
    R, H, d = prefix.shape
    N, T = groups.shape[1], groups.shape[2]
    S = H + N * T
    allowed = torch.zeros(R, S, S, dtype=torch.bool)
    allowed[:, :H, :H] = prefix_allowed
    allowed[:, H:, :H] = prefix_valid[:, None, :]
    group_of = torch.arange(N * T) // T
    same_group = group_of[:, None] == group_of[None, :]
    in_group = model.group_allowed.repeat(N, N)
    allowed[:, H:, H:] = same_group & in_group
    x = torch.cat([prefix, groups.reshape(R, N * T, d)], dim=1)
    for block in model.blocks:
        q, k, v = (t.view(R, S, block.n_heads, -1).transpose(1, 2) for t in block.qkv(block.norm1(x)).chunk(3, dim=-1))
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
        x = x + block.out(attn.transpose(1, 2).reshape(R, S, d))
        x = x + block.ffn(block.norm2(x))
    return model.final_norm(x[:, H:].reshape(R, N, T, d)[:, :, 1:])


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--max-candidates", type=int, default=4096)
    parser.add_argument("--dense-max", type=int, default=1024)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = OneRank(SCHEMA, N_TASKS, context_features=CONTEXT, max_history=HISTORY, **CONFIG).eval()
    embedding = sum(p.numel() for p in model.embedding.parameters())
    total = sum(p.numel() for p in model.parameters())
    sizes = [2**i for i in range(5, int(math.log2(args.max_candidates)) + 1)]
    rows = []
    with torch.no_grad():
        for n in sizes:
            batch = request_batch(n)
            row = {
                "candidates": n,
                "forward_s": timed(lambda b=batch: model(b), args.repeats),
                "encoder_s": timed(lambda b=batch: model.encode(b), args.repeats),
                "forward_flops": flops(lambda b=batch: model(b)),
            }
            row["flops_per_candidate"] = row["forward_flops"] / n
            row["us_per_candidate"] = 1e6 * row["forward_s"] / n
            if n <= args.dense_max:
                fast = model.encode(batch)[0]
                dense = dense_encode(model, batch)
                row["dense_encoder_s"] = timed(lambda b=batch: dense_encode(model, b), args.repeats)
                row["dense_max_abs_diff"] = float((fast - dense).abs().max())
            rows.append(row)
            print(
                f"N={n:5d}  forward {row['forward_s'] * 1e3:8.2f} ms  ({row['us_per_candidate']:6.1f} us/cand)  "
                f"encoder {row['encoder_s'] * 1e3:8.2f} ms  dense {row.get('dense_encoder_s', float('nan')) * 1e3:8.2f} ms"
                f"  {row['flops_per_candidate'] / 1e6:6.2f} MFLOP/cand",
                flush=True,
            )

    def slope(key):
        pts = [(math.log(r["candidates"]), math.log(r[key])) for r in rows if r["candidates"] >= 256 and key in r]
        if len(pts) < 2:
            return None
        x, y = np.array(pts).T
        return float(np.polyfit(x, y, 1)[0])

    payload = {
        "description": __doc__,
        "config": {**CONFIG, "n_tasks": N_TASKS, "history": HISTORY, "context_features": CONTEXT},
        "parameters": {"total": total, "embeddings": embedding, "non_embedding": total - embedding},
        "rows": rows,
        "loglog_slope": {
            "forward": slope("forward_s"),
            "encoder": slope("encoder_s"),
            "dense": slope("dense_encoder_s"),
        },
        "flops_per_sample_at_max": rows[-1]["flops_per_candidate"],
        "repeats": args.repeats,
    }
    path = _common.write_results("onerank_scaling", payload)
    print(f"slopes {payload['loglog_slope']}; params {payload['parameters']}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
