"""report.html from real runs, opened in headless Chromium (Debian's package, driven by Playwright):
it loads offline without a console error, its trees hold every sample and highlight the best path
that report.json names, its controls fold and unfold them, and it renders to a picture."""
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import rcompiler

MLP = Path(__file__).parent / "data" / "mlp_frontend.mlir"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# As root in a closed network: no sandbox, and no background connections (the machine refuses them).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KERNEL_BUDGET = 10
# From the 10th timed run on (the naive lowering's is the first), every candidate's worker dies:
# the last samples are real failures, classed `crash`.
CRASH_LATE = {"RCOMPILER_FAULT": "run:segv:10"}


def tune(tmp: Path, *target: str, budget: int, env: dict | None = None) -> dict:
    """A run through the CLI (so report.json records its command); its report."""
    cmd = [sys.executable, "-m", "rcompiler.tune", *target, "--budget", str(budget), "--min-time", "0.02",
           "--db", str(tmp / "t.db"), "--out", str(tmp / "out"), "--quiet"]
    faults = {**env, "RCOMPILER_FAULT_LOG": str(tmp / "faults.log")} if env else {}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **faults})
    assert done.returncode == 0, done.stderr
    return json.loads((tmp / "out" / "report.json").read_text())


@pytest.fixture(scope="module")
def kernel_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kernel")
    return tmp, tune(tmp, "--kernel", "matmul", "--shape", "64,64,64", budget=KERNEL_BUDGET, env=CRASH_LATE)


@pytest.fixture(scope="module")
def module_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("module")
    return tmp, tune(tmp, str(MLP), budget=4)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Playwright gives each launch a fresh, temporary --user-data-dir.
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def open_page(browser, path: Path):
    """The page, and what went wrong loading it: console errors, uncaught exceptions, and any
    request for something other than the file itself."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"exception: {e}"))
    page.on("request", lambda r: r.url != path.as_uri() and problems.append(f"request: {r.url}"))
    page.goto(path.as_uri(), wait_until="load")
    return page, problems


def chain(samples: list[dict], best_seq: int) -> list[int]:
    """Seqs from the top of the tree down to the best sample, following the parents' hashes."""
    by_hash = {s["hash"]: s for s in samples}
    node, path = samples[best_seq], []
    while node is not None:
        path.append(node["seq"])
        node = by_hash.get(node["parent"])
    return path[::-1]


def seqs(page, selector: str, visible_only: bool = False) -> list[int]:
    script = ("els => els.filter(e => e.checkVisibility()).map(e => +e.dataset.seq)" if visible_only
              else "els => els.map(e => +e.dataset.seq)")
    return page.locator(selector).evaluate_all(script)


def assert_not_blank(page):
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("L"), dtype=float)
    assert pixels.std() > 20 and (pixels < 200).mean() > 0.02, "the screenshot is (nearly) blank"


def test_kernel_page_in_chromium(browser, kernel_run):
    tmp, report = kernel_run
    samples = report["samples"]
    failed = {s["seq"]: s["status"] for s in samples if s["status"] != "ok"}
    assert len(samples) == KERNEL_BUDGET and failed, "the injected crashes should fail the last candidates"
    page, problems = open_page(browser, tmp / "out" / "report.html")
    assert problems == []
    assert sorted(seqs(page, ".tree li.node")) == list(range(KERNEL_BUDGET))
    assert seqs(page, ".tree li.node.best-path") == chain(samples, report["best_seq"])
    assert seqs(page, ".tree li.node.best") == [report["best_seq"]]
    shown = page.locator(".tree li.node.failed").evaluate_all(
        "els => els.map(e => [+e.dataset.seq, e.querySelector('.fail').textContent])")
    assert dict(shown) == failed
    assert page.locator("svg").count() == 1 and "NumPy" in page.locator("svg").text_content()
    assert page.locator("pre.script").inner_text().startswith(f"// {report['label']}")
    assert report["command"]["cli"] in page.locator("pre").all_inner_texts()
    assert_not_blank(page)
    # Folded, only the top of the tree shows; "best path only" opens the way down to the best.
    top = [s["seq"] for s in samples if s["parent"] is None]
    page.click("#collapse")
    assert seqs(page, ".tree li.node", visible_only=True) == top
    page.click("#best-path")
    visible = seqs(page, ".tree li.node", visible_only=True)
    assert set(chain(samples, report["best_seq"])) <= set(visible) and len(visible) < len(samples)
    page.click("#expand")
    assert len(seqs(page, ".tree li.node", visible_only=True)) == len(samples)


def test_module_page_in_chromium(browser, module_run):
    tmp, report = module_run
    page, problems = open_page(browser, tmp / "out" / "report.html")
    assert problems == []
    tasks = report["tasks"]
    assert page.locator("table.tasks tr").count() == 1 + len(tasks)
    assert page.locator("section.study").count() == len(tasks)
    for i, t in enumerate(tasks):
        section = page.locator(f'section.study[data-task="{i}"]')
        samples = t["samples_detail"]
        assert len(seqs(section, "li.node")) == len(samples) == t["samples"]
        best = next(s for s in samples if s["schedule"] == t["best_schedule"])
        assert seqs(section, "li.node.best-path") == chain(samples, best["seq"])
        assert f"{t['share_before']:.1%}" in page.locator("table.tasks").inner_text()
    assert page.locator("svg").count() == len(tasks)
    assert "payload.mlir" in page.locator("body").inner_text()
    assert_not_blank(page)


def test_the_recorded_commands_reproduce_the_run(kernel_run, tmp_path, monkeypatch):
    tmp, report = kernel_run
    command = report["command"]
    argv = shlex.split(command["cli"])
    assert argv[:3] == ["python", "-m", "rcompiler.tune"]
    # Rerun, with the database of the run: every sample replays (a later --out wins, leaving the run's own).
    done = subprocess.run([sys.executable, *argv[1:], "--out", str(tmp_path / "again")], cwd=command["cwd"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert again["samples_measured_now"] == 0 and again["best_schedule"] == report["best_schedule"]
    # The Python call, with no output folder: the same study, replayed.
    calls = []
    api = types.SimpleNamespace(tune=lambda *a, **k: calls.append(rcompiler.tune(*a, **{**k, "out": None})))
    monkeypatch.chdir(command["cwd"])
    eval(command["python"], {"rcompiler": api})
    result, = calls
    assert all(s.reused for s in result.samples) and len(result.samples) == KERNEL_BUDGET
    assert result.best_schedule.to_json() == report["best_schedule"]


def test_rebuild_from_a_report_and_the_database(kernel_run, module_run, tmp_path):
    tmp, report = kernel_run
    out = tmp_path / "run"
    shutil.copytree(tmp / "out", out)
    (out / "report.html").unlink()
    # A report written before the study went on, by a run through the API, beside a peer's time.
    older = {**report, "samples": report["samples"][:4], "peers": {"IREE": report["numpy_seconds"] * 2}}
    del older["command"]
    (out / "report.json").write_text(json.dumps(older))
    rebuild = [sys.executable, "-m", "rcompiler.report", str(out / "report.json")]
    done = subprocess.run(rebuild, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    html = (out / "report.html").read_text()
    assert html.count('class="node ') == 4 and "IREE" in html
    assert "--kernel matmul --shape 64,64,64 --strategy mcts --proposer heuristic --budget 10" in html
    done = subprocess.run([*rebuild, "--db", str(tmp / "t.db")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    html = (out / "report.html").read_text()
    assert html.count('class="node ') == KERNEL_BUDGET and html.count('class="node failed') == sum(
        s["status"] != "ok" for s in report["samples"])
    # A module whose groups stayed naive says which and why.
    mtmp, mreport = module_run
    shutil.copytree(mtmp / "out", tmp_path / "module")
    mreport = {**mreport, "naive_tasks": [{"function": "group_2", "ops": ["linalg.softmax"],
                                          "reason": "no payload kernel for linalg.softmax"}]}
    (tmp_path / "module" / "report.json").write_text(json.dumps(mreport))
    done = subprocess.run([sys.executable, "-m", "rcompiler.report", str(tmp_path / "module" / "report.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "@group_2 (linalg.softmax): no payload kernel for linalg.softmax" in (
        tmp_path / "module" / "report.html").read_text()


def test_rebuild_names_a_bad_report_in_one_line(tmp_path):
    bad = tmp_path / "report.json"
    bad.write_text("{")
    done = subprocess.run([sys.executable, "-m", "rcompiler.report", str(bad)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and done.stderr.startswith(f"error: {bad}") and len(done.stderr.splitlines()) == 1
