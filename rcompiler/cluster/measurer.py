"""Measure candidates on a Ray cluster: builds are Ray tasks, timings go to runner actors.

Builds run wherever a CPU is free; each built candidate is timed by the next free
runner of the study's hardware. A build past its time limit is cancelled (its
worker killed); a runner that dies mid-candidate is replaced and the candidate
timed again on another, so a lost node costs only time.
"""
from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Iterable, Iterator

from rcompiler.lifetime import check_interrupt, deferred_interrupts
from rcompiler.measure.measurer import Candidate, Limits, MeasurerBase
from rcompiler.measure.results import BuildResult, Measurement, Status
from rcompiler.measure.runner import RunTask

from .calls import SLICE_SECONDS, get, wait

if TYPE_CHECKING:
    from .driver import RunnerGroup

MAX_REQUEUES = 2  # a candidate whose runner dies this often is the candidate's crash
POLL_SECONDS = 0.2  # how often to look for a free runner when the group's are all lent out


class RayMeasurer(MeasurerBase):
    def __init__(self, group: "RunnerGroup", kernel, limits: Limits | None = None, seed: int = 0):
        self.group, self.kernel, self.limits, self.seed = group, kernel, limits or Limits(), seed
        self._reference_ref = None

    def measure_numpy(self) -> Measurement | None:
        from rcompiler.kernels.library import NUMPY_BASELINES

        if self.kernel.kind not in NUMPY_BASELINES:
            return None
        actor = self._wait_for_runner()
        try:
            with deferred_interrupts():
                return get(actor.run_numpy.remote(self.kernel.kind, self.kernel.args, self.seed,
                                                  self.limits.min_time, self.limits.run_limit))
        finally:
            self.group.release(actor)

    def measure_peak(self) -> float:
        actor = self._wait_for_runner()
        try:
            with deferred_interrupts():
                return get(actor.fma_peak.remote())
        finally:
            self.group.release(actor)

    def measure_many(self, candidates: Iterable[Candidate], cutoff: float | None = None, *, verify: bool = True,
                     return_outputs: bool = False) -> Iterator[tuple[int, Measurement]]:
        """Yield (index, measurement) as each finishes, in any order."""
        import ray

        candidates = list(candidates)
        if any(c.threads > 1 for c in candidates):
            raise ValueError("a cluster times on one core per runner: multi-threaded schedules are tuned locally")
        if verify and self._reference_ref is None:
            reference = self.reference()
            with deferred_interrupts():
                self._reference_ref = ray.put(reference)
        # Ctrl-C must never land inside a Ray call: it is raised at the top of the loop.
        with deferred_interrupts():
            yield from self._dispatch(candidates, cutoff, self._reference_ref if verify else None, return_outputs)

    def _dispatch(self, candidates, cutoff, reference, return_outputs):
        flight = _Flight(self, candidates, cutoff, reference, return_outputs)
        try:
            while flight.busy():
                check_interrupt()
                if self.group.cluster.stopping is not None:  # another thread was interrupted
                    raise self.group.cluster.stopping
                flight.start_builds()
                flight.start_runs()
                pending = [*flight.building, *flight.running]
                if not pending:
                    continue  # every runner is lent to another study: try again
                for ref in wait(pending, flight.wait_seconds()):
                    yield from flight.built(ref) if ref in flight.building else flight.ran(ref)
                yield from flight.cancel_overdue_builds()
        finally:  # an interrupt or a closed generator: what is in flight is abandoned, not cancelled
            # (Ray aborts the driver when a task is force-cancelled as it completes). A runner's
            # abandoned call ends on its own, before the next call it is given starts.
            for *_, actor in flight.running.values():
                self.group.release(actor)

    def _wait_for_runner(self):
        while (actor := self.group.acquire(POLL_SECONDS)) is None:
            pass
        return actor


def _build_outcome(ref, limit: float) -> tuple[BuildResult, str]:
    """A finished build task's result; a worker that died twice is the candidate's crash."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return BuildResult(Status.TIMEOUT, reason=f"compile exceeded {limit:g} s"), "ray"
    except ray.exceptions.RayTaskError as err:  # a Python error inside the builder
        return BuildResult(Status.APPLY_ERROR, reason=str(err.cause)[:400]), "ray"
    except ray.exceptions.RayError as err:  # the worker died again after Ray's retry
        return BuildResult(Status.CRASH, reason=f"while compiling: {type(err).__name__}: {err}"[:400]), "ray"


class _Flight:
    """A batch's candidates on their way: queued to build, building (a Ray task each, with its
    deadline), built and queued to run, and running on a borrowed runner actor."""

    def __init__(self, measurer: RayMeasurer, candidates, cutoff, reference, return_outputs):
        self.m, self.candidates, self.cutoff = measurer, candidates, cutoff
        self.reference, self.return_outputs = reference, return_outputs
        self.to_build = deque(range(len(candidates)))
        self.building: dict = {}  # ref -> (index, deadline)
        self.to_run: deque = deque()  # (index, BuildResult, builder, requeues)
        self.running: dict = {}  # ref -> (index, BuildResult, builder, requeues, actor)
        self.compile_limit, self.run_limit = measurer.limits.compile_limit, measurer.limits.run_limit

    def busy(self) -> bool:
        return bool(self.to_build or self.building or self.to_run or self.running)

    def start_builds(self) -> None:
        from .nodes import build_candidate

        while self.to_build and len(self.building) < self.m.group.cluster.builders:
            i = self.to_build.popleft()
            ref = build_candidate.remote(self.m.kernel.payload, self.candidates[i].script, self.candidates[i].threads)
            self.building[ref] = (i, time.monotonic() + self.compile_limit)

    def start_runs(self) -> None:
        kernel, limits = self.m.kernel, self.m.limits
        while self.to_run:
            actor = self.m.group.acquire(0.0 if self.building or self.running else POLL_SECONDS)
            if actor is None:
                return
            i, built, builder, requeues = self.to_run.popleft()
            task = RunTask(built.llvm_ir, kernel.func_name, kernel.args, None, kernel.tolerance, seed=self.m.seed,
                           min_time=limits.min_time,
                           max_time=limits.timing_limit if limits.max_timing is not None else self.run_limit / 2,
                           return_outputs=self.return_outputs, cutoff=self.cutoff, cold=kernel.cold_cache)
            self.running[actor.run.remote(task, self.reference, self.run_limit)] = (i, built, builder, requeues, actor)

    def wait_seconds(self) -> float:
        """Short while built candidates wait for a runner (then look at the stop flag), and never
        past the next build's deadline."""
        timeout = POLL_SECONDS if self.to_run else SLICE_SECONDS
        next_deadline = min((d for _, d in self.building.values()), default=None)
        if next_deadline is not None:
            timeout = max(0.0, min(timeout, next_deadline - time.monotonic()))
        return timeout

    def built(self, ref) -> Iterator[tuple[int, Measurement]]:
        i, _ = self.building.pop(ref)
        built, builder = _build_outcome(ref, self.compile_limit)
        if built.status is Status.OK:
            self.to_run.append((i, built, builder, 0))
        else:
            yield i, Measurement(built.status, reason=built.reason, build_seconds=built.seconds,
                                 extra={"builder": builder})

    def ran(self, ref) -> Iterator[tuple[int, Measurement]]:
        import ray

        i, built, builder, requeues, actor = self.running.pop(ref)
        group = self.m.group
        try:
            m = get(ref)
        except ray.exceptions.RayActorError:  # the runner died, not the candidate's doing
            group.lost(actor)
            if requeues + 1 < MAX_REQUEUES:
                group.cluster.counts["requeued"] += 1
                self.to_run.appendleft((i, built, builder, requeues + 1))
                return
            m = Measurement(Status.CRASH, reason=f"its runner died {MAX_REQUEUES} times")
        else:
            group.release(actor)
        m.build_seconds = built.seconds
        m.extra["builder"] = builder
        group.cluster.counts["measured"] += 1
        yield i, m

    def cancel_overdue_builds(self) -> Iterator[tuple[int, Measurement]]:
        import ray

        now = time.monotonic()
        for ref, (i, deadline) in list(self.building.items()):
            if deadline <= now:
                ray.cancel(ref, force=True)
                del self.building[ref]
                yield i, Measurement(Status.TIMEOUT, reason=f"compile exceeded {self.compile_limit:g} s")
