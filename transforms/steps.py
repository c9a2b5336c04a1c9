"""Schedule steps: frozen, hashable transformations with the parameters each needs.

A step only records a decision; `space.py` checks it against a kernel and
`render.py` writes it as transform IR. Steps apply in a fixed phase order
(layout, parallel, tiling, loop shaping, vectorize, after bufferization), and
tile levels in the order given, outermost first.
"""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from typing import ClassVar

CONTRACTION_STRATEGIES = ("outerproduct", "dot", "parallelarith", "matmulintrinsics")


class ScheduleError(ValueError):
    """A step or schedule that cannot be built, with a reason for a person or an LLM."""


@dataclass(frozen=True)
class Step:
    name: ClassVar[str]
    phase: ClassVar[int]
    about: ClassVar[str]

    def to_json(self) -> dict:
        out = {"step": self.name}
        for k, v in asdict(self).items():
            out[k] = list(v) if isinstance(v, tuple) else v
        return out

    def __str__(self) -> str:
        args = ", ".join(f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in asdict(self).items()
                         if v is not None)
        return f"{self.name}({args})"


@dataclass(frozen=True)
class Pad(Step):
    multiples: tuple[int, ...]
    name = "pad"
    phase = 0
    about = "pad the main op with zeros so each dim is a multiple (matmul-like ops): every tile is then full"


@dataclass(frozen=True)
class Pack(Step):
    sizes: tuple[int, int, int]
    name = "pack"
    phase = 0
    about = ("pack_greedily the contraction into blocked layout with inner tiles (m, n, k); "
             "later tiles then address the packed loops (outer m, n, k, then inner m, n, k). "
             "[0, n, 0] packs only B (and C) into n-wide panels, contiguous along n; "
             "the loops are then m, n panels, k, n within a panel")


@dataclass(frozen=True)
class PackChannels(Step):
    sizes: tuple[int, int]
    name = "pack_channels"
    phase = 0
    about = ("NCHW convolution: pack it into the blocked NCHWc layout, output channels in blocks of f and "
             "input channels in blocks of c (sizes [f, c]), so a vector runs along a channel block; the "
             "loops are then n, fo, oh, ow, co, kh, kw, fi, ci. The innermost tile keeps ow, fi, ci and "
             "tiles every other loop to 1: it is then a (ow x ci) by (ci x fi) matmul")


@dataclass(frozen=True)
class Im2col(Step):
    name = "im2col"
    phase = 0
    about = "rewrite conv2d as an im2col copy plus a matmul-like contraction with loops (n, oh*ow, f, kh*kw*c)"


@dataclass(frozen=True)
class Parallel(Step):
    threads: int
    loop: int = 0
    name = "parallel"
    phase = 1
    about = "split one parallel loop evenly across threads (scf.forall on MLIR's async runtime)"


@dataclass(frozen=True)
class Fuse(Step):
    name = "fuse"
    phase = 2
    about = ("tile the first level with producers (the zero fill) and consumers (bias, ReLU) fused into the "
             "same loops; that level may only tile parallel loops")


@dataclass(frozen=True)
class Tile(Step):
    sizes: tuple[int, ...]
    interchange: tuple[int, ...] | None = None
    name = "tile"
    phase = 3
    about = ("one level of loop tiling (0 = not tiled), outer levels first: cache tiles, then a register tile "
             "that vectorize turns into vector ops; interchange orders this level's loops")


@dataclass(frozen=True)
class Lanes(Step):
    size: int
    name = "lanes"
    phase = 3.5  # after the tile levels, before loop shaping
    about = ("split the reduction loop of the innermost tile into partial sums of `size` lanes carried in "
             "registers (tile_reduction_using_for): each step is an elementwise FMA of vectors contiguous "
             "along the reduction, summed once at the end; for operands stored with k contiguous "
             "(a Linear layer's weight) and few rows; leave k untiled (0) in the innermost tile")


@dataclass(frozen=True)
class Unroll(Step):
    loop: int
    factor: int
    name = "unroll"
    phase = 4
    about = "unroll one loop of the innermost tile level (index among its tiled loops) by a factor dividing its trip count"


@dataclass(frozen=True)
class Peel(Step):
    name = "peel"
    phase = 5
    about = "peel the partial last iteration of innermost-level loops so the main part has full, vectorizable tiles"


@dataclass(frozen=True)
class Decompose(Step):
    name = "decompose"
    phase = 6
    about = "rewrite the register-tiled conv2d (oh and kh tiled to 1) as a conv1d, which vectorizes well"


@dataclass(frozen=True)
class Vectorize(Step):
    name = "vectorize"
    phase = 7
    about = "vectorize every op with static shapes (the register tile becomes vector ops)"


@dataclass(frozen=True)
class Hoist(Step):
    name = "hoist"
    phase = 8
    about = ("keep the accumulator tile in registers across the reduction loop: hoist loop-invariant "
             "transfers (needs vectorize, static bounds)")


@dataclass(frozen=True)
class Contraction(Step):
    strategy: str = "outerproduct"
    name = "contraction"
    phase = 9
    about = f"how vector contractions lower: {', '.join(CONTRACTION_STRATEGIES)} (default outerproduct)"


STEP_TYPES: dict[str, type[Step]] = {t.name: t for t in
                                     (Pad, Pack, PackChannels, Im2col, Parallel, Fuse, Tile, Lanes, Unroll, Peel,
                                      Decompose, Vectorize, Hoist, Contraction)}


def step_from_json(data: dict) -> Step:
    """Build a step from {"step": name, **params}; bad input raises ScheduleError with the reason."""
    if not isinstance(data, dict) or "step" not in data:
        raise ScheduleError(f"a step must be an object with a 'step' field, got {data!r:.80}")
    kind = data["step"]
    if kind not in STEP_TYPES:
        raise ScheduleError(f"unknown step {kind!r}; known steps: {', '.join(STEP_TYPES)}")
    cls = STEP_TYPES[kind]
    params = {f.name: f for f in fields(cls)}
    extra = set(data) - set(params) - {"step"}
    if extra:
        raise ScheduleError(f"{kind}: unknown parameter(s) {', '.join(sorted(extra))}; takes {', '.join(params) or 'none'}")
    values = {}
    for pname, field in params.items():
        if pname not in data:
            if field.default is MISSING:
                raise ScheduleError(f"{kind}: missing parameter {pname!r}")
            continue
        values[pname] = _coerce(kind, pname, data[pname], str(field.type))
    try:
        return cls(**values)
    except TypeError as err:
        raise ScheduleError(f"{kind}: {err}") from None


def _coerce(kind: str, pname: str, value, type_text: str):
    if "tuple" in type_text:
        if value is None and "None" in type_text:
            return None
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                            for v in value):
            raise ScheduleError(f"{kind}.{pname} must be a list of integers, got {value!r:.60}")
        return tuple(value)
    if type_text == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise ScheduleError(f"{kind}.{pname} must be an integer, got {value!r:.60}")
        return value
    if type_text == "str":
        if not isinstance(value, str):
            raise ScheduleError(f"{kind}.{pname} must be a string, got {value!r:.60}")
        return value
    return value
