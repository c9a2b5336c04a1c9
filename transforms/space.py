"""The search space of one kernel: its loop nest and what each step may do to it.

`plan(schedule, kernel)` walks the schedule over the loop nest as the script
would, and either raises ScheduleError with the reason a step is illegal, or
returns what the renderer needs (loops per tile level, partial tiles to peel).
Nothing here touches MLIR: legality is decided before anything is compiled.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rcompiler.kernels.base import Kernel
from rcompiler.kernels.structure import OpInfo

from .schedule import Schedule
from .steps import CONTRACTION_STRATEGIES, ScheduleError, Tile

LOOP_NAMES = {
    "linalg.matmul": ("m", "n", "k"),
    "linalg.batch_matmul": ("b", "m", "n", "k"),
    "linalg.conv_2d_nhwc_hwcf": ("n", "oh", "ow", "f", "kh", "kw", "c"),
    "linalg.conv_2d_nchw_fchw": ("n", "f", "oh", "ow", "c", "kh", "kw"),
}
NCHW = "linalg.conv_2d_nchw_fchw"
CONVS = ("linalg.conv_2d_nhwc_hwcf", NCHW)
# pack_channels: loops of the packed NCHW conv, and those its innermost tile must leave whole
PACKED_NCHW = ("n", "fo", "oh", "ow", "co", "kh", "kw", "fi", "ci")
PACKED_NCHW_TILE_KEEPS = ("ow", "fi", "ci")


def packed_nchw_tile(ow: int) -> Tile:
    """A pack_channels schedule's innermost tile: ow pixels by whole channel blocks, every other loop 1."""
    return Tile(tuple(ow if n == "ow" else 0 if n in PACKED_NCHW_TILE_KEEPS else 1 for n in PACKED_NCHW))


CONTRACTIONS = ("linalg.matmul", "linalg.batch_matmul")
MAX_VECTOR_ELEMENTS = 1 << 14  # a register tile, not a whole matrix: bigger vectors blow up compile time
MAX_THREADS = 64


@dataclass
class LoopNest:
    names: list[str]
    extents: list[int]
    iterators: list[str]

    def describe(self) -> str:
        return ", ".join(f"{n}={e}{'(reduction)' if it == 'reduction' else ''}"
                         for n, e, it in zip(self.names, self.extents, self.iterators))


@dataclass
class Level:
    sizes: tuple[int, ...]
    interchange: tuple[int, ...]
    loops: list[int]  # dims that got a loop, outermost first
    trips: list[int]
    remainders: list[int]  # per loop: extent % size (0 = divides)
    extents: tuple[int, ...]  # per dim: what this level tiles (the enclosing tile, or the whole loop)

    @property
    def inner(self) -> tuple[int, ...]:
        """Per dim: the extent inside this level's tiles."""
        return tuple(s or e for s, e in zip(self.sizes, self.extents))


@dataclass
class Plan:
    main_op: str
    main_index: int
    nest: LoopNest  # the main op's loops after layout steps (pack, pad, im2col)
    levels: list[Level] = field(default_factory=list)
    parallel_sizes: tuple[int, ...] | None = None
    # Vectorize the main op as a linalg.generic with its unit loops folded away: a windowed op
    # (2-D conv, depthwise conv, pooling) whose innermost tile leaves the window loops at 1.
    # Upstream's vectorizer takes such named ops only in 1-D form and leaves the rest scalar.
    generalize: bool = False


def loop_nest(kernel: Kernel) -> LoopNest:
    op = kernel.structure[kernel.main_index]
    names = LOOP_NAMES.get(op.name, tuple(f"d{i}" for i in range(len(op.sizes))))
    if len(names) != len(op.sizes):
        names = tuple(f"d{i}" for i in range(len(op.sizes)))
    return LoopNest(list(names), list(op.sizes), list(op.iterators))


def laid_out(schedule: Schedule, kernel: Kernel) -> LoopNest:
    """The main op's loops after the schedule's layout step (pad, pack, pack_channels, im2col)."""
    nest = loop_nest(kernel)
    _layout(schedule, kernel.structure[kernel.main_index], nest)
    return nest


def plan(schedule: Schedule, kernel: Kernel) -> Plan:
    """Check `schedule` against `kernel`; the first illegal step raises ScheduleError."""
    op = kernel.structure[kernel.main_index]
    nest = loop_nest(kernel)
    p = Plan(op.name, kernel.main_index, nest)
    vectorize = schedule.has("vectorize")
    tiles = schedule.tiles
    _layout(schedule, op, nest)
    par = schedule.get("parallel")
    if par is not None:
        if schedule.has("fuse"):
            raise ScheduleError("parallel: cannot be combined with fuse; fuse tiles the first level itself")
        p.parallel_sizes = _parallel(par, nest)
    if schedule.has("fuse"):
        if not tiles:
            raise ScheduleError("fuse: needs a tile step; it fuses into the first tile level's loops")
        if len(kernel.structure) < 2:
            raise ScheduleError("fuse: the kernel has a single op; there is nothing to fuse")
        red = [nest.names[i] for i, s in enumerate(tiles[0].sizes) if s and nest.iterators[i] == "reduction"]
        if red:
            raise ScheduleError(f"fuse: the first tile level may only tile parallel loops; it tiles {', '.join(red)}")
    extents = list(nest.extents)
    peel = schedule.has("peel")
    for depth, tile in enumerate(tiles):
        innermost = depth == len(tiles) - 1
        p.levels.append(_tile(tile, depth, nest, extents, allow_partial=(innermost and peel) or not vectorize))
    _lanes(schedule, p, nest, extents)
    _loop_shaping(schedule, p, nest)
    p.generalize = _generalizes(schedule, op, nest, extents) if vectorize else False
    if vectorize:
        elements = 1
        for e in extents:
            elements *= e
        if elements > MAX_VECTOR_ELEMENTS:
            raise ScheduleError(f"vectorize: the innermost tile spans {elements} elements "
                                f"(max {MAX_VECTOR_ELEMENTS}); tile down to a register tile first")
    for name in ("hoist", "contraction"):
        if schedule.has(name) and not vectorize:
            raise ScheduleError(f"{name}: needs vectorize")
    c = schedule.get("contraction")
    if c is not None and c.strategy not in CONTRACTION_STRATEGIES:
        raise ScheduleError(f"contraction: strategy {c.strategy!r} is not one of {', '.join(CONTRACTION_STRATEGIES)}")
    return p


def applicable(step_name: str, kernel: Kernel, threads: int = 1) -> bool:
    """Whether a step can apply to this kernel with some parameters (what a proposer may use)."""
    info = kernel.structure[kernel.main_index]
    op = info.name
    if step_name in ("pad", "pack"):
        return op in CONTRACTIONS
    if step_name == "pack_channels":
        return op == NCHW and _unit_width_stride(info)
    if step_name == "im2col":  # upstream's rewrite refuses dilated windows
        return op in CONVS and not _dilated(info)
    if step_name == "decompose":
        return op == "linalg.conv_2d_nhwc_hwcf"
    if step_name == "fuse":
        return len(kernel.structure) > 1
    if step_name == "parallel":
        return threads > 1
    if step_name == "lanes":
        return info.iterators.count("reduction") == 1
    return True


def _generalizes(schedule: Schedule, op: OpInfo, nest: LoopNest, inner: list[int]) -> bool:
    """Plan.generalize: a windowed op in its own loops whose innermost tile leaves the window at 1.
    Its folded tile's loops must run in the output's dim order: MLIR 22 writes a folded ow x c
    tile into an NCHW output's 1 x c x 1 x ow slice along the wrong dims (wrong results)."""
    windows = window_loops(op)
    if (not windows or "1d" in op.name or nest.extents != list(op.sizes) or any(inner[d] != 1 for d in windows)
            or any(schedule.has(n) for n in ("im2col", "pack_channels", "decompose"))):
        return False
    if any(coef != 1 for operand in op.inputs for dim in operand.index if dim for _, coef in dim):
        return False  # strided or dilated: the folded reads are not plain vector reads either
    kept = [d for d in output_loops(op) if inner[d] > 1]
    return kept == sorted(kept)


def output_loops(op: OpInfo) -> list[int]:
    """The op's loops in the order of its output's dims, which a fused consumer's loops follow:
    (n, c, oh, ow) for a depthwise NCHW conv whose loops run (n, oh, ow, c)."""
    index = op.operands[-1].index if op.operands else None
    if index and all(terms and len(terms) == 1 and terms[0][1] == 1 for terms in index):
        return [terms[0][0] for terms in index]
    return [d for d, it in enumerate(op.iterators) if it == "parallel"]


def window_loops(op: OpInfo) -> list[int]:
    """The reduction loops that slide a window over an input (kh, kw of a conv or a pooling)."""
    return sorted({loop for operand in op.inputs for dim in operand.index if dim and len(dim) > 1
                   for loop, _ in dim if op.iterators[loop] == "reduction"})


def _dilated(op: OpInfo) -> bool:
    """Whether a convolution's window loops step through the image by more than one pixel."""
    image = op.inputs[0]
    return any(coef != 1 for dim in image.index if dim and len(dim) > 1
               for loop, coef in dim if op.iterators[loop] == "reduction")


def _unit_width_stride(op: OpInfo) -> bool:
    """Whether an NCHW convolution reads the image row one pixel per output pixel (stride 1 along
    W): once the window loops are tiled to 1, the image is then read like a matrix."""
    width = op.inputs[0].index[3]
    return bool(width) and dict(width).get(3) == 1


def check(schedule: Schedule, kernel: Kernel) -> str | None:
    """The reason `schedule` is illegal for `kernel`, or None."""
    try:
        plan(schedule, kernel)
    except ScheduleError as err:
        return str(err)
    return None


def _layout(schedule: Schedule, op: OpInfo, nest: LoopNest) -> None:
    op_name = op.name
    pad, pack, im2col = schedule.get("pad"), schedule.get("pack"), schedule.get("im2col")
    channels = schedule.get("pack_channels")
    if sum(x is not None for x in (pad, pack, im2col, channels)) > 1:
        raise ScheduleError("pad, pack, pack_channels and im2col each rewrite the op's layout: use at most one")
    if channels is not None:
        _pack_channels(schedule, channels, op, nest)
    if pad is not None:
        if op_name not in CONTRACTIONS:
            raise ScheduleError(f"pad: supported on {', '.join(CONTRACTIONS)}, not {op_name}")
        if len(pad.multiples) != len(nest.extents) or min(pad.multiples) < 1:
            raise ScheduleError(f"pad: give one multiple >= 1 per loop ({nest.describe()})")
        if all(e % m == 0 for e, m in zip(nest.extents, pad.multiples)):
            raise ScheduleError("pad: every dim is already a multiple; padding would change nothing")
        nest.extents = [-(-e // m) * m for e, m in zip(nest.extents, pad.multiples)]
    if pack is not None:
        if op_name not in CONTRACTIONS:
            raise ScheduleError(f"pack: supported on {', '.join(CONTRACTIONS)}, not {op_name}")
        pm, pn, pk = pack.sizes if len(pack.sizes) == 3 else (-1, -1, -1)
        b_only = pm == pk == 0 and pn >= 1
        if not (b_only or min(pm, pn, pk) >= 1):
            raise ScheduleError("pack: sizes are three positive inner tile sizes (m, n, k), or [0, n, 0] "
                                "to pack only B (and C) into n-wide panels")
        *batch, m, n, k = nest.extents
        for dim, size, ext in zip("mnk", pack.sizes, (m, n, k)):
            if size and ext % size:
                raise ScheduleError(f"pack: inner size {size} does not divide {dim}={ext}")
        bn = ["b"] if batch else []
        if b_only:  # loops m, n panels, k, then the panel's n
            nest.names = bn + ["m", "no", "k", "ni"]
            nest.extents = batch + [m, n // pn, k, pn]
            nest.iterators = ["parallel"] * len(batch) + ["parallel", "parallel", "reduction", "parallel"]
        else:
            nest.names = bn + ["mo", "no", "ko", "mi", "ni", "ki"]
            nest.extents = batch + [m // pm, n // pn, k // pk, pm, pn, pk]
            nest.iterators = (["parallel"] * len(batch)
                              + ["parallel", "parallel", "reduction", "parallel", "parallel", "reduction"])
    if im2col is not None:
        if op_name not in CONVS:
            raise ScheduleError(f"im2col: applies to {', '.join(CONVS)}, not {op_name}")
        if schedule.has("decompose"):
            raise ScheduleError("im2col and decompose are alternatives: use one")
        if _dilated(op):
            raise ScheduleError("im2col: upstream's rewrite does not take dilated convolutions; use decompose")
        if op_name == "linalg.conv_2d_nhwc_hwcf":
            n, oh, ow, f, kh, kw, c = nest.extents
            nest.names, nest.extents = ["n", "m", "f", "k"], [n, oh * ow, f, kh * kw * c]
        else:  # NCHW: the filter times the patch matrix, output rows are channels (f), columns pixels (m)
            n, f, oh, ow, c, kh, kw = nest.extents
            nest.names, nest.extents = ["n", "f", "m", "k"], [n, f, oh * ow, c * kh * kw]
        nest.iterators = ["parallel", "parallel", "parallel", "reduction"]


def _pack_channels(schedule: Schedule, step, op: OpInfo, nest: LoopNest) -> None:
    if op.name != NCHW:
        raise ScheduleError(f"pack_channels: applies to {NCHW}, not {op.name}")
    if not _unit_width_stride(op):
        raise ScheduleError("pack_channels: needs stride 1 along the image width (the packed tile is then a matmul)")
    n, f, oh, ow, c, kh, kw = nest.extents
    if len(step.sizes) != 2 or min(step.sizes) < 1:
        raise ScheduleError("pack_channels: sizes are two positive block sizes [f, c]")
    fb, cb = step.sizes
    for dim, size, ext in (("f", fb, f), ("c", cb, c)):
        if ext % size:
            raise ScheduleError(f"pack_channels: block {size} does not divide {dim}={ext}")
    nest.names = list(PACKED_NCHW)
    nest.extents = [n, f // fb, oh, ow, c // cb, kh, kw, fb, cb]
    nest.iterators = ["parallel"] * 4 + ["reduction"] * 3 + ["parallel", "reduction"]


def _parallel(par, nest: LoopNest) -> tuple[int, ...]:
    if not 2 <= par.threads <= MAX_THREADS:
        raise ScheduleError(f"parallel: threads must be 2..{MAX_THREADS}, got {par.threads}")
    if not 0 <= par.loop < len(nest.extents):
        raise ScheduleError(f"parallel: loop {par.loop} does not exist ({nest.describe()})")
    if nest.iterators[par.loop] != "parallel":
        raise ScheduleError(f"parallel: loop {nest.names[par.loop]} is a reduction; split a parallel loop")
    extent = nest.extents[par.loop]
    if extent % par.threads:
        raise ScheduleError(f"parallel: {par.threads} threads do not divide {nest.names[par.loop]}={extent}")
    sizes = [0] * len(nest.extents)
    sizes[par.loop] = extent // par.threads
    nest.extents[par.loop] = extent // par.threads
    return tuple(sizes)


def _tile(tile, depth: int, nest: LoopNest, extents: list[int], allow_partial: bool) -> Level:
    n = len(extents)
    where = f"tile level {depth + 1}"
    if len(tile.sizes) != n:
        raise ScheduleError(f"{where}: needs {n} sizes, one per loop ({nest.describe()}), got {len(tile.sizes)}")
    interchange = tile.interchange if tile.interchange is not None else tuple(range(n))
    if sorted(interchange) != list(range(n)):
        raise ScheduleError(f"{where}: interchange must be a permutation of 0..{n - 1}, got {list(interchange)}")
    if not any(tile.sizes):
        raise ScheduleError(f"{where}: all sizes are 0, nothing is tiled")
    loops, trips, rems = [], [], []
    for d, s in enumerate(tile.sizes):
        if s < 0:
            raise ScheduleError(f"{where}: negative size {s} for {nest.names[d]}")
        if s > extents[d]:
            raise ScheduleError(f"{where}: tile {s} is larger than {nest.names[d]}={extents[d]}")
        if s and extents[d] % s and not allow_partial:
            raise ScheduleError(f"{where}: tile {s} does not divide {nest.names[d]}={extents[d]}; partial tiles "
                                "do not vectorize: pick a divisor, or add peel (innermost level) or pad")
    for d in interchange:
        s = tile.sizes[d]
        if s:
            loops.append(d)
            trips.append(-(-extents[d] // s))
            rems.append(extents[d] % s)
    level = Level(tuple(tile.sizes), tuple(interchange), loops, trips, rems, tuple(extents))
    extents[:] = level.inner
    return level


def _lanes(schedule: Schedule, p: Plan, nest: LoopNest, extents: list[int]) -> None:
    """`lanes` splits the one reduction loop left whole in the innermost tile; the vector
    then spans `size` of it (the loop over the rest carries the partial sums)."""
    lanes = schedule.get("lanes")
    if lanes is None:
        return
    if not p.levels:
        raise ScheduleError("lanes: needs a tile step first (a register tile over the parallel loops)")
    if schedule.has("fuse") or schedule.has("parallel") or schedule.has("peel") or schedule.has("unroll"):
        raise ScheduleError("lanes: cannot be combined with fuse, parallel, peel or unroll")
    inner = p.levels[-1]
    red = [d for d, it in enumerate(nest.iterators) if it == "reduction"]
    if len(red) != 1:
        raise ScheduleError(f"lanes: needs exactly one reduction loop, the kernel has {len(red)}")
    d = red[0]
    if inner.sizes[d]:
        raise ScheduleError(f"lanes: leave {nest.names[d]} untiled (0) in the innermost tile; lanes splits it")
    if lanes.size < 2 or extents[d] % lanes.size:
        raise ScheduleError(f"lanes: size {lanes.size} must be >= 2 and divide {nest.names[d]}={extents[d]}")
    extents[d] = lanes.size


def _loop_shaping(schedule: Schedule, p: Plan, nest: LoopNest) -> None:
    unroll, peel, decompose = schedule.get("unroll"), schedule.get("peel"), schedule.get("decompose")
    inner = p.levels[-1] if p.levels else None
    for name, step in (("unroll", unroll), ("peel", peel), ("decompose", decompose)):
        if step is not None and inner is None:
            raise ScheduleError(f"{name}: needs a tile step first")
    if unroll is not None:
        if not 0 <= unroll.loop < len(inner.loops):
            raise ScheduleError(f"unroll: the innermost tile level has {len(inner.loops)} loop(s) "
                                f"({', '.join(nest.names[d] for d in inner.loops)}); loop {unroll.loop} does not exist")
        trip, rem = inner.trips[unroll.loop], inner.remainders[unroll.loop]
        if unroll.factor < 2 or rem or trip % unroll.factor:
            raise ScheduleError(f"unroll: factor {unroll.factor} must be >= 2 and divide the trip count {trip} "
                                f"of loop {nest.names[inner.loops[unroll.loop]]}" + (" (which has a partial tile)" if rem else ""))
    if schedule.has("pack_channels"):
        for name in ("fuse", "decompose", "peel", "unroll"):
            if schedule.has(name):
                raise ScheduleError(f"pack_channels: cannot be combined with {name}")
        if not schedule.has("vectorize"):
            raise ScheduleError("pack_channels: needs vectorize (the packed layout only pays off in vector registers)")
        if inner is None:
            raise ScheduleError("pack_channels: needs a tile step (the register tile)")
        wide = [f"{name}={e}" for name, e in zip(nest.names, inner.inner)
                if name not in PACKED_NCHW_TILE_KEEPS and e != 1]
        if wide:
            raise ScheduleError("pack_channels: the innermost tile must tile every loop but ow, fi and ci to 1, "
                                f"it leaves {', '.join(wide)}")
    if peel is not None and not any(inner.remainders):
        raise ScheduleError("peel: every innermost tile divides its loop; there is nothing to peel")
    if decompose is not None:
        if p.main_op != "linalg.conv_2d_nhwc_hwcf":
            raise ScheduleError(f"decompose: applies to linalg.conv_2d_nhwc_hwcf, not {p.main_op}")
        ext = dict(zip(nest.names, inner.inner))
        # Only the H-removing form: MLIR 22 also decomposes ow=1, kw=1 tiles into a
        # 1-D convolution along H, but vectorizing that one computes wrong results
        # (caught by verification in the benchmark), so the vocabulary leaves it out.
        if not (ext["oh"] == 1 and ext["kh"] == 1):
            raise ScheduleError("decompose: the innermost tile must have oh=1 and kh=1, "
                                f"it has oh={ext['oh']}, kh={ext['kh']}")
