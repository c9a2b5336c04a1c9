"""Real exported architectures (tests/data/models, written by build.py from torchvision and
Hugging Face classes with both torch.onnx exporters): each imports, runs end to end through
rcompiler, and gives ONNX Runtime's outputs on the same input."""
from pathlib import Path

import numpy as np
import pytest

import rcompiler
from rcompiler.api import CompiledKernel, as_program

MODELS = sorted((Path(__file__).parent / "data" / "models").glob("*.onnx"))
NEEDS_ONNX = pytest.mark.skipif(not __import__("rcompiler.onnx_import").onnx_import.available()
                                or __import__("importlib").util.find_spec("onnxruntime") is None,
                                reason='needs the onnx extra: pip install -e ".[onnx]"')


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test stores the models' weights afresh (workers inherit the variable)."""
    monkeypatch.setenv("RCOMPILER_CACHE", str(tmp_path / "cache"))


def onnx_runtime(path: Path, inputs: list[np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: x for i, x in zip(session.get_inputs(), inputs)})[0]


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(ours - reference)) / max(1.0, float(np.max(np.abs(reference)))))


def test_the_corpus_holds_every_architecture_from_both_exporters():
    names = {p.name for p in MODELS}
    for model in ("resnet", "mobilenet", "bert", "vit"):
        assert {f"{model}.dynamo.onnx", f"{model}.torchscript.onnx"} <= names
    # GPT-2 and Llama do not export with the TorchScript exporter of these library versions (aten::diff)
    assert {"gpt2.dynamo.onnx", "llama.dynamo.onnx"} <= names


@NEEDS_ONNX
@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_a_real_export_runs_end_to_end_as_onnx_runtime_does(path):
    program = as_program(str(path))
    assert not [t.reason for t in program.tasks if t.kernel is None]  # every task can be scheduled
    assert program.kernel.params and not any("dense<\"0x" in t.kernel.payload for t in program.tunable), \
        "weights are parameters of the program, not literals inside its tasks"
    inputs = [a for a, spec in zip(program.original.make_inputs(0), program.original.args)
              if not spec.is_output and not spec.is_param]
    ours = CompiledKernel(program.kernel, None)(*inputs)  # the outlined program, every task naive
    assert relative_error(ours, onnx_runtime(path, inputs)) < 1e-5


@NEEDS_ONNX
def test_same_shape_layers_share_one_task_and_constant_work_is_folded():
    program = as_program(str(MODELS[0].parent / "resnet.dynamo.onnx"))
    weights = program.weights()
    assert max(weights.values()) >= 2 and len(program.distinct()) < len(program.tunable)
    # torchvision's FC weight is transposed on every call as exported; folding does it once
    assert not any(t.ops == ("linalg.transpose",) for t in program.tasks)
    path = MODELS[0].parent / "bert.dynamo.onnx"
    # the token-type embedding gathers with constant ids checked by two asserts: folded away,
    # checks and all; the two on the mask's gather (constant ids, but data from the input) stay
    assert rcompiler.import_onnx(path).count("cf.assert") == 4
    assert as_program(str(path)).kernel.payload.count("cf.assert") == 2


@NEEDS_ONNX
def test_token_ids_get_valid_test_values_and_bad_ones_a_clear_error():
    program = as_program(str(MODELS[0].parent / "bert.dynamo.onnx"))
    ids = program.original.inputs[0]
    assert ids.dtype == "int64" and ids.bound == 512  # the vocabulary it indexes
    fn = CompiledKernel(program.kernel, None)
    mask = np.ones(ids.shape, dtype=np.int64)
    with pytest.raises(ValueError, match=r"indexes a dimension of size 512.*\[-512, 512\)"):
        fn(np.full(ids.shape, 600, dtype=np.int64), mask)


@NEEDS_ONNX
@pytest.mark.parametrize("name", ["resnet.dynamo", "bert.dynamo", "gpt2.dynamo"])
def test_a_real_export_is_tuned_as_a_whole_and_still_matches_onnx_runtime(name, tmp_path):
    path = MODELS[0].parent / f"{name}.onnx"
    result = rcompiler.tune(str(path), budget=24, min_time=0.02, db=tmp_path / "t.db", out=tmp_path / "out")
    assert result.best is not None and result.best.ok, result.dropped
    assert len(result.parts) >= 1 and result.speedup > 1
    assert all(o.error is None for o in result.tasks), [o.error for o in result.tasks]
    program = result.program
    inputs = [a for a, spec in zip(program.original.make_inputs(3), program.original.args)
              if not spec.is_output and not spec.is_param]
    ours = rcompiler.compile(str(path), result)(*inputs)
    assert relative_error(ours, onnx_runtime(path, inputs)) < 1e-4
