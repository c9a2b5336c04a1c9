"""Built-in model blocks, written as a frontend (torch-mlir's linalg-on-tensors pipeline)
emits them: value-semantics functions of named Linalg ops and generics, fills on
tensor.empty, broadcast maps for biases, softmax as reductions and elementwise
generics, NCHW convolutions with tensor.pad and a broadcast bias as the init.
Sizes are chosen so that a good compile runs in about 1-50 ms on one core.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

ID2 = "affine_map<(d0, d1) -> (d0, d1)>"
ROW = "affine_map<(d0, d1) -> (d0)>"
COL = "affine_map<(d0, d1) -> (d1)>"
ID4 = "affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>"


def _t(*shape: int) -> str:
    return f"tensor<{'x'.join(map(str, shape))}xf32>"


class _Body:
    """SSA lines of one function body, with fresh names."""

    def __init__(self) -> None:
        self.lines = ["%zero = arith.constant 0.000000e+00 : f32"]
        self.n = 0

    def fresh(self, base: str) -> str:
        self.n += 1
        return f"%{base}{self.n}"

    def zeros(self, *shape: int) -> str:
        empty, fill = self.fresh("empty"), self.fresh("fill")
        self.lines += [f"{empty} = tensor.empty() : {_t(*shape)}",
                       f"{fill} = linalg.fill ins(%zero : f32) outs({empty} : {_t(*shape)}) -> {_t(*shape)}"]
        return fill

    def matmul(self, a: str, b: str, m: int, k: int, n: int, transpose_b: bool = False) -> str:
        out, init = self.fresh("mm"), self.zeros(m, n)
        maps = (" indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, "
                "affine_map<(m, n, k) -> (m, n)>]") if transpose_b else ""
        b_type = _t(n, k) if transpose_b else _t(k, n)
        self.lines.append(f"{out} = linalg.matmul{maps} ins({a}, {b} : {_t(m, k)}, {b_type}) "
                          f"outs({init} : {_t(m, n)}) -> {_t(m, n)}")
        return out

    def generic(self, ins: list[tuple[str, str, str]], shape: tuple[int, ...], body: list[str],
                iterators: str = '"parallel", "parallel"', out_map: str = ID2, init: str | None = None) -> str:
        """`ins` are (value, type, map); `body` uses %a0, %a1, ... and yields %y."""
        out = self.fresh("g")
        if init is None:
            init = self.fresh("empty")
            self.lines.append(f"{init} = tensor.empty() : {_t(*shape)}")
        args = ", ".join(f"%a{i}: f32" for i in range(len(ins))) + ", %acc: f32"
        maps = ", ".join([m for _, _, m in ins] + [out_map])
        self.lines.append(f"{out} = linalg.generic {{indexing_maps = [{maps}], iterator_types = [{iterators}]}} "
                          f"ins({', '.join(v for v, _, _ in ins)} : {', '.join(t for _, t, _ in ins)}) "
                          f"outs({init} : {_t(*shape)}) {{")
        self.lines.append(f"^bb0({args}):")
        self.lines += ["  " + b for b in body] + ["  linalg.yield %y : f32", f"}} -> {_t(*shape)}"]
        return out

    def function(self, name: str, args: list[tuple[str, str]], result: str, result_type: str) -> str:
        sig = ", ".join(f"%{a}: {t}" for a, t in args)
        body = "\n".join("    " + ln for ln in self.lines)
        return (f"module {{\n  func.func @{name}({sig}) -> {result_type} {{\n{body}\n"
                f"    return {result} : {result_type}\n  }}\n}}\n")


def llama_mlp(tokens: int = 32, hidden: int = 1024, inner: int = 2816) -> str:
    """Llama-3-style MLP: down(silu(x @ gate^T) * (x @ up^T)), Linear weights stored N x K."""
    b = _Body()
    gate = b.matmul("%x", "%w_gate", tokens, hidden, inner, transpose_b=True)
    up = b.matmul("%x", "%w_up", tokens, hidden, inner, transpose_b=True)
    silu = b.generic([(gate, _t(tokens, inner), ID2)], (tokens, inner),
                     ["%n = arith.negf %a0 : f32", "%e = math.exp %n : f32", "%one = arith.constant 1.0 : f32",
                      "%d = arith.addf %one, %e : f32", "%y = arith.divf %a0, %d : f32"])
    prod = b.generic([(silu, _t(tokens, inner), ID2), (up, _t(tokens, inner), ID2)], (tokens, inner),
                     ["%y = arith.mulf %a0, %a1 : f32"])
    down = b.matmul(prod, "%w_down", tokens, inner, hidden, transpose_b=True)
    return b.function("llama_mlp", [("x", _t(tokens, hidden)), ("w_gate", _t(inner, hidden)),
                                    ("w_up", _t(inner, hidden)), ("w_down", _t(hidden, inner))], down, _t(tokens, hidden))


def llama_attention(tokens: int = 128, hidden: int = 512) -> str:
    """One attention head of full width: Q, K, V projections, scores, scale, softmax, weighted sum,
    output projection and the residual."""
    b = _Body()
    q = b.matmul("%x", "%wq", tokens, hidden, hidden, transpose_b=True)
    k = b.matmul("%x", "%wk", tokens, hidden, hidden, transpose_b=True)
    v = b.matmul("%x", "%wv", tokens, hidden, hidden, transpose_b=True)
    scores = b.matmul(q, k, tokens, hidden, tokens, transpose_b=True)  # Q @ K^T
    scale = 1.0 / hidden ** 0.5
    scaled = b.generic([(scores, _t(tokens, tokens), ID2)], (tokens, tokens),
                       [f"%s = arith.constant {scale:.8e} : f32", "%y = arith.mulf %a0, %s : f32"])
    ninf = b.fresh("ninf")
    row_max_init = b.fresh("empty")
    b.lines += [f"{ninf} = arith.constant 0xFF800000 : f32", f"{row_max_init} = tensor.empty() : {_t(tokens)}"]
    max_fill = b.fresh("fill")
    b.lines.append(f"{max_fill} = linalg.fill ins({ninf} : f32) outs({row_max_init} : {_t(tokens)}) -> {_t(tokens)}")
    row_max = b.generic([(scaled, _t(tokens, tokens), ID2)], (tokens,), ["%y = arith.maximumf %a0, %acc : f32"],
                        '"parallel", "reduction"', ROW, max_fill)
    ex = b.generic([(scaled, _t(tokens, tokens), ID2), (row_max, _t(tokens), ROW)], (tokens, tokens),
                   ["%d = arith.subf %a0, %a1 : f32", "%y = math.exp %d : f32"])
    sum_init = b.zeros(tokens)
    row_sum = b.generic([(ex, _t(tokens, tokens), ID2)], (tokens,), ["%y = arith.addf %a0, %acc : f32"],
                        '"parallel", "reduction"', ROW, sum_init)
    probs = b.generic([(ex, _t(tokens, tokens), ID2), (row_sum, _t(tokens), ROW)], (tokens, tokens),
                      ["%y = arith.divf %a0, %a1 : f32"])
    weighted = b.matmul(probs, v, tokens, tokens, hidden)
    out = b.matmul(weighted, "%wo", tokens, hidden, hidden, transpose_b=True)
    res = b.generic([(out, _t(tokens, hidden), ID2), ("%x", _t(tokens, hidden), ID2)], (tokens, hidden),
                    ["%y = arith.addf %a0, %a1 : f32"])
    w = _t(hidden, hidden)
    return b.function("llama_attention", [("x", _t(tokens, hidden)), ("wq", w), ("wk", w), ("wv", w), ("wo", w)],
                      res, _t(tokens, hidden))


def bert_ffn(tokens: int = 128, hidden: int = 768, inner: int = 3072, eps: float = 1e-12) -> str:
    """BERT-base's feed-forward sub-block, one generic per framework op as torch-mlir emits it:
    Linear + bias, exact GELU (x/2 * (1 + erf(x / sqrt 2))), Linear + bias, the residual, then
    LayerNorm over the hidden dim (mean and variance as row reductions, rsqrt, scale, shift)."""
    b = _Body()
    rows, wide = _t(tokens, hidden), _t(tokens, inner)
    h = b.matmul("%x", "%w1", tokens, hidden, inner, transpose_b=True)
    hb = b.generic([(h, wide, ID2), ("%b1", _t(inner), COL)], (tokens, inner), ["%y = arith.addf %a0, %a1 : f32"])
    gelu = b.generic([(hb, wide, ID2)], (tokens, inner),
                     ["%r = arith.constant 0.707106769 : f32", "%s = arith.mulf %a0, %r : f32",
                      "%e = math.erf %s : f32", "%one = arith.constant 1.0 : f32", "%p = arith.addf %e, %one : f32",
                      "%half = arith.constant 0.5 : f32", "%h = arith.mulf %a0, %half : f32",
                      "%y = arith.mulf %h, %p : f32"])
    o = b.matmul(gelu, "%w2", tokens, inner, hidden, transpose_b=True)
    ob = b.generic([(o, rows, ID2), ("%b2", _t(hidden), COL)], (tokens, hidden), ["%y = arith.addf %a0, %a1 : f32"])
    res = b.generic([(ob, rows, ID2), ("%x", rows, ID2)], (tokens, hidden), ["%y = arith.addf %a0, %a1 : f32"])
    row_sum = b.generic([(res, rows, ID2)], (tokens,), ["%y = arith.addf %a0, %acc : f32"],
                        '"parallel", "reduction"', ROW, b.zeros(tokens))
    centered = b.generic([(res, rows, ID2), (row_sum, _t(tokens), ROW)], (tokens, hidden),
                         [f"%n = arith.constant {hidden}.0 : f32", "%m = arith.divf %a1, %n : f32",
                          "%y = arith.subf %a0, %m : f32"])
    squares = b.generic([(centered, rows, ID2)], (tokens,), ["%q = arith.mulf %a0, %a0 : f32",
                                                             "%y = arith.addf %q, %acc : f32"],
                        '"parallel", "reduction"', ROW, b.zeros(tokens))
    normed = b.generic([(centered, rows, ID2), (squares, _t(tokens), ROW), ("%gamma", _t(hidden), COL),
                        ("%beta", _t(hidden), COL)], (tokens, hidden),
                       [f"%n = arith.constant {hidden}.0 : f32", "%v = arith.divf %a1, %n : f32",
                        f"%eps = arith.constant {eps:e} : f32", "%ve = arith.addf %v, %eps : f32",
                        "%rs = math.rsqrt %ve : f32", "%c = arith.mulf %a0, %rs : f32",
                        "%g = arith.mulf %c, %a2 : f32", "%y = arith.addf %g, %a3 : f32"])
    return b.function("bert_ffn", [("x", rows), ("w1", _t(inner, hidden)), ("b1", _t(inner)),
                                   ("w2", _t(hidden, inner)), ("b2", _t(hidden)), ("gamma", _t(hidden)),
                                   ("beta", _t(hidden))], normed, rows)


def resnet_block(channels: int = 64, size: int = 28) -> str:
    """ResNet basic block in NCHW: conv 3x3 (pad 1) + bias, ReLU, conv 3x3 + bias, residual add,
    ReLU; each conv pads its input with tensor.pad and starts from a broadcast of its bias."""
    b = _Body()
    c, s = channels, size

    def conv(inp: str, weight: str, bias: str) -> str:
        padded, init, out = b.fresh("pad"), b.fresh("bias"), b.fresh("conv")
        empty = b.fresh("empty")
        b.lines += [
            f"{padded} = tensor.pad {inp} low[0, 0, 1, 1] high[0, 0, 1, 1] {{",
            "^bb0(%i0: index, %i1: index, %i2: index, %i3: index):",
            "  tensor.yield %zero : f32",
            f"}} : {_t(1, c, s, s)} to {_t(1, c, s + 2, s + 2)}",
            f"{empty} = tensor.empty() : {_t(1, c, s, s)}",
            f"{init} = linalg.broadcast ins({bias} : {_t(c)}) outs({empty} : {_t(1, c, s, s)}) dimensions = [0, 2, 3]",
            f"{out} = linalg.conv_2d_nchw_fchw {{dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>}} "
            f"ins({padded}, {weight} : {_t(1, c, s + 2, s + 2)}, {_t(c, c, 3, 3)}) outs({init} : {_t(1, c, s, s)}) "
            f"-> {_t(1, c, s, s)}"]
        return out

    def relu(x: str) -> str:
        return b.generic([(x, _t(1, c, s, s), ID4)], (1, c, s, s), ["%y = arith.maximumf %a0, %zero : f32"],
                         '"parallel", "parallel", "parallel", "parallel"', ID4)

    h = relu(conv("%x", "%w1", "%b1"))
    h2 = conv(h, "%w2", "%b2")
    added = b.generic([(h2, _t(1, c, s, s), ID4), ("%x", _t(1, c, s, s), ID4)], (1, c, s, s),
                      ["%y = arith.addf %a0, %a1 : f32"], '"parallel", "parallel", "parallel", "parallel"', ID4)
    out = relu(added)
    return b.function("resnet_block", [("x", _t(1, c, s, s)), ("w1", _t(c, c, 3, 3)), ("b1", _t(c)),
                                       ("w2", _t(c, c, 3, 3)), ("b2", _t(c))], out, _t(1, c, s, s))


@dataclass(frozen=True)
class ModelEntry:
    build: Callable[..., str]
    about: str


MODELS: dict[str, ModelEntry] = {
    "llama_mlp": ModelEntry(llama_mlp, "Llama-3-style MLP block: gate and up projections, SiLU, multiply, down "
                                       "projection (32 tokens, hidden 1024, inner 2816)"),
    "llama_attention": ModelEntry(llama_attention, "attention block: Q, K, V projections, scores, scale, softmax, "
                                                   "weighted sum, output projection, residual (128 tokens, width 512)"),
    "bert_ffn": ModelEntry(bert_ffn, "BERT-base feed-forward sub-block: Linear + bias, exact GELU (erf), Linear + "
                                     "bias, residual, LayerNorm (128 tokens, hidden 768, inner 3072)"),
    "resnet_block": ModelEntry(resnet_block, "ResNet basic block in NCHW: conv+bias, ReLU, conv+bias, residual, "
                                             "ReLU (64 channels, 28x28)"),
}
