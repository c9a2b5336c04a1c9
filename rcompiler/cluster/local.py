"""A Ray cluster on this machine, for the tests, the benchmark and trying --cluster out.

The head node builds on `builder_cores`; each of `runner_cores` is a node of its own
that volunteers one runner. Every node is a `ray start --block` pinned to its cores
(its raylet, workers and actors inherit them) in a session of its own, so stopping
the cluster ends exactly its processes and no other Ray on the machine.

    with local_cluster(builder_cores=[0], runner_cores=[1]) as cluster:
        rcompiler.tune(kernel, cluster=cluster.address)  # or cluster.client, a ray:// address
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Iterator, NamedTuple

from .nodes import RUNNER_RESOURCE

RAY = [sys.executable, "-m", "ray.scripts.scripts"]
START_SECONDS = 120.0
START_ATTEMPTS = 3


class LocalCluster(NamedTuple):
    address: str  # the head's host:port, for a driver on a node of the cluster
    client: str  # ray://host:port, Ray Client's address, for a driver outside it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node(cores: list[int], *args: str) -> subprocess.Popen:
    log = tempfile.TemporaryFile()  # a file, never a pipe that fills up and blocks the node
    node = subprocess.Popen([*RAY, "start", "--block", *args, "--disable-usage-stats"],
                            env=os.environ | {"RAY_USAGE_STATS_ENABLED": "0"}, start_new_session=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, cores), stdout=log, stderr=log)
    node.log = log
    return node


def _until(ready, nodes: list[subprocess.Popen], what: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while not ready():
        dead = [n for n in nodes if n.poll() is not None]
        if dead or time.monotonic() > deadline:
            why = f"not up after {START_SECONDS:g} s"
            if dead:
                dead[0].log.seek(0)
                why = dead[0].log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"local Ray cluster: {what}: {why}")
        time.sleep(0.2)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _runners_registered(address: str, want: int) -> bool:
    import ray

    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    try:
        return int(ray.cluster_resources().get(RUNNER_RESOURCE, 0)) >= want
    finally:
        ray.shutdown()


def _runner_node(core: int, address: str, nodes: list[subprocess.Popen], joined: int) -> subprocess.Popen:
    """Start one runner node and wait until it has joined. Nodes start one at a time, and a
    node whose raylet missed Ray's own fixed 30 s registration window (a cold disk, the
    other core busy) is started again, rather than failing the whole cluster."""
    for attempt in range(START_ATTEMPTS):
        node = _node([core], f"--address={address}", "--num-cpus=1",
                     f'--resources={{"{RUNNER_RESOURCE}": 1}}')
        try:
            _until(lambda: _runners_registered(address, joined), [*nodes, node], "a runner node did not join")
            return node
        except RuntimeError as error:
            with contextlib.suppress(ProcessLookupError):  # its raylet may outlive `ray start`
                os.killpg(node.pid, signal.SIGKILL)
            node.wait()
            if attempt + 1 == START_ATTEMPTS or "timed out during startup" not in str(error):
                raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def local_cluster(builder_cores: list[int], runner_cores: list[int]) -> Iterator[LocalCluster]:
    """Start the cluster; yield its addresses once every node has joined; stop it."""
    port, client_port = _free_port(), _free_port()
    address = f"127.0.0.1:{port}"
    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(_node(builder_cores, "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                           f"--ray-client-server-port={client_port}", f"--num-cpus={len(builder_cores)}",
                           "--include-dashboard=false"))
        _until(lambda: _listening(port), nodes, "the head did not start")
        for joined, core in enumerate(runner_cores, start=1):
            nodes.append(_runner_node(core, address, nodes, joined))
        yield LocalCluster(address, f"ray://127.0.0.1:{client_port}")
    finally:
        for node in reversed(nodes):  # each node's session holds its raylet, workers and actors
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10  # Ray's own shutdown waits long for stuck workers
        for node in nodes:
            try:
                node.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.pid, signal.SIGKILL)
                node.wait()
