"""Module targets, as ratios measured in one run: `pytest bench/test_modules.py --benchmark-only -s`.

Each built-in model block (kernels/models.py) is tuned task by task with budget 128 on
one thread; its composed program is then re-timed end to end in rounds interleaved
with the peers on the same computation: PyTorch eager and torch.compile on the CPU,
and IREE's default llvm-cpu compile of the very same Linalg. Targets (issue 9): at
least as fast as PyTorch eager, and faster than IREE. Results land in
results/modules_<block>.json with the per-task split.
"""
from __future__ import annotations

import pytest

from rcompiler.db import Database
from rcompiler.kernels.models import MODELS
from rcompiler.kernels.module import load_program
from rcompiler.measure import Candidate, Limits, Measurer
from rcompiler.search.module_tuner import ModuleTuner, compose
from rcompiler.search.tuner import TuneConfig

from . import peers
from .common import peak_gflops
from .test_targets import record

BUDGET = 128


@pytest.mark.parametrize("model", sorted(MODELS))
def test_model_block_against_peers(model, benchmark, tmp_path):
    program = load_program(MODELS[model].build(), name=model)
    held = {}

    def tune():
        held["r"] = ModuleTuner(program, TuneConfig(budget=BUDGET), Database(tmp_path / "t.db")).run()

    benchmark.pedantic(tune, rounds=1, iterations=1)
    result = held["r"]
    assert result.best is not None, result.dropped
    script = compose(program, result.parts).text
    others, skipped = peers.prepare_all({
        "IREE": lambda: peers.iree_peer(program.source, program.original.func_name, program.original.inputs,
                                        tmp_path / "iree"),
        "PyTorch eager": lambda: peers.torch_peer(model, {}),
        "torch.compile": lambda: peers.torch_peer(model, {}, compiled=True)})
    times: dict[str, float] = {}
    with Measurer(program.original, Limits(min_time=0.2)) as original:
        reference = original.reference()
    with Measurer(program.kernel, Limits(min_time=0.5)) as m:
        m.use_reference(reference)
        peak = peak_gflops(m, rounds=2)
        for _ in range(3):  # rounds alternate, so a slow drift of a shared machine hits all alike
            ours = m.measure(Candidate(script))
            assert ours.ok, ours.reason
            times["rcompiler"] = min(times.get("rcompiler", float("inf")), ours.seconds)
            peers.time_round(others, times, skipped)
    versions = {**skipped, **{name: peer.version for name, peer in others.items()}}
    flops = program.kernel.flops
    data = {"block": model, "budget": BUDGET, "samples": result.samples, "tuning_seconds": result.wall_seconds,
            "peak_gflops": peak, "gflops": {k: flops / v / 1e9 for k, v in times.items()},
            "fraction_of_peak": {k: flops / v / 1e9 / peak for k, v in times.items()},
            "rcompiler_vs": {k: v / times["rcompiler"] for k, v in times.items() if k != "rcompiler"},
            "versions": versions,
            "tasks": [{"task": o.task.kernel.label, "weight": o.weight, "samples": len(o.result.samples),
                       "naive_seconds": o.result.naive_seconds, "best_seconds": o.best.seconds if o.best else None,
                       "best": str(o.best.schedule) if o.best else None} for o in result.tasks]}
    record(f"modules_{model}", data)
    benchmark.extra_info.update(data)
    if "PyTorch eager" in times:
        assert times["rcompiler"] <= times["PyTorch eager"], data
    if "IREE" in times:
        assert times["rcompiler"] < times["IREE"], data
