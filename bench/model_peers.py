"""Peers for the models table (bench/model_zoo.py), end to end on the same input:

    python -m bench.model_peers resnet18 --threads 1 2 --repeats 3

exports the model, prepares every peer (ONNX Runtime, PyTorch eager, torch.compile, IREE
from the ONNX file) and prints one line per peer: its time, and the largest difference of
its output from ONNX Runtime's (on the first thread count) relative to that output's
largest magnitude. Each peer is a `ModelPeer`: a `Peer` of peers.py (version, timer) that
can also give its outputs for the zoo's input. ONNX Runtime and PyTorch are held in one
pinned worker process each (bench/model_worker.py), so a model is loaded, and compiled,
once rather than at every timing; IREE is run by its tools, pinned the same way.
"""
from __future__ import annotations

import argparse
import atexit
import json
import queue
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import numpy as np

from . import model_zoo
from .peers import (INSTALL, ROOT, Peer, Skipped, _installed, _last_line, _run, _taskset, _tool, iree_compile,
                    iree_device, iree_timer, prepare_all, time_round)

REPEATS = 5
_SCRATCH = tempfile.TemporaryDirectory(prefix="rcompiler-model-peers-")  # inputs and outputs, removed at exit


def _scratch(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_SCRATCH.name))


@dataclass
class ModelPeer(Peer):
    fetch: Callable[[], list[np.ndarray]] | None = None  # the outputs for the zoo's input, in order
    stop: Callable[[], None] = lambda: None

    def outputs(self) -> list[np.ndarray]:
        return self.fetch()

    def close(self) -> None:
        self.stop()


def max_rel_diff(outputs: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """Largest |a - b| over each output, relative to the reference's largest |b| (an element-wise
    ratio explodes where a value is near 0)."""
    if len(outputs) != len(reference):
        raise ValueError(f"{len(outputs)} outputs, the reference has {len(reference)}")
    worst = 0.0
    for a, b in zip(outputs, reference):
        if a.size != b.size:
            raise ValueError(f"output of shape {a.shape}, the reference's is {b.shape}")
        a, b = a.astype(np.float64).reshape(b.shape), b.astype(np.float64)
        worst = max(worst, float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)))
    return worst


# --- the worker processes (ONNX Runtime, PyTorch)

class _Worker:
    """One pinned bench/model_worker.py process: a JSON line out, a JSON line back."""

    def __init__(self, what: str, spec: dict, threads: int, timeout: float):
        self.what, self.log = what, tempfile.TemporaryFile("w+")
        command = [*_taskset(threads), sys.executable, "-m", "bench.model_worker", json.dumps(spec)]
        try:
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                         text=True, cwd=ROOT)
        except OSError as err:
            raise Skipped(f"{what} cannot start: {err}") from None
        self.replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        atexit.register(self.stop)
        self.version = self._answer(timeout)["version"]

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.replies.put(line)
        self.replies.put(None)

    def _answer(self, timeout: float) -> dict:
        try:
            line = self.replies.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            raise Skipped(f"{self.what} took over {timeout:.0f} s") from None
        if line is None:
            self.stop()
            self.log.seek(0)
            raise Skipped(f"{self.what} failed: {_last_line(self.log.read())}")
        answer = json.loads(line)
        if "error" in answer:
            raise Skipped(f"{self.what} failed: {answer['error']}")
        return answer

    def ask(self, request: dict, timeout: float = 900) -> dict:
        if self.proc.poll() is not None:
            raise Skipped(f"{self.what} is no longer running")
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except OSError:  # it died since
            raise Skipped(f"{self.what} is no longer running") from None
        return self._answer(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # its own child, by its pid
            self.proc.wait()

    def peer(self, repeats: int, work_dir: Path) -> ModelPeer:
        def fetch() -> list[np.ndarray]:
            path = work_dir / "outputs.npz"
            self.ask({"do": "outputs", "path": str(path)})
            with np.load(path) as data:
                return [data[f"arr_{i}"] for i in range(len(data.files))]

        return ModelPeer(self.version, lambda: self.ask({"do": "time", "repeats": repeats})["seconds"],
                         fetch=fetch, stop=self.stop)


def _save_inputs(inputs: dict[str, np.ndarray], work_dir: Path) -> Path:
    path = work_dir / "inputs.npz"
    np.savez(path, **inputs)
    return path


def onnxruntime_peer(onnx_path: Path, inputs: dict[str, np.ndarray], threads: int = 1, repeats: int = REPEATS,
                     timeout: float = 1800) -> ModelPeer:
    """ONNX Runtime's CPU provider, intra-op threads = `threads`, inter-op 1, default graph optimizations."""
    if not _installed("onnxruntime"):
        raise Skipped(f"ONNX Runtime is not installed ({INSTALL})")
    work_dir = _scratch("onnxruntime-")
    spec = {"kind": "onnxruntime", "onnx": str(onnx_path), "inputs": str(_save_inputs(inputs, work_dir)),
            "threads": threads}
    return _Worker("ONNX Runtime", spec, threads, timeout).peer(repeats, work_dir)


def artifact_peer(library: Path, inputs: dict[str, np.ndarray], repeats: int = REPEATS,
                  timeout: float = 600) -> ModelPeer:
    """rcompiler's exported shared library (rcompiler.export), served by rcompiler.runtime, one thread,
    timed as ONNX Runtime is: a process of its own, outputs allocated by each call."""
    work_dir = _scratch("artifact-")
    spec = {"kind": "artifact", "library": str(library), "inputs": str(_save_inputs(inputs, work_dir))}
    return _Worker("rcompiler artifact", spec, 1, timeout).peer(repeats, work_dir)


def torch_model_peer(name: str, threads: int = 1, compiled: bool = False, repeats: int = REPEATS,
                     timeout: float = 3600) -> ModelPeer:
    """PyTorch eager or torch.compile (default mode) of the zoo's module, seeded as the ONNX export."""
    if not _installed("torch"):
        raise Skipped(f"PyTorch is not installed ({INSTALL})")
    spec = {"kind": "torch", "model": name, "threads": threads, "compiled": compiled}
    worker = _Worker("torch.compile" if compiled else "PyTorch eager", spec, threads, timeout)
    return worker.peer(repeats, _scratch("torch-"))


# --- IREE: the ONNX file through iree-import-onnx, then iree_peer's compile and timing

def iree_onnx_peer(onnx_path: Path, inputs: dict[str, np.ndarray], work_dir: Path, threads: int = 1,
                   repeats: int = REPEATS) -> ModelPeer:
    """Imports and compiles once per ONNX file into work_dir (a later call, another thread count,
    reuses the module); times with the real inputs as .npy files."""
    if not _installed("iree.compiler", "iree.runtime"):
        raise Skipped(f"IREE is not installed ({INSTALL})")
    onnx_path, work_dir = Path(onnx_path), Path(work_dir)
    if not onnx_path.exists():
        raise Skipped(f"no ONNX file {onnx_path}")
    work_dir.mkdir(parents=True, exist_ok=True)
    vmfb, record = work_dir / f"{onnx_path.stem}.vmfb", work_dir / f"{onnx_path.stem}.iree.json"
    if not (record.exists() and vmfb.exists() and vmfb.stat().st_mtime >= onnx_path.stat().st_mtime):
        mlir = work_dir / f"{onnx_path.stem}.mlir"
        _run("iree-import-onnx", [_tool("iree-import-onnx"), str(onnx_path), "-o", str(mlir)])
        signature = _signature(mlir)
        iree_compile(mlir, vmfb)
        mlir.unlink()  # the weights as text: twice the ONNX file
        record.write_text(json.dumps(signature))
    signature = json.loads(record.read_text())
    args = []
    for i, array in enumerate(inputs.values()):
        np.save(work_dir / f"in{i}.npy", array)
        args.append(f"--input=@{work_dir / f'in{i}.npy'}")
    func = signature["func"]

    def fetch() -> list[np.ndarray]:
        outs = [work_dir / f"out{i}.npy" for i in range(signature["results"])]
        _run("iree-run-module", [_tool("iree-run-module"), f"--module={vmfb}", f"--function={func}",
                                 *iree_device(threads), *args, *(f"--output=@{p}" for p in outs)])
        return [np.load(p) for p in outs]

    return ModelPeer(f"IREE {version('iree-base-compiler')}", iree_timer(vmfb, func, args, threads, repeats),
                     fetch=fetch)


def _signature(mlir: Path) -> dict:
    """The imported function's name and result count, from its first line (the weights follow)."""
    with open(mlir) as f:
        for line in f:
            if line.lstrip().startswith("func.func @"):
                name = line.split("@", 1)[1].split("(", 1)[0]
                return {"func": name, "results": line.rsplit("->", 1)[1].split("attributes")[0].count("vtensor<")}
    raise Skipped(f"iree-import-onnx wrote no function to {mlir.name}")


# --- every peer of one model

def makers(name: str, onnx_path: Path, work_dir: Path, threads: tuple[int, ...] = (1, 2),
           repeats: int = REPEATS) -> dict[str, Callable[[], ModelPeer]]:
    """The peers of a model by row name ("ONNX Runtime, 1 thread", ...), for peers.prepare_all."""
    inputs = model_zoo.inputs(name)
    out = {}
    for n in threads:
        suffix = f", {n} thread" + ("s" if n > 1 else "")
        out["ONNX Runtime" + suffix] = lambda n=n: onnxruntime_peer(onnx_path, inputs, n, repeats)
        out["PyTorch eager" + suffix] = lambda n=n: torch_model_peer(name, n, False, repeats)
        out["torch.compile" + suffix] = lambda n=n: torch_model_peer(name, n, True, repeats)
        out["IREE" + suffix] = lambda n=n: iree_onnx_peer(onnx_path, inputs, work_dir / "iree", n, repeats)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=sorted(model_zoo.MODELS))
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per round (the minimum is kept)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "rcompiler-model-peers",
                        help="exports and IREE modules are kept here and reused")
    parser.add_argument("--only", default="", help="comma-separated row prefixes, e.g. 'ONNX,IREE'")
    a = parser.parse_args(argv)
    work = a.work_dir / a.model
    onnx_path = work / f"{a.model}.onnx"
    try:
        exporter = model_zoo.export(a.model, onnx_path)
    except RuntimeError as err:
        print(f"{a.model}: {err}")
        return 1
    shapes = ", ".join(f"{k} {'x'.join(map(str, v.shape))} {v.dtype}" for k, v in model_zoo.inputs(a.model).items())
    print(f"{a.model}: {exporter} export, {onnx_path.stat().st_size / 1e6:.0f} MB; {shapes}", flush=True)
    wanted = {k: v for k, v in makers(a.model, onnx_path, work, tuple(a.threads), a.repeats).items()
              if not a.only or any(k.startswith(p.strip()) for p in a.only.split(","))}
    ready, skipped = prepare_all(wanted)
    best: dict[str, float] = {}
    for _ in range(a.rounds):
        time_round(ready, best, skipped)
    reference = None
    ref_name = next((k for k in ready if k.startswith("ONNX Runtime")), None)
    if ref_name:
        try:
            reference = ready[ref_name].outputs()
        except Skipped as reason:
            print(f"no reference: {reason}")
    for row in wanted:
        if row in skipped:
            print(f"{row:28} skipped: {skipped[row]}")
            continue
        peer = ready[row]
        try:
            diff = "reference" if row == ref_name else (
                f"max rel diff {max_rel_diff(peer.outputs(), reference):.1e}" if reference else "-")
        except (Skipped, ValueError) as reason:
            diff = f"outputs failed: {reason}"
        print(f"{row:28} {best[row] * 1e3:9.2f} ms  {diff:24} {peer.version}", flush=True)
    for peer in ready.values():
        peer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
