"""Measure candidates on a Ray cluster: builds are Ray tasks, timings go to runner actors.

Builds run wherever a CPU is free; each built candidate is timed by the next free
runner of the study's hardware. A build past its time limit is cancelled (its
worker killed); a runner that dies mid-candidate is replaced and the candidate
timed again on another, so a lost node costs only time.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Iterable, Iterator

from rcompiler.lifetime import check_interrupt, deferred_interrupts
from rcompiler.measure.measurer import Candidate, Limits, MeasurerBase
from rcompiler.measure.results import BuildResult, Measurement, Status
from rcompiler.measure.runner import RunTask

from .driver import SLICE_SECONDS, RunnerGroup, get, wait

MAX_REQUEUES = 2  # a candidate whose runner dies this often is the candidate's crash
POLL_SECONDS = 0.2  # how often to look for a free runner when the group's are all lent out


class RayMeasurer(MeasurerBase):
    def __init__(self, group: RunnerGroup, kernel, limits: Limits | None = None, seed: int = 0):
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
        import ray

        from .nodes import build_candidate

        to_build = deque(range(len(candidates)))
        building: dict = {}  # ref -> (index, deadline)
        to_run: deque = deque()  # (index, BuildResult, builder, requeues)
        running: dict = {}  # ref -> (index, BuildResult, builder, requeues, actor)
        compile_limit, run_limit = self.limits.compile_limit, self.limits.run_limit
        try:
            while to_build or building or to_run or running:
                check_interrupt()
                if self.group.cluster.stopping is not None:  # another thread was interrupted
                    raise self.group.cluster.stopping
                while to_build and len(building) < self.group.cluster.builders:
                    i = to_build.popleft()
                    ref = build_candidate.remote(self.kernel.payload, candidates[i].script, candidates[i].threads)
                    building[ref] = (i, time.monotonic() + compile_limit)
                while to_run:
                    actor = self.group.acquire(0.0 if building or running else POLL_SECONDS)
                    if actor is None:
                        break
                    i, built, builder, requeues = to_run.popleft()
                    task = RunTask(built.llvm_ir, self.kernel.func_name, self.kernel.args, None, self.kernel.tolerance,
                                   seed=self.seed, min_time=self.limits.min_time, max_time=self.limits.timing_limit if self.limits.max_timing is not None else run_limit / 2,
                                   return_outputs=return_outputs, cutoff=cutoff, cold=self.kernel.cold_cache)
                    running[actor.run.remote(task, reference, run_limit)] = (i, built, builder, requeues, actor)
                pending = [*building, *running]
                if not pending:
                    continue  # every runner is lent to another study: try again
                next_deadline = min((d for _, d in building.values()), default=None)
                timeout = POLL_SECONDS if to_run else SLICE_SECONDS  # short: then look at the stop flag
                if next_deadline is not None:
                    timeout = max(0.0, min(timeout, next_deadline - time.monotonic()))
                for ref in wait(pending, timeout):
                    if ref in building:
                        i, _ = building.pop(ref)
                        built, builder = _build_outcome(ref, compile_limit)
                        if built.status is Status.OK:
                            to_run.append((i, built, builder, 0))
                        else:
                            yield i, Measurement(built.status, reason=built.reason, build_seconds=built.seconds,
                                                 extra={"builder": builder})
                    else:
                        i, built, builder, requeues, actor = running.pop(ref)
                        try:
                            m = get(ref)
                        except ray.exceptions.RayActorError:  # the runner died, not the candidate's doing
                            self.group.lost(actor)
                            if requeues + 1 < MAX_REQUEUES:
                                self.group.cluster.counts["requeued"] += 1
                                to_run.appendleft((i, built, builder, requeues + 1))
                                continue
                            m = Measurement(Status.CRASH, reason=f"its runner died {MAX_REQUEUES} times")
                        else:
                            self.group.release(actor)
                        m.build_seconds = built.seconds
                        m.extra["builder"] = builder
                        self.group.cluster.counts["measured"] += 1
                        yield i, m
                now = time.monotonic()
                for ref, (i, deadline) in list(building.items()):
                    if deadline <= now:
                        ray.cancel(ref, force=True)
                        del building[ref]
                        yield i, Measurement(Status.TIMEOUT, reason=f"compile exceeded {compile_limit:g} s")
        finally:  # an interrupt or a closed generator: what is in flight is abandoned, not cancelled
            # (Ray aborts the driver when a task is force-cancelled as it completes). A runner's
            # abandoned call ends on its own, before the next call it is given starts.
            for *_, actor in running.values():
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
