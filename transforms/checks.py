"""Run-time checks: a frontend's `cf.assert` (an index in bounds, a divisor not zero) as a call
that reports the failure instead of aborting the process.

MLIR lowers `cf.assert` to `abort()`: in a server that ends every request in flight. Before
lowering, each assert becomes `scf.if (not cond) { rcompiler_check_failed(id) }`, and the
messages are kept on the module (`rcompiler.checks`, by id). Whoever runs the code provides
`rcompiler_check_failed` (rcompiler.jit records the id, and the call raises CheckFailed with
the message once the function returns).
"""
from __future__ import annotations

from rcompiler.kernels.structure import walk

CHECK_FAILED = "rcompiler_check_failed"
MESSAGES = "rcompiler.checks"  # module attribute: the messages, indexed by id


def lower_checks(module) -> tuple[str, ...]:
    """Rewrite every `cf.assert` in `module` (in place); returns the messages by id."""
    from mlir import ir
    from mlir.dialects import arith, func, scf

    asserts = [op for op in walk(module.operation) if op.name == "cf.assert"]
    if not asserts:
        return ()
    messages: list[str] = []
    i32, i1 = ir.IntegerType.get_signless(32), ir.IntegerType.get_signless(1)
    with ir.InsertionPoint.at_block_begin(module.body):
        decl = func.FuncOp(CHECK_FAILED, ir.FunctionType.get([i32], []), visibility="private")
        decl.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
    for op in asserts:
        message = ir.StringAttr(op.attributes["msg"]).value
        if message not in messages:
            messages.append(message)
        with ir.InsertionPoint(op), op.location:
            failed = arith.xori(op.operands[0], arith.constant(i1, 1))
            branch = scf.IfOp(failed)
            with ir.InsertionPoint(branch.then_block):
                func.call([], ir.FlatSymbolRefAttr.get(CHECK_FAILED), [arith.constant(i32, messages.index(message))])
                scf.yield_([])
        op.erase()
    module.operation.attributes[MESSAGES] = ir.ArrayAttr.get([ir.StringAttr.get(m) for m in messages])
    return tuple(messages)


def check_messages(module) -> tuple[str, ...]:
    """The messages `lower_checks` left on a module (also after lowering to LLVM)."""
    from mlir import ir

    if MESSAGES not in module.operation.attributes:
        return ()
    return tuple(ir.StringAttr(a).value for a in ir.ArrayAttr(module.operation.attributes[MESSAGES]))
