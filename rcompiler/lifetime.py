"""Every process of a run lives and dies with the run.

Workers and the local LLM server ask the kernel to SIGKILL them when the
process that started them dies (PR_SET_PDEATHSIG): that holds whatever native
code they are in, and even when the main process is killed with SIGKILL. They
ignore the terminal's SIGINT, which the main process handles for them.

In the main process, the first SIGINT or SIGTERM raises `Interrupted` so the
run winds up: it stops its workers and writes what it measured. A second one
ends the process at once (the workers go with it).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The user (SIGINT) or a job scheduler (SIGTERM) asked the run to stop.

    A BaseException, like KeyboardInterrupt: code that turns a candidate's errors
    into results (`except Exception`) must never record an interrupt as one."""

    def __init__(self, signum: int):
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process ended by that signal


def die_with_parent(parent_pid: int) -> None:
    """In a child process: be killed when `parent_pid` dies, and leave SIGINT to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def child_preexec(parent_pid: int, cpus: set[int] | None = None):
    """A `preexec_fn` for subprocess.Popen: die with the parent, optionally pinned to `cpus`."""
    def setup() -> None:
        die_with_parent(parent_pid)
        if cpus and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cpus)
    return setup


@contextlib.contextmanager
def interruptible():
    """Within the block, the first SIGINT/SIGTERM raises Interrupted; a second exits at once.

    Only the main thread can own signal handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def at_once(signum, frame):
        os._exit(128 + signum)

    def wind_up(signum, frame):
        global _pending
        for s in STOP_SIGNALS:
            signal.signal(s, at_once)
        print(f"\nrcompiler: {signal.Signals(signum).name}: stopping; what was measured is kept "
              "(again to stop at once)", file=sys.stderr)
        if getattr(_deferring, "depth", 0):  # the main thread is in native code that must not be interrupted
            _pending = Interrupted(signum)
            return
        raise Interrupted(signum)

    for s in STOP_SIGNALS:
        signal.signal(s, wind_up)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


_deferring = threading.local()
_pending: Interrupted | None = None


@contextlib.contextmanager
def deferred_interrupts():
    """Within the block, an interrupt waits for `check_interrupt()` (or the block's end) to be
    raised: for libraries whose native calls break when an exception is raised inside them
    (Ray's core worker shuts down). Code in the block must call native code in short slices."""
    _deferring.depth = getattr(_deferring, "depth", 0) + 1
    try:
        yield
    finally:
        _deferring.depth -= 1
    check_interrupt()


def check_interrupt() -> None:
    """Raise the interrupt that arrived in a `deferred_interrupts` block, if one did."""
    global _pending
    if _pending is not None:
        pending, _pending = _pending, None
        raise pending
