"""Helpers shared by the benchmarks: NumPy under each OpenBLAS kernel, interleaved timing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

from rcompiler.kernels.base import Kernel
from rcompiler.measure import Candidate, Measurer
from rcompiler.transforms import Schedule, render

from .peers import ROOT, Peer, time_round

BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# NumPy as the machine's environment sets OpenBLAS, with both variables unset
# (OpenBLAS picks its kernel for the CPU), and forced to the AVX2 Haswell kernel.
BLAS_SETTINGS = {
    "as set": {},
    "unset": {v: None for v in BLAS_VARIABLES},
    "Haswell": {"OPENBLAS_CORETYPE": "Haswell"},
}


def numpy_seconds(kernel: Kernel, setting: str, min_time: float = 0.5) -> tuple[float, str]:
    env = dict(os.environ)
    for key, value in BLAS_SETTINGS[setting].items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    shape = ",".join(str(v) for v in kernel.dims.values())
    out = subprocess.run([sys.executable, "-m", "bench.numpy_probe", kernel.name, shape, str(min_time)],
                         env=env, capture_output=True, text=True, check=True, timeout=600, cwd=ROOT)
    data = json.loads(out.stdout)
    return data["seconds"], ", ".join(data["blas"])


@dataclass
class Timings:
    """What `interleaved` measured, kept apart by kind."""
    seconds: dict[str, float]  # minimum per schedule label, per "numpy (<setting>)" and per peer
    blas: dict[str, str] = field(default_factory=dict)  # "numpy (<setting>)" -> the BLAS kernel that ran
    peers_failed: dict[str, str] = field(default_factory=dict)  # peer -> why it failed when timed


def interleaved(kernel: Kernel, schedules: dict[str, Schedule], measurer: Measurer, rounds: int = 3,
                blas: tuple[str, ...] = (), strict: bool = True, peers: dict[str, Peer] | None = None) -> Timings:
    """Minimum time of each schedule (and NumPy per BLAS setting, and each peer) over rounds
    that alternate between them, so slow drifts of a shared machine hit all alike.
    Not strict: a schedule that fails when re-measured is left out, not fatal. A peer that
    fails when timed is dropped (from `peers` too), with its reason in `peers_failed`."""
    t = Timings({})
    for _ in range(rounds):
        time_round(peers or {}, t.seconds, t.peers_failed)
        for label, schedule in schedules.items():
            m = measurer.measure(Candidate(render(schedule, kernel).text, schedule.threads))
            if not m.ok:
                if strict:
                    raise AssertionError(f"{label} failed: {m.reason}")
                continue
            t.seconds[label] = min(t.seconds.get(label, float("inf")), m.seconds)
        for setting in blas:
            seconds, used = numpy_seconds(kernel, setting)
            key = f"numpy ({setting})"
            t.seconds[key] = min(t.seconds.get(key, float("inf")), seconds)
            t.blas[key] = used
    return t


def peak_gflops(measurer: Measurer, rounds: int = 3) -> float:
    """The best of a few FMA probes (the probe's own spread is large on a shared machine)."""
    return max(measurer.measure_peak() for _ in range(rounds))
