"""What real exports contain, each on a small module: asserts as run-time checks, boolean
masks, integer indices, weights as parameters, constant work folded, shared fills and
identical tasks, and a task that cannot be measured alone."""
import numpy as np
import pytest

import rcompiler
from rcompiler.api import CompiledKernel
from rcompiler.jit import CheckFailed
from rcompiler.kernels import kernel_from_mlir
from rcompiler.kernels.module import load_program

ID = "affine_map<(d0) -> (d0)>"
ID2 = "affine_map<(d0, d1) -> (d0, d1)>"
T2 = "affine_map<(d0, d1) -> (d1, d0)>"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RCOMPILER_CACHE", str(tmp_path / "cache"))


def test_an_assert_is_a_run_time_check_that_fails_the_call_with_its_message():
    kernel = kernel_from_mlir(f"""
func.func @f(%x: tensor<8xf32>) -> tensor<8xf32> {{
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<8xf32>
  %r = linalg.generic {{indexing_maps = [{ID}, {ID}], iterator_types = ["parallel"]}}
      ins(%x : tensor<8xf32>) outs(%e : tensor<8xf32>) {{
  ^bb0(%in: f32, %out: f32):
    %ok = arith.cmpf oge, %in, %zero : f32
    cf.assert %ok, "x must not be negative"
    %s = arith.mulf %in, %in : f32
    linalg.yield %s : f32
  }} -> tensor<8xf32>
  return %r : tensor<8xf32>
}}""")
    fn = CompiledKernel(kernel, None)
    x = np.arange(8, dtype=np.float32)
    np.testing.assert_array_equal(fn(x), x * x)
    with pytest.raises(CheckFailed, match="x must not be negative"):
        fn(x - 3)
    np.testing.assert_array_equal(fn(x), x * x)  # the failure is reported once, not forever


def test_boolean_tensors_are_stored_as_bytes_and_read_back_as_booleans():
    kernel = kernel_from_mlir(f"""
func.func @f(%x: tensor<4x32xf32>, %keep: tensor<4x32xi1>) -> (tensor<4x32xf32>, tensor<4x32xi1>) {{
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x32xi1>
  %pos = linalg.generic {{indexing_maps = [{ID2}, {ID2}], iterator_types = ["parallel", "parallel"]}}
      ins(%x : tensor<4x32xf32>) outs(%e : tensor<4x32xi1>) {{
  ^bb0(%in: f32, %out: i1):
    %p = arith.cmpf ogt, %in, %zero : f32
    linalg.yield %p : i1
  }} -> tensor<4x32xi1>
  %f = tensor.empty() : tensor<4x32xf32>
  %r = linalg.generic {{indexing_maps = [{ID2}, {ID2}, {ID2}, {ID2}], iterator_types = ["parallel", "parallel"]}}
      ins(%x, %pos, %keep : tensor<4x32xf32>, tensor<4x32xi1>, tensor<4x32xi1>) outs(%f : tensor<4x32xf32>) {{
  ^bb0(%in: f32, %p: i1, %k: i1, %out: f32):
    %both = arith.andi %p, %k : i1
    %y = arith.select %both, %in, %zero : f32
    linalg.yield %y : f32
  }} -> tensor<4x32xf32>
  return %r, %pos : tensor<4x32xf32>, tensor<4x32xi1>
}}""")
    assert [a.dtype for a in kernel.args] == ["float32", "bool", "float32", "bool"]
    assert "xi1>" not in kernel.payload.split("func.func")[1].split(")")[0]  # the memref entry takes bytes
    rng = np.random.default_rng(0)
    x, keep = rng.uniform(-1, 1, (4, 32)).astype(np.float32), rng.integers(0, 2, (4, 32)).astype(bool)
    y, pos = CompiledKernel(kernel, None)(x, keep)
    assert pos.dtype == bool
    np.testing.assert_array_equal(pos, x > 0)
    np.testing.assert_array_equal(y, np.where((x > 0) & keep, x, 0))


GATHER = f"""
func.func @embed(%ids: tensor<6xi64>) -> tensor<6x4xf32> {{
  %table = arith.constant dense<{np.arange(40, dtype=np.float32).reshape(10, 4).tolist()}> : tensor<10x4xf32>
  %c0 = arith.constant 0 : i64
  %c10 = arith.constant 10 : i64
  %e = tensor.empty() : tensor<6x4xf32>
  %r = linalg.generic {{indexing_maps = [affine_map<(d0, d1) -> (d0)>, {ID2}],
                        iterator_types = ["parallel", "parallel"]}} ins(%ids : tensor<6xi64>) outs(%e : tensor<6x4xf32>) {{
  ^bb0(%id: i64, %out: f32):
    %neg = arith.cmpi slt, %id, %c0 : i64
    %wrapped = arith.addi %id, %c10 : i64
    %i = arith.select %neg, %wrapped, %id : i64
    %row = arith.index_cast %i : i64 to index
    %col = linalg.index 1 : index
    %v = tensor.extract %table[%row, %col] : tensor<10x4xf32>
    linalg.yield %v : f32
  }} -> tensor<6x4xf32>
  return %r : tensor<6x4xf32>
}}"""


def test_index_inputs_get_test_values_below_the_size_they_index():
    kernel = kernel_from_mlir(GATHER)
    ids = kernel.args[0]
    assert ids.dtype == "int64" and ids.bound == 10
    values = kernel.make_inputs(0)[0]
    assert values.min() >= 0 and values.max() < 10 and len(set(values.tolist())) > 1
    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    ids = np.array([0, 9, -1, 3, 3, 5])
    np.testing.assert_array_equal(CompiledKernel(kernel, None)(ids), table[ids])


def test_large_constants_become_parameters_and_constant_work_is_folded_once():
    rng = np.random.default_rng(0)
    w = rng.uniform(-1, 1, (16, 8)).astype(np.float32)  # stored N x K, as a Linear's weight
    text = f"""
func.func @linear(%x: tensor<4x8xf32>) -> tensor<4x16xf32> {{
  %w = arith.constant dense<{w.tolist()}> : tensor<16x8xf32>
  %zero = arith.constant 0.0 : f32
  %te = tensor.empty() : tensor<8x16xf32>
  %wt = linalg.transpose ins(%w : tensor<16x8xf32>) outs(%te : tensor<8x16xf32>) permutation = [1, 0]
  %e = tensor.empty() : tensor<4x16xf32>
  %z = linalg.fill ins(%zero : f32) outs(%e : tensor<4x16xf32>) -> tensor<4x16xf32>
  %y = linalg.matmul ins(%x, %wt : tensor<4x8xf32>, tensor<8x16xf32>) outs(%z : tensor<4x16xf32>) -> tensor<4x16xf32>
  %f = tensor.empty() : tensor<4x16xf32>
  %r = linalg.generic {{indexing_maps = [{ID2}, {ID2}], iterator_types = ["parallel", "parallel"]}}
      ins(%y : tensor<4x16xf32>) outs(%f : tensor<4x16xf32>) {{
  ^bb0(%in: f32, %out: f32):
    %m = arith.maximumf %in, %zero : f32
    linalg.yield %m : f32
  }} -> tensor<4x16xf32>
  return %r : tensor<4x16xf32>
}}"""
    program = load_program(text)
    assert [t.ops for t in program.tasks] == [("linalg.fill", "linalg.matmul", "linalg.generic")]  # no transpose
    (param,) = program.kernel.params
    assert param.shape == (8, 16) and "dense<" not in program.kernel.payload.split("func.func private")[0]
    np.testing.assert_array_equal(np.load(rcompiler.kernels.params.path_of(param.data)), w.T)
    x = rng.uniform(-1, 1, (4, 8)).astype(np.float32)
    out = CompiledKernel(program.kernel, None)(x)  # the caller passes the inputs, not the weights
    np.testing.assert_allclose(out, np.maximum(x @ w.T, 0), rtol=1e-5)


def test_a_fill_shared_by_two_ops_is_cloned_into_each_task_and_identical_tasks_share_a_function():
    layer = """
  %p{i} = tensor.pad %{src} low[0, 1] high[0, 1] {{
  ^bb0(%a: index, %b: index):
    tensor.yield %zero : f32
  }} : tensor<8x16xf32> to tensor<8x18xf32>
  %y{i} = linalg.generic {{indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1 + d2)>,
                                            affine_map<(d0, d1, d2) -> (d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>],
                           iterator_types = ["parallel", "parallel", "reduction"]}}
      ins(%p{i}, %k : tensor<8x18xf32>, tensor<3xf32>) outs(%z : tensor<8x16xf32>) {{
  ^bb0(%in: f32, %kk: f32, %acc: f32):
    %m = arith.mulf %in, %kk : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  }} -> tensor<8x16xf32>"""
    text = ("func.func @f(%x: tensor<8x16xf32>, %k: tensor<3xf32>) -> tensor<8x16xf32> {\n"
            "  %zero = arith.constant 0.0 : f32\n  %e = tensor.empty() : tensor<8x16xf32>\n"
            "  %z = linalg.fill ins(%zero : f32) outs(%e : tensor<8x16xf32>) -> tensor<8x16xf32>"
            + layer.format(i=1, src="x") + layer.format(i=2, src="y1")
            + "\n  return %y2 : tensor<8x16xf32>\n}\n")
    program = load_program(text)
    assert [t.ops for t in program.tasks] == [("linalg.fill", "linalg.generic")] * 2  # each fills its own output
    assert program.weights()[program.tasks[0].key] == 2
    assert {t.function for t in program.tasks} == {"task_0"}  # one function, called twice
    entry = program.kernel.payload.split("func.func private")[0]
    assert "linalg.fill" not in entry and entry.count("call @task_0") == 2
    x, k = np.random.default_rng(1).uniform(-1, 1, (8, 16)).astype(np.float32), np.array([1, 2, 3], np.float32)

    def conv(a):
        padded = np.pad(a, ((0, 0), (1, 1)))
        return sum(padded[:, j:j + 16] * k[j] for j in range(3))

    np.testing.assert_allclose(CompiledKernel(program.kernel, None)(x, k), conv(conv(x)), rtol=1e-5)


def test_a_task_that_cannot_run_alone_stays_naive_and_the_rest_is_tuned(tmp_path):
    """The second task asserts that its integer input is 0, which the program guarantees and
    random test values do not: it cannot be measured alone, yet the model is tuned."""
    text = f"""
func.func @f(%x: tensor<64x64xf32>) -> (tensor<64x64xf32>, tensor<64x64xi64>) {{
  %zero = arith.constant 0.0 : f32
  %c0 = arith.constant 0 : i64
  %ei = tensor.empty() : tensor<64x64xi64>
  %i = linalg.generic {{indexing_maps = [{ID2}, {ID2}], iterator_types = ["parallel", "parallel"]}}
      ins(%x : tensor<64x64xf32>) outs(%ei : tensor<64x64xi64>) {{
  ^bb0(%in: f32, %out: i64):
    %m = arith.mulf %in, %zero : f32
    %n = arith.fptosi %m : f32 to i64
    linalg.yield %n : i64
  }} -> tensor<64x64xi64>
  %ef = tensor.empty() : tensor<64x64xf32>
  %y = linalg.generic {{indexing_maps = [{ID2}, {T2}, {ID2}], iterator_types = ["parallel", "parallel"]}}
      ins(%i, %x : tensor<64x64xi64>, tensor<64x64xf32>) outs(%ef : tensor<64x64xf32>) {{
  ^bb0(%n: i64, %in: f32, %out: f32):
    %ok = arith.cmpi eq, %n, %c0 : i64
    cf.assert %ok, "the offset must be zero"
    %v = arith.sitofp %n : i64 to f32
    %s = arith.addf %in, %v : f32
    linalg.yield %s : f32
  }} -> tensor<64x64xf32>
  return %y, %i : tensor<64x64xf32>, tensor<64x64xi64>
}}"""
    result = rcompiler.tune(text, budget=8, min_time=0.01, db=tmp_path / "t.db")
    errors = [o.error for o in result.tasks if o.error]
    assert len(errors) == 1 and "the offset must be zero" in errors[0]
    assert result.best is not None and result.best.ok and len(result.parts) == 1
