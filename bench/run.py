"""Strategy comparison at equal sample budgets: `python -m bench.run --quick` or `--full`.

For every kernel, strategy and seed, one tuning run at the largest budget; its
first B samples are what a budget of B would have drawn (the searches are
deterministic given their seed). Each strategy has its own database, so no
strategy is handed another's measurements. Each strategy's best schedules are
then timed again in rounds interleaved with each other and NumPy, and the minimum
kept, so ratios come from one run on one machine state. Writes results.json (everything),
summary.json (what the table is built from: `python -m bench.summarize FOLDER` prints it again),
table.md and one plot per kernel into the results folder; --update-readme puts the table in
docs/benchmarks.md (README.md shows its headline rows).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from rcompiler.db import Database
from rcompiler.hardware import detect
from rcompiler.kernels import get_kernel
from rcompiler.measure import Limits, Measurer
from rcompiler.report import plot_best_so_far
from rcompiler.search.tuner import TuneConfig, Tuner
from rcompiler.transforms import Schedule

from . import peers
from .common import interleaved, peak_gflops
from .summarize import best_index, markdown, summarize, write_summary

ROOT = Path(__file__).resolve().parent.parent

QUICK = {"kernels": [("matmul", (256, 256, 256)), ("matmul", (197, 768, 3072)), ("conv2d", (1, 30, 30, 32, 32, 3, 3)),
                     ("batch_matmul", (4, 128, 128, 64))],
         "budgets": (8, 16, 32), "seeds": (0, 1)}
FULL = {"kernels": [("matmul", (256, 256, 256)), ("matmul", (512, 512, 512)), ("matmul", (1024, 1024, 1024)),
                    ("matmul", (1000, 1000, 1000)), ("matmul", (197, 768, 3072)), ("conv2d", (1, 58, 58, 64, 64, 3, 3)),
                    ("matmul_bias_relu", (256, 256, 256)), ("llama3_attention", None), ("llama3_mlp", None),
                    ("deepseek_moe_expert", None), ("flux_attention", None), ("flux_vae_conv", None)],
        "budgets": (8, 16, 32, 64), "seeds": (0, 1, 2),
        # TVM MetaSchedule's builds cost about 10 s per trial on 2 cores, so by default it is tuned on the
        # kernels of the sample-efficiency claim (issue 10) only; --tvm all tunes it on every kernel.
        "tvm": [("matmul", (512, 512, 512)), ("matmul", (1024, 1024, 1024)), ("conv2d", (1, 58, 58, 64, 64, 3, 3))]}
# Held out: shapes drawn once (both B layouts, batch, strided and dilated convs, odd and prime sizes,
# a fused epilogue) and never used while developing proposers; --full reports them in their own table.
HELDOUT = {"kernels": [("matmul", (384, 320, 448)), ("matmul", (127, 509, 263)), ("matmul_transpose_b", (96, 1536, 1024)),
                       ("matmul_transpose_b", (16, 3072, 768)), ("batch_matmul", (6, 96, 160, 80)),
                       ("conv2d", (1, 35, 35, 48, 64, 3, 3, 2, 1)), ("conv2d", (1, 30, 30, 32, 32, 3, 3, 1, 2)),
                       ("matmul_bias_relu", (200, 300, 400))],
           "budgets": (8, 16, 32, 64), "seeds": (0, 1, 2)}
STRATEGIES = [("mcts", "heuristic"), ("mcts", "random"), ("random", "-"), ("evolutionary", "-")]


@dataclass
class Run:
    kernel: str
    strategy: str
    seed: int
    seconds: list  # per sample, None for failures
    statuses: list
    schedules: list  # JSON per sample
    cost: list  # build + run seconds of each sample's measurement (also when replayed from the database)
    measured_now: int  # samples measured by this invocation, not replayed


def label(strategy: str, proposer: str) -> str:
    return f"{strategy}+{proposer}" if strategy == "mcts" else strategy


def databases(out: Path, llm: dict | None) -> dict[str, Database]:
    """One database per strategy: a candidate timed by one strategy is never replayed into
    another's history (each measures what it draws, in its own machine state)."""
    strategies = list(STRATEGIES) + ([("mcts", "llm")] if llm else [])
    return {label(s, p): Database(out / f"bench-{label(s, p)}.db") for s, p in strategies}


def tune_all(plan: dict, dbs: dict[str, Database], llm: dict | None, log) -> tuple[list[Run], dict]:
    strategies = list(STRATEGIES) + ([("mcts", "llm")] if llm else [])
    runs, kernels = [], {}
    budget = max(plan["budgets"])
    for name, shape in plan["kernels"]:
        kernel = get_kernel(name, shape)
        kernels[kernel.label] = kernel
        for strategy, proposer in strategies:
            db = dbs[label(strategy, proposer)]
            for seed in plan["seeds"]:
                start = time.monotonic()
                config = TuneConfig(strategy, proposer if proposer != "-" else "heuristic", budget, seed,
                                    limits=Limits(min_time=0.05), llm=llm or {})
                r = Tuner(kernel, config, db).run()
                runs.append(Run(kernel.label, label(strategy, proposer), seed, [s.seconds for s in r.samples],
                                [s.status for s in r.samples], [s.schedule.to_json() for s in r.samples],
                                [s.measurement.build_seconds + s.measurement.run_seconds for s in r.samples
                                 if s.measurement is not None], sum(not s.reused for s in r.samples)))
                best = r.best
                log(f"{kernel.label:40s} {label(strategy, proposer):16s} seed {seed}: "
                    f"{kernel.flops / best.seconds / 1e9 if best else 0:7.1f} GFLOP/s  ({time.monotonic() - start:.0f} s)")
    return runs, kernels


def kernel_peers(kernel, folder: Path, tvm_trials: int | None) -> tuple[dict, dict[str, str]]:
    """PyTorch, IREE and (when asked) TVM MetaSchedule on the kernel, one thread; reasons for the skipped."""
    work = folder / "peers" / _slug(kernel.label)
    makers = {"PyTorch eager": lambda: peers.torch_kernel(kernel), "IREE": lambda: peers.iree_kernel(kernel, work)}
    if tvm_trials:
        makers["TVM MetaSchedule"] = lambda: peers.tvm_peer(kernel, tvm_trials, work / "tvm")
    ready, skipped = peers.prepare_all(makers)
    if not tvm_trials:
        skipped["TVM MetaSchedule"] = "not tuned on this kernel (--tvm all tunes it on every kernel)"
    return ready, skipped


def retime(runs: list[Run], kernels: dict, budgets, db: Database, folder: Path, tvm: set, log) -> dict:
    """Interleaved re-timing of every schedule that is some run's best at some budget (and each run's
    first sample: the proposer's first guess), with NumPy and the peers in the same rounds."""
    out = {}
    for klabel, kernel in kernels.items():
        chosen: dict[str, Schedule] = {}
        for run in (r for r in runs if r.kernel == klabel):
            for b in (1, *budgets):
                best = best_index(run.seconds[:b])
                if best is not None:
                    s = Schedule.from_json(run.schedules[best])
                    chosen[s.key] = s
        ready, skipped = kernel_peers(kernel, folder, max(budgets) if klabel in tvm else None)
        with Measurer(kernel, Limits(min_time=0.1)) as m:
            peak = peak_gflops(m, rounds=2)
            blas = ("as set",) if kernel.kind in ("matmul", "matmul_transpose_b", "batch_matmul",
                                                  "matmul_bias_relu") else ()
            timed = interleaved(kernel, chosen, m, rounds=2, blas=blas, strict=False, peers=ready)
            final = timed.seconds
        hw = detect()
        naive = db.baseline(kernel.fingerprint, hw.fingerprint, "naive")
        skipped.update(timed.peers_failed)
        out[klabel] = {"seconds": final, "numpy_kernel": timed.blas,
                       "peak_gflops": peak, "flops": kernel.flops, "naive_seconds": naive[0] if naive else None,
                       "peers": {name: {"seconds": final[name], "version": p.version, **p.info}
                                 for name, p in ready.items() if name in final},
                       "peers_skipped": skipped}
        log(f"re-timed {len(chosen)} schedules of {klabel} beside {', '.join(ready) or 'no peer'}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true", help="4 small kernels, budgets 8-32, 2 seeds (< 15 min)")
    mode.add_argument("--full", action="store_true", help="the whole kernel set, budgets 8-64, 3 seeds, then the "
                      "held-out set in its own table")
    mode.add_argument("--heldout", action="store_true", help="only the held-out set (shapes never used to develop "
                      "proposers), budgets 8-64")
    p.add_argument("--out", help="results folder (default results/<quick|full>-<date>)")
    p.add_argument("--seeds", type=int, help="number of seeds (overrides the mode's)")
    p.add_argument("--llm-base-url", help="also run MCTS + LLM against this endpoint ('local' for SmolLM2)")
    p.add_argument("--llm-model")
    p.add_argument("--update-readme", action="store_true", help="replace the results tables in docs/benchmarks.md")
    p.add_argument("--kernels", type=lambda s: set(s.split(",")), metavar="NAME[,NAME...]",
                   help="only the mode's kernels of these names (e.g. conv2d,flux_vae_conv), to re-measure part "
                   "of a set; not with --update-readme, whose tables stand for the whole set")
    p.add_argument("--tvm", choices=("plan", "all", "none"), default="plan",
                   help="kernels TVM MetaSchedule is tuned on, with the largest budget as its trials: the mode's "
                   "list (default; --full: matmul 512^3, 1024^3 and the conv), every kernel, or none")
    args = p.parse_args(argv)
    if args.kernels and args.update_readme:
        p.error("--kernels measures part of a set: its table cannot replace those of docs/benchmarks.md")
    plan = dict(QUICK if args.quick else HELDOUT if args.heldout else FULL)
    plan["tvm"] = {"plan": plan.get("tvm", []), "all": plan["kernels"], "none": []}[args.tvm]
    if args.seeds:
        plan["seeds"] = tuple(range(args.seeds))
    mode_name = "quick" if args.quick else "full" if args.full else "heldout"
    out = Path(args.out or ROOT / "results" / f"{mode_name}-{time.strftime('%Y%m%d-%H%M')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    log_file = (out / "log.txt").open("a")  # a resumed run adds to the first one's log

    def log(line: str) -> None:
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    llm = {"base_url": args.llm_base_url, "model": args.llm_model} if args.llm_base_url else None
    plans = [(mode_name, plan, out, "heldout" if args.heldout else "bench")]
    if args.full:  # then the held-out set, with the same seeds, in its own table
        plans.append(("heldout", dict(HELDOUT, seeds=plan["seeds"],
                                      tvm=HELDOUT["kernels"] if args.tvm == "all" else []), out / "heldout", "heldout"))
    if args.kernels:
        plans = [(name, only(this_plan, args.kernels), folder, marker) for name, this_plan, folder, marker in plans]
        plans = [x for x in plans if x[1]["kernels"]]
        if not plans:
            p.error(f"--kernels: none of {', '.join(sorted(args.kernels))} is in the {mode_name} set")
    for name, this_plan, folder, marker in plans:
        folder.mkdir(parents=True, exist_ok=True)
        table = compare(name, this_plan, folder, llm, log)
        if args.update_readme:
            update_readme(table, folder, marker)
    log(f"wrote {out}")
    return 0


def only(plan: dict, names: set[str]) -> dict:
    """The plan restricted to kernels of these names (TVM's list too)."""
    return dict(plan, kernels=[k for k in plan["kernels"] if k[0] in names],
                tvm=[k for k in plan.get("tvm", []) if k[0] in names])


def compare(mode_name: str, plan: dict, out: Path, llm: dict | None, log) -> str:
    """Tune, re-time and summarize one kernel list into `out`; the Markdown table."""
    started = time.monotonic()
    dbs = databases(out, llm)
    runs, kernels = tune_all(plan, dbs, llm, log)
    tvm = {get_kernel(name, shape).label for name, shape in plan.get("tvm", [])}
    timings = retime(runs, kernels, plan["budgets"], dbs["mcts+heuristic"], out, tvm, log)
    hw = detect()
    meta = {"mode": mode_name, "date": time.strftime("%Y-%m-%d"), "machine": hw.describe(),
            "python": platform.python_version(), "budgets": list(plan["budgets"]), "seeds": list(plan["seeds"]),
            "wall_minutes": (time.monotonic() - started) / 60,
            "samples": sum(len(r.seconds) for r in runs), "measured_now": sum(r.measured_now for r in runs)}
    results = summarize(runs, timings, plan["budgets"])
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results, "timings": timings,
                                                  "runs": [r.__dict__ for r in runs]}, indent=1, default=str))
    write_summary(out, {"meta": meta, "results": results})  # what the table is built from (kept in git)
    for klabel in kernels:
        series = {}
        for strat in sorted({r.strategy for r in runs}):
            naive = timings[klabel]["naive_seconds"]
            curves = [_curve(r, naive) for r in runs if r.kernel == klabel and r.strategy == strat]
            series[strat] = [statistics.median(c[i] for c in curves) for i in range(len(curves[0]))]
        plot_best_so_far(series, out / f"{_slug(klabel)}.png", f"{klabel}: median over seeds")
    table = markdown(results, meta)
    (out / "table.md").write_text(table)
    log(table)
    return table


def _curve(run: Run, naive: float) -> list[float]:
    """Best-so-far speedup over naive after each sample (1 until something beats naive)."""
    best, out = naive, []
    for s in run.seconds:
        if s and s < best:
            best = s
        out.append(naive / best)
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


def update_readme(table: str, out: Path, marker: str = "bench") -> None:
    """Put the table between its markers in docs/benchmarks.md (appended when they are missing)."""
    readme = ROOT / "docs" / "benchmarks.md"
    text = readme.read_text()
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    where = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    block = f"{start}\n{table}\nPlots and raw data: `{where}/`.\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text += "\n" + block + "\n"
    readme.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
