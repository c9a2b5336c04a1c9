"""The host's facts and the FMA-peak probe every "% of peak" is measured against."""
from __future__ import annotations

import re
import subprocess
from dataclasses import replace

import pytest

from rcompiler.export import _llvm_tool
from rcompiler.hardware import detect, fma_probe_payload, probe_chains
from rcompiler.jit import mlir_tool
from rcompiler.measure.builder import build

# (vector registers, vector bits, llc CPU): an AVX2 host (16 ymm) and an AVX-512 one (32 zmm).
HOSTS = [(16, 256, "x86-64-v3"), (32, 512, "x86-64-v4")]


def _probe_assembly(tmp_path, lanes: int, chains: int, cpu: str) -> str:
    built = build(fma_probe_payload(lanes, chains, iterations=64), None)
    assert built.llvm_ir is not None, built.reason
    (tmp_path / "p.mlir").write_text(built.llvm_ir)
    subprocess.run([mlir_tool("mlir-translate"), "--mlir-to-llvmir", str(tmp_path / "p.mlir"), "-o",
                    str(tmp_path / "p.ll")], check=True)
    subprocess.run([_llvm_tool("llc"), "-O3", f"-mcpu={cpu}", str(tmp_path / "p.ll"), "-o", str(tmp_path / "p.s")],
                   check=True)
    return (tmp_path / "p.s").read_text()


def _stack_traffic(assembly: str) -> int:
    """Registers spilled to the stack and reloaded (llc marks each such move)."""
    return len(re.findall(r"# \d+-byte (?:Folded )?(?:Spill|Reload)", assembly))


@pytest.mark.parametrize("registers,bits,cpu", HOSTS)
def test_the_fma_probe_keeps_every_chain_in_a_register(tmp_path, registers, bits, cpu):
    hw = replace(detect(), vector_registers=registers, vector_bits=bits)
    chains = probe_chains(hw)
    assert chains >= 8  # FMA latency 4 x 2 ports: fewer chains would read below the peak
    assembly = _probe_assembly(tmp_path, bits // 32, chains, cpu)
    assert len(re.findall(r"vfmadd\w+\s+%[yz]mm", assembly)) >= chains
    assert _stack_traffic(assembly) == 0


def test_sixteen_chains_spill_on_an_avx2_register_file(tmp_path):
    """What the probe did before on AVX2 hosts (it then read 46 of about 100 GFLOP/s on Zen 3)."""
    assert _stack_traffic(_probe_assembly(tmp_path, 8, 16, "x86-64-v3")) > 0


def test_detect_reads_the_vector_width_from_the_flags():
    hw = detect()
    flags = set(open("/proc/cpuinfo").read().split("flags")[1].split("\n")[0].split())
    assert hw.vector_bits == (512 if "avx512f" in flags else 256 if "avx" in flags else 128)
    assert hw.vector_registers == (32 if "avx512f" in flags else 16)
    assert hw.l1d_bytes > 0 and hw.l2_bytes > hw.l1d_bytes
    assert len(hw.fingerprint) == 16 and hw.fingerprint == detect().fingerprint
