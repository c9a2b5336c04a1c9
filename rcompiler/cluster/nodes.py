"""What runs on the nodes of a Ray cluster: builder tasks and runner actors.

A node volunteers for timing with the custom resource `rcompiler_runner`, one unit
per core it gives to timing. A runner actor claims one core for its lifetime (a
lock file per core, which the kernel releases when the actor dies) and pins
itself and its timing worker to it; builder tasks pin themselves to the node's
cores that no runner holds, so timing never shares a core with a compile.

Candidates still run in a killable child process of the runner actor: a
segfault or a hang is the candidate's result and the actor lives on. An actor
that dies was killed or lost with its node; the driver re-queues its candidate.
"""
from __future__ import annotations

import fcntl
import os
import socket
import tempfile
from dataclasses import replace
from pathlib import Path

import ray
from pebble import ProcessPool

from rcompiler.measure.builder import build
from rcompiler.measure.measurer import init_worker, collect_run
from rcompiler.measure.results import BuildResult, Measurement
from rcompiler.measure.runner import RunTask, run, run_numpy
from rcompiler.measure.spawn import worker_context

RUNNER_RESOURCE = "rcompiler_runner"
# The node's cores, as the raylet was started with them (workers inherit its affinity).
NODE_CORES = sorted(os.sched_getaffinity(0))
_LOCKS = Path(tempfile.gettempdir()) / f"rcompiler-timing-cores-{os.getuid()}"


def _lock_path(core: int) -> Path:
    _LOCKS.mkdir(parents=True, exist_ok=True)
    return _LOCKS / f"core{core}.lock"


def claim_core() -> tuple[int, int]:
    """A timing core of this node, highest first, and the descriptor whose lock holds it."""
    for core in reversed(NODE_CORES):
        fd = os.open(_lock_path(core), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return core, fd
        except BlockingIOError:
            os.close(fd)
    raise RuntimeError(f"every core of this node ({NODE_CORES}) already times for a runner: start the node with "
                       f"no more '{RUNNER_RESOURCE}' than it has cores")


def timing_cores() -> set[int]:
    """The node's cores that runner actors hold now."""
    held = set()
    for core in NODE_CORES:
        fd = os.open(_lock_path(core), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            held.add(core)
        finally:
            os.close(fd)
    return held


@ray.remote(num_cpus=1, max_retries=1, max_calls=200)
def build_candidate(payload: str, script: str | None, threads: int) -> tuple[BuildResult, str]:
    """Apply and lower one candidate on a core no runner times on. Ray retries it once when its
    worker dies (a lost node); a second death is the candidate's crash."""
    free = set(NODE_CORES) - timing_cores()
    if free:
        os.sched_setaffinity(0, free)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    return build(payload, script, threads), f"{socket.gethostname()}:pid{os.getpid()}"


@ray.remote(num_cpus=1, resources={RUNNER_RESOURCE: 1}, max_restarts=0)
class RunnerActor:
    """Times candidates on one core of its node, in a killable worker process pinned there."""

    def __init__(self):
        from rcompiler.hardware import detect

        self.hardware = detect()  # before pinning: the node's cores, not one
        self.core, self._lock = claim_core()
        os.sched_setaffinity(0, {self.core})
        self.pool = ProcessPool(max_workers=1, max_tasks=200, context=worker_context(),
                                initializer=init_worker, initargs=({self.core}, os.getpid()))
        self.name = f"{socket.gethostname()}:core{self.core}"

    def describe(self) -> dict:
        return {"name": self.name, "node": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                "hardware": self.hardware}

    def run(self, task: RunTask, reference, limit: float) -> Measurement:
        measurement = collect_run(self.pool.schedule(run, args=(replace(task, reference=reference),),
                                                     timeout=limit), limit)
        measurement.extra["runner"] = self.name
        return measurement

    def run_numpy(self, kind: str, args, seed: int, min_time: float, limit: float) -> Measurement:
        return collect_run(self.pool.schedule(run_numpy, args=(kind, args, seed, min_time), timeout=limit), limit)

    def fma_peak(self) -> float:
        from rcompiler.hardware import measure_fma_peak

        return self.pool.schedule(measure_fma_peak).result()
