"""Measure candidates in isolated, killable worker processes.

The builder (apply script, lower) and the runner (JIT, verify, time) are
separate single-worker pools pinned to different cores, so the next
candidates compile while one is timed, and timing never shares its core with
our own work. Multi-threaded candidates need every core: they are timed only
while the builder is idle. A worker that crashes or exceeds its time limit is
replaced and the candidate recorded with that status.
"""
from __future__ import annotations

import os
import signal
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
from pebble import ProcessExpired, ProcessPool

from rcompiler.kernels.base import Kernel
from rcompiler.lifetime import die_with_parent

from .builder import build
from .results import BuildResult, Measurement, Status
from .runner import RunTask, run, run_numpy
from .spawn import worker_context


class WorkerPoolError(RuntimeError):
    """The worker processes cannot run at all: no candidate's fault, so not a result."""


def _pool_error(err: BrokenProcessPool) -> WorkerPoolError:
    return WorkerPoolError(f"rcompiler's worker processes could not start or keep running ({err})")


@dataclass(frozen=True)
class Candidate:
    script: str | None  # transform IR; None is the naive lowering
    threads: int = 1


# Before the naive build has been timed, nothing is known about the kernel's size.
UNFITTED_SECONDS = 600.0


@dataclass
class Limits:
    """Time limits per candidate; None means fitted to the kernel (see `fitted`)."""

    compile_seconds: float | None = None
    run_seconds: float | None = None
    min_time: float = 0.2  # seconds of repeated runs per timing
    max_timing: float | None = None  # at most this many seconds of them (None: half the run limit)

    @property
    def compile_limit(self) -> float:
        return self.compile_seconds or UNFITTED_SECONDS

    @property
    def run_limit(self) -> float:
        return self.run_seconds or UNFITTED_SECONDS

    @property
    def timing_limit(self) -> float:
        return self.max_timing if self.max_timing is not None else self.run_limit / 2

    def fitted(self, naive_build: float | None, naive_run: float | None) -> "Limits":
        """Limits that scale with the work, from how long the naive lowering took to build, and
        to JIT, verify and time. Scheduled code is bigger than the naive loops (tiles unroll
        into vectors) and may take many times longer, but not without bound. A limit the user
        set is kept."""
        def fit(fixed: float | None, measured: float | None, factor: float) -> float | None:
            if fixed or not measured:
                return fixed
            return min(UNFITTED_SECONDS, max(60.0, factor * measured))

        return Limits(fit(self.compile_seconds, naive_build, 40), fit(self.run_seconds, naive_run, 10),
                      self.min_time, self.max_timing)


def init_worker(cpus: set[int] | None, parent_pid: int) -> None:
    # A worker stuck in LLVM never runs a Python signal handler: the kernel kills it with the run.
    die_with_parent(parent_pid)
    # Workers never use BLAS threads; keep their math libraries single-threaded.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"worker killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return f"worker exited with code {exitcode}"


class MeasurerBase:
    """What every measurer shares: the reference outputs and the single-candidate calls.
    A subclass measures many candidates (`measure_many`) where its workers are."""

    kernel: Kernel
    seed: int
    _reference: list[np.ndarray] | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def reference(self) -> list[np.ndarray]:
        """Expected outputs: NumPy for built-ins, the naive lowering for user kernels."""
        if self._reference is None:
            if self.kernel.reference is not None:
                self._reference = self.kernel.reference(self.kernel.make_inputs(self.seed))
            else:
                naive = self.measure(Candidate(None), verify=False, return_outputs=True)
                if not naive.ok:
                    raise RuntimeError(f"the kernel does not run without transforms: {naive.reason}")
                self._reference = naive.extra.pop("outputs")
        return self._reference

    def use_reference(self, outputs: list[np.ndarray]) -> None:
        """Verify against these outputs (another kernel's, computing the same) instead of
        computing them again."""
        self._reference = outputs

    def measure_naive(self) -> Measurement:
        return self.measure(Candidate(None))  # no cutoff: baselines are timed in full

    def measure(self, candidate: Candidate, cutoff: float | None = None, **options) -> Measurement:
        return next(iter(self.measure_many([candidate], cutoff, **options)))[1]

    def measure_many(self, candidates: Iterable[Candidate], cutoff: float | None = None, *, verify: bool = True,
                     return_outputs: bool = False) -> Iterator[tuple[int, Measurement]]:
        raise NotImplementedError


class Measurer(MeasurerBase):
    """Compile, verify and time candidates of one kernel; errors are results."""

    def __init__(self, kernel: Kernel, limits: Limits | None = None, seed: int = 0):
        self.kernel = kernel
        self.limits = limits or Limits()
        self.seed = seed
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
        self.all_cpus = set(cpus)
        self.overlap = len(cpus) > 1
        self.builder_cpus = {cpus[0]}
        self.runner_cpus = {cpus[-1]}
        ctx = worker_context()
        self._builder = ProcessPool(max_workers=1, max_tasks=200, context=ctx,
                                    initializer=init_worker, initargs=(self.builder_cpus, os.getpid()))
        self._runner = ProcessPool(max_workers=1, max_tasks=200, context=ctx,
                                   initializer=init_worker, initargs=(self.runner_cpus, os.getpid()))
        self._runner_all = None  # created on demand for multi-threaded candidates

    # -- lifecycle ---------------------------------------------------------
    def close(self) -> None:
        for pool in (self._builder, self._runner, self._runner_all):
            if pool is not None:
                pool.stop()
                pool.join()

    # -- baselines -----------------------------------------------------------
    def measure_numpy(self) -> Measurement | None:
        """NumPy's single-threaded time for matmul-like kernels, in the runner's process."""
        from rcompiler.kernels.library import NUMPY_BASELINES

        if self.kernel.kind not in NUMPY_BASELINES:
            return None
        future = self._runner.schedule(run_numpy, args=(self.kernel.kind, self.kernel.args, self.seed,
                                                        self.limits.min_time), timeout=self.limits.run_limit)
        return collect_run(future, self.limits.run_limit)

    def measure_peak(self) -> float:
        """Single-core f32 FMA peak in GFLOP/s, probed on the runner's core."""
        from rcompiler.hardware import measure_fma_peak

        return self._runner.schedule(measure_fma_peak, timeout=self.limits.run_limit).result()

    # -- candidates --------------------------------------------------------
    def measure_many(self, candidates: Iterable[Candidate], cutoff: float | None = None, *, verify: bool = True,
                     return_outputs: bool = False) -> Iterator[tuple[int, Measurement]]:
        """Yield (index, measurement) as each finishes; builds overlap with timing.
        Candidates whose first run is slower than `cutoff` seconds are timed once."""
        candidates = list(candidates)
        reference = self.reference() if verify else None
        window = len(candidates) if self.overlap else 1
        builds: dict[int, object] = {}
        next_build = 0
        deferred: list[tuple[int, BuildResult]] = []
        runs: list[tuple[int, BuildResult, object]] = []

        def submit_builds(upto: int) -> None:
            nonlocal next_build
            while next_build < min(upto, len(candidates)):
                builds[next_build] = self._schedule_build(candidates[next_build])
                next_build += 1

        def finished_runs() -> Iterator[tuple[int, Measurement]]:
            for item in [r for r in runs if r[2].done()]:
                runs.remove(item)
                yield item[0], self._finish_run(item[1], item[2])

        for i, cand in enumerate(candidates):
            submit_builds(i + window)
            build_future = builds.pop(i)
            while not build_future.done():  # hand over timed candidates while this one compiles
                wait([build_future, *(f for _, _, f in runs)], return_when=FIRST_COMPLETED)
                yield from finished_runs()
            built = collect_build(build_future, self.limits.compile_limit)
            if built.status is not Status.OK:
                yield i, Measurement(built.status, reason=built.reason, build_seconds=built.seconds)
                continue
            if cand.threads > 1 and self.overlap:
                deferred.append((i, built))
                continue
            future = self._schedule_run(built, cand, reference, return_outputs, cutoff)
            if self.overlap:
                runs.append((i, built, future))
                yield from finished_runs()
            else:
                yield i, self._finish_run(built, future)
        for j, b, f in runs:
            yield j, self._finish_run(b, f)
        for j, b in deferred:  # the builder is idle now: every core is ours
            yield j, self._finish_run(b, self._schedule_run(b, candidates[j], reference, return_outputs, cutoff))

    # -- internals ---------------------------------------------------------
    def _schedule_build(self, cand: Candidate):
        return self._builder.schedule(build, args=(self.kernel.payload, cand.script, cand.threads),
                                      timeout=self.limits.compile_limit)

    def _schedule_run(self, built: BuildResult, cand: Candidate, reference, return_outputs: bool = False,
                      cutoff: float | None = None):
        task = RunTask(built.llvm_ir, self.kernel.func_name, self.kernel.args, reference, self.kernel.tolerance,
                       seed=self.seed, min_time=self.limits.min_time, max_time=self.limits.timing_limit,
                       threads=cand.threads, return_outputs=return_outputs, cutoff=cutoff, cold=self.kernel.cold_cache)
        pool = self._runner
        if cand.threads > 1:
            if self._runner_all is None:
                # max_tasks: threaded engines are never freed (see rcompiler.jit), so recycle often
                self._runner_all = ProcessPool(max_workers=1, max_tasks=16,
                                               context=worker_context(),
                                               initializer=init_worker, initargs=(self.all_cpus, os.getpid()))
            pool = self._runner_all
        return pool.schedule(run, args=(task,), timeout=self.limits.run_limit)

    def _finish_run(self, built: BuildResult, future) -> Measurement:
        result = collect_run(future, self.limits.run_limit)
        result.build_seconds = built.seconds
        return result


def collect_build(future, limit: float) -> BuildResult:
    """A build future's outcome; a time limit or a dead worker is the candidate's result."""
    return _collect(future, limit, BuildResult, "compile", "while compiling", Status.APPLY_ERROR)


def collect_run(future, limit: float) -> Measurement:
    """A run future's outcome, as collect_build."""
    return _collect(future, limit, Measurement, "run", "while running", Status.JIT_ERROR)


def _collect(future, limit: float, result, stage: str, during: str, unexpected: Status):
    try:
        return future.result()
    except FutureTimeout:
        return result(Status.TIMEOUT, reason=f"{stage} exceeded {limit:g} s")
    except ProcessExpired as err:
        return result(Status.CRASH, reason=f"{during}: " + _death_reason(err.exitcode))
    except BrokenProcessPool as err:
        raise _pool_error(err) from None
    except Exception as err:  # noqa: BLE001 - an unexpected worker bug is still one candidate's result
        return result(unexpected, reason=f"{type(err).__name__}: {err}"[:400])


class LocalRunners:
    """The default backend (rcompiler.measure.backend.Backend): this machine, one builder and one
    runner process per study."""

    parallelism = 0  # candidates in flight: as many as the strategy asks for at once
    parallel_tasks = 1  # a module's tasks are tuned one at a time

    @property
    def hardware(self):
        from rcompiler.hardware import detect

        return detect()

    def measurer(self, kernel: Kernel, limits: Limits | None = None, seed: int = 0) -> Measurer:
        return Measurer(kernel, limits, seed)

    def progress(self) -> str:
        return ""

    def interrupt(self, stop: BaseException) -> None:
        pass  # one study at a time, in this thread: the interrupt is already where it must be

    def stats(self) -> dict:
        return {}
