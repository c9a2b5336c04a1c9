"""A strided depthwise convolution rewritten so that its columns read contiguously.

An NCHW depthwise conv of column stride s reads `in[.., s * ow + kw]`: no vector reads along
ow, and MLIR's vectorizer refuses such maps (upstream vectorizes only 1-D convs), so
MobileNetV2's four stride-2 depthwise layers ran scalar at 5-11 GFLOP/s. Seen as
`in[.., ow + a, b]` with kw = s * a + b, the input reshaped (a view, no copy) to
[.., W / s, s] and the weights zero-padded to a whole number of phases, the window is a
stride-1 one over a of phase-b columns: b runs along the input's contiguous innermost dim, so a
tile of ow x b is one contiguous read (2.2x on MobileNetV2's 96x112x112 layer). The zero-padded
weights cost (s * ceil(kw / s) - kw) / kw more multiplies (a third for a 3x3 stride-2 window);
they are constants, folded when the model loads.
"""
from __future__ import annotations

import math

from .structure import walk

DEPTHWISE = "linalg.depthwise_conv_2d_nchw_chw"


def split_column_phases(func) -> int:
    """Rewrite the static f32 depthwise NCHW convs of `func` with a column stride above 1 (see
    the module docstring), in place; returns how many were rewritten."""
    from mlir import ir

    done = 0
    for op in [op for op in walk(func.operation) if op.name == DEPTHWISE]:
        plan = _plan(ir, op.opview)
        if plan is not None:
            _rewrite(ir, op.opview, *plan)
            done += 1
    return done


def _plan(ir, conv):
    """(row stride, column stride, phases a) when `conv` can be rewritten, else None."""
    image, weight = conv.inputs
    types = [ir.RankedTensorType(v.type) for v in (image, weight, conv.outputs[0])]
    if not all(t.has_static_shape and isinstance(t.element_type, ir.F32Type) for t in types):
        return None
    sh, sw = list(ir.DenseIntElementsAttr(conv.attributes["strides"]))
    dilations = list(ir.DenseIntElementsAttr(conv.attributes["dilations"]))
    width, kw, ow = types[0].shape[3], types[1].shape[2], types[2].shape[3]
    if sw < 2 or dilations != [1, 1] or width % sw:
        return None
    phases = math.ceil(kw / sw)
    if ow - 1 + phases - 1 >= width // sw:  # the last window's phase columns must exist
        return None
    return sh, sw, phases


def _rewrite(ir, conv, sh: int, sw: int, phases: int) -> None:
    from mlir.dialects import arith, linalg, tensor

    image, weight = conv.inputs
    n, c, h, w = ir.RankedTensorType(image.type).shape
    _, kh, kw = ir.RankedTensorType(weight.type).shape
    f32 = ir.F32Type.get()
    with ir.InsertionPoint(conv):
        columns = tensor.ExpandShapeOp(ir.RankedTensorType.get([n, c, h, w // sw, sw], f32), image,
                                       _reassociation([[0], [1], [2], [3, 4]]), [], [n, c, h, w // sw, sw]).result
        zero = arith.ConstantOp(f32, 0.0).result
        wide = linalg.fill(zero, outs=[tensor.EmptyOp([c, kh, phases * sw], f32).result])
        wide = tensor.InsertSliceOp(weight, wide, [], [], [], [0, 0, 0], [c, kh, kw], [1, 1, 1]).result
        taps = tensor.ExpandShapeOp(ir.RankedTensorType.get([c, kh, phases, sw], f32), wide,
                                    _reassociation([[0], [1], [2, 3]]), [], [c, kh, phases, sw]).result
        # loops (n, c, oh, ow, kh, a, b): in[n, c, sh * oh + kh, ow + a, b] * w[c, kh, a, b]
        d = [ir.AffineDimExpr.get(i) for i in range(7)]
        maps = [ir.AffineMap.get(7, 0, [d[0], d[1], d[2] * sh + d[4], d[3] + d[5], d[6]]),
                ir.AffineMap.get(7, 0, [d[1], d[4], d[5], d[6]]),
                ir.AffineMap.get(7, 0, [d[0], d[1], d[2], d[3]])]
        kinds = ["parallel"] * 4 + ["reduction"] * 3
        generic = linalg.GenericOp([conv.result.type], [columns, taps], [conv.outputs[0]],
                                   ir.ArrayAttr.get([ir.AffineMapAttr.get(m) for m in maps]),
                                   ir.ArrayAttr.get([ir.Attribute.parse(f"#linalg.iterator_type<{k}>")
                                                     for k in kinds]))
        body = generic.regions[0].blocks.append(f32, f32, f32)
        with ir.InsertionPoint(body):
            x, y, acc = body.arguments
            linalg.YieldOp([arith.AddFOp(acc, arith.MulFOp(x, y).result).result])
    conv.result.replace_all_uses_with(generic.result)
    conv.operation.erase()


def _reassociation(groups: list[list[int]]):
    from mlir import ir

    return ir.ArrayAttr.get([ir.ArrayAttr.get([ir.IntegerAttr.get(ir.IntegerType.get_signless(64), i)
                                               for i in g]) for g in groups])

