"""Grading on a Dask cluster: the same scores as the local process pool, nothing lost when a
Dask worker is killed mid-batch, and a GPU asked for only where Question 7 is retrained.
Question 1 only, on small submissions, with two single-threaded Dask workers."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from distributed import Client, LocalCluster, get_worker

from grader.batch import BatchError, grade_batch
from grader.cluster import DaskExecutor, gpu_for_retraining, parse_cluster

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SUBMISSIONS = ("filled_template", "hard_coded_batch_q1", "missing_relu_q6")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("class")
    for name in SUBMISSIONS:
        shutil.copytree(EXAMPLES / name, folder / name)
    return folder


def grade(folder: Path, out: Path, data: tuple[str, str], **where) -> dict[str, tuple[str, float]]:
    results = grade_batch(
        submissions=folder,
        out=out,
        data=data[0],
        cache_dir=data[1],
        questions=["Q1"],
        seed=7,
        use_cache=False,
        progress=False,
        reports=False,
        similarity=False,
        **where,
    )
    return {r.name: (r.status, r.score) for r in results}


@pytest.fixture(scope="module")
def data(cifar10_path, cifar10_cache) -> tuple[str, str]:
    return cifar10_path, cifar10_cache


@pytest.fixture(scope="module")
def local_scores(folder, data, tmp_path_factory) -> dict[str, tuple[str, float]]:
    return grade(folder, tmp_path_factory.mktemp("local"), data, jobs=2)


@pytest.fixture(scope="module")
def cluster():
    # Each worker advertises one GPU, so that the batch decides per task whether to ask for it.
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, resources={"GPU": 1}
        ) as cluster,
        Client(cluster) as client,
    ):
        yield cluster, client


@pytest.mark.slow
def test_the_scores_are_those_of_the_local_pool(folder, data, local_scores, tmp_path):
    # The Q1 bug loses points and the others keep them, so the comparison can tell a difference.
    assert len({score for _, score in local_scores.values()}) == 2, local_scores
    out = tmp_path / "out"
    assert grade(folder, out, data, cluster="local:2") == local_scores
    assert sorted(p.parent.name for p in out.glob("*/results.json")) == sorted(SUBMISSIONS)


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_nothing(folder, data, local_scores, cluster, tmp_path):
    _, client = cluster
    killed: list[str] = []

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            busy = [address for address, keys in client.processing().items() if keys]
            if busy:
                time.sleep(1.0)  # well inside the task: starting its sandbox alone takes longer
                if client.processing().get(busy[0]):
                    pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(busy[0])
                    return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    try:
        scores = grade(folder, tmp_path, data, scheduler=cluster[0].scheduler_address)
    finally:
        killer.join()
    assert killed, "no worker was ever seen grading"
    assert scores == local_scores


def _holds_the_gpu(path: str) -> bool:
    return get_worker().state.available_resources["GPU"] == 0


def test_only_a_retrained_question_7_asks_for_the_gpu(cluster, tmp_path):
    _, client = cluster
    lone = tmp_path / "lone.ipynb"
    shutil.copy(next((EXAMPLES / "filled_template").glob("*.ipynb")), lone)
    with_checkpoint = EXAMPLES / "filled_template"
    assert gpu_for_retraining(str(lone)) == {"GPU": 1}
    assert gpu_for_retraining(str(with_checkpoint)) is None

    class Q1Only:
        questions = ("Q1",)

    assert gpu_for_retraining(str(lone), Q1Only()) is None

    executor = DaskExecutor(client)  # the fixture's client stays open for the other tests
    assert executor.submit(_holds_the_gpu, str(lone)).result(timeout=60) is True
    assert executor.submit(_holds_the_gpu, str(with_checkpoint)).result(timeout=60) is False


def test_cluster_specs_and_an_unreachable_scheduler(folder, data, tmp_path, monkeypatch):
    monkeypatch.setattr("grader.cluster.CONNECT_SECONDS", 2.0)
    assert parse_cluster("local:3") == ("local", 3)
    assert parse_cluster("slurm") == ("slurm", None)
    for bad in ("local:0", "kubernetes", "local:two"):
        with pytest.raises(ValueError):
            parse_cluster(bad)
    with pytest.raises(BatchError, match="cannot reach the Dask scheduler"):
        grade(folder, tmp_path, data, scheduler="tcp://127.0.0.1:9")
