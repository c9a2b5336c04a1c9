"""`math.exp` on f32 as arithmetic that vectorizes, instead of one libm call per lane.

LLVM has no vector exp of its own: `convert-math-to-llvm` turns a vector `math.exp` into
`llvm.exp`, which the x86 backend splits into a scalar `expf` call per lane (a softmax row
of 16 lanes is 16 calls). Upstream's polynomial approximation patterns are not exposed by
these bindings, so this rewrites each f32 `math.exp` before lowering, with the classic
range reduction: exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (ln 2 split in
two for exactness), exp(r) by a degree-7 polynomial (Cephes' expf coefficients, within
2 ulp on the reduced range), 2^n as two exponent-bit halves so that n = 128 (x just below
ln FLT_MAX) still scales. Above ln FLT_MAX the result is +inf; results below about the
smallest normal float flush to 0 (denormals would cost microcode assists on every masked
softmax lane); NaN stays NaN.
"""
from __future__ import annotations

LOG2E = 1.44269504088896341
LN2_HI, LN2_LO = 0.693359375, -2.12194440e-4  # LN2_HI has few bits: n * LN2_HI is exact
# exp(r) = 1 + r + r^2 * P(r) on |r| <= ln2 / 2, P's coefficients from degree 5 down
P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
X_MAX = 88.72283935546875  # ln(FLT_MAX): above it exp overflows
X_MIN = -87.33  # just above ln(FLT_MIN) = -87.3365, so exp(X_MIN) is a normal float

def approximate_exp(module) -> int:
    """Rewrite every f32 (scalar or vector) `math.exp` in `module`; returns how many."""
    from mlir import ir

    found = []

    def visit(op):
        if op.name == "math.exp" and _element_type(op.results[0].type) == ir.F32Type.get():
            found.append(op)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    for op in found:
        with ir.InsertionPoint(op), op.location:
            op.results[0].replace_all_uses_with(_exp(op.operands[0]))
        op.erase()
    return len(found)


def _element_type(t):
    from mlir import ir

    return t.element_type if isinstance(t, ir.ShapedType) else t


def _exp(x):
    from mlir import ir
    from mlir.dialects import arith, math

    f32, i32 = ir.F32Type.get(), ir.IntegerType.get_signless(32)
    shape = x.type.shape if isinstance(x.type, ir.VectorType) else None

    def typed(element):
        return ir.VectorType.get(shape, element) if shape is not None else element

    def const(value, element=f32):
        attr = ir.FloatAttr.get(element, value) if element == f32 else ir.IntegerAttr.get(element, value)
        if shape is None:
            return arith.constant(element, attr)
        return arith.constant(typed(element), ir.DenseElementsAttr.get_splat(typed(element), attr))

    def select_if(predicate, a, b, then, otherwise):
        return arith.select(arith.cmpf(predicate, a, b), then, otherwise)

    lo, hi = const(X_MIN), const(X_MAX)
    clamped = select_if(arith.CmpFPredicate.OLT, x, lo, lo, select_if(arith.CmpFPredicate.OGT, x, hi, hi, x))
    nf = math.floor(math.fma(clamped, const(LOG2E), const(0.5)))
    r = math.fma(nf, const(-LN2_LO), math.fma(nf, const(-LN2_HI), clamped))
    p = const(P[0])
    for c in P[1:]:
        p = math.fma(p, r, const(c))
    exp_r = math.fma(p, arith.mulf(r, r), arith.addf(r, const(1.0)))
    # 2^n = 2^a * 2^b from exponent bits, a = n >> 1: with n in [-126, 128] both halves are normal
    n = arith.fptosi(typed(i32), nf)
    a = arith.shrsi(n, const(1, i32))

    def pow2(k):
        return arith.bitcast(typed(f32), arith.shli(arith.addi(k, const(127, i32)), const(23, i32)))

    y = arith.mulf(arith.mulf(exp_r, pow2(a)), pow2(arith.subi(n, a)))
    y = select_if(arith.CmpFPredicate.OGT, x, hi, const(float("inf")), y)
    y = select_if(arith.CmpFPredicate.OLT, x, lo, const(0.0), y)
    return select_if(arith.CmpFPredicate.UNO, x, x, x, y)  # NaN in, NaN out
