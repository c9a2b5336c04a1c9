"""python -m rcompiler.tune: tune one kernel and write best.mlir, report.json and a plot.

    python -m rcompiler.tune --kernel matmul --shape 1024,1024,1024 --budget 64
    python -m rcompiler.tune my_kernel.mlir --strategy mcts --proposer llm --llm-base-url local
    python -m rcompiler.tune model.onnx --input-shape x=1x3x224x224   # an ONNX model with a dynamic batch
"""
from __future__ import annotations

import argparse
import re
import sys
from functools import partial
from pathlib import Path

from rcompiler.cli_common import add_kernel_arguments, add_model_argument, fail, kernel_from_args, program_from_args
from rcompiler.kernels import KernelError


def build_parser() -> argparse.ArgumentParser:
    from rcompiler.search.tuner import PROPOSERS, STRATEGIES

    p = argparse.ArgumentParser(prog="python -m rcompiler.tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_kernel_arguments(p)
    add_model_argument(p)
    p.add_argument("--strategy", choices=STRATEGIES, default="mcts")
    p.add_argument("--proposer", choices=PROPOSERS, default="heuristic", help="who proposes MCTS children")
    p.add_argument("--budget", type=int, default=32, help="measured samples (default 32)")
    p.add_argument("--time-budget", type=float, help="stop after this many seconds, if sooner")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="threads a schedule may use (default 1)")
    p.add_argument("--out", help="output folder (default runs/<kernel>/<strategy>-<proposer>-s<seed>)")
    p.add_argument("--db", default="runs/tuning.db", help="tuning database; rerunning with it resumes")
    p.add_argument("--exploration", type=float, default=1.0, help="UCT exploration constant")
    p.add_argument("--children", type=int, default=4, help="children per MCTS expansion")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds of repeated runs per timing")
    p.add_argument("--compile-timeout", type=float,
                   help="seconds to apply and lower one candidate (default: fitted to the naive build)")
    p.add_argument("--run-timeout", type=float,
                   help="seconds to JIT, verify and time one candidate (default: fitted to the naive run)")
    p.add_argument("--apply-best", action="store_true",
                   help="no tuning: write the best schedule the database knows for this kernel here")
    p.add_argument("--quiet", action="store_true", help="no progress bar; print only the result line")
    p.add_argument("--export", metavar="FILE.so", help="also write the best program as a shared library that serves "
                   "without the compiler, with its C header beside it (load it with rcompiler.runtime.load)")
    p.add_argument("--cluster", nargs="?", const="auto", metavar="ADDRESS",
                   help="build and time on a Ray cluster (the ray extra): its head's HOST:PORT, ray://HOST:PORT, "
                        "or auto (the default: $RAY_ADDRESS, or the cluster this machine is in)")
    p.add_argument("--hardware", metavar="FINGERPRINT",
                   help="with --cluster: tune only for the runners of this hardware (default: every kind the "
                        "cluster has, each into its own folder under --out)")
    llm = p.add_argument_group("LLM proposer (--proposer llm)")
    llm.add_argument("--llm-model", help="model name (default: $RCOMPILER_LLM_MODEL or the server's first model)")
    llm.add_argument("--llm-base-url", help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL or OpenAI); "
                     "'local' starts llama.cpp with SmolLM2-135M on this machine")
    llm.add_argument("--llm-budget", type=int, default=200, help="max LLM calls per run")
    llm.add_argument("--llm-token-budget", type=int, default=400_000, help="max prompt+completion tokens per run")
    llm.add_argument("--llm-timeout", type=float, default=60.0, help="seconds per LLM call")
    llm.add_argument("--llm-temperature", type=float, default=0.7)
    llm.add_argument("--llm-format", choices=("json_schema", "json_object", "plain"),
                     help="how to ask for JSON: json_schema (OpenAI, vLLM, Ollama; the default), json_object with a "
                          "schema (llama.cpp's server; the default with 'local'), or plain instructions")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # report.json records the command that reproduces the run
    try:
        program = program_from_args(args)
        kernel = program.original if program else kernel_from_args(args)
        if program is not None and len(program.tasks) < 2:
            program = None  # one task: tune the function as a kernel
    except KernelError as err:
        fail(str(err))
    if args.budget < 1:
        fail("--budget must be at least 1")
    from rcompiler.db import Database, DatabaseError

    try:
        db = Database(args.db)
    except DatabaseError as err:
        fail(str(err))
    out = Path(args.out or Path("runs") / _slug(kernel.label) / f"{args.strategy}-{args.proposer}-s{args.seed}")
    if args.apply_best:
        if program is not None:
            fail("--apply-best takes a single kernel; a module's best program is its run's best.mlir and payload.mlir")
        return _apply_best(args, kernel, db, out)
    if args.cluster is None:
        return _tune_module(args, program, db, out) if program is not None else _tune(args, kernel, db, out)
    return _tune_on_cluster(args, kernel, program, db, out)


def _tune_on_cluster(args, kernel, program, db, out: Path) -> int:
    """Tune on a Ray cluster: once per kind of hardware its runners have."""
    from rcompiler.cluster import ClusterError, connect

    if args.threads > 1:
        fail("--cluster times each candidate on one core: tune multi-threaded schedules without it")
    try:
        cluster = connect(args.cluster)
    except ClusterError as err:
        fail(str(err))
    try:
        groups = [cluster.group(args.hardware)] if args.hardware else list(cluster.groups.values())
    except ClusterError as err:
        cluster.close()
        fail(str(err))
    code = 0
    try:
        for group in groups:
            where = out / group.hardware.fingerprint if len(groups) > 1 else out
            if not args.quiet:
                print(f"cluster {cluster.address}: {len(group.runners)} runner(s) on {group.hardware.describe()}, "
                      f"{cluster.builders} builder CPU(s)")
            code = max(code, _tune_module(args, program, db, where, group) if program is not None
                       else _tune(args, kernel, db, where, group))
    finally:
        cluster.close()
    return code


def _tune(args, kernel, db, out: Path, backend=None) -> int:
    from tqdm import tqdm

    from rcompiler import report
    from rcompiler.search.tuner import Tuner

    config = _config(args)
    bar = tqdm(total=args.budget, disable=args.quiet, unit="sample", desc=kernel.label, dynamic_ncols=True)

    def progress(sample, tuner):
        bar.update(1)
        best = tuner.best_seconds
        if best:
            bar.set_postfix_str(", ".join(filter(None, (
                f"best {kernel.flops / best / 1e9:.1f} GFLOP/s", f"{tuner.naive_seconds / best:.1f}x",
                f"last {sample.status}", tuner.backend.progress()))))

    tuner, result, paths = _run(lambda: Tuner(kernel, config, db, on_sample=progress, backend=backend), bar,
                                partial(report.write, argv=args.argv), out)
    best = result.best
    if tuner.error is not None:
        print(f"error: {tuner.error}; the {len(result.samples)} samples done are in {paths['report']}",
              file=sys.stderr)
        return 1
    if result.stopped:
        print(f"{kernel.label}: {result.stopped}; measurements are kept in {args.db}"
              + ("; the same command resumes" if tuner.interrupt else ""), file=sys.stderr)
    if best is None:
        print(f"no schedule verified in {len(result.samples)} samples; see {paths['report']}")
        return tuner.interrupt.exit_code if tuner.interrupt else 1
    vs_numpy = f", {result.numpy_seconds / best.seconds:.2f}x NumPy" if result.numpy_seconds else ""
    first = result.first_guess
    first_text = (f"{result.gflops(first.seconds):.1f} GFLOP/s" if first.seconds else first.status)
    print(f"{kernel.label}: best {result.gflops(best.seconds):.1f} GFLOP/s, {best.speedup:.1f}x over naive"
          f"{vs_numpy}, sample {best.seq + 1} of {len(result.samples)} (first guess {first_text}): {best.schedule}")
    if not args.quiet:
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return _export(args, result) or (tuner.interrupt.exit_code if tuner.interrupt else 0)


def _run(make_tuner, bar, write, out: Path):
    """Run a tuner; Ctrl-C or SIGTERM winds it up, and its outputs are written either way."""
    from rcompiler.lifetime import interruptible

    with interruptible():
        try:
            tuner = make_tuner()
            result = tuner.run()
        except (ValueError, RuntimeError) as err:
            fail(str(err), code=1)
        finally:
            bar.close()
        return tuner, result, write(result, out)


def _config(args):
    from rcompiler.measure import Limits
    from rcompiler.search.tuner import TuneConfig

    llm = {"model": args.llm_model, "base_url": args.llm_base_url, "max_calls": args.llm_budget,
           "max_tokens_total": args.llm_token_budget, "timeout": args.llm_timeout,
           "temperature": args.llm_temperature, "response_format": args.llm_format}
    return TuneConfig(args.strategy, args.proposer, args.budget, args.seed, args.threads, args.time_budget,
                      args.exploration, args.children, Limits(args.compile_timeout, args.run_timeout, args.min_time),
                      llm)


def _tune_module(args, program, db, out: Path, backend=None) -> int:
    """Tune every task of a module, then verify and time the composed program end to end."""
    from tqdm import tqdm

    from rcompiler import report
    from rcompiler.search.module_tuner import ModuleTuner

    distinct = len(program.distinct())
    bar = tqdm(total=args.budget, disable=args.quiet, unit="sample", dynamic_ncols=True,
               desc=f"{program.name}: {distinct} tasks")

    def progress(sample, tuner):
        bar.update(1)
        bar.set_description_str(f"{program.name}: {tuner.kernel.label}")
        if tuner.backend.progress():
            bar.set_postfix_str(tuner.backend.progress())

    tuner, result, paths = _run(lambda: ModuleTuner(program, _config(args), db, on_sample=progress, backend=backend),
                                bar, partial(report.write_module, argv=args.argv), out)
    naive = [t for t in program.tasks if t.kernel is None]
    notes = f"; {len(naive)} group(s) left naive" if naive else ""
    if result.stopped:
        print(f"{program.name}: {result.stopped}; measurements are kept in {args.db}"
              + ("; the same command resumes" if tuner.interrupt else ""), file=sys.stderr)
    if result.best_seconds is None:
        print(f"{program.name}: no verified program in {result.samples} samples{notes}; see {paths['report']}")
        return tuner.interrupt.exit_code if tuner.interrupt else 1
    print(f"{program.name}: {result.gflops(result.best_seconds):.1f} GFLOP/s end to end, {result.speedup:.1f}x "
          f"over naive, {len(program.tunable)} tasks ({distinct} distinct, {len(result.parts)} scheduled){notes}, "
          f"{result.samples} samples")
    if not args.quiet:
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return _export(args, result) or (tuner.interrupt.exit_code if tuner.interrupt else 0)


def _apply_best(args, kernel, db, out: Path) -> int:
    from rcompiler.hardware import detect
    from rcompiler.transforms import Schedule, render

    found = db.best(kernel.fingerprint, detect().fingerprint)
    if found is None:
        fail(f"the database has no verified schedule for {kernel.label} on this hardware; tune it first", code=1)
    schedule, m = Schedule.from_json(found[0]), found[1]
    out.mkdir(parents=True, exist_ok=True)
    (out / "best.mlir").write_text(render(schedule, kernel).text)
    print(f"{kernel.label}: {kernel.flops / m.seconds / 1e9:.1f} GFLOP/s with {schedule}; wrote {out / 'best.mlir'}")
    return _export(args, kernel, schedule)


def _export(args, what, schedule=None) -> int:
    """--export: the best program as a library; a failure is reported, the measurements stay."""
    if not args.export:
        return 0
    from rcompiler.export import ExportError, export

    try:
        done = export(what, args.export, schedule, threads=args.threads)
    except ExportError as err:
        print(f"error: --export: {err}; the measurements are kept in {args.db}", file=sys.stderr)
        return 1
    print(f"exported {done.library} and {done.header}")
    return 0


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")
