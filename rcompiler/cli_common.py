"""Arguments shared by the command-line tools: which kernel to work on."""
from __future__ import annotations

import argparse
import sys

from rcompiler.kernels import KERNELS, Kernel, KernelError, get_kernel, kernel_from_file


def add_kernel_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mlir_file", nargs="?", help="an MLIR module with Linalg ops to tune (instead of --kernel)")
    parser.add_argument("--kernel", choices=sorted(KERNELS), help="a built-in kernel")
    parser.add_argument("--shape", help="the kernel's dims, comma separated (e.g. 1024,1024,1024); "
                        + "; ".join(f"{k}: {','.join(e.dims)}" for k, e in KERNELS.items() if not k.startswith(("llama", "deepseek", "flux"))))
    parser.add_argument("--func", help="function to tune in the MLIR file (default: the first with Linalg ops)")


def kernel_from_args(args: argparse.Namespace) -> Kernel:
    if args.mlir_file and args.kernel:
        raise KernelError("give either an MLIR file or --kernel, not both")
    if args.mlir_file:
        if args.shape:
            raise KernelError("--shape applies to built-in kernels; an MLIR file carries its own shapes")
        return kernel_from_file(args.mlir_file, args.func)
    if not args.kernel:
        raise KernelError("nothing to work on: pass an MLIR file or --kernel NAME (see --help)")
    return get_kernel(args.kernel, args.shape)


def fail(message: str, code: int = 2) -> "NoReturn":  # noqa: F821
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)
