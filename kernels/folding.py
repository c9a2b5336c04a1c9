"""Constant sub-graphs computed once, when the model is loaded.

Exporters leave work on constants in the graph: a Linear's weight transposed on every call,
position ids built from an iota, a causal mask compared from two iotas, the bounds checks
of a gather over constant indices. Everything in the entry function that depends only on
parameters and constants is computed once, by running that slice of the program (its naive
lowering, in a worker process, like any measurement), and its results replace it: large
ones as new parameters, small ones as constants. A failed check there is the model's error.

Not folded: a value larger than what it is computed from, beyond GROWTH elements (a bias
broadcast to a whole activation, a fill), as IREE does not hoist broadcasts: it would trade
a cheap computation for memory traffic.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .base import KernelError
from .params import HOIST_MIN_ELEMENTS, store

GROWTH = 65536
PARAM = "rcompiler.param"  # argument attribute: the content hash of a parameter's values


def param_digests(func) -> dict[int, str]:
    """{argument index: content hash} for the arguments of `func` that are parameters."""
    from mlir import ir

    if "arg_attrs" not in func.attributes:
        return {}
    out = {}
    for i, attrs in enumerate(ir.ArrayAttr(func.attributes["arg_attrs"])):
        attrs = ir.DictAttr(attrs)
        if PARAM in attrs:
            out[i] = ir.StringAttr(attrs[PARAM]).value
    return out


def mark_params(func, digests: dict[int, str]) -> None:
    """Set the parameter attribute on these arguments (the others get none)."""
    from mlir import ir

    n = len(func.regions[0].blocks[0].arguments)
    func.attributes["arg_attrs"] = ir.ArrayAttr.get([
        ir.DictAttr.get({PARAM: ir.StringAttr.get(digests[i])} if i in digests else {}) for i in range(n)])


def fold_constants(module, func, evaluate: Callable[[str], list[np.ndarray]]) -> int:
    """Fold what depends only on parameters and constants (see the module docstring), in place.
    `evaluate(text)` runs a module's entry function naively and returns its results. Returns
    how many values were folded."""
    from mlir import ir

    block = func.regions[0].blocks[0]
    params = param_digests(func)
    top = list(block.operations)
    position = {hash(op.operation): i for i, op in enumerate(top)}
    constant = {block.arguments[i] for i in params}
    size = {block.arguments[i]: _elements(block.arguments[i].type) for i in params}  # what a value comes from
    is_const = []
    for op in top:
        outside = _operands_from_outside(ir, op)
        c = bool(op.results) and op.name != "func.return" and all(v in constant for v in outside)
        if c:
            source = max([size.get(v, 0) for v in outside], default=0)
            if op.name == "arith.constant" and not _is_splat(ir, op):
                source = _elements(op.results[0].type)
            for r in op.results:
                constant.add(r)
                size[r] = source
        is_const.append(c)
    chosen = []  # (top-level index, result index) of the values to compute now
    for i, op in enumerate(top):
        if not is_const[i] or op.name in ("arith.constant", "tensor.empty"):
            continue
        for j, r in enumerate(op.results):
            used_outside = any(not is_const[position[hash(_top_level(u.owner, func))]] for u in r.uses)
            # computed from stored data (a fill or a splat is not worth a stored copy), and not a blow-up
            if used_outside and size[r] > 0 and _elements(r.type) <= max(GROWTH, size[r]):
                chosen.append((i, j))
    if not chosen:
        return 0
    values = evaluate(_slice(ir, module, func, top, is_const, chosen))
    digests = dict(params)
    for (i, j), value in zip(chosen, values):
        result = top[i].results[j]
        if value.size < HOIST_MIN_ELEMENTS or np.all(value == value.flat[0]):
            with ir.InsertionPoint.at_block_begin(block), result.location:
                from mlir.dialects import arith

                attr = ir.DenseElementsAttr.get(np.ascontiguousarray(value), type=ir.ShapedType(result.type).element_type,
                                                shape=list(value.shape))
                new = arith.ConstantOp(result.type, attr).result
        else:
            new = block.add_argument(result.type, result.location)
            digests[len(block.arguments) - 1] = store(value)
        result.replace_all_uses_with(new)
    for i in reversed(range(len(top))):  # what no longer has a use
        if is_const[i] and not any(any(True for _ in r.uses) for r in top[i].results):
            top[i].operation.erase()
    _drop_unused_params(ir, func, digests)
    return len(chosen)


def _slice(ir, module, func, top, is_const, chosen) -> str:
    """The module with its entry function cut down to the constant slice, returning `chosen`."""
    clone = ir.Module.parse(str(module))
    name = func.attributes["sym_name"].value
    cfunc = next(op for op in clone.body.operations if op.operation.name == "func.func"
                 and op.attributes["sym_name"].value == name)
    ctop = list(cfunc.regions[0].blocks[0].operations)
    from mlir.dialects import func as func_d

    values = [ctop[i].results[j] for i, j in chosen]
    with ir.InsertionPoint(ctop[-1]), ctop[-1].location:
        func_d.ReturnOp(values)
    ctop[-1].operation.erase()
    for i in reversed(range(len(ctop) - 1)):
        if not is_const[i]:
            for r in ctop[i].results:
                if any(True for _ in r.uses):
                    raise KernelError("constant folding: a constant value depends on a non-constant one")
            ctop[i].operation.erase()
    ftype = ir.FunctionType(ir.TypeAttr(cfunc.attributes["function_type"]).value)
    cfunc.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(list(ftype.inputs),
                                                                            [v.type for v in values]))
    return str(clone)


def _drop_unused_params(ir, func, digests: dict[int, str]) -> None:
    """Remove parameter arguments nothing uses any more (folded into others)."""
    block = func.regions[0].blocks[0]
    ftype = ir.FunctionType(ir.TypeAttr(func.attributes["function_type"]).value)
    n_declared = len(ftype.inputs)
    types = list(ftype.inputs) + [a.type for a in list(block.arguments)[n_declared:]]
    keep = []
    for i in reversed(range(len(block.arguments))):
        if i in digests and not any(True for _ in block.arguments[i].uses):
            block.erase_argument(i)
            del types[i]
        else:
            keep.append(i)
    keep.reverse()
    func.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(types, list(ftype.results)))
    mark_params(func, {new: digests[old] for new, old in enumerate(keep) if old in digests})


def _operands_from_outside(ir, op) -> list:
    """The values `op` (and the ops nested in it) use that are defined outside it."""
    nested = _nested(op)
    inside = {hash(o) for o in nested}
    out = []
    for o in nested:
        for v in o.operands:
            if isinstance(v, ir.BlockArgument):  # inside when its block belongs to a nested op
                owner = v.owner.owner
                defined_inside = owner is not None and hash(owner.operation) in inside
            else:
                defined_inside = hash(v.owner.operation) in inside
            if not defined_inside:
                out.append(v)
    return out


def _top_level(op, func):
    """The op of `func`'s body that `op` is nested in (or is)."""
    op = op.operation if hasattr(op, "operation") else op
    while op.parent is not None and op.parent.operation != func.operation:
        op = op.parent.operation
    return op


def _nested(op):
    out = [op.operation]
    for region in op.regions:
        for block in region.blocks:
            for child in block.operations:
                out.extend(_nested(child))
    return out


def _is_splat(ir, op) -> bool:
    value = op.attributes["value"]
    return not isinstance(value, ir.DenseElementsAttr) or value.is_splat


def _elements(t) -> int:
    from mlir import ir

    return math.prod(ir.ShapedType(t).shape) if isinstance(t, ir.ShapedType) else 1
