"""The ONNX door: an ONNX model to Linalg on tensors, as torch-mlir lowers it.

IREE's importer (`iree-import-onnx`) gives the torch dialect; IREE's `iree-opt` then
runs torch-mlir's `torch-onnx-to-torch-backend-pipeline` and
`torch-backend-to-linalg-on-tensors-backend-pipeline`. Both run as subprocesses:
IREE's compiler carries its own MLIR bindings, which cannot share a process with
ours. Needs the `onnx` extra: pip install -e ".[onnx]".
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

from rcompiler.kernels import KernelError

PIPELINE = ("builtin.module(torch-onnx-to-torch-backend-pipeline,"
            "torch-backend-to-linalg-on-tensors-backend-pipeline)")
IMPORTER = "iree.compiler.tools.import_onnx"
OPT = "iree.compiler.tools.scripts.iree_opt"


def available() -> bool:
    return importlib.util.find_spec("iree.compiler") is not None and importlib.util.find_spec("onnx") is not None


def import_onnx(path: str | Path, timeout: float = 600) -> str:
    """Linalg-on-tensors MLIR text for the ONNX model at `path` (static shapes needed)."""
    path = Path(path)
    if not path.is_file():
        raise KernelError(f"{path}: no such file")
    if not available():
        raise KernelError('ONNX models need the onnx extra (IREE\'s importer and torch-mlir pipelines): '
                          'pip install -e ".[onnx]"')
    with tempfile.TemporaryDirectory() as tmp:
        torch_ir, linalg_ir = Path(tmp) / "model.torch.mlir", Path(tmp) / "model.linalg.mlir"
        _run([sys.executable, "-m", IMPORTER, str(path), "-o", str(torch_ir)], "import", path, timeout)
        _run([sys.executable, "-m", OPT, f"--pass-pipeline={PIPELINE}", str(torch_ir), "-o", str(linalg_ir)],
             "lower to Linalg", path, timeout)
        return linalg_ir.read_text()


def _run(cmd: list[str], what: str, path: Path, timeout: float) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        raise KernelError(f"{path}: cannot {what}: " + (" | ".join(lines[-3:])[:600] or f"exit {done.returncode}"))
