"""TVM MetaSchedule on a built-in kernel: the same computation in TE, tuned with a given number
of trials (its evolutionary search with the XGBoost cost model), the best schedule built into
WORK_DIR/best.so:

    python -m bench.tvm_peer tune matmul '{"M": 512, "N": 512, "K": 512}' THREADS WORK_DIR TRIALS
prints {"version": ..., "trials": ..., "curve": [best seconds after each trial, by TVM's runner]};
    python -m bench.tvm_peer time matmul '{"M": 512, ...}' THREADS WORK_DIR
loads best.so and prints {"seconds": ...}, timed by TVM's own evaluator on the first core this
process may use. TVM_NUM_THREADS is set from THREADS before tvm is imported.
"""
import json
import os
import sys
import time


def computation(te, kind: str, d: dict):
    """The kernel's arguments (inputs, then the output) as TE tensors, mirroring kernels/library.py."""
    f32 = "float32"
    if kind in ("matmul", "matmul_transpose_b", "matmul_bias_relu"):
        M, N, K = d["M"], d["N"], d["K"]
        a = te.placeholder((M, K), f32, "A")
        b = te.placeholder((N, K) if kind == "matmul_transpose_b" else (K, N), f32, "B")
        k = te.reduce_axis((0, K), "k")
        if kind == "matmul_transpose_b":
            c = te.compute((M, N), lambda i, j: te.sum(a[i, k] * b[j, k], axis=k), "C")
            return [a, b, c]
        c = te.compute((M, N), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), "C")
        if kind == "matmul":
            return [a, b, c]
        bias = te.placeholder((N,), f32, "bias")
        out = te.compute((M, N), lambda i, j: te.max(c[i, j] + bias[j], te.const(0.0, f32)), "relu")
        return [a, b, bias, out]
    if kind == "batch_matmul":
        B, M, N, K = d["B"], d["M"], d["N"], d["K"]
        a, b = te.placeholder((B, M, K), f32, "A"), te.placeholder((B, K, N), f32, "B")
        k = te.reduce_axis((0, K), "k")
        return [a, b, te.compute((B, M, N), lambda z, i, j: te.sum(a[z, i, k] * b[z, k, j], axis=k), "C")]
    if kind == "conv2d":  # NHWC x HWCF, no padding
        N, H, W, C, F, KH, KW, s, dl = (d[x] for x in ("N", "H", "W", "C", "F", "KH", "KW", "stride", "dilation"))
        OH, OW = (H - dl * (KH - 1) - 1) // s + 1, (W - dl * (KW - 1) - 1) // s + 1
        i, f = te.placeholder((N, H, W, C), f32, "I"), te.placeholder((KH, KW, C, F), f32, "Fl")
        rh, rw, rc = te.reduce_axis((0, KH), "kh"), te.reduce_axis((0, KW), "kw"), te.reduce_axis((0, C), "c")
        o = te.compute((N, OH, OW, F), lambda n, y, x, ff: te.sum(
            i[n, y * s + rh * dl, x * s + rw * dl, rc] * f[rh, rw, rc, ff], axis=[rh, rw, rc]), "O")
        return [i, f, o]
    raise SystemExit(f"no TE form for kernel kind {kind!r}")


def main() -> None:
    mode, kind, dims, threads, work_dir = (sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]),
                                           sys.argv[5])
    os.environ["TVM_NUM_THREADS"] = str(threads)
    import tvm
    from tvm import te

    tensors = computation(te, kind, dims)
    library = os.path.join(work_dir, "best.so")
    if mode == "tune":
        print(json.dumps(tune(tvm, te.create_prim_func(tensors), int(sys.argv[6]), threads, work_dir, library)))
    else:
        print(json.dumps({"seconds": time_library(tvm, library, tensors, threads)}))


def tune(tvm, func, trials: int, threads: int, work_dir: str, library: str) -> dict:
    from tvm.s_tir import meta_schedule as ms

    target = tvm.target.Target({"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
                                "num-cores": threads})
    mod = tvm.IRModule({"main": func})
    started = time.monotonic()
    # Builder workers spend 20-45 s importing tensor intrinsics before their first build.
    database = ms.tune_tir(mod, target, work_dir, max_trials_global=trials, num_trials_per_iter=min(trials, 16),
                           builder=ms.builder.LocalBuilder(timeout_sec=300),
                           runner=ms.runner.LocalRunner(timeout_sec=60, evaluator_config=ms.runner.EvaluatorConfig(
                               number=3, repeat=3, min_repeat_ms=50)),
                           num_tuning_cores=max(1, len(os.sched_getaffinity(0)) - threads), seed=0)
    tune_seconds = time.monotonic() - started
    curve, best = [], float("inf")
    for record in database.get_all_tuning_records():  # in the order they were measured
        secs = [float(x) for x in record.run_secs or []]
        if secs and all(x < 1e9 for x in secs):  # failed trials carry a huge sentinel time
            best = min(best, min(secs))
        curve.append(best if best < float("inf") else None)
    schedule = ms.tir_integration.compile_tir(database, mod, target)
    if schedule is None:
        raise SystemExit("MetaSchedule found no valid schedule")
    tvm.compile(schedule.mod, target=target).export_library(library)
    return {"version": f"TVM {tvm.__version__} MetaSchedule", "trials": len(curve), "curve": curve,
            "tune_seconds": tune_seconds}


def time_library(tvm, library: str, tensors, threads: int) -> float:
    import numpy as np

    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, set(cpus[:threads]))  # pinned before TVM's thread pool starts
    mod = tvm.runtime.load_module(library)
    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    args = [tvm.runtime.tensor(rng.uniform(-1, 1, [int(x) for x in t.shape]).astype("float32"), dev)
            for t in tensors]
    timer = mod.time_evaluator("main", dev, number=5, repeat=5, min_repeat_ms=100)
    return min(timer(*args).results)


if __name__ == "__main__":
    main()
