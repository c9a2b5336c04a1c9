"""The benchmark's peers: a missing or failing peer is a skipped row with its reason, and the
tensor form of a built-in kernel handed to IREE computes what the kernel computes."""
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from bench import peers
from rcompiler.kernels import get_kernel
from rcompiler.kernels.library import tensor_function


def test_missing_peers_are_skipped_with_how_to_install_them(monkeypatch, tmp_path):
    monkeypatch.setattr(peers, "_installed", lambda *modules: False)
    kernel = get_kernel("matmul", (32, 32, 32))
    ready, skipped = peers.prepare_all({"IREE": lambda: peers.iree_kernel(kernel, tmp_path),
                                        "PyTorch eager": lambda: peers.torch_kernel(kernel),
                                        "TVM MetaSchedule": lambda: peers.tvm_peer(kernel, 4, tmp_path)})
    assert ready == {}
    assert set(skipped) == {"IREE", "PyTorch eager", "TVM MetaSchedule"}
    assert all("is not installed" in why and "[peers]" in why for why in skipped.values())


def test_a_peer_that_fails_when_timed_is_dropped_not_fatal():
    def broken():
        raise peers.Skipped("iree-benchmark-module failed: bad input")

    fine = peers.Peer("v1", lambda: 0.5)
    ready = {"fine": fine, "broken": peers.Peer("v2", broken)}
    best, skipped = {}, {}
    for _ in range(2):
        peers.time_round(ready, best, skipped)
    assert best == {"fine": 0.5} and list(ready) == ["fine"]
    assert skipped == {"broken": "iree-benchmark-module failed: bad input"}


def test_a_failing_peer_process_reports_its_last_line():
    with pytest.raises(peers.Skipped, match="IREE failed: boom"):
        peers._run("IREE", ["python", "-c", "import sys; print('noise', file=sys.stderr); sys.exit('boom')"])


def test_tensor_form_rejects_user_kernels():
    from rcompiler.kernels import KernelError, kernel_from_mlir

    user = kernel_from_mlir(get_kernel("matmul", (8, 8, 8)).payload)
    with pytest.raises(KernelError, match="built-in"):
        tensor_function(user)


@pytest.mark.parametrize("name, shape", [("matmul_bias_relu", (24, 40, 16)), ("conv2d", (1, 11, 11, 8, 16, 3, 3, 2, 1)),
                                         ("matmul_transpose_b", (8, 24, 16)), ("batch_matmul", (2, 8, 24, 16))])
def test_tensor_form_computes_the_kernel_under_iree(name, shape, tmp_path):
    """What IREE is handed (tensors in, results returned) computes the kernel's reference."""
    runtime = pytest.importorskip("iree.runtime")
    compile_tool = Path(sysconfig.get_paths()["scripts"]) / "iree-compile"
    if not compile_tool.exists():
        pytest.skip("iree-base-compiler is not installed")
    kernel = get_kernel(name, shape)
    src, vmfb = tmp_path / "k.mlir", tmp_path / "k.vmfb"
    src.write_text(tensor_function(kernel))
    subprocess.run([str(compile_tool), "--iree-hal-target-device=local", "--iree-hal-local-target-device-backends=llvm-cpu",
                    str(src), "-o", str(vmfb)], check=True, capture_output=True)
    arrays = kernel.make_inputs(0)
    inputs = [a for a, spec in zip(arrays, kernel.args) if not spec.is_output]
    module = runtime.load_vm_flatbuffer_file(str(vmfb), driver="local-sync")
    got = np.asarray(module[kernel.func_name](*inputs))
    np.testing.assert_allclose(got, kernel.reference(inputs)[0], rtol=1e-4, atol=1e-4)


def test_tvm_metaschedule_is_tuned_once_and_timed(tmp_path):
    """Two trials of MetaSchedule on a small matmul: a tuning curve, a built library, a timing;
    a second preparation reuses the finished tuning."""
    pytest.importorskip("tvm")
    kernel = get_kernel("matmul", (32, 32, 32))
    peer = peers.tvm_peer(kernel, 2, tmp_path)
    assert peer.info["trials"] == 2 and len(peer.info["curve"]) == 2 and peer.info["curve"][-1] > 0
    assert 0 < peer.time() < 0.01
    again = peers.tvm_peer(kernel, 2, tmp_path, timeout=0.001)  # would be Skipped if it tuned again
    assert again.info == peer.info
