"""The driver's view of a Ray cluster: runner actors grouped by hardware fingerprint.

A study is timed only on runners whose hardware matches its own, so a cluster of
mixed nodes is several groups, and each group tunes its own studies (the
database keys every measurement by hardware). A runner that dies is replaced in
the background; the group goes on with the others meanwhile.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter

from rcompiler.hardware import Hardware

from .calls import get, wait

STARTUP_SECONDS = 120.0  # for a runner actor to start (a new worker imports numpy and pebble)
REPLACE_SECONDS = 600.0  # for a lost runner's replacement, which waits for a free timing core
FORWARDED_ENV = ("RCOMPILER_FAULT", "RCOMPILER_FAULT_LOG")  # fault injection reaches the nodes' workers


class ClusterError(RuntimeError):
    """The cluster cannot be reached or cannot time anything; the message says what to do."""


def _check_reachable(address: str, seconds: float = 5.0) -> None:
    """Fail fast on an address where nothing listens: Ray itself retries for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # 'auto' and the like: Ray resolves them
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as err:
        raise ClusterError(f"cannot reach the Ray cluster at {address!r}: {err}; start its head with  "
                           f"ray start --head --port {port}  or check the address") from None


class RunnerGroup:
    """The runner actors of one hardware fingerprint; a study borrows them one candidate at a time."""

    def __init__(self, cluster: "Cluster", hardware: Hardware):
        self.cluster, self.hardware = cluster, hardware
        self.runners: dict[object, dict] = {}  # actor -> what it said of itself
        self._free: list = []
        self._changed = threading.Condition()
        self.replacing = 0
        self._lent: dict[object, float] = {}  # actor -> when it was lent
        self._busy_seconds = 0.0
        self._started = time.monotonic()
        self._most = 0  # runners the group has had at once

    # -- the backend protocol (rcompiler.measure.backend.Backend) --------------------------
    @property
    def parallelism(self) -> int:
        """Candidates to have in flight: every runner busy while the next ones build."""
        return 2 * max(1, len(self.runners))

    @property
    def parallel_tasks(self) -> int:
        return max(1, len(self.runners))

    def measurer(self, kernel, limits=None, seed: int = 0):
        from .measurer import RayMeasurer

        return RayMeasurer(self, kernel, limits, seed)

    def progress(self) -> str:
        return f"{len(self.runners)} runners {self.busy_fraction():.0%} busy"

    def busy_fraction(self) -> float:
        """The share of the runners' time so far spent lent out to a candidate."""
        with self._changed:
            now = time.monotonic()
            busy = self._busy_seconds + sum(now - t for t in self._lent.values())
            return busy / max(1e-9, self._most * (now - self._started))

    def interrupt(self, stop: BaseException | None) -> None:
        """Studies measuring in other threads stop too (raising `stop`); None: carry on again."""
        self.cluster.stopping = stop

    def stats(self) -> dict:
        return {"runners": sorted(info["name"] for info in self.runners.values()),
                "busy_fraction": round(self.busy_fraction(), 3), **self.cluster.counts}

    # -- borrowing runners -------------------------------------------------------------
    def add(self, actor, info: dict) -> None:
        with self._changed:
            self.runners[actor] = info
            self._most = max(self._most, len(self.runners))
            self._free.append(actor)
            self._changed.notify_all()

    def acquire(self, timeout: float = 0.0):
        """A free runner, or None when none frees up within `timeout` seconds."""
        with self._changed:
            if not self._free:
                if not self.runners and not self.replacing:
                    raise ClusterError(f"every runner of hardware {self.hardware.fingerprint} was lost")
                self._changed.wait(timeout)
            if not self._free:
                return None
            actor = self._free.pop()
            self._lent[actor] = time.monotonic()
            return actor

    def _returned(self, actor) -> None:
        lent = self._lent.pop(actor, None)
        if lent is not None:
            self._busy_seconds += time.monotonic() - lent

    def release(self, actor) -> None:
        with self._changed:
            self._returned(actor)
            if actor in self.runners:
                self._free.append(actor)
                self._changed.notify_all()

    def lost(self, actor) -> None:
        """A runner died (killed, or its node lost): forget it and start another, unless the
        cluster is closing."""
        with self._changed:
            self._returned(actor)
            self.runners.pop(actor, None)
            if actor in self._free:
                self._free.remove(actor)
            replace = not self.cluster.closing
            if replace:
                self.replacing += 1
        self.cluster.counts["runners_lost"] += 1
        if replace:
            self.cluster.replace_runner(self)

    def replaced(self) -> None:
        with self._changed:
            self.replacing -= 1
            self._changed.notify_all()


class Cluster:
    """A connection to a Ray cluster and its runner actors, one per volunteered core."""

    def __init__(self, address: str):
        import ray

        from .nodes import RUNNER_RESOURCE

        _check_reachable(address)
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR",
                     runtime_env={"env_vars": env} if env else None)
        except Exception as err:  # noqa: BLE001 - Ray raises several kinds; all mean "not reachable"
            raise ClusterError(f"cannot connect to the Ray cluster at {address!r}: {err}") from None
        resources = ray.cluster_resources()
        total = int(resources.get(RUNNER_RESOURCE, 0))
        if total < 1:
            ray.shutdown()
            raise ClusterError(f"no node of the Ray cluster at {address!r} times candidates: start the nodes that "
                               f"should time with  ray start ... --resources '{{\"{RUNNER_RESOURCE}\": N}}'  "
                               "(N at most their physical cores)")
        # Builder tasks take the CPUs that runners leave.
        self.builders = max(1, int(resources.get("CPU", 1)) - total)
        self.address = address
        self.groups: dict[str, RunnerGroup] = {}
        self.counts: Counter = Counter()
        self.stopping: BaseException | None = None  # set when the run is interrupted
        self.closing = False
        self._replacements: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.start_runners(total)

    def start_runners(self, n: int, timeout: float = STARTUP_SECONDS) -> None:
        """Start n runner actors and put each in the group of the hardware it reports."""
        import ray

        from rcompiler.lifetime import deferred_interrupts

        from .nodes import RunnerActor

        with deferred_interrupts():
            actors = [RunnerActor.remote() for _ in range(n)]
            try:
                infos = [get(a.describe.remote(), timeout, stop=lambda: self.closing) for a in actors]
            except Exception as err:  # noqa: BLE001
                for a in actors:
                    ray.kill(a)
                raise ClusterError(f"runner actors did not start on the Ray cluster at {self.address}: {err}") from None
        for actor, info in zip(actors, infos):
            self.join(actor, info)

    def replace_runner(self, group: RunnerGroup) -> None:
        """Start a runner for a lost one, in the background: it waits for a free timing core."""
        def start() -> None:
            try:
                self.start_runners(1, REPLACE_SECONDS)
                self.counts["runners_replaced"] += 1
            except Exception:  # noqa: BLE001 - no core to time on (yet): the group goes on without
                pass
            finally:
                group.replaced()

        thread = threading.Thread(target=start, daemon=True, name="runner-replacement")
        self._replacements.append(thread)
        thread.start()

    def join(self, actor, info: dict) -> RunnerGroup:
        """Put a runner in the group of the hardware it reports."""
        hardware = info["hardware"]
        with self._lock:
            group = self.groups.setdefault(hardware.fingerprint, RunnerGroup(self, hardware))
        group.add(actor, info)
        return group

    def group(self, fingerprint: str | None = None) -> RunnerGroup:
        """The runners of one fingerprint; with none given, the cluster must have only one."""
        if fingerprint is None:
            if len(self.groups) > 1:
                raise ClusterError("the cluster's runners have several kinds of hardware "
                                   f"({', '.join(self.groups)}): tune each with its fingerprint")
            return next(iter(self.groups.values()))
        if fingerprint not in self.groups:
            raise ClusterError(f"no runner has hardware {fingerprint}; the cluster has {', '.join(self.groups)}")
        return self.groups[fingerprint]

    def close(self) -> None:
        import ray

        self.closing = True
        for thread in self._replacements:  # they stop waiting within a slice
            thread.join()
        for group in self.groups.values():
            for actor in list(group.runners):
                ray.kill(actor)
        ray.shutdown()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
