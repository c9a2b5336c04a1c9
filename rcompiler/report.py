"""What a tuning run produced: summary data first, then JSON, transform IR and a plot."""
from __future__ import annotations

import json
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
        "wall_seconds": result.wall_seconds,
        "samples": [{
            "seq": s.seq, "status": s.status, "seconds": s.seconds, "gflops": gf(s.seconds),
            "speedup": s.speedup, "hash": s.key, "parent": s.parent, "proposer": s.proposer,
            "rationale": s.rationale, "reason": s.reason, "schedule": s.schedule.to_json(),
            "reused": s.reused,
        } for s in result.samples],
    }


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


def write(result: TuneResult, out_dir: str | Path) -> dict[str, Path]:
    """best.mlir, report.json and best_so_far.png in out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "report.json", "plot": out / "best_so_far.png"}
    data = summary(result)
    paths["report"].write_text(json.dumps(data, indent=2))
    if result.best_script:
        paths["best"] = out / "best.mlir"
        paths["best"].write_text(f"// {result.kernel.label}: {data['best_schedule_text']}\n"
                                 f"// {data['best_gflops']:.1f} GFLOP/s, {data['best_speedup']:.1f}x over naive\n"
                                 + result.best_script)
    label = result.config.strategy + (f"+{result.config.proposer}" if result.config.strategy == "mcts" else "")
    plot_best_so_far({label: data["best_so_far"]}, paths["plot"], result.kernel.label)
    return paths
