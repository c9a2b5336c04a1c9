"""Payload kernels, available by name and shape (see `KERNELS`), or from a .mlir file."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

from . import library
from .base import ArgSpec, Kernel, KernelError
from .user import kernel_from_mlir, kernel_from_file


@dataclass(frozen=True)
class KernelEntry:
    build: Callable[..., Kernel]
    dims: tuple[str, ...]
    default: tuple[int, ...]
    about: str
    optional: int = 0  # trailing dims that may be omitted (conv stride, dilation)


KERNELS: dict[str, KernelEntry] = {
    "matmul": KernelEntry(library.matmul, ("M", "N", "K"), (256, 256, 256), "C = A @ B"),
    "matmul_transpose_b": KernelEntry(library.matmul_transpose_b, ("M", "N", "K"), (256, 256, 256),
                                      "C = A @ B^T, B stored N x K"),
    "batch_matmul": KernelEntry(library.batch_matmul, ("B", "M", "N", "K"), (8, 128, 128, 128),
                                "C[b] = A[b] @ B[b]"),
    "conv2d": KernelEntry(library.conv2d, ("N", "H", "W", "C", "F", "KH", "KW", "stride", "dilation"),
                          (1, 58, 58, 64, 64, 3, 3, 1, 1), "NHWC x HWCF convolution, no padding", optional=2),
    "matmul_bias_relu": KernelEntry(library.matmul_bias_relu, ("M", "N", "K"), (256, 256, 256),
                                    "relu(A @ B + bias): matmul with linalg.generic consumers"),
    # Model layers from the seed paper's benchmarks, scaled to 1-50 ms per run
    # of a good schedule on one core. Shapes follow the models' real widths.
    "llama3_attention": KernelEntry(lambda B, M, N, K: library.batch_matmul(B, M, N, K, "llama3_attention"),
                                    ("B", "M", "N", "K"), (8, 512, 512, 128),
                                    "Llama-3-8B attention scores Q @ K^T: 8 heads, 512 tokens, head_dim 128"),
    "llama3_mlp": KernelEntry(lambda M, N, K: library.matmul_transpose_b(M, N, K, "llama3_mlp"),
                              ("M", "N", "K"), (64, 2048, 4096),
                              "Llama-3-8B MLP up-projection slice: 64 tokens, hidden 4096, Linear weight N x K"),
    "deepseek_moe_expert": KernelEntry(lambda M, N, K: library.matmul_transpose_b(M, N, K, "deepseek_moe_expert"),
                                       ("M", "N", "K"), (32, 2048, 7168),
                                       "DeepSeek-R1 MoE expert projection: 32 routed tokens, hidden 7168, width 2048"),
    "flux_attention": KernelEntry(lambda B, M, N, K: library.batch_matmul(B, M, N, K, "flux_attention"),
                                  ("B", "M", "N", "K"), (4, 512, 1024, 128),
                                  "FLUX attention block scores: 4 heads, 512 x 1024 tokens, head_dim 128"),
    "flux_vae_conv": KernelEntry(lambda N, H, W, C, F, KH, KW, stride=1, dilation=1:
                                 library.conv2d(N, H, W, C, F, KH, KW, stride, dilation, "flux_vae_conv"),
                                 ("N", "H", "W", "C", "F", "KH", "KW", "stride", "dilation"),
                                 (1, 66, 66, 128, 128, 3, 3, 1, 1), "FLUX VAE decoder 3x3 conv, 128 channels, 64x64 output",
                                 optional=2),
}


def parse_shape(text: str) -> tuple[int, ...]:
    """'1024,1024,1024' or '1024x1024x1024' -> (1024, 1024, 1024)."""
    parts = re.split(r"[,x]", text.strip())
    if not all(p.strip().isdigit() for p in parts):
        raise KernelError(f"bad shape {text!r}: expected integers separated by commas, e.g. 1024,1024,1024")
    return tuple(int(p) for p in parts)


def get_kernel(name: str, shape: Sequence[int] | str | None = None) -> Kernel:
    """A built-in kernel by name; `shape` lists its dims in order (see KERNELS)."""
    if name not in KERNELS:
        raise KernelError(f"unknown kernel {name!r}; built-in kernels: {', '.join(KERNELS)}")
    entry = KERNELS[name]
    dims = entry.default if shape is None else (parse_shape(shape) if isinstance(shape, str) else tuple(shape))
    lo, hi = len(entry.dims) - entry.optional, len(entry.dims)
    if not lo <= len(dims) <= hi:
        want = ",".join(entry.dims[:lo]) + ("[," + ",".join(entry.dims[lo:]) + "]" if entry.optional else "")
        raise KernelError(f"kernel {name} takes shape {want}, got {len(dims)} value(s)")
    return entry.build(*dims)


__all__ = ["ArgSpec", "Kernel", "KernelError", "KERNELS", "get_kernel", "parse_shape",
           "kernel_from_mlir", "kernel_from_file"]
