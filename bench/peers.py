"""Peers timed beside rcompiler on the same computation: IREE's default compile of the same
Linalg, and PyTorch eager (and torch.compile) on the CPU. Each runs in a subprocess pinned
to the core rcompiler times on, with the thread count asked for. A peer that is not
installed is a skipped row with a one-line reason, never a failure."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np

from rcompiler.kernels.base import ArgSpec


def _pin(threads: int) -> list[int]:
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[-threads:]  # the timing core first (the runner's), then the others


def _tool(name: str) -> str:
    return str(Path(sysconfig.get_paths()["scripts"]) / name)


def iree_version() -> str | None:
    if importlib.util.find_spec("iree.compiler") is None or importlib.util.find_spec("iree.runtime") is None:
        return None
    from importlib.metadata import version

    return version("iree-base-compiler")


def iree(source: str, func: str, inputs: tuple[ArgSpec, ...], threads: int = 1, seed: int = 0) -> dict:
    """IREE's default llvm-cpu compile for the host CPU, timed by iree-benchmark-module."""
    found = iree_version()
    if found is None:
        return {"skipped": 'IREE is not installed (pip install -e ".[peers]")'}
    with tempfile.TemporaryDirectory() as tmp:
        src, vmfb = Path(tmp) / "m.mlir", Path(tmp) / "m.vmfb"
        src.write_text(source)
        done = subprocess.run([_tool("iree-compile"), "--iree-hal-target-device=local",
                               "--iree-hal-local-target-device-backends=llvm-cpu", "--iree-llvmcpu-target-cpu=host",
                               str(src), "-o", str(vmfb)], capture_output=True, text=True, timeout=1800)
        if done.returncode:
            return {"skipped": "iree-compile failed: " + done.stderr.strip().splitlines()[-1][:200]}
        rng = np.random.default_rng(seed)
        args = []
        for i, spec in enumerate(inputs):
            path = Path(tmp) / f"in{i}.npy"
            np.save(path, rng.uniform(-1, 1, spec.shape).astype(spec.dtype))
            args.append(f"--input=@{path}")
        device = (["--device=local-sync"] if threads == 1 else
                  ["--device=local-task", f"--task_topology_cpu_ids={','.join(map(str, _pin(threads)))}"])
        done = subprocess.run(["taskset", "-c", ",".join(map(str, _pin(threads))), _tool("iree-benchmark-module"),
                               f"--module={vmfb}", f"--function={func}", *device, *args,
                               "--benchmark_repetitions=5", "--benchmark_format=json"],
                              capture_output=True, text=True, timeout=1800)
        if done.returncode:
            return {"skipped": "iree-benchmark-module failed: " + (done.stderr.strip().splitlines() or ["?"])[-1][:200]}
        runs = [b for b in json.loads(done.stdout[done.stdout.index("{"):])["benchmarks"]
                if b.get("run_type") == "iteration"]
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[runs[0]["time_unit"]]
        return {"seconds": min(b["real_time"] for b in runs) * scale, "version": f"IREE {found}"}


def torch_block(model: str, sizes: dict, threads: int = 1, compiled: bool = False) -> dict:
    """PyTorch on the CPU running the same block (see bench/torch_blocks.py)."""
    if importlib.util.find_spec("torch") is None:
        return {"skipped": 'PyTorch is not installed (pip install -e ".[peers]")'}
    done = subprocess.run(["taskset", "-c", ",".join(map(str, _pin(threads))), sys.executable, "-m",
                           "bench.torch_blocks", model, json.dumps(sizes), str(threads), str(int(compiled))],
                          capture_output=True, text=True, timeout=1800)
    if done.returncode:
        return {"skipped": "PyTorch failed: " + (done.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])
