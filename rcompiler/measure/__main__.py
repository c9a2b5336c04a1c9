"""python -m rcompiler.measure: one kernel under one transform script, with baselines.

    python -m rcompiler.measure --kernel matmul --shape 512,512,512 --script schedule.mlir
"""
from __future__ import annotations

import argparse
from pathlib import Path

from rcompiler.cli_common import add_kernel_arguments, fail, kernel_from_args
from rcompiler.kernels import KernelError
from rcompiler.measure import Candidate, Limits, Measurer


def _line(label: str, m, flops: int) -> str:
    if m is None:
        return f"{label:<10} n/a"
    if not m.ok:
        return f"{label:<10} {m.status.value}: {m.reason}"
    t = m.timing
    return (f"{label:<10} {t.min * 1e3:10.3f} ms  (median {t.median * 1e3:.3f} ms, spread {t.spread:.1%}, "
            f"{t.repeats} runs)  {flops / t.min / 1e9:8.2f} GFLOP/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rcompiler.measure", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_kernel_arguments(parser)
    parser.add_argument("--script", help="transform-dialect script (.mlir with @__transform_main); default: none")
    parser.add_argument("--threads", type=int, default=1, help="threads the script's scf.forall loops use")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds of repeated runs per timing")
    parser.add_argument("--no-baselines", action="store_true", help="skip the naive and NumPy baselines")
    args = parser.parse_args(argv)
    try:
        kernel = kernel_from_args(args)
        script = Path(args.script).read_text() if args.script else None
    except (KernelError, OSError) as err:
        fail(str(err))
    print(f"kernel     {kernel.label}  ({kernel.flops / 1e9:.3f} GFLOP)")
    with Measurer(kernel, Limits(min_time=args.min_time)) as measurer:
        result = measurer.measure(Candidate(script, args.threads))
        print(f"status     {result.status.value}" + (f"  ({result.reason})" if result.reason else ""))
        print(_line("candidate", result if result.ok else None, kernel.flops))
        if not args.no_baselines:
            naive = measurer.measure_naive()
            print(_line("naive", naive, kernel.flops))
            print(_line("numpy", measurer.measure_numpy(), kernel.flops))
            if result.ok and naive.ok:
                print(f"speedup    {naive.seconds / result.seconds:.2f}x over naive")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
