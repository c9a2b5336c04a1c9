"""rcompiler: a reasoning compiler for MLIR Linalg kernels on the host CPU.

    import rcompiler
    result = rcompiler.tune("matmul", shape=(512, 512, 512), budget=16)
    fn = rcompiler.compile("matmul", result.best_schedule, shape=(512, 512, 512))
    C = fn(A, B)
"""
from .api import apply_best, compile, import_onnx, tune  # noqa: A004
from .export import export

__version__ = "0.1.0"
__all__ = ["tune", "compile", "apply_best", "import_onnx", "export"]
