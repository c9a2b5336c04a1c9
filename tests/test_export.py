"""The deployable artifact (issue 25): rcompiler.export writes a shared library and its header,
rcompiler.runtime loads it without MLIR, and a C program calls it; outputs match the JIT's."""
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import rcompiler
from rcompiler import runtime
from rcompiler.api import CompiledKernel, as_program
from rcompiler.export import ExportError, export
from rcompiler.kernels import get_kernel

MODELS = Path(__file__).parent / "data" / "models"
SHAPE = (48, 40, 64)  # matmul M, N, K


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A matmul tuned for a few samples, and its artifact."""
    work = tmp_path_factory.mktemp("export")
    result = rcompiler.tune("matmul", shape=SHAPE, budget=4, min_time=0.02, db=work / "t.db")
    assert result.best is not None
    return result, export(result, work / "matmul.so")


def _inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    m, n, k = SHAPE
    return rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)


def test_a_tuned_kernel_is_exported_with_what_it_came_from(tuned):
    result, done = tuned
    assert done.library.exists() and done.header.read_text().count("rc_run(") == 1
    meta = runtime.read_metadata(done.library)
    assert meta["schedule"] == str(result.best.schedule) and meta["rcompiler"] == rcompiler.__version__
    assert meta["hardware"] == result.hardware.fingerprint
    assert meta["database_entry"] == {"kernel": result.kernel.fingerprint, "hardware": result.hardware.fingerprint}
    assert [a["name"] for a in meta["inputs"]] == ["A", "B"] and meta["outputs"][0]["shape"] == [SHAPE[0], SHAPE[1]]
    a, b = _inputs()
    assert np.allclose(runtime.load(done.library)(a, b), a @ b, rtol=1e-4, atol=1e-4)


def test_the_runtime_loads_and_runs_it_with_mlir_and_llvm_blocked(tuned, tmp_path):
    _, done = tuned
    a, b = _inputs(1)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["mlir"] = sys.modules["llvm"] = None  # any import of them fails
        import numpy as np
        import rcompiler.runtime as rt
        model = rt.load({str(done.library)!r})
        np.save({str(tmp_path / 'c.npy')!r}, model(np.load({str(tmp_path / 'a.npy')!r}),
                                                  np.load({str(tmp_path / 'b.npy')!r})))
        assert not [m for m in sys.modules if m.startswith(("mlir.", "llvm."))], "MLIR was imported"
    """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    assert np.allclose(np.load(tmp_path / "c.npy"), a @ b, rtol=1e-4, atol=1e-4)


def test_a_c_program_calls_the_library_and_gets_the_same_outputs(tuned, tmp_path):
    _, done = tuned
    m, n, k = SHAPE
    a, b = _inputs(2)
    (tmp_path / "in.bin").write_bytes(a.tobytes() + b.tobytes())
    (tmp_path / "main.c").write_text(textwrap.dedent(f"""
        #include <stdio.h>
        #include <stdlib.h>
        #include "{done.header.name}"
        int main(void) {{
          static float a[{m * k}], b[{k * n}], c[{m * n}];
          FILE *f = fopen("in.bin", "rb");
          if (fread(a, sizeof a, 1, f) != 1 || fread(b, sizeof b, 1, f) != 1) return 2;
          fclose(f);
          rc_model *model = rc_create(1);
          const void *inputs[RC_NUM_INPUTS] = {{a, b}};
          void *outputs[RC_NUM_OUTPUTS] = {{c}};
          int code = rc_run(model, inputs, outputs);
          if (code) {{ fprintf(stderr, "%s\\n", rc_check_message(code)); return 3; }}
          rc_destroy(model);
          f = fopen("out.bin", "wb");
          fwrite(c, sizeof c, 1, f);
          fclose(f);
          return 0;
        }}
    """))
    lib = done.library
    subprocess.run(["cc", "-O2", "-o", "main", "main.c", f"-I{lib.parent}", f"-L{lib.parent}", f"-l:{lib.name}",
                    f"-Wl,-rpath,{lib.parent}"], cwd=tmp_path, check=True)
    subprocess.run(["./main"], cwd=tmp_path, check=True)
    c = np.frombuffer((tmp_path / "out.bin").read_bytes(), dtype=np.float32).reshape(m, n)
    assert np.allclose(c, a @ b, rtol=1e-4, atol=1e-4)


def test_calls_from_four_threads_at_once_give_what_calls_one_at_a_time_give(tuned):
    _, done = tuned
    model = runtime.load(done.library)
    inputs = [_inputs(seed) for seed in range(4)]
    alone = [model(*x) for x in inputs]
    together: dict[int, list] = {i: [] for i in range(4)}

    def calls(i):
        out = np.empty_like(alone[i])
        for _ in range(25):
            model(*inputs[i], out=[out])
            together[i].append(out.copy())

    threads = [threading.Thread(target=calls, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(together[i]) == 25 and all(np.array_equal(r, alone[i]) for r in together[i]) for i in range(4))


def test_wrong_shapes_dtypes_and_counts_are_refused_by_the_loader(tuned):
    _, done = tuned
    model = runtime.load(done.library)
    a, b = _inputs()
    with pytest.raises(ValueError, match=r"input A must have shape \(48, 64\), got \(64, 48\)"):
        model(a.T.copy(), b)
    with pytest.raises(ValueError, match="input B must be float32, got float64"):
        model(a, b.astype(np.float64))
    with pytest.raises(ValueError, match="takes 2 input"):
        model(a)
    with pytest.raises(ValueError, match="output C must be a writable C-contiguous array"):
        model(a, b, out=[np.empty((SHAPE[1], SHAPE[0]), np.float32).T])


def test_a_truncated_or_foreign_library_is_refused_with_the_reason(tuned, tmp_path):
    _, done = tuned
    truncated = tmp_path / "truncated.so"
    truncated.write_bytes(done.library.read_bytes()[:3000])
    with pytest.raises(runtime.ArtifactError, match=r"is truncated: 3000 bytes of the \d+ its headers describe"):
        runtime.load(truncated)
    (tmp_path / "text.so").write_text("not a library")
    with pytest.raises(runtime.ArtifactError, match="is not a loadable shared library: not an ELF file"):
        runtime.load(tmp_path / "text.so")
    (tmp_path / "other.c").write_text("int answer(void) { return 42; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", "other.so", "other.c"], cwd=tmp_path, check=True)
    with pytest.raises(runtime.ArtifactError, match="not an rcompiler artifact"):
        runtime.load(tmp_path / "other.so")
    with pytest.raises(runtime.ArtifactError, match="no such file"):
        runtime.load(tmp_path / "missing.so")


def test_a_host_without_the_isa_it_was_compiled_for_refuses_it(tuned, monkeypatch):
    _, done = tuned
    needed = runtime.read_metadata(done.library)["isa"]
    if not needed:
        pytest.skip("this host reports no ISA extensions, so no artifact of its needs any")
    monkeypatch.setattr(runtime, "host_isa", lambda: frozenset(needed[1:]))
    with pytest.raises(runtime.ArtifactError, match=f"uses {needed[0]}, which this CPU does not have"):
        runtime.load(done.library)


@pytest.mark.parametrize("name", ["bert.dynamo", "gpt2.dynamo"])  # GPT-2's split copies strided slices
def test_a_real_model_exports_with_its_weights_and_its_index_checks(name, tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    monkeypatch.setenv("RCOMPILER_CACHE", str(tmp_path / "cache"))
    path = str(MODELS / f"{name}.onnx")
    done = export(path, tmp_path / "bert.so")  # no database: every task naive
    program = as_program(path)
    assert program.kernel.params and done.library.stat().st_size > sum(a.nbytes for a in program.kernel.params)
    inputs = [a for a, spec in zip(program.original.make_inputs(3), program.original.args)
              if not spec.is_output and not spec.is_param]
    model = runtime.load(done.library)
    assert np.allclose(model(*inputs), CompiledKernel(program.kernel, None)(*inputs), rtol=1e-5, atol=1e-5)
    bad = inputs[0].copy()
    bad.flat[0] = program.original.inputs[0].bound + 88  # past the vocabulary
    with pytest.raises(ValueError, match="index input holds a value outside the table"):
        model(bad, *inputs[1:])


def test_the_cli_exports_the_best_program_and_refuses_a_parallel_one(tmp_path):
    so = tmp_path / "mm.so"
    args = [sys.executable, "-m", "rcompiler.tune", "--kernel", "matmul", "--shape", "32,32,32", "--budget", "2",
            "--min-time", "0.02", "--db", str(tmp_path / "t.db"), "--out", str(tmp_path / "out"), "--quiet"]
    done = subprocess.run([*args, "--export", str(so)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"exported {so}" in done.stdout
    assert runtime.load(so).metadata["schedule"] not in ("naive", "")
    with pytest.raises(ExportError, match="only one-thread schedules export"):
        export(get_kernel("matmul", (32, 32, 32)), tmp_path / "p.so", threads=2)
