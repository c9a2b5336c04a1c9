"""Speed targets, as ratios measured in one run: `pytest bench/ --benchmark-only -s`.

- matmul 1024^3 f32, one core: a schedule in the vocabulary, found by a sweep here,
  reaches 75% of the measured FMA peak; its ratio to NumPy is reported under each
  OpenBLAS kernel;
- conv2d 1x58x58x64 -> 64 (56x56 output), 3x3: 75% of peak;
- two threads run matmul 1024^3 at least 1.9x as fast as the best single-thread schedule;
- `rcompiler.tune` with budget 64 on matmul 1024^3 reaches 60% of peak.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import rcompiler
from rcompiler.db import Database
from rcompiler.kernels import get_kernel
from rcompiler.measure import Candidate, Limits, Measurer
from rcompiler.search.tuner import TuneConfig, Tuner
from rcompiler.hardware import detect
from rcompiler.search.heuristic import register_tiles
from rcompiler.transforms import Decompose, Hoist, Pack, Parallel, Peel, Schedule, Tile, Vectorize, check, render

from . import peers
from .common import interleaved, peak_gflops

RESULTS = Path(__file__).resolve().parent.parent / "results"


def record(name: str, data: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    print(f"\n{name}: " + json.dumps(data))


def matmul_sweep(kernel) -> list[Schedule]:
    """A plain grid: the host's four best register tiles x cache tiles, k innermost in registers,
    with B as it is and packed into vector-wide panels."""
    M, N = kernel.dims["M"], kernel.dims["N"]
    lanes = detect().f32_lanes
    register = register_tiles(detect(), M, N)[:4]
    cache = [(64, 256, 256), (128, 256, 256), (32, 512, 256), (64, 512, 128), (128, 128, 512), (256, 256, 128)]
    out = []
    for (mr, nr), (mc, nc, kc) in itertools.product(register, cache):
        mc = mc if mc % mr == 0 else M
        nc = nc if nc % nr == 0 else N
        peel = [Peel()] if mc % mr or nc % nr else []
        for s in (Schedule.of([Tile((mc, nc, kc), (0, 2, 1)), Tile((mr, nr, 1)), Vectorize(), Hoist(), *peel]),
                  Schedule.of([Pack((0, lanes, 0)), Tile((mc, nc // lanes, kc, 0), (0, 2, 1, 3)),
                               Tile((mr, nr // lanes, 1, lanes)), Vectorize(), Hoist(), *peel])):
            if check(s, kernel) is None and s not in out:
                out.append(s)
    return out


def conv_sweep(kernel) -> list[Schedule]:
    out = []
    for wr, fr, kw, cr in itertools.product((4, 7, 8, 14), (16, 32, 64), (0, 1), (1, 2, 4)):
        s = Schedule.of([Tile((1, 1, wr, fr, 1, kw, cr)), Decompose(), Vectorize(), Hoist()])
        if check(s, kernel) is None:
            out.append(s)
    return out


def sweep(kernel, schedules, measurer, keep=3):
    timed = []
    scripts = [Candidate(render(s, kernel).text) for s in schedules]
    for i, m in measurer.measure_many(scripts):
        if m.ok:
            timed.append((m.seconds, schedules[i]))
    timed.sort(key=lambda t: t[0])
    return [s for _, s in timed[:keep]]


def timed_call(benchmark, kernel, schedule, threads=1):
    """pytest-benchmark times the tuned kernel itself, called in-process."""
    fn = rcompiler.compile(kernel, schedule, threads=threads)
    inputs = [a for a, spec in zip(kernel.make_inputs(0), kernel.args) if not spec.is_output]
    benchmark.pedantic(fn, args=tuple(inputs), rounds=10, iterations=1, warmup_rounds=1)


def test_matmul_1024_reaches_75_percent_of_peak(benchmark):
    kernel = get_kernel("matmul", (1024, 1024, 1024))
    with Measurer(kernel, Limits(min_time=0.1)) as m:
        peak = peak_gflops(m)
        top = sweep(kernel, matmul_sweep(kernel), m)
        timed = interleaved(kernel, {str(s): s for s in top}, m, rounds=3, blas=("as set", "unset", "Haswell"))
        final = timed.seconds
        peak = max(peak, peak_gflops(m))
    best_label = min((k for k in final if not k.startswith("numpy")), key=final.get)
    gflops = kernel.flops / final[best_label] / 1e9
    data = {"peak_gflops": peak, "best_gflops": gflops, "fraction_of_peak": gflops / peak, "schedule": best_label,
            **{f"speed_vs_{k}": final[k] / final[best_label] for k in final if k.startswith("numpy")},
            "numpy_kernels": timed.blas}
    record("matmul_1024", data)
    benchmark.extra_info.update(data)
    timed_call(benchmark, kernel, top[0])
    assert gflops >= 0.75 * peak, data


def test_conv2d_56x56_reaches_75_percent_of_peak(benchmark):
    kernel = get_kernel("conv2d", (1, 58, 58, 64, 64, 3, 3))
    with Measurer(kernel, Limits(min_time=0.1)) as m:
        peak = peak_gflops(m)
        top = sweep(kernel, conv_sweep(kernel), m)
        final = interleaved(kernel, {str(s): s for s in top}, m, rounds=3).seconds
        peak = max(peak, peak_gflops(m))
    best_label = min(final, key=final.get)
    gflops = kernel.flops / final[best_label] / 1e9
    data = {"peak_gflops": peak, "best_gflops": gflops, "fraction_of_peak": gflops / peak, "schedule": best_label}
    record("conv2d_56", data)
    benchmark.extra_info.update(data)
    timed_call(benchmark, kernel, top[0])
    assert gflops >= 0.75 * peak, data


def test_two_threads_are_19x_the_best_single_thread_matmul_1024(benchmark, tmp_path):
    """Also times PyTorch and IREE on the same two cores, for the record (no target on them)."""
    kernel = get_kernel("matmul", (1024, 1024, 1024))
    others, skipped = peers.prepare_all({"PyTorch eager (2 threads)": lambda: peers.torch_kernel(kernel, threads=2),
                                         "IREE (2 threads)": lambda: peers.iree_kernel(kernel, tmp_path, threads=2)})
    with Measurer(kernel, Limits(min_time=0.1)) as m:
        single = sweep(kernel, matmul_sweep(kernel), m, keep=1)[0]
        parallel = [s for s in (single.then(Parallel(2, loop)) for loop in (0, 1)) if check(s, kernel) is None]
        timed = interleaved(kernel, {"single": single, **{f"parallel{i}": p for i, p in enumerate(parallel)}},
                            m, rounds=3, peers=others)
        final = timed.seconds
    best_parallel = min(v for k, v in final.items() if k.startswith("parallel"))
    data = {"single_thread": str(single), "single_seconds": final["single"], "two_thread_seconds": best_parallel,
            "speedup": final["single"] / best_parallel,
            "two_thread_gflops": {"rcompiler": kernel.flops / best_parallel / 1e9,
                                  **{k: kernel.flops / final[k] / 1e9 for k in others if k in final}},
            "peers_skipped": {**skipped, **timed.peers_failed}}
    record("matmul_1024_threads", data)
    benchmark.extra_info.update(data)
    timed_call(benchmark, kernel, parallel[0], threads=2)
    assert final["single"] / best_parallel >= 1.9, data  # issue 10: at least 1.9x on two cores


def test_tune_budget_64_reaches_60_percent_of_peak(benchmark, tmp_path):
    kernel = get_kernel("matmul", (1024, 1024, 1024))
    result = {}

    def tune():
        db = Database(tmp_path / "tune.db")
        result["r"] = Tuner(kernel, TuneConfig(budget=64), db).run()

    benchmark.pedantic(tune, rounds=1, iterations=1)
    r = result["r"]
    with Measurer(kernel, Limits(min_time=0.1)) as m:
        peak = peak_gflops(m)
        final = interleaved(kernel, {"best": r.best.schedule}, m, rounds=3).seconds
    gflops = kernel.flops / final["best"] / 1e9
    data = {"peak_gflops": peak, "best_gflops": gflops, "fraction_of_peak": gflops / peak,
            "schedule": str(r.best.schedule), "best_sample": r.best.seq + 1, "samples": len(r.samples)}
    record("tune_matmul_1024_budget64", data)
    benchmark.extra_info.update(data)
    assert len(r.samples) == 64 and gflops >= 0.6 * peak, data
