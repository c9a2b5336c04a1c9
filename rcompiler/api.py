"""The Python API: tune a kernel, compile a module under a schedule, fetch the best known schedule."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from rcompiler.kernels import KERNELS, Kernel, KernelError, get_kernel, kernel_from_mlir
from rcompiler.transforms import Schedule


InputShapes = Mapping[str, Sequence[int]]


def as_kernel(module_or_kernel, shape: Sequence[int] | str | None = None, input_shapes: InputShapes | None = None
              ) -> Kernel:
    """A Kernel from a Kernel, a built-in name (with shape), MLIR text, a .mlir path, an .onnx path (with
    `input_shapes` {name: dims} for its dynamic inputs) or an mlir.ir.Module."""
    x = module_or_kernel
    if input_shapes and not _is_path(x):
        raise KernelError("input_shapes apply to ONNX models (a .onnx path)")
    if isinstance(x, Kernel):
        return x
    if isinstance(x, str) and x in KERNELS:
        return get_kernel(x, shape)
    if _is_path(x):
        return kernel_from_mlir(_read(Path(x), input_shapes), name=Path(x).stem)
    if isinstance(x, str):
        return kernel_from_mlir(x)
    if hasattr(x, "operation"):  # an mlir.ir.Module
        return kernel_from_mlir(str(x))
    raise TypeError(f"cannot make a kernel from {type(x).__name__}")


def _is_path(x) -> bool:
    return isinstance(x, Path) or (isinstance(x, str) and x.endswith((".mlir", ".onnx")) and "\n" not in x)


def _read(path: Path, input_shapes: InputShapes | None = None) -> str:
    from rcompiler.cli_common import read_module

    return read_module(path, input_shapes)


def import_onnx(path: str | Path, input_shapes: InputShapes | None = None) -> str:
    """Linalg-on-tensors MLIR text for an ONNX model (needs the onnx extra); `input_shapes`
    ({name: dims}) fixes inputs with dynamic dims, e.g. {"x": (1, 3, 224, 224)}."""
    from rcompiler.onnx_import import import_onnx as run_import

    return run_import(path, input_shapes=input_shapes)


def as_program(module, func: str | None = None, input_shapes: InputShapes | None = None):
    """A built-in model block, MLIR text, a .mlir or .onnx path (with `input_shapes` for its
    dynamic inputs) or an mlir.ir.Module, split into tasks (read once); None for a built-in
    kernel or a Kernel."""
    from rcompiler.kernels.models import MODELS
    from rcompiler.kernels.module import load_program

    if input_shapes and not _is_path(module):
        raise KernelError("input_shapes apply to ONNX models (a .onnx path)")
    if isinstance(module, str) and module in MODELS:
        return load_program(MODELS[module].build(), name=module)
    if isinstance(module, Kernel) or (isinstance(module, str) and module in KERNELS):
        return None
    if _is_path(module):
        return load_program(_read(Path(module), input_shapes), func, name=Path(module).stem)
    if isinstance(module, str) or hasattr(module, "operation"):
        return load_program(str(module), func)
    return None


def tune(module_or_kernel, budget: int = 32, strategy: str = "mcts", proposer: str = "heuristic", *,
         shape=None, func: str | None = None, seed: int = 0, threads: int = 1, db: str | Path = "runs/tuning.db",
         out: str | Path | None = None, time_budget: float | None = None, min_time: float = 0.2,
         llm: dict | None = None, cluster=None, input_shapes: InputShapes | None = None):
    """Tune a kernel, or a whole module task by task.

    A kernel gives a TuneResult (best schedule, its script, times, history); a module whose
    entry function splits into several tasks (or a built-in model block) gives a
    ModuleResult (per-task results, the composed program's script, end-to-end times).
    With `out`, also writes best.mlir, report.json and a plot there (and payload.mlir
    for a module). `cluster`: build and time on a Ray cluster, given as an address (see
    rcompiler.cluster.connect) or a connected rcompiler.cluster.Cluster (or one of its groups).
    `input_shapes` ({name: dims}) gives an ONNX model's dynamic inputs static shapes."""
    from rcompiler import report
    from rcompiler.db import Database
    from rcompiler.lifetime import interruptible
    from rcompiler.measure import Limits
    from rcompiler.search.module_tuner import ModuleTuner
    from rcompiler.search.tuner import TuneConfig, Tuner

    program = as_program(module_or_kernel, func, input_shapes) if shape is None else None
    kernel = program.original if program is not None else None
    if program is not None and len(program.tasks) < 2:
        program = None  # one task: tune the function as a kernel
    config = TuneConfig(strategy, proposer, budget, seed, threads, time_budget,
                        limits=Limits(min_time=min_time), llm=llm or {})
    database = Database(db)
    connected = None
    try:
        backend = cluster
        if isinstance(cluster, str):
            from rcompiler.cluster import connect

            backend = connected = connect(cluster)
        if hasattr(backend, "group"):
            backend = backend.group()
        with interruptible():  # Ctrl-C ends the run with what it measured (result.stopped says so)
            if program is not None:
                result = ModuleTuner(program, config, database, backend=backend).run()
            else:
                result = Tuner(kernel or as_kernel(module_or_kernel, shape, input_shapes), config, database,
                               backend=backend).run()
    finally:
        database.close()
        if connected is not None:
            connected.close()
    if out is not None:
        (report.write_module if program is not None else report.write)(result, out)
    return result


class CompiledKernel:
    """A payload compiled under a script: call it with the input arrays, get the outputs."""

    def __init__(self, kernel: Kernel, script: str | None, threads: int = 1, schedule: Schedule | None = None):
        from rcompiler.jit import JitFunction
        from rcompiler.measure.builder import build

        built = build(kernel.payload, script, threads)
        if built.llvm_ir is None:
            raise RuntimeError(f"compilation failed ({built.status.value}): {built.reason}")
        self.kernel, self.schedule = kernel, schedule
        self._fn = JitFunction(built.llvm_ir, kernel.func_name, threads=threads)

    def __call__(self, *inputs: np.ndarray):
        specs = self.kernel.inputs
        if len(inputs) != len(specs):
            raise ValueError(f"{self.kernel.label} takes {len(specs)} input(s), got {len(inputs)}")
        from rcompiler.kernels.base import param_array

        arrays, it = [], iter(inputs)
        for spec in self.kernel.args:
            if spec.is_output:
                arrays.append(np.empty(spec.shape, dtype=spec.dtype))
                continue
            if spec.is_param:
                arrays.append(param_array(spec))
                continue
            a = np.ascontiguousarray(next(it), dtype=spec.dtype)
            if a.shape != spec.shape:
                raise ValueError(f"input {spec.name} must have shape {spec.shape}, got {a.shape}")
            if spec.bound is not None and a.size and (a.min() < -spec.bound or a.max() >= spec.bound):
                # an index outside the table it selects from would read outside its memory
                raise ValueError(f"input {spec.name} indexes a dimension of size {spec.bound}: its values must be "
                                 f"in [{-spec.bound}, {spec.bound}), got [{a.min()}, {a.max()}]")
            arrays.append(a)
        self._fn(*arrays)
        outs = [a for a, spec in zip(arrays, self.kernel.args) if spec.is_output]
        return outs[0] if len(outs) == 1 else tuple(outs)


def compile(module_or_kernel, schedule=None, *, shape=None, threads: int = 1,  # noqa: A001
            input_shapes: InputShapes | None = None) -> CompiledKernel:
    """Compile in this process (use what tuning verified): a kernel under a Schedule (or its
    JSON), or a module under its ModuleResult (the whole program, NumPy in, NumPy out)."""
    from rcompiler.search.module_tuner import ModuleResult
    from rcompiler.transforms import render

    if isinstance(schedule, ModuleResult):
        return CompiledKernel(schedule.program.kernel, schedule.best_script, threads)
    if isinstance(schedule, list):
        schedule = Schedule.from_json(schedule)
    kernel = as_kernel(module_or_kernel, shape, input_shapes)
    script = render(schedule, kernel).text if schedule is not None and schedule.steps else None
    return CompiledKernel(kernel, script, threads, schedule)


def apply_best(module_or_kernel, db: str | Path = "runs/tuning.db", *, shape=None,
               input_shapes: InputShapes | None = None) -> Schedule | None:
    """The fastest verified schedule the database knows for this kernel on this machine."""
    from rcompiler.db import Database
    from rcompiler.hardware import detect

    kernel = as_kernel(module_or_kernel, shape, input_shapes)
    database = Database(db)
    try:
        found = database.best(kernel.fingerprint, detect().fingerprint)
    finally:
        database.close()
    return Schedule.from_json(found[0]) if found else None
