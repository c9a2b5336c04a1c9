"""Kernels from a user's MLIR module: function, argument shapes and FLOPs read from the IR.

Two function forms are accepted:
- destination style on memrefs: `func @f(%a: memref<..>, ..., %out: memref<..>)`, no results;
  outputs are the arguments the body writes;
- value style on tensors: `func @f(%a: tensor<..>, ...) -> tensor<..>`; it is wrapped in a
  memref function (one output buffer per result) and inlined.
The reference for a user kernel is its own naive lowering (no transform).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .base import NUMPY_DTYPES, ArgSpec, Kernel, KernelError
from .booleans import widen_booleans
from .folding import fold_constants, mark_params, param_digests
from .params import hoist_constants, store
from .index_bounds import index_bounds
from .strided import split_column_phases
from .structure import analyze, walk as _walk

SUPPORTED_DIALECTS = {"func", "linalg", "arith", "math", "tensor", "bufferization", "memref"}
# Frontends guard gathers and divisions with asserts; they become run-time checks (transforms/checks.py).
SUPPORTED_OPS = {"cf.assert"}


def kernel_from_file(path: str | Path, func_name: str | None = None) -> Kernel:
    path = Path(path)
    if not path.is_file():
        raise KernelError(f"{path}: no such file")
    return kernel_from_mlir(path.read_text(), func_name, name=path.stem)


def kernel_from_mlir(text: str, func_name: str | None = None, name: str | None = None, *,
                     params: bool = False, evaluate: Callable[[str], list] | None = None) -> Kernel:
    """The kernel of `text`'s entry function. With `params`, its large constants become
    parameters (kernels/params.py), and with `evaluate` (runs a module naively, returns its
    results) what depends only on them is computed now (kernels/folding.py). Arguments that
    carry the `rcompiler.param` attribute are parameters in any case."""
    from mlir import ir, passmanager

    with ir.Context() as ctx, ir.Location.unknown():
        ctx.allow_unregistered_dialects = False
        module = _parse(ir, text)
        func = _pick_function(module, func_name)
        fname = func.attributes["sym_name"].value
        _check_body(func, fname)
        ftype = ir.FunctionType(ir.TypeAttr(func.attributes["function_type"]).value)
        arg_types = [ir.ShapedType(t) for t in _checked_types(ir, ftype.inputs, fname, "argument")]
        res_types = [ir.ShapedType(t) for t in _checked_types(ir, ftype.results, fname, "result")]
        bounds = index_bounds(func)
        widen_booleans(module)  # the types above keep saying which arguments are booleans
        if params:
            split_column_phases(func)  # before folding, which computes its padded weights once
            _hoist(module, func, len(arg_types), evaluate)
        digests = param_digests(func)
        ftype = ir.FunctionType(ir.TypeAttr(func.attributes["function_type"]).value)
        arg_types = [ir.ShapedType(t) if i in digests else arg_types[i] for i, t in enumerate(ftype.inputs)]
        if res_types or any(isinstance(t, ir.RankedTensorType) for t in arg_types):
            module, args = _wrap_tensor_function(ir, passmanager, module, func, fname, arg_types, res_types, bounds,
                                                 digests)
        else:
            written = _written_arguments(func)
            args = tuple(ArgSpec(f"arg{i}", tuple(t.shape), _dtype(t), i in written, bounds.get(i), digests.get(i))
                         for i, t in enumerate(arg_types))
            if not written:
                raise KernelError(f"@{fname} writes none of its memref arguments; nothing to measure")
            func.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
        payload = str(module)
    ops = analyze(payload)
    main = max(ops, key=lambda o: o.flops)
    dims = {f"d{i}": s for i, s in enumerate(main.sizes)}
    return Kernel(name or fname, dims, payload, fname, args, max(1, sum(o.flops for o in ops)),
                  main.reduction_length, tuple(o.name for o in ops), reference=None)


def _parse(ir, text: str):
    diagnostics: list[str] = []

    def collect(d):
        diagnostics.append(f"{d.location}: {d.message}")
        return True

    handler = ir.Context.current.attach_diagnostic_handler(collect)
    try:
        return ir.Module.parse(text)
    except Exception as err:  # MLIRError; keep the first real diagnostic on one line
        first = diagnostics[0] if diagnostics else str(err).splitlines()[-1]
        raise KernelError(f"malformed MLIR: {first.strip()}") from None
    finally:
        handler.detach()


def _pick_function(module, func_name):
    """The entry function: `func_name`, else the only public function with Linalg ops.
    Every other function the entry does not call is dropped, so that the loop sizes and
    FLOPs read from the payload are the entry's own."""
    funcs = [op for op in module.body.operations if op.operation.name == "func.func" and len(op.regions[0].blocks)]
    if func_name:
        chosen = [f for f in funcs if f.attributes["sym_name"].value == func_name]
        if not chosen:
            raise KernelError(f"no function @{func_name} with a body in the module; it has "
                              + ", ".join(f"@{f.attributes['sym_name'].value}" for f in funcs))
    else:
        with_linalg = [f for f in funcs if any(o.name.startswith("linalg.") for o in _walk(f.operation))]
        if not with_linalg:
            raise KernelError("no linalg op found: rcompiler tunes functions built from Linalg ops "
                              "(linalg.matmul, batch_matmul, conv_2d_*, generic, ...)")
        chosen = [f for f in with_linalg if "sym_visibility" not in f.attributes
                  or f.attributes["sym_visibility"].value == "public"] or with_linalg
        if len(chosen) > 1:
            raise KernelError("the module has several public functions with Linalg ops ("
                              + ", ".join(f"@{f.attributes['sym_name'].value}" for f in chosen)
                              + "); choose one with --func")
    entry = chosen[0]
    if not any(o.name.startswith("linalg.") for o in _walk(entry.operation)):
        raise KernelError(f"@{entry.attributes['sym_name'].value} has no linalg op: rcompiler tunes functions "
                          "built from Linalg ops (linalg.matmul, batch_matmul, conv_2d_*, generic, ...)")
    _drop_other_functions(module, entry)
    return entry


def _drop_other_functions(module, entry) -> None:
    """Remove the functions `entry` does not call, directly or through others."""
    from mlir import ir

    funcs = {op.attributes["sym_name"].value: op for op in module.body.operations if op.operation.name == "func.func"}
    keep, todo = set(), [entry.attributes["sym_name"].value]
    while todo:
        name = todo.pop()
        if name in keep or name not in funcs:
            continue
        keep.add(name)
        todo += [ir.FlatSymbolRefAttr(o.attributes["callee"]).value for o in _walk(funcs[name].operation)
                 if o.name == "func.call"]
    for name, op in funcs.items():
        if name not in keep:
            op.operation.erase()


def _check_body(func, fname):
    bad = sorted({o.name for o in _walk(func.operation)
                  if o.name.split(".")[0] not in SUPPORTED_DIALECTS and o.name not in SUPPORTED_OPS})
    if bad:
        raise KernelError(f"unsupported op(s) in @{fname}: {', '.join(bad)}; supported dialects: "
                          f"{', '.join(sorted(SUPPORTED_DIALECTS))}")


def _checked_types(ir, types, fname, what):
    for i, t in enumerate(types):
        if not (isinstance(t, ir.RankedTensorType) or isinstance(t, ir.MemRefType)):
            raise KernelError(f"@{fname} {what} #{i} has type {t}; only ranked tensors and memrefs are supported")
        shaped = ir.ShapedType(t)
        if not shaped.has_static_shape:
            raise KernelError(f"@{fname} {what} #{i} has dynamic shape {t}; rcompiler needs static shapes")
        if str(shaped.element_type) not in NUMPY_DTYPES:
            raise KernelError(f"@{fname} {what} #{i} has element type {shaped.element_type}; supported: "
                              + ", ".join(NUMPY_DTYPES))
    return types


def _dtype(t) -> str:
    return NUMPY_DTYPES[str(t.element_type)]


def _written_arguments(func) -> set[int]:
    """Indices of memref arguments that the body writes (linalg outs, copy/store targets)."""
    args = list(func.regions[0].blocks[0].arguments)
    written = set()
    for op in _walk(func.operation):
        if op.name.startswith("linalg.") and hasattr(op.opview, "outputs") and not len(op.results):
            dests = list(op.opview.outputs)
        elif op.name in ("memref.copy", "memref.store", "bufferization.materialize_in_destination"):
            dests = [op.operands[1]]
        else:
            continue
        written |= {i for i, a in enumerate(args) if any(d == a for d in dests)}
    return written


def _hoist(module, func, n_args: int, evaluate) -> None:
    """Large constants to parameters, then constant sub-graphs folded (with `evaluate`)."""
    values = hoist_constants(module, func)
    if values:
        mark_params(func, param_digests(func) | {n_args + k: store(v) for k, v in enumerate(values)})
    if evaluate is not None:
        fold_constants(module, func, evaluate)


def _wrap_tensor_function(ir, passmanager, module, func, fname, arg_types, res_types, bounds, digests):
    """Give a tensor function a memref entry point with one output buffer per result."""
    if not res_types:
        raise KernelError(f"@{fname} takes tensors but returns nothing; a tensor function must return its results")
    if any(isinstance(t, ir.MemRefType) for t in arg_types):
        raise KernelError(f"@{fname} mixes tensor and memref arguments; use one form")
    impl = f"{fname}__impl"
    func.attributes["sym_name"] = ir.StringAttr.get(impl)
    func.attributes["sym_visibility"] = ir.StringAttr.get("private")
    args = [ArgSpec(f"w{i}" if i in digests else f"in{i}", tuple(t.shape), _dtype(t), bound=bounds.get(i),
                    data=digests.get(i)) for i, t in enumerate(arg_types)]
    args += [ArgSpec(f"out{i}", tuple(t.shape), _dtype(t), is_output=True) for i, t in enumerate(res_types)]
    sig = ", ".join(f"%{a.name}: {a.mlir_type}" for a in args)
    lines = [f"func.func @{fname}({sig}) attributes {{llvm.emit_c_interface}} {{"]
    ins = [a for a in args if not a.is_output]
    outs = [a for a in args if a.is_output]
    for a in ins:
        lines.append(f"  %{a.name}_t = bufferization.to_tensor %{a.name} restrict : {a.mlir_type} to {a.tensor_type}")
    results = ", ".join(f"%r{i}" for i in range(len(outs)))
    lines.append(f"  {results} = func.call @{impl}({', '.join(f'%{a.name}_t' for a in ins)}) : "
                 f"({', '.join(a.tensor_type for a in ins)}) -> ({', '.join(a.tensor_type for a in outs)})")
    for i, a in enumerate(outs):
        lines.append(f"  bufferization.materialize_in_destination %r{i} in restrict writable %{a.name} : "
                     f"({a.tensor_type}, {a.mlir_type}) -> ()")
    lines += ["  return", "}"]
    wrapped = ir.Module.parse(str(module).rstrip().rstrip("}") + "\n".join(lines) + "\n}\n")
    passmanager.PassManager.parse("builtin.module(inline,symbol-dce,canonicalize)").run(wrapped.operation)
    return wrapped, tuple(args)
