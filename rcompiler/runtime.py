"""Load an exported artifact (rcompiler.export) and call it: NumPy in, NumPy out.

Nothing here imports MLIR or LLVM: a server needs only this module, NumPy and the library.

    model = rcompiler.runtime.load("model.so")
    logits = model(input_ids)                  # or model(input_ids, out=[buffer])

A call holds no state but its arguments (the library builds its descriptors on the caller's
stack, and ctypes releases the GIL around it), so threads may call one model at once.
"""
from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np

ABI_VERSION = 1
# CPU flags (as /proc/cpuinfo names them) that compiled code may use; an artifact records the
# ones its build host had, and a host missing any of them refuses it rather than die on SIGILL.
ISA_FLAGS = frozenset({
    "sse4_1", "sse4_2", "ssse3", "popcnt", "avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "lzcnt", "movbe",
    "avx_vnni", "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl", "avx512ifma", "avx512vbmi",
    "avx512_vbmi2", "avx512_vnni", "avx512_bitalg", "avx512_vpopcntdq", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_bf16", "amx_int8", "gfni", "vaes", "vpclmulqdq", "sha_ni",
})


class ArtifactError(RuntimeError):
    """The file is not an artifact this host can run; the message says why."""


class ModelCheckFailed(RuntimeError):
    """A run-time check of the model failed (an index out of range, a frontend's assert)."""


def host_isa() -> frozenset[str]:
    """The ISA flags of ISA_FLAGS that this host's CPU (as the kernel reports it) has."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags":
                return frozenset(value.split()) & ISA_FLAGS
    except OSError:
        pass
    return frozenset()


class Model:
    """A loaded artifact. `inputs` and `outputs` describe its arguments (name, shape, dtype);
    `metadata` holds what the export recorded (version, schedule, hardware, ISA)."""

    def __init__(self, library: ctypes.CDLL, metadata: dict, threads: int, path: Path):
        self._lib, self.metadata, self.path = library, metadata, path
        self.inputs, self.outputs = metadata["inputs"], metadata["outputs"]
        library.rc_create.restype = ctypes.c_void_p
        library.rc_create.argtypes = [ctypes.c_int]
        library.rc_run.restype = ctypes.c_int
        library.rc_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        library.rc_destroy.argtypes = [ctypes.c_void_p]
        library.rc_check_message.restype = ctypes.c_char_p
        library.rc_check_message.argtypes = [ctypes.c_int]
        self._handle = library.rc_create(threads)
        if not self._handle:
            raise ArtifactError(f"{path}: compiled for {metadata['threads']} thread(s), asked for {threads}")
        self.threads = threads

    def __call__(self, *inputs: np.ndarray, out: list[np.ndarray] | None = None):
        if len(inputs) != len(self.inputs):
            raise ValueError(f"{self.metadata['kernel']} takes {len(self.inputs)} input(s) "
                             f"({', '.join(a['name'] for a in self.inputs)}), got {len(inputs)}")
        arrays = [_checked(a, spec, "input") for a, spec in zip(inputs, self.inputs)]
        if out is None:
            out = [np.empty(spec["shape"], dtype=spec["dtype"]) for spec in self.outputs]
        elif len(out) != len(self.outputs):
            raise ValueError(f"{len(self.outputs)} output buffer(s) expected, got {len(out)}")
        else:
            out = [_checked(a, spec, "output", writable=True) for a, spec in zip(out, self.outputs)]
        ins = (ctypes.c_void_p * max(1, len(arrays)))(*[a.ctypes.data for a in arrays])
        outs = (ctypes.c_void_p * max(1, len(out)))(*[a.ctypes.data for a in out])
        code = self._lib.rc_run(self._handle, ins, outs)
        if code:
            message = self._lib.rc_check_message(code).decode()
            raise ModelCheckFailed(f"{self.metadata['kernel']}: {message}") if code > 0 else ValueError(message)
        return out[0] if len(out) == 1 else tuple(out)

    def close(self) -> None:
        if self._handle:
            self._lib.rc_destroy(self._handle)
            self._handle = None

    def __del__(self):
        if getattr(self, "_handle", None):
            self.close()

    def describe(self) -> str:
        m = self.metadata
        return (f"{m['kernel']} (rcompiler {m['rcompiler']}, {m['cpu']}, {m['threads']} thread(s)); "
                f"schedule {m['schedule'][:200]}")


def _checked(a, spec: dict, role: str, writable: bool = False) -> np.ndarray:
    a = np.asarray(a)
    want = np.dtype(spec["dtype"])
    if a.dtype != want:
        raise ValueError(f"{role} {spec['name']} must be {want}, got {a.dtype}")
    if list(a.shape) != spec["shape"]:
        raise ValueError(f"{role} {spec['name']} must have shape {tuple(spec['shape'])}, got {a.shape}")
    if writable and not (a.flags.c_contiguous and a.flags.writeable):
        raise ValueError(f"{role} {spec['name']} must be a writable C-contiguous array")
    return np.ascontiguousarray(a)


def read_metadata(path: str | Path) -> dict:
    """What an artifact records, after checking that it is one (without running its kernels)."""
    return _open(Path(path))[1]


def _check_elf(path: Path) -> None:
    """Refuse what the dynamic loader would crash on: a file shorter than its ELF headers say
    (dlopen maps the missing pages, and the first touch is a SIGBUS) or not an ELF library of
    this machine's architecture."""
    import platform
    import struct

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or len(head) < 64:
            raise ArtifactError(f"{path} is not a loadable shared library: not an ELF file")
        if head[4] != 2 or head[5] != 1:
            raise ArtifactError(f"{path} is not a loadable shared library: not a 64-bit little-endian ELF file")
        kind, machine = struct.unpack_from("<HH", head, 16)
        if kind != 3:  # ET_DYN
            raise ArtifactError(f"{path} is not a loadable shared library: ELF type {kind}, not a shared object")
        if machine != _ELF_MACHINES.get(platform.machine(), machine):
            raise ArtifactError(f"{path} is built for another architecture (ELF machine {machine}), "
                                f"this host is {platform.machine()}")
        phoff, shoff = struct.unpack_from("<QQ", head, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", head, 54)
        needed = max(phoff + phentsize * phnum, shoff + shentsize * shnum)
        if needed <= size:
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for i in range(phnum):  # each segment's bytes in the file
                _, _, offset, _, _, filesz = struct.unpack_from("<IIQQQQ", table, i * phentsize)
                needed = max(needed, offset + filesz)
    if size < needed:
        raise ArtifactError(f"{path} is truncated: {size} bytes of the {needed} its headers describe")

_ELF_MACHINES = {"x86_64": 62, "aarch64": 183}


def _open(path: Path) -> tuple[ctypes.CDLL, dict]:
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file")
    _check_elf(path)
    try:
        library = ctypes.CDLL(str(path.resolve()))
    except OSError as err:  # truncated, corrupt, another architecture
        raise ArtifactError(f"{path} is not a loadable shared library: {err}") from None
    try:
        library.rc_abi_version.restype = ctypes.c_int
        library.rc_metadata.restype = ctypes.c_char_p
        abi, text = library.rc_abi_version(), library.rc_metadata()
    except AttributeError:
        raise ArtifactError(f"{path} is a shared library but not an rcompiler artifact (no rc_metadata)") from None
    if abi != ABI_VERSION:
        raise ArtifactError(f"{path} was exported with artifact ABI {abi}; this runtime reads ABI {ABI_VERSION}")
    return library, json.loads(text)


def load(path: str | Path, threads: int | None = None) -> Model:
    """Load an artifact for calls with `threads` threads (default: what it was compiled for).
    Refused, with the reason, if it is not an artifact or needs ISA extensions this host lacks."""
    path = Path(path)
    library, metadata = _open(path)
    missing = sorted(set(metadata["isa"]) - host_isa())
    if missing:
        raise ArtifactError(f"{path} was compiled for {metadata['cpu']} and uses {', '.join(missing)}, "
                            "which this CPU does not have; export it again on (or for) this host")
    return Model(library, metadata, metadata["threads"] if threads is None else threads, path)
