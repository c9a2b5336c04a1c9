"""Render a schedule as one transform-dialect module with `@__transform_main`.

The script is plain transform IR: upstream `mlir-opt --transform-interpreter`
applies it unchanged. Besides the schedule's own steps it always
- splits the payload's Linalg ops into handles, the main op and the rest;
- tiles the other ops (fill, bias, ReLU, copies) to rows so vectorizing them
  never builds a whole-matrix vector, unless `fuse` pulled them into tiles;
- bufferizes at the end, then (when vectorized) folds memref aliases, runs CSE,
  and lowers contractions and transfers to what LLVM turns into FMAs.
Every rendered line remembers the step it came from, so an MLIR error can be
reported as "step N (name): message".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from rcompiler.kernels.base import Kernel
from rcompiler.kernels.module import BORDER_MARK
from rcompiler.kernels.structure import Operand

from .schedule import Schedule
from .space import Plan, output_loops, plan
from .steps import ScheduleError

ANY = "!transform.any_op"
DTYPES = {"float32": "f32", "float64": "f64"}


@dataclass(frozen=True)
class Script:
    text: str
    owners: tuple[str, ...]  # for each line of text: the step that wrote it

    def explain(self, reason: str) -> str:
        """Prefix an MLIR failure with the step whose line it points at."""
        match = re.search(r'loc\("-":(\d+):\d+\)', reason)
        if match:
            line = int(match.group(1)) - 1
            if 0 <= line < len(self.owners):
                return f"{self.owners[line]}: {_strip(reason)}"
        return _strip(reason)


PAD_MARK = "rcompiler_pad"  # on the tensor.pad ops of a pad step


class ModuleEntry(NamedTuple):
    """What a module script does in the entry function: `pads` and `fills`, the ranks of its
    static tensor.pad ops and of its BORDER_MARK fills, in order."""
    name: str
    pads: tuple[int, ...] = ()
    fills: tuple[int, ...] = ()


def _strip(reason: str) -> str:
    reason = reason.replace("Failed to apply named transform sequence. Diagnostic message ", "")
    return re.sub(r'\s*(at )?loc\("-":\d+:\d+\):?\s*', " ", reason).strip()


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.owners: list[str] = []
        self.owner = "setup"
        self._n = 0

    def fresh(self, base: str) -> str:
        self._n += 1
        return f"%{base}{self._n}"

    def __call__(self, line: str) -> None:
        self.lines.append("    " + line)
        self.owners.append(self.owner)

    def script(self) -> Script:
        """The lines written so far as `@__transform_main`."""
        header = ["module attributes {transform.with_named_sequence} {",
                  f"  transform.named_sequence @__transform_main(%root: {ANY} {{transform.consumed}}) {{"]
        footer = ["    transform.yield", "  }", "}"]
        text = "\n".join(header + self.lines + footer) + "\n"
        return Script(text, ("setup",) * len(header) + tuple(self.owners) + ("cleanup",) * len(footer))


def _results(n: int) -> str:
    return ", ".join([ANY] * n)


def _tiled_results(w: _Writer, base: str, sizes) -> tuple[str, str, list[str]]:
    """Names for a tiling op's results: the tiled op, then one loop per nonzero size.
    Returns (tiled op, the left-hand side to write, the loop handles)."""
    n_loops = sum(1 for s in sizes if s)
    op, loops = w.fresh(base), w.fresh(f"{base}_loops")
    if n_loops > 1:
        return op, f"{op}, {loops}:{n_loops}", [f"{loops}#{i}" for i in range(n_loops)]
    return op, f"{op}, {loops}", [loops]


def _split(w: _Writer, handle: str, n: int, base: str) -> list[str]:
    """One handle per payload op that `handle` holds (n of them, in match order)."""
    if n == 1:
        return [handle]
    handles = [w.fresh(base) for _ in range(n)]
    w(f"{', '.join(handles)} = transform.split_handle {handle} : ({ANY}) -> ({_results(n)})")
    return handles


def _match_func(w: _Writer, base: str, name: str, scope: str) -> str:
    """A handle to the function named `name` inside `scope`."""
    func = w.fresh(base)
    w(f"{func} = transform.structured.match ops{{[\"func.func\"]}} attributes {{sym_name = \"{name}\"}} "
      f"in {scope} : ({ANY}) -> {ANY}")
    return func


def _tile_for(w: _Writer, handle: str, sizes, interchange=None) -> tuple[str, list[str]]:
    """tile_using_for; returns the tiled-op handle and one handle per loop."""
    op, lhs, loops = _tiled_results(w, "tiled", sizes)
    inter = f" interchange = {list(interchange)}" if interchange is not None and list(interchange) != sorted(interchange) else ""
    w(f"{lhs} = transform.structured.tile_using_for {handle} tile_sizes {list(sizes)}{inter} : "
      f"({ANY}) -> ({_results(len(loops) + 1)})")
    return op, loops


def render(schedule: Schedule, kernel: Kernel) -> Script:
    """The transform script for `schedule` on `kernel` (raises ScheduleError if illegal)."""
    w = _Writer()
    func = w.fresh("func")
    w(f"{func} = transform.structured.match ops{{[\"func.func\"]}} in %root : ({ANY}) -> {ANY}")
    finish = render_scoped(w, schedule, kernel, "%root", func)
    w.owner = "bufferize"
    # A frontend's output buffer is a tensor.empty that the result is materialized into:
    # written in place instead of into a temporary and copied (a whole extra pass).
    w(f"transform.bufferization.eliminate_empty_tensors %root : {ANY}")
    w(f"%bufferized = transform.bufferization.one_shot_bufferize %root : ({ANY}) -> {ANY}")
    bfunc = w.fresh("bfunc")
    w(f"{bfunc} = transform.structured.match ops{{[\"func.func\"]}} in %bufferized : ({ANY}) -> {ANY}")
    finish(bfunc)
    return w.script()


def render_module(parts: list[tuple[str, Schedule, Kernel]], entry: ModuleEntry | None = None) -> Script:
    """One script for a module of outlined tasks: each (function name, schedule, task kernel)
    applies to the ops of its own function; one bufferization (across function boundaries)
    for the whole module; functions without a part lower naively. `entry` names the entry
    function, the ranks of its static tensor.pad ops (a convolution's padding, left there by the
    task split) and of its fills of padded tensors that tasks write the interior of: those are
    copied and filled row by row too."""
    w = _Writer()
    finishers = []
    if entry and (entry.pads or entry.fills):
        w.owner = f"{entry.name}: pads"
        func = _match_func(w, "entry", entry.name, "%root")
        if entry.pads:
            pads = w.fresh("pads")
            w(f"{pads} = transform.structured.match ops{{[\"tensor.pad\"]}} in {func} : ({ANY}) -> {ANY}")
            for handle, rank in zip(_split(w, pads, len(entry.pads), "pad"), entry.pads):
                _pad_by_rows(w, handle, rank)
        if entry.fills:
            fills = w.fresh("borders")
            w(f"{fills} = transform.structured.match ops{{[\"linalg.fill\"]}} attributes {{{BORDER_MARK}}} "
              f"in {func} : ({ANY}) -> {ANY}")
            for handle, rank in zip(_split(w, fills, len(entry.fills), "border"), entry.fills):
                _vectorize_by_rows(w, handle, rank)
    for name, schedule, kernel in parts:
        w.owner = f"setup ({name})"
        func = _match_func(w, "task", name, "%root")
        before = len(w.owners)
        finish = render_scoped(w, schedule, kernel, func, func)
        w.owners[before:] = [f"{name}: {o}" for o in w.owners[before:]]
        finishers.append((name, finish))
    w.owner = "bufferize"
    w(f"transform.bufferization.eliminate_empty_tensors %root : {ANY}")
    # A task that writes into a padded tensor's interior returns that argument, a strided view:
    # its result keeps the view's layout (every other argument is declared identity), and the
    # lowering drops it, so the call neither copies nor allocates (kernels/module.py).
    layout = "InferLayoutMap" if entry and entry.fills else "IdentityLayoutMap"
    w(f"%bufferized = transform.bufferization.one_shot_bufferize layout{{{layout}}} %root "
      f"{{bufferize_function_boundaries = true}} : ({ANY}) -> {ANY}")
    for name, finish in finishers:
        w.owner = f"{name}: bufferize"
        bfunc = _match_func(w, "btask", name, "%bufferized")
        before = len(w.owners)
        finish(bfunc)
        w.owners[before:] = [f"{name}: {o}" for o in w.owners[before:]]
    return w.script()


def render_scoped(w: "_Writer", schedule: Schedule, kernel: Kernel, scope: str, func: str):
    """Write the tensor-level part of `schedule` for the kernel's ops inside `scope` (a handle
    to the payload module or to one function; `func` is the function handle). Returns what
    writes the part after bufferization, given the bufferized function's handle."""
    p = plan(schedule, kernel)
    ops = kernel.structure
    linalg = w.fresh("linalg")
    w.owner = "setup"
    w(f"{linalg} = transform.structured.match interface{{LinalgOp}} in {scope} : ({ANY}) -> {ANY}")
    handles = _split(w, linalg, len(ops), "op")
    main = handles[p.main_index]
    aux = [(h, len(o.sizes)) for i, (h, o) in enumerate(zip(handles, ops)) if i != p.main_index]
    fuse, channels = schedule.has("fuse"), schedule.has("pack_channels")
    if not fuse and not channels:
        _tile_rows(w, aux)

    main = _layout(w, schedule, kernel, p, main, scope, func)
    if channels:  # after packing, so the output's zero fill could fold into a fill of the packed output
        _tile_rows(w, aux)
    if p.parallel_sizes is not None:
        w.owner = _label(schedule, "parallel")
        forall = w.fresh("forall")
        new = w.fresh("par")
        w(f"{new}, {forall} = transform.structured.tile_using_forall {main} tile_sizes {list(p.parallel_sizes)} : "
          f"({ANY}) -> ({ANY}, {ANY})")
        main = new

    loops: list[str] = []
    for depth, (tile, level) in enumerate(zip(schedule.tiles, p.levels)):
        w.owner = _label(schedule, "tile", depth)
        if depth == 0 and fuse:
            main, loops = _fuse(w, schedule, kernel, p, handles[-1], tile, level, scope)
        else:
            main, loops = _tile_for(w, main, tile.sizes, tile.interchange)

    lanes = schedule.get("lanes")
    if lanes is not None:
        w.owner = _label(schedule, "lanes")
        sizes = [lanes.size if it == "reduction" else 0 for it in p.nest.iterators]
        names = [w.fresh(x) for x in ("init", "partial", "merge", "kloop")]
        w(f"{', '.join(names)} = transform.structured.tile_reduction_using_for {main} by tile_sizes = {sizes} : "
          f"({ANY}) -> ({_results(4)})")
        main = names[1]
    unroll = schedule.get("unroll")
    if unroll is not None:
        w.owner = _label(schedule, "unroll")
        w(f"transform.loop.unroll {loops[unroll.loop]} {{factor = {unroll.factor}}} : {ANY}")
    if schedule.has("peel"):
        w.owner = _label(schedule, "peel")
        inner = p.levels[-1]
        for i in reversed(range(len(inner.loops))):  # innermost first: peeling invalidates nested handles
            if inner.remainders[i]:
                cast = w.fresh("for")
                w(f"{cast} = transform.cast {loops[i]} : {ANY} to !transform.op<\"scf.for\">")
                w(f"{w.fresh('main')}, {w.fresh('rest')} = transform.loop.peel {cast} : "
                  f"(!transform.op<\"scf.for\">) -> ({ANY}, {ANY})")
    if schedule.has("decompose"):
        w.owner = _label(schedule, "decompose")
        if unroll is not None or schedule.has("peel"):  # the main handle now misses the copies
            main = w.fresh("convs")
            w(f"{main} = transform.structured.match ops{{[\"{p.main_op}\"]}} in {scope} : ({ANY}) -> {ANY}")
        w(f"{w.fresh('conv1d')} = transform.structured.decompose {main} : ({ANY}) -> {ANY}")

    if p.generalize:
        _generalize_windowed(w, schedule, p, main, scope, bool(loops) or unroll is not None)
    if channels:
        _vectorize_packed_tile(w, schedule, scope, func)
    _vectorize(w, schedule, func, len(kernel.outputs[0].shape), p.generalize)
    reassociate = any(op.name == "linalg.generic" and "reduction" in op.iterators for op in ops)
    return lambda bfunc: _after_bufferize(w, schedule, bfunc, reassociate)


def _label(schedule: Schedule, name: str, nth: int = 0) -> str:
    seen = 0
    for i, s in enumerate(schedule.steps):
        if s.name == name:
            if seen == nth:
                return f"step {i + 1} ({s})"
            seen += 1
    return name


def _rows(rank: int) -> list[int]:
    """Tile sizes that leave one whole row (the innermost dim) per tile."""
    return [1] * (rank - 1) + [0]


def _tile_rows(w: _Writer, aux: list[tuple[str, int]]) -> None:
    """Tile auxiliary ops to rows: vectors of one row, never a whole tensor."""
    w.owner = "setup (tile auxiliary ops)"
    for handle, rank in aux:
        if rank >= 2:
            _tile_for(w, handle, _rows(rank))


def _layout(w: _Writer, schedule: Schedule, kernel: Kernel, p: Plan, main: str, scope: str, func: str) -> str:
    dtype = DTYPES.get(kernel.args[0].dtype, "f32")
    pad = schedule.get("pad")
    if pad is not None:
        w.owner = _label(schedule, "pad")
        n_operands = 3
        new, pads, copy = w.fresh("padded"), w.fresh("pads"), w.fresh("copyback")
        zeros = ", ".join([f"0.0 : {dtype}"] * n_operands)
        w(f"{new}, {pads}, {copy} = transform.structured.pad {main} pad_to_multiple_of {list(pad.multiples)} {{"
          f"padding_values = [{zeros}], padding_dimensions = {list(range(len(pad.multiples)))}, "
          f"copy_back_op = \"linalg.copy\"}} : ({ANY}) -> ({ANY}, {ANY}, {ANY})")
        _tile_for(w, copy, _rows(len(kernel.outputs[0].shape)))
        # Marked to be copied row by row after vectorization (_pad_by_rows).
        w(f"transform.annotate {pads} \"{PAD_MARK}\" : {ANY}")
        return new
    pack = schedule.get("pack")
    if pack is not None:
        w.owner = _label(schedule, "pack")
        packed = w.fresh("packed")
        generic_t, pack_t = "!transform.op<\"linalg.generic\">", "!transform.op<\"linalg.pack\">"
        w(f"{packed} = transform.structured.pack_greedily {main} matmul_packed_sizes = {list(pack.sizes)} "
          f"matmul_inner_dims_order = [0, 1, 2] : ({ANY}) -> {generic_t}")
        pm, pn, _ = pack.sizes
        batch = len(p.nest.extents) - (4 if pm == 0 else 6)
        # B (k x n) packs with its outer dims in its own order, k blocks outermost: a panel's rows
        # would stay a row of B apart (4 KiB at n=1024, one L1 set), the copy buying nothing. Outer
        # n blocks first make each n-wide panel one contiguous run along k, as BLAS packs it.
        if _k_rows_first(kernel.structure[kernel.main_index].inputs[1], batch):
            b_pack, b_cast = w.fresh("bpack"), w.fresh("bpack")
            w(f"{b_pack} = transform.get_producer_of_operand {packed}[1] : ({generic_t}) -> {ANY}")
            w(f"{b_cast} = transform.cast {b_pack} : {ANY} to {pack_t}")
            outer, repacked = list(range(batch)) + [batch + 1, batch], w.fresh("repacked")
            w(f"{repacked}, {w.fresh('bpack')}, {w.fresh('unpack')} = transform.structured.pack_transpose {b_cast} "
              f"with_compute_op({packed}) outer_perm = {outer} : ({pack_t}, {generic_t}) -> ({generic_t}, {pack_t}, {ANY})")
            packed = repacked
        new = w.fresh("main")
        w(f"{new} = transform.cast {packed} : {generic_t} to {ANY}")
        # Tile pack/unpack ops to single inner tiles and decompose them into
        # pad/transpose/insert_slice: no reshapes, which fold_memref_alias_ops
        # would otherwise chase forever after bufferization.
        packs, unpacks = w.fresh("packs"), w.fresh("unpacks")
        w(f"{packs} = transform.structured.match ops{{[\"linalg.pack\"]}} in {scope} : ({ANY}) -> {ANY}")
        _tile_for(w, packs, [1] * (batch + 2))
        w(f"{unpacks} = transform.structured.match ops{{[\"linalg.unpack\"]}} in {scope} : ({ANY}) -> {ANY}")
        _tile_for(w, unpacks, [1] * batch + [pm or 1, pn])
        w(f"transform.apply_patterns to {func} {{")
        w("  transform.apply_patterns.linalg.decompose_pack_unpack")
        w(f"}} : {ANY}")
        return new
    if schedule.has("pack_channels"):
        return _pack_channels(w, schedule, kernel, p, main, scope, func)
    if schedule.has("im2col"):
        w.owner = _label(schedule, "im2col")
        img, reshape, new = w.fresh("img2col"), w.fresh("reshape"), w.fresh("gemm")
        w(f"{img}, {reshape} = transform.structured.convert_conv2d_to_img2col {main} : ({ANY}) -> ({ANY}, {ANY})")
        # The second handle is the reshape back to NHWF; the contraction produces its operand.
        w(f"{new} = transform.get_producer_of_operand {reshape}[0] : ({ANY}) -> {ANY}")
        _tile_for(w, img, [1, 1, 0])
        return new
    return main


def _k_rows_first(b: Operand, batch: int) -> bool:
    """Whether a contraction's B holds its k dim before its n dim (stored k x n; the loops after
    `batch` batch loops are m, n, k): its packed panels then need their outer dims swapped."""
    def dim_of(loop: int) -> int:
        return next(i for i, terms in enumerate(b.index) if terms and loop in dict(terms))
    return dim_of(batch + 2) < dim_of(batch + 1)


def _pack_channels(w: _Writer, schedule: Schedule, kernel: Kernel, p: Plan, main: str, scope: str, func: str) -> str:
    """NCHW conv -> NCHWc: pack output and filter channels by fb, input channels by cb. The image,
    filter and output copies are tiled and vectorized here (a row of pixels, a filter block, an
    output tile at a time); the packed op itself is tiled by the schedule's tile steps."""
    w.owner = _label(schedule, "pack_channels")
    fb, cb = schedule.get("pack_channels").sizes
    generic, packed, filt, filt_pack, new = (w.fresh(x) for x in ("generic", "packed", "filter", "fpack", "main"))
    generic_t, pack_t = "!transform.op<\"linalg.generic\">", "!transform.op<\"linalg.pack\">"
    w(f"{generic} = transform.structured.generalize {main} : ({ANY}) -> {ANY}")
    w(f"{packed} = transform.structured.pack {generic} packed_sizes = [0, {fb}, 0, 0, {cb}, 0, 0] : "
      f"({ANY}) -> ({generic_t})")
    # The filter's inner block as (ci, fi): a row of the packed tile's right operand is one vector along fi.
    w(f"{filt} = transform.get_producer_of_operand {packed}[1] : ({generic_t}) -> {ANY}")
    w(f"{filt_pack} = transform.cast {filt} : {ANY} to {pack_t}")
    repacked = w.fresh("repacked")
    w(f"{repacked}, {w.fresh('fpack')}, {w.fresh('unpack')} = transform.structured.pack_transpose {filt_pack} "
      f"with_compute_op({packed}) inner_perm = [1, 0] : ({pack_t}, {generic_t}) -> ({generic_t}, {pack_t}, {ANY})")
    w(f"{new} = transform.cast {repacked} : {generic_t} to {ANY}")
    w(f"transform.apply_patterns to {func} {{")  # a zero fill of the output becomes a fill of the packed output
    w("  transform.apply_patterns.tensor.fold_into_pack_and_unpack")
    w("  transform.apply_patterns.canonicalization")
    w(f"}} : {ANY}")
    image, weights, init = (w.fresh(x) for x in ("image", "weights", "init"))
    for handle, operand in ((image, 0), (weights, 1), (init, 2)):
        w(f"{handle} = transform.get_producer_of_operand {new}[{operand}] : ({ANY}) -> {ANY}")
    copies = [_tile_for(w, image, [1, 1, 1, 0])[0],  # a row of pixels, transposed to pixels x channels
              _tile_for(w, weights, [1, 1, 1, 1])[0]]  # one fb x cb block of one window position
    if any(op.name == "linalg.fill" for op in kernel.structure):  # packed with the output: a fill of NCHWc rows
        _tile_for(w, init, [1, 1, 1, 1, 0])
    else:  # an initial value (a bias broadcast) packed row by row
        copies.append(_tile_for(w, init, [1, 1, 1, 0])[0])
    unpacks = w.fresh("unpacks")
    w(f"{unpacks} = transform.structured.match ops{{[\"linalg.unpack\"]}} in {scope} : ({ANY}) -> {ANY}")
    ow = p.levels[-1].inner[p.nest.names.index("ow")]
    copies.append(_tile_for(w, unpacks, [1, fb, 1, ow])[0])  # back to NCHW one output tile at a time
    for handle in copies:
        w(f"transform.structured.vectorize {handle} : {ANY}")
    return new


def _generalize_windowed(w: _Writer, schedule: Schedule, p: Plan, main: str, scope: str, tiled: bool) -> None:
    """The main op as a generic with its unit window loops folded away, so that its image reads
    become plain vector reads (see Plan.generalize). The folding stays inside the loops around
    each tile, where nothing else is."""
    w.owner = _label(schedule, "vectorize")
    if schedule.has("peel") or schedule.has("unroll"):  # the main handle now misses the copies
        main = w.fresh("windowed")
        w(f"{main} = transform.structured.match ops{{[\"{p.main_op}\"]}} in {scope} : ({ANY}) -> {ANY}")
    generic = w.fresh("generic")
    w(f"{generic} = transform.structured.generalize {main} : ({ANY}) -> {ANY}")
    where = scope
    if tiled:
        where = w.fresh("tile_loop")
        w(f"{where} = transform.get_parent_op {generic} {{deduplicate, op_name = \"scf.for\"}} : ({ANY}) -> {ANY}")
    w(f"transform.apply_patterns to {where} {{")
    w("  transform.apply_patterns.linalg.fold_unit_extent_dims_via_slices")
    w("  transform.apply_patterns.canonicalization")
    w(f"}} : {ANY}")
    # Vectorized here, not by vectorize_children_and_apply_patterns, which writes the folded
    # tile into its rank-expanding insert_slice along the wrong dims when their orders differ
    # (an ow x c tile of an NCHW output): see _vectorize_packed_tile.
    loop, ops = w.fresh("loop"), w.fresh("folded")
    w(f"transform.foreach {where} : {ANY} {{")
    w(f"^bb0({loop}: {ANY}):")
    w(f"  {ops} = transform.structured.match interface{{LinalgOp}} in {loop} : ({ANY}) -> {ANY}")
    w(f"  transform.structured.vectorize {ops} : {ANY}")
    w("}")
    w(f"transform.apply_patterns to {where} {{")
    w("  transform.apply_patterns.tensor.fold_tensor_subset_ops_into_vector_transfers")
    w("  transform.apply_patterns.canonicalization")
    w(f"}} : {ANY}")


def _vectorize_packed_tile(w: _Writer, schedule: Schedule, scope: str, func: str) -> None:
    """Drop the packed tile's unit loops, so its maps become a matmul's (ow, ci) x (ci, fi), and
    vectorize every op before `_vectorize` does. MLIR 22's vectorize_children_and_apply_patterns
    writes a vector into a rank-expanding insert_slice (the 8x14 result of a unit-dim-folded
    tile into its 1x8x1x14 slice) along the wrong dims; vectorizing the ops first lets
    fold_tensor_subset_ops_into_vector_transfers fold those inserts correctly."""
    w.owner = _label(schedule, "pack_channels")
    w(f"transform.apply_patterns to {func} {{")
    w("  transform.apply_patterns.linalg.fold_unit_extent_dims_via_slices")
    w("  transform.apply_patterns.canonicalization")
    w(f"}} : {ANY}")
    ops = w.fresh("ops")
    w(f"{ops} = transform.structured.match interface{{LinalgOp}} in {scope} : ({ANY}) -> {ANY}")
    w(f"transform.structured.vectorize {ops} : {ANY}")
    w(f"transform.apply_patterns to {func} {{")
    w("  transform.apply_patterns.tensor.fold_tensor_subset_ops_into_vector_transfers")
    w("  transform.apply_patterns.canonicalization")
    w(f"}} : {ANY}")


def _fuse(w: _Writer, schedule: Schedule, kernel: Kernel, p: Plan, last: str, tile, level, scope: str):
    """First tile level with the fill and consumers fused; returns the main op inside."""
    last_op = kernel.structure[-1]
    if len(kernel.structure) - 1 == p.main_index:
        sizes, order = list(tile.sizes), list(level.interchange)
    else:  # a consumer: its loops are the main op's output dims (its parallel loops)
        par = _output_loops(kernel.structure[p.main_index], p)
        if len(par) != len(last_op.sizes):
            raise ScheduleError("fuse: the last op's loops do not match the main op's parallel loops")
        sizes = [tile.sizes[d] for d in par]
        order = [par.index(d) for d in level.interchange if d in par]
    _, lhs, loops = _tiled_results(w, "fused", sizes)
    w(f"{lhs} = transform.structured.fuse {last} tile_sizes {sizes} interchange {order} : "
      f"({ANY}) -> ({_results(len(loops) + 1)})")
    main = w.fresh("main")
    w(f"{main} = transform.structured.match ops{{[\"{p.main_op}\"]}} in {scope} : ({ANY}) -> {ANY}")
    return main, loops


def _output_loops(op, p: Plan) -> list[int]:
    """The main op's loops in its output's dim order; a layout step (pack, im2col) makes a nest
    of its own, whose parallel loops keep the output's order."""
    if tuple(p.nest.extents) == tuple(op.sizes):
        return output_loops(op)
    return [d for d, it in enumerate(p.nest.iterators) if it == "parallel"]


def _vectorize(w: _Writer, schedule: Schedule, func: str, rank: int, folded: bool = False) -> None:
    """Vectorize the function's static ops and keep accumulators in registers (on tensors).
    `folded`: the main op was vectorized with its unit dims folded (a 4x16 accumulator),
    which its 1x1x4x16 initial fill then matches once those dims are cast away too."""
    vectorize, hoist = schedule.has("vectorize"), schedule.has("hoist")
    w.owner = _label(schedule, "vectorize") if vectorize else "cleanup"
    w(f"transform.apply_patterns to {func} {{")
    w("  transform.apply_patterns.canonicalization")
    w("  transform.apply_patterns.scf.for_loop_canonicalization")
    w(f"}} : {ANY}")
    if not vectorize:
        return
    vfunc = w.fresh("vfunc")
    w(f"{vfunc} = transform.structured.vectorize_children_and_apply_patterns {func} : ({ANY}) -> {ANY}")
    w(f"transform.apply_patterns to {vfunc} {{")
    w("  transform.apply_patterns.canonicalization")
    w("  transform.apply_patterns.tensor.fold_tensor_subset_ops_into_vector_transfers")
    if folded:
        w("  transform.apply_patterns.vector.cast_away_vector_leading_one_dim")
    w(f"}} : {ANY}")
    w(f"transform.apply_cse to {vfunc} : {ANY}")
    if schedule.has("pad"):
        w.owner = _label(schedule, "pad")
        pads = w.fresh("pads")
        w(f"{pads} = transform.structured.match ops{{[\"tensor.pad\"]}} attributes {{{PAD_MARK}}} in {vfunc} : "
          f"({ANY}) -> {ANY}")
        _pad_by_rows(w, pads, rank)
    if hoist:  # on tensors first: works through scf.forall and padded operands
        w.owner = _label(schedule, "hoist")
        tloops, loop = w.fresh("tloops"), w.fresh("loop")
        w(f"{tloops} = transform.structured.match ops{{[\"scf.for\"]}} in {vfunc} : ({ANY}) -> {ANY}")
        w(f"transform.apply_licm to {tloops} : {ANY}")
        w(f"transform.foreach {tloops} : {ANY} {{")
        w(f"^bb0({loop}: {ANY}):")
        w(f"  transform.loop.hoist_loop_invariant_subsets {loop} : {ANY}")
        w("}")
        # Hoisting leaves a write of the loop's result and a read of it right after (a split
        # reduction's partial sums, read by the merge): fold it away on tensors, or
        # bufferization copies the buffer on every iteration of the loops around.
        w(f"transform.apply_patterns to {vfunc} {{")
        w("  transform.apply_patterns.canonicalization")
        w(f"}} : {ANY}")
        w(f"transform.apply_cse to {vfunc} : {ANY}")


def _pad_by_rows(w: _Writer, pads: str, rank: int) -> None:
    """Materialize padded tensors (`pads`, tensor.pad ops of one rank) as a fill and a copy of
    the source, both row by row and vectorized. Left alone, a pad bufferizes to a strided
    memref.copy that the runtime does one element at a time (for a padded matmul the copies
    cost more than the matmul itself). Done after the function is vectorized, so the insert of
    each copy stays in place instead of becoming a vector read and write of the whole tensor."""
    inserts, copies, slices, fills = (w.fresh(x) for x in ("inserts", "copies", "slices", "fills"))
    w(f"{inserts} = transform.structured.rewrite_in_destination_passing_style {pads} : ({ANY}) -> {ANY}")
    w(f"{copies} = transform.structured.insert_slice_to_copy {inserts} : ({ANY}) -> {ANY}")
    w(f"{slices} = transform.get_producer_of_operand {copies}[1] : ({ANY}) -> {ANY}")
    w(f"{fills} = transform.get_producer_of_operand {slices}[0] : ({ANY}) -> {ANY}")
    for handle in (fills, copies):  # a row of a copy is contiguous on both sides: it becomes a memcpy
        _vectorize_by_rows(w, handle, rank)


def _vectorize_by_rows(w: _Writer, handle: str, rank: int) -> None:
    """Tile the ops of `handle` (of one rank) to rows and vectorize each row."""
    tiled, _ = _tile_for(w, handle, _rows(rank))
    w(f"transform.structured.vectorize {tiled} : {ANY}")


def _after_bufferize(w: _Writer, schedule: Schedule, bfunc: str, reassociate: bool = False) -> None:
    """On buffers: fold aliases, hoist redundant transfers, lower contractions and transfers.
    `reassociate`: the kernel has a generic reduction (a softmax or LayerNorm row sum), whose
    lane reductions may be summed in any order."""
    vectorize, hoist = schedule.has("vectorize"), schedule.has("hoist")
    strategy = schedule.get("contraction").strategy if schedule.has("contraction") else "outerproduct"
    w.owner = "bufferize"
    if not vectorize:
        w(f"transform.apply_patterns to {bfunc} {{")
        w("  transform.apply_patterns.canonicalization")
        w(f"}} : {ANY}")
        return
    w.owner = "lower vectors"
    w(f"transform.apply_patterns to {bfunc} {{")
    # Unit dims left by tiling (a packed 1x1x8x32 tile, a decomposed conv's 1x1x4x32 output)
    # make the contraction lowerings scalarise, and give an accumulator's read and write different
    # vector types (1x4x32 vs 1x1x4x32), so hoisting cannot pair them and the accumulators go
    # through memory on every reduction step (a 3x3 conv: 80 vs 117 GFLOP/s).
    w("  transform.apply_patterns.vector.cast_away_vector_leading_one_dim")
    w("  transform.apply_patterns.vector.reduction_to_contract")
    w("  transform.apply_patterns.vector.transfer_permutation_patterns")
    w("  transform.apply_patterns.memref.fold_memref_alias_ops")
    w("  transform.apply_patterns.canonicalization")
    w(f"}} : {ANY}")
    w(f"transform.apply_cse to {bfunc} : {ANY}")
    final = bfunc
    if hoist:
        w.owner = _label(schedule, "hoist")
        final = w.fresh("hoisted")
        w(f"{final} = transform.structured.hoist_redundant_vector_transfers {bfunc} : ({ANY}) -> {ANY}")
    w.owner = _label(schedule, "contraction") if schedule.has("contraction") else "lower vectors"
    w(f"transform.apply_patterns to {final} {{")
    w(f"  transform.apply_patterns.vector.lower_contraction lowering_strategy = \"{strategy}\"")
    w("  transform.apply_patterns.vector.transfer_permutation_patterns")
    w("  transform.apply_patterns.vector.lower_transfer max_transfer_rank = 1")
    w("  transform.apply_patterns.vector.lower_outerproduct")
    # Reductions vectorized along their reduced loop (softmax rows); LLVM has no n-D form.
    w("  transform.apply_patterns.vector.lower_multi_reduction lowering_strategy = \"innerreduction\"")
    w("  transform.apply_patterns.canonicalization")
    w(f"}} : {ANY}")
    # A multiply feeding an add (a split reduction's partial sums, an elementwise a*b+c) may
    # fuse into one FMA: LLVM only fuses an fmul/fadd pair that carries the contract flag.
    w.owner = "lower vectors"
    contract, arith = w.fresh("contract"), w.fresh("arith")
    w(f"{contract} = transform.param.constant #arith.fastmath<contract> -> !transform.any_param")
    w(f"{arith} = transform.structured.match ops{{[\"arith.mulf\", \"arith.addf\"]}} in {final} : ({ANY}) -> {ANY}")
    w(f"transform.annotate {arith} \"fastmath\" = {contract} : {ANY}, !transform.any_param")
    if reassociate:  # an ordered llvm.vector.reduce.fadd is 16 dependent adds; reassoc makes it a tree
        loose, reductions = w.fresh("reassoc"), w.fresh("reductions")
        w(f"{loose} = transform.param.constant #arith.fastmath<reassoc,contract> -> !transform.any_param")
        w(f"{reductions} = transform.structured.match ops{{[\"vector.reduction\"]}} in {final} : ({ANY}) -> {ANY}")
        w(f"transform.annotate {reductions} \"fastmath\" = {loose} : {ANY}, !transform.any_param")
