"""The models table, in Markdown, from the results/models_<model>.json that bench/test_models.py
writes: `python -m bench.models_table`. It measures nothing."""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "results"
ORDER = ("resnet18", "mobilenet_v2", "bert", "gpt2")
PEERS = ("ONNX Runtime, 1 thread", "ONNX Runtime, 2 threads", "PyTorch eager, 1 thread", "torch.compile, 1 thread",
         "IREE, 1 thread")


def _ms(seconds: float | None) -> str:
    return f"{seconds * 1e3:.1f}" if seconds else "-"


def table(results: Path = RESULTS) -> str:
    runs = {p.stem.removeprefix("models_"): json.loads(p.read_text()) for p in sorted(results.glob("models_*.json"))}
    head = ["model", "rcompiler", "artifact", *PEERS, "outside tasks", "tuning", "peak RSS"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name in sorted(runs, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
        r = runs[name]
        ours = r["seconds"]["rcompiler"]
        cells = [f"{name} ({r['distinct_tasks']} tasks)", _ms(ours), _ms(r["seconds"].get("rcompiler artifact"))]
        for peer in PEERS:
            theirs = r["seconds"].get(peer)
            cells.append(f"{_ms(theirs)} ({theirs / ours:.2f}x)" if theirs else "-")
        rss = max(r["peak_rss_mb"].values()) / 1024
        cells += [f"{r['outside_tasks_share']:.0%}", f"{r['tuning_seconds'] / 60:.0f} min", f"{rss:.1f} GB"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
