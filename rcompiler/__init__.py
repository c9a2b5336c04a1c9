"""rcompiler: a reasoning compiler for MLIR Linalg kernels on the host CPU."""
__version__ = "0.1.0"
