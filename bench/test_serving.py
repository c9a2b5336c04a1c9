"""Serving (issue 25), as ratios in one run: `pytest bench/test_serving.py --benchmark-only -s`.

For the models of bench/model_zoo.py, the exported library
(rcompiler.export) against the in-process JIT of the same program, timed in interleaved rounds
in this process, and a load test (bench/serving_load.py, a process without MLIR): 1, 2 and 4
client threads calling for a fixed time, beside an ONNX Runtime session under the same load,
every output checked. A model's schedules come from the database its models-table run left
(bench/test_models.py keeps it as <work>/<model>/tuning.db); without one it is skipped.
Targets: the artifact within 2% of the JIT; at every client count throughput >= ONNX Runtime's
and p99 <= ONNX Runtime's. Results: results/serving_<what>.json.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import rcompiler
from rcompiler import runtime
from rcompiler.api import CompiledKernel, as_program

from . import model_zoo
from .peers import ROOT, Skipped, _installed, _taskset
from .test_targets import record

WORK = Path(os.environ.get("RCOMPILER_BENCH_WORK", "/tmp/rcompiler-bench-models"))
CLIENTS = (1, 2, 4)
LOAD_SECONDS = float(os.environ.get("RCOMPILER_BENCH_LOAD_SECONDS", 10))


def _best_of(call, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def _interleaved(calls: dict, rounds: int = 5, repeats: int = 5) -> dict[str, float]:
    for call in calls.values():
        call()  # warm-up
    times: dict[str, float] = {}
    for _ in range(rounds):
        for name, call in calls.items():
            times[name] = min(times.get(name, float("inf")), _best_of(call, repeats))
    return times


def _load_test(library: Path, onnx_path: Path, inputs: dict[str, np.ndarray], work: Path) -> dict:
    npz = work / "serving_inputs.npz"
    np.savez(npz, **inputs)
    spec = {"library": str(library), "onnx": str(onnx_path), "inputs": str(npz), "clients": list(CLIENTS),
            "seconds": LOAD_SECONDS}
    done = subprocess.run([*_taskset(2), sys.executable, "-m", "bench.serving_load", json.dumps(spec)],
                          capture_output=True, text=True, cwd=ROOT, timeout=3600, check=False)
    if done.returncode:
        raise Skipped(f"the load test failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check_targets(data: dict) -> None:
    assert data["seconds"]["rcompiler artifact"] <= 1.02 * data["seconds"]["rcompiler JIT"], data
    load = data.get("load")
    if load is None:
        return
    for clients in map(str, CLIENTS):
        ours, theirs = load["rcompiler artifact"][clients], load["ONNX Runtime"][clients]
        assert ours["wrong"] == 0 and theirs["wrong"] == 0, data
        assert ours["calls_per_second"] >= theirs["calls_per_second"], data
        assert ours["p99_ms"] <= theirs["p99_ms"], data


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("model", ["bert", "gpt2", "resnet18", "mobilenet_v2"])
def test_a_models_artifact_serves_as_fast_as_the_jit_and_onnx_runtime(model, benchmark):
    if not _installed("onnxruntime"):
        pytest.skip("ONNX Runtime is not installed (pip install -e '.[peers]')")
    work = WORK / model
    onnx_path = work / f"{model}.onnx"
    model_zoo.export(model, onnx_path)
    db = work / "tuning.db"
    if not db.exists():
        pytest.skip(f"no tuning database at {db}: run pytest bench/test_models.py -k {model} first")
    held = {}

    def build():
        held["done"] = rcompiler.export(str(onnx_path), work / f"{model}.so", db=db)

    benchmark.pedantic(build, rounds=1, iterations=1)
    done = held["done"]
    program = as_program(str(onnx_path))
    script = done.script
    inputs = model_zoo.inputs(model)
    arrays = list(inputs.values())
    jit = CompiledKernel(program.kernel, script)
    served = runtime.load(done.library)
    assert np.array_equal(served(*arrays), jit(*arrays))
    times = _interleaved({"rcompiler JIT": lambda: jit(*arrays), "rcompiler artifact": lambda: served(*arrays)})
    data = {"model": model, "seconds": times, "artifact_vs_jit": times["rcompiler JIT"] / times["rcompiler artifact"],
            "schedules_from": str(db), "library_mb": done.library.stat().st_size / 2**20,
            "tasks_scheduled": done.metadata["database_entry"]["tasks"]}
    try:
        data["load"] = _load_test(done.library, onnx_path, inputs, work)
    except Skipped as reason:
        data["load_skipped"] = str(reason)
    record(f"serving_{model}", data)
    benchmark.extra_info.update(data)
    _check_targets(data)

