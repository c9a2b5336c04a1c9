"""The measurement harness: verification, timing, and every failure class kept as data."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rcompiler.kernels import get_kernel
from rcompiler.kernels.base import ArgSpec, Kernel
from rcompiler.measure import Candidate, Status

DATA = Path(__file__).parent / "data"


def script(name: str) -> str:
    return (DATA / name).read_text()


def test_tiled_vectorized_script_verifies_and_beats_naive(measure_with):
    m = measure_with(get_kernel("matmul", (256, 256, 256)))
    tuned = m.measure(Candidate(script("tiled_matmul_256.mlir")))
    naive = m.measure_naive()
    assert tuned.ok and naive.ok, (tuned.reason, naive.reason)
    assert tuned.max_error <= m.kernel.tolerance
    assert tuned.timing.repeats >= 3 and tuned.timing.min <= tuned.timing.median
    # A register-tiled, vectorized matmul is tens of times faster than scalar loops;
    # 5x leaves a wide margin for a noisy machine.
    assert naive.seconds / tuned.seconds > 5


def test_numpy_baseline_is_single_threaded_blas(measure_with):
    m = measure_with(get_kernel("matmul", (128, 128, 128)))
    result = m.measure_numpy()
    assert result.ok and result.seconds > 0
    assert result.extra["blas"], "threadpoolctl found no BLAS behind NumPy"
    assert measure_with(get_kernel("conv2d", (1, 10, 10, 4, 4, 3, 3))).measure_numpy() is None


def _boom_kernel(body: list[str]) -> Kernel:
    """A one-op kernel whose payload misbehaves at run time in the given way."""
    spec_a, spec_c = ArgSpec("A", (4,)), ArgSpec("C", (4,), is_output=True)
    text = "\n".join([
        "func.func @boom(%A: memref<4xf32>, %C: memref<4xf32>) attributes {llvm.emit_c_interface} {",
        "  %c0 = arith.constant 0 : index",
        "  %one = arith.constant 1.0 : f32",
        "  linalg.copy ins(%A : memref<4xf32>) outs(%C : memref<4xf32>)",
        *body,
        "  return",
        "}",
    ])
    return Kernel("boom", {"n": 4}, text, "boom", (spec_a, spec_c), 4, 1, ("linalg.copy",),
                  reference=lambda x: [x[0].astype(np.float64)])


SEGFAULT = ["  %far = arith.constant 1099511627776 : index", "  memref.store %one, %C[%far] : memref<4xf32>"]
HANG = ["  %true = arith.constant true",
        "  scf.while : () -> () {", "    scf.condition(%true)", "  } do {",
        "    memref.store %one, %C[%c0] : memref<4xf32>", "    scf.yield", "  }"]


def test_segfault_is_recorded_as_crash(measure_with):
    result = measure_with(_boom_kernel(SEGFAULT)).measure_naive()
    assert result.status is Status.CRASH
    assert "SIGSEGV" in result.reason


def test_hang_is_killed_at_the_time_limit(measure_with):
    result = measure_with(_boom_kernel(HANG), run_seconds=3).measure_naive()
    assert result.status is Status.TIMEOUT
    assert "exceeded 3 s" in result.reason


def test_wrong_result_is_caught():
    # The payload adds one to every element: what a miscompiled schedule looks like.
    kernel = _boom_kernel(["  %c1 = arith.constant 1 : index",
                           "  %v = memref.load %C[%c1] : memref<4xf32>",
                           "  %w = arith.addf %v, %one : f32",
                           "  memref.store %w, %C[%c1] : memref<4xf32>"])
    from rcompiler.measure import Limits, Measurer
    with Measurer(kernel, Limits(min_time=0.01)) as m:
        result = m.measure_naive()
    assert result.status is Status.WRONG_RESULT
    assert result.max_error > kernel.tolerance and "exceeds tolerance" in result.reason


def test_every_failure_class_is_recorded_and_the_batch_goes_on(measure_with):
    m = measure_with(get_kernel("matmul", (64, 64, 64)))
    candidates = [Candidate(script("fails_to_vectorize.mlir")), Candidate(script("fails_to_lower.mlir")),
                  Candidate("this is not MLIR"), Candidate(script("tiled_matmul_256.mlir").replace(
                      "[64, 128, 128]", "[32, 32, 64]"))]
    results = dict(m.measure_many(candidates))
    assert sorted(results) == [0, 1, 2, 3]
    assert results[0].status is Status.APPLY_ERROR and "vectorize" in results[0].reason
    assert results[1].status is Status.LOWER_ERROR and "linalg.pack" in results[1].reason
    assert results[2].status is Status.APPLY_ERROR
    assert results[3].ok, results[3].reason


def test_crash_does_not_lose_the_next_candidate(measure_with):
    """After a worker dies, its replacement measures the next candidate."""
    good = _boom_kernel([])
    bad = replace(good, payload=_boom_kernel(SEGFAULT).payload)
    m = measure_with(bad)
    m._reference = [np.zeros(4)]  # skip the reference run; we only need the crash
    first = m.measure_naive()
    m.kernel = good
    m._reference = None
    second = m.measure_naive()
    assert first.status is Status.CRASH and second.ok


def test_cutoff_times_a_hopeless_candidate_once(measure_with):
    m = measure_with(get_kernel("matmul", (128, 128, 128)))
    slow = m.measure(Candidate(None), cutoff=1e-9)
    assert slow.ok and slow.timing.repeats == 1
    assert m.measure(Candidate(None)).timing.repeats >= 3


def test_a_cold_kernel_is_timed_taking_turns_with_copies_of_its_inputs(measure_with):
    from rcompiler.hardware import detect

    warm = get_kernel("matmul", (128, 128, 128))
    cold = replace(warm, cold_cache=True)
    assert cold.fingerprint != warm.fingerprint  # measured differently: never mixed up in the database
    m = measure_with(cold).measure(Candidate(script("tiled_matmul_256.mlir")))
    # 128 KiB of inputs: enough copies to fill twice the last-level cache, at most 64
    assert m.ok and m.extra["input_sets"] == max(1, min(64, -(-2 * detect().l3_bytes // (2 * 128 * 128 * 4))))
    assert "input_sets" not in measure_with(warm).measure(Candidate(None)).extra


def test_a_program_whose_data_outgrow_the_cache_has_its_tasks_timed_cold():
    from rcompiler.hardware import detect
    from rcompiler.kernels.models import MODELS
    from rcompiler.kernels.module import load_program
    from rcompiler.search.module_tuner import outgrows_cache

    mlp = load_program(MODELS["llama_mlp"].build()).original  # 33 MiB of weights and activations
    assert outgrows_cache(mlp, replace(detect(), l3_bytes=32 << 20))
    assert not outgrows_cache(mlp, replace(detect(), l3_bytes=64 << 20))


def test_threaded_candidates_in_a_row_do_not_crash(measure_with):
    """MLIR's async runtime dies with the first engine that loaded it; the harness must
    survive several multi-threaded candidates in one worker (a real crash, found by bench)."""
    from rcompiler.transforms import Hoist, Parallel, Schedule, Tile, Vectorize, render

    kernel = get_kernel("matmul", (64, 64, 64))
    m = measure_with(kernel)
    schedules = [Schedule.of([Parallel(2, loop), Tile((8, n, 1)), Vectorize(), Hoist()])
                 for loop in (0, 1) for n in (16, 32)]
    results = dict(m.measure_many([Candidate(render(s, kernel).text, 2) for s in schedules]))
    assert all(r.ok for r in results.values()), [r.reason for r in results.values()]


def test_api_compiles_threaded_kernels_twice_in_one_process():
    import rcompiler
    from rcompiler.transforms import Parallel, Schedule, Tile, Vectorize

    a, b = np.random.rand(64, 64).astype(np.float32), np.random.rand(64, 64).astype(np.float32)
    for n in (16, 32):
        fn = rcompiler.compile("matmul", Schedule.of([Parallel(2), Tile((8, n, 1)), Vectorize()]),
                               shape=(64, 64, 64), threads=2)
        np.testing.assert_allclose(fn(a, b), a @ b, rtol=1e-4, atol=1e-4)
        del fn


def test_a_script_without_a_main_guard_and_a_program_on_stdin_both_tune(tmp_path):
    """Spawned workers do not re-run the caller's script (which would tune again in each)."""
    import subprocess
    import sys

    program = (f"import rcompiler\nr = rcompiler.tune('matmul', shape=(32, 32, 32), budget=2, min_time=0.01, "
               f"db={str(tmp_path / 'x.db')!r})\nprint('samples', len(r.samples))\n")
    script = tmp_path / "no_guard.py"
    script.write_text(program)
    for command, stdin in (([sys.executable, str(script)], None), ([sys.executable, "-"], program)):
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.splitlines()[-1] == "samples 2"


def test_measure_command_prints_status_time_gflops_and_baselines():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "rcompiler.measure", "--kernel", "matmul", "--shape", "256,256,256",
                           "--script", str(DATA / "tiled_matmul_256.mlir"), "--min-time", "0.02"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "status     ok" in out
    for label in ("candidate", "naive", "numpy"):
        line = next(l for l in out.splitlines() if l.startswith(label))
        assert " ms " in line and "GFLOP/s" in line, line
    assert "x over naive" in out
    bad = subprocess.run([sys.executable, "-m", "rcompiler.measure", "--kernel", "matmul", "--shape", "8,8",
                          "--script", str(DATA / "tiled_matmul_256.mlir")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: kernel matmul takes shape M,N,K")


def test_verification_agrees_where_the_reference_is_not_finite_too_and_nowhere_else():
    """A task's random inputs can take a LayerNorm's rsqrt below zero: where the naive lowering
    gives NaN, a candidate that gives NaN there agrees; a NaN anywhere else is a wrong result."""
    from rcompiler.measure.runner import max_relative_error

    ref = np.array([1.0, np.nan, np.inf, 2.0])
    assert max_relative_error([np.array([1.0, np.nan, np.inf, 2.0], np.float32)], [ref]) == 0.0
    assert max_relative_error([np.array([1.0, 5.0, np.inf, 2.0], np.float32)], [ref]) == float("inf")
    assert max_relative_error([np.array([1.0, np.nan, np.inf, np.nan], np.float32)], [ref]) == float("inf")
    assert max_relative_error([np.array([1.0, np.nan, np.inf, 2.5], np.float32)], [ref]) == pytest.approx(0.25)
