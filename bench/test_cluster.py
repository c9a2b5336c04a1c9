"""Tuning throughput on a Ray cluster: `pip install -e ".[ray]" && pytest bench/test_cluster.py --benchmark-only -s`.

The same study (MCTS + heuristic, budget 24, matmul 256x256x256, fresh database)
runs on this machine's own pools, then on a local Ray cluster with one runner
actor, then with two. Reported: samples per second, and the best GFLOP/s each
found, whose ratio to the local pools' shows that timing on a runner actor is as
clean as timing locally. With two cores, the second runner has to share its core
with the builders; on a real cluster every runner has a core to itself.
Results land in results/cluster.json.
"""
from __future__ import annotations

import os

import pytest

import rcompiler
from rcompiler.kernels import get_kernel

from .test_targets import record

pytest.importorskip("ray")
BUDGET = 24
CORES = sorted(os.sched_getaffinity(0))


def _study(tmp_path, name: str, cluster=None) -> dict:
    kernel = get_kernel("matmul", (256, 256, 256))
    result = rcompiler.tune(kernel, budget=BUDGET, db=tmp_path / f"{name}.db", cluster=cluster)
    measured = [s for s in result.samples if not s.reused]
    return {"samples": len(measured), "wall_seconds": result.wall_seconds,
            "samples_per_second": len(measured) / result.wall_seconds,
            "best_gflops": result.gflops(result.best.seconds), "runners": result.runner_stats.get("runners", [])}


@pytest.mark.skipif(len(CORES) < 2, reason="needs a core to build and one to time")
def test_samples_per_second_on_one_and_two_runners(benchmark, tmp_path):
    from rcompiler.cluster.local import local_cluster

    runs = {}

    def all_three():
        runs["local pools"] = _study(tmp_path, "local")
        with local_cluster(builder_cores=CORES[:1], runner_cores=CORES[1:2]) as cluster:
            runs["ray, 1 runner"] = _study(tmp_path, "ray1", cluster.address)
        with local_cluster(builder_cores=CORES[:1], runner_cores=CORES[:2]) as cluster:
            runs["ray, 2 runners"] = _study(tmp_path, "ray2", cluster.address)

    benchmark.pedantic(all_three, rounds=1, iterations=1)
    local = runs["local pools"]
    data = {"kernel": "matmul 256x256x256", "budget": BUDGET, "runs": runs,
            "vs_local": {k: {"samples_per_second": v["samples_per_second"] / local["samples_per_second"],
                             "best_gflops": v["best_gflops"] / local["best_gflops"]}
                         for k, v in runs.items() if k != "local pools"}}
    record("cluster", data)
    benchmark.extra_info.update(data)
    one = data["vs_local"]["ray, 1 runner"]
    assert one["best_gflops"] >= 0.85, data  # the same search, timed on an actor: as fast a best
    assert one["samples_per_second"] >= 0.5, data  # Ray's overhead per candidate stays small
