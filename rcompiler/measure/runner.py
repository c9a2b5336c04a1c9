"""Runner role: JIT the LLVM IR, check it against the reference, time it (in a worker process)."""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np

from rcompiler.kernels.base import ArgSpec, make_arrays

from .faults import inject as inject_fault
from .results import Measurement, Status, Timing
from .timing import time_call


@dataclass
class RunTask:
    llvm_ir: str
    func_name: str
    args: tuple[ArgSpec, ...]
    reference: list[np.ndarray] | None  # expected outputs; None: just return outputs
    tolerance: float
    seed: int = 0
    min_time: float = 0.2
    max_time: float = 10.0
    threads: int = 1
    return_outputs: bool = False
    cutoff: float | None = None  # stop timing early when slower than this (seconds)
    cold: bool = False  # time with inputs that are not in the cache (see `input_sets`)


def max_relative_error(outputs: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """Max |out - ref| over max |ref| (at least 1) where the reference is finite. A value that is
    not finite counts as infinitely wrong unless the reference has the very same value there
    (a task's test inputs can take a square root below zero, as the reference does too)."""
    worst = 0.0
    for out, ref in zip(outputs, reference):
        out64, ref64 = out.astype(np.float64), np.asarray(ref, dtype=np.float64)
        finite = np.isfinite(ref64)
        if not np.all(finite):
            same = (np.isnan(out64) & np.isnan(ref64)) | (out64 == ref64)
            if not np.all(same[~finite]):
                return float("inf")
        if not np.all(np.isfinite(out64[finite])):
            return float("inf")
        if not finite.any():
            continue
        scale = max(1.0, float(np.max(np.abs(ref64[finite]))))
        worst = max(worst, float(np.max(np.abs(out64[finite] - ref64[finite]))) / scale)
    return worst


def input_sets(task: RunTask, most: int = 64) -> int:
    """How many copies of the inputs to take turns with while timing. One for a kernel on its
    own (its data stays in the cache from call to call, as in a benchmark loop). For a cold
    task, one of a program whose data does not fit the last-level cache, enough copies that
    each call finds its inputs out of the cache, as it will in the program."""
    if not task.cold:
        return 1
    from rcompiler.hardware import detect

    in_bytes = sum(a.nbytes for a in task.args if not a.is_output)
    return max(1, min(most, -(-2 * detect().l3_bytes // max(1, in_bytes))))


def run(task: RunTask) -> Measurement:
    from rcompiler.jit import CheckFailed, JitFunction

    start = time.perf_counter()
    inject_fault("run")
    try:
        fn = JitFunction(task.llvm_ir, task.func_name, threads=task.threads)
    except Exception as err:  # noqa: BLE001 - any LLVM failure is a result, not a crash
        return Measurement(Status.JIT_ERROR, reason=str(err).splitlines()[0][:400],
                           run_seconds=time.perf_counter() - start)
    arrays = make_arrays(task.args, task.seed)
    call = fn.bind(arrays)
    first_start = time.perf_counter()
    try:
        call()
    except CheckFailed as failed:  # on the test inputs: nothing the outputs say can be trusted
        return Measurement(Status.WRONG_RESULT, reason=str(failed), run_seconds=time.perf_counter() - start)
    first = time.perf_counter() - first_start
    outputs = [a for a, spec in zip(arrays, task.args) if spec.is_output]
    error = None
    if task.reference is not None:
        error = max_relative_error(outputs, task.reference)
        if not error <= task.tolerance:
            return Measurement(Status.WRONG_RESULT, max_error=error,
                               reason=f"max relative error {error:.3g} exceeds tolerance {task.tolerance:.3g}",
                               run_seconds=time.perf_counter() - start)
    extra = {"outputs": [o.copy() for o in outputs]} if task.return_outputs else {}
    if task.cutoff is not None and first > task.cutoff:
        # Clearly slower than the best: the verified run's own time is enough.
        timing = Timing(min=first, median=first, repeats=1)
    else:
        calls = [call] + [fn.bind(make_arrays(task.args, task.seed + j)) for j in range(1, input_sets(task))]
        turn = itertools.count()
        timing = time_call(lambda: calls[next(turn) % len(calls)](), min_time=task.min_time, max_time=task.max_time)
        if len(calls) > 1:
            extra["input_sets"] = len(calls)
    return Measurement(Status.OK, timing=timing, max_error=error,
                       run_seconds=time.perf_counter() - start, extra=extra)


def run_numpy(kind: str, args: tuple[ArgSpec, ...], seed: int = 0, min_time: float = 0.2) -> Measurement:
    """Time the single-threaded NumPy (BLAS) version of a matmul-like kernel."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from rcompiler.kernels.library import NUMPY_BASELINES

    arrays = make_arrays(args, seed)
    fn = NUMPY_BASELINES[kind]
    with threadpool_limits(limits=1):
        timing = time_call(lambda: fn(arrays), min_time=min_time)
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    return Measurement(Status.OK, timing=timing, extra={"blas": blas})
