"""A model's weights as parameters: arrays on disk, arguments of the program.

An exported model carries its weights as dense constants in the IR (440 MB of them for
BERT-base). Left there, every candidate would re-parse them, every task would hold its
layer's weights as literals (so identical layers could never share one tuned task), and
every worker would receive the text. Instead each large constant of the entry function
becomes a trailing argument, a *parameter*: its values are stored once, by content, in
an .npy file under the cache folder, and the arguments that name it load them (memory
mapped) wherever the program runs.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
from pathlib import Path

import numpy as np

# A constant with fewer elements stays in the IR (shape-like constants, iotas, scalars'
# tensors); so does a splat of any size, which costs nothing to write down.
HOIST_MIN_ELEMENTS = 64


def cache_dir() -> Path:
    """Where parameters are stored: $RCOMPILER_CACHE, else ~/.cache/rcompiler."""
    root = os.environ.get("RCOMPILER_CACHE") or Path.home() / ".cache" / "rcompiler"
    return Path(root) / "params"


def path_of(digest: str) -> Path:
    return cache_dir() / f"{digest}.npy"


def store(array: np.ndarray) -> str:
    """Write `array` under its content hash (once); returns the hash, which names it."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(array.dtype.str.encode() + repr(array.shape).encode() + array.tobytes()).hexdigest()
    digest = digest[:32]
    path = path_of(digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        with open(partial, "wb") as f:
            np.save(f, array)
        partial.replace(path)  # atomic: a reader never sees half a file
    return digest


@functools.lru_cache(maxsize=None)
def load(digest: str) -> np.ndarray:
    """A stored parameter, memory mapped copy-on-write (the program may be handed a writable
    buffer; the file is never changed). Loaded once per process."""
    path = path_of(digest)
    try:
        return np.load(path, mmap_mode="c")
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"parameter file {path} is missing or unreadable ({err}); load the model again "
                                "to store its weights") from None


def hoist_constants(module, func) -> list[np.ndarray]:
    """Turn the large constants at the top level of `func` into trailing arguments of it,
    in place; returns their values, in argument order."""
    from mlir import ir

    block = func.regions[0].blocks[0]
    values = []
    for op in list(block.operations):
        if op.name != "arith.constant" or not isinstance(op.result.type, ir.RankedTensorType):
            continue
        attr = op.attributes["value"]
        if not isinstance(attr, ir.DenseElementsAttr):
            attr = _dense(ir, attr)
            if attr is None:
                continue
        if attr.is_splat or math.prod(ir.RankedTensorType(op.result.type).shape) < HOIST_MIN_ELEMENTS:
            continue
        values.append(_array(ir, attr))
        arg = block.add_argument(op.result.type, op.location)
        op.result.replace_all_uses_with(arg)
        op.erase()
    if values:
        ftype = ir.FunctionType(ir.TypeAttr(func.attributes["function_type"]).value)
        inputs = list(ftype.inputs) + [a.type for a in list(block.arguments)[len(ftype.inputs):]]
        func.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(inputs, list(ftype.results)))
    return values


def _dense(ir, attr):
    try:
        return ir.DenseElementsAttr(attr)
    except (TypeError, ValueError):
        return None  # dense_resource and other forms stay as they are


def _array(ir, attr) -> np.ndarray:
    shape = tuple(ir.RankedTensorType(attr.type).shape)
    element = ir.RankedTensorType(attr.type).element_type
    if isinstance(element, ir.IntegerType) and ir.IntegerType(element).width == 8:
        ints = ir.DenseIntElementsAttr(attr)  # booleans, widened to bytes
        return np.array([ints[i] for i in range(len(ints))], dtype=np.int8).reshape(shape)
    return np.array(attr, copy=True).reshape(shape)
