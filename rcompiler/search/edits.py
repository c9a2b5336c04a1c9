"""Local edits of a schedule: the moves shared by the random proposer, the
evolutionary search's mutation and the heuristic's refinement.

Every function returns Edit records; callers keep the legal ones.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace

from rcompiler.kernels.base import Kernel
from rcompiler.transforms import (CONTRACTION_STRATEGIES, Contraction, Decompose, Fuse, Hoist, Im2col, Lanes, Pack,
                                  PackChannels, Pad, Parallel, Peel, Schedule, ScheduleError, Tile, Unroll, Vectorize,
                                  applicable, check, loop_nest, plan)
from rcompiler.transforms.space import PACKED_NCHW_TILE_KEEPS, laid_out


@dataclass(frozen=True)
class Edit:
    """One local move: what it does (`kind`: add, drop, resize, swap or set) to which step, with
    which parameters, and the schedule it makes. `text` says it for people (rationales, prompts);
    code reads the fields."""

    kind: str
    step: str  # the step it adds, drops or changes ("tile" for a tile level's sizes and order)
    schedule: Schedule
    params: tuple[tuple[str, object], ...] = ()
    text: str = ""

    def param(self, name: str, default=None):
        return dict(self.params).get(name, default)

    @property
    def group(self) -> tuple:
        """The edits that share one learned gain: a resize by direction, level and loop, whatever
        its sizes (after a layout step the loops have no names: one gain for the level); every swap
        alike; every added unroll alike; any other edit by all it sets."""
        if self.kind == "resize":
            return (self.kind, self.step, self.param("direction"), self.param("level"), self.param("loop"))
        if self.kind == "swap" or (self.kind, self.step) == ("add", "unroll"):
            return (self.kind, self.step)
        return (self.kind, self.step, *self.params)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def level_extents(kernel: Kernel, schedule: Schedule) -> list[list[int]]:
    """For each tile level, the extent of every loop that level tiles (its parent tile)."""
    try:
        return [list(level.extents) for level in plan(schedule, kernel).levels]
    except ScheduleError:  # an illegal schedule has no levels to edit
        return []


def replace_tile(schedule: Schedule, level: int, tile: Tile) -> Schedule:
    tiles = list(schedule.tiles)
    tiles[level] = tile
    others = [s for s in schedule.steps if not isinstance(s, Tile)]
    return Schedule.of(others + tiles)


def resize_edits(kernel: Kernel, schedule: Schedule) -> list[Edit]:
    """Double or halve one tile size (snapped to a divisor of its loop)."""
    out = []
    layout = any(schedule.has(x) for x in ("pack", "pack_channels", "im2col"))
    names = loop_nest(kernel).names if not layout else None
    for level, (tile, extents) in enumerate(zip(schedule.tiles, level_extents(kernel, schedule))):
        for d, (size, extent) in enumerate(zip(tile.sizes, extents)):
            if not size:
                continue
            named = bool(names) and d < len(names)
            label = names[d] if named else f"loop {d}"
            for factor, word in ((2, "double"), (0.5, "halve")):
                target = size * factor
                options = [x for x in divisors(extent) if (x > size if factor > 1 else x < size)]
                if not options:
                    continue
                new = min(options, key=lambda x: abs(x - target))
                sizes = list(tile.sizes)
                sizes[d] = new
                out.append(Edit("resize", "tile", replace_tile(schedule, level, replace(tile, sizes=tuple(sizes))),
                                (("direction", word), ("level", level + 1), ("loop", label if named else None),
                                 ("from", size), ("to", new)),
                                f"{word} level-{level + 1} {label} tile {size}->{new}"))
    return out


def interchange_edits(schedule: Schedule) -> list[Edit]:
    out = []
    for level, tile in enumerate(schedule.tiles):
        order = list(tile.interchange or range(len(tile.sizes)))
        tiled = [i for i, d in enumerate(order) if tile.sizes[d]]
        for a in range(len(tiled)):
            for b in range(a + 1, len(tiled)):
                new = list(order)
                new[tiled[a]], new[tiled[b]] = new[tiled[b]], new[tiled[a]]
                out.append(Edit("swap", "tile", replace_tile(schedule, level, replace(tile, interchange=tuple(new))),
                                (("level", level + 1), ("loops", (new[tiled[b]], new[tiled[a]]))),
                                f"swap loops {new[tiled[b]]},{new[tiled[a]]} at level {level + 1}"))
    return out


def flag_edits(schedule: Schedule, threads: int) -> list[Edit]:
    out = []
    for step in (Vectorize(), Hoist(), Peel(), Decompose()):
        if schedule.has(step.name):
            out.append(Edit("drop", step.name, schedule.without(step.name), text=f"drop {step.name}"))
        else:
            out.append(Edit("add", step.name, schedule.then(step), text=f"add {step.name}"))
    current = schedule.get("contraction")
    for strategy in CONTRACTION_STRATEGIES:
        if current is None or current.strategy != strategy:
            out.append(Edit("set", "contraction", schedule.then(Contraction(strategy)), (("strategy", strategy),),
                            f"contraction {strategy}"))
    if threads > 1:
        if schedule.has("parallel"):
            out.append(Edit("drop", "parallel", schedule.without("parallel"), text="run on one thread"))
        else:
            for loop in range(3):
                out.append(Edit("add", "parallel", schedule.then(Parallel(threads, loop)),
                                (("loop", loop), ("threads", threads)), f"parallel over loop {loop} on {threads} threads"))
    return out


def unroll_edits(kernel: Kernel, schedule: Schedule) -> list[Edit]:
    if not schedule.tiles:
        return []
    try:
        inner = plan(schedule, kernel).levels[-1]
    except ScheduleError:
        return []
    out = [Edit("drop", "unroll", schedule.without("unroll"), text="drop unroll")] if schedule.has("unroll") else []
    for i, trip in enumerate(inner.trips):
        for factor in (2, 4, 8):
            if trip % factor == 0 and trip > factor:
                out.append(Edit("add", "unroll", schedule.then(Unroll(i, factor)), (("loop", i), ("factor", factor)),
                                f"unroll loop {i} by {factor}"))
    return out


def level_edits(kernel: Kernel, schedule: Schedule, rng: random.Random) -> list[Edit]:
    """Add an outer cache level (random divisors) or drop one level."""
    out = []
    tiles = schedule.tiles
    for i in range(len(tiles)):
        if len(tiles) > 1:
            rest = [t for j, t in enumerate(tiles) if j != i]
            out.append(Edit("drop", "tile", Schedule.of([s for s in schedule.steps if not isinstance(s, Tile)] + rest),
                            (("level", i + 1),), f"drop tile level {i + 1}"))
    extents = level_extents(kernel, schedule)
    if tiles and extents:
        first = extents[0]
        inner = tiles[0].sizes
        sizes = tuple(rng.choice([d for d in divisors(e) if s == 0 or d % s == 0] or [e]) if s else 0
                      for e, s in zip(first, inner))
        out.append(Edit("add", "tile", Schedule.of([Tile(sizes), *schedule.steps]), text="add an outer cache level"))
    return out


def block_edits(kernel: Kernel, schedule: Schedule) -> list[Edit]:
    """Double or halve pack_channels' output or input channel block (snapped to a divisor)."""
    step = schedule.get("pack_channels")
    if step is None:
        return []
    _, f, _, _, c, _, _ = loop_nest(kernel).extents
    rest = [x for x in schedule.steps if not isinstance(x, PackChannels)]
    out = []
    for i, (label, extent) in enumerate((("output", f), ("input", c))):
        size = step.sizes[i]
        for factor, word in ((2, "double"), (0.5, "halve")):
            options = [d for d in divisors(extent) if (d > size if factor > 1 else d < size)]
            if options:
                new = min(options, key=lambda x: abs(x - size * factor))
                sizes = tuple(new if j == i else x for j, x in enumerate(step.sizes))
                out.append(Edit("resize", "pack_channels", Schedule.of([PackChannels(sizes), *rest]),
                                (("direction", word), ("level", None), ("loop", label), ("from", size), ("to", new)),
                                f"{word} {label} channel block {size}->{new}"))
    return out


def has_epilogue(kernel: Kernel) -> bool:
    """Elementwise ops after the main op (bias, activation, residual) whose loops are its parallel
    loops, so they can run inside its tiles (`fuse`)."""
    ops = kernel.structure
    main = kernel.main_index
    return main < len(ops) - 1 and len(ops[-1].sizes) == ops[main].iterators.count("parallel")


def fused(kernel: Kernel, schedule: Schedule) -> Schedule | None:
    """`schedule` with its epilogue fused into the first tile level: each tile of the output is
    finished (bias, activation) while it is still in cache, instead of in another pass over the
    whole output. Fuse tiles parallel loops only, so the first level's reduction sizes move to a
    level of their own just below it. None when there is nothing to fuse or the schedule's other
    steps forbid it (a conv's decompose then fails to apply: measured on every such variant)."""
    if (not has_epilogue(kernel) or not schedule.tiles
            or any(schedule.has(x) for x in ("fuse", "lanes", "parallel", "pad", "pack", "pack_channels", "im2col",
                                             "decompose"))):
        return None
    iterators = loop_nest(kernel).iterators
    first, *rest = schedule.tiles
    outer = tuple(0 if it == "reduction" else x for x, it in zip(first.sizes, iterators))
    inner = tuple(x if it == "reduction" else 0 for x, it in zip(first.sizes, iterators))
    if not any(outer):
        return None
    levels = [Tile(outer, first.interchange), *([Tile(inner)] if any(inner) else []), *rest]
    return Schedule.of([Fuse(), *[x for x in schedule.steps if not isinstance(x, Tile)], *levels])


def fuse_edits(kernel: Kernel, schedule: Schedule) -> list[Edit]:
    if schedule.has("fuse"):
        return [Edit("drop", "fuse", schedule.without("fuse"), text="drop fuse")] if has_epilogue(kernel) else []
    s = fused(kernel, schedule)
    return [Edit("add", "fuse", s, text="fuse the epilogue into the first tile level")] if s is not None else []


def all_edits(kernel: Kernel, schedule: Schedule, threads: int, rng: random.Random) -> list[Edit]:
    return (resize_edits(kernel, schedule) + block_edits(kernel, schedule) + interchange_edits(schedule)
            + flag_edits(schedule, threads) + unroll_edits(kernel, schedule) + level_edits(kernel, schedule, rng)
            + fuse_edits(kernel, schedule))


def legal(kernel: Kernel, edits: list[Edit], seen: set[str]) -> list[Edit]:
    out, keys = [], set()
    for e in edits:
        if e.schedule.key in seen or e.schedule.key in keys or check(e.schedule, kernel) is not None:
            continue
        keys.add(e.schedule.key)
        out.append(e)
    return out


def stream(name: str, seed: int) -> random.Random:
    """The random stream of one strategy and seed: strategies never share draws."""
    return random.Random(f"{name}/{seed}")


def random_schedule(kernel: Kernel, rng: random.Random, threads: int = 1) -> Schedule:
    """A random legal schedule from the whole vocabulary: an optional layout step (pad, pack of
    all operands or of B alone, pack_channels, im2col), 1-3 tile levels (divisors, or any size when the
    innermost level peels), lanes, fuse, unroll, vectorize, hoist, a contraction lowering,
    decompose and parallel, each where the kernel allows it."""
    nest = loop_nest(kernel)
    for _ in range(200):
        steps = _random_layout(kernel, nest, rng, threads)
        try:
            laid = laid_out(Schedule.of(steps), kernel)  # the loops after a layout step
        except ScheduleError:
            continue
        extents = list(laid.extents)
        channels = any(isinstance(x, PackChannels) for x in steps)
        peel = not channels and rng.random() < 0.15
        tiles = []
        for level in range(rng.choice((1, 2, 2, 3))):
            sizes = [_random_size(e, rng, partial=peel) for e in extents]
            if not any(sizes):
                continue
            interchange = tuple(rng.sample(range(len(sizes)), len(sizes))) if rng.random() < 0.3 else None
            tiles.append(Tile(tuple(sizes), interchange))
            extents = [s if s else e for s, e in zip(sizes, extents)]
        if channels:  # its innermost tile has every loop but ow, fi and ci at 1: make the last level so
            last = tiles.pop() if tiles else Tile((0,) * len(laid.names))
            tiles.append(Tile(tuple(x if n in PACKED_NCHW_TILE_KEEPS else 1 for x, n in zip(last.sizes, laid.names)),
                              last.interchange))
        lanes = bool(tiles) and applicable("lanes", kernel) and not peel and rng.random() < 0.15
        if lanes:  # the reduction left whole in the innermost tile, then split into vector lanes
            red = laid.iterators.index("reduction")
            last = tiles[-1]
            tiles[-1] = Tile(tuple(0 if d == red else x for d, x in enumerate(last.sizes)), last.interchange)
            steps += tiles + [Lanes(rng.choice((4, 8, 16, 32)))]
            peel = False
        else:
            steps += tiles
        if applicable("fuse", kernel) and not lanes and rng.random() < 0.2:
            steps.append(Fuse())
        if peel:
            steps.append(Peel())
        if tiles and not lanes and rng.random() < 0.2:
            steps.append(Unroll(rng.randrange(max(1, sum(1 for x in tiles[-1].sizes if x))), rng.choice((2, 4))))
        if rng.random() < 0.8:
            steps.append(Vectorize())
            if rng.random() < 0.6:
                steps.append(Hoist())
            if rng.random() < 0.3:
                steps.append(Contraction(rng.choice(CONTRACTION_STRATEGIES)))
        if applicable("decompose", kernel) and rng.random() < 0.3:
            steps.append(Decompose())
        if threads > 1 and not lanes and rng.random() < 0.4:
            steps.append(Parallel(threads, rng.randrange(len(extents))))
        s = Schedule.of(steps)
        if s.steps and check(s, kernel) is None:
            return s
    return Schedule.of([Tile(tuple(1 if i == len(nest.extents) - 1 else 0 for i in range(len(nest.extents))))])


def _random_size(extent: int, rng: random.Random, partial: bool) -> int:
    ds = divisors(extent)
    if partial and extent > 2 and rng.random() < 0.4:
        return rng.randrange(2, extent)  # any size: the innermost level peels its partial tile
    return rng.choice([0] + ds[:-1] + ds[:-1]) if len(ds) > 1 else 0


def _random_layout(kernel: Kernel, nest, rng: random.Random, threads: int) -> list:
    layouts = [n for n in ("pad", "pack", "pack_channels", "im2col") if applicable(n, kernel, threads)]
    if not layouts or rng.random() >= 0.3:
        return []
    kind = rng.choice(layouts)
    if kind == "im2col":
        return [Im2col()]
    if kind == "pack_channels":  # blocks of output (f) and input (c) channels
        f, c = nest.extents[1], nest.extents[4]
        return [PackChannels(tuple(rng.choice([d for d in divisors(e) if d <= 64]) for e in (f, c)))]
    if kind == "pad":
        return [Pad(tuple(rng.choice((1, 8, 16, 32, 48, 64)) for _ in nest.extents))]
    m, n, k = nest.extents[-3:]
    if rng.random() < 0.5:  # only B (and C), in n-wide panels, as BLAS packs it
        return [Pack((0, rng.choice([d for d in divisors(n) if d <= 64]), 0))]
    return [Pack(tuple(rng.choice([d for d in divisors(e) if d <= 64]) for e in (m, n, k)))]


def fresh_random_schedules(kernel: Kernel, rng: random.Random, n: int, seen: set[str], threads: int = 1
                           ) -> list[Schedule]:
    """Up to n random legal schedules not in `seen` (which this adds them to)."""
    out: list[Schedule] = []
    for _ in range(50 * n):
        if len(out) >= n:
            break
        s = random_schedule(kernel, rng, threads)
        if s.key not in seen:
            seen.add(s.key)
            out.append(s)
    return out
