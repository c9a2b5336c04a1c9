"""A Ray cluster on this machine, for the tests, the benchmark and trying --cluster out.

The head node builds on `builder_cores`; each of `runner_cores` is a node of its own
that volunteers one runner. Every node is a `ray start` under taskset, so its
raylet, workers and actors keep to its cores. Stopping uses `ray stop --force`,
which ends every Ray process of this machine.

    with local_cluster(builder_cores=[0], runner_cores=[1]) as cluster:
        rcompiler.tune(kernel, cluster=cluster.address)  # or cluster.client, a ray:// address
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from typing import Iterator, NamedTuple

from .nodes import RUNNER_RESOURCE

RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cores: list[int], *args: str) -> None:
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run(["taskset", "-c", ",".join(map(str, cores)), *RAY, "start", *args, "--disable-usage-stats"],
                   check=True, env=env, capture_output=True, timeout=180)


def stop() -> None:
    subprocess.run([*RAY, "stop", "--force"], capture_output=True, timeout=120)


class LocalCluster(NamedTuple):
    address: str  # the head's host:port, for a driver on a node of the cluster
    client: str  # ray://host:port, Ray Client's address, for a driver outside it


@contextlib.contextmanager
def local_cluster(builder_cores: list[int], runner_cores: list[int]) -> Iterator[LocalCluster]:
    """Start the cluster; yield its addresses; stop it."""
    port, client_port = _free_port(), _free_port()
    address = f"127.0.0.1:{port}"
    try:
        _start(builder_cores, "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
               f"--ray-client-server-port={client_port}", f"--num-cpus={len(builder_cores)}",
               "--include-dashboard=false")
        for core in runner_cores:
            _start([core], f"--address={address}", "--num-cpus=1", f'--resources={{"{RUNNER_RESOURCE}": 1}}')
        yield LocalCluster(address, f"ray://127.0.0.1:{client_port}")
    finally:
        stop()
