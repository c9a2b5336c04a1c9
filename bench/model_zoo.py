"""The bench's models table: real architectures with random (seeded) weights, exported to ONNX.

    python -m bench.model_zoo resnet18 /tmp/resnet18.onnx   # prints the exporter used

Each model is the library's own class at its default size (torchvision, Hugging Face
transformers; nothing is downloaded), in eval mode. `build` makes the same weights in
every process (the seed is set before construction), so PyTorch peers built here run
the very weights of the ONNX file; `inputs` gives the NumPy arrays every peer is fed.
"""
from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

SEED = 0
TOKENS = 128


@dataclass(frozen=True)
class Model:
    make: Callable[[], object]  # the torch module, before eval(); called after the seed is set
    inputs: Callable[[np.random.Generator], dict[str, np.ndarray]]  # by ONNX input name, in call order
    output: str  # the ONNX output's name


def _resnet18():
    from torchvision.models import resnet18
    return _calibrated(resnet18(weights=None))


def _mobilenet_v2():
    from torchvision.models import mobilenet_v2
    return _calibrated(mobilenet_v2(weights=None))


def _calibrated(model):
    """BatchNorm statistics measured on random images, as training leaves them: with the initial
    mean 0 and variance 1, MobileNetV2's activations shrink layer by layer to about 1e-9 (near
    denormals, which would distort the timings) and ResNet's drift."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, 224, 224))
    return model


def _bert():
    from transformers import BertConfig, BertModel
    return _last_hidden(BertModel(BertConfig()))  # 12 layers, 768 wide, vocabulary 30522


def _gpt2():
    from transformers import GPT2Config, GPT2Model
    return _last_hidden(GPT2Model(GPT2Config(use_cache=False)))  # 12 layers, 768 wide, vocabulary 50257


def _last_hidden(inner):
    """The model returning its last hidden state alone, as a plain tensor (what ONNX exports)."""
    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(*args).last_hidden_state

    return LastHidden()


def _image(rng):
    return {"x": rng.standard_normal((1, 3, 224, 224), dtype=np.float32)}


def _tokens(vocab: int, mask: bool):
    def make(rng):
        out = {"input_ids": rng.integers(0, vocab, (1, TOKENS), dtype=np.int64)}
        if mask:
            out["attention_mask"] = np.ones((1, TOKENS), dtype=np.int64)
            out["attention_mask"][0, 100:] = 0  # 100 real tokens and padding, as a batched request has
        return out
    return make


MODELS = {
    "resnet18": Model(_resnet18, _image, "logits"),
    "mobilenet_v2": Model(_mobilenet_v2, _image, "logits"),
    "bert": Model(_bert, _tokens(30522, mask=True), "last_hidden_state"),
    "gpt2": Model(_gpt2, _tokens(50257, mask=False), "last_hidden_state"),
}


def inputs(name: str) -> dict[str, np.ndarray]:
    """The model's inputs, the same values for every peer (and every call)."""
    return MODELS[name].inputs(np.random.default_rng(SEED))


def build(name: str):
    """The torch module in eval mode with the seeded weights, and its inputs as torch tensors."""
    import torch

    torch.manual_seed(SEED)
    module = MODELS[name].make().eval()
    return module, tuple(torch.from_numpy(a) for a in inputs(name).values())


def export(name: str, path: Path) -> str:
    """Export once to `path` (reused if already there) and return the exporter used: torch.onnx's
    default (dynamo) exporter, or the TorchScript one where dynamo fails. The choice is kept
    beside the file, in <path>.json."""
    import torch

    path = Path(path)
    record = path.with_name(path.name + ".json")
    if path.exists() and record.exists():
        return json.loads(record.read_text())["exporter"]
    path.parent.mkdir(parents=True, exist_ok=True)
    module, args = build(name)
    names = dict(input_names=list(inputs(name)), output_names=[MODELS[name].output])
    errors = []
    with warnings.catch_warnings(), torch.inference_mode(False):
        warnings.simplefilter("ignore")
        for exporter in ("dynamo", "torchscript"):
            try:
                if exporter == "dynamo":  # all four fit one file (GPT-2's ~500 MB is under protobuf's 2 GB)
                    torch.onnx.export(module, args, path, dynamo=True, external_data=False, optimize=True,
                                      verbose=False, **names)
                else:
                    torch.onnx.export(module, args, path, dynamo=False, opset_version=17, **names)
                break
            except Exception as err:  # noqa: BLE001 - an exporter's failure falls back, or is the reason
                errors.append(f"{exporter}: {type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:150]}")
                path.unlink(missing_ok=True)
        else:
            raise RuntimeError(f"cannot export {name}: " + "; ".join(errors))
    record.write_text(json.dumps({"exporter": exporter, "failed": errors}))
    return exporter


if __name__ == "__main__":
    print(export(sys.argv[1], Path(sys.argv[2])))
