"""The tuning loop end to end: strategies, resume after a killed run, the CLI and the API."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

import rcompiler
from mlir_snippets import matmul_on_tensors
from rcompiler.db import Database
from rcompiler.jit import mlir_tool
from rcompiler.kernels import get_kernel
from rcompiler.measure import Limits
from rcompiler.search.tuner import TuneConfig, Tuner
from rcompiler.transforms import Schedule

FAST = Limits(min_time=0.01)


@pytest.mark.parametrize("strategy,proposer", [("mcts", "heuristic"), ("mcts", "random"), ("random", "heuristic"),
                                               ("evolutionary", "heuristic")])
def test_each_strategy_measures_exactly_its_budget(strategy, proposer, tmp_path):
    kernel = get_kernel("matmul", (64, 64, 64))
    db = Database(tmp_path / "t.db")
    result = Tuner(kernel, TuneConfig(strategy, proposer, budget=6, limits=FAST), db).run()
    assert len(result.samples) == 6
    assert len({s.key for s in result.samples}) == 6  # never the same schedule twice
    assert all(not s.reused for s in result.samples)
    assert result.best is not None and result.best.speedup > 1
    assert result.naive_seconds > result.best.seconds
    assert [s.seq for s in result.samples] == list(range(6))
    assert len(db.samples(Tuner(kernel, TuneConfig(strategy, proposer, 6), db).study)) == 6


def test_rerun_replays_from_the_database_without_measuring(tmp_path):
    kernel = get_kernel("matmul", (64, 64, 64))
    db = Database(tmp_path / "t.db")
    first = Tuner(kernel, TuneConfig(budget=5, limits=FAST), db).run()
    again = Tuner(kernel, TuneConfig(budget=8, limits=FAST), db).run()
    assert [s.key for s in again.samples[:5]] == [s.key for s in first.samples]
    assert all(s.reused for s in again.samples[:5]) and not any(s.reused for s in again.samples[5:])
    assert len(again.samples) == 8


def test_ties_in_time_pick_the_same_best_in_the_run_and_the_database(tmp_path):
    kernel = get_kernel("matmul", (64, 64, 64))
    db = Database(tmp_path / "t.db")
    Tuner(kernel, TuneConfig(budget=4, limits=FAST), db).run()
    db.conn.execute("UPDATE measurements SET seconds = 1e-6 WHERE status = 'ok'")  # the clock ticks in 10 ns
    replay = Tuner(kernel, TuneConfig(budget=4, limits=FAST), db).run()
    assert all(s.reused for s in replay.samples) and sum(s.seconds == 1e-6 for s in replay.samples) >= 2
    stored, _ = db.best(kernel.fingerprint, replay.hardware.fingerprint)
    assert stored == replay.best_schedule.to_json()


def _tune_cmd(tmp_path, budget, *extra):
    return [sys.executable, "-m", "rcompiler.tune", "--kernel", "matmul", "--shape", "128,128,128",
            "--budget", str(budget), "--min-time", "0.02", "--db", str(tmp_path / "tune.db"),
            "--out", str(tmp_path / "out"), "--quiet", *extra]


def _count(db_path, table):
    try:
        with sqlite3.connect(db_path) as c:
            return c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except sqlite3.OperationalError:  # the run has created the file but not yet its tables
        return 0


def test_resume_after_a_killed_run(tmp_path):
    db_path = tmp_path / "tune.db"
    proc = subprocess.Popen(_tune_cmd(tmp_path, 12), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill the whole process group once a few samples are in
        if db_path.exists() and _count(db_path, "samples") >= 4:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db_path) as c:
        before = dict(c.execute("SELECT schedule_key, created FROM measurements").fetchall())
    assert 4 <= len(before) < 12
    done = subprocess.run(_tune_cmd(tmp_path, 12), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["samples_done"] == 12
    keys = [s["hash"] for s in report["samples"]]
    assert len(set(keys)) == 12
    with sqlite3.connect(db_path) as c:
        after = dict(c.execute("SELECT schedule_key, created FROM measurements").fetchall())
    assert all(after[k] == t for k, t in before.items())  # nothing measured before was measured again
    assert set(before) <= set(keys)  # and nothing measured was lost
    assert report["samples_measured_now"] == 12 - sum(1 for k in keys if k in before)


def test_cli_end_to_end(tmp_path):
    done = subprocess.run(_tune_cmd(tmp_path, 4), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("matmul[128x128x128]: best") and "GFLOP/s" in done.stdout
    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text())
    for key in ("kernel", "shape", "strategy", "proposer", "budget", "naive_seconds", "numpy_seconds",
                "best_seconds", "best_gflops", "best_speedup", "samples"):
        assert key in report
    assert report["budget"] == 4 and len(report["samples"]) == 4
    assert {"status", "seconds", "hash", "parent", "rationale"} <= set(report["samples"][0])
    first = report["first_guess"]  # the proposer's first guess beside the search's best
    assert first["schedule_text"] == str(Schedule.from_json(report["samples"][0]["schedule"]))
    assert first["best_over_first"] == pytest.approx(report["samples"][0]["seconds"] / report["best_seconds"])
    assert first["best_over_first"] >= 1 and f"(first guess {first['gflops']:.1f} GFLOP/s)" in done.stdout
    assert report["stopped"] is None
    assert (out / "best_so_far.png").stat().st_size > 1000
    payload = tmp_path / "payload.mlir"
    payload.write_text(get_kernel("matmul", (128, 128, 128)).payload)
    applied = subprocess.run([mlir_tool("mlir-opt"), str(payload),
                              f"--transform-preload-library=transform-library-paths={out / 'best.mlir'}",
                              "--transform-interpreter", "-o", os.devnull], capture_output=True, text=True)
    assert applied.returncode == 0, applied.stderr
    best = subprocess.run(_tune_cmd(tmp_path, 4, "--apply-best"), capture_output=True, text=True, timeout=120)
    assert best.returncode == 0 and report["best_schedule_text"] in best.stdout


@pytest.mark.parametrize("args,message", [
    (["--kernel", "matmul", "--shape", "1,2"], "takes shape M,N,K"),
    (["--kernel", "matmul", "--budget", "0"], "--budget must be at least 1"),
    (["/nonexistent.mlir"], "no such file"),
    ([], "nothing to work on"),
])
def test_cli_bad_input_is_one_clear_line(args, message, tmp_path):
    done = subprocess.run([sys.executable, "-m", "rcompiler.tune", "--db", str(tmp_path / "d.db"), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error:") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_rejects_malformed_mlir(tmp_path):
    bad = tmp_path / "bad.mlir"
    bad.write_text("func.func @f(%a: tensor<4xf32>) -> tensor<4xf32> { return %b : tensor<4xf32> }")
    done = subprocess.run([sys.executable, "-m", "rcompiler.tune", str(bad), "--db", str(tmp_path / "d.db")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "malformed MLIR" in done.stderr


def test_python_api_tune_compile_apply_best(tmp_path):
    db = tmp_path / "api.db"
    result = rcompiler.tune("matmul", shape=(64, 96, 32), budget=4, db=db, min_time=0.01, out=tmp_path / "o")
    assert result.best is not None and "transform.named_sequence @__transform_main" in result.best_script
    assert (tmp_path / "o" / "best.mlir").exists()
    fn = rcompiler.compile("matmul", result.best_schedule, shape=(64, 96, 32))
    a = np.random.rand(64, 32).astype(np.float32)
    b = np.random.rand(32, 96).astype(np.float32)
    np.testing.assert_allclose(fn(a, b), a @ b, rtol=1e-4, atol=1e-4)
    assert rcompiler.apply_best("matmul", db=db, shape=(64, 96, 32)) == result.best_schedule
    with pytest.raises(ValueError, match="shape"):
        fn(a.T.copy(), b)


def test_api_tunes_mlir_text(tmp_path):
    text = matmul_on_tensors(32, 64, 16)
    result = rcompiler.tune(text, budget=3, db=tmp_path / "x.db", min_time=0.01)
    assert result.best is not None and result.best.speedup > 1
