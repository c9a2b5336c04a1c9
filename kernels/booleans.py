"""Boolean tensors stored as bytes.

Frontends build masks as tensors of i1 (a causal mask, `input_ids < 0`). MLIR 22 cannot
lower a store into a memref of i1 (MemRefToLLVM asserts on element types under 8 bits),
and a vector of i1 is stored bit-packed while a scalar is not. So every i1 tensor in the
module becomes an i8 tensor holding 0 or 1 (NumPy's bool layout): Linalg bodies truncate
what they read back to i1 and widen what they yield, `tensor.extract` results are
truncated, constants are rewritten, and functions take and return i8 where they had i1.
"""
from __future__ import annotations

from .structure import walk

from .base import KernelError

MOVES = {"linalg.fill", "linalg.copy", "linalg.transpose", "linalg.broadcast"}  # their bodies yield what they read


def widen_booleans(module) -> None:
    """Rewrite every i1 tensor of `module` as i8, in place."""
    from mlir import ir

    i1, i8 = ir.IntegerType.get_signless(1), ir.IntegerType.get_signless(8)

    def widened(t):
        if isinstance(t, ir.RankedTensorType) and ir.RankedTensorType(t).element_type == i1:
            return ir.RankedTensorType.get(ir.RankedTensorType(t).shape, i8)
        return t

    for op in list(walk(module.operation)):  # listed first: the rewrite inserts ops
        name = op.name
        if name == "func.func":
            _widen_signature(ir, op, widened)
        elif name == "arith.constant" and widened(op.results[0].type) != op.results[0].type:
            _widen_constant(ir, op, widened, i8)
        elif name.startswith("linalg.") and name not in ("linalg.yield", "linalg.index"):
            _widen_linalg(ir, op, widened, i1, i8)
        elif name == "tensor.extract" and op.results[0].type == i1:  # from a tensor widened before
            _truncate_after(ir, op.results[0], i1, i8)
        else:
            for r in op.results:
                r.set_type(widened(r.type))


def _widen_signature(ir, func, widened) -> None:
    ftype = ir.FunctionType(ir.TypeAttr(func.attributes["function_type"]).value)
    inputs, results = [widened(t) for t in ftype.inputs], [widened(t) for t in ftype.results]
    func.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(inputs, results))
    if func.regions[0].blocks:
        for a in func.regions[0].blocks[0].arguments:
            a.set_type(widened(a.type))


def _widen_constant(ir, op, widened, i8) -> None:
    import numpy as np

    attr = ir.DenseElementsAttr(op.attributes["value"])
    shape = ir.RankedTensorType(attr.type).shape
    if attr.is_splat:
        values = np.full(shape, bool(ir.BoolAttr(attr.get_splat_value()).value), dtype=np.int8)
    else:
        bits = ir.DenseIntElementsAttr(attr)
        values = np.array([bool(bits[i]) for i in range(len(bits))], dtype=np.int8).reshape(shape)
    op.attributes["value"] = ir.DenseElementsAttr.get(values, type=i8)
    op.results[0].set_type(widened(op.results[0].type))


def _widen_linalg(ir, op, widened, i1, i8) -> None:
    """Operands were widened before this op is reached (program order): a block argument still
    of i1 for an i8 tensor operand reads a byte, and an i1 result becomes a byte tensor."""
    def is_bytes(v):
        return isinstance(v.type, ir.RankedTensorType) and ir.RankedTensorType(v.type).element_type == i8

    block = op.regions[0].blocks[0] if op.regions else None
    reads = [(o, a) for o, a in zip(op.operands, block.arguments) if is_bytes(o) and a.type == i1] if block else []
    writes = [r for r in op.results if widened(r.type) != r.type]
    if not reads and not writes:
        return
    if op.name in MOVES:
        return _widen_move(ir, op, block, widened, i1, i8)
    if op.name != "linalg.generic":
        raise KernelError(f"{op.name} on a boolean tensor is not supported yet (linalg.generic, "
                          f"{', '.join(sorted(MOVES))} are)")
    for _, arg in reads:
        arg.set_type(i8)
        _truncate_at_start(ir, block, arg, i1)
    for r in writes:
        r.set_type(widened(r.type))
    yield_op = block.operations[len(block.operations) - 1]
    with ir.InsertionPoint(yield_op), yield_op.location:
        from mlir.dialects import arith

        for n, (value, result) in enumerate(zip(list(yield_op.operands), op.results)):
            if value.type == i1 and is_bytes(result):
                yield_op.operands[n] = arith.extui(i8, value)


def _widen_move(ir, op, block, widened, i1, i8) -> None:
    """An op that only moves values (its body yields what it reads) moves bytes instead; a
    fill's scalar is widened first."""
    from mlir.dialects import arith

    for n, operand in enumerate(list(op.operands)):
        if operand.type == i1:
            with ir.InsertionPoint(op), op.location:
                op.operands[n] = arith.extui(i8, operand)
    for arg in block.arguments:
        if arg.type == i1:
            arg.set_type(i8)
    for r in op.results:
        r.set_type(widened(r.type))


def _truncate_at_start(ir, block, arg, i1) -> None:
    from mlir.dialects import arith

    if not any(True for _ in arg.uses):
        return
    with ir.InsertionPoint.at_block_begin(block), arg.location:
        bit = arith.trunci(i1, arg)
    arg.replace_all_uses_except(bit, bit.owner.operation)


def _truncate_after(ir, value, i1, i8) -> None:
    from mlir.dialects import arith

    owner = value.owner
    value.set_type(i8)
    with _after(ir, owner), owner.location:
        bit = arith.trunci(i1, value)
    value.replace_all_uses_except(bit, bit.owner.operation)


def _after(ir, op):
    """An insertion point right after `op`."""
    block = op.operation.block
    ops = list(block.operations)
    index = next(i for i, o in enumerate(ops) if o.operation == op.operation)
    return ir.InsertionPoint(ops[index + 1]) if index + 1 < len(ops) else ir.InsertionPoint(block)
