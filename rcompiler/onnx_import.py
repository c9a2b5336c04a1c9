"""The ONNX door: an ONNX model to Linalg on tensors, as torch-mlir lowers it.

The model is first read here with the `onnx` package: a file that is not ONNX, an input
left dynamic or a bad input shape is a one-line error before any tool runs. Given input
shapes are written into the model (shape inference re-run), and BatchNormalization nodes
after a Conv are folded into its weights. IREE's importer (`iree-import-onnx`) then gives
the torch dialect, and IREE's `iree-opt` runs torch-mlir's `torch-onnx-to-torch-backend-pipeline`
and `torch-backend-to-linalg-on-tensors-backend-pipeline`. Both run as subprocesses: IREE's
compiler carries its own MLIR bindings, which cannot share a process with ours (the `onnx`
package can). Needs the `onnx` extra: pip install -e ".[onnx]".
"""
from __future__ import annotations

import importlib.util
import re
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from rcompiler.kernels import KernelError

PIPELINE = ("builtin.module(torch-onnx-to-torch-backend-pipeline,"
            "torch-backend-to-linalg-on-tensors-backend-pipeline)")
IMPORTER = "iree.compiler.tools.import_onnx"
OPT = "iree.compiler.tools.scripts.iree_opt"


def available() -> bool:
    return importlib.util.find_spec("iree.compiler") is not None and importlib.util.find_spec("onnx") is not None


def import_onnx(path: str | Path, timeout: float = 600,
                input_shapes: Mapping[str, Sequence[int]] | None = None) -> str:
    """Linalg-on-tensors MLIR text for the ONNX model at `path`. Every graph input needs a
    static shape: the model's own, or one from `input_shapes` ({name: dims})."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise KernelError(f"{path}: no such file")
    if not available():
        raise KernelError('ONNX models need the onnx extra (IREE\'s importer and torch-mlir pipelines): '
                          'pip install -e ".[onnx]"')
    model = load_model(path)
    if input_shapes:
        model = set_input_shapes(model, input_shapes, path)
    check_static_inputs(model, path)
    edited = bool(input_shapes) | (fold_batchnorm(model, path.parent) > 0)
    with tempfile.TemporaryDirectory() as tmp:
        source, data_dir = path, []
        if edited:  # the importer reads files; external data stays where the model is
            source, data_dir = Path(tmp) / path.name, ["--data-dir", str(path.parent.resolve())]
            onnx.save(model, source)
        torch_ir, linalg_ir = Path(tmp) / "model.torch.mlir", Path(tmp) / "model.linalg.mlir"
        done = _run([sys.executable, "-m", IMPORTER, str(source), *data_dir, "-o", str(torch_ir)], timeout, path,
                    "import")
        if done.returncode != 0:
            raise KernelError(f"{path}: cannot import: {_reason(done)}")
        done = _run([sys.executable, "-m", OPT, f"--pass-pipeline={PIPELINE}", str(torch_ir), "-o", str(linalg_ir)],
                    timeout, path, "lower to Linalg")
        if done.returncode != 0:
            raise KernelError(_lowering_error(path, model, torch_ir, done))
        text = linalg_ir.read_text()
    _check_linalg_only(text, model, path)
    return fix_bool_constants(text)


# -- 1. the file must be an ONNX model ------------------------------------------------------

def load_model(path: Path):
    """The model's graph (external data left on disk), or a one-line error for a file that is
    not a readable ONNX model (truncated, another format, fails ONNX's checker)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(path, load_external_data=False)
        onnx.checker.check_model(str(path))  # by path: finds external data, takes models over 2 GB
    except DecodeError:
        head = path.read_bytes()[:512]
        text = head.isascii() and all(b >= 32 or b in b"\t\r\n" for b in head)
        raise KernelError(f"{path} is not a readable ONNX model: "
                          + ("it is a text file, not an ONNX protobuf" if text
                             else "protobuf parse failed (truncated or corrupt file)")) from None
    except (onnx.checker.ValidationError, ValueError, OSError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise KernelError(f"{path} is not a readable ONNX model: {reason[:300]}") from None
    return model


# -- 2. input shapes -------------------------------------------------------------------------

def graph_inputs(model) -> list:
    """The graph's real inputs (older exporters list the initializers as inputs too)."""
    weights = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in weights]


def shape_text(dims: Sequence) -> str:
    """1x3x224x224, with ? for a dynamic dim (a ValueInfo's dims or plain ints)."""
    return "x".join(str(d) if isinstance(d, (int, np.integer)) else
                    (str(d.dim_value) if d.HasField("dim_value") else "?") for d in dims)


def set_input_shapes(model, shapes: Mapping[str, Sequence[int]], path: Path):
    """The model with the given graph inputs' dims set and shapes re-inferred through the graph."""
    import onnx

    inputs = {i.name: i for i in graph_inputs(model)}
    for name, dims in shapes.items():
        if name not in inputs:
            raise KernelError(f"{path}: {name!r} is not an input of the model (its inputs: "
                              f"{', '.join(inputs) or 'none'})")
        dims = tuple(dims)
        if not dims or any(not isinstance(d, (int, np.integer)) or d < 1 for d in dims):
            raise KernelError(f"{path}: the shape for input {name!r} must be positive dims, like 1x3x224x224; "
                              f"got {dims}")
        tensor = inputs[name].type.tensor_type
        if not tensor.HasField("shape"):  # no shape at all: the given one defines it
            for _ in dims:
                tensor.shape.dim.add()
        have = tensor.shape.dim
        if len(have) != len(dims):
            raise KernelError(f"{path}: input {name!r} has shape {shape_text(have)} ({len(have)} dims); "
                              f"{shape_text(dims)} has {len(dims)}")
        for i, (dim, size) in enumerate(zip(have, dims)):
            if dim.HasField("dim_value") and dim.dim_value != size:
                raise KernelError(f"{path}: input {name!r} has shape {shape_text(have)}: dim {i} is "
                                  f"{dim.dim_value}, not {size}")
        for dim, size in zip(have, dims):
            dim.dim_value = int(size)  # replaces a dim_param (a oneof)
    # Shapes inferred from the old, dynamic inputs are stale: infer them again, propagating
    # values through Shape/Reshape arithmetic so that reshapes become static too. ONNX's
    # inference reads only initializers for some ops (Range's length, from Shape(ids)[1] in a
    # transformer exported with a dynamic sequence): fold the shape arithmetic that became
    # constant into initializers, and infer again until nothing more folds.
    for _ in range(8):
        del model.graph.value_info[:]
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
        if not fold_shape_arithmetic(model):
            break
    return model


# Ops that compute shapes: evaluated on small constants, they never make large tensors.
_SHAPE_OPS = {"Constant", "Shape", "Size", "Gather", "Slice", "Concat", "Squeeze", "Unsqueeze", "Reshape",
              "Cast", "Identity", "Add", "Sub", "Mul", "Div", "Mod", "Neg", "Abs", "Min", "Max", "Equal",
              "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Where", "ReduceProd"}


def fold_shape_arithmetic(model, limit: int = 64) -> int:
    """Replace the shape-computing nodes whose inputs are all constants (or, for Shape and
    Size, statically shaped) by initializers; returns how many were folded. In place."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    types = {v.name: v.type.tensor_type for v in [*graph.value_info, *graph.input]}
    known = {t.name: t for t in graph.initializer
             if t.data_location != TensorProto.EXTERNAL and np.prod(t.dims) <= limit}
    outputs = {o.name for o in graph.output}
    opsets = {o.domain: o.version for o in model.opset_import}  # each op as the model's opset defines it
    keep, folded = [], 0
    for node in graph.node:
        values = None
        if node.op_type in _SHAPE_OPS and node.domain in ("", "ai.onnx") and not outputs & set(node.output):
            shape = types.get(node.input[0]) if node.op_type in ("Shape", "Size") else None
            if shape is not None and shape.HasField("shape") and all(d.HasField("dim_value")
                                                                    for d in shape.shape.dim):
                dims = np.array([d.dim_value for d in shape.shape.dim], np.int64)
                attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                values = [dims[attrs.get("start", 0):attrs.get("end")] if node.op_type == "Shape"
                          else np.array(dims.prod(), np.int64)]
            elif node.op_type not in ("Shape", "Size") and all(i in known for i in node.input if i):
                try:
                    values = ReferenceEvaluator(node, opsets=opsets).run(
                        None, {i: numpy_helper.to_array(known[i]) for i in node.input if i})
                except Exception:  # noqa: BLE001 - left to the importer, as before
                    values = None
        if values is None or any(np.asarray(v).size > limit for v in values):
            keep.append(node)
            continue
        for name, value in zip(node.output, values):
            known[name] = numpy_helper.from_array(np.asarray(value), name)
            graph.initializer.append(known[name])
        folded += 1
    if folded:
        del graph.node[:]
        graph.node.extend(keep)
    return folded


def check_static_inputs(model, path: Path) -> None:
    """One line naming every input left dynamic and the flag that fixes it."""
    dynamic = [i for i in graph_inputs(model) if not i.type.tensor_type.HasField("shape")
               or any(not d.HasField("dim_value") for d in i.type.tensor_type.shape.dim)]
    if not dynamic:
        return
    described, flags = [], []
    for i in dynamic:
        tensor = i.type.tensor_type
        if tensor.HasField("shape"):
            described.append(f"{i.name!r} has dynamic shape {shape_text(tensor.shape.dim)}")
            guess = "x".join(str(d.dim_value) if d.HasField("dim_value") else "1" for d in tensor.shape.dim)
        else:
            described.append(f"{i.name!r} has no shape")
            guess = "DIMS"
        flags.append(f"--input-shape {shlex.quote(f'{i.name}={guess}')}")
    raise KernelError(f"{path}: input {'; input '.join(described)}; give "
                      f"{'it a shape' if len(dynamic) == 1 else 'them shapes'}: {' '.join(flags)} "
                      "(input_shapes= in the Python API)")


# -- 3. BatchNormalization folded into the Conv before it ------------------------------------

def fold_batchnorm(model, base_dir: Path | str = ".") -> int:
    """Fold each inference-mode BatchNormalization into the Conv that feeds only it, when the
    weights and BN parameters are initializers: W' = W * s, B' = (B - mean) * s + beta with
    s = gamma / sqrt(var + eps), per output channel. Edits `model` in place; returns how many
    were folded. (torch's exporters fold them already; model-zoo files often do not.)"""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    uses: dict[str, int] = {}
    for name in [n for node in _all_nodes(graph) for n in node.input] + [o.name for o in graph.output]:
        uses[name] = uses.get(name, 0) + 1
    taken = {*weights, *uses, *producer, *(i.name for i in graph.input)}

    def array(name: str):  # in float64, so that the folded weights round once
        return numpy_helper.to_array(weights[name], str(base_dir)).astype(np.float64)

    folded, replaced = [], set()
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx"):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in bn.attribute}
        conv = producer.get(bn.input[0])
        if (conv is None or conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx")
                or uses.get(bn.input[0]) != 1 or attrs.get("training_mode", 0) or not attrs.get("spatial", 1)
                or any(bn.output[1:]) or not all(n in weights for n in [*bn.input[1:5], *filter(None, conv.input[1:])])
                or weights[conv.input[1]].data_type not in _FLOATS):
            continue
        gamma, beta, mean, var = (array(n) for n in bn.input[1:5])
        scale = gamma / np.sqrt(var + attrs.get("epsilon", 1e-5))
        w = array(conv.input[1])
        b = array(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(len(scale))
        if scale.shape != (w.shape[0],) or b.shape != scale.shape:
            continue
        dtype = helper.tensor_dtype_to_np_dtype(weights[conv.input[1]].data_type)
        new_w = numpy_helper.from_array((w * scale.reshape(-1, *[1] * (w.ndim - 1))).astype(dtype),
                                        _fresh(f"{conv.input[1]}_bn", taken))
        new_b = numpy_helper.from_array(((b - mean) * scale + beta).astype(dtype),
                                        _fresh(f"{conv.name or conv.output[0]}_bn_bias", taken))
        graph.initializer.extend([new_w, new_b])
        replaced.update([*conv.input[1:], *bn.input[1:]])
        del conv.input[1:]
        conv.input.extend([new_w.name, new_b.name])
        conv.output[0] = bn.output[0]  # the conv now makes what the BN made
        folded.append(bn)
    if not folded:
        return 0
    for bn in folded:
        graph.node.remove(bn)
    # The replaced weights nothing reads any more (one shared with another node stays).
    unused = replaced - {n for node in _all_nodes(graph) for n in node.input} - {o.name for o in graph.output}
    for t in [t for t in graph.initializer if t.name in unused]:
        graph.initializer.remove(t)
    for i in [i for i in graph.input if i.name in unused]:  # older exporters list weights as inputs
        graph.input.remove(i)
    del graph.value_info[:]  # the conv's old output is gone; the importer infers shapes again
    return len(folded)


_FLOATS = (1, 10, 11)  # TensorProto FLOAT, FLOAT16, DOUBLE


def _fresh(name: str, taken: set[str]) -> str:
    """`name`, or name_1, name_2, ...: one no tensor of the graph has yet (now taken)."""
    out, n = name, 1
    while out in taken:
        out, n = f"{name}_{n}", n + 1
    taken.add(out)
    return out


def _all_nodes(graph) -> Iterator:
    """The graph's nodes in order, each followed by the nodes of its subgraphs (If, Loop,
    Scan), in the order IREE's importer writes them."""
    from onnx import helper

    for node in graph.node:
        yield node
        for attr in node.attribute:
            value = helper.get_attribute_value(attr)
            for sub in (value if isinstance(value, list) else [value]):
                if hasattr(sub, "node") and hasattr(sub, "initializer"):  # a GraphProto
                    yield from _all_nodes(sub)


# -- 4. boolean constants --------------------------------------------------------------------

# IREE's MLIR stores i1 elements one byte each and prints a large i1 constant as hex that way
# (dense<"0x0100..."> : tensor<1x1x128x128xi1>, one 00/01 byte per element); our MLIR packs
# them a bit each, least significant first (ceil(n/8) bytes) and refuses the byte form.
_BOOL_HEX = re.compile(r'dense<"0x([0-9A-Fa-f]+)">(\s*:\s*tensor<((?:\d+x)*)i1>)')


def fix_bool_constants(text: str) -> str:
    """Rewrite the i1 hex constants IREE prints (a byte per element) as our MLIR reads them
    (a bit per element, or a splat). Other attributes are left as they are."""
    def repack(m: re.Match) -> str:
        data, dims = bytes.fromhex(m[1]), [int(d) for d in m[3].split("x") if d]
        n = int(np.prod(dims))
        if len(data) == 1 and n > 8:  # a splat, one byte (ours reads 0x00 or 0xFF only)
            return f"dense<{'true' if data[0] else 'false'}>{m[2]}"
        if len(data) != n or n < 2 or max(data) > 1:
            return m[0]  # not the byte-per-element form (n = 1 reads the same either way)
        bits = np.frombuffer(data, np.uint8)
        if bits.min() == bits.max():
            return f"dense<{'true' if bits[0] else 'false'}>{m[2]}"
        return f'dense<"0x{np.packbits(bits, bitorder="little").tobytes().hex().upper()}">{m[2]}'

    return _BOOL_HEX.sub(repack, text)


# -- 5. errors from the tools, in one line ---------------------------------------------------

def _run(cmd: list[str], timeout: float, path: Path, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise KernelError(f"{path}: cannot {what}: {cmd[2].rsplit('.', 1)[-1]} ran over {timeout:.0f} s") from None


_DIAGNOSTIC = re.compile(r"^(?P<file>[^\n]*?):(?P<line>\d+):(?P<col>\d+): error: (?P<msg>[^\n]*)$", re.M)


def _lowering_error(path: Path, model, torch_ir: Path, done: subprocess.CompletedProcess) -> str:
    """`model.onnx: node 'foo' (OpType) is not supported by the ONNX importer: why`, from the
    first error iree-opt reports. IREE's importer writes no locations, so the error points at
    a line of the torch IR; the k-th `onnx.OpType` op there is the k-th OpType node of the
    graph, in the order the importer walks it."""
    m = _DIAGNOSTIC.search(done.stderr)
    if m is None or Path(m["file"]).name != torch_ir.name:
        return f"{path}: cannot lower to Linalg: {_reason(done)}"
    lines = torch_ir.read_text().splitlines()
    number = int(m["line"]) - 1
    found = re.search(r'torch\.operator "onnx\.([\w.]+)"', lines[number] if number < len(lines) else "")
    reason = m["msg"].split(": %")[0].strip()  # drop the op's text that follows
    if reason.startswith("failed to legalize operation 'torch.operator'"):
        reason = f"torch-mlir has no lowering for it (at opset {_opset(model)}, with these attributes and types)"
    if found is None:
        return f"{path}: cannot lower to Linalg: {reason[:300]}"
    op_type = found[1]
    return f"{path}: {_nth_node(model, op_type, lines, number)} ({op_type}) is not supported by the ONNX importer: " \
           f"{reason[:300]}"


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _nth_node(model, op_type: str, lines: list[str], number: int) -> str:
    """'node NAME' for the OpType node at torch IR line `number`, else 'a node'."""
    main = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("func.func @")), None)
    if main is None or main > number:
        return "a node"
    indent = lines[main][:len(lines[main]) - len(lines[main].lstrip())]
    end = next((i for i in range(main, len(lines)) if lines[i] == f"{indent}}}"), len(lines))
    if number > end:  # inside a function the importer expanded, not the graph's own
        return "a node"
    marker = f'torch.operator "onnx.{op_type}"'
    k = sum(marker in ln for ln in lines[main:number])
    nodes = [n for n in _all_nodes(model.graph) if n.op_type == op_type]
    if op_type == "Constant" or k >= len(nodes):
        return "a node"
    node = nodes[k]
    return f"node {node.name!r}" if node.name else f"the node making {node.output[0]!r}"


# torch-mlir lowers a few ops to its own TMTensor dialect, not Linalg; our MLIR has no such
# dialect. Which ONNX ops become each (to name the node).
_TM_TENSOR = {"scan": ("CumSum",), "scatter": ("ScatterElements", "ScatterND", "Scatter"),
              "sort": ("TopK",), "topk": ("TopK",), "attention": ("Attention",)}


def _check_linalg_only(text: str, model, path: Path) -> None:
    """One line for a model lowered partly to torch-mlir's TMTensor ops, not Linalg."""
    found = sorted(set(re.findall(r"\btm_tensor\.(\w+)", text)) - {"yield"})
    if not found:
        return
    types = {t for op in found for t in _TM_TENSOR.get(op, ())}
    node = next((n for n in _all_nodes(model.graph) if n.op_type in types), None)
    what = (f"node {node.name!r} ({node.op_type})" if node is not None and node.name
            else f"a {node.op_type} node" if node is not None else "part of the model")
    raise KernelError(f"{path}: {what} is not supported by the ONNX importer: torch-mlir lowers it to "
                      f"{', '.join('tm_tensor.' + op for op in found)} (its TMTensor dialect, not Linalg)")


def _reason(done: subprocess.CompletedProcess) -> str:
    """One line from a failed tool: its first error, a Python exception's last line, or how it died."""
    text = done.stderr or done.stdout or ""
    if done.returncode < 0 or "Stack dump:" in text:  # a crash: say where, if the trace names a pattern
        try:
            how = signal.Signals(-done.returncode).name if done.returncode < 0 else f"exit {done.returncode}"
        except ValueError:
            how = f"signal {-done.returncode}"
        where = re.search(r"::(\w+)::matchAndRewrite", text)
        return f"the tool crashed ({how}){f' in {where[1]}' if where else ''}"
    m = _DIAGNOSTIC.search(text)
    if m:
        return m["msg"][:300]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else f"exit {done.returncode}"
