"""Best-so-far against samples as inline SVG, drawn by matplotlib (already a dependency): a static
picture needs no script in the page, prints, and opens offline."""
from __future__ import annotations

import io


def best_so_far(samples: list[dict]) -> list[float]:
    """Best speedup over naive after each sample, 1.0 until something beats naive (as TuneResult's)."""
    out, top = [], 1.0
    for s in samples:
        top = max(top, s.get("speedup") or 0)
        out.append(top)
    return out


def svg(samples: list[dict], lines: dict[str, float], title: str) -> str:
    """Each sample's speedup (failures as crosses on the axis), the best so far as a step line,
    and one dashed line per reference (NumPy, peers) at its speedup over naive; y from 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    # Text stays text (small, selectable); a fixed salt keeps the SVG's ids the same from run to run.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "rcompiler", "font.size": 9}):
        fig, ax = plt.subplots(figsize=(7, 3.2))
        xs = range(1, len(samples) + 1)
        ax.step(xs, best_so_far(samples), where="post", color="#1f5fbf", lw=2, label="best so far")
        ok = [(x, s["speedup"]) for x, s in zip(xs, samples) if s.get("speedup")]
        failed = [x for x, s in zip(xs, samples) if s["status"] != "ok"]
        if ok:
            ax.scatter(*zip(*ok), s=14, color="#7a8699", zorder=3, label="sample")
        if failed:
            ax.scatter(failed, [0] * len(failed), marker="x", s=24, color="#c62828", zorder=3, clip_on=False,
                       label="failed")
        for (name, speedup), color in zip(lines.items(), ("#e07b00", "#2e7d32", "#8e24aa", "#00838f", "#6d4c41")):
            ax.axhline(speedup, ls="--", lw=1.2, color=color, label=f"{name} {speedup:.1f}×")
        ax.set_ylim(bottom=0)
        ax.set_xlim(0.5, max(len(samples), 1) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("samples")
        ax.set_ylabel("speedup over naive (×)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
        plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]
