"""Builder role: apply a transform script and lower to LLVM IR (runs in a worker process)."""
from __future__ import annotations

import time

from .faults import inject as inject_fault
from .results import BuildResult, Status


def short_reason(diagnostics: list[str], limit: int = 400) -> str:
    """The first diagnostics on one line, short enough for a report or an LLM prompt."""
    text = " | ".join(d.replace("\n", " ") for d in diagnostics[:3])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def build(payload: str, script: str | None, threads: int = 1) -> BuildResult:
    from mlir import ir

    from rcompiler.transforms.lowering import MLIRFailure, apply_script, lower_to_llvm

    start = time.perf_counter()
    inject_fault("build")
    with ir.Context(), ir.Location.unknown():
        module = ir.Module.parse(payload)
        try:
            if script:
                apply_script(module, script)
        except MLIRFailure as failure:
            return BuildResult(Status.APPLY_ERROR, reason=short_reason(failure.diagnostics),
                               seconds=time.perf_counter() - start)
        try:
            lower_to_llvm(module, threads)
        except MLIRFailure as failure:
            return BuildResult(Status.LOWER_ERROR, reason=short_reason(failure.diagnostics),
                               seconds=time.perf_counter() - start)
        return BuildResult(Status.OK, llvm_ir=str(module), seconds=time.perf_counter() - start)
