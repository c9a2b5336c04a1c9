"""Applying a transform script to a payload and lowering the result to the LLVM dialect.

One documented pipeline, used after every script (and alone for the naive baseline):
bufferize what is still on tensors, free what is allocated, clean up, lower
vector/linalg/scf/memref to LLVM. `convert-ub-to-llvm` is required: the vectorizer leaves `ub.poison`.
Multi-threaded schedules (scf.forall) go through MLIR's async runtime. Before the passes,
f32 `math.exp`, `math.erf` and `math.tanh` become arithmetic that vectorizes (`fast_math.py`), and a
frontend's `cf.assert` becomes a check that reports to the caller (`checks.py`).
"""
from __future__ import annotations

from contextlib import contextmanager

BUFFERIZE = "one-shot-bufferize{bufferize-function-boundaries=false}"
# Buffers allocated inside a call (a task's results, temporaries) are freed: a kernel is
# called thousands of times while it is timed.
DEALLOCATE = ("ownership-based-buffer-deallocation,canonicalize,buffer-deallocation-simplification,"
              "bufferization-lower-deallocations")
CLEANUP = "canonicalize,cse,fold-memref-alias-ops,expand-strided-metadata,canonicalize"
PARALLEL = ("scf-forall-to-parallel,async-parallel-for{{async-dispatch=false num-workers={threads} min-task-size=1}},"
            "async-to-async-runtime,async-runtime-ref-counting,async-runtime-ref-counting-opt,convert-async-to-llvm")
TO_LLVM = ("convert-vector-to-scf{full-unroll=true},convert-linalg-to-loops,lower-affine,"
           "finalize-memref-to-llvm,convert-scf-to-cf,convert-vector-to-llvm,convert-math-to-llvm,convert-math-to-libm,"
           "convert-ub-to-llvm,convert-to-llvm,reconcile-unrealized-casts,canonicalize,cse")


def lowering_pipeline(threads: int = 1) -> str:
    """The pass pipeline from a transformed payload to the LLVM dialect."""
    # Inline first: a module's tasks bufferize as one function, so a task's tensor argument read
    # at random (a gather's table, passed through a reshape) needs no layout cast at the call.
    stages = ["inline,symbol-dce", BUFFERIZE, DEALLOCATE, CLEANUP]
    if threads > 1:
        stages.append(PARALLEL.format(threads=threads))
    else:
        stages.append("scf-forall-to-for")
    stages.append(TO_LLVM)
    return "builtin.module(" + ",".join(stages) + ")"


class MLIRFailure(Exception):
    """A step of compilation failed; `diagnostics` holds MLIR's messages."""

    def __init__(self, stage: str, diagnostics: list[str], fallback: str = ""):
        self.stage = stage
        self.diagnostics = diagnostics or [fallback.strip()]
        super().__init__(f"{stage}: " + " | ".join(self.diagnostics[:3]))


@contextmanager
def collect_diagnostics(ir, stage: str):
    """Turn MLIR errors raised in the block into an MLIRFailure with all messages and notes."""
    messages: list[str] = []

    def handler(diag):
        messages.append(_format(diag))
        return True

    h = ir.Context.current.attach_diagnostic_handler(handler)
    try:
        yield messages
    except MLIRFailure:
        raise
    except Exception as err:  # MLIRError from the bindings
        raise MLIRFailure(stage, messages or _error_messages(err), str(err)) from None
    finally:
        h.detach()


def _format(diag) -> str:
    text = f"{diag.message} at {diag.location}"
    notes = [n.message for n in diag.notes]
    return text + ("".join(f" [note: {n}]" for n in notes) if notes else "")


def _error_messages(err) -> list[str]:
    details = getattr(err, "error_diagnostics", None) or []
    out = []
    for d in details:
        out.append(f"{d.message} at {d.location}" + "".join(f" [note: {n.message}]" for n in d.notes))
    return out


def apply_script(module, script: str) -> None:
    """Apply the `@__transform_main` sequence of `script` to `module` in place."""
    from mlir import ir
    from mlir.dialects.transform import interpreter

    with collect_diagnostics(ir, "parse-script"):
        transform_module = ir.Module.parse(script)
    entry = None
    for op in transform_module.body.operations:
        if "sym_name" in op.attributes and op.attributes["sym_name"].value == "__transform_main":
            entry = op
    if entry is None:
        raise MLIRFailure("parse-script", ["the script has no @__transform_main named sequence"])
    with collect_diagnostics(ir, "apply"):
        interpreter.apply_named_sequence(module, entry, transform_module)
    with collect_diagnostics(ir, "apply"):
        module.operation.verify()


def lower_to_llvm(module, threads: int = 1) -> None:
    from mlir import ir, passmanager

    from .checks import lower_checks
    from .fast_math import approximate_math

    with collect_diagnostics(ir, "lower"):
        lower_checks(module)  # a failed cf.assert reports to the caller instead of aborting the process
        approximate_math(module)  # before exp, erf and tanh become one libm call per lane
        passmanager.PassManager.parse(lowering_pipeline(threads)).run(module.operation)
