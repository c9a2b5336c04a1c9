"""Faults on demand inside the workers, for the fault-injection tests.

RCOMPILER_FAULT="STAGE:KIND[:N]" makes the Nth and later calls of STAGE
(`build` or `run`) fail as KIND:
- `hang`: sleep in native code with SIGTERM blocked, as a worker stuck in LLVM
  does: no Python signal handler ever runs, only SIGKILL ends it;
- `segv`: a segmentation fault.
Calls are counted across processes in the file RCOMPILER_FAULT_LOG (one line
per call, which also tells a test when the fault fired); without it every call
counts as the first. Unset, this costs one dictionary look-up.
"""
from __future__ import annotations

import ctypes
import os
import signal


def inject(stage: str) -> None:
    spec = os.environ.get("RCOMPILER_FAULT")
    if not spec:
        return
    where, kind, *nth = spec.split(":")
    if where != stage:
        return
    calls = 1
    log = os.environ.get("RCOMPILER_FAULT_LOG")
    if log:
        with open(log, "a+") as f:
            f.seek(0)
            calls = 1 + sum(line.startswith(stage) for line in f)
            f.write(f"{stage} {os.getpid()}\n")
    if calls < int(nth[0] if nth else 1):
        return
    if kind == "hang":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        ctypes.CDLL(None).sleep(1_000_000)
    elif kind == "segv":
        ctypes.string_at(0)
    else:
        raise ValueError(f"RCOMPILER_FAULT: unknown fault kind {kind!r}")
