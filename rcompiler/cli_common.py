"""Arguments shared by the command-line tools: which kernel to work on."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from rcompiler.kernels import KERNELS, Kernel, KernelError, get_kernel, kernel_from_mlir


def add_kernel_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mlir_file", nargs="?", help="an MLIR module with Linalg ops (or an ONNX model, with the "
                        "onnx extra) to tune, instead of --kernel")
    parser.add_argument("--kernel", choices=sorted(KERNELS), help="a built-in kernel")
    parser.add_argument("--shape", help="the kernel's dims, comma separated (e.g. 1024,1024,1024); "
                        + "; ".join(f"{k}: {','.join(e.dims)}" for k, e in KERNELS.items() if not k.startswith(("llama", "deepseek", "flux"))))
    parser.add_argument("--func", help="entry function of the MLIR file (default: its only public function "
                        "with Linalg ops)")


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    from rcompiler.kernels.models import MODELS

    parser.add_argument("--model", choices=sorted(MODELS),
                        help="a built-in model block, tuned as a module: " + "; ".join(
                            f"{k}: {e.about}" for k, e in MODELS.items()))


def program_from_args(args: argparse.Namespace):
    """The input split into tasks (--model, or an MLIR or ONNX file, read once), else None for a
    built-in kernel. A program of fewer than two tasks is tuned as its `original` kernel."""
    from rcompiler.kernels.models import MODELS
    from rcompiler.kernels.module import load_program

    if getattr(args, "model", None):
        if args.mlir_file or args.kernel or args.shape:
            raise KernelError("--model names the whole input: give no MLIR file, --kernel or --shape with it")
        return load_program(MODELS[args.model].build(), name=args.model)
    if args.mlir_file and not args.kernel and not args.shape:
        path = Path(args.mlir_file)
        return load_program(read_module(path), args.func, name=path.stem)
    return None


def read_module(path: Path) -> str:
    """MLIR text from a .mlir file, or from an ONNX model through the ONNX door."""
    if not path.is_file():
        raise KernelError(f"{path}: no such file")
    if path.suffix == ".onnx":
        from rcompiler.onnx_import import import_onnx

        return import_onnx(path)
    return path.read_text()


def kernel_from_args(args: argparse.Namespace) -> Kernel:
    if args.mlir_file and args.kernel:
        raise KernelError("give either an MLIR file or --kernel, not both")
    if args.mlir_file:
        if args.shape:
            raise KernelError("--shape applies to built-in kernels; an MLIR file carries its own shapes")
        return kernel_from_mlir(read_module(Path(args.mlir_file)), args.func, name=Path(args.mlir_file).stem)
    if not args.kernel:
        raise KernelError("nothing to work on: pass an MLIR file or --kernel NAME (see --help)")
    return get_kernel(args.kernel, args.shape)


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)
