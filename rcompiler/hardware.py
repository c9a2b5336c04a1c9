"""Host CPU facts for proposers (detected once) and a measured FMA-throughput peak."""
from __future__ import annotations

import functools
import hashlib
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Hardware:
    model: str
    cores: int  # cores this process may use
    isa: tuple[str, ...]  # vector ISA extensions of interest, widest last
    vector_bits: int
    vector_registers: int
    l1d_bytes: int
    l2_bytes: int
    l3_bytes: int
    l1d_ways: int = 8  # associativity: rows of a column that L1 holds when rows are a way-size apart

    @property
    def l1d_way_bytes(self) -> int:
        """Addresses this far apart share an L1 set (the "critical stride")."""
        return self.l1d_bytes // self.l1d_ways

    @property
    def f32_lanes(self) -> int:
        return self.vector_bits // 32

    @property
    def fingerprint(self) -> str:
        text = repr((self.model, self.isa, self.l1d_bytes, self.l2_bytes, self.l3_bytes, platform.machine()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        return (f"{self.model}: {self.cores} core(s), {'/'.join(self.isa) or 'scalar'}, "
                f"{self.vector_bits}-bit vectors ({self.f32_lanes} f32 lanes, {self.vector_registers} registers), "
                f"L1d {self.l1d_bytes // 1024} KiB, L2 {self.l2_bytes // 1024} KiB, L3 {self.l3_bytes // 1024} KiB per core/shared")

    def to_dict(self) -> dict:
        return asdict(self) | {"fingerprint": self.fingerprint}


_ISA_ORDER = ("sse4_2", "avx", "fma", "avx2", "avx512f")


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return model, flags


def _size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def _caches() -> dict[str, int]:
    found: dict[str, int] = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = _size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified"):
            found[f"l{level}"] = size
            try:
                found[f"l{level}_ways"] = int((index / "ways_of_associativity").read_text())
            except (OSError, ValueError):
                pass
    return found


@functools.cache
def detect() -> Hardware:
    model, flags = _cpuinfo()
    isa = tuple(x for x in _ISA_ORDER if x in flags)
    bits = 512 if "avx512f" in flags else 256 if "avx" in flags else 128
    caches = _caches()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Hardware(model=model, cores=cores, isa=isa, vector_bits=bits,
                    vector_registers=32 if "avx512f" in flags else 16,
                    l1d_bytes=caches.get("l1", 32 * 1024), l2_bytes=caches.get("l2", 256 * 1024),
                    l3_bytes=caches.get("l3", 0), l1d_ways=caches.get("l1_ways") or 8)


def probe_chains(hw: Hardware) -> int:
    """Independent FMA chains for the probe: enough to hide the FMA latency on every port (4 cycles x
    2 ports on the hosts here), few enough that they and the three operands stay in registers (16
    chains spill on a 16-register AVX2 file, and the probe then reads half the peak)."""
    return min(16, hw.vector_registers - 4)


def fma_probe_payload(lanes: int, chains: int = 16, iterations: int = 1 << 18) -> str:
    """MLIR for `chains` independent vector FMA chains: enough to hide FMA latency."""
    vec = f"vector<{lanes}xf32>"
    accs = ", ".join(f"%a{i} = %x" for i in range(chains))
    types = ", ".join([vec] * chains)
    body = "\n".join(f"      %n{i} = vector.fma %a{i}, %y, %z : {vec}" for i in range(chains))
    sums = "\n".join(f"  %s{i} = arith.addf %s{i - 1}, %r#{i} : {vec}" for i in range(1, chains))
    return f"""
func.func @fma_probe(%in: memref<3x{lanes}xf32>, %out: memref<{lanes}xf32>) attributes {{llvm.emit_c_interface}} {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %n = arith.constant {iterations} : index
  %x = vector.load %in[%c0, %c0] : memref<3x{lanes}xf32>, {vec}
  %y = vector.load %in[%c1, %c0] : memref<3x{lanes}xf32>, {vec}
  %z = vector.load %in[%c2, %c0] : memref<3x{lanes}xf32>, {vec}
  %r:{chains} = scf.for %i = %c0 to %n step %c1 iter_args({accs}) -> ({types}) {{
{body}
      scf.yield {", ".join(f"%n{i}" for i in range(chains))} : {types}
  }}
  %s0 = arith.addf %r#0, %r#0 : {vec}
{sums}
  vector.store %s{chains - 1}, %out[%c0] : memref<{lanes}xf32>, {vec}
  return
}}
"""


def measure_fma_peak(min_time: float = 0.3, repeats: int = 3) -> float:
    """Single-core f32 FMA throughput in GFLOP/s, measured (call in a pinned worker)."""
    import numpy as np

    from rcompiler.jit import JitFunction
    from rcompiler.measure.builder import build
    from rcompiler.measure.timing import time_call

    hw = detect()
    lanes, chains, iterations = hw.f32_lanes, probe_chains(hw), 1 << 18
    built = build(fma_probe_payload(lanes, chains, iterations), None)
    if built.llvm_ir is None:
        raise RuntimeError(f"FMA probe failed to compile: {built.reason}")
    fn = JitFunction(built.llvm_ir, "fma_probe")
    inputs = np.full((3, lanes), 0.5, dtype=np.float32)
    inputs[1] = 1.0 - 1e-7
    inputs[2] = 1e-7
    call = fn.bind([inputs, np.zeros(lanes, np.float32)])
    flops = 2 * lanes * chains * iterations
    best = min(time_call(call, min_time=min_time).min for _ in range(repeats))
    return flops / best / 1e9
