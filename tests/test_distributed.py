"""Data-parallel fit: 2 CPU processes (gloo, loopback) launched by torchrun vs one process."""

import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from sklearn_mtr._distributed import RankShard, data_parallel_context, local_fit, same_on_all_ranks, setup_device

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ddp_worker import OPTIMIZERS, fit, fit_funnel, make_data, parameters

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        str(ROOT / "tests" / "ddp_worker.py"), str(out),
    ]  # fmt: skip
    try:
        run = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("the 2-process torchrun job did not finish within 240 s")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.parametrize("method", [*OPTIMIZERS, "stopping"])
def test_two_ranks_match_one_process_on_the_global_batch(two_ranks, method):
    rank0 = torch.load(two_ranks / f"{method}_rank0.pt")
    rank1 = torch.load(two_ranks / f"{method}_rank1.pt")
    assert _max_diff(rank0, rank1) == 0.0  # the replicas stay identical
    kw = {"early_stopping": True, "max_epochs": 4, "n_iter_no_change": 1} if method == "stopping" else {}
    name = "pcgrad" if method == "stopping" else method
    single = parameters(fit(name, **kw))
    assert _max_diff(rank0, single) < 1e-5
    # Sensitivity: one process on a rank's local batch size (25 rows) trains another model.
    assert _max_diff(parameters(fit(name, batch_size=25, **kw)), single) > 1e-3


@pytest.mark.parametrize("method", ["ew", "pcgrad"])
def test_auxiliary_loss_is_synchronised(two_ranks, method):
    # AITM's calibration loss: summed after one backward (ew) or all-reduced and added to the
    # combined per-task gradients (pcgrad); one process on the global batch is matched either way.
    rank0 = torch.load(two_ranks / f"aitm_{method}_rank0.pt")
    assert _max_diff(rank0, torch.load(two_ranks / f"aitm_{method}_rank1.pt")) == 0.0
    # lr=0.1 amplifies the all-reduce's summation order to differences of up to 2.4e-5 here
    assert _max_diff(rank0, parameters(fit_funnel(method))) < 1e-4


def test_rank0_estimator_is_a_normal_fitted_estimator(two_ranks):
    clf = pickle.loads((two_ranks / "pcgrad.pkl").read_bytes())
    assert clf.net_.data_parallel_ is None and clf.n_iter_ == 2
    X, _, _ = make_data()
    np.testing.assert_allclose(clf.predict_proba(X), fit("pcgrad").predict_proba(X), atol=1e-5)


def test_different_data_on_ranks_is_refused_and_local_fit_opts_out(two_ranks):
    for rank in (0, 1):
        assert "ranks were given different data" in (two_ranks / f"mismatch_rank{rank}.txt").read_text()
    local0, local1 = (torch.load(two_ranks / f"local_rank{r}.pt") for r in (0, 1))
    assert _max_diff(local0, local1) > 1e-3  # each rank trained its own model on its own rows


def test_single_process_is_untouched():
    assert data_parallel_context() is None
    assert same_on_all_ranks(7) == 7 and setup_device("cpu") == "cpu"
    with local_fit():
        assert data_parallel_context() is None


def test_rank_shard_takes_every_world_size_th_row():
    class Data:
        group = None

        def __len__(self):
            return 10

        def take(self, index):
            return index.tolist()

    shard = RankShard(Data(), rank=1, world_size=3)
    assert len(shard) == 10 and shard.take(torch.arange(10)) == [1, 4, 7]

    class Requests(Data):
        group = torch.tensor([5, 5, 7, 7, 7, 9, 2, 2, 8, 8])

    # whole requests per rank: requests 2, 5, 7, 8, 9 -> ranks 0, 1, 0, 1, 0
    assert RankShard(Requests(), rank=1, world_size=2).take(torch.arange(10)) == [0, 1, 8, 9]
    assert RankShard(Requests(), rank=0, world_size=2).take(torch.arange(10)) == [2, 3, 4, 5, 6, 7]
