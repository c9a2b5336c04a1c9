"""The models table's peers agree with ONNX Runtime: `pytest bench/test_model_peers.py -s`.

Not a benchmark (no `benchmark` fixture), so `pytest bench/ --benchmark-only` skips it; it
takes a few minutes (torch.compile and IREE compile ResNet-18). Every peer that could be
prepared must give ResNet-18's logits within 1e-3 of ONNX Runtime's, relative to their
largest magnitude, and time a call; the ones that could not are listed with their reason.
"""
from __future__ import annotations

import pytest

from . import model_zoo
from .model_peers import makers, max_rel_diff
from .peers import prepare_all

REFERENCE = "ONNX Runtime, 1 thread"


@pytest.mark.timeout(3600)
def test_resnet18_peers_match_onnxruntime(tmp_path):
    onnx_path = tmp_path / "resnet18.onnx"
    model_zoo.export("resnet18", onnx_path)
    ready, skipped = prepare_all(makers("resnet18", onnx_path, tmp_path, threads=(1,), repeats=1))
    try:
        print(f"\nskipped: {skipped}")
        assert REFERENCE in ready, skipped
        reference = ready[REFERENCE].outputs()
        assert reference[0].shape == (1, 1000)
        for name, peer in ready.items():
            diff = max_rel_diff(peer.outputs(), reference)
            seconds = peer.time()
            print(f"{name}: {peer.version}, max rel diff {diff:.1e}, {seconds * 1e3:.1f} ms")
            assert diff < 1e-3, name
            assert seconds > 0, name
    finally:
        for peer in ready.values():
            peer.close()
