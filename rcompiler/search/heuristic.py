"""The offline proposer: a performance engineer's reasoning, written as code.

At the root it derives complete schedules from the kernel's loops and the
machine: a register tile that fills the vector registers with accumulators,
cache tiles sized to L1 and L2, vectorize and hoist. Deeper, it refines a
measured schedule with local edits, ranked by an expert prior and by what
the same kind of edit did earlier in this study (faster, slower, failed).
No table of known answers: every number comes from the shape and the hardware.
"""
from __future__ import annotations

import math
from collections import defaultdict

from rcompiler.hardware import Hardware
from rcompiler.kernels.base import Kernel
from rcompiler.transforms import (Decompose, Fuse, Hoist, Im2col, Lanes, Pack, PackChannels, Pad, Parallel, Peel, Schedule,
                                  Tile, Vectorize, applicable, check, loop_nest)
from rcompiler.transforms.space import output_loops, packed_nchw_tile, window_loops

from .context import Evaluated, Proposal, ProposalContext
from .edits import Edit, all_edits, divisors, legal

F32 = 4
# Independent FMAs in flight that keep every FMA pipe busy: 4 cycles of latency x 2 pipes on the
# hosts here (Zen 3/4/5, Intel since Skylake-X). A register tile with no more accumulators than
# that stalls whenever a load or broadcast is late; half as many again leaves the slack.
FMAS_IN_FLIGHT = 8


def snap(extent: int, target: float, multiple_of: int = 1) -> int:
    """The divisor of `extent` (a multiple of `multiple_of`) nearest `target` in log scale;
    the whole extent when none exists (the inner level then peels)."""
    options = [d for d in divisors(extent) if d % multiple_of == 0]
    if not options:
        return extent
    return min(options, key=lambda d: (abs(math.log(d / max(target, 1))), -d))


def register_tiles(hw: Hardware, rows: int, cols: int) -> list[tuple[int, int]]:
    """(rows, cols) register tiles, best first: as many accumulator vectors as the
    register file holds (keeping one row of B and a broadcast of A), preferring
    shapes that divide the loops and load few bytes per FMA."""
    lanes, regs = hw.f32_lanes, hw.vector_registers
    out = []
    # Widths of 1, 2 or 4 vectors only: LLVM does not split a 3-vector row (48 lanes with AVX-512)
    # into native registers well; every such tile measured about 5 GFLOP/s (6x48, 4x48, 8x96 on a
    # 96^2 x 64 matmul, where 6x32 ran at 100).
    for vecs in (1, 2, 4):
        nr = vecs * lanes
        if nr > cols and vecs > 1:
            continue
        max_rows = max(1, min(16, (regs - vecs - 1) // vecs))
        for mr in range(min(max_rows, rows), 0, -1):
            # Per reduction step: mr broadcasts + vecs loads feed mr * vecs FMAs.
            score = mr * vecs / (mr + vecs)
            # Too few accumulators to hide the FMA latency (16 AVX2 registers: 4x16 holds 8, 6x16 holds
            # 12 and measured 80 against 68-76 GFLOP/s on Zen 3, peeled rows included).
            score *= min(1.0, mr * vecs / (1.5 * FMAS_IN_FLIGHT))
            score *= (1.0 if rows % mr == 0 else 0.85) * (1.0 if cols % nr == 0 else 0.85)  # else peel
            out.append((score, mr, min(nr, cols)))
    out.sort(reverse=True)
    # The best tile of each width first (diverse options), then the rest by score.
    firsts, rest, widths = [], [], set()
    for _, mr, nr in out:
        (rest if nr in widths else firsts).append((mr, nr))
        widths.add(nr)
    return firsts + rest


class HeuristicProposer:
    name = "heuristic"

    def propose(self, ctx: ProposalContext, k: int) -> list[Proposal]:
        parent = ctx.schedule.key if ctx.schedule.steps else None
        if not ctx.schedule.steps:
            ideas = [(why, s, None) for why, s in self.initial(ctx.kernel, ctx.hardware, ctx.threads)]
        else:
            ideas = self.refine(ctx)
        out, keys = [], set(ctx.seen)
        for why, s, edit in ideas:
            if s.key in keys or check(s, ctx.kernel) is not None:
                continue
            keys.add(s.key)
            out.append(Proposal(s, why, self.name, parent, edit))
            if len(out) == k:
                break
        return out

    # -- complete schedules from first principles -----------------------------
    def initial(self, kernel: Kernel, hw: Hardware, threads: int) -> list[tuple[str, Schedule]]:
        names = loop_nest(kernel).names
        if names[-3:] == ["m", "n", "k"]:
            ideas = self._contraction(kernel, hw)
        elif names == ["n", "oh", "ow", "f", "kh", "kw", "c"]:
            ideas = self._conv(kernel, hw)
        elif names == ["n", "f", "oh", "ow", "c", "kh", "kw"]:
            ideas = self._conv_nchw(kernel, hw) + self._generic(kernel, hw)
        else:
            ideas = self._generic(kernel, hw)
        if threads > 1:
            # With threads to use, the answer is a split schedule: split each idea first (which
            # single-core idea wins is not known before measuring), the single-core ones after.
            split = [self._parallel(kernel, s, threads) for _, s in ideas]
            ideas = [p for p in split if p is not None] + ideas
        return ideas

    def _contraction(self, kernel: Kernel, hw: Hardware) -> list[tuple[str, Schedule]]:
        nest = loop_nest(kernel)
        *batch, M, N, K = nest.extents
        b = [1] * len(batch)
        ideas = []
        for rank, (mr, nr) in enumerate(register_tiles(hw, M, N)[:3]):
            kc = snap(K, hw.l1d_bytes / ((mr + nr) * F32))  # A and B micro-panels stay in L1
            mc_l2 = snap(M, hw.l2_bytes / (2 * kc * F32), mr)  # an A block fills half of L2
            mc_small = snap(M, 8 * mr, mr)
            nc = snap(N, hw.l2_bytes / (4 * kc * F32), nr)  # a B panel in a quarter of L2
            inner = Tile(tuple(b + [mr, nr, 1]))
            peel = [Peel()] if M % mr or N % nr else []
            for mc, what in ((mc_small, "small A block"), (mc_l2, "A block sized to L2")):
                outer = Tile(tuple(b + [mc, nc, kc]), tuple(range(len(b))) + tuple(x + len(b) for x in (0, 2, 1)))
                why = (f"register tile {mr}x{nr} ({mr * nr // hw.f32_lanes} accumulators of {hw.vector_registers} "
                       f"{hw.vector_bits}-bit registers), k-block {kc} so A and B panels fit L1 "
                       f"({hw.l1d_bytes // 1024} KiB), {what} {mc}x{kc}, n-block {nc}; vectorize and keep C in registers")
                ideas.append((why, Schedule.of([outer, inner, Vectorize(), Hoist(), *peel])))
                if rank:
                    break
        mr, nr = register_tiles(hw, M, N)[0]
        ideas.insert(2, ("register tile only, k innermost: no cache blocking",
                         Schedule.of([Tile(tuple(b + [mr, nr, 1])), Vectorize(), Hoist(),
                                      *([Peel()] if M % mr or N % nr else [])])))
        if M % mr or N % nr:
            # Padding first: it copies the operands once (O(MK + KN)) and keeps every tile full,
            # where peeling leaves remainder tiles of partial vectors (measured 2-4x slower on
            # odd sizes, on shapes outside the held-out set).
            ideas.insert(0, self._padded(M, N, K, b, mr, nr, hw))
        # Layout-aware ideas (read from the indexing maps) go first, so the first round measures them
        # all: when B is stored n x k, the plain register tile above gathers every vector of B.
        layout = [self._lanes_along_k(kernel, M, N, K, b, hw), self._b_block_in_l1(kernel, M, N, K, b, hw),
                  self._pack_only_b(kernel, M, N, K, b, hw), self._pack_b_panels(kernel, M, N, b, hw)]
        return [idea for idea in layout if idea is not None] + ideas

    @staticmethod
    def _padded(M: int, N: int, K: int, b: list[int], mr: int, nr: int, hw: Hardware) -> tuple[str, Schedule]:
        """Sizes with no good divisor (primes): pad m and n up to the register tile so every tile
        is full and vectorizes, instead of peeling a scalar remainder."""
        Mp, Np = -(-M // mr) * mr, -(-N // nr) * nr
        kc = snap(K, hw.l1d_bytes / ((mr + nr) * F32))
        mc, nc = snap(Mp, 8 * mr, mr), snap(Np, hw.l2_bytes / (4 * kc * F32), nr)
        order = tuple(range(len(b))) + tuple(x + len(b) for x in (0, 2, 1))
        why = (f"m={M} and n={N} leave partial {mr}x{nr} register tiles: pad them with zeros to {Mp}x{Np} so every "
               f"tile is full, then block {mc}x{nc}x{kc} and vectorize")
        return why, Schedule.of([Pad(tuple([1] * len(b) + [mr, nr, 1])), Tile(tuple(b + [mc, nc, kc]), order),
                                 Tile(tuple(b + [mr, nr, 1])), Vectorize(), Hoist()])

    @staticmethod
    def _b_block_in_l1(kernel: Kernel, M: int, N: int, K: int, b: list[int], hw: Hardware
                       ) -> tuple[str, Schedule] | None:
        """When B's rows (along n or k, whichever is not contiguous, as its indexing map says)
        are a multiple of the L1 way size apart, the same column of every row maps to one
        cache set and only `ways` rows stay in L1. Then also try a B block `ways` deep in k
        kept in L1, with strips of A and C streamed past it (loops n, k, m; m innermost);
        whether it wins is for the measurement to say."""
        n_loop, k_loop = len(b) + 1, len(b) + 2
        B = _b_operand(kernel, len(b))
        if B is None:
            return None
        strides = {"n": B.stride_bytes(n_loop), "k": B.stride_bytes(k_loop)}
        far = max(strides, key=lambda x: strides[x] or 0)
        if not strides[far] or strides[far] % hw.l1d_way_bytes:
            return None
        mr, kr = 2, hw.l1d_ways
        nr = hw.f32_lanes * max(1, hw.vector_registers // 2 // mr)  # half the registers accumulate
        while nr > hw.f32_lanes and N % nr:
            nr //= 2
        if M % mr or N % nr or K % kr:
            return None
        order = tuple(range(len(b))) + tuple(x + len(b) for x in (1, 2, 0))
        layout = "n x k (k contiguous)" if far == "n" else "k x n (n contiguous)"
        why = (f"B is stored {layout}: consecutive {far} are {strides[far]} bytes apart, a multiple of the "
               f"{hw.l1d_way_bytes}-byte L1 way, so they share a cache set and only {hw.l1d_ways} of them stay in "
               f"L1. Block k by {kr}, keep a {kr}x{nr} block of B in L1 and stream {mr}-row strips of A and C "
               "past it (m innermost)")
        return why, Schedule.of([Tile(tuple(b + [mr, nr, kr]), order), Vectorize(), Hoist()])

    @staticmethod
    def _lanes_along_k(kernel: Kernel, M: int, N: int, K: int, b: list[int], hw: Hardware
                       ) -> tuple[str, Schedule] | None:
        """A and B both contiguous along k (B stored n x k): vectorize along k instead. Each
        output of an mr x nr tile keeps a vector of partial sums over k in a register, fed by
        contiguous loads of A's and B's rows and summed once at the end; no copy of B, so it
        also suits few rows of A (a Linear layer on a few tokens)."""
        op = kernel.structure[kernel.main_index]
        k_loop = len(b) + 2
        if any(o.contiguous_loop() != k_loop for o in op.inputs):
            return None
        lanes = hw.f32_lanes
        if K % lanes:
            return None
        options = [(mr * nr / (mr + nr), mr, nr) for mr in range(1, 9) for nr in range(1, 9)
                   if M % mr == 0 and N % nr == 0 and mr * nr + mr + nr <= hw.vector_registers]
        if not options:
            return None
        _, mr, nr = max(options)
        kc = snap(K, hw.l1d_bytes / ((mr + nr) * F32), lanes)  # the tile's rows of A and B stay in L1
        nc = snap(N, hw.l2_bytes / (4 * kc * F32), nr)  # a block of B rows in a quarter of L2
        outer = [Tile(tuple(b + [0, nc, kc]), tuple(range(len(b))) + tuple(x + len(b) for x in (1, 2, 0)))]
        why = (f"A and B are both contiguous along k: a {mr}x{nr} tile of outputs each keeps {lanes} partial sums "
               f"over k in a {hw.vector_bits}-bit register ({mr * nr} accumulators), fed by contiguous loads of "
               f"{mr} rows of A and {nr} rows of B, summed once at the end; k in blocks of {kc} so those rows "
               f"stay in L1, {nc} rows of B per block in L2 (loops n, k, m)")
        if kc == K and nc == N:
            outer = []
        return why, Schedule.of([*outer, Tile(tuple(b + [mr, nr, 0])), Lanes(lanes), Vectorize(), Hoist()])

    @staticmethod
    def _pack_only_b(kernel: Kernel, M: int, N: int, K: int, b: list[int], hw: Hardware
                     ) -> tuple[str, Schedule] | None:
        """B stored n x k: copy only B into panels one vector wide and contiguous along n (as BLAS
        packs it), and leave A where it is, already contiguous along k for its broadcasts. One
        pass over B per call; then the usual register and cache tiles, over panels."""
        B = _b_operand(kernel, len(b))
        lanes = hw.f32_lanes
        if B is None or N % lanes:
            return None
        if B.contiguous_loop() == len(b) + 1 and not _rows_collide_in_l1(B.stride_bytes(len(b) + 2), K, M, hw):
            return None
        mr, nr = next(((mr, nr) for mr, nr in register_tiles(hw, M, N) if nr % lanes == 0 and N % nr == 0),
                      (1, lanes))
        kc = snap(K, hw.l1d_bytes / ((mr + nr) * F32))
        mc, nc = snap(M, 8 * mr, mr), snap(N, hw.l2_bytes / (4 * kc * F32), nr)
        order = tuple(range(len(b))) + tuple(x + len(b) for x in (0, 2, 1, 3))
        stored = ("stored with k contiguous" if B.contiguous_loop() != len(b) + 1 else
                  f"its rows {B.stride_bytes(len(b) + 2)} bytes apart share a few L1 sets")
        why = (f"B is read along n but {stored}: pack only B into {lanes}-wide panels, each one "
               f"contiguous run along k (one pass over B), keep A as it is, then block {mc}x{nc}x{kc} and a "
               f"{mr}x{nr} register tile over the panels")
        return why, Schedule.of([Pack((0, lanes, 0)), Tile(tuple(b + [mc, nc // lanes, kc, 0]), order),
                                 Tile(tuple(b + [mr, nr // lanes, 1, lanes])), Vectorize(), Hoist(),
                                 *([Peel()] if M % mr else [])])

    @staticmethod
    def _pack_b_panels(kernel: Kernel, M: int, N: int, b: list[int], hw: Hardware) -> tuple[str, Schedule] | None:
        """B stored n x k (a Linear layer's weight, K^T in attention scores): the register tile's
        vector loads along n would each gather one element from every row. Packing copies B
        (and A) into contiguous panels of the register tile's shape first; the copy costs a pass
        over B, so it pays when M is large enough to reuse each panel many times: measure it."""
        B = _b_operand(kernel, len(b))
        if B is None or B.contiguous_loop() == len(b) + 1:
            return None
        tile = next(((mr, nr) for mr, nr in register_tiles(hw, M, N) if M % mr == 0 and N % nr == 0), None)
        if tile is None:
            return None
        mr, nr = tile
        why = (f"B is read along n but stored with k contiguous: pack A and B into {mr}x1 and 1x{nr} panels "
               f"(register tile {mr}x{nr}) so every vector load is contiguous, then vectorize and hoist")
        return why, Schedule.of([Pack((mr, nr, 1)), Tile(tuple(b + [1, 1, 1, mr, nr, 1])), Vectorize(), Hoist()])

    @staticmethod
    def _ow_tile(ow: int, rows: int) -> tuple[int, bool]:
        """Output pixels per register tile, and whether a remainder is peeled: the largest divisor
        of ow that fits, unless it is under half the tile (a prime ow, as a stride-2 conv often
        gives): then full tiles and a peeled remainder (54 -> 100 GFLOP/s on ow = 19 and 29)."""
        wr = max(d for d in divisors(ow) if d <= rows)  # never more accumulators than registers
        return (wr, False) if 2 * wr >= rows else (rows, True)

    def _conv(self, kernel: Kernel, hw: Hardware) -> list[tuple[str, Schedule]]:
        n, oh, ow, f, kh, kw, c = loop_nest(kernel).extents
        cr = 2 if c % 2 == 0 else 1  # two channels per step: twice the independent FMAs per iteration
        ideas = []
        for rows, cols in register_tiles(hw, ow, f)[:3]:
            wr, partial = self._ow_tile(ow, rows)
            why = (f"decompose to 1-D convolutions over a {wr}x{cols} output tile (ow x f) held in registers, "
                   f"reducing kh and {cr} channel(s) per step with kw unrolled; vectorize and hoist the accumulators"
                   + (f"; ow={ow} has no divisor near {rows}, so the last tile is peeled" if partial else ""))
            peel = [Peel()] if f % cols or partial else []
            ideas.append((why, Schedule.of([Tile((1, 1, wr, cols, 1, 0, cr)), Decompose(), Vectorize(), Hoist(),
                                            *peel])))
        rows, cols = register_tiles(hw, ow, f)[0]
        wr, partial = self._ow_tile(ow, rows)
        peel = [Peel()] if f % cols or partial else []
        cb = snap(c, hw.l1d_bytes / (F32 * kh * kw * cols), cr)  # filter slice of an f-tile stays in L1
        ideas.insert(1, (f"same register tile with the channels blocked by {cb} so the filter slice stays in L1",
                         Schedule.of([Tile((1, 1, ow, f, 0, 0, cb)), Tile((1, 1, wr, cols, 1, 0, cr)), Decompose(),
                                      Vectorize(), Hoist(), *peel])))
        ideas.insert(2, ("one channel per step (shorter reduction body, fewer live registers)",
                         Schedule.of([Tile((1, 1, wr, cols, 1, 0, 1)), Decompose(), Vectorize(), Hoist(), *peel])))
        if not applicable("im2col", kernel):
            return ideas
        m = oh * ow
        mr, nr = register_tiles(hw, m, f)[0]
        ideas.append(("im2col: turn the convolution into one matmul-like contraction and tile it like a matmul",
                      Schedule.of([Im2col(), Tile((1, snap(m, mr), nr if f % nr == 0 else f, 1)), Vectorize(), Hoist()])))
        return ideas

    def _conv_nchw(self, kernel: Kernel, hw: Hardware) -> list[tuple[str, Schedule]]:
        """NCHW: pixels are contiguous in the image and the output, channels are not. im2col
        makes it a matmul of the filter (f x c*kh*kw) by the patch matrix (c*kh*kw x pixels),
        whose register tile runs over output channels (rows) and pixels (vector columns)."""
        n, f, oh, ow, c, kh, kw = loop_nest(kernel).extents
        pixels, ideas = oh * ow, self._conv_nchw_packed(kernel, hw)
        for mr, nr in register_tiles(hw, f, pixels)[:3]:
            peel = [Peel()] if f % mr or pixels % nr else []
            ideas.append((f"im2col, then a {mr}x{nr} register tile over output channels x pixels (pixels are "
                          "contiguous in NCHW), vectorize and keep the tile in registers",
                          Schedule.of([Im2col(), Tile((1, mr, nr, 1)), Vectorize(), Hoist(), *peel])))
        return ideas

    def _conv_nchw_packed(self, kernel: Kernel, hw: Hardware) -> list[tuple[str, Schedule]]:
        """NCHW packed to NCHWc (channels in vector-wide blocks), as oneDNN reorders it: the tile
        is then a (pixels x input-channel block) by (block x output-channel block) matmul read in
        place, with no patch matrix. A row of pixels holds one vector of accumulators each: about
        a quarter of the register file keeps both FMA pipes busy without spilling, half is tried too."""
        if not applicable("pack_channels", kernel):
            return []
        n, f, oh, ow, c, kh, kw = loop_nest(kernel).extents
        lanes, regs = hw.f32_lanes, hw.vector_registers
        if f % lanes:
            return []
        ideas = []
        # First the matmul's register tiles (pixels x output channels) that hold more accumulators
        # than FMAs in flight: on 16 AVX2 registers, 4 pixels x 2 vectors of channels (8 accumulators)
        # ran a 128-channel 28x28 conv at 87 GFLOP/s where 7 pixels x 1 vector (7) ran at 68.
        # With none that many (a 7-pixel row), the tile with the most (7 pixels x 1 vector: 58 GFLOP/s on
        # a 512-channel 7x7 conv, where 1 pixel ran at 22).
        tiles = [(max(d for d in divisors(ow) if d <= mr), nr) for mr, nr in register_tiles(hw, ow, f)[:3]
                 if nr % lanes == 0 and f % nr == 0]
        rich = [(wr, nr) for wr, nr in tiles if wr * nr // lanes >= FMAS_IN_FLIGHT]
        for wr, nr in rich or sorted(tiles, key=lambda t: -t[0] * t[1])[:1]:
            cb = lanes if c % lanes == 0 else snap(c, lanes)
            ideas.append((f"pack channels into NCHWc blocks ({nr} output, {cb} input channels), then a "
                          f"{wr}-pixel x {nr}-channel register tile ({wr * nr // lanes} accumulators) read in "
                          "place (no im2col copy)",
                          Schedule.of([PackChannels((nr, cb)), packed_nchw_tile(wr), Vectorize(), Hoist()])))
        for rows_target, cb in ((regs / 4, lanes // 2), (regs / 4, lanes), (regs / 2, lanes // 2)):
            wr = max((d for d in divisors(ow) if d <= rows_target), default=1)
            cb = cb if c % cb == 0 else snap(c, cb)
            ideas.append((f"pack channels into NCHWc blocks ({lanes} output, {cb} input channels), then a "
                          f"{wr}-pixel x {lanes}-channel register tile read in place (no im2col copy)",
                          Schedule.of([PackChannels((lanes, cb)), packed_nchw_tile(wr),
                                       Vectorize(), Hoist()])))
        return ideas

    def _generic(self, kernel: Kernel, hw: Hardware) -> list[tuple[str, Schedule]]:
        nest = loop_nest(kernel)
        # Along the output's dims, the last one contiguous: a depthwise NCHW conv's loops run
        # (n, oh, ow, c), and its vectors go along ow.
        par = [i for i in output_loops(kernel.structure[kernel.main_index])
               if nest.iterators[i] == "parallel"]
        ideas = []
        for vecs in (1, 2):
            sizes = [1] * len(nest.extents)
            if par:
                last = par[-1]
                sizes[last] = snap(nest.extents[last], vecs * hw.f32_lanes)
                if len(par) > 1:
                    sizes[par[-2]] = snap(nest.extents[par[-2]], 8)
            ideas.append((f"vectorize the output's contiguous loop by {sizes[par[-1]] if par else 1}, "
                          "keep reductions scalar in registers",
                          Schedule.of([Tile(tuple(sizes)), Vectorize(), Hoist()])))
        if window_loops(kernel.structure[kernel.main_index]) and len(kernel.structure) > 1:
            # A depthwise conv or a pooling reads little per output: what costs is the memory
            # traffic, so its fill and activation go into its tiles instead of a pass each.
            fused = []
            for why, s in ideas:
                sizes = s.get("tile").sizes
                red = tuple(x if nest.iterators[i] == "reduction" else 0 for i, x in enumerate(sizes))
                outer = tuple(0 if nest.iterators[i] == "reduction" else x for i, x in enumerate(sizes))
                fused.append((why + ", with the fill and the activation fused into its tiles",
                              Schedule.of([Fuse(), Tile(outer), Tile(red), Vectorize(), Hoist()])))
            ideas = fused + ideas
        return self._phase_split(kernel, hw, nest, par) + ideas

    @staticmethod
    def _phase_split(kernel: Kernel, hw: Hardware, nest, par: list[int]) -> list[tuple[str, Schedule]]:
        """A strided window split into column phases (kernels/strided.py) reads `in[.., ow + a, b]`,
        b a reduction along the input's contiguous innermost dim: a whole row of ow by every b is
        one contiguous run, and the strided rows stay one per tile."""
        op = kernel.structure[kernel.main_index]
        phases = set()
        for o in op.inputs:
            last = o.index[-1] if o.index else None
            strided = any(t and any(coef != 1 for _, coef in t) for t in o.index)
            if strided and last and len(last) == 1 and nest.iterators[last[0][0]] == "reduction":
                phases.add(last[0][0])
        if not phases or not par:
            return []
        ow = par[-1]  # the window loops read beside it: a in ow + a
        columns = {loop for o in op.inputs for t in o.index if t and ow in dict(t) for loop in dict(t)} - {ow}
        ideas = []
        for whole in (columns, set()):
            sizes = [1] * len(nest.extents)
            sizes[ow] = snap(nest.extents[ow], 4 * hw.f32_lanes)
            for loop in phases | whole:
                sizes[loop] = nest.extents[loop]
            ideas.append((f"a row of {sizes[ow]} outputs by every column phase{' and window column' if whole else ''}, "
                          "read as one contiguous run, one strided row per tile",
                          Schedule.of([Tile(tuple(sizes)), Vectorize(), Hoist()])))
        return ideas

    def _parallel(self, kernel: Kernel, base: Schedule, threads: int):
        nest = loop_nest(kernel)
        for loop, (extent, it) in enumerate(zip(nest.extents, nest.iterators)):
            if it == "parallel" and extent % threads == 0 and extent >= 8 * threads:
                s = base.then(Parallel(threads, loop))
                if check(s, kernel) is None:
                    return (f"split loop {nest.names[loop]} across {threads} threads, then the best "
                            "single-core schedule inside each", s)
                # cache tiles may no longer divide the split loop: drop the outer level
                tiles = base.tiles
                if len(tiles) > 1:
                    s = Schedule.of([x for x in base.steps if not isinstance(x, Tile)] + list(tiles[1:])
                                    + [Parallel(threads, loop)])
                    if check(s, kernel) is None:
                        return (f"split loop {nest.names[loop]} across {threads} threads with register tiles inside", s)
        return None

    # -- refinement of a measured schedule -------------------------------------
    def refine(self, ctx: ProposalContext) -> list[tuple[str, Schedule, Edit]]:
        edits = legal(ctx.kernel, all_edits(ctx.kernel, ctx.schedule, ctx.threads, ctx.rng), ctx.seen)
        learned = self._learned_gains(ctx.history)
        failed = ctx.result is not None and not ctx.result.ok
        scored = [(self._prior(e, ctx, failed) + 2.0 * learned.get(e.group, 0.0), e) for e in edits]
        scored.sort(key=lambda t: -t[0])
        out, groups = [], set()
        for _, e in scored:  # the best unseen edit of each group: diverse children
            if e.group not in groups:
                groups.add(e.group)
                out.append((self._explain(e, learned, ctx), e.schedule, e))
        return out

    @staticmethod
    def _prior(e: Edit, ctx: ProposalContext, failed: bool) -> float:
        shrinks = e.kind == "resize" and e.param("direction") == "halve"
        if failed:  # undo risky steps or shrink tiles (a failure is not the threads' doing)
            return 1.0 if shrinks or (e.kind == "drop" and e.step != "parallel") else -1.0
        if e.kind == "add":
            if e.step == "vectorize" or (e.step == "hoist" and ctx.schedule.has("vectorize")):
                return 3.0
            if e.step == "parallel":
                return 2.5
            if e.step == "fuse":  # saves a pass over the whole output
                return 2.0
            if e.step == "unroll":
                return 0.1
        if e.kind == "drop" and e.step in ("vectorize", "hoist", "decompose", "parallel"):
            return -3.0
        if e.kind == "resize":
            return 0.6 if e.param("level") == 1 else 0.3
        if e.kind == "swap":
            return 0.2
        if e.kind == "set" and e.step == "contraction":
            return 0.0 if e.param("strategy") == "parallelarith" else -0.5
        return -0.2

    @staticmethod
    def _learned_gains(history: list[Evaluated]) -> dict[tuple, float]:
        """Mean log2 speed ratio child/parent per group of edits, from this study's samples."""
        by_key = {e.schedule.key: e for e in history}
        gains: dict[tuple, list[float]] = defaultdict(list)
        for e in history:
            if e.edit is None or e.parent_key not in by_key:
                continue
            parent = by_key[e.parent_key]
            if not e.ok:
                gains[e.edit.group].append(-2.0)
            elif parent.ok and parent.seconds and e.seconds:
                gains[e.edit.group].append(math.log2(parent.seconds / e.seconds))
        return {k: sum(v) / len(v) for k, v in gains.items()}

    @staticmethod
    def _explain(e: Edit, learned: dict[tuple, float], ctx: ProposalContext) -> str:
        note = ""
        if e.group in learned:
            note = f" (this kind of edit changed speed by {2 ** learned[e.group]:.2f}x on average so far)"
        base = ctx.result.describe() if ctx.result else str(ctx.schedule)
        return f"edit: {e.text}{note}; from {base[:200]}"


def _rows_collide_in_l1(stride: int | None, K: int, M: int, hw: Hardware, line: int = 64) -> bool:
    """Whether the k rows of B (`stride` bytes apart) that a register tile walks map to so few L1
    sets that they cannot stay in L1 (rows a multiple of the way size apart all share one set), and
    M is large enough to pay for copying B into panels once per call: the copy moves each byte of
    B once, the product then does M/2 FLOPs with it (at M >= 256, over a hundred)."""
    if not stride or stride % line or M < 256:
        return False
    sets = hw.l1d_way_bytes // line
    rows_kept = hw.l1d_ways * sets // math.gcd(stride // line, sets)
    return rows_kept < min(K, 256)


def _b_operand(kernel: Kernel, batch: int):
    """The main contraction's B, read from the indexing maps: the input that n indexes and m
    does not (loops after `batch` batch loops are m, n, k)."""
    m_loop, n_loop = batch, batch + 1
    return next((o for o in kernel.structure[kernel.main_index].inputs
                 if o.stride_bytes(m_loop) == 0 and o.stride_bytes(n_loop)), None)
