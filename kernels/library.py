"""Built-in payload kernels: Linalg on tensors behind a memref function boundary."""
from __future__ import annotations

import numpy as np

from .base import ArgSpec, Kernel, KernelError

MATMUL_T_B_MAPS = (
    "indexing_maps = [affine_map<(m, n, k) -> (m, k)>, "
    "affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>]"
)


def _function(name: str, args: tuple[ArgSpec, ...], body: list[str], results: dict[str, str]) -> str:
    """Wrap a tensor body: memref args become tensors, results are written back.

    `results` maps an output argument name to the SSA tensor value to store in it.
    """
    sig = ", ".join(f"%{a.name}: {a.mlir_type}" for a in args)
    lines = [f"func.func @{name}({sig}) attributes {{llvm.emit_c_interface}} {{"]
    for a in args:
        access = "restrict writable" if a.is_output else "restrict"
        lines.append(f"  %{a.name}_t = bufferization.to_tensor %{a.name} {access} : {a.mlir_type} to {a.tensor_type}")
    lines += ["  " + line for line in body]
    for a in args:
        if a.name in results:
            lines.append(
                f"  bufferization.materialize_in_destination %{results[a.name]} in restrict writable %{a.name}"
                f" : ({a.tensor_type}, {a.mlir_type}) -> ()"
            )
    lines += ["  return", "}"]
    return "\n".join(lines) + "\n"


def tensor_function(kernel: Kernel) -> str:
    """The same built-in kernel with tensors at its boundary (inputs in, results returned), as a
    peer compiler such as IREE takes it: the inverse of `_function`'s wrapping."""
    if kernel.kind == "user":
        raise KernelError("only built-in kernels have a generated tensor form")
    head, *lines = kernel.payload.splitlines()
    ins = [a for a in kernel.args if not a.is_output]
    outs = [a for a in kernel.args if a.is_output]
    body, results = [], {}
    for line in lines[:-1]:  # the last line closes the function
        text = line.strip()
        if text.startswith("return"):
            continue
        if " = bufferization.to_tensor %" in text:
            name = text.split(" = ")[0][1:-2]  # %X_t -> X
            out = next((a for a in outs if a.name == name), None)
            if out is not None:  # an output's buffer becomes a fresh destination tensor
                body.append(f"  %{name}_t = tensor.empty() : {out.tensor_type}")
            continue
        if text.startswith("bufferization.materialize_in_destination"):
            value, dest = text.split()[1], text.split(" writable ")[1].split()[0]
            results[dest[1:]] = value
            continue
        body.append(line)
    sig = ", ".join(f"%{a.name}_t: {a.tensor_type}" for a in ins)
    types = ", ".join(a.tensor_type for a in outs)
    values = ", ".join(results[a.name] for a in outs)
    return "\n".join([f"func.func @{kernel.func_name}({sig}) -> ({types}) {{", *body,
                      f"  return {values} : {types}", "}"]) + "\n"


def _zero(out: ArgSpec) -> list[str]:
    return [
        "%zero = arith.constant 0.0 : f32",
        f"%init = linalg.fill ins(%zero : f32) outs(%{out.name}_t : {out.tensor_type}) -> {out.tensor_type}",
    ]


def _positive(dims: dict[str, int]) -> None:
    for k, v in dims.items():
        if not isinstance(v, int) or v <= 0:
            raise KernelError(f"dimension {k} must be a positive integer, got {v!r}")


def matmul(M: int, N: int, K: int, name: str = "matmul") -> Kernel:
    dims = dict(M=M, N=N, K=K)
    _positive(dims)
    a, b, c = ArgSpec("A", (M, K)), ArgSpec("B", (K, N)), ArgSpec("C", (M, N), is_output=True)
    body = _zero(c) + [
        f"%r = linalg.matmul ins(%A_t, %B_t : {a.tensor_type}, {b.tensor_type}) outs(%init : {c.tensor_type}) -> {c.tensor_type}"
    ]
    return Kernel(name, dims, _function(name, (a, b, c), body, {"C": "r"}), name, (a, b, c),
                  2 * M * N * K, K, ("linalg.fill", "linalg.matmul"),
                  lambda x: [x[0].astype(np.float64) @ x[1].astype(np.float64)], kind="matmul")


def matmul_transpose_b(M: int, N: int, K: int, name: str = "matmul_transpose_b") -> Kernel:
    """C = A @ B^T with B stored N x K, as in a Linear layer's weight."""
    dims = dict(M=M, N=N, K=K)
    _positive(dims)
    a, b, c = ArgSpec("A", (M, K)), ArgSpec("B", (N, K)), ArgSpec("C", (M, N), is_output=True)
    body = _zero(c) + [
        f"%r = linalg.matmul {MATMUL_T_B_MAPS} ins(%A_t, %B_t : {a.tensor_type}, {b.tensor_type})"
        f" outs(%init : {c.tensor_type}) -> {c.tensor_type}"
    ]
    return Kernel(name, dims, _function(name, (a, b, c), body, {"C": "r"}), name, (a, b, c),
                  2 * M * N * K, K, ("linalg.fill", "linalg.matmul"),
                  lambda x: [x[0].astype(np.float64) @ x[1].astype(np.float64).T],
                  kind="matmul_transpose_b")


def batch_matmul(B: int, M: int, N: int, K: int, name: str = "batch_matmul") -> Kernel:
    dims = dict(B=B, M=M, N=N, K=K)
    _positive(dims)
    a, b, c = ArgSpec("A", (B, M, K)), ArgSpec("B", (B, K, N)), ArgSpec("C", (B, M, N), is_output=True)
    body = _zero(c) + [
        f"%r = linalg.batch_matmul ins(%A_t, %B_t : {a.tensor_type}, {b.tensor_type}) outs(%init : {c.tensor_type}) -> {c.tensor_type}"
    ]
    return Kernel(name, dims, _function(name, (a, b, c), body, {"C": "r"}), name, (a, b, c),
                  2 * B * M * N * K, K, ("linalg.fill", "linalg.batch_matmul"),
                  lambda x: [np.matmul(x[0].astype(np.float64), x[1].astype(np.float64))],
                  kind="batch_matmul")


def conv2d(N: int, H: int, W: int, C: int, F: int, KH: int, KW: int,
           stride: int = 1, dilation: int = 1, name: str = "conv2d") -> Kernel:
    """NHWC input (H, W are input sizes, no padding), HWCF filter, NHWF output."""
    dims = dict(N=N, H=H, W=W, C=C, F=F, KH=KH, KW=KW, stride=stride, dilation=dilation)
    _positive(dims)
    OH = (H - dilation * (KH - 1) - 1) // stride + 1
    OW = (W - dilation * (KW - 1) - 1) // stride + 1
    if OH <= 0 or OW <= 0:
        raise KernelError(f"conv2d: a {KH}x{KW} filter (dilation {dilation}) does not fit a {H}x{W} input")
    i, f = ArgSpec("I", (N, H, W, C)), ArgSpec("Fl", (KH, KW, C, F))
    o = ArgSpec("O", (N, OH, OW, F), is_output=True)
    attrs = f"{{dilations = dense<{dilation}> : tensor<2xi64>, strides = dense<{stride}> : tensor<2xi64>}}"
    body = _zero(o) + [
        f"%r = linalg.conv_2d_nhwc_hwcf {attrs} ins(%I_t, %Fl_t : {i.tensor_type}, {f.tensor_type})"
        f" outs(%init : {o.tensor_type}) -> {o.tensor_type}"
    ]

    def reference(x: list[np.ndarray]) -> list[np.ndarray]:
        inp, flt = x[0].astype(np.float64), x[1].astype(np.float64)
        out = np.zeros((N, OH, OW, F))
        for kh in range(KH):
            for kw in range(KW):
                h0, w0 = kh * dilation, kw * dilation
                patch = inp[:, h0:h0 + stride * (OH - 1) + 1:stride, w0:w0 + stride * (OW - 1) + 1:stride, :]
                out += patch @ flt[kh, kw]
        return [out]

    return Kernel(name, dims, _function(name, (i, f, o), body, {"O": "r"}), name, (i, f, o),
                  2 * N * OH * OW * F * C * KH * KW, C * KH * KW, ("linalg.fill", "linalg.conv_2d_nhwc_hwcf"),
                  reference, kind="conv2d")


def matmul_bias_relu(M: int, N: int, K: int, name: str = "matmul_bias_relu") -> Kernel:
    """A fused layer: relu(A @ B + bias), the bias add and ReLU as linalg.generic consumers."""
    dims = dict(M=M, N=N, K=K)
    _positive(dims)
    a, b, bias = ArgSpec("A", (M, K)), ArgSpec("B", (K, N)), ArgSpec("bias", (N,))
    c = ArgSpec("C", (M, N), is_output=True)
    t = c.tensor_type
    body = _zero(c) + [
        f"%mm = linalg.matmul ins(%A_t, %B_t : {a.tensor_type}, {b.tensor_type}) outs(%init : {t}) -> {t}",
        "%biased = linalg.generic {indexing_maps = [affine_map<(m, n) -> (m, n)>, affine_map<(m, n) -> (n)>,"
        " affine_map<(m, n) -> (m, n)>], iterator_types = [\"parallel\", \"parallel\"]}"
        f" ins(%mm, %bias_t : {t}, {bias.tensor_type}) outs(%C_t : {t}) {{",
        "^bb0(%x: f32, %y: f32, %o: f32):",
        "  %s = arith.addf %x, %y : f32",
        "  linalg.yield %s : f32",
        f"}} -> {t}",
        "%r = linalg.generic {indexing_maps = [affine_map<(m, n) -> (m, n)>, affine_map<(m, n) -> (m, n)>],"
        " iterator_types = [\"parallel\", \"parallel\"]}"
        f" ins(%biased : {t}) outs(%C_t : {t}) {{",
        "^bb0(%x: f32, %o: f32):",
        "  %m = arith.maximumf %x, %zero : f32",
        "  linalg.yield %m : f32",
        f"}} -> {t}",
    ]
    return Kernel(name, dims, _function(name, (a, b, bias, c), body, {"C": "r"}), name, (a, b, bias, c),
                  2 * M * N * K + 2 * M * N, K, ("linalg.fill", "linalg.matmul", "linalg.generic", "linalg.generic"),
                  lambda x: [np.maximum(x[0].astype(np.float64) @ x[1].astype(np.float64) + x[2], 0.0)],
                  kind="matmul_bias_relu")


# Single-precision NumPy (OpenBLAS) versions of the matmul-like kernels: the
# baseline a user would otherwise call. Keyed by Kernel.kind.
NUMPY_BASELINES = {
    "matmul": lambda x: np.matmul(x[0], x[1], out=x[2]),
    "matmul_transpose_b": lambda x: np.matmul(x[0], x[1].T, out=x[2]),
    "batch_matmul": lambda x: np.matmul(x[0], x[1], out=x[2]),
    "matmul_bias_relu": lambda x: np.maximum(np.add(np.matmul(x[0], x[1], out=x[3]), x[2], out=x[3]), 0, out=x[3]),
}
