"""Worker processes spawned without re-running the caller's script.

A spawned process normally imports the parent's `__main__` first (multiprocessing does
that so that functions defined there can be unpickled). A user's script that calls
`rcompiler.tune(...)` at top level, without `if __name__ == "__main__":`, would then tune
again inside every worker, which multiprocessing refuses ("All workers expired"). The
workers only ever run rcompiler's own functions, so they are started with the main module
hidden: they import nothing of the caller's, and they start sooner.
"""
from __future__ import annotations

import multiprocessing
import sys
import threading

_SPAWN = multiprocessing.get_context("spawn")
_HIDING = threading.Lock()  # the main module is changed while a worker starts: one at a time


class WorkerProcess(_SPAWN.Process):
    def start(self) -> None:
        main = sys.modules["__main__"]
        with _HIDING:
            saved_file, saved_spec = main.__dict__.pop("__file__", None), getattr(main, "__spec__", None)
            main.__spec__ = None  # multiprocessing reads both to decide what the child imports
            try:
                super().start()
            finally:
                main.__spec__ = saved_spec
                if saved_file is not None:
                    main.__file__ = saved_file


class WorkerContext(type(_SPAWN)):
    Process = WorkerProcess


def worker_context() -> WorkerContext:
    """A spawn context (never fork a process that holds LLVM state) whose processes skip `__main__`."""
    return WorkerContext()
