"""f32 `math.exp`, `math.erf` and `math.tanh` as arithmetic that vectorizes.

LLVM has no vector exp, erf or tanh of its own: a vector `math.exp` becomes `llvm.exp`, which
the x86 backend splits into one scalar `expf` call per lane, and erf and tanh are libm calls
per element (12 ns each here: a GELU costs as much as the matmul before it). Upstream's
polynomial approximation patterns are not exposed by these bindings, so this rewrites each
f32 op before lowering:
- exp: exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (ln 2 split in two for
  exactness), exp(r) by a degree-7 polynomial (Cephes' expf coefficients), 2^n as two
  exponent-bit halves so that n = 128 (x just below ln FLT_MAX) still scales. Above ln FLT_MAX
  the result is +inf; results below about the smallest normal float flush to 0 (denormals
  would cost microcode assists on every masked softmax lane).
- erf: x * P(x^2) for |x| < 1; beyond, 1 - exp(L(|x|)) with erf's sign, L a fit of log erfc on
  [1, 4] (erf rounds to 1 from 4 on, so |x| is clamped there). No division, and the exp needs
  no special cases: L stays in [-18, -1.8]. (The earlier exp(-x^2) * Q(1/|x|) cost a division
  and a full exp: 0.78 against 0.58 ns per element here, in one run.)
- tanh: x + x^3 * T(x^2) for |x| < 0.625 (no cancellation near 0); 1 - 2 / (exp(2|x|) + 1)
  with tanh's sign beyond.
P, L and T are least-squares fits in float64 on Chebyshev nodes (numpy.polynomial). Each op is
within 3 ulp of float64 libm over the normal range (tests/test_transforms.py); NaN stays NaN.
"""
from __future__ import annotations

LOG2E = 1.44269504088896341
LN2_HI, LN2_LO = 0.693359375, -2.12194440e-4  # LN2_HI has few bits: n * LN2_HI is exact
# exp(r) = 1 + r + r^2 * E(r) on |r| <= ln2 / 2; coefficients from the highest degree down
EXP_R = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
X_MAX = 88.72283935546875  # ln(FLT_MAX): above it exp overflows
X_MIN = -87.33  # just above ln(FLT_MIN) = -87.3365, so exp(X_MIN) is a normal float
# erf(x) = x * P(x^2) on [0, 1] (degree 6), erfc(a) = exp(L(a)) on [1, 4] (degree 6)
ERF_SMALL = (7.898209878476337e-05, -0.0008024353883229196, 0.00519005348905921, -0.026854809373617172,
             0.11283612251281738, -0.3761262893676758, 1.128379225730896)
ERFC_LOG = (0.00018655171152204275, -0.002948945853859186, 0.021841706708073616, -0.10311145335435867,
            -0.638142466545105, -1.1270889043807983, -0.0003419623535592109)
ERF_ONE = 4.0  # erfc(4) = 1.5e-8: erf rounds to 1 in f32 from here on
# tanh(x) = x + x^3 * T(x^2) on [0, 0.625] (degree 4)
TANH_SMALL = (-0.006144678220152855, 0.021036604419350624, -0.05386132746934891, 0.1333286315202713,
              -0.3333333134651184)
TANH_SMALL_END = 0.625


def approximate_math(module) -> int:
    """Rewrite every f32 (scalar or vector) exp, erf and tanh in `module`; returns how many."""
    from mlir import ir

    rewrites = {"math.exp": _exp, "math.erf": _erf, "math.tanh": _tanh}
    found = []

    def visit(op):
        if op.name in rewrites and _is_f32_or_f32_vector(op.results[0].type):
            found.append(op)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    for op in found:
        x = op.operands[0]
        with ir.InsertionPoint(op), op.location:
            op.results[0].replace_all_uses_with(rewrites[op.name](_Emitter(x.type), x))
        op.erase()
    return len(found)


def _is_f32_or_f32_vector(t) -> bool:
    """What the rewrite handles: an f32, or a vector of them (not a tensor: its elementwise
    math is left to bufferization and the usual lowering)."""
    from mlir import ir

    return (t.element_type if isinstance(t, ir.VectorType) else t) == ir.F32Type.get()


class _Emitter:
    """Constants, comparisons and polynomials at the shape of the value being rewritten."""

    def __init__(self, like):
        from mlir import ir

        self.shape = like.shape if isinstance(like, ir.VectorType) else None
        self.f32, self.i32 = ir.F32Type.get(), ir.IntegerType.get_signless(32)

    def typed(self, element):
        from mlir import ir

        return ir.VectorType.get(self.shape, element) if self.shape is not None else element

    def const(self, value, integer: bool = False):
        from mlir import ir
        from mlir.dialects import arith

        element = self.i32 if integer else self.f32
        attr = ir.IntegerAttr.get(element, value) if integer else ir.FloatAttr.get(element, value)
        if self.shape is None:
            return arith.constant(element, attr)
        return arith.constant(self.typed(element), ir.DenseElementsAttr.get_splat(self.typed(element), attr))

    def where(self, predicate: str, a, b, then, otherwise):
        from mlir.dialects import arith

        return arith.select(arith.cmpf(getattr(arith.CmpFPredicate, predicate), a, b), then, otherwise)

    def poly(self, coefficients, x):
        """Horner's rule with fused multiply-adds, coefficients from the highest degree down."""
        from mlir.dialects import math

        p = self.const(coefficients[0])
        for c in coefficients[1:]:
            p = math.fma(p, x, self.const(c))
        return p


def _exp(e: _Emitter, x):
    lo, hi = e.const(X_MIN), e.const(X_MAX)
    clamped = e.where("OLT", x, lo, lo, e.where("OGT", x, hi, hi, x))
    y = _exp_in_range(e, clamped, split=True)
    y = e.where("OGT", x, hi, e.const(float("inf")), y)
    y = e.where("OLT", x, lo, e.const(0.0), y)
    return e.where("UNO", x, x, x, y)  # NaN in, NaN out


def _exp_in_range(e: _Emitter, x, split: bool):
    """exp(x) for x in [X_MIN, X_MAX] (NaN stays NaN). `split`: 2^n as two halves, which only
    n = 128 (x just below ln FLT_MAX) needs; without it, n must stay in [-126, 127]."""
    from mlir.dialects import arith, math

    nf = math.floor(math.fma(x, e.const(LOG2E), e.const(0.5)))
    r = math.fma(nf, e.const(-LN2_LO), math.fma(nf, e.const(-LN2_HI), x))
    exp_r = math.fma(e.poly(EXP_R, r), arith.mulf(r, r), arith.addf(r, e.const(1.0)))
    n = arith.fptosi(e.typed(e.i32), nf)

    def pow2(k):  # from the exponent bits
        biased = arith.addi(k, e.const(127, integer=True))
        return arith.bitcast(e.typed(e.f32), arith.shli(biased, e.const(23, integer=True)))

    if not split:
        return arith.mulf(exp_r, pow2(n))
    a = arith.shrsi(n, e.const(1, integer=True))  # with n in [-126, 128] both halves are normal
    return arith.mulf(arith.mulf(exp_r, pow2(a)), pow2(arith.subi(n, a)))


def _erf(e: _Emitter, x):
    from mlir.dialects import arith, math

    a = math.absf(x)
    small = arith.mulf(x, e.poly(ERF_SMALL, arith.mulf(x, x)))
    t = arith.minimumf(a, e.const(ERF_ONE))  # NaN stays NaN (minimumf propagates it)
    erfc = _exp_in_range(e, e.poly(ERFC_LOG, t), split=False)  # L(t) in [-18, -1.8]
    one = e.const(1.0)
    tail = math.copysign(arith.subf(one, erfc), x)
    return e.where("OLT", a, one, small, tail)  # NaN takes the tail, where it stays NaN


def _tanh(e: _Emitter, x):
    from mlir.dialects import arith, math

    a = math.absf(x)
    x2 = arith.mulf(x, x)
    small = math.fma(arith.mulf(x, x2), e.poly(TANH_SMALL, x2), x)
    one = e.const(1.0)
    big = arith.subf(one, arith.divf(e.const(2.0), arith.addf(_exp(e, arith.addf(a, a)), one)))
    return e.where("OLT", a, e.const(TANH_SMALL_END), small, math.copysign(big, x))


def fit() -> dict[str, tuple[float, ...]]:
    """Recompute ERF_SMALL, ERFC_LOG and TANH_SMALL (f32-rounded, highest degree first):
    least squares on 4000 Chebyshev nodes; relative to erf(x) / x for ERF_SMALL, and for
    ERFC_LOG weighted by erfc, so that what is fitted is erf's absolute error."""
    import math as m

    import numpy as np
    from numpy.polynomial import polynomial

    def nodes(lo, hi, count=4000):
        k = np.arange(count)
        return (lo + hi) / 2 + (hi - lo) / 2 * np.cos((2 * k + 1) * np.pi / (2 * count))

    def f32_high_first(c):
        return tuple(float(np.float32(v)) for v in c[::-1])

    erf, erfc = np.vectorize(m.erf), np.vectorize(m.erfc)
    x = nodes(1e-6, 1.0)
    ratio = erf(x) / x
    a = nodes(1.0, ERF_ONE)
    q = erfc(a)
    t = nodes(1e-6, TANH_SMALL_END)
    return {"ERF_SMALL": f32_high_first(polynomial.polyfit(x * x, ratio, 6, w=1 / ratio)),
            "ERFC_LOG": f32_high_first(polynomial.polyfit(a, np.log(q), 6, w=q)),
            "TANH_SMALL": f32_high_first(polynomial.polyfit(t * t, (np.tanh(t) - t) / t**3, 4))}


if __name__ == "__main__":
    for name, values in fit().items():
        print(f"{name} = {values}")
