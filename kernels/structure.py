"""The loop structure of a payload's Linalg ops, read from the IR itself."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Operand:
    """How an op walks one shaped operand, from its indexing map: for each dimension of the
    operand, the loops that index it with their coefficients (a convolution window reads
    `oh * stride + kh * dilation`); None for a dimension indexed non-linearly."""

    shape: tuple[int, ...]
    index: tuple[tuple[tuple[int, int], ...] | None, ...]  # per dim: ((loop, coefficient), ...)
    element_bytes: int
    is_output: bool

    def stride_bytes(self, loop: int) -> int | None:
        """Bytes between consecutive iterations of `loop` in this row-major operand: 0 when
        the loop does not index it (one element serves every iteration), None when unknown."""
        total = 0
        for pos, terms in enumerate(self.index):
            if terms is None:
                return None
            coefficient = dict(terms).get(loop, 0)
            total += coefficient * math.prod(self.shape[pos + 1:]) * self.element_bytes
        return total

    def contiguous_loop(self) -> int | None:
        """The loop whose consecutive iterations touch adjacent elements, if any."""
        return next((loop for terms in self.index[-1:] if terms for loop, c in terms if c == 1), None)


@dataclass(frozen=True)
class OpInfo:
    """One Linalg op: its name, loop extents and iterator kinds, arithmetic per iteration,
    and how it walks its operands."""

    name: str
    sizes: tuple[int, ...]
    iterators: tuple[str, ...]  # "parallel" | "reduction"
    body_ops: int
    operands: tuple[Operand, ...] = ()

    @property
    def inputs(self) -> tuple[Operand, ...]:
        return tuple(o for o in self.operands if not o.is_output)

    @property
    def domain(self) -> int:
        return math.prod(self.sizes)

    @property
    def flops(self) -> int:
        return self.domain * self.body_ops

    @property
    def reduction_length(self) -> int:
        return math.prod(s for s, it in zip(self.sizes, self.iterators) if it == "reduction")


@functools.lru_cache(maxsize=64)
def analyze(payload: str) -> tuple[OpInfo, ...]:
    """Every Linalg op in program order, named as written, with loops from its
    generalized form (so named ops and linalg.generic are read the same way)."""
    from mlir import ir, passmanager

    with ir.Context(), ir.Location.unknown():
        module = ir.Module.parse(payload)
        names = [op.name for op in walk(module.operation) if _is_linalg(op)]
        passmanager.PassManager.parse("builtin.module(func.func(linalg-generalize-named-ops))").run(module.operation)
        generics = [op for op in walk(module.operation) if _is_linalg(op)]
        infos = []
        for name, op in zip(names, generics):
            infos.append(_info(ir, name, op))
        return tuple(infos)


def _is_linalg(op) -> bool:
    return op.name.startswith("linalg.") and op.name not in ("linalg.yield", "linalg.index")


def walk(op):
    for region in op.regions:
        for block in region.blocks:
            for child in block.operations:
                yield child.operation
                yield from walk(child.operation)


def _info(ir, name: str, op) -> OpInfo:
    iterators = tuple("reduction" if "reduction" in str(a) else "parallel"
                      for a in ir.ArrayAttr(op.attributes["iterator_types"]))
    bounds: dict[int, int] = {}
    maps = [ir.AffineMapAttr(m).value for m in ir.ArrayAttr(op.attributes["indexing_maps"])]
    for operand, amap in zip(op.operands, maps):
        if not isinstance(operand.type, ir.ShapedType):
            continue
        for expr, size in zip(amap.results, ir.ShapedType(operand.type).shape):
            if isinstance(expr, ir.AffineDimExpr):
                bounds.setdefault(ir.AffineDimExpr(expr).position, size)
    sizes = tuple(bounds.get(i, 1) for i in range(len(iterators)))
    body = [o for o in op.regions[0].blocks[0].operations if o.name.split(".")[0] in ("arith", "math")]
    n_inputs = list(ir.DenseI32ArrayAttr(op.attributes["operandSegmentSizes"]))[0]
    operands = []
    for i, (operand, amap) in enumerate(zip(op.operands, maps)):
        if isinstance(operand.type, ir.ShapedType):
            t = ir.ShapedType(operand.type)
            index = tuple(_linear(ir, e) for e in amap.results)
            operands.append(Operand(tuple(t.shape), index, max(1, t.element_type.width // 8), i >= n_inputs))
    return OpInfo(name, sizes, iterators, len(body), tuple(operands))


def _linear(ir, expr) -> tuple[tuple[int, int], ...] | None:
    """An affine expression as ((loop, coefficient), ...) when it is linear in the loops."""
    if isinstance(expr, ir.AffineDimExpr):
        return ((expr.position, 1),)
    if isinstance(expr, ir.AffineConstantExpr):
        return ()
    if isinstance(expr, ir.AffineAddExpr):
        lhs, rhs = _linear(ir, expr.lhs), _linear(ir, expr.rhs)
        if lhs is None or rhs is None:
            return None
        merged: dict[int, int] = {}
        for loop, c in lhs + rhs:
            merged[loop] = merged.get(loop, 0) + c
        return tuple(sorted(merged.items()))
    if isinstance(expr, ir.AffineMulExpr) and isinstance(expr.rhs, ir.AffineConstantExpr):
        inner = _linear(ir, expr.lhs)
        return None if inner is None else tuple((loop, c * expr.rhs.value) for loop, c in inner)
    return None  # mod, floordiv, ceildiv, symbols
