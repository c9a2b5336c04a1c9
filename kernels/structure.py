"""The loop structure of a payload's Linalg ops, read from the IR itself."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class OpInfo:
    """One Linalg op: its name, loop extents and iterator kinds, arithmetic per iteration."""

    name: str
    sizes: tuple[int, ...]
    iterators: tuple[str, ...]  # "parallel" | "reduction"
    body_ops: int

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
    return OpInfo(name, sizes, iterators, len(body))
