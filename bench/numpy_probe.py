"""Time single-threaded NumPy on a built-in kernel in this process's environment.

Run as a subprocess so OPENBLAS_CORETYPE can differ per run (OpenBLAS reads it once at load):
    python -m bench.numpy_probe matmul 1024,1024,1024   ->  {"seconds": ..., "blas": "..."}
"""
import json
import os
import sys


def main() -> None:
    name, shape, min_time = sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 0.5
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})  # the core candidates are timed on
    from rcompiler.kernels import get_kernel
    from rcompiler.measure.runner import run_numpy

    kernel = get_kernel(name, shape)
    m = run_numpy(kernel.kind, kernel.args, 0, min_time)
    print(json.dumps({"seconds": m.timing.min, "blas": m.extra["blas"]}))


if __name__ == "__main__":
    main()
