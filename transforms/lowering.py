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


# A program of outlined tasks (kernels/module.py) keeps each task a function of its own, called
# with its output buffers (no buffer returned, so deallocation stays inside each function), and
# LLVM does not inline them: the program compiles each distinct task once (twelve BERT layers
# call the same functions), where one inlined function made LLVM's scheduler take minutes.
# A task that returns its argument (one that writes into a padded tensor's interior) returns nothing.
PROGRAM_BUFFERIZE = ("one-shot-bufferize{bufferize-function-boundaries=true "
                     "function-boundary-type-conversion=identity-layout-map},"
                     "canonicalize,drop-equivalent-buffer-results,buffer-results-to-out-params{hoist-static-allocs=true}")


def lowering_pipeline(threads: int = 1, program: bool = False) -> str:
    """The pass pipeline from a transformed payload to the LLVM dialect (`program`: a module of
    outlined tasks, kept apart)."""
    front, back = _stages(threads, program)
    return "builtin.module(" + ",".join(front + back) + ")"


def _stages(threads: int, program: bool) -> tuple[list[str], list[str]]:
    """The passes before and after the point where memrefs of i1 are widened (byte_flags.py)."""
    # Inline first: a module's tasks bufferize as one function, so a task's tensor argument read
    # at random (a gather's table, passed through a reshape) needs no layout cast at the call.
    front = (["symbol-dce", PROGRAM_BUFFERIZE] if program else ["inline,symbol-dce", BUFFERIZE]) + [DEALLOCATE,
                                                                                                CLEANUP]
    back = [PARALLEL.format(threads=threads) if threads > 1 else "scf-forall-to-for", TO_LLVM]
    return front, back


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

    from .buffer_lifetimes import shorten_lifetimes
    from .byte_flags import widen_flag_memrefs
    from .checks import lower_checks
    from .fast_math import approximate_math

    program = is_program(module)
    with collect_diagnostics(ir, "lower"):
        lower_checks(module)  # a failed cf.assert reports to the caller instead of aborting the process
        approximate_math(module)  # before exp, erf and tanh become one libm call per lane
        front, back = _stages(threads, program)
        passmanager.PassManager.parse("builtin.module(" + ",".join(front) + ")").run(module.operation)
        widen_flag_memrefs(module)  # deallocation's ownership flags, when buffers cross calls
        if program:
            _align_allocations(ir, module)
            shorten_lifetimes(module)  # an intermediate's memory is reused while still in the cache
        passmanager.PassManager.parse("builtin.module(" + ",".join(back) + ")").run(module.operation)
        if program:
            from rcompiler.kernels.module import TASK_PREFIX

            for op in module.body.operations:
                if op.operation.name == "llvm.func" and op.attributes["sym_name"].value.startswith(TASK_PREFIX):
                    op.attributes["passthrough"] = ir.ArrayAttr.get([ir.StringAttr.get("noinline")])


def _align_allocations(ir, module) -> None:
    """Buffers a program allocates for its tasks' outputs (buffer-results-to-out-params writes them
    without an alignment) start on a cache line, as each task's own do: a vector row of a buffer
    that malloc placed 16 bytes into a line spans two lines (bert_ffn ran 2-4% slower)."""
    from rcompiler.kernels.structure import walk

    for op in walk(module.operation):
        if op.name == "memref.alloc" and "alignment" not in op.attributes:
            op.attributes["alignment"] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), 64)


def is_program(module) -> bool:
    """Whether `module` holds outlined tasks besides its entry function."""
    from rcompiler.kernels.module import TASK_PREFIX

    return any(op.operation.name == "func.func" and op.attributes["sym_name"].value.startswith(TASK_PREFIX)
               for op in module.body.operations)
