"""Peers timed beside rcompiler on the same computation: IREE's default compile of the same
Linalg, PyTorch eager (and torch.compile) on the CPU, and TVM MetaSchedule tuned with a
given number of trials. A peer is prepared once (compiled, or tuned) and then timed in
rounds interleaved with rcompiler's schedules, each timing in a subprocess pinned to the
core rcompiler times on, with the thread count asked for. A peer that is not installed or
fails is a skipped row with a one-line reason, never a failure.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import numpy as np

from rcompiler.kernels.base import ArgSpec, Kernel
from rcompiler.kernels.library import tensor_function

INSTALL = 'pip install -e ".[peers]"'
ROOT = Path(__file__).resolve().parent.parent  # where `python -m bench.<peer>` finds the bench package


class Skipped(Exception):
    """A peer that cannot be timed here; the message is its one-line reason."""


@dataclass
class Peer:
    version: str
    timer: Callable[[], float]  # one timing, in seconds
    info: dict = field(default_factory=dict)  # what preparing it found (TVM's tuning curve)

    def time(self) -> float:
        return self.timer()


def _pin(threads: int) -> list[int]:
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[-threads:]  # the timing core first (the runner's), then the others


def _taskset(threads: int) -> list[str]:
    return ["taskset", "-c", ",".join(map(str, _pin(threads)))]


def _tool(name: str) -> str:
    return str(Path(sysconfig.get_paths()["scripts"]) / name)


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["?"])[-1][:200]


def _run(what: str, command: list[str], timeout: float = 1800, env: dict | None = None) -> str:
    """stdout of a peer's subprocess; a failure is Skipped with the last line it printed."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        raise Skipped(f"{what} took over {timeout:.0f} s") from None
    if done.returncode:
        raise Skipped(f"{what} failed: {_last_line(done.stderr)}")
    return done.stdout


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


# --- IREE: the same Linalg, default llvm-cpu pipeline for the host, timed by iree-benchmark-module

IREE_FLAGS = ["--iree-hal-target-device=local", "--iree-hal-local-target-device-backends=llvm-cpu",
              "--iree-llvmcpu-target-cpu=host"]


def iree_compile(src: Path, vmfb: Path) -> None:
    _run("iree-compile", [_tool("iree-compile"), *IREE_FLAGS, str(src), "-o", str(vmfb)])


def iree_device(threads: int) -> list[str]:
    return (["--device=local-sync"] if threads == 1 else
            ["--device=local-task", f"--task_topology_cpu_ids={','.join(map(str, _pin(threads)))}"])


def iree_timer(vmfb: Path, func: str, args: list[str], threads: int, repetitions: int = 5) -> Callable[[], float]:
    """Seconds of one call by iree-benchmark-module (the best repetition), pinned as the others."""
    command = [*_taskset(threads), _tool("iree-benchmark-module"), f"--module={vmfb}", f"--function={func}",
               *iree_device(threads), *args, f"--benchmark_repetitions={repetitions}", "--benchmark_format=json"]

    def timer() -> float:
        out = _run("iree-benchmark-module", command)
        runs = [b for b in json.loads(out[out.index("{"):])["benchmarks"] if b.get("run_type") == "iteration"]
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[runs[0]["time_unit"]]
        return min(b["real_time"] for b in runs) * scale

    return timer


def iree_peer(source: str, func: str, inputs: tuple[ArgSpec, ...], work_dir: Path, threads: int = 1,
              seed: int = 0) -> Peer:
    if not _installed("iree.compiler", "iree.runtime"):
        raise Skipped(f"IREE is not installed ({INSTALL})")
    work_dir.mkdir(parents=True, exist_ok=True)
    src, vmfb = work_dir / "iree.mlir", work_dir / "iree.vmfb"
    src.write_text(source)
    iree_compile(src, vmfb)
    rng = np.random.default_rng(seed)
    args = []
    for i, spec in enumerate(inputs):
        path = work_dir / f"iree_in{i}.npy"
        np.save(path, rng.uniform(-1, 1, spec.shape).astype(spec.dtype))
        args.append(f"--input=@{path}")
    return Peer(f"IREE {version('iree-base-compiler')}", iree_timer(vmfb, func, args, threads))


def iree_kernel(kernel: Kernel, work_dir: Path, threads: int = 1) -> Peer:
    """IREE on a built-in kernel's Linalg, with tensors at the boundary as IREE takes it."""
    return iree_peer(tensor_function(kernel), kernel.func_name, kernel.inputs, work_dir, threads)


# --- PyTorch on the CPU: the same block or kernel (bench/torch_blocks.py)

def torch_peer(model: str, sizes: dict, threads: int = 1, compiled: bool = False) -> Peer:
    if not _installed("torch"):
        raise Skipped(f"PyTorch is not installed ({INSTALL})")
    command = [*_taskset(threads), sys.executable, "-m", "bench.torch_blocks", model, json.dumps(sizes),
               str(threads), str(int(compiled))]
    name = "torch.compile" if compiled else "PyTorch eager"

    def timer() -> float:
        return json.loads(_run(name, command).strip().splitlines()[-1])["seconds"]

    return Peer(f"PyTorch {version('torch')}" + (" compile" if compiled else ""), timer)


def torch_kernel(kernel: Kernel, threads: int = 1) -> Peer:
    return torch_peer(kernel.kind, kernel.dims, threads)


# --- TVM MetaSchedule: the same computation in TE, tuned with `trials` measured schedules

def tvm_peer(kernel: Kernel, trials: int, work_dir: Path, threads: int = 1, timeout: float = 3600) -> Peer:
    """Tunes once (bench/tvm_peer.py; its log and database stay in work_dir, and a finished
    tuning is reused), then times the built library."""
    if not _installed("tvm"):
        raise Skipped(f"TVM is not installed ({INSTALL})")
    work_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TVM_NUM_THREADS=str(threads))
    args = [kernel.kind, json.dumps(kernel.dims), str(threads), str(work_dir)]
    summary = work_dir / f"tuned-{trials}.json"
    if not summary.exists():
        out = _run("TVM MetaSchedule", [sys.executable, "-m", "bench.tvm_peer", "tune", *args, str(trials)],
                   timeout, env)
        summary.write_text(out.strip().splitlines()[-1])
    info = json.loads(summary.read_text())
    command = [*_taskset(threads), sys.executable, "-m", "bench.tvm_peer", "time", *args]

    def timer() -> float:
        return json.loads(_run("TVM MetaSchedule", command, env=env).strip().splitlines()[-1])["seconds"]

    return Peer(info["version"], timer, info)


def prepare_all(makers: dict[str, Callable[[], Peer]]) -> tuple[dict[str, Peer], dict[str, str]]:
    """The peers that could be prepared, by row name, and a one-line reason for each that could not."""
    ready, skipped = {}, {}
    for name, make in makers.items():
        try:
            ready[name] = make()
        except Skipped as reason:
            skipped[name] = str(reason)
    return ready, skipped


def time_round(peers: dict[str, Peer], best: dict[str, float], skipped: dict[str, str]) -> None:
    """Time each peer once, keeping its minimum in `best`; a peer that fails is moved to `skipped`."""
    for name, peer in list(peers.items()):
        try:
            best[name] = min(best.get(name, float("inf")), peer.time())
        except Skipped as reason:
            skipped[name] = str(reason)
            del peers[name]
