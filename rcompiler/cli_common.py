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
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=DIMS",
                        help="static shape for an ONNX model's input with dynamic dims, e.g. x=1x3x224x224 "
                             "(repeat for each such input)")


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

    shapes = input_shapes_from_args(args)
    if getattr(args, "model", None):
        if args.mlir_file or args.kernel or args.shape or shapes:
            raise KernelError("--model names the whole input: give no MLIR file, --kernel, --shape or "
                              "--input-shape with it")
        return load_program(MODELS[args.model].build(), name=args.model)
    if args.mlir_file and not args.kernel and not args.shape:
        path = Path(args.mlir_file)
        return load_program(read_module(path, shapes), args.func, name=path.stem)
    return None


def read_module(path: Path, input_shapes: dict[str, tuple[int, ...]] | None = None) -> str:
    """MLIR text from a .mlir file, or from an ONNX model through the ONNX door (with
    `input_shapes` for its dynamic inputs)."""
    if not path.is_file():
        raise KernelError(f"{path}: no such file")
    if path.suffix == ".onnx":
        from rcompiler.onnx_import import import_onnx

        return import_onnx(path, input_shapes=input_shapes)
    if input_shapes:
        raise KernelError(f"input shapes apply to ONNX models; {path} carries its own shapes")
    return path.read_text()


def input_shapes_from_args(args: argparse.Namespace) -> dict[str, tuple[int, ...]]:
    """{name: dims} from the repeated --input-shape NAME=DIMS (e.g. x=1x3x224x224)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for item in getattr(args, "input_shape", None) or []:
        name, _, dims = item.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.split("x"))
        except ValueError:
            shape = ()
        if not name or not shape or min(shape) < 1:
            raise KernelError(f"--input-shape {item}: give NAME=DIMS with positive dims, e.g. x=1x3x224x224")
        if name in shapes:
            raise KernelError(f"--input-shape gives input {name!r} twice")
        shapes[name] = shape
    return shapes


def kernel_from_args(args: argparse.Namespace) -> Kernel:
    if args.mlir_file and args.kernel:
        raise KernelError("give either an MLIR file or --kernel, not both")
    if args.mlir_file:
        if args.shape:
            raise KernelError("--shape applies to built-in kernels; an MLIR file carries its own shapes")
        return kernel_from_mlir(read_module(Path(args.mlir_file), input_shapes_from_args(args)), args.func,
                                name=Path(args.mlir_file).stem)
    if not args.kernel:
        raise KernelError("nothing to work on: pass an MLIR file or --kernel NAME (see --help)")
    if input_shapes_from_args(args):
        raise KernelError("--input-shape applies to ONNX models; use --shape for a built-in kernel")
    return get_kernel(args.kernel, args.shape)


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)
