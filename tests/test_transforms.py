"""The vocabulary: every step applies and verifies, illegal parameters are refused with a
reason, schedules are canonical, and rendered scripts run in upstream mlir-opt."""
import math
import re
import subprocess
from contextlib import contextmanager

import numpy as np
import pytest

from rcompiler.jit import mlir_tool
from mlir_snippets import conv_nchw_on_tensors, depthwise_nchw_relu6
from rcompiler.kernels import get_kernel, kernel_from_mlir
from rcompiler.measure import Candidate, Status
from rcompiler.transforms.render import Script
from rcompiler.transforms import (Contraction, Decompose, Fuse, Hoist, Im2col, Lanes, Pack, PackChannels, Pad, Parallel,
                                  Peel, Schedule, ScheduleError, Tile, Unroll, Vectorize, check, render, step_from_json)

VEC = (Vectorize(), Hoist())
# (kernel, shape, schedule): each step on each kind of kernel it supports.
CASES = {
    "tile+vectorize+hoist": ("matmul", (64, 64, 64), (Tile((32, 32, 32), (0, 2, 1)), Tile((8, 32, 1))) + VEC),
    "scalar tiles only": ("matmul", (48, 40, 24), (Tile((16, 8, 0)),)),
    "peel odd shape": ("matmul", (50, 70, 30), (Tile((50, 70, 10), (0, 2, 1)), Tile((8, 32, 1)), Peel()) + VEC),
    "pad odd shape": ("matmul", (50, 70, 30), (Pad((8, 32, 1)), Tile((8, 32, 1))) + VEC),
    "pack": ("matmul", (32, 64, 16), (Pack((8, 32, 1)), Tile((1, 1, 1, 0, 0, 0))) + VEC),
    "pack batch": ("batch_matmul", (2, 16, 32, 8), (Pack((8, 16, 1)), Tile((1, 1, 1, 1, 0, 0, 0))) + VEC),
    "pack only b": ("matmul_transpose_b", (24, 64, 16), (Pack((0, 16, 0)), Tile((8, 2, 1, 16))) + VEC),
    "pack only b batch": ("batch_matmul", (2, 16, 32, 8), (Pack((0, 16, 0)), Tile((1, 8, 1, 1, 16))) + VEC),
    "pack only b k x n": ("matmul", (24, 64, 8), (Pack((0, 16, 0)), Tile((8, 2, 1, 16))) + VEC),
    "unroll": ("matmul", (32, 64, 16), (Tile((8, 32, 4)), Tile((8, 32, 1)), Unroll(2, 2)) + VEC),
    "contraction dot": ("matmul", (32, 64, 16), (Tile((8, 32, 1)), Contraction("dot")) + VEC),
    "contraction parallelarith": ("matmul", (32, 64, 16), (Tile((8, 32, 1)), Contraction("parallelarith")) + VEC),
    "transpose_b": ("matmul_transpose_b", (32, 64, 16), (Tile((8, 32, 1)),) + VEC),
    "lanes": ("matmul_transpose_b", (32, 64, 64), (Tile((4, 4, 0)), Lanes(16)) + VEC),
    "lanes batch": ("batch_matmul", (2, 8, 16, 32), (Tile((1, 2, 4, 0)), Lanes(8)) + VEC),
    "batch": ("batch_matmul", (2, 16, 32, 8), (Tile((1, 8, 32, 1)),) + VEC),
    "fuse bias relu": ("matmul_bias_relu", (32, 64, 16), (Fuse(), Tile((16, 32, 0)), Tile((8, 32, 1))) + VEC),
    "fuse fill": ("matmul", (32, 64, 16), (Fuse(), Tile((16, 32, 0)), Tile((8, 32, 1))) + VEC),
    # what edits.fused makes of a blocked schedule: the first level's k block moved one level down
    "fuse bias relu k-blocked": ("matmul_bias_relu", (32, 64, 16),
                                 (Fuse(), Tile((16, 32, 0), (0, 2, 1)), Tile((0, 0, 8)), Tile((8, 32, 1))) + VEC),
    "bias relu unfused": ("matmul_bias_relu", (32, 64, 16), (Tile((8, 32, 1)),) + VEC),
    "conv decompose": ("conv2d", (1, 10, 18, 8, 32, 3, 3), (Tile((1, 1, 8, 32, 1, 0, 1)), Decompose()) + VEC),
    "conv strided decompose": ("conv2d", (1, 11, 19, 4, 16, 3, 3, 2), (Tile((1, 1, 3, 16, 1, 0, 1)), Decompose()) + VEC),
    "conv im2col": ("conv2d", (1, 10, 10, 8, 32, 3, 3), (Im2col(), Tile((1, 8, 32, 1))) + VEC),
    "parallel": ("matmul", (64, 64, 64), (Parallel(2), Tile((8, 32, 1))) + VEC),
    "conv nchw im2col": ("conv2d_nchw", (8, 10, 16), (Im2col(), Tile((1, 8, 16, 1))) + VEC),
    "conv nchw pack_channels": ("conv2d_nchw", (8, 10, 16), (PackChannels((8, 4)), Tile((1, 1, 1, 4, 1, 1, 1, 0, 0)))
                                + VEC),
    # depthwise NCHW, loops (n, oh, ow, c, kh, kw): vectors along ow, the window at 1, ReLU6 fused
    "depthwise nchw": ("depthwise_nchw", (8, 18), (Fuse(), Tile((1, 4, 16, 1, 0, 0)), Tile((0, 0, 0, 0, 1, 1))) + VEC),
    "depthwise nchw unfused": ("depthwise_nchw", (8, 18), (Tile((1, 4, 16, 1, 1, 1)),) + VEC),
    "depthwise nchw ow x c": ("depthwise_nchw", (8, 18), (Fuse(), Tile((1, 1, 8, 8, 0, 0)), Tile((0, 0, 0, 0, 1, 1)))
                              + VEC),
    "depthwise nchw strided": ("depthwise_nchw", (8, 17, 2), (Tile((1, 2, 8, 1, 1, 1)),) + VEC),
}


def get_case_kernel(name: str, shape: tuple):
    """A built-in kernel, or an NCHW convolution as PyTorch-style frontends emit it (c, size, f)."""
    if name == "conv2d_nchw":
        return kernel_from_mlir(conv_nchw_on_tensors(*shape))
    if name == "depthwise_nchw":
        return kernel_from_mlir(depthwise_nchw_relu6(*shape))
    return get_kernel(name, shape)


@pytest.mark.parametrize("case", sorted(CASES))
def test_step_applies_and_verifies(case, measure_with):
    name, shape, steps = CASES[case]
    kernel = get_case_kernel(name, shape)
    schedule = Schedule.of(steps)
    result = measure_with(kernel).measure(Candidate(render(schedule, kernel).text, schedule.threads))
    assert result.status is Status.OK, result.reason
    assert result.max_error <= kernel.tolerance


@contextmanager
def _transformed(case):
    """The payload of a case after its rendered script, inside the MLIR context that holds it."""
    from mlir import ir

    from rcompiler.transforms import apply_script

    name, shape, steps = CASES[case]
    kernel = get_case_kernel(name, shape)
    with ir.Context(), ir.Location.unknown():
        module = ir.Module.parse(kernel.payload)
        apply_script(module, render(Schedule.of(steps), kernel).text)
        yield module


@pytest.mark.parametrize("case", ["tile+vectorize+hoist", "pack", "pack batch", "pack only b"])
def test_vectorized_steps_really_vectorize(case):
    """The rendered script turns the register tile into vector FMAs (not scalar loops); packed
    tiles too, whose unit dims once made the contraction lowering scalarise (6 vs 69 GFLOP/s)."""
    with _transformed(case) as module:
        ir_text = str(module)
    assert "vector.fma" in ir_text and "linalg.matmul" not in ir_text
    assert ir_text.count("arith.mulf") < 8  # no scalarised contraction


@pytest.mark.parametrize("case,generalized", [("depthwise nchw", True), ("depthwise nchw unfused", True),
                                               ("depthwise nchw ow x c", False), ("depthwise nchw strided", False)])
def test_a_depthwise_conv_vectorizes_as_a_generic_where_its_tile_allows(case, generalized):
    """Upstream vectorizes named convolutions only in 1-D form and leaves a depthwise NCHW conv
    scalar (14 GFLOP/s on MobileNetV2's first one, 42 now): with its window tiled to 1 it is
    generalized and its unit dims folded, so its image rows are plain vector reads. Not when the
    folded tile's loops run against the output's dims (MLIR 22 then writes it along the wrong
    dims) or the window strides (no plain vector read): those stay as they were."""
    from rcompiler.transforms.space import plan

    name, shape, steps = CASES[case]
    assert plan(Schedule.of(steps), get_case_kernel(name, shape)).generalize is generalized
    with _transformed(case) as module:
        ir_text = str(module)
    assert ("linalg.depthwise_conv_2d_nchw_chw" not in ir_text) is generalized
    if generalized:  # multiply-adds of whole rows of ow (LLVM contracts them into FMAs)
        assert re.search(r"arith\.mulf [^\n]*: vector<\d+x16xf32>", ir_text), ir_text


def test_fused_consumers_tile_along_the_output_dims_of_a_conv_whose_loops_run_otherwise():
    """A depthwise NCHW conv's loops run (n, oh, ow, c) and its output is (n, c, oh, ow): its
    fused ReLU is tiled with the sizes of the matching loops (once the conv's own order was
    used, and a 4x16 tile of oh x ow became c=4, oh=16)."""
    name, shape, steps = CASES["depthwise nchw"]
    text = render(Schedule.of(steps), get_case_kernel(name, shape)).text
    assert "transform.structured.fuse %op" in text and "tile_sizes [1, 1, 4, 16]" in text


def test_a_frontend_output_is_written_in_place():
    """The output is a tensor.empty that the result is materialized into: with empty tensors
    eliminated it is written in place, with no temporary to allocate and copy out."""
    from rcompiler.measure.builder import build

    name, shape, steps = CASES["depthwise nchw"]
    kernel = get_case_kernel(name, shape)
    built = build(kernel.payload, render(Schedule.of(steps), kernel).text, 1)
    assert built.llvm_ir is not None, built.reason
    assert "@malloc" not in built.llvm_ir and "@memrefCopy" not in built.llvm_ir


def _innermost_loops_with_fmas(module):
    """The scf.for ops that hold vector FMAs directly in their body."""
    loops = []

    def visit(op):
        for region in op.regions:
            for block in region.blocks:
                for inner in block.operations:
                    if inner.operation.name == "scf.for" and any(
                            o.operation.name == "vector.fma" for o in inner.regions[0].blocks[0].operations):
                        loops.append(inner)
                    visit(inner)

    visit(module.operation)
    return loops


@pytest.mark.parametrize("case", ["conv decompose", "conv strided decompose", "conv nchw pack_channels", "batch",
                                  "tile+vectorize+hoist"])
def test_accumulators_stay_in_registers_across_the_reduction_loop(case):
    """Hoisting pairs an accumulator's read and write only when their vector types match; a
    decomposed conv's read (1x8x32) and write (1x1x8x32) once differed by a unit dim, so every
    reduction step loaded and stored the accumulators (80 vs 117 GFLOP/s on a 3x3 conv)."""
    with _transformed(case) as module:
        loops = _innermost_loops_with_fmas(module)
        assert loops, "no reduction loop of vector FMAs"
        for loop in loops:
            body = [o.operation.name for o in loop.regions[0].blocks[0].operations]
            assert "vector.transfer_write" not in body and "vector.store" not in body


@pytest.mark.parametrize("name,shape,multiples", [("matmul", (50, 70, 30), (8, 32, 1)),
                                                   ("batch_matmul", (2, 13, 70, 9), (1, 8, 32, 1))])
def test_padded_operands_are_filled_and_copied_row_by_row(name, shape, multiples):
    """A pad left to bufferization becomes one strided memref.copy per operand, which the
    runtime's memrefCopy does element by element (the prime-sized matmul ran at 41 instead of
    99 GFLOP/s). Every copy is now one row, contiguous on both sides: a memcpy."""
    from rcompiler.measure.builder import build

    kernel = get_kernel(name, shape)
    steps = (Pad(multiples), Tile(multiples[:-1] + (1,))) + VEC
    built = build(kernel.payload, render(Schedule.of(steps), kernel).text)
    assert built.llvm_ir and "memrefCopy" not in built.llvm_ir


def test_split_reduction_partial_sums_fuse_into_fmas():
    """`lanes` accumulates with an elementwise multiply and add: both carry the contract flag so
    LLVM fuses them (a separate vmulps and vaddps per step ran 5% slower on a Linear layer)."""
    from rcompiler.measure.builder import build

    name, shape, steps = CASES["lanes"]
    kernel = get_kernel(name, shape)
    built = build(kernel.payload, render(Schedule.of(steps), kernel).text)
    assert built.llvm_ir and "llvm.fmul" in built.llvm_ir
    assert all("contract" in line for line in built.llvm_ir.splitlines() if "llvm.fmul" in line)


def test_measurements_are_keyed_by_the_codegen_version(monkeypatch):
    import rcompiler.codegen

    kernel = get_kernel("matmul", (8, 8, 8))
    before = kernel.fingerprint
    monkeypatch.setattr(rcompiler.codegen, "VERSION", rcompiler.codegen.VERSION + 1)
    assert kernel.fingerprint != before


def test_an_op_version_rekeys_only_the_payloads_holding_that_op(monkeypatch):
    import rcompiler.codegen

    matmul, softmax = get_kernel("matmul", (8, 8, 8)), kernel_from_mlir(EXP_ROWS)
    before = matmul.fingerprint, softmax.fingerprint
    monkeypatch.setitem(rcompiler.codegen.OP_VERSIONS, "math.exp", rcompiler.codegen.OP_VERSIONS["math.exp"] + 1)
    assert matmul.fingerprint == before[0] and softmax.fingerprint != before[1]


def unary_rows(op: str, rows: int = 4, cols: int = 64) -> str:
    """A frontend's elementwise op: math.<op> over a rows x cols tensor."""
    t = f"tensor<{rows}x{cols}xf32>"
    return f"""
#map = affine_map<(d0, d1) -> (d0, d1)>
func.func @{op}_rows(%x: {t}) -> {t} {{
  %e = tensor.empty() : {t}
  %y = linalg.generic {{indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]}}
      ins(%x : {t}) outs(%e : {t}) {{
  ^bb0(%a: f32, %b: f32):
    %v = math.{op} %a : f32
    linalg.yield %v : f32
  }} -> {t}
  return %y : {t}
}}
"""


EXP_ROWS = unary_rows("exp")


@pytest.mark.parametrize("op,reference", [("erf", math.erf), ("erfc", math.erfc), ("cbrt", np.cbrt),
                                          ("asinh", math.asinh), ("atanh", math.atanh), ("acosh", math.acosh)])
def test_math_ops_llvm_has_no_intrinsic_for_compile_to_libm_calls(op, reference):
    """GELU's erf (torch-mlir's nn.GELU, ONNX Erf) failed to JIT: convert-math-to-llvm leaves it."""
    from rcompiler.jit import JitFunction
    from rcompiler.measure.builder import build

    kernel = kernel_from_mlir(unary_rows(op))
    built = build(kernel.payload, None)
    assert built.llvm_ir, built.reason
    x = np.linspace(0.05, 0.95, 4 * 64, dtype=np.float32).reshape(4, 64) + (1 if op == "acosh" else 0)
    y = np.zeros_like(x)
    JitFunction(built.llvm_ir, kernel.func_name)(x, y)
    np.testing.assert_allclose(y, np.vectorize(reference)(x.astype(np.float64)), rtol=1e-6)


# op: (range of the dense sweep, special inputs and what they give)
FAST_MATH = {
    "exp": (87, {np.inf: np.inf, -np.inf: 0, 88.73: np.inf, 100.0: np.inf, -87.34: 0, -100.0: 0, 0.0: 1}),
    "erf": (6, {np.inf: 1, -np.inf: -1, 4.0: 1, -9.0: -1, 0.0: 0, 1e-30: 1.1283791670955126e-30}),
    "tanh": (12, {np.inf: 1, -np.inf: -1, 50.0: 1, -50.0: -1, 0.0: 0, 1e-30: 1e-30}),
}


@pytest.mark.parametrize("op", FAST_MATH)
def test_exp_erf_and_tanh_vectorize_as_arithmetic_within_3_ulp(op):
    """A vector exp becomes one libm call per lane, erf and tanh one per element (12 ns each:
    a GELU cost as much as its matmul); fast_math rewrites them as polynomials."""
    from rcompiler.jit import JitFunction
    from rcompiler.measure.builder import build

    reference = {"exp": np.exp, "erf": np.vectorize(math.erf), "tanh": np.tanh}[op]
    width, special = FAST_MATH[op]
    kernel = kernel_from_mlir(unary_rows(op, 8, 1024))
    built = build(kernel.payload, render(Schedule.of((Tile((1, 16)), Vectorize())), kernel).text)
    assert built.llvm_ir and "vector<16xf32>" in built.llvm_ir
    calls = {line.split("@")[1].split("(")[0] for line in built.llvm_ir.splitlines() if "llvm.call @" in line}
    assert calls <= {"malloc", "free", kernel.func_name} and f"llvm.intr.{op}" not in built.llvm_ir, calls
    sweep = np.concatenate([np.linspace(-width, width, 4096), np.geomspace(1e-30, width, 2048),
                            -np.geomspace(1e-30, width, 2048 - len(special) - 1)])
    x = np.concatenate([sweep, list(special), [np.nan]]).astype(np.float32).reshape(8, 1024)
    y = np.zeros_like(x)
    JitFunction(built.llvm_ir, kernel.func_name)(x, y)
    exact = reference(x.astype(np.float64))
    normal = np.isfinite(x) & (np.abs(exact) > np.finfo(np.float32).tiny) & (np.abs(exact) < np.finfo(np.float32).max)
    ulps = np.abs(y[normal] - exact[normal]) / np.spacing(np.abs(exact[normal]).astype(np.float32))
    assert ulps.max() <= 3, (ulps.max(), x[normal][ulps.argmax()])
    assert op == "tanh" or "llvm.fdiv" not in built.llvm_ir  # a vector division costs as much as a dozen FMAs
    got = y.ravel()[-len(special) - 1:]
    np.testing.assert_allclose(got[:-1], np.float32(list(special.values())), rtol=4e-7)  # 3 ulp
    assert np.isnan(got[-1])  # NaN in, NaN out


ROW_SUMS = """
func.func @row_sums(%x: tensor<8x768xf32>) -> tensor<8xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<8xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<8xf32>) -> tensor<8xf32>
  %s = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>],
                       iterator_types = ["parallel", "reduction"]} ins(%x : tensor<8x768xf32>) outs(%init : tensor<8xf32>) {
  ^bb0(%a: f32, %acc: f32):
    %y = arith.addf %a, %acc : f32
    linalg.yield %y : f32
  } -> tensor<8xf32>
  return %s : tensor<8xf32>
}
"""


def test_a_row_reduction_sums_its_lanes_as_a_tree_and_stays_exact_enough():
    """LayerNorm and softmax row sums: an ordered llvm.vector.reduce.fadd is 16 dependent adds per
    tile (the LayerNorm tasks of a BERT block ran no faster than naive); reassoc lets LLVM add a tree."""
    from rcompiler.jit import JitFunction
    from rcompiler.measure.builder import build

    kernel = kernel_from_mlir(ROW_SUMS)
    built = build(kernel.payload, render(Schedule.of((Tile((4, 32)), Vectorize(), Hoist())), kernel).text)
    reductions = [line for line in built.llvm_ir.splitlines() if "vector.reduce.fadd" in line]
    assert reductions and all("reassoc" in line for line in reductions), reductions
    x = np.random.default_rng(0).standard_normal((8, 768)).astype(np.float32)
    y = np.zeros(8, np.float32)
    JitFunction(built.llvm_ir, kernel.func_name)(x, y)
    np.testing.assert_allclose(y, x.astype(np.float64).sum(1), rtol=1e-5, atol=1e-4)
    matmul = get_kernel("matmul", (64, 64, 64))  # contractions keep their ordered lowering
    assert "reassoc" not in render(Schedule.of((Tile((8, 32, 1)), Vectorize(), Hoist())), matmul).text


def test_fast_math_coefficients_are_the_fits_they_claim_to_be():
    from rcompiler.transforms import fast_math

    for name, values in fast_math.fit().items():
        assert getattr(fast_math, name) == pytest.approx(values, rel=1e-6), name


@pytest.mark.parametrize("steps,kernel,reason", [
    ((Tile((128, 8, 8)),), ("matmul", (64, 64, 64)), "larger than m=64"),
    ((Tile((8, 8)),), ("matmul", (64, 64, 64)), "needs 3 sizes"),
    ((Tile((24, 8, 8)), Vectorize()), ("matmul", (64, 64, 64)), "does not divide m=64"),
    ((Tile((8, 8, 8), (0, 0, 1)),), ("matmul", (64, 64, 64)), "permutation"),
    ((Vectorize(),), ("matmul", (256, 256, 256)), "innermost tile spans"),
    ((Tile((8, 32, 1)), Unroll(0, 3)), ("matmul", (64, 64, 64)), "factor 3"),
    ((Tile((8, 32, 1)), Unroll(5, 2)), ("matmul", (64, 64, 64)), "loop 5 does not exist"),
    ((Tile((8, 32, 1)), Peel()), ("matmul", (64, 64, 64)), "nothing to peel"),
    ((Pack((8, 24, 1)),), ("matmul", (64, 64, 64)), "does not divide n=64"),
    ((Pad((8, 32, 1)),), ("matmul", (64, 64, 64)), "already a multiple"),
    ((Pad((8, 8, 8, 8, 8, 8, 8)),), ("conv2d", (1, 10, 10, 4, 4, 3, 3)), "pad: supported on"),
    ((Parallel(3),), ("matmul", (64, 64, 64)), "do not divide m=64"),
    ((Parallel(2, loop=2),), ("matmul", (64, 64, 64)), "reduction"),
    ((Tile((1, 2, 8, 4, 1, 0, 1)), Decompose()), ("conv2d", (1, 10, 10, 4, 4, 3, 3)), "oh=1 and kh=1"),
    ((Decompose(),), ("matmul", (64, 64, 64)), "needs a tile step"),
    ((Tile((8, 32, 1)), Decompose()), ("matmul", (64, 64, 64)), "applies to linalg.conv_2d"),
    ((Fuse(), Tile((8, 32, 4))), ("matmul", (64, 64, 64)), "only tile parallel loops"),
    ((Hoist(), Tile((8, 32, 1))), ("matmul", (64, 64, 64)), "hoist: needs vectorize"),
    ((Im2col(), Decompose(), Tile((1, 8, 4, 1))), ("conv2d", (1, 10, 10, 4, 4, 3, 3)), "alternatives"),
    ((Contraction("fast"), Vectorize(), Tile((8, 32, 1))), ("matmul", (64, 64, 64)), "not one of"),
    ((Im2col(), Tile((1, 8, 4, 1))), ("conv2d", (1, 14, 14, 4, 4, 3, 3, 1, 2)), "dilated"),
    ((PackChannels((8, 4)), Tile((1, 1, 1, 4, 1, 1, 1, 0, 0))) + VEC, ("conv2d", (1, 10, 10, 4, 4, 3, 3)),
     "pack_channels: applies to linalg.conv_2d_nchw_fchw"),
    ((PackChannels((8, 3)), Tile((1, 1, 1, 4, 1, 1, 1, 0, 0))) + VEC, ("conv2d_nchw", (8, 10, 16)),
     "block 3 does not divide c=8"),
    ((PackChannels((8, 4)), Tile((1, 1, 1, 4, 1, 1, 0, 0, 0))) + VEC, ("conv2d_nchw", (8, 10, 16)),
     "it leaves kw=3"),
    ((PackChannels((8, 4)), Tile((1, 1, 1, 4, 1, 1, 1, 0, 0))), ("conv2d_nchw", (8, 10, 16)), "needs vectorize"),
    ((PackChannels((8, 4)), Tile((1, 1, 1, 2, 1, 1, 1, 0, 0))) + VEC, ("conv2d_nchw", (8, 11, 16, 3, 2)),
     "stride 1 along the image width"),
])
def test_illegal_parameters_are_refused_with_a_reason(steps, kernel, reason):
    k = get_case_kernel(*kernel)
    schedule = Schedule.of(steps)
    assert reason in (check(schedule, k) or "")
    with pytest.raises(ScheduleError, match=reason.replace("(", r"\(")):
        render(schedule, k)


def test_schedule_is_canonical_and_hash_stable():
    a = Schedule.of([Hoist(), Tile((64, 256, 256), (0, 2, 1)), Vectorize(), Tile((8, 32, 1))])
    b = Schedule.of([Tile((64, 256, 256), (0, 2, 1)), Tile((8, 32, 1)), Vectorize(), Hoist()])
    assert a == b and a.key == b.key
    assert Schedule.of([Tile((8, 32, 1)), Tile((64, 256, 256))]).key != b.key  # tile order matters
    assert Schedule.from_json(a.to_json()) == a
    assert str(a).startswith("tile(sizes=[64, 256, 256], interchange=[0, 2, 1]) ; tile(sizes=[8, 32, 1])")


@pytest.mark.parametrize("data,reason", [
    ({"step": "tiling"}, "unknown step"), ({"step": "tile"}, "missing parameter 'sizes'"),
    ({"step": "tile", "sizes": "8,8"}, "list of integers"), ({"step": "unroll", "loop": 0, "factor": 2, "x": 1},
                                                              "unknown parameter"),
    ({"step": "parallel", "threads": True}, "must be an integer"), (["tile"], "must be an object"),
])
def test_bad_step_json(data, reason):
    with pytest.raises(ScheduleError, match=reason):
        step_from_json(data)


def test_failure_is_attributed_to_its_step(measure_with):
    """An MLIR failure is reported against the step whose line failed."""
    kernel = get_kernel("matmul", (64, 64, 64))
    # Corrupt the tile line of a good script so MLIR, not our legality check, rejects it.
    script = render(Schedule.of((Tile((8, 32, 1)),) + VEC), kernel)
    broken = script.text.replace("tile_sizes [8, 32, 1]", "tile_sizes [8, 32, 1, 4]")
    result = measure_with(kernel).measure(Candidate(broken))
    assert result.status is Status.APPLY_ERROR
    explained = Script(broken, script.owners).explain(result.reason)
    assert explained.startswith("step 1 (tile(sizes=[8, 32, 1]))"), explained


@pytest.mark.parametrize("case", ["tile+vectorize+hoist", "peel odd shape", "pack", "pack only b", "fuse bias relu", "lanes",
                                  "conv decompose", "conv im2col", "conv nchw pack_channels", "parallel",
                                  "pad odd shape"])
def test_upstream_mlir_opt_applies_rendered_script(case, tmp_path):
    name, shape, steps = CASES[case]
    kernel = get_case_kernel(name, shape)
    (tmp_path / "payload.mlir").write_text(kernel.payload)
    (tmp_path / "schedule.mlir").write_text(render(Schedule.of(steps), kernel).text)
    proc = subprocess.run([mlir_tool("mlir-opt"), str(tmp_path / "payload.mlir"),
                           f"--transform-preload-library=transform-library-paths={tmp_path / 'schedule.mlir'}",
                           "--transform-interpreter", "-o", str(tmp_path / "out.mlir")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "func.func @" in (tmp_path / "out.mlir").read_text()


def test_decompose_refuses_the_miscompiling_h_axis_form():
    """MLIR 22 vectorizes an ow=1, kw=1 decomposition wrongly; the vocabulary refuses it."""
    kernel = get_kernel("conv2d", (1, 30, 30, 32, 32, 3, 3))
    reason = check(Schedule.of([Tile((1, 14, 1, 16, 1, 1, 4)), Decompose(), Vectorize()]), kernel)
    assert reason and "oh=1 and kh=1" in reason


@pytest.mark.parametrize("case,panels", [("pack only b k x n", "4x8x16"), ("pack only b", "4x16x16"),
                                         ("pack only b batch", "2x2x8x16"), ("pack batch", "2x2x8x16x1")])
def test_packed_b_panels_are_contiguous_along_k(case, panels):
    """B packed into n-wide panels lies panel after panel, each one run along k (n blocks
    outermost), whether B was stored k x n or n x k: packed k-major, a panel's rows stayed a row
    of B apart (4 KiB at n = 1024, one L1 set) and the copy bought nothing."""
    with _transformed(case) as module:
        allocs = re.findall(r"memref.alloc\(\) \{alignment = \d+ : i64\} : memref<([\dx]+)xf32>", str(module))
    assert panels in allocs, allocs


def test_pack_packs_all_three_operands_or_only_b():
    kernel = get_kernel("matmul_transpose_b", (32, 64, 16))
    assert check(Schedule.of([Pack((0, 16, 0)), Tile((8, 2, 1, 16))] + list(VEC)), kernel) is None
    for sizes in ((0, 16, 1), (8, 0, 0), (0, 0, 0), (0, 24, 0)):
        assert check(Schedule.of([Pack(sizes)] + list(VEC)), kernel), sizes
