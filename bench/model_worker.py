"""A pinned subprocess holding one prepared model of the zoo, for bench/model_peers.py:

    python -m bench.model_worker '{"kind": "onnxruntime", "onnx": PATH, "inputs": NPZ, "threads": 1}'
    python -m bench.model_worker '{"kind": "torch", "model": "bert", "threads": 1, "compiled": true}'
    python -m bench.model_worker '{"kind": "artifact", "library": "bert.so", "inputs": NPZ}'

It prepares the model once (loads the session, builds the module, torch.compile compiles on
the warm-up calls), replies {"version": ...}, then answers one JSON request a line on stdin:
{"do": "time", "repeats": N} -> {"seconds": best of N calls after a warm-up call};
{"do": "outputs", "path": P} -> the outputs saved to P (.npz, in order) -> {"ok": true}.
Errors reply {"error": one line}. It exits when stdin closes. Replies are the only lines on
its stdout: what the libraries print goes to stderr. Imports no MLIR bindings (an rcompiler
artifact is loaded by rcompiler.runtime, which needs none).
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def _onnxruntime(spec):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = spec["threads"]
    options.inter_op_num_threads = 1  # graph optimizations stay at their default, ORT_ENABLE_ALL
    session = ort.InferenceSession(spec["onnx"], options, providers=["CPUExecutionProvider"])
    with np.load(spec["inputs"]) as data:
        arrays = dict(data)
    wanted = [i.name for i in session.get_inputs()]
    # by name; positionally if the exporter renamed them
    feed = {n: arrays[n] for n in wanted} if set(wanted) <= set(arrays) else dict(zip(wanted, arrays.values()))

    def call():
        return session.run(None, feed)
    return call, list, f"ONNX Runtime {ort.__version__}"


def _torch(spec):
    import torch

    from .model_zoo import build

    torch.set_num_threads(spec["threads"])
    module, args = build(spec["model"])  # the zoo's seed: the ONNX file's very weights
    if spec["compiled"]:
        module = torch.compile(module)

    def call():
        with torch.inference_mode():
            return module(*args)

    def to_numpy(out):
        return [t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]
    return call, to_numpy, f"PyTorch {torch.__version__.split('+')[0]}" + (" compile" if spec["compiled"] else " eager")


def _artifact(spec):
    from rcompiler.runtime import load  # NumPy and the library: no MLIR in this process

    model = load(spec["library"])
    with np.load(spec["inputs"]) as data:
        arrays = list(data.values())

    def call():
        return model(*arrays)

    def to_numpy(out):
        return list(out) if isinstance(out, tuple) else [out]
    return call, to_numpy, f"rcompiler {model.metadata['rcompiler']} artifact"


def _best(call, repeats: int) -> float:
    call()  # warm-up: the process sat idle while the other peers ran
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def _one_line(err: Exception) -> str:
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:200]}"


def main() -> None:
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library prints go to stderr; stdout carries the replies alone
    spec = json.loads(sys.argv[1])
    try:
        call, to_numpy, version = {"onnxruntime": _onnxruntime, "torch": _torch, "artifact": _artifact}[spec["kind"]](spec)
        for _ in range(2):  # warm-up; torch.compile compiles here
            call()
        reply.write(json.dumps({"version": version}) + "\n")
    except Exception as err:  # noqa: BLE001 - the peer is skipped with this line
        reply.write(json.dumps({"error": _one_line(err)}) + "\n")
        return
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["do"] == "time":
                answer = {"seconds": _best(call, request["repeats"])}
            else:
                np.savez(request["path"], *to_numpy(call()))
                answer = {"ok": True}
        except Exception as err:  # noqa: BLE001
            answer = {"error": _one_line(err)}
        reply.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
