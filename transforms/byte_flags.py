"""Memrefs of i1 as memrefs of i8, just before they are lowered to LLVM.

MLIR 22's MemRefToLLVM cannot lower a store into a memref of i1 (it asserts on element
types under 8 bits). Deallocation makes such memrefs when buffers cross function calls:
`bufferization-lower-deallocations` passes the ownership flags of several buffers to a helper
in memrefs of i1. Here every memref of i1 becomes one of i8: stores widen their flag, loads
narrow it again, and functions and calls take the new types.
"""
from __future__ import annotations

from rcompiler.kernels.structure import walk


def widen_flag_memrefs(module) -> bool:
    """Rewrite the module's memrefs of i1 as memrefs of i8, in place; whether there were any."""
    from mlir import ir
    from mlir.dialects import arith

    i1, i8 = ir.IntegerType.get_signless(1), ir.IntegerType.get_signless(8)

    def widened(t):
        if isinstance(t, ir.MemRefType) and ir.MemRefType(t).element_type == i1:
            m = ir.MemRefType(t)
            return ir.MemRefType.get(m.shape, i8, m.layout, m.memory_space)
        return t

    ops = list(walk(module.operation))
    if not any(widened(v.type) != v.type for op in ops for v in [*op.operands, *op.results]):
        return False
    for op in ops:
        if op.name == "func.func":
            ftype = ir.FunctionType(ir.TypeAttr(op.attributes["function_type"]).value)
            op.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(
                [widened(t) for t in ftype.inputs], [widened(t) for t in ftype.results]))
            if op.regions[0].blocks:
                for a in op.regions[0].blocks[0].arguments:
                    a.set_type(widened(a.type))
            continue
        for region in op.regions:  # loop-carried memrefs
            for block in region.blocks:
                for a in block.arguments:
                    a.set_type(widened(a.type))
        if op.name == "memref.store" and op.operands[0].type == i1:
            with ir.InsertionPoint(op), op.location:
                op.operands[0] = arith.extui(i8, op.operands[0])
        for r in op.results:
            r.set_type(widened(r.type))
        if op.name == "memref.load" and op.results[0].type == i1:  # from a memref widened above
            value = op.results[0]
            value.set_type(i8)
            with _after(ir, op), op.location:
                flag = arith.trunci(i1, value)
            value.replace_all_uses_except(flag, flag.owner.operation)
    return True


def _after(ir, op):
    block = op.operation.block
    ops = list(block.operations)
    index = next(i for i, o in enumerate(ops) if o.operation == op.operation)
    return ir.InsertionPoint(ops[index + 1])
