"""GridSearchCV through joblib's Dask and Ray backends, on loopback (skipped without them)."""

import os
from pathlib import Path

import numpy as np
import pytest
from joblib import parallel_config
from sklearn.model_selection import GridSearchCV, KFold

from sklearn_mtr import MMoEClassifier
from sklearn_mtr.datasets import make_multitask_classification

ROOT = str(Path(__file__).resolve().parents[1])
TINY = {
    "n_experts": 2,
    "expert_hidden_sizes": (8,),
    "tower_hidden_sizes": (4,),
    "embedding_dim": 4,
    "max_epochs": 2,
    "random_state": 0,
}
GRID = {"lr": [1e-3, 3e-2]}


def _data():
    return make_multitask_classification(n_samples=200, random_state=0)


def _search() -> GridSearchCV:
    return GridSearchCV(MMoEClassifier(**TINY), GRID, cv=KFold(2), n_jobs=2)


@pytest.fixture(scope="module")
def serial():
    X, Y = _data()
    return GridSearchCV(MMoEClassifier(**TINY), GRID, cv=KFold(2), n_jobs=1).fit(X, Y)


def _same_search(search, serial):
    # random_state makes every fit deterministic: the backend changes where, not what.
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"], atol=1e-6)
    assert search.best_params_ == serial.best_params_
    X, _ = _data()
    np.testing.assert_allclose(search.predict_proba(X), serial.predict_proba(X), atol=1e-6)


@pytest.mark.slow
def test_grid_search_on_a_dask_local_cluster(serial):
    distributed = pytest.importorskip("distributed")
    # Worker processes, one thread each: one fit per process at a time. (Threads would share
    # torch's global random state, which seeds weight initialisation: not reproducible.)
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, env=env
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        X, Y = _data()
        with parallel_config(backend="dask"):
            search = _search().fit(X, Y)
        # the candidates' fits went through the scheduler to the worker processes
        prefixes = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
        assert any("fit_and_score" in p for p in prefixes), prefixes
    _same_search(search, serial)


@pytest.mark.slow
def test_grid_search_with_ray(serial):
    ray = pytest.importorskip("ray")
    from ray.util.joblib import register_ray

    register_ray()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}},
    )
    try:
        X, Y = _data()
        # ray_remote_args is how each fit reserves a device: {"num_gpus": 1} on a GPU cluster.
        with parallel_config(backend="ray", ray_remote_args={"num_cpus": 1}):
            search = _search().fit(X, Y)
    finally:
        ray.shutdown()
    _same_search(search, serial)
