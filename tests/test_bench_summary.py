"""The benchmark's arithmetic and wording, on made-up runs (no measuring)."""
import pytest

from bench.run import Run
from bench.summarize import markdown, summarize
from rcompiler.transforms import Schedule, Tile, Vectorize


def _schedule(strategy: str, seed: int, i: int) -> list:
    """A distinct schedule per run and sample, so re-timings keyed by schedule do not collide."""
    return Schedule.of([Tile((i + 1, 8 * (seed + 1), len(strategy))), Vectorize()]).to_json()


def _run(strategy, seed, seconds, measured_now=None):
    return Run("k", strategy, seed, seconds, ["ok" if s else "apply_error" for s in seconds],
               [_schedule(strategy, seed, i) for i in range(len(seconds))], [0.5] * len(seconds),
               len(seconds) if measured_now is None else measured_now)


def _retimed(runs):
    """Re-timed seconds equal the tuning-time seconds: the arithmetic is then easy to check."""
    seconds = {Schedule.from_json(r.schedules[i]).key: s for r in runs for i, s in enumerate(r.seconds) if s}
    return {"k": {"seconds": seconds | {"numpy (as set)": 2.0}, "numpy_kernel": {"numpy (as set)": "OpenBLAS Zen"},
                  "peak_gflops": 100.0, "flops": 100e9, "naive_seconds": 40.0}}


def test_fraction_of_best_samples_to_90_and_failures():
    runs = [_run("mcts+heuristic", 0, [4.0, 1.0, 1.0, 1.0]), _run("mcts+heuristic", 1, [4.0, 1.0, 1.0, 1.0]),
            _run("random", 0, [None, 8.0, 2.0, 1.05]), _run("random", 1, [8.0, 8.0, 4.0, 2.0]),
            _run("evolutionary", 0, [8.0] * 4), _run("evolutionary", 1, [4.0] * 4)]
    res = summarize(runs, _retimed(runs), (2, 4))
    rows = res["kernels"]["k"]["rows"]
    assert rows["mcts+heuristic@2"]["fraction_of_best"] == 1.0 and rows["mcts+heuristic@2"]["speedup"] == 40.0
    assert rows["mcts+heuristic@4"]["samples_to_90pct"] == 2
    assert rows["random@4"]["seconds"] == (1.05 + 2.0) / 2  # median over seeds
    assert rows["random@4"]["samples_to_90pct"] is None and rows["random@4"]["reached_90pct"] == 1  # 1 of 2 seeds
    assert rows["random@4"]["failures"] == {"apply_error": 1}
    assert rows["evolutionary@4"]["vs_numpy"] == 2.0 / 6.0
    assert rows["mcts+heuristic@4"]["fraction_of_peak"] == 1.0


def test_verdict_says_where_the_headline_is_behind():
    runs = [_run("mcts+heuristic", 0, [2.0] * 32), _run("random", 0, [4.0] * 16 + [1.0] * 16),
            _run("evolutionary", 0, [8.0] * 32)]
    res = summarize(runs, _retimed(runs), (16, 32))
    assert "At 16 samples, mcts+heuristic is ahead of random" in res["verdict"][0]
    assert "At 32 samples, mcts+heuristic is NOT ahead of random" in " ".join(res["verdict"])
    assert res["verdict"][-1] == "At 32 samples a baseline found a faster schedule (by more than 2%) on: k."


def test_peers_are_rows_with_gflops_share_of_peak_and_rcompilers_ratio():
    runs = [_run(s, 0, [4.0, 2.0], measured_now=2) for s in ("mcts+heuristic", "random", "evolutionary")]
    timings = _retimed(runs)
    timings["k"]["seconds"]["PyTorch eager"] = 1.0
    timings["k"]["peers"] = {"PyTorch eager": {"seconds": 1.0, "version": "PyTorch 9"}}
    timings["k"]["peers_skipped"] = {"IREE": "IREE is not installed", "TVM MetaSchedule": "not tuned on this kernel"}
    res = summarize(runs, timings, (1, 2))
    rows = res["kernels"]["k"]["peers"]
    assert rows["PyTorch eager"]["gflops"] == 100.0 and rows["PyTorch eager"]["rcompiler_vs"] == 0.5
    assert rows["NumPy"]["gflops"] == 50.0 and rows["NumPy"]["rcompiler_vs"] == 1.0
    assert res["kernels"]["k"]["rows"]["mcts+heuristic@1"]["seconds"] == 4.0  # the first guess
    meta = {"mode": "quick", "date": "d", "machine": "m", "seeds": [0], "budgets": [2], "wall_minutes": 1.0,
            "samples": 6, "measured_now": 6}
    table = markdown(res, meta)
    assert "| strategy | first guess | 2 samples |" in table
    assert "| k | 100 | 25.0 (25%) | 50.0 (50%) | 100.0 (100%) 0.50x | 50.0 (50%) 1.00x | - | - |" in table
    assert "Not timed: IREE: IREE is not installed (k)." in table
    assert "Peers: PyTorch 9; NumPy " in table and "(OpenBLAS Zen, one thread)" in table
    # the fastest library is PyTorch (1.0 s); the best is 2.0 s, the first guess 4.0 s: a third of the gap closed
    assert ("At 2 samples, mcts+heuristic against the fastest library (PyTorch, NumPy) on each kernel: median 0.50x, "
            "lowest 0.50x (k); behind on 1 of 1: k.") in table
    assert "where the first guess was slower than the fastest library, the search closed a median 67%" in table


def test_sixteen_samples_against_tvm_metaschedule():
    runs = [_run("mcts+heuristic", 0, [4.0] * 8 + [1.0] * 24), _run("random", 0, [4.0] * 32),
            _run("evolutionary", 0, [4.0] * 32)]
    timings = _retimed(runs)
    timings["k"]["peers"] = {"TVM MetaSchedule": {"seconds": 1.5, "version": "TVM", "curve": [2.0] * 32}}
    timings["k"]["seconds"]["TVM MetaSchedule"] = 1.5
    res = summarize(runs, timings, (16, 32))
    assert "k: mcts+heuristic at 16 samples is at least as fast as TVM MetaSchedule at its 32 trials (1.50x)." \
        in res["against_peers"]


def test_table_says_how_much_was_measured_now():
    runs = [_run(s, 0, [2.0, 1.0], measured_now=1) for s in ("mcts+heuristic", "random", "evolutionary")]
    meta = {"mode": "full", "date": "2026-11-26", "machine": "m", "seeds": [0], "budgets": [2],
            "wall_minutes": 3.0, "samples": 6, "measured_now": 3}
    table = markdown(summarize(runs, _retimed(runs), (2,)), meta)
    assert "3 minutes in this invocation, which measured 3 of the 6 samples" in table
    assert "| k | random | 100.0 | 100% | 40 | 2.00 | 2 | 0 | 0.50 |" in table
    assert "| strategy | first guess | 2 samples |" in table
    assert "which measured" not in markdown(summarize(runs, _retimed(runs), (2,)), meta | {"measured_now": 6})


def test_bench_run_end_to_end_on_a_tiny_plan(tmp_path, monkeypatch, capsys):
    """`python -m bench.run` for real (tuning, interleaved re-timing, table, plots) on one small
    kernel; a second invocation on the same folder replays instead of measuring; its summary.json
    alone builds the table again (`python -m bench.summarize`)."""
    import json
    import shutil

    import bench.run
    import bench.summarize

    monkeypatch.setattr(bench.run, "QUICK", {"kernels": [("matmul", (64, 64, 64))], "budgets": (2, 3), "seeds": (0,)})
    assert bench.run.main(["--quick", "--out", str(tmp_path)]) == 0
    first = json.loads((tmp_path / "results.json").read_text())
    assert first["meta"]["samples"] == 12 and first["meta"]["measured_now"] > 0
    assert set(first["results"]["summary"]) == {f"{s}@{b}" for s in ("mcts+heuristic", "mcts+random", "random",
                                                                      "evolutionary") for b in (1, 2, 3)}
    assert (tmp_path / "matmul_64x64x64_.png").stat().st_size > 1000
    assert "| matmul[64x64x64] | mcts+heuristic |" in (tmp_path / "table.md").read_text()
    assert bench.run.main(["--quick", "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["meta"]["measured_now"] == 0
    assert "which measured 0 of the 12 samples" in (tmp_path / "table.md").read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == {"meta": again["meta"], "results": again["results"]}
    kept = tmp_path / "kept"  # what git keeps of a results folder: its summary.json only
    kept.mkdir()
    shutil.copy(tmp_path / "summary.json", kept)
    capsys.readouterr()
    assert bench.summarize.main([str(kept)]) == 0
    assert capsys.readouterr().out == (tmp_path / "table.md").read_text()
    # Strategies do not share measurements: each has its own database with only its own studies.
    import sqlite3
    for strategy in ("mcts+heuristic", "mcts+random", "random", "evolutionary"):
        with sqlite3.connect(tmp_path / f"bench-{strategy}.db") as c:
            names = [r[0] for r in c.execute("SELECT name FROM studies")]
        assert len(names) == 1 and f"/{strategy.split('+')[0]}/" in names[0]


def test_the_held_out_set_covers_what_it_promises_and_runs_in_its_own_table(tmp_path, monkeypatch):
    import bench.run
    from rcompiler.kernels import get_kernel

    kernels = [get_kernel(name, shape) for name, shape in bench.run.HELDOUT["kernels"]]
    kinds = {k.kind for k in kernels}
    assert {"matmul", "matmul_transpose_b", "batch_matmul", "conv2d", "matmul_bias_relu"} <= kinds
    assert any(all(d in (127, 509, 263) for d in k.dims.values()) for k in kernels)  # primes
    assert any(k.kind == "conv2d" and k.dims.get("stride", 1) > 1 for k in kernels)
    assert any(k.kind == "conv2d" and k.dims.get("dilation", 1) > 1 for k in kernels)
    assert not {(n, s) for n, s in bench.run.HELDOUT["kernels"]} & {(n, s) for n, s in bench.run.FULL["kernels"]}
    monkeypatch.setattr(bench.run, "HELDOUT", {"kernels": [("matmul", (24, 40, 56))], "budgets": (2,), "seeds": (0,)})
    readme = tmp_path / "docs" / "benchmarks.md"
    readme.parent.mkdir()
    readme.write_text("intro\n<!-- heldout:start -->\nold\n<!-- heldout:end -->\n")
    monkeypatch.setattr(bench.run, "ROOT", tmp_path)
    assert bench.run.main(["--heldout", "--out", str(tmp_path / "h"), "--update-readme"]) == 0
    text = readme.read_text()
    assert "old" not in text and "Benchmark `heldout`" in text and "| matmul[24x40x56] | mcts+heuristic |" in text


def test_bench_run_on_part_of_a_set(tmp_path, monkeypatch):
    """--kernels re-measures some of a set's kernels (after a codegen change that touches only
    them); it never replaces the tables of docs/benchmarks.md, which stand for the whole set."""
    import json

    import bench.run

    monkeypatch.setattr(bench.run, "QUICK", {"kernels": [("matmul", (64, 64, 64)), ("batch_matmul", (2, 16, 32, 8))],
                                             "budgets": (2,), "seeds": (0,), "tvm": [("matmul", (64, 64, 64))]})
    assert bench.run.only(bench.run.QUICK, {"batch_matmul"})["tvm"] == []
    assert bench.run.main(["--quick", "--kernels", "batch_matmul", "--tvm", "none", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert {r["kernel"] for r in results["runs"]} == {"batch_matmul[2x16x32x8]"}
    with pytest.raises(SystemExit):
        bench.run.main(["--quick", "--kernels", "batch_matmul", "--update-readme"])
    with pytest.raises(SystemExit):
        bench.run.main(["--quick", "--kernels", "conv2d"])
