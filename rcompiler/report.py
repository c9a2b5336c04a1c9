"""What a tuning run produced: summary data first, then JSON, transform IR, a plot and report.html.

    python -m rcompiler.report runs/.../report.json [--db runs/tuning.db]   # rebuild report.html
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rcompiler.search.tuner import TuneResult


def summary(result: TuneResult) -> dict:
    k, best = result.kernel, result.best
    gf = result.gflops
    return {
        "kernel": k.name,
        "label": k.label,
        "shape": k.dims,
        "flops": k.flops,
        "kernel_fingerprint": k.fingerprint,
        "hardware": result.hardware.to_dict(),
        "strategy": result.config.strategy,
        "proposer": result.config.proposer if result.config.strategy == "mcts" else None,
        "budget": result.config.budget,
        "seed": result.config.seed,
        "threads": result.config.threads,
        "samples_done": len(result.samples),
        "stopped": result.stopped,
        "samples_measured_now": sum(not s.reused for s in result.samples),
        "failures": _failures(result),
        "naive_seconds": result.naive_seconds,
        "naive_gflops": gf(result.naive_seconds),
        "numpy_seconds": result.numpy_seconds,
        "numpy_gflops": gf(result.numpy_seconds),
        "numpy_blas": result.numpy_detail.get("blas"),
        "best_seconds": best.seconds if best else None,
        "best_gflops": gf(best.seconds) if best else None,
        "best_speedup": best.speedup if best else None,
        "best_vs_numpy": (result.numpy_seconds / best.seconds) if best and result.numpy_seconds else None,
        "best_schedule": best.schedule.to_json() if best else None,
        "best_schedule_text": str(best.schedule) if best else None,
        "best_seq": best.seq if best else None,
        "best_so_far": result.best_so_far(),
        # The search's own worth: how far it went beyond the proposer's first guess.
        "first_guess": _first_guess(result),
        "llm": result.proposer_stats or None,
        "strategy_stats": result.strategy_stats or None,
        "wall_seconds": result.wall_seconds,
        "runners": result.runner_stats or None,
        "samples": [_sample(s, gf) for s in result.samples],
    }


def _sample(s, gf) -> dict:
    extra = s.measurement.extra if s.measurement is not None and not s.reused else {}
    return {"seq": s.seq, "status": s.status, "seconds": s.seconds, "gflops": gf(s.seconds), "speedup": s.speedup,
            "hash": s.key, "parent": s.parent, "proposer": s.proposer, "rationale": s.rationale,
            "reason": s.reason, "schedule": s.schedule.to_json(), "reused": s.reused,
            # on a cluster: which builder task and which runner actor measured it
            **{k: extra[k] for k in ("builder", "runner") if k in extra}}


def _first_guess(result: TuneResult) -> dict | None:
    first, best = result.first_guess, result.best
    if first is None:
        return None
    return {"status": first.status, "seconds": first.seconds, "gflops": result.gflops(first.seconds),
            "speedup": first.speedup, "schedule_text": str(first.schedule),
            "best_over_first": (first.seconds / best.seconds) if first.seconds and best else None}


def _failures(result: TuneResult) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in result.samples:
        if s.status != "ok":
            out[s.status] = out.get(s.status, 0) + 1
    return out


def plot_best_so_far(series: dict[str, list[float]], path: Path, title: str) -> None:
    """Best speedup over naive against samples, one line per series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in series.items():
        ax.step(range(1, len(values) + 1), values, where="post", label=label)
    ax.set_xlabel("measured samples")
    ax.set_ylabel("best speedup over naive (x)")
    values = [v for vs in series.values() for v in vs]
    if values and max(values) / max(min(values), 1e-9) > 10:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(result: TuneResult, out_dir: str | Path, argv: list[str] | None = None) -> dict[str, Path]:
    """best.mlir, report.json, best_so_far.png and report.html in out_dir; `argv`, the command line
    of `python -m rcompiler.tune` that ran it, goes into the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "report.json", "plot": out / "best_so_far.png"}
    data = _with_command(summary(result), argv, out)
    paths["report"].write_text(json.dumps(data, indent=2))
    if result.best_script:
        paths["best"] = out / "best.mlir"
        paths["best"].write_text(f"// {result.kernel.label}: {data['best_schedule_text']}\n"
                                 f"// {data['best_gflops']:.1f} GFLOP/s, {data['best_speedup']:.1f}x over naive\n"
                                 + result.best_script)
    label = result.config.strategy + (f"+{result.config.proposer}" if result.config.strategy == "mcts" else "")
    plot_best_so_far({label: data["best_so_far"]}, paths["plot"], result.kernel.label)
    return paths | _write_page(data, out)


def _with_command(data: dict, argv: list[str] | None, out: Path) -> dict:
    if argv is None:
        return data
    from rcompiler.reproduce import command

    return data | {"command": command(argv, out)}


def _write_page(data: dict, out: Path) -> dict[str, Path]:
    """report.html, from the report and the best.mlir beside it."""
    from rcompiler.report_html import page

    best = out / "best.mlir"
    html = out / "report.html"
    html.write_text(page(data, best.read_text() if best.is_file() else None))
    return {"html": html}


# -- module runs ---------------------------------------------------------------------
def module_summary(result) -> dict:
    """report.json of a module run: end to end, then one row per distinct task."""
    p, gf = result.program, result.gflops
    naive_total, best_total = result.naive_seconds, result.best_seconds
    tasks = []
    for o in result.tasks:
        r, best = o.result, o.best
        in_program = o.task.key in result.parts
        tasks.append({
            "functions": o.instances, "ops": list(o.task.ops), "label": o.task.kernel.label,
            "loops": list(o.task.kernel.structure[o.task.kernel.main_index].sizes), "flops": o.task.kernel.flops,
            "weight": o.weight, "samples": len(r.samples) if r else 0,
            "kernel_fingerprint": r.kernel.fingerprint if r else None,  # its study, as the database names it
            "naive_seconds": r.naive_seconds if r else None, "numpy_seconds": r.numpy_seconds if r else None,
            "best_seconds": best.seconds if best else None,
            "speedup": best.speedup if best else None,
            "share_before": _share(o.weight, r.naive_seconds if r else None, naive_total),
            "share_after": _share(o.weight, best.seconds if best and in_program else (r.naive_seconds if r else None),
                                  best_total),
            "best_schedule": best.schedule.to_json() if best else None,
            "best_schedule_text": str(best.schedule) if best else None,
            "first_guess": _first_guess(r) if r else None,
            "status": ("in the program" if in_program else f"left naive: {result.dropped[o.task.key]}"
                       if o.task.key in result.dropped else f"left naive: {o.error}" if o.error
                       else "no verified schedule"),
            "stopped": r.stopped if r else None,
            "samples_detail": [_sample(s, lambda sec, k=o.task.kernel: k.flops / sec / 1e9 if sec else None)
                               for s in (r.samples if r else [])],
        })
    return {
        "module": p.name, "function": p.kernel.func_name, "flops": p.kernel.flops,
        "module_fingerprint": p.original.fingerprint, "hardware": result.hardware.to_dict(),
        "strategy": result.config.strategy,
        "proposer": result.config.proposer if result.config.strategy == "mcts" else None,
        "budget": result.config.budget, "seed": result.config.seed, "threads": result.config.threads,
        "samples_done": result.samples,
        "samples_measured_now": sum(not s.reused for o in result.tasks if o.result for s in o.result.samples),
        "stopped": result.stopped, "naive_seconds": naive_total, "naive_gflops": gf(naive_total),
        "best_seconds": best_total, "best_gflops": gf(best_total), "best_speedup": result.speedup,
        "tasks": tasks,
        "naive_tasks": [{"function": t.name, "ops": list(t.ops), "reason": t.reason}
                        for t in p.tasks if t.kernel is None],
        "naive_ops": list(p.naive_ops), "wall_seconds": result.wall_seconds,
        "runners": result.runner_stats or None,
    }


def _share(weight: int, seconds: float | None, total: float | None) -> float | None:
    return weight * seconds / total if seconds and total else None


def write_module(result, out_dir: str | Path, argv: list[str] | None = None) -> dict[str, Path]:
    """best.mlir (the module script), payload.mlir (the outlined module it applies to: upstream
    `mlir-opt payload.mlir --transform-preload-library=transform-library-paths=best.mlir
    --transform-interpreter` reproduces the program), report.json, a plot per task and report.html."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = _with_command(module_summary(result), argv, out)
    paths = {"report": out / "report.json", "payload": out / "payload.mlir", "plot": out / "best_so_far.png"}
    paths["report"].write_text(json.dumps(data, indent=2))
    paths["payload"].write_text(result.program.kernel.payload)
    if result.best_script:
        paths["best"] = out / "best.mlir"
        paths["best"].write_text(f"// {result.program.name}: {data['best_gflops']:.1f} GFLOP/s end to end, "
                                 f"{data['best_speedup']:.1f}x over naive; applies to payload.mlir\n"
                                 + result.best_script)
    series = {f"{o.task.kernel.label} x{o.weight}": o.result.best_so_far() for o in result.tasks
              if o.result and o.result.samples}
    if series:
        plot_best_so_far(series, paths["plot"], f"{result.program.name}: tasks")
    return paths | _write_page(data, out)


# -- python -m rcompiler.report: report.html again, from a report.json -------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rcompiler.report",
                                     description="Rebuild report.html beside a run's report.json (and best.mlir).")
    parser.add_argument("report", help="a run's report.json")
    parser.add_argument("--db", help="tuning database: take each study's samples from it where it holds more than "
                                     "the report")
    args = parser.parse_args(argv)
    from rcompiler.db import DatabaseError
    from rcompiler.report_db import samples_from_db

    path = Path(args.report)
    try:
        data = json.loads(path.read_text())
        if args.db:
            data = samples_from_db(data, args.db)
    except (OSError, ValueError, KeyError, DatabaseError) as err:
        print(f"error: {path}: {err}", file=sys.stderr)
        return 2
    print(f"wrote {_write_page(data, path.parent)['html']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
