"""A load test of an rcompiler artifact beside an ONNX Runtime session, in a process without MLIR:

    python -m bench.serving_load '{"library": "bert.so", "onnx": "bert.onnx", "inputs": NPZ,
                                    "clients": [1, 2, 4], "seconds": 10}'

For each client count, N threads call the model back to back for `seconds` (the artifact, then
ONNX Runtime, one session shared by the threads, one intra-op thread as the artifact has); each
output is checked against the first call's. Prints one JSON line: per server and client count,
calls/s and p50/p99 latency in ms.
"""
from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np


def _load(call, clients: int, seconds: float, expected: list[np.ndarray]) -> dict:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    wrong = [0] * clients
    stop = time.perf_counter() + seconds

    def client(i: int) -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            out = call()
            latencies[i].append(time.perf_counter() - start)
            if any(not np.array_equal(a, b) for a, b in zip(out, expected)):
                wrong[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    every = np.array([x for xs in latencies for x in xs])
    return {"calls": int(every.size), "calls_per_second": every.size / elapsed, "wrong": sum(wrong),
            "p50_ms": float(np.percentile(every, 50) * 1e3), "p99_ms": float(np.percentile(every, 99) * 1e3)}


def main() -> None:
    spec = json.loads(sys.argv[1])
    import onnxruntime as ort

    from rcompiler.runtime import load

    with np.load(spec["inputs"]) as data:
        arrays = list(data.values())
    model = load(spec["library"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(spec["onnx"], options, providers=["CPUExecutionProvider"])
    feed = dict(zip([i.name for i in session.get_inputs()], arrays))

    def ours():
        out = model(*arrays)
        return list(out) if isinstance(out, tuple) else [out]

    def theirs():
        return session.run(None, feed)[:1]  # the model's first output, as the artifact returns it

    servers = {"rcompiler artifact": ours, "ONNX Runtime": theirs}
    expected = {name: call() for name, call in servers.items()}
    report = {name: {} for name in servers}
    for clients in spec["clients"]:
        for name, call in servers.items():
            report[name][str(clients)] = _load(call, clients, spec["seconds"], expected[name])
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
