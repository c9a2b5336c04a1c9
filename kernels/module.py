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

from collections import Counter
from dataclasses import dataclass, field, replace

from .base import Kernel, KernelError
from .user import kernel_from_mlir

TASK_PREFIX = "task_"  # the outlined functions are task_0, task_1, ...
FREE_OPS = ("arith.constant", "tensor.empty")  # rematerialised in each task that uses them
FILL_OPS = ("linalg.fill", "linalg.copy", "linalg.broadcast")  # initialise an anchor's output


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
        naive_ops = tuple(op.name for op in _walk_linalg(entry))
        # The module script takes the entry's pads one handle each, in this (match) order, so
        # it lists all of them or, when one is dynamic and cannot be copied by rows, none.
        pads = [op for op in _nested(entry) if op.name == "tensor.pad"]
        entry_pads = (tuple(op.result.type.rank for op in pads)
                      if all(op.result.type.has_static_shape for op in pads) else ())
        funcs = {op.attributes["sym_name"].value: op for op in module.body.operations
                 if op.operation.name == "func.func"}
        tasks = _share_functions(ir, entry, funcs, [_task(ir, task, ops, funcs[task]) for task, ops in names])
        payload = str(module)
    kernel = Kernel(original.name, original.dims, payload, original.func_name, original.args, original.flops,
                    original.reduction_length, original.ops, reference=None, kind="module")
    return Program(original.name, original, kernel, tasks, naive_ops, text, entry_pads)


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
