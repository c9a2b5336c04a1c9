"""Whole modules, as frontends emit them: split into tasks, each task tuned, the composed
program verified against the module's own naive lowering and timed end to end."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import rcompiler
from mlir_snippets import matmul_on_tensors
from rcompiler.jit import mlir_tool
from rcompiler.kernels import KernelError, kernel_from_mlir
from rcompiler.kernels.models import bert_ffn, resnet_block
from rcompiler.kernels.module import load_program
from rcompiler.search import warm_start
from rcompiler.search.task_scheduler import TaskScheduler

DATA = Path(__file__).parent / "data"
MLP, ATTENTION = DATA / "mlp_frontend.mlir", DATA / "attention_frontend.mlir"


def tune_cmd(tmp_path, *args, budget=8):
    return [sys.executable, "-m", "rcompiler.tune", *args, "--budget", str(budget), "--min-time", "0.02",
            "--db", str(tmp_path / "t.db"), "--out", str(tmp_path / "out"), "--quiet"]


def test_a_module_splits_into_tasks_with_their_fills_and_consumers():
    program = load_program(MLP.read_text())
    assert [t.ops for t in program.tasks] == [
        ("linalg.fill", "linalg.matmul", "linalg.generic", "linalg.generic"),  # bias and ReLU fuse
        ("linalg.fill", "linalg.matmul", "linalg.generic")]
    assert "call @task_0" in program.kernel.payload and "func.func private @task_1" in program.kernel.payload
    assert program.kernel.args == program.original.args  # the same entry point as the module given
    attention = load_program(ATTENTION.read_text())
    assert attention.weights()[attention.tasks[0].key] == 3  # Q, K, V projections: one task, tuned once
    ops = [t.ops for t in attention.tasks]
    assert ("linalg.transpose",) in ops and ("linalg.fill", "linalg.generic", "linalg.generic") in ops


def test_the_frontend_mlp_is_tuned_verified_and_reproducible_with_mlir_opt(tmp_path):
    done = subprocess.run(tune_cmd(tmp_path, str(MLP)), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "GFLOP/s end to end" in done.stdout and "2 tasks (2 distinct, 2 scheduled)" in done.stdout
    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text())
    assert report["samples_done"] == 8 and report["best_speedup"] > 1
    assert [t["status"] for t in report["tasks"]] == ["in the program"] * 2
    # A share is the task's time (weight x its naive time alone) over the module's naive time end to
    # end. They are timed apart, so on a loaded machine the sum strays from 1 (0.24 was seen next
    # to a benchmark); the bounds only catch a wrong unit or scale (1000x).
    for t in report["tasks"]:
        assert t["share_before"] == pytest.approx(t["weight"] * t["naive_seconds"] / report["naive_seconds"])
    assert 0.1 < sum(t["share_before"] for t in report["tasks"]) < 10
    applied = subprocess.run([mlir_tool("mlir-opt"), str(out / "payload.mlir"),
                              f"--transform-preload-library=transform-library-paths={out / 'best.mlir'}",
                              "--transform-interpreter"], capture_output=True, text=True)
    assert applied.returncode == 0, applied.stderr
    assert "vector<" in applied.stdout and "linalg.matmul" not in applied.stdout


def test_the_attention_module_with_softmax_and_a_transpose(tmp_path):
    result = rcompiler.tune(str(ATTENTION), budget=28, min_time=0.02, db=tmp_path / "t.db")
    assert result.best is not None and result.best.ok  # verified against the module's naive lowering
    assert result.speedup > 2
    labels = [o.task.kernel.label for o in result.tasks]
    assert any(label.startswith("transpose") for label in labels)
    assert sum(o.weight for o in result.tasks) == len(result.program.tunable) == 9
    fn = rcompiler.compile(str(ATTENTION), result)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((128, 256)).astype(np.float32)
    wq, wk, wv, wo = (0.05 * rng.standard_normal((256, 256))).astype(np.float32)[None].repeat(4, 0)
    q, k, v = x @ wq, x @ wk, x @ wv
    s = (q @ k.T) * 0.0625
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(fn(x, wq, wk, wv, wo), (p @ v) @ wo + x, rtol=1e-4, atol=1e-4)


def test_a_bert_feed_forward_block_with_gelu_and_layer_norm_matches_numpy(tmp_path):
    """Exact GELU (math.erf), row reductions and rsqrt for LayerNorm: tuned, composed, and checked
    against float64 NumPy (the module's own reference is its naive lowering, which shares our math)."""
    import math

    path = tmp_path / "bert_ffn.mlir"
    path.write_text(bert_ffn(tokens=16, hidden=64, inner=128))
    result = rcompiler.tune(str(path), budget=16, min_time=0.02, db=tmp_path / "t.db")
    assert result.best is not None and result.best.ok and result.speedup > 1
    # every task scheduled, or left naive only because its best did not beat the naive lowering
    assert all(o.task.key in result.parts or result.dropped[o.task.key].startswith("no faster")
               for o in result.tasks), result.dropped
    rng = np.random.default_rng(3)
    x, w1, b1, w2, b2, gamma, beta = (rng.standard_normal(s).astype(np.float32)
                                      for s in ((16, 64), (128, 64), (128,), (64, 128), (64,), (64,), (64,)))
    h = x.astype(np.float64) @ w1.T / 8 + b1
    h = h / 2 * (1 + np.vectorize(math.erf)(h / 2 ** 0.5))
    r = x + h @ w2.T + b2
    expected = (r - r.mean(1, keepdims=True)) / np.sqrt(r.var(1, keepdims=True) + 1e-12) * gamma + beta
    got = rcompiler.compile(str(path), result)(x, w1 / 8, b1, w2, b2, gamma, beta)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_a_resnet_style_block_in_nchw(tmp_path):
    path = tmp_path / "resnet.mlir"
    path.write_text(resnet_block(channels=8, size=8))
    result = rcompiler.tune(str(path), budget=8, min_time=0.02, db=tmp_path / "t.db")
    assert [o.task.ops[:2] for o in result.tasks] == [("linalg.broadcast", "linalg.conv_2d_nchw_fchw")] * 2
    assert result.best is not None and result.best.ok and result.speedup > 1
    # NCHW: what wins is vectorized: a layout rewrite, im2col (pixels as the vector dimension of
    # a matmul-like contraction) or pack_channels (NCHWc blocks), or at 8 channels the direct
    # conv along ow with its window at 1, vectorized as a generic (a named one stays scalar)
    from rcompiler.transforms.space import plan

    assert all(o.best.schedule.has("im2col") or o.best.schedule.has("pack_channels")
               or plan(o.best.schedule, o.task.kernel).generalize for o in result.tasks), \
        [str(o.best.schedule) for o in result.tasks]
    # The input's tensor.pad stays in the entry function and is copied row by row: a copy of the
    # whole strided tensor goes to the runtime's memrefCopy, element by element (40% of this
    # block's time end to end at 64 channels). The first conv's output, padded for the second,
    # is written by its task straight into the padded tensor, whose border the entry fills.
    from rcompiler.measure.builder import build

    assert (result.program.entry_pads, result.program.entry_fills) == ((4,), (4,))
    assert result.program.kernel.payload.count("tensor.pad") == 1
    built = build(result.program.kernel.payload, result.best_script)
    assert built.llvm_ir and "memrefCopy" not in built.llvm_ir
    # Bufferized, the first task is called with a view of the padded buffer (its interior, at an
    # offset) and nothing is copied into that buffer (the one copy left is the block's result,
    # into the caller's output).
    import re

    from mlir import ir, passmanager

    from rcompiler.transforms.lowering import _stages, apply_script

    with ir.Context(), ir.Location.unknown():
        module = ir.Module.parse(result.program.kernel.payload)
        apply_script(module, result.best_script)
        passmanager.PassManager.parse(f"builtin.module({','.join(_stages(1, True)[0])})").run(module.operation)
        bufferized = str(module)
    assert re.search(r"call @task_\d+\(.*strided<\[[\d, ]+\], offset: [1-9]\d*>", bufferized), bufferized
    copies = [line for line in bufferized.splitlines() if "memref.copy" in line]
    assert len(copies) == 1 and "1x8x10x10" not in copies[0] and "strided" not in copies[0], copies


def strided_depthwise(weights: np.ndarray, size: int) -> str:
    """A stride-2 3x3 depthwise NCHW conv on an already padded image, weights as a literal."""
    c = weights.shape[0]
    out = (size - 3) // 2 + 1
    literal = np.array2string(weights, separator=", ", threshold=10**6, floatmode="unique").replace("\n", "")
    return f"""
func.func @dw(%x: tensor<1x{c}x{size}x{size}xf32>) -> tensor<1x{c}x{out}x{out}xf32> {{
  %w = arith.constant dense<{literal}> : tensor<{c}x3x3xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x{c}x{out}x{out}xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<1x{c}x{out}x{out}xf32>) -> tensor<1x{c}x{out}x{out}xf32>
  %y = linalg.depthwise_conv_2d_nchw_chw {{dilations = dense<1> : vector<2xi64>, strides = dense<2> : vector<2xi64>}}
       ins(%x, %w : tensor<1x{c}x{size}x{size}xf32>, tensor<{c}x3x3xf32>)
       outs(%init : tensor<1x{c}x{out}x{out}xf32>) -> tensor<1x{c}x{out}x{out}xf32>
  return %y : tensor<1x{c}x{out}x{out}xf32>
}}"""


def test_a_stride_2_depthwise_conv_reads_column_phases_and_matches_numpy(tmp_path):
    """MobileNet's stride-2 depthwise convs: the columns split into even and odd phases
    (kernels/strided.py) so that the window reads contiguously; the program, tuned, computes
    what NumPy computes from the original op's definition."""
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((8, 3, 3)).astype(np.float32)
    path = tmp_path / "dw.mlir"
    path.write_text(strided_depthwise(weights, 18))
    result = rcompiler.tune(str(path), budget=6, min_time=0.02, db=tmp_path / "t.db")
    kernel = result.kernel  # one task: tuned as a kernel, in its rewritten form
    assert "depthwise_conv" not in kernel.payload and "tensor<1x8x18x9x2xf32>" in kernel.payload
    assert kernel.structure[kernel.main_index].sizes == (1, 8, 8, 8, 3, 2, 2)
    # The heuristic's first guess already keeps a whole row of outputs by both phases in a tile.
    assert result.best is not None and result.best.status == "ok", result.best
    first = result.samples[0].schedule.get("tile").sizes
    assert (first[3], first[6]) == (8, 2), first

    x = rng.standard_normal((1, 8, 18, 18)).astype(np.float32)
    expected = np.zeros((1, 8, 8, 8), np.float32)
    for kh in range(3):
        for kw in range(3):
            expected += x[:, :, kh:kh + 16:2, kw:kw + 16:2] * weights[None, :, kh, kw, None, None]
    got = rcompiler.compile(result.kernel, result.best.schedule)(x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_nchw_conv_tasks_pack_channels_and_the_module_verifies_end_to_end(measure_with):
    """pack_channels on what a PyTorch-style frontend emits: a bias broadcast as the conv's init
    (packed with it), ReLU and a residual add after it (on the unpacked output); each task and
    the composed module verify against the naive lowering."""
    from rcompiler.measure import Candidate, Status
    from rcompiler.search.module_tuner import compose
    from rcompiler.transforms import Hoist, PackChannels, Schedule, Tile, Vectorize, render

    program = load_program(resnet_block(channels=16, size=8))
    schedule = Schedule.of([PackChannels((8, 4)), Tile((1, 1, 1, 4, 1, 1, 1, 0, 0)), Vectorize(), Hoist()])
    tasks = program.distinct()
    assert len(tasks) == 2
    for task in tasks:
        result = measure_with(task.kernel).measure(Candidate(render(schedule, task.kernel).text))
        assert result.status is Status.OK, result.reason
    whole = measure_with(program.kernel).measure(Candidate(compose(program, {t.key: schedule for t in tasks}).text))
    assert whole.status is Status.OK and whole.max_error <= program.kernel.tolerance, whole.reason


# Two functions in one module: the small one first.
TWO_FUNCTIONS = (matmul_on_tensors(8, 8, 8).replace("@mm(", "@small(")
                 + matmul_on_tensors(64, 16, 32).replace("@mm(", "@big("))


def test_two_functions_the_chosen_one_gives_sizes_and_flops():
    with pytest.raises(KernelError, match=r"several public functions with Linalg ops \(@small, @big\); choose one"):
        kernel_from_mlir(TWO_FUNCTIONS)
    big = kernel_from_mlir(TWO_FUNCTIONS, "big")
    assert big.flops == 2 * 64 * 16 * 32 + 64 * 16 * 0 and big.structure[big.main_index].sizes == (64, 16, 32)
    assert "@small" not in big.payload
    small = kernel_from_mlir(TWO_FUNCTIONS, "small")
    assert small.flops == 2 * 8 * 8 * 8 and "@big" not in small.payload


UNSCHEDULABLE = """
#id = affine_map<(d0, d1) -> (d0, d1)>
func.func @f(%x: tensor<32x32xf32>, %w: tensor<32x32xf32>, %t: tensor<1xf32>) -> (tensor<32x32xf32>, tensor<32x32xf32>) {
  %z = arith.constant 0.0 : f32
  %c0 = arith.constant 0 : index
  %s = tensor.extract %t[%c0] : tensor<1xf32>
  %e = tensor.empty() : tensor<32x32xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<32x32xf32>) -> tensor<32x32xf32>
  %m = linalg.matmul ins(%x, %w : tensor<32x32xf32>, tensor<32x32xf32>) outs(%f : tensor<32x32xf32>) -> tensor<32x32xf32>
  %r = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%m : tensor<32x32xf32>) outs(%e : tensor<32x32xf32>) {
  ^bb0(%in: f32, %out: f32):
    %y = arith.mulf %in, %s : f32
    linalg.yield %y : f32
  } -> tensor<32x32xf32>
  return %m, %r : tensor<32x32xf32>, tensor<32x32xf32>
}
"""


def test_a_task_that_cannot_be_scheduled_lowers_naively_and_the_rest_is_tuned(tmp_path):
    program = load_program(UNSCHEDULABLE)
    scaled = program.tasks[1]
    assert scaled.kernel is None and "has type f32" in scaled.reason  # a scalar from outside: not a kernel
    result = rcompiler.tune(UNSCHEDULABLE, budget=4, min_time=0.02, db=tmp_path / "t.db")
    assert len(result.tasks) == 1 and list(result.parts) == [program.tasks[0].key]
    assert result.best.ok and result.speedup > 1


def test_a_task_whose_best_loses_to_its_naive_lowering_is_left_naive(tmp_path):
    from rcompiler.db import Database
    from rcompiler.measure import Limits
    from rcompiler.search.module_tuner import ModuleTuner
    from rcompiler.search.tuner import TuneConfig

    tuner = ModuleTuner(load_program(MLP.read_text()), TuneConfig(budget=8, limits=Limits(min_time=0.02)),
                        Database(tmp_path / "t.db"))
    result = tuner.run()
    first, second = (o.task.key for o in result.tasks)
    assert set(result.parts) == {first, second}, result.dropped
    # The vectorized SiLU of a Llama MLP once timed 0.083 ms against 0.078 naive: as if that happened here
    tuner.tuners[0].naive_seconds = tuner.tuners[0].best_seconds
    tuner._compose_and_measure(result)
    assert list(result.parts) == [second] and result.best.ok
    assert result.dropped[first].startswith("no faster than its naive lowering")


def test_a_budget_smaller_than_a_round_per_task_still_reaches_every_task(tmp_path):
    result = rcompiler.tune(str(MLP), budget=4, min_time=0.02, db=tmp_path / "t.db")
    assert [len(o.result.samples) for o in result.tasks] == [2, 2]
    assert len(result.parts) == 2, result.dropped


def test_a_task_starts_from_the_best_schedule_of_a_similar_one_and_resumes_the_same(tmp_path):
    """The MLP's second Linear (other shapes) is offered the first one's best schedule as it
    stood when its own first round began; running again replays the very same search."""
    first = rcompiler.tune(str(MLP), budget=8, min_time=0.01, db=tmp_path / "t.db")
    one, two = (o.result.samples for o in first.tasks)
    transferred = [s for s in two if "similar task" in s.rationale]
    # How many of the first task's fastest schedules fit the second depends on which won on this host.
    assert 1 <= len(transferred) <= warm_start.MOST
    assert all(first.tasks[0].task.kernel.label in s.rationale for s in transferred)
    assert {s.schedule.key for s in transferred} <= {s.key for s in one if s.status == "ok"}
    assert not any("similar task" in s.rationale for s in one)  # nothing like it was tuned before
    again = rcompiler.tune(str(MLP), budget=8, min_time=0.01, db=tmp_path / "t.db")
    assert [[s.key for s in o.result.samples] for o in again.tasks] == [[s.key for s in o.result.samples]
                                                                         for o in first.tasks]
    assert sum(not s.reused for o in again.tasks for s in o.result.samples) == 0


def test_a_killed_module_run_resumes_with_nothing_measured_twice(tmp_path):
    db = tmp_path / "t.db"
    proc = subprocess.Popen(tune_cmd(tmp_path, str(ATTENTION), budget=16), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)

    def measured() -> int:
        try:
            with sqlite3.connect(db) as c:
                return c.execute("SELECT count(*) FROM samples").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet, or created without its tables yet
            return 0

    deadline = time.time() + 300
    while measured() < 6 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = measured()
    assert 0 < before < 16
    done = subprocess.run(tune_cmd(tmp_path, str(ATTENTION), budget=16), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["samples_done"] == 16 and report["samples_measured_now"] == 16 - before


def test_the_task_scheduler_warms_every_task_up_then_follows_the_gain():
    s = TaskScheduler(weights=[1, 3], naive=[1.0, 1.0], warmup=1)
    assert s.next() == 0
    s.tell(0, 0.5)
    assert s.next() == 1  # every task once first
    s.tell(1, 0.9)
    # task 0 fell by 0.5 in a round, task 1 by 0.1 but weighs 3: 0.5 + opt vs 3 * (0.1 + opt)
    assert s.gain(0) < s.gain(1) and s.next() == 1
    s.tell(1, 0.9, done=True)
    assert s.next() == 0
    s.tell(0, None, done=True)
    assert s.next() is None


def _save_onnx(path: Path, name: str, nodes: list[tuple[str, list[str], str]], arrays: dict[str, np.ndarray],
               x_shape: list[int], y_shape: list[int]) -> None:
    """An ONNX graph from x to y: (op, inputs, output) nodes, `arrays` as f32 initializers (weights)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in arrays.items()]
    graph = helper.make_graph([helper.make_node(op, ins, [out]) for op, ins, out in nodes], name,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _onnx_mlp(path: Path) -> None:
    """A two-layer MLP as an ONNX graph (MatMul, Add, Relu) with its weights as initializers."""
    rng = np.random.default_rng(0)
    arrays = {k: 0.1 * rng.standard_normal(shape) for k, shape in (("w1", (32, 64)), ("b1", (64,)),
                                                                    ("w2", (64, 16)), ("b2", (16,)))}
    nodes = [("MatMul", ["x", "w1"], "h"), ("Add", ["h", "b1"], "hb"), ("Relu", ["hb"], "r"),
             ("MatMul", ["r", "w2"], "o"), ("Add", ["o", "b2"], "y")]
    _save_onnx(path, "mlp", nodes, arrays, [16, 32], [16, 16])


NEEDS_ONNX = pytest.mark.skipif(not __import__("rcompiler.onnx_import").onnx_import.available(),
                                reason='needs the onnx extra: pip install -e ".[onnx]"')


@NEEDS_ONNX
def test_an_onnx_model_is_imported_and_tuned_as_a_module(tmp_path):
    import onnx.reference

    model = tmp_path / "mlp.onnx"
    _onnx_mlp(model)
    text = rcompiler.import_onnx(model)
    assert "linalg.matmul" in text and "arith.constant dense" in text  # the weights are constants
    done = subprocess.run(tune_cmd(tmp_path, str(model), budget=8), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "2 tasks (2 distinct, 2 scheduled)" in done.stdout
    result = rcompiler.tune(str(model), budget=8, min_time=0.02, db=tmp_path / "t.db")
    x = np.random.default_rng(2).standard_normal((16, 32)).astype(np.float32)
    expected = onnx.reference.ReferenceEvaluator(str(model)).run(None, {"x": x})[0]
    np.testing.assert_allclose(rcompiler.compile(str(model), result)(x), expected, rtol=1e-4, atol=1e-4)


def _onnx_bert_ffn(path: Path) -> None:
    """BERT's feed-forward block and pooler as torch.onnx exports them: exact GELU spelled out
    as x * 0.5 * (1 + Erf(x / sqrt 2)), then a dense layer and Tanh."""
    rng = np.random.default_rng(0)
    arrays = {"w1": 0.1 * rng.standard_normal((64, 256)), "b1": 0.1 * rng.standard_normal(256),
              "w2": 0.1 * rng.standard_normal((256, 64)), "b2": 0.1 * rng.standard_normal(64),
              "sqrt2": np.array(2 ** 0.5), "one": np.array(1.0), "half": np.array(0.5)}
    nodes = [("MatMul", ["x", "w1"], "h"), ("Add", ["h", "b1"], "hb"), ("Div", ["hb", "sqrt2"], "hs"),
             ("Erf", ["hs"], "he"), ("Add", ["he", "one"], "h1"), ("Mul", ["hb", "h1"], "hm"),
             ("Mul", ["hm", "half"], "g"), ("MatMul", ["g", "w2"], "o"), ("Add", ["o", "b2"], "ob"),
             ("Tanh", ["ob"], "y")]
    _save_onnx(path, "bert_ffn", nodes, arrays, [32, 64], [32, 64])


@NEEDS_ONNX
def test_gelu_and_tanh_from_an_onnx_bert_block_compile_vectorized_and_match_onnx(tmp_path):
    """math.erf had no LLVM lowering (the module failed to JIT); erf and tanh now vectorize."""
    import onnx.reference

    from rcompiler.measure.builder import build

    model = tmp_path / "bert_ffn.onnx"
    _onnx_bert_ffn(model)
    text = rcompiler.import_onnx(model)
    assert "math.erf" in text and "math.tanh" in text
    result = rcompiler.tune(str(model), budget=8, min_time=0.02, db=tmp_path / "t.db")
    assert result.best is not None and result.best.ok and result.speedup > 1
    built = build(result.program.kernel.payload, result.best_script)
    assert built.llvm_ir and not any(f"@{f}(" in built.llvm_ir for f in ("erff", "tanhf", "expf"))
    x = np.random.default_rng(2).standard_normal((32, 64)).astype(np.float32)
    expected = onnx.reference.ReferenceEvaluator(str(model)).run(None, {"x": x})[0]
    np.testing.assert_allclose(rcompiler.compile(str(model), result)(x), expected, rtol=1e-4, atol=1e-5)


def test_an_onnx_model_without_the_extra_or_a_file_is_a_clear_error(tmp_path):
    done = subprocess.run(tune_cmd(tmp_path, str(tmp_path / "missing.onnx")), capture_output=True, text=True)
    assert done.returncode == 2 and "missing.onnx: no such file" in done.stderr


class ManyRunners:
    """A backend as a cluster of several runners looks to the tuners, on this machine's pools:
    it wants 8 candidates in flight and 2 tasks tuned at once, and records what it was given."""

    parallelism, parallel_tasks = 8, 2

    def __init__(self):
        from rcompiler.measure import LocalRunners

        self.local, self.batches, self.threads = LocalRunners(), [], set()
        self.hardware = self.local.hardware

    def measurer(self, kernel, limits=None, seed=0):
        backend, measurer = self, self.local.measurer(kernel, limits, seed)
        measure_many = measurer.measure_many

        def recorded(candidates, *args, **kwargs):
            candidates = list(candidates)
            backend.batches.append(len(candidates))
            backend.threads.add(threading.current_thread().name)
            return measure_many(candidates, *args, **kwargs)

        measurer.measure_many = recorded
        return measurer

    def progress(self):
        return ""

    def stats(self):
        return {}

    def interrupt(self, stop):
        pass


def test_with_many_runners_the_search_fills_them_and_tasks_are_tuned_at_once(tmp_path):
    from rcompiler.db import Database
    from rcompiler.measure import Limits
    from rcompiler.search.module_tuner import ModuleTuner
    from rcompiler.search.tuner import TuneConfig, Tuner

    backend = ManyRunners()
    kernel = kernel_from_mlir(matmul_on_tensors(64, 64, 64))
    result = Tuner(kernel, TuneConfig(budget=8, limits=Limits(min_time=0.02)),
                   Database(tmp_path / "k.db"), backend=backend).run()
    # More candidates at once than one MCTS expansion gives (4): it expanded again before hearing back.
    assert len(result.samples) == 8 and max(backend.batches) > 4, backend.batches
    backend = ManyRunners()
    result = ModuleTuner(
        load_program(MLP.read_text()), TuneConfig(budget=8, limits=Limits(min_time=0.02)),
        Database(tmp_path / "m.db"), backend=backend).run()
    assert result.best is not None and result.samples == 8
    assert {"task_0", "task_1"} <= backend.threads  # both tasks had a round in flight at once
