"""What the measurement harness needs to know about a payload kernel."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# Reference outputs from input arrays; None means "use the naive lowering".
Reference = Callable[[list[np.ndarray]], list[np.ndarray]]


class KernelError(ValueError):
    """Bad kernel input: unknown kernel, bad shape, unsupported MLIR."""


@dataclass(frozen=True)
class ArgSpec:
    """One memref argument of the payload function."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    is_output: bool = False
    # An integer input used as an index: test values are drawn from [0, bound), where every
    # index is valid (an embedding lookup's ids, below the vocabulary size).
    bound: int | None = None
    # A parameter (a model's weight, kernels/params.py): the content hash its values are stored
    # under; every call gets them, and the caller passes only the other inputs.
    data: str | None = None

    @property
    def is_param(self) -> bool:
        return self.data is not None

    @property
    def mlir_type(self) -> str:
        return f"memref<{'x'.join(map(str, self.shape))}x{_MLIR_DTYPES[self.dtype]}>"

    @property
    def tensor_type(self) -> str:
        return f"tensor<{'x'.join(map(str, self.shape))}x{_MLIR_DTYPES[self.dtype]}>"

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


# Element types a kernel's arguments may have, by their MLIR name; booleans are stored as bytes
# (kernels/booleans.py), as NumPy stores them.
NUMPY_DTYPES = {"f32": "float32", "f64": "float64", "i64": "int64", "i32": "int32", "i8": "int8", "i1": "bool"}
_MLIR_DTYPES = {v: k for k, v in NUMPY_DTYPES.items()} | {"bool": "i8"}
# Integer inputs that index nothing take these values: what masks and flags hold.
UNBOUNDED_INTEGERS = 2


@dataclass(frozen=True)
class Kernel:
    """A payload: MLIR text whose function takes memrefs and writes its outputs.

    The body works on tensors (bufferization.to_tensor at the boundary) so
    tensor-level transforms (pack, pad, decompose) apply; the rendered
    transform script bufferizes at the end.
    """

    name: str
    dims: dict[str, int]
    payload: str
    func_name: str
    args: tuple[ArgSpec, ...]
    flops: int
    reduction_length: int
    ops: tuple[str, ...]  # linalg op names in the payload, in order
    reference: Reference | None = field(default=None, compare=False, repr=False)
    kind: str = "user"  # the computation (matmul, conv2d, ...) for built-ins; "user" for .mlir files
    # Timed with its inputs out of the cache: a task of a program whose data outgrow it.
    cold_cache: bool = False

    @property
    def structure(self):
        """Loop structure of every Linalg op (see kernels.structure)."""
        from .structure import analyze

        return analyze(self.payload)

    @property
    def main_index(self) -> int:
        """The op that does the work: the one with the most arithmetic."""
        ops = self.structure
        return max(range(len(ops)), key=lambda i: ops[i].flops)

    @property
    def inputs(self) -> tuple[ArgSpec, ...]:
        """What a caller passes: the arguments that are neither outputs nor parameters."""
        return tuple(a for a in self.args if not a.is_output and not a.is_param)

    @property
    def params(self) -> tuple[ArgSpec, ...]:
        return tuple(a for a in self.args if a.is_param)

    @property
    def outputs(self) -> tuple[ArgSpec, ...]:
        return tuple(a for a in self.args if a.is_output)

    @property
    def shape_label(self) -> str:
        return "x".join(str(v) for v in self.dims.values())

    @property
    def label(self) -> str:
        return f"{self.name}[{self.shape_label}]"

    @property
    def fingerprint(self) -> str:
        """Stable across machines: a hash of the payload text, its ABI and the version of the code
        schedules compile to (rcompiler.codegen)."""
        from rcompiler.codegen import version

        text = self.payload + "|" + self.func_name + "|" + repr([(a.shape, a.dtype, a.is_output) for a in self.args])
        if self.params:  # the values a program was verified with
            text += "|" + ",".join(a.data for a in self.params)
        text += f"|codegen {version(self.payload)}"
        text += "|cold" if self.cold_cache else ""  # measured differently: its own measurements
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def tolerance(self) -> float:
        """Allowed max error relative to max |reference|, for f32 accumulation.

        Rounding error of a length-K f32 sum grows like sqrt(K) in practice and
        K in the worst case; 2**-23 * 32 * sqrt(K) is loose for reassociated
        sums yet far below the error of dropping a single term (about 1/sqrt(K)).
        """
        eps = float(np.finfo(np.float32).eps)
        return 32 * eps * max(1.0, float(np.sqrt(self.reduction_length)))

    def make_inputs(self, seed: int = 0) -> list[np.ndarray]:
        return make_arrays(self.args, seed)


CACHE_LINE = 64


def aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised array whose data starts on a cache line, as the buffers of a framework
    (PyTorch, IREE, MLIR's own allocations) do. NumPy's start wherever malloc puts them (16, 32 or
    48 bytes into a line, varying from process to process): then every 64-byte vector load spans
    two lines, and the same code times differently in different worker processes."""
    dtype = np.dtype(dtype)
    nbytes = max(1, math.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + CACHE_LINE, dtype=np.uint8)
    skip = -raw.ctypes.data % CACHE_LINE
    return raw[skip:skip + nbytes].view(dtype)[:math.prod(shape)].reshape(shape)


def param_array(arg: ArgSpec) -> np.ndarray:
    """A parameter's stored values (shared by every call in the process), on a cache line."""
    from .params import load

    array = load(arg.data)
    if array.shape != arg.shape or array.dtype != np.dtype(arg.dtype):
        raise ValueError(f"parameter {arg.name} ({arg.data}) holds {array.dtype}{list(array.shape)}, "
                         f"not {arg.dtype}{list(arg.shape)}")
    if array.ctypes.data % CACHE_LINE:
        aligned = aligned_empty(arg.shape, arg.dtype)
        aligned[...] = array
        return aligned
    return array


def make_arrays(args: tuple[ArgSpec, ...], seed: int = 0) -> list[np.ndarray]:
    """Arrays for every argument, each starting on a cache line: random inputs (floats in
    [-1, 1), integers in [0, bound), booleans either way), outputs filled with NaN (integers with
    their most negative value) so a kernel that forgets to write an element is caught."""
    rng = np.random.default_rng(seed)
    arrays = []
    for arg in args:
        array = aligned_empty(arg.shape, arg.dtype)
        kind = np.dtype(arg.dtype).kind
        if arg.is_param:
            arrays.append(param_array(arg))
            continue
        if arg.is_output:
            array[...] = np.nan if kind == "f" else (True if kind == "b" else np.iinfo(arg.dtype).min)
        elif kind == "f":
            array[...] = rng.uniform(-1.0, 1.0, arg.shape).astype(arg.dtype)
        elif kind == "b":
            array[...] = rng.integers(0, 2, arg.shape).astype(bool)
        else:
            array[...] = rng.integers(0, arg.bound or UNBOUNDED_INTEGERS, arg.shape).astype(arg.dtype)
        arrays.append(array)
    return arrays
