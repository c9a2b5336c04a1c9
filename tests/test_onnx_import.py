"""The ONNX front door's robustness: unreadable files, dynamic inputs, BatchNormalization
folding, boolean constants and ops torch-mlir cannot lower, each a clear one-line error or
a model that imports and runs like ONNX Runtime."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rcompiler
from rcompiler.api import as_program
from rcompiler.kernels import KernelError
from rcompiler.onnx_import import available, fix_bool_constants, fold_batchnorm, import_onnx

MODELS = Path(__file__).parent / "data" / "models"
NEEDS_ONNX = pytest.mark.skipif(not available(), reason='needs the onnx extra: pip install -e ".[onnx]"')
NEEDS_ORT = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                               reason='needs ONNX Runtime: pip install -e ".[onnx]"')
NEEDS_READER = pytest.mark.skipif(importlib.util.find_spec("onnx") is None,
                                  reason='needs the onnx package: pip install -e ".[onnx]"')


def _save(path: Path, nodes, inputs, outputs, weights=(), opset: int = 17) -> Path:
    """An ONNX model from onnx.helper pieces: inputs and outputs as (name, dims) f32 tensors,
    weights as {name: array} initializers (of the arrays' dtypes)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(nodes, path.stem,
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, d) for n, d in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, d) for n, d in outputs],
                              [numpy_helper.from_array(v, k) for k, v in dict(weights).items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return path


def _onnxruntime(model, feeds: dict) -> np.ndarray:
    import onnxruntime

    source = model if isinstance(model, (str, Path)) else model.SerializeToString()
    return onnxruntime.InferenceSession(str(source) if isinstance(source, Path) else source,
                                        providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _error(call) -> str:
    with pytest.raises(KernelError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


# -- 1. files that are not ONNX models -------------------------------------------------------

@NEEDS_ONNX
def test_a_truncated_model_is_one_line_saying_so(tmp_path):
    whole = (MODELS / "resnet.dynamo.onnx").read_bytes()
    cut = tmp_path / "resnet.onnx"
    cut.write_bytes(whole[:len(whole) // 2])
    assert _error(lambda: import_onnx(cut)) == (f"{cut} is not a readable ONNX model: protobuf parse failed "
                                                "(truncated or corrupt file)")


@NEEDS_ONNX
def test_a_text_file_named_onnx_is_one_line_saying_so_and_the_cli_exits_2(tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("x = torch.randn(1, 3, 224, 224)\ntorch.onnx.export(model, x, 'notes.onnx')\n")
    assert _error(lambda: import_onnx(text)) == (f"{text} is not a readable ONNX model: it is a text file, "
                                                 "not an ONNX protobuf")
    done = subprocess.run([sys.executable, "-m", "rcompiler.tune", str(text), "--db", str(tmp_path / "t.db")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {text} is not a readable ONNX model: it is a text file, not an ONNX protobuf"


# -- 2. dynamic dims and --input-shape -------------------------------------------------------

def _dynamic_batch(path: Path) -> Path:
    """Conv, Relu and a flatten as torch's exporter writes one for a dynamic batch: the target
    shape computed from Shape, so that only data propagation makes it static."""
    from onnx import helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Shape", ["r"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "zero_axis"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus_one"], ["target"], axis=0),
             helper.make_node("Reshape", ["r", "target"], ["y"])]
    return _save(path, nodes, [("x", ["batch", 3, 8, 8])], [("y", ["batch", 256])],
                 {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                  "b": rng.standard_normal(4).astype(np.float32), "zero": np.array(0, np.int64),
                  "zero_axis": np.array([0], np.int64), "minus_one": np.array([-1], np.int64)})


@NEEDS_ONNX
def test_a_dynamic_input_without_a_shape_names_the_flag_to_pass(tmp_path):
    model = _dynamic_batch(tmp_path / "net.onnx")
    assert _error(lambda: import_onnx(model)) == (
        f"{model}: input 'x' has dynamic shape ?x3x8x8; give it a shape: --input-shape x=1x3x8x8 "
        "(input_shapes= in the Python API)")


@NEEDS_ONNX
@NEEDS_ORT
def test_input_shapes_make_a_dynamic_batch_static_and_it_runs_like_onnxruntime(tmp_path):
    model = _dynamic_batch(tmp_path / "net.onnx")
    program = as_program(model, input_shapes={"x": (2, 3, 8, 8)})  # load_program on the imported text
    assert program is not None
    assert [a.shape for a in program.original.inputs] == [(2, 3, 8, 8)]
    assert "?x" not in program.original.payload and "tensor<2x256xf32>" in program.original.payload
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    got = rcompiler.compile(str(model), input_shapes={"x": (2, 3, 8, 8)})(x)
    np.testing.assert_allclose(got, _onnxruntime(model, {"x": x}), rtol=1e-5, atol=1e-5)


@NEEDS_ONNX
def test_the_input_shape_flag_reaches_the_import(tmp_path):
    from rcompiler.cli import build_parser
    from rcompiler.cli_common import program_from_args

    model = _dynamic_batch(tmp_path / "net.onnx")
    args = build_parser().parse_args([str(model), "--input-shape", "x=3x3x8x8"])
    assert [a.shape for a in program_from_args(args).original.inputs] == [(3, 3, 8, 8)]


def _dynamic_sequence(path: Path) -> Path:
    """Position ids as a transformer export computes them for a dynamic sequence: Range up to
    Shape(x)[1], added, flattened for a Gemm and reshaped back to x's shape."""
    from onnx import helper

    nodes = [helper.make_node("Shape", ["x"], ["s"], start=1, end=2),
             helper.make_node("Squeeze", ["s"], ["n"]),
             helper.make_node("Range", ["zero", "n", "one"], ["pos"]),
             helper.make_node("Cast", ["pos"], ["posf"], to=1),
             helper.make_node("Unsqueeze", ["posf", "axis"], ["pos2"]),
             helper.make_node("Add", ["x", "pos2"], ["h"]),
             helper.make_node("Reshape", ["h", "flat"], ["h2"]),
             helper.make_node("Gemm", ["h2", "w"], ["g"]),
             helper.make_node("Shape", ["x"], ["xs"]),
             helper.make_node("Reshape", ["g", "xs"], ["y"])]
    return _save(path, nodes, [("x", [1, "seq", 4])], [("y", [1, "seq", 4])],
                 {"zero": np.array(0, np.int64), "one": np.array(1, np.int64), "axis": np.array([1], np.int64),
                  "flat": np.array([-1, 4], np.int64),
                  "w": np.random.default_rng(9).standard_normal((4, 4)).astype(np.float32)})


@NEEDS_ONNX
@NEEDS_ORT
def test_shape_arithmetic_that_became_constant_is_folded_so_every_shape_is_static(tmp_path):
    """ONNX's inference gives Range a length only from initializers, not from Shape(x)[1]:
    without the fold, pos, h and h2 stay dynamic (a dynamic-sequence GPT-2 then fails in
    torch-mlir on a reshape)."""
    import onnx

    from rcompiler.onnx_import import load_model, set_input_shapes

    path = _dynamic_sequence(tmp_path / "positions.onnx")
    model = set_input_shapes(load_model(path), {"x": (1, 16, 4)}, path)
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.output]}
    assert (shapes["pos"], shapes["h"], shapes["h2"], shapes["y"]) == ([16], [1, 16, 4], [16, 4], [1, 16, 4])
    onnx.checker.check_model(model)
    x = np.random.default_rng(10).standard_normal((1, 16, 4)).astype(np.float32)
    got = rcompiler.compile(str(path), input_shapes={"x": (1, 16, 4)})(x)
    np.testing.assert_allclose(got, _onnxruntime(path, {"x": x}), rtol=1e-5, atol=1e-5)


@NEEDS_ONNX
@pytest.mark.parametrize("shapes, says", [
    ({"images": (2, 3, 8, 8)}, "'images' is not an input of the model (its inputs: x)"),
    ({"x": (2, 3, 8)}, "input 'x' has shape ?x3x8x8 (4 dims); 2x3x8 has 3"),
    ({"x": (2, 4, 8, 8)}, "input 'x' has shape ?x3x8x8: dim 1 is 3, not 4"),
    ({"x": (0, 3, 8, 8)}, "the shape for input 'x' must be positive dims"),
])
def test_a_bad_input_shape_is_one_clear_line(tmp_path, shapes, says):
    model = _dynamic_batch(tmp_path / "net.onnx")
    assert _error(lambda: import_onnx(model, input_shapes=shapes)).startswith(f"{model}: {says}")


@pytest.mark.parametrize("flags, says", [
    (["x=2xAx8"], "--input-shape x=2xAx8: give NAME=DIMS with positive dims, e.g. x=1x3x224x224"),
    (["2x3x8x8"], "--input-shape 2x3x8x8: give NAME=DIMS"),
    (["x=1x3", "x=2x3"], "--input-shape gives input 'x' twice"),
])
def test_a_malformed_input_shape_flag_is_one_clear_line(flags, says):
    from rcompiler.cli import build_parser
    from rcompiler.cli_common import input_shapes_from_args

    args = build_parser().parse_args(["net.onnx"] + [f"--input-shape={f}" for f in flags])
    assert _error(lambda: input_shapes_from_args(args)).startswith(says)


def test_input_shapes_apply_to_onnx_models_only(tmp_path):
    from mlir_snippets import matmul_on_tensors

    mlir = tmp_path / "mm.mlir"
    mlir.write_text(matmul_on_tensors(8, 8, 8))
    assert "apply to ONNX models" in _error(lambda: as_program(mlir, input_shapes={"x": (1,)}))
    assert "apply to ONNX models" in _error(lambda: rcompiler.api.as_kernel("matmul", input_shapes={"x": (1,)}))


# -- 3. BatchNormalization folded into the Conv ----------------------------------------------

def _conv_bn_relu(path: Path, bn: bool = True) -> Path:
    """Conv (with bias) -> BatchNormalization (statistics far from 0 and 1) -> Relu, or the same
    graph without the BN."""
    from onnx import helper

    rng = np.random.default_rng(3)
    weights = {"w": rng.standard_normal((6, 3, 3, 3)).astype(np.float32),
               "b": rng.standard_normal(6).astype(np.float32),
               "gamma": (1 + 0.5 * rng.standard_normal(6)).astype(np.float32),
               "beta": rng.standard_normal(6).astype(np.float32),
               "mean": rng.standard_normal(6).astype(np.float32),
               "var": (0.2 + rng.random(6)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv")]
    if bn:
        nodes.append(helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"],
                                      epsilon=1e-3, name="bn"))
    else:
        weights = {k: weights[k] for k in ("w", "b")}
    nodes.append(helper.make_node("Relu", ["n" if bn else "c"], ["y"]))
    return _save(path, nodes, [("x", [1, 3, 8, 8])], [("y", [1, 6, 8, 8])], weights)


@NEEDS_READER
@NEEDS_ORT
def test_a_batchnorm_after_a_conv_folds_into_it_and_gives_the_same_outputs(tmp_path):
    import onnx

    path = _conv_bn_relu(tmp_path / "cbr.onnx")
    model = onnx.load(path)
    assert fold_batchnorm(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv", "Relu"]
    assert not {"gamma", "beta", "mean", "var", "w", "b"} & {t.name for t in model.graph.initializer}
    onnx.checker.check_model(model)
    x = np.random.default_rng(4).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_onnxruntime(model, {"x": x}), _onnxruntime(path, {"x": x}), rtol=1e-5, atol=1e-6)


@NEEDS_READER
def test_a_batchnorm_is_kept_when_the_conv_output_is_used_elsewhere(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(_conv_bn_relu(tmp_path / "cbr.onnx"))
    model.graph.output.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 6, 8, 8]))
    assert fold_batchnorm(model) == 0
    assert "BatchNormalization" in [n.op_type for n in model.graph.node]


@NEEDS_ONNX
@NEEDS_ORT
def test_the_imported_linalg_has_no_pass_left_for_the_batchnorm(tmp_path):
    with_bn = import_onnx(_conv_bn_relu(tmp_path / "cbr.onnx"))
    without = import_onnx(_conv_bn_relu(tmp_path / "cr.onnx", bn=False))

    def ops(text):  # the Linalg ops in order; the weights' values differ, the structure must not
        return re.findall(r"\blinalg\.(?!yield\b|index\b)(\w+)", text)

    assert any(op.startswith("conv_2d") for op in ops(with_bn)) and ops(with_bn) == ops(without)
    x = np.random.default_rng(5).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(rcompiler.compile(with_bn)(x), _onnxruntime(tmp_path / "cbr.onnx", {"x": x}),
                               rtol=1e-5, atol=1e-5)


# -- 4. boolean constants --------------------------------------------------------------------

@NEEDS_ONNX
@NEEDS_ORT
@pytest.mark.parametrize("as_node", [False, True], ids=["initializer", "constant-node"])
def test_a_large_boolean_constant_imports_with_its_values(tmp_path, as_node):
    """IREE prints i1 constants over 100 elements as hex, a byte per element; ours reads a bit
    per element. The 12x12 mask is written that way, and Where must pick by it."""
    from onnx import helper, numpy_helper

    mask = np.random.default_rng(6).random((12, 12)) < 0.4
    nodes = [helper.make_node("Where", ["mask", "x", "y"], ["z"])]
    if as_node:
        nodes.insert(0, helper.make_node("Constant", [], ["mask"], value=numpy_helper.from_array(mask)))
    path = _save(tmp_path / "where.onnx", nodes, [("x", [12, 12]), ("y", [12, 12])], [("z", [12, 12])],
                 {} if as_node else {"mask": mask})
    text = import_onnx(path)
    assert re.search(r'dense<"0x[0-9A-F]+"> : tensor<12x12xi1>', text)  # the hex form, rewritten
    rng = np.random.default_rng(7)
    x, y = (rng.standard_normal((12, 12)).astype(np.float32) for _ in range(2))
    got = rcompiler.compile(text)(x, y)
    np.testing.assert_array_equal(got, np.where(mask, x, y))
    np.testing.assert_array_equal(got, _onnxruntime(path, {"x": x, "y": y}))


def test_only_byte_per_element_boolean_hex_is_rewritten():
    import mlir.ir as ir

    values = np.array([1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1], np.uint8)
    weights = 'dense<"0x0000803F00000040"> : tensor<2xf32>'
    text = (f'%a = arith.constant dense<"0x{values.tobytes().hex().upper()}"> : tensor<3x4xi1>\n'
            f'%b = arith.constant {weights}\n'
            '%c = arith.constant dense<"0x0D0A"> : tensor<3x4xi1>\n'  # already a bit per element
            '%d = arith.constant dense<"0x010101010101010101010101"> : tensor<12xi1>\n')
    fixed = fix_bool_constants(text).splitlines()
    assert fixed[0] == '%a = arith.constant dense<"0x0D0A"> : tensor<3x4xi1>'  # 0b1101, 0b1010, least first
    assert fixed[1:3] == text.splitlines()[1:3]
    assert fixed[3] == "%d = arith.constant dense<true> : tensor<12xi1>"
    with ir.Context() as ctx:  # our parser reads the values the bytes had
        parsed = ir.Attribute.parse(fixed[0].split(" = arith.constant ")[1], ctx)
        assert str(parsed) == f"dense<{str(values.reshape(3, 4).astype(bool).tolist()).lower()}> : tensor<3x4xi1>"


# -- 5. ops torch-mlir cannot lower ----------------------------------------------------------

@NEEDS_ONNX
def test_an_op_torch_mlir_cannot_lower_is_named_with_its_node(tmp_path):
    """GridSample lowers in linear mode but not in cubic: the error names the second node."""
    from onnx import helper

    grid = np.random.default_rng(8).uniform(-1, 1, (1, 4, 4, 2)).astype(np.float32)
    nodes = [helper.make_node("GridSample", ["x", "grid"], ["s"], mode="linear", name="smooth"),
             helper.make_node("GridSample", ["s", "grid"], ["y"], mode="cubic", name="sharp")]
    path = _save(tmp_path / "warp.onnx", nodes, [("x", [1, 2, 8, 8])], [("y", [1, 2, 4, 4])], {"grid": grid},
                 opset=20)
    assert _error(lambda: import_onnx(path)) == (
        f"{path}: node 'sharp' (GridSample) is not supported by the ONNX importer: torch-mlir has no lowering "
        "for it (at opset 20, with these attributes and types)")


@NEEDS_ONNX
def test_an_op_lowered_outside_linalg_is_named_with_its_node(tmp_path):
    """torch-mlir lowers CumSum to its TMTensor dialect, which our MLIR cannot parse."""
    from onnx import helper

    nodes = [helper.make_node("CumSum", ["x", "axis"], ["y"], name="running_total")]
    path = _save(tmp_path / "totals.onnx", nodes, [("x", [4, 8])], [("y", [4, 8])], {"axis": np.array(1, np.int64)})
    assert _error(lambda: import_onnx(path)) == (
        f"{path}: node 'running_total' (CumSum) is not supported by the ONNX importer: torch-mlir lowers it to "
        "tm_tensor.scan (its TMTensor dialect, not Linalg)")


@NEEDS_ONNX
def test_an_unnamed_node_that_cannot_lower_is_named_by_its_output(tmp_path):
    from onnx import helper

    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("DFT", ["r"], ["y"], axis=1)]
    path = _save(tmp_path / "spectrum.onnx", nodes, [("x", [1, 16, 1])], [("y", [1, 16, 2])])
    assert _error(lambda: import_onnx(path)).startswith(
        f"{path}: the node making 'y' (DFT) is not supported by the ONNX importer: ")
