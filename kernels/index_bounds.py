"""Which integer arguments of a function index tensors, and below what size.

A model fed token ids gathers rows of an embedding table with them (`tensor.extract`
inside a linalg.generic, after casts, a select that wraps negative ids, reshapes). Random
test values would read outside the table, so an integer argument's test values are drawn
below the smallest dimension it indexes. The walk follows the value forward through the ops
that carry an index on (casts, integer add/sub/select, reshapes and slices, Linalg ops into
their bodies and out of their yields); comparisons and conversions to floats end it.
"""
from __future__ import annotations

# Ops whose results carry their integer operands on as indices (or tensors of indices).
CARRIERS = {"arith.index_cast", "arith.index_castui", "arith.extsi", "arith.extui", "arith.trunci", "arith.addi",
            "arith.subi", "arith.select", "arith.remsi", "arith.maxsi", "arith.minsi", "tensor.collapse_shape",
            "tensor.expand_shape", "tensor.extract_slice", "tensor.cast", "tensor.reshape", "tensor.concat"}


def index_bounds(func) -> dict[int, int]:
    """{argument index: smallest size of a dimension it indexes} for the integer arguments of
    `func` (a func.func op) that reach a `tensor.extract` index."""
    from mlir import ir

    bounds = {}
    for i, arg in enumerate(func.regions[0].blocks[0].arguments):
        element = ir.ShapedType(arg.type).element_type if isinstance(arg.type, ir.ShapedType) else arg.type
        if isinstance(element, ir.IntegerType) and ir.IntegerType(element).width > 1:
            sizes = _indexed_sizes(ir, arg)
            if sizes:
                bounds[i] = min(sizes)
    return bounds


def _indexed_sizes(ir, start) -> list[int]:
    sizes, seen, todo = [], set(), [start]
    while todo:
        value = todo.pop()
        if value in seen:
            continue
        seen.add(value)
        for use in value.uses:
            owner, n = use.owner, use.operand_number
            name = owner.name
            if name == "tensor.extract" and n >= 1:
                shape = ir.ShapedType(owner.operands[0].type).shape
                sizes.append(shape[n - 1])
            elif name == "linalg.yield":
                todo.append(owner.parent.results[n])  # out of the body, as the op's result
            elif name.startswith("linalg.") and owner.regions and n < len(owner.regions[0].blocks[0].arguments):
                inputs = _input_count(ir, owner)
                if n < inputs:  # into the body, as the matching block argument
                    todo.append(owner.regions[0].blocks[0].arguments[n])
            elif name in CARRIERS:
                todo.extend(owner.results)
    return sizes


def _input_count(ir, op) -> int:
    if "operandSegmentSizes" in op.attributes:
        return list(ir.DenseI32ArrayAttr(op.attributes["operandSegmentSizes"]))[0]
    return len(op.operands) - len(op.results)
