"""Turn tuning runs and interleaved re-timings into numbers and a Markdown table.

`python -m bench.summarize FOLDER...` prints the table of bench runs (`python -m bench.run`)
again from each folder's summary.json (the meta and summary that bench.run writes beside its
raw results.json; the one kept in git) or, without it, from results.json. It measures nothing.
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path

HEADLINE = "mcts+heuristic"
BASELINES = ("random", "evolutionary")


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def best_index(seconds: list) -> int | None:
    """Index of the fastest verified sample (None where a sample failed)."""
    ok = [(s, i) for i, s in enumerate(seconds) if s]
    return min(ok)[1] if ok else None


def summarize(runs, timings: dict, budgets) -> dict:
    """Per kernel, strategy and budget: medians over seeds of the re-timed best schedule; budget 1 is
    the proposer's first guess, always reported."""
    from rcompiler.transforms import Schedule

    budgets = (1, *(b for b in budgets if b != 1))
    out: dict = {"kernels": {}, "summary": {}}
    strategies = sorted({r.strategy for r in runs})
    for klabel, t in timings.items():
        kruns = [r for r in runs if r.kernel == klabel]
        tuned_best = min((s for r in kruns for s in r.seconds if s), default=None)
        numpy = next((v for k, v in t["seconds"].items() if k.startswith("numpy")), None)
        rows = {}
        for strat in strategies:
            sruns = [r for r in kruns if r.strategy == strat]
            for b in budgets:
                per_seed, reach, fails = [], [], Counter()
                for r in sruns:
                    best = best_index(r.seconds[:b])
                    if best is not None:
                        key = Schedule.from_json(r.schedules[best]).key
                        per_seed.append(t["seconds"].get(key))
                    hit = next((i + 1 for i, s in enumerate(r.seconds[:b]) if s and tuned_best
                                and s <= tuned_best / 0.9), None)
                    reach.append(hit)
                    fails.update(s for s in r.statuses[:b] if s != "ok")
                best = _median(per_seed)
                costs = [c for r in sruns for c in r.cost]
                rows[f"{strat}@{b}"] = {
                    "strategy": strat, "budget": b, "seconds": best,
                    "gflops": t["flops"] / best / 1e9 if best else None,
                    "speedup": t["naive_seconds"] / best if best and t["naive_seconds"] else None,
                    "vs_numpy": numpy / best if best and numpy else None,
                    "fraction_of_peak": t["flops"] / best / 1e9 / t["peak_gflops"] if best else None,
                    "samples_to_90pct": _median([h for h in reach if h]) if all(reach) else None,
                    "reached_90pct": sum(1 for h in reach if h), "seeds": len(sruns),
                    "failures": dict(fails), "seconds_per_sample": statistics.mean(costs) if costs else None,
                }
        fastest = min((row["seconds"] for row in rows.values() if row["seconds"]), default=None)
        for row in rows.values():
            row["fraction_of_best"] = fastest / row["seconds"] if fastest and row["seconds"] else 0.0
        out["kernels"][klabel] = {"rows": rows, "peak_gflops": t["peak_gflops"], "numpy_seconds": numpy,
                                  "numpy_kernel": t["numpy_kernel"], "naive_seconds": t["naive_seconds"],
                                  "peers": peer_rows(t, rows.get(f"{HEADLINE}@{budgets[-1]}", {}).get("seconds")),
                                  "peers_skipped": t.get("peers_skipped", {})}
    for strat in strategies:
        for b in budgets:
            cells = [k["rows"][f"{strat}@{b}"] for k in out["kernels"].values()]
            out["summary"][f"{strat}@{b}"] = {
                "fraction_of_best": _median([c["fraction_of_best"] for c in cells]),
                "speedup": _median([c["speedup"] for c in cells]),
                "fraction_of_peak": _median([c["fraction_of_peak"] for c in cells])}
    out["verdict"] = verdict(out, budgets)
    out["against_peers"] = against_peers(out, budgets)
    return out


def peer_rows(t: dict, ours: float | None) -> dict:
    """Each peer (NumPy included) as GFLOP/s, fraction of the measured peak, and rcompiler's speed over it."""
    timed = {name: {"seconds": p["seconds"], "version": p["version"], "curve": p.get("curve")}
             for name, p in t.get("peers", {}).items()}
    numpy = next((k for k in t["seconds"] if k.startswith("numpy")), None)
    if numpy:
        import numpy as np

        blas = t["numpy_kernel"].get(numpy, "OpenBLAS")
        timed["NumPy"] = {"seconds": t["seconds"][numpy], "version": f"NumPy {np.__version__} ({blas}, one thread)"}
    for row in timed.values():
        row["gflops"] = t["flops"] / row["seconds"] / 1e9
        row["fraction_of_peak"] = row["gflops"] / t["peak_gflops"]
        row["rcompiler_vs"] = row["seconds"] / ours if ours else None
    return timed


LIBRARIES = ("PyTorch eager", "NumPy")


def against_peers(results: dict, budgets) -> list[str]:
    """Issue 10's targets, stated plainly from this run: at the largest budget, MCTS + heuristic
    against the fastest library on each kernel (median, lowest); how much of its first guess's gap
    to that library the search closed; and at 16 samples against TVM MetaSchedule's full trials."""
    last, lines = budgets[-1], []
    ratios, closed = {}, []
    for klabel, k in results["kernels"].items():
        libs = [k["peers"][n]["seconds"] for n in LIBRARIES if n in k["peers"]]
        first, best = (k["rows"][f"{HEADLINE}@{b}"]["seconds"] for b in (1, last))
        if not libs or not best:
            continue
        fastest = min(libs)
        ratios[klabel] = fastest / best
        if first and first > fastest:  # the first guess was slower than the library: did the search close it?
            closed.append(min(1.0, (first - best) / (first - fastest)))
    if ratios:
        low = min(ratios, key=ratios.get)
        behind = [k for k, r in ratios.items() if r < 1.0]
        lines.append(f"At {last} samples, {HEADLINE} against the fastest library (PyTorch, NumPy) on each kernel: "
                     f"median {statistics.median(ratios.values()):.2f}x, lowest {ratios[low]:.2f}x ({low}); "
                     + (f"behind on {len(behind)} of {len(ratios)}: {', '.join(behind)}." if behind
                        else f"at least as fast on all {len(ratios)}."))
    if closed:
        lines.append(f"On the {len(closed)} kernel(s) where the first guess was slower than the fastest library, the "
                     f"search closed a median {statistics.median(closed):.0%} of that gap by {last} samples.")
    if 16 in budgets:
        for klabel, k in results["kernels"].items():
            tvm, ours = k["peers"].get("TVM MetaSchedule"), k["rows"][f"{HEADLINE}@16"]["seconds"]
            if tvm and ours:
                word = "at least as fast as" if ours <= tvm["seconds"] else "SLOWER than"
                lines.append(f"{klabel}: {HEADLINE} at 16 samples is {word} TVM MetaSchedule at its "
                             f"{len(tvm.get('curve') or []) or 'full'} trials ({tvm['seconds'] / ours:.2f}x).")
    return lines


def verdict(results: dict, budgets) -> list[str]:
    """Plain statements: is MCTS + heuristic ahead at 16 and 32 samples, and where is it not."""
    lines = []
    for b in (x for x in budgets if x in (16, 32)):
        s = results["summary"]
        ours = s.get(f"{HEADLINE}@{b}", {}).get("fraction_of_best") or 0
        for base in BASELINES:
            theirs = s.get(f"{base}@{b}", {}).get("fraction_of_best") or 0
            word = "ahead of" if ours > theirs else "NOT ahead of"
            lines.append(f"At {b} samples, {HEADLINE} is {word} {base} on the median across kernels "
                         f"({ours:.0%} vs {theirs:.0%} of the best speed found).")
        behind = [k for k, v in results["kernels"].items()
                  if any((v["rows"][f"{base}@{b}"]["seconds"] or 1e9) < 0.98 * (v["rows"][f"{HEADLINE}@{b}"]["seconds"] or 1e9)
                         for base in BASELINES)]
        if behind:
            lines.append(f"At {b} samples a baseline found a faster schedule (by more than 2%) on: {', '.join(behind)}.")
    return lines


def _fmt(x, spec, none="-"):
    return none if x is None else format(x, spec)


def markdown(results: dict, meta: dict) -> str:
    budgets = [1, *meta["budgets"]]
    strategies = sorted({row["strategy"] for k in results["kernels"].values() for row in k["rows"].values()})
    took = f"{meta['wall_minutes']:.0f} minutes"
    if meta["measured_now"] < meta["samples"]:
        took += (f" in this invocation, which measured {meta['measured_now']} of the {meta['samples']} samples "
                 "(the others were already in the results folder's database)")
    lines = [f"Benchmark `{meta['mode']}`, {meta['date']}, on {meta['machine']}; "
             f"{len(meta['seeds'])} seeds, {took}.", "",
             "Median across kernels of (best speed a strategy found / best speed any strategy found) and, in "
             "brackets, the median speedup over the naive lowering; best times re-measured interleaved.", "",
             "| strategy | " + " | ".join("first guess" if b == 1 else f"{b} samples" for b in budgets) + " |",
             "| --- | " + " | ".join("---" for _ in budgets) + " |"]
    for strat in strategies:
        cells = [results["summary"][f"{strat}@{b}"] for b in budgets]
        lines.append(f"| {strat} | " + " | ".join(
            f"{_fmt(c['fraction_of_best'], '.0%')} ({_fmt(c['speedup'], '.0f')}x)" for c in cells) + " |")
    lines += ["", *results["verdict"], "", f"Per kernel at {budgets[-1]} samples (medians over seeds):", "",
              "| kernel | strategy | GFLOP/s | % of peak | x naive | x NumPy | samples to 90% | failures | s/sample |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    b = budgets[-1]
    for klabel, k in results["kernels"].items():
        for strat in strategies:
            r = k["rows"][f"{strat}@{b}"]
            reach = _fmt(r["samples_to_90pct"], ".0f", f"{r['reached_90pct']}/{r['seeds']} seeds")
            fails = ", ".join(f"{n} {s}" for s, n in sorted(r["failures"].items())) or "0"
            lines.append(f"| {klabel} | {strat} | {_fmt(r['gflops'], '.1f')} | {_fmt(r['fraction_of_peak'], '.0%')} | "
                         f"{_fmt(r['speedup'], '.0f')} | {_fmt(r['vs_numpy'], '.2f')} | {reach} | {fails} | "
                         f"{_fmt(r['seconds_per_sample'], '.2f')} |")
    lines += peer_table(results, meta)
    if results.get("against_peers"):
        lines += ["", *results["against_peers"]]
    return "\n".join(lines) + "\n"


PEERS = ("PyTorch eager", "NumPy", "IREE", "TVM MetaSchedule")


def peer_table(results: dict, meta: dict) -> list[str]:
    """rcompiler (MCTS + heuristic: first guess, 16 samples, the largest budget) beside each peer."""
    last = meta["budgets"][-1]
    shown = [1, *(b for b in (16,) if b in meta["budgets"][:-1]), last]  # first guess, the paper's budget, the last
    lines = ["", f"Beside the libraries and compilers, one thread, timed in the same rounds: GFLOP/s (% of the "
             f"measured FMA peak); under each peer, {HEADLINE} at {last} samples over that peer (above 1: "
             f"rcompiler is faster). TVM MetaSchedule is tuned with {last} trials.", "",
             "| kernel | peak | " + " | ".join(f"{HEADLINE} " + ("first guess" if b == 1 else f"@{b}") for b in shown)
             + " | " + " | ".join(PEERS) + " |", "| --- " * (2 + len(shown) + len(PEERS)) + "|"]
    versions, skipped = {}, {}

    def ours(k, b):
        row = k["rows"].get(f"{HEADLINE}@{b}", {})
        return f"{_fmt(row.get('gflops'), '.1f')} ({_fmt(row.get('fraction_of_peak'), '.0%')})"

    for klabel, k in results["kernels"].items():
        cells = []
        for name in PEERS:
            p = k["peers"].get(name)
            if p:
                versions[name] = p["version"]
                cells.append(f"{p['gflops']:.1f} ({p['fraction_of_peak']:.0%}) {_fmt(p['rcompiler_vs'], '.2f')}x")
            else:
                reason = k["peers_skipped"].get(name)
                if reason:
                    skipped.setdefault(f"{name}: {reason}", []).append(klabel)
                cells.append("-")
        lines.append(f"| {klabel} | {k['peak_gflops']:.0f} | " + " | ".join(ours(k, b) for b in shown) + " | "
                     + " | ".join(cells) + " |")
    lines += ["", "Peers: " + "; ".join(versions.values()) + "."]
    lines += [f"Not timed: {why} ({', '.join(ks)})." for why, ks in skipped.items()]
    return lines


def load(folder: Path) -> dict:
    """A bench run's meta and summary, what its table is built from: summary.json, else results.json."""
    for name in ("summary.json", "results.json"):
        if (folder / name).is_file():
            data = json.loads((folder / name).read_text())
            return {"meta": data["meta"], "results": data["results"]}
    raise SystemExit(f"{folder}: no summary.json or results.json (python -m bench.run writes them)")


def write_summary(folder: Path, data: dict) -> None:
    """summary.json: the meta and summary of a run (no raw runs or re-timings), formatted as results.json."""
    summary = {"meta": data["meta"], "results": data["results"]}
    (folder / "summary.json").write_text(json.dumps(summary, indent=1, default=str))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.summarize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path, metavar="FOLDER", help="a bench run's results folder")
    p.add_argument("--write-summary", action="store_true",
                   help="also (re)write each folder's summary.json from what was read (e.g. from results.json)")
    args = p.parse_args(argv)
    for folder in args.folders:
        data = load(folder)
        if args.write_summary:
            write_summary(folder, data)
        print(markdown(data["results"], data["meta"]), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
