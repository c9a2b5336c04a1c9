"""Build the test corpus of small real architectures as ONNX files, the way users export them.

    python tests/data/models/build.py            # every model, both exporters
    python tests/data/models/build.py bert vit   # some of them

Each model is the real library class (torchvision, Hugging Face transformers) in a tiny
configuration with random weights (seeded), exported with torch.onnx's default (dynamo)
exporter and with the TorchScript exporter where that works with these library versions.
The files sit beside this script and are committed; the tests import each one, run it and
compare with ONNX Runtime. Needs torch, torchvision and transformers (the `models` extra).
"""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).parent
SEQ = 16  # tokens for the sequence models


def resnet():
    """torchvision's ResNet-18 graph (BasicBlock, [2, 2, 2, 2], stride-2 downsamples, max pool, average
    pool, FC) at an eighth of its widths, 1x3x64x64."""
    import torch
    from torchvision.models.resnet import BasicBlock, ResNet

    class TinyResNet(ResNet):
        def __init__(self, widths=(8, 16, 32, 64), num_classes=10):
            torch.nn.Module.__init__(self)
            self._norm_layer, self.inplanes, self.dilation, self.groups, self.base_width = \
                torch.nn.BatchNorm2d, widths[0], 1, 1, 64
            self.conv1 = torch.nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
            self.bn1, self.relu = torch.nn.BatchNorm2d(widths[0]), torch.nn.ReLU(inplace=True)
            self.maxpool = torch.nn.MaxPool2d(3, 2, 1)
            self.layer1 = self._make_layer(BasicBlock, widths[0], 2)
            self.layer2 = self._make_layer(BasicBlock, widths[1], 2, stride=2)
            self.layer3 = self._make_layer(BasicBlock, widths[2], 2, stride=2)
            self.layer4 = self._make_layer(BasicBlock, widths[3], 2, stride=2)
            self.avgpool = torch.nn.AdaptiveAvgPool2d((1, 1))
            self.fc = torch.nn.Linear(widths[3], num_classes)

    model = TinyResNet()
    _randomize_norms(model)
    return model, (torch.randn(1, 3, 64, 64),), ["x"]


def mobilenet():
    """torchvision's MobileNetV2 (depthwise and pointwise convs, ReLU6, inverted residuals) at width
    0.25, 1x3x64x64."""
    import torch
    from torchvision.models import mobilenet_v2

    model = mobilenet_v2(width_mult=0.25, num_classes=10)
    _randomize_norms(model)
    return model, (torch.randn(1, 3, 64, 64),), ["x"]


def bert():
    """Hugging Face BertModel, 2 layers of width 64, fed token ids and an attention mask."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=64)
    ids = torch.randint(0, config.vocab_size, (1, SEQ))
    mask = torch.ones(1, SEQ, dtype=torch.int64)
    mask[0, -3:] = 0  # padding at the end, as a batched request has
    return _hidden_states(BertModel(config)), (ids, mask), ["input_ids", "attention_mask"]


def gpt2():
    """Hugging Face GPT2Model, 2 layers of width 64 (causal mask, tanh GELU, Conv1D projections)."""
    import torch
    from transformers import GPT2Config, GPT2Model

    config = GPT2Config(vocab_size=512, n_embd=64, n_layer=2, n_head=2, n_positions=64, use_cache=False)
    ids = torch.randint(0, config.vocab_size, (1, SEQ))
    return _hidden_states(GPT2Model(config)), (ids,), ["input_ids"]


def vit():
    """Hugging Face ViTModel, 2 layers of width 64, 32x32 images in 8x8 patches (patch conv, class token)."""
    import torch
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                       image_size=32, patch_size=8, num_channels=3)
    return _hidden_states(ViTModel(config, add_pooling_layer=False)), (torch.randn(1, 3, 32, 32),), ["pixel_values"]


def llama():
    """Hugging Face LlamaModel, 2 layers of width 64 (RMSNorm, rotary embeddings, grouped-query
    attention, SiLU-gated MLP, causal mask)."""
    import torch
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, use_cache=False)
    ids = torch.randint(0, config.vocab_size, (1, SEQ))
    return _hidden_states(LlamaModel(config)), (ids,), ["input_ids"]


MODELS = {"resnet": resnet, "mobilenet": mobilenet, "bert": bert, "gpt2": gpt2, "vit": vit, "llama": llama}
EXPORTERS = ("dynamo", "torchscript")


def _randomize_norms(model) -> None:
    """BatchNorm statistics other than 0 and 1, so that folding them into the convs is tested."""
    import torch

    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(1 + 0.1 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))


def _hidden_states(model):
    """The model returning its last hidden state alone, as a plain tensor."""
    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(*args).last_hidden_state

    return LastHidden(model)


@contextlib.contextmanager
def _quiet():
    """Nothing the exporters print (the TorchScript exporter dumps its whole graph on failure, from C++)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def export(name: str, exporter: str) -> Path | None:
    """Export one model with one exporter; None (with the reason printed) where the exporter fails."""
    import torch

    torch.manual_seed(0)
    model, inputs, names = MODELS[name]()
    model.eval()
    path = HERE / f"{name}.{exporter}.onnx"
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        try:
            if exporter == "dynamo":
                torch.onnx.export(model, inputs, path, input_names=names, output_names=["y"], dynamo=True,
                                  external_data=False, optimize=True, verbose=False)
            else:
                torch.onnx.export(model, inputs, path, input_names=names, output_names=["y"], dynamo=False,
                                  opset_version=17)
        except Exception as err:  # noqa: BLE001 - an exporter's failure is reported, not fatal
            failure = f"{type(err).__name__}: {str(err).splitlines()[0]}"
        else:
            failure = None
    if failure:
        print(f"{path.name}: the {exporter} exporter fails: {failure}")
        path.unlink(missing_ok=True)
        return None
    print(f"{path.name}: {path.stat().st_size / 1e3:.0f} kB")
    return path


def main(argv: list[str]) -> int:
    names = argv or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}", file=sys.stderr)
        return 2
    for name in names:
        for exporter in EXPORTERS:
            export(name, exporter)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
