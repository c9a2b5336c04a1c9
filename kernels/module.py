"""Whole modules, as a frontend emits them: the entry function split into tasks.

A task is a group of Linalg ops that is scheduled as one kernel: an anchor (a
contraction, convolution, reduction, transpose, or a standalone elementwise op)
with the fill that initialises it and the elementwise ops that consume its result,
so bias and activation can fuse into its tiles. Ops that are not Linalg (reshapes,
pads, scalar arithmetic) stay in the entry function and lower naively; so do
fill-only groups.

`load_program` outlines every task into a private function `@task_<i>` called
from the entry function. Each task function, alone, is a kernel that the tuner
tunes like any other; identical tasks (same ops, maps and shapes) share one kernel,
so they are tuned once. The outlined module, behind the same memref entry point as
the module given, is what is compiled and timed end to end.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace

from .base import Kernel, KernelError
from .user import kernel_from_mlir

TASK_PREFIX = "task_"  # the outlined functions are task_0, task_1, ...
FREE_OPS = ("arith.constant", "tensor.empty")  # rematerialised in each task that uses them
FILL_OPS = ("linalg.fill", "linalg.copy", "linalg.broadcast")  # initialise an anchor's output
LAYOUT_ATTR = "bufferization.buffer_layout"  # an argument's memref layout once bufferized
BORDER_MARK = "rcompiler_border"  # on the entry's fills of a padded tensor that a task writes the interior of


@dataclass(frozen=True)
class Task:
    name: str  # this occurrence, task_<i>: the group it was outlined from
    ops: tuple[str, ...]  # its Linalg ops, in order
    kernel: Kernel | None  # the task alone; None when it cannot be scheduled
    reason: str = ""  # why it lowers naively, when kernel is None
    function: str = ""  # the function the program calls for it: one per distinct task

    def __post_init__(self):
        if not self.function:
            object.__setattr__(self, "function", self.name)

    @property
    def key(self) -> str:
        """Identical tasks share this key (their kernel's fingerprint)."""
        return self.kernel.fingerprint if self.kernel else self.name


@dataclass
class Program:
    """A module split into tasks: what is tuned (the tasks) and what is measured (`kernel`)."""

    name: str
    original: Kernel  # the module as given; its naive lowering is the reference
    kernel: Kernel  # the outlined module, behind the same entry point
    tasks: list[Task] = field(default_factory=list)
    naive_ops: tuple[str, ...] = ()  # ops left in the entry function
    source: str = ""  # the module text as given (what peers such as IREE compile)
    entry_pads: tuple[int, ...] = ()  # ranks of the entry function's tensor.pad ops, in order (all static)
    entry_fills: tuple[int, ...] = ()  # ranks of the entry's BORDER_MARK fills, in order

    @property
    def tunable(self) -> list[Task]:
        return [t for t in self.tasks if t.kernel is not None]

    def weights(self) -> Counter:
        """How often each distinct task (by key) occurs in the module."""
        return Counter(t.key for t in self.tunable)

    def distinct(self) -> list[Task]:
        """One task per key, in module order."""
        seen, out = set(), []
        for t in self.tunable:
            if t.key not in seen:
                seen.add(t.key)
                out.append(t)
        return out


def load_program(text: str, func_name: str | None = None, name: str | None = None) -> Program:
    """Parse a module, pick its entry function, split it into tasks and outline them."""
    from mlir import ir, passmanager

    from rcompiler.measure.evaluate import evaluate

    # Weights become parameters and constant sub-graphs are computed now (kernels/params.py,
    # kernels/folding.py): a task holds no literal weights, so identical layers share it.
    original = kernel_from_mlir(text, func_name, name=name, params=True, evaluate=evaluate)
    with ir.Context(), ir.Location.unknown():
        module = ir.Module.parse(original.payload)
        entry = next(op for op in module.body.operations if op.operation.name == "func.func"
                     and op.attributes["sym_name"].value == original.func_name)
        _clone_shared_fills(ir, entry)
        groups = partition(list(entry.regions[0].blocks[0].operations))
        names = []
        for i, group in enumerate(groups):
            _outline(ir, module, group, f"{TASK_PREFIX}{i}")
            names.append((f"{TASK_PREFIX}{i}", tuple(op.name for op in group)))
        passmanager.PassManager.parse("builtin.module(canonicalize,cse)").run(module.operation)
        module.operation.verify()
        funcs = _functions(module)
        tasks = _share_functions(ir, entry, funcs, [_task(ir, task, ops, funcs[task]) for task, ops in names])
        _write_pads_in_place(ir, entry, _functions(module))  # those left after sharing
        module.operation.verify()
        naive_ops = tuple(op.name for op in _walk_linalg(entry) if BORDER_MARK not in op.attributes)
        fills = tuple(op.result.type.rank for op in _walk_linalg(entry) if BORDER_MARK in op.attributes)
        # The module script takes the entry's pads one handle each, in this (match) order, so
        # it lists all of them or, when one is dynamic and cannot be copied by rows, none.
        pads = [op for op in _nested(entry) if op.name == "tensor.pad"]
        entry_pads = (tuple(op.result.type.rank for op in pads)
                      if all(op.result.type.has_static_shape for op in pads) else ())
        payload = str(module)
    kernel = Kernel(original.name, original.dims, payload, original.func_name, original.args, original.flops,
                    original.reduction_length, original.ops, reference=None, kind="module")
    return Program(original.name, original, kernel, tasks, naive_ops, text, entry_pads, fills)


def _functions(module) -> dict:
    """The module's functions by name."""
    return {op.attributes["sym_name"].value: op for op in module.body.operations if op.operation.name == "func.func"}


def _clone_shared_fills(ir, entry) -> None:
    """A fill is placed right before the op it initialises, one copy per op when several share
    it (one zero tensor, CSE'd, for every conv of a shape): each task then fills its own
    output in its tiles instead of copying a shared one, or of reading one filled earlier."""
    for op in list(entry.regions[0].blocks[0].operations):
        if op.operation.name != "linalg.fill" or len(op.results) != 1:
            continue
        uses = [(u.owner, u.operand_number) for u in op.results[0].uses]
        if not uses or not all(o.name.startswith("linalg.") and o.parent == entry for o, _ in uses):
            continue
        if len(uses) == 1:
            op.operation.move_before(uses[0][0])
            continue
        for owner, number in uses:
            owner.operands[number] = op.operation.clone(ip=ir.InsertionPoint(owner)).results[0]
        op.operation.erase()


# -- partition --------------------------------------------------------------------
def partition(ops: list) -> list[list]:
    """Groups of Linalg ops in program order (see the module docstring). A group is
    contiguous: an op that is neither Linalg nor free (constants, tensor.empty) ends it, but
    for one that leaves alone the fills that start a group."""
    groups: list[list] = []
    current: list | None = None
    for op in ops:
        name = op.operation.name
        if name in FREE_OPS:
            continue
        if not _is_linalg_on_tensors(op):
            # A fill waiting for its op (a conv's zero init, with the input's pad written between
            # them) keeps waiting: left alone it would be a pass over memory outside every task.
            if not (current and _fills_only(current) and not _uses_results_of(op, current)):
                current = None
            continue
        if current is not None and _joins(op, current):
            current.append(op)
        else:
            current = [op]
            groups.append(current)
    return [g for g in groups if any(op.operation.name not in FILL_OPS for op in g)]


def _joins(op, group: list) -> bool:
    """`op` joins the group when it alone uses the group's last result, and it is the
    group's first real op (after fills) or an elementwise consumer."""
    last = group[-1]
    if len(last.results) != 1 or [u.owner for u in last.results[0].uses] != [op]:
        return False
    has_anchor = any(g.operation.name not in FILL_OPS for g in group)
    return not has_anchor or _is_elementwise(op)


def _fills_only(group: list) -> bool:
    return all(g.operation.name in FILL_OPS for g in group)


def _uses_results_of(op, group: list) -> bool:
    results = [r for g in group for r in g.results]
    return any(v == r for o in _nested(op) for v in o.operands for r in results)


def _is_linalg_on_tensors(op) -> bool:
    return op.operation.name.startswith("linalg.") and len(op.results) > 0


def _is_elementwise(op) -> bool:
    if "iterator_types" not in op.attributes:
        return op.operation.name in ("linalg.add", "linalg.sub", "linalg.mul", "linalg.div", "linalg.max",
                                     "linalg.exp", "linalg.elementwise", "linalg.map")
    return all("parallel" in str(it) for it in op.attributes["iterator_types"])


def _walk_linalg(func):
    return [op for op in func.regions[0].blocks[0].operations if op.operation.name.startswith("linalg.")]


# -- outlining -----------------------------------------------------------------------
def _outline(ir, module, group: list, name: str) -> None:
    from mlir.dialects import func

    inside = {hash(o.operation) for op in group for o in _nested(op)}

    def internal(value) -> bool:
        owner = value.owner
        if isinstance(owner, ir.Block):
            return hash(owner.owner.operation) in inside if owner.owner is not None else False
        return hash(owner.operation) in inside

    externals, free = [], []
    for op in group:
        for o in _nested(op):
            for v in o.operands:
                if internal(v) or any(v == e for e in externals + free):
                    continue
                owner = v.owner
                is_free = not isinstance(owner, ir.Block) and owner.operation.name in FREE_OPS
                (free if is_free else externals).append(v)
    results = [r for op in group for r in op.results
               if any(hash(u.owner.operation) not in inside for u in r.uses)]
    ftype = ir.FunctionType.get([v.type for v in externals], [r.type for r in results])
    with ir.InsertionPoint(module.body):
        fn = func.FuncOp(name, ftype, visibility="private")
    block = fn.add_entry_block()
    with ir.InsertionPoint(group[-1]):
        call = func.CallOp([r.type for r in results], ir.FlatSymbolRefAttr.get(name), externals)
    for r, new in zip(results, call.results):
        for use in list(r.uses):
            if hash(use.owner.operation) not in inside and use.owner != call:
                use.owner.operands[use.operand_number] = new
    with ir.InsertionPoint(block):
        ret = func.ReturnOp(results)
    clones = {}
    for v in free:
        clones[hash(v.owner.operation)] = v.owner.operation.clone(ip=ir.InsertionPoint(ret))
    for op in group:
        op.operation.move_before(ret)
    for op in group:
        for o in _nested(op):
            for v, arg in zip(externals, block.arguments):
                o.replace_uses_of_with(v, arg)
            for v in free:
                o.replace_uses_of_with(v, clones[hash(v.owner.operation)].results[0])


def _nested(op):
    """The op and every op nested in it."""
    out = [op.operation]
    for region in op.regions:
        for block in region.blocks:
            for child in block.operations:
                out.extend(_nested(child))
    return out


def _share_functions(ir, entry, funcs: dict, tasks: list[Task]) -> list[Task]:
    """Identical tasks (twelve encoder layers' projections) call one function: the program is
    compiled, scheduled and kept in the instruction cache once per distinct task."""
    first: dict[str, str] = {}
    for task in tasks:
        if task.kernel is not None:
            first.setdefault(task.key, task.name)
    redirect = {t.name: first[t.key] for t in tasks if t.kernel is not None and first[t.key] != t.name}
    for op in _nested(entry):
        if op.name == "func.call":
            callee = ir.FlatSymbolRefAttr(op.attributes["callee"]).value
            if callee in redirect:
                op.attributes["callee"] = ir.FlatSymbolRefAttr.get(redirect[callee])
    for name in redirect:
        funcs[name].operation.erase()
    return [replace(t, function=redirect.get(t.name, t.name)) for t in tasks]


def _write_pads_in_place(ir, entry, funcs: dict) -> None:
    """A task whose result is only padded (an expand conv's output, padded for the depthwise conv
    that reads it) writes it straight into the interior of the padded tensor, which the entry
    fills beforehand: the pad's copy, a read and a write of the whole activation outside every
    task, is gone. The task is tuned alone in its usual form; in the program it takes the interior
    (a slice of the padded tensor) as one more argument and makes it the output its last op writes,
    in place of the frontend's tensor.empty (as IREE's dispatches write into a subview of their
    result). The argument keeps the padded tensor's strides when bufferized
    (`bufferization.buffer_layout`), so no copy is made at the call; every other argument is
    declared identity, since such a module bufferizes with inferred result layouts (render.py): the
    task returns its argument, and the lowering drops that result. Done when every call of the
    task's function is padded alike."""
    calls: dict[str, list] = {}
    for op in entry.regions[0].blocks[0].operations:
        if op.operation.name == "func.call":
            calls.setdefault(ir.FlatSymbolRefAttr(op.attributes["callee"]).value, []).append(op)
    rewritten = False
    for name, sites in calls.items():
        pads = [_sole_pad(ir, site) for site in sites]
        if name not in funcs or not all(pads) or len({_pad_signature(p) for p in pads}) != 1:
            continue
        fn, pad = funcs[name], pads[0]
        block = fn.regions[0].blocks[0]
        ret = block.operations[len(block.operations) - 1]
        target = _empty_output(ir, ret.operands[0])
        if target is None:
            continue
        owner, index = target
        interior, padded = ret.operands[0].type, ir.RankedTensorType(pad.result.type)
        low = list(ir.DenseI64ArrayAttr(pad.attributes["static_low"]))
        strides = [math.prod(padded.shape[d + 1:]) for d in range(padded.rank)]
        layout = ir.StridedLayoutAttr.get(sum(lo * st for lo, st in zip(low, strides)), strides)
        owner.operands[index] = block.add_argument(interior, ir.Location.unknown())
        ftype = ir.FunctionType(ir.TypeAttr(fn.attributes["function_type"]).value)
        fn.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get([*ftype.inputs, interior],
                                                                              ftype.results))
        _set_arg_attrs(ir, fn, {len(ftype.inputs): layout})
        for site, pad in zip(sites, pads):
            _call_into_interior(ir, site, pad, interior, low)
        rewritten = True
    if rewritten:
        for fn in funcs.values():
            _set_arg_attrs(ir, fn, {})


def _call_into_interior(ir, site, pad, interior, low: list[int]) -> None:
    """Replace the call `site` and the `pad` of its result: the entry fills the padded tensor
    (BORDER_MARK), passes its interior to the task, and inserts the result back (in place)."""
    from mlir.dialects import arith, func, linalg, tensor

    padded = ir.RankedTensorType(pad.result.type)
    shape = list(ir.ShapedType(interior).shape)
    with ir.InsertionPoint(site):
        value = arith.ConstantOp(padded.element_type, _pad_value(pad).owner.attributes["value"])
        border = linalg.fill(value.result, outs=[tensor.EmptyOp(padded.shape, padded.element_type).result])
        border.owner.attributes[BORDER_MARK] = ir.UnitAttr.get()
        window = tensor.ExtractSliceOp(interior, border, [], [], [], low, shape, [1] * len(shape))
        call = func.CallOp([interior], site.attributes["callee"], [*site.operands, window.result])
    with ir.InsertionPoint(pad):
        inserted = tensor.InsertSliceOp(call.result, border, [], [], [], low, shape, [1] * len(shape))
    pad.result.replace_all_uses_with(inserted.result)
    pad.operation.erase()
    site.operation.erase()


def _empty_output(ir, value):
    """(op, operand index) of the tensor.empty that `value` is finally written into, following
    the outputs of the linalg ops that produce it (a ReLU's output, or a conv's bias fill's)."""
    op = value.owner
    while not isinstance(op, ir.Block) and op.name.startswith("linalg."):
        view = op.opview
        result = next(i for i, r in enumerate(op.results) if r == value)
        init = view.outputs[result]
        if init.owner.name == "tensor.empty":
            return op, len(view.inputs) + result
        value, op = init, init.owner
    return None


def _set_arg_attrs(ir, fn, layouts: dict) -> None:
    """Give `fn`'s tensor arguments a bufferization.buffer_layout: `layouts[i]` for argument i,
    identity for the others that have none."""
    types = ir.FunctionType(ir.TypeAttr(fn.attributes["function_type"]).value).inputs
    old = list(ir.ArrayAttr(fn.attributes["arg_attrs"])) if "arg_attrs" in fn.attributes else []
    attrs = []
    for i, t in enumerate(types):
        given = ir.DictAttr(old[i]) if i < len(old) else ir.DictAttr.get({})
        entries = {given[k].name: given[k].attr for k in range(len(given))}
        if i in layouts:
            entries[LAYOUT_ATTR] = layouts[i]
        elif LAYOUT_ATTR not in entries and isinstance(t, ir.RankedTensorType):
            entries[LAYOUT_ATTR] = ir.AffineMapAttr.get(ir.AffineMap.get_identity(t.rank))
        attrs.append(ir.DictAttr.get(entries))
    fn.attributes["arg_attrs"] = ir.ArrayAttr.get(attrs)


def _sole_pad(ir, call):
    """The static, constant-valued tensor.pad that is the only use of `call`'s only result, if any."""
    if len(call.results) != 1:
        return None
    users = [u.owner for u in call.results[0].uses]
    if len(users) != 1 or users[0].name != "tensor.pad":
        return None
    pad = users[0].opview
    value = _pad_value(pad)
    static = len(pad.operands) == 1 and pad.result.type.has_static_shape  # no dynamic low or high
    if not static or isinstance(value.owner, ir.Block) or value.owner.name != "arith.constant":
        return None
    return pad


def _pad_value(pad):
    """What the pad writes around its source: the value its region yields."""
    body = pad.regions[0].blocks[0].operations
    return body[len(body) - 1].operands[0]


def _pad_signature(pad) -> tuple:
    return (str(pad.result.type), str(pad.attributes["static_low"]), str(pad.attributes["static_high"]),
            str(_pad_value(pad).owner.attributes["value"]))


# -- each task as a kernel --------------------------------------------------------------
def _task(ir, name: str, ops: tuple[str, ...], fn) -> Task:
    """The task function alone, made public under a fixed name so identical tasks match."""
    text = str(fn.operation).replace(f"func.func private @{name}(", "func.func @task(", 1)
    try:
        kernel = kernel_from_mlir(text, "task", name="task")
    except KernelError as err:
        return Task(name, ops, None, f"cannot be scheduled: {err}")
    if kernel.ops != tuple(o for o in ops if o.startswith("linalg.")) or len(kernel.structure) != len(ops):
        return Task(name, ops, None, "its standalone form differs from the module's ops")
    # Named by its ops, sized by its main op's loops: fill+matmul+generic[64x512x256].
    sizes = kernel.structure[kernel.main_index].sizes
    return Task(name, ops, replace(kernel, name="+".join(o.removeprefix("linalg.") for o in ops),
                                   dims={f"d{i}": s for i, s in enumerate(sizes)}))
