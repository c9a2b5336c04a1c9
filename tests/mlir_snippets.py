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


def conv_nhwc_bias_relu(size: int, c: int, f: int) -> str:
    """relu(conv + bias) in NHWC with a 3x3 filter, the bias and ReLU in one generic after the conv."""
    out = size - 2
    x, w, y = f"tensor<1x{size}x{size}x{c}xf32>", f"tensor<3x3x{c}x{f}xf32>", f"tensor<1x{out}x{out}x{f}xf32>"
    ident = "affine_map<(a, b, c, d) -> (a, b, c, d)>"
    return f"""
func.func @conv_bias_relu(%x: {x}, %w: {w}, %b: tensor<{f}xf32>) -> {y} {{
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : {y}
  %o = linalg.fill ins(%zero : f32) outs(%e : {y}) -> {y}
  %c = linalg.conv_2d_nhwc_hwcf ins(%x, %w : {x}, {w}) outs(%o : {y}) -> {y}
  %r = linalg.generic {{indexing_maps = [{ident}, affine_map<(a, b, c, d) -> (d)>, {ident}],
                       iterator_types = ["parallel", "parallel", "parallel", "parallel"]}}
       ins(%c, %b : {y}, tensor<{f}xf32>) outs(%e : {y}) {{
  ^bb0(%v: f32, %bias: f32, %out: f32):
    %s = arith.addf %v, %bias : f32
    %m = arith.maximumf %s, %zero : f32
    linalg.yield %m : f32
  }} -> {y}
  return %r : {y}
}}
"""


def depthwise_nchw_relu6(c: int, size: int, stride: int = 1) -> str:
    """A MobileNet block's depthwise 3x3 conv as torch exports it: NCHW, on a padded image, then ReLU6."""
    out = (size - 3) // stride + 1
    x, w, y = f"tensor<1x{c}x{size}x{size}xf32>", f"tensor<{c}x3x3xf32>", f"tensor<1x{c}x{out}x{out}xf32>"
    ident = "affine_map<(a, b, c, d) -> (a, b, c, d)>"
    return f"""
func.func @dw(%x: {x}, %w: {w}) -> {y} {{
  %zero = arith.constant 0.0 : f32
  %six = arith.constant 6.0 : f32
  %e = tensor.empty() : {y}
  %o = linalg.fill ins(%zero : f32) outs(%e : {y}) -> {y}
  %c = linalg.depthwise_conv_2d_nchw_chw {{dilations = dense<1> : vector<2xi64>, strides = dense<{stride}> : vector<2xi64>}}
       ins(%x, %w : {x}, {w}) outs(%o : {y}) -> {y}
  %r = linalg.generic {{indexing_maps = [{ident}, {ident}], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}}
       ins(%c : {y}) outs(%e : {y}) {{
  ^bb0(%v: f32, %out: f32):
    %lo = arith.maximumf %v, %zero : f32
    %hi = arith.minimumf %lo, %six : f32
    linalg.yield %hi : f32
  }} -> {y}
  return %r : {y}
}}
"""
