"""MLIR that a user might write by hand, shared by the tests that feed user modules in."""


def matmul_on_tensors(m: int, n: int, k: int) -> str:
    """A matmul on tensors as a user writes it: fill with zero, then linalg.matmul."""
    a, b, c = f"tensor<{m}x{k}xf32>", f"tensor<{k}x{n}xf32>", f"tensor<{m}x{n}xf32>"
    return f"""
func.func @mm(%a: {a}, %b: {b}) -> {c} {{
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : {c}
  %c = linalg.fill ins(%zero : f32) outs(%e : {c}) -> {c}
  %r = linalg.matmul ins(%a, %b : {a}, {b}) outs(%c : {c}) -> {c}
  return %r : {c}
}}
"""


def conv_nchw_on_tensors(c: int, size: int, f: int, k: int = 3, stride: int = 1) -> str:
    """A PyTorch-layout convolution (NCHW image, FCHW filter) on a zero-filled output."""
    out = (size - k) // stride + 1
    x, w, y = f"tensor<1x{c}x{size}x{size}xf32>", f"tensor<{f}x{c}x{k}x{k}xf32>", f"tensor<1x{f}x{out}x{out}xf32>"
    return f"""
func.func @conv(%x: {x}, %w: {w}) -> {y} {{
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : {y}
  %o = linalg.fill ins(%zero : f32) outs(%e : {y}) -> {y}
  %r = linalg.conv_2d_nchw_fchw {{dilations = dense<1> : tensor<2xi64>, strides = dense<{stride}> : tensor<2xi64>}}
       ins(%x, %w : {x}, {w}) outs(%o : {y}) -> {y}
  return %r : {y}
}}
"""
