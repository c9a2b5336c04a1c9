"""Kernels from a user's .mlir: both function forms, and clear one-line errors on bad input."""
import numpy as np
import pytest

from mlir_snippets import matmul_on_tensors
from rcompiler.kernels import KernelError, kernel_from_file, kernel_from_mlir

TENSOR_FORM = matmul_on_tensors(16, 12, 8)

MEMREF_FORM = """
func.func @scale(%x: memref<32x16xf32>, %y: memref<32x16xf32>) {
  linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>],
                  iterator_types = ["parallel", "parallel"]} ins(%x : memref<32x16xf32>) outs(%y : memref<32x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %two = arith.constant 2.0 : f32
    %m = arith.mulf %in, %two : f32
    linalg.yield %m : f32
  }
  return
}
"""


def _run_naive(kernel):
    """Compile the kernel untransformed in-process and run it on its inputs."""
    from rcompiler.jit import JitFunction
    from rcompiler.measure.builder import build

    built = build(kernel.payload, None)
    assert built.llvm_ir, built.reason
    arrays = kernel.make_inputs(0)
    JitFunction(built.llvm_ir, kernel.func_name)(*arrays)
    return arrays


def test_tensor_function_is_wrapped_and_computes_the_matmul():
    kernel = kernel_from_mlir(TENSOR_FORM)
    assert kernel.func_name == "mm" and [a.is_output for a in kernel.args] == [False, False, True]
    assert kernel.flops == 2 * 16 * 12 * 8 and kernel.reduction_length == 8
    a, b, c = _run_naive(kernel)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)


def test_memref_function_outputs_are_the_written_arguments():
    kernel = kernel_from_mlir(MEMREF_FORM)
    assert [a.is_output for a in kernel.args] == [False, True]
    assert kernel.flops == 32 * 16
    x, y = _run_naive(kernel)
    np.testing.assert_allclose(y, 2 * x)


def test_user_kernel_reference_is_its_naive_lowering(measure_with):
    m = measure_with(kernel_from_mlir(TENSOR_FORM))
    ref = m.reference()
    a, b, _ = m.kernel.make_inputs(0)
    np.testing.assert_allclose(ref[0], a @ b, rtol=1e-5, atol=1e-5)
    assert m.measure_naive().ok


def test_from_file(tmp_path):
    path = tmp_path / "k.mlir"
    path.write_text(TENSOR_FORM)
    assert kernel_from_file(path).name == "k"


@pytest.mark.parametrize("text,message", [
    ("func.func @f(%a: tensor<4xf32> {", "malformed MLIR"),
    ("func.func @f(%a: f32) -> f32 { return %a : f32 }", "no linalg op"),
    (TENSOR_FORM.replace("16x8xf32", "?x8xf32"), "dynamic shape"),
    (MEMREF_FORM.replace("linalg.yield %m : f32", "%q = \"foo.bar\"() : () -> f32\n linalg.yield %m : f32"),
     "malformed MLIR"),
    (TENSOR_FORM.replace("%r = linalg", "gpu.barrier\n %r = linalg"), "unsupported op"),
    (TENSOR_FORM.replace("f32", "f16"), "element type"),  # f16 kernels are not supported (yet)
])
def test_bad_input_gets_one_line_error(text, message):
    with pytest.raises(KernelError, match=message) as info:
        kernel_from_mlir(text)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(KernelError, match="no such file"):
        kernel_from_file(tmp_path / "nope.mlir")
