"""Calls into Ray that an interrupt can never land inside.

Ray's core worker shuts down when an exception is raised inside one of its native calls, so
the driver waits in slices and Ctrl-C is raised between them (lifetime.deferred_interrupts).
"""
from __future__ import annotations

import time

SLICE_SECONDS = 0.25  # the longest Ray call: an interrupt is raised between calls, never inside one


def wait(refs: list, timeout: float | None = None, stop=lambda: False) -> list:
    """The first of `refs` to finish, [] when none does within `timeout` seconds (or `stop()`);
    Ctrl-C waits for the slice in progress to end."""
    import ray

    from rcompiler.lifetime import deferred_interrupts

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = SLICE_SECONDS if deadline is None else min(SLICE_SECONDS, max(0.0, deadline - time.monotonic()))
        with deferred_interrupts():
            done, _ = ray.wait(refs, num_returns=1, timeout=left)
        if done or stop() or (deadline is not None and time.monotonic() >= deadline):
            return done


def get(ref, timeout: float | None = None, stop=lambda: False):
    """ray.get of one ref, waited for in slices (see `wait`); TimeoutError when not ready in time."""
    import ray

    from rcompiler.lifetime import deferred_interrupts

    if not wait([ref], timeout, stop):
        raise TimeoutError(f"no answer within {timeout:g} s" if timeout is not None else "stopped")
    with deferred_interrupts():
        return ray.get(ref)
