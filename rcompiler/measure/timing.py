"""Timing loop shared by JIT candidates and NumPy baselines."""
from __future__ import annotations

import statistics
import time
from typing import Callable

from .results import Timing


def time_call(fn: Callable[[], object], min_time: float = 0.2, min_repeats: int = 3,
              max_repeats: int = 10_000, max_time: float | None = None) -> Timing:
    """Call `fn` once to warm up, then repeatedly until `min_time` seconds and
    `min_repeats` calls have accumulated; per-call times give min and median."""
    fn()
    times: list[float] = []
    total = 0.0
    limit = max_time if max_time is not None else max(10 * min_time, 5.0)
    while len(times) < max_repeats and (total < min_time or len(times) < min_repeats):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        total += elapsed
        if total > limit and len(times) >= 1:
            break
    return Timing(min=min(times), median=statistics.median(times), repeats=len(times))
