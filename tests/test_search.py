"""MCTS tree policy, proposers and baseline strategies (no measuring: results are told directly)."""
import dataclasses
import random

import pytest

from rcompiler.hardware import detect
from rcompiler.kernels import get_kernel
from rcompiler.search.baselines import Evolutionary, RandomSearch
from rcompiler.search.context import Evaluated, Proposal, ProposalContext
from rcompiler.search.heuristic import HeuristicProposer, register_tiles, snap
from rcompiler.search.mcts import MCTS, reward
from rcompiler.search.random_proposer import RandomProposer
from rcompiler.transforms import Hoist, Schedule, Tile, Vectorize, check


class ScriptedProposer:
    """Proposes schedules tile((s, 8, 8)) with s counting up: lets the test see the tree."""
    name = "scripted"

    def __init__(self):
        self.n = 0
        self.asked = []

    def propose(self, ctx, k):
        self.asked.append(ctx.schedule)
        out = []
        for _ in range(k):
            self.n += 1
            out.append(Proposal(Schedule.of([Tile((self.n, 8, 8))]), f"#{self.n}", self.name,
                                ctx.schedule.key if ctx.schedule.steps else None))
        return out


def ev(p, speedup):
    ok = speedup is not None
    return Evaluated(p.schedule, "ok" if ok else "apply_error", 1.0 / speedup if ok else None, speedup,
                     "" if ok else "failed", p.rationale, p.parent_key)


def test_mcts_expands_root_then_selects_the_best_child_and_backs_up():
    kernel = get_kernel("matmul", (64, 64, 64))
    proposer = ScriptedProposer()
    tree = MCTS(kernel, detect(), proposer, children=3, exploration=0.1)
    first = tree.ask()
    assert len(first) == 3 and proposer.asked == [Schedule()]
    for p, s in zip(first, (2.0, 16.0, None)):
        tree.tell(p, ev(p, s))
    root = tree.root
    assert root.visits == 3 and len(root.children) == 3
    assert root.best == pytest.approx(4.0) and root.total == pytest.approx(1.0 + 4.0 + 0.0)
    # Root was expanded once with 3 visits: widening allows 1 + int(sqrt(3)/2) = 1 expansions,
    # so selection descends to the child with the best value (16x) and expands it.
    second = tree.ask()
    assert proposer.asked[-1] == first[1].schedule
    assert all(p.parent_key == first[1].schedule.key for p in second)
    for p in second:
        tree.tell(p, ev(p, 32.0))
    best_child = tree.nodes[first[1].schedule.key]
    assert best_child.visits == 4 and best_child.best == pytest.approx(5.0)
    assert root.visits == 6 and tree.max_reward == pytest.approx(5.0)


def test_mcts_widening_and_exploration():
    kernel = get_kernel("matmul", (64, 64, 64))
    tree = MCTS(kernel, detect(), ScriptedProposer(), children=2, exploration=100.0)
    for _ in range(6):
        for p in tree.ask():
            tree.tell(p, ev(p, 2.0))
    # With a huge exploration constant visits spread: no child hoards the expansions.
    assert len(tree.root.children) >= 4
    assert max(c.visits for c in tree.root.children) <= 4


def test_mcts_stops_when_the_proposer_runs_dry():
    class Dry:
        name = "dry"

        def propose(self, ctx, k):
            return []

    tree = MCTS(get_kernel("matmul", (64, 64, 64)), detect(), Dry())
    assert tree.ask() == []


def test_reward_is_log_speedup_and_zero_for_failures():
    s = Schedule()
    assert reward(Evaluated(s, "ok", 1.0, 8.0)) == pytest.approx(3.0)
    assert reward(Evaluated(s, "crash", None, None)) == 0.0
    assert reward(Evaluated(s, "ok", 1.0, 0.5)) == 0.0


def _ctx(kernel, schedule=Schedule(), history=(), result=None, threads=1, seen=()):
    return ProposalContext(kernel, detect(), schedule, result, [], [], list(history), None, threads,
                           set(seen), random.Random(0))


@pytest.mark.parametrize("name,shape", [("matmul", (1024, 1024, 1024)), ("matmul", (1000, 1000, 1000)),
                                        ("matmul", (197, 768, 3072)), ("conv2d", (1, 58, 58, 64, 64, 3, 3)),
                                        ("batch_matmul", (8, 512, 512, 128)), ("matmul_bias_relu", (64, 64, 64))])
def test_heuristic_root_proposals_are_legal_diverse_and_explained(name, shape):
    kernel = get_kernel(name, shape)
    proposals = HeuristicProposer().propose(_ctx(kernel, threads=2), 4)
    assert len(proposals) == 4
    assert len({p.schedule.key for p in proposals}) == 4
    for p in proposals:
        assert check(p.schedule, kernel) is None and p.schedule.has("vectorize")
        assert len(p.rationale) > 20


def test_heuristic_derives_tiles_from_the_hardware():
    hw = detect()
    mr, nr = register_tiles(hw, 1024, 1024)[0]
    accumulators = mr * nr // hw.f32_lanes
    assert accumulators + nr // hw.f32_lanes + 1 <= hw.vector_registers  # fits the register file
    assert nr % hw.f32_lanes == 0
    assert snap(1000, 256, 8) == 200 and snap(197, 64) in (1, 197)


AVX2 = dict(vector_bits=256, vector_registers=16)
AVX512 = dict(vector_bits=512, vector_registers=32)


@pytest.mark.parametrize("registers", [AVX2, AVX512])
def test_the_first_register_tile_holds_more_accumulators_than_fmas_in_flight(registers):
    """With 16 AVX2 registers, 4x16 (8 accumulators: exactly the FMAs in flight) divides 1024 and
    6x16 (12) does not; 6x16 still goes first, its rows peeled (80 vs 68-76 GFLOP/s on Zen 3)."""
    from rcompiler.search.heuristic import FMAS_IN_FLIGHT

    hw = dataclasses.replace(detect(), **registers)
    for rows, cols in ((1024, 1024), (512, 512), (128, 768)):
        mr, nr = register_tiles(hw, rows, cols)[0]
        accumulators = mr * nr // hw.f32_lanes
        assert FMAS_IN_FLIGHT < accumulators and accumulators + nr // hw.f32_lanes + 1 <= hw.vector_registers


@pytest.mark.parametrize("registers", [AVX2, AVX512])
@pytest.mark.parametrize("shape,packed", [((1024, 1024, 1024), True), ((512, 512, 512), True),
                                          ((128, 1024, 1024), False),  # too few rows to pay for the copy
                                          ((1024, 1000, 1024), False)])  # rows 4000 bytes apart: no conflict
def test_b_stored_k_by_n_is_packed_into_panels_when_its_rows_share_l1_sets(registers, shape, packed):
    hw = dataclasses.replace(detect(), l1d_bytes=32 * 1024, l1d_ways=8, **registers)
    kernel = get_kernel("matmul", shape)
    ideas = [(why, s) for why, s in HeuristicProposer().initial(kernel, hw, 1) if s.has("pack")]
    assert bool(ideas) == packed
    if packed:
        why, schedule = ideas[0]
        assert schedule.get("pack").sizes == (0, hw.f32_lanes, 0) and check(schedule, kernel) is None
        assert f"rows {shape[1] * 4} bytes apart share a few L1 sets" in why


@pytest.mark.parametrize("name,shape,conflict", [
    ("matmul", (64, 2048, 4096), True), ("matmul", (64, 2080, 4096), False), ("matmul", (512, 512, 512), False),
    # B stored N x K: its rows are K*4 bytes apart, whatever N is
    ("matmul_transpose_b", (64, 2048, 4096), True), ("matmul_transpose_b", (64, 2048, 4000), False),
    ("matmul_transpose_b", (64, 2080, 4096), True)])
def test_heuristic_keeps_b_in_l1_when_its_rows_share_a_cache_set(name, shape, conflict):
    hw = dataclasses.replace(detect(), l1d_bytes=32 * 1024, l1d_ways=8)  # 4 KiB ways, as on this machine
    kernel = get_kernel(name, shape)
    ideas = HeuristicProposer().initial(kernel, hw, 1)
    stationary = [(why, s) for why, s in ideas if "L1 way" in why]
    assert bool(stationary) == conflict
    if conflict:
        why, stationary = stationary[0][0], [stationary[0][1]]
        far, stride = ("n", shape[2] * 4) if name == "matmul_transpose_b" else ("k", shape[1] * 4)
        assert f"consecutive {far} are {stride} bytes apart" in why
    if conflict:
        tile = stationary[0].tiles[0]
        assert tile.interchange == (1, 2, 0) and tile.sizes[2] == 8  # n, k, m; k by the associativity
        assert check(stationary[0], kernel) is None and stationary[0] in [s for _, s in ideas[:3]]  # first round


def test_heuristic_refinement_learns_from_history():
    kernel = get_kernel("matmul", (256, 256, 256))
    base = Schedule.of([Tile((64, 64, 64), (0, 2, 1)), Tile((8, 32, 1)), Vectorize(), Hoist()])
    parent = Evaluated(base, "ok", 1.0, 10.0)
    proposer = HeuristicProposer()
    plain = proposer.propose(_ctx(kernel, base, [parent], parent), 30)
    swap = next(p for p in plain if p.edit.kind == "swap")
    assert plain[0].edit.kind != "swap"  # not first on its prior alone
    # Pretend an edit of that kind made things 4x faster before: it should now be ranked first.
    earlier = Evaluated(swap.schedule, "ok", 0.25, 40.0, rationale=swap.rationale, parent_key=base.key,
                        edit=swap.edit)
    learned = proposer.propose(_ctx(kernel, base, [parent, earlier], parent, seen={swap.schedule.key}), 30)
    assert learned[0].edit.group == swap.edit.group and learned[0].edit.kind == "swap"
    assert "changed speed by 4.00x" in learned[0].rationale
    # The gain is learned from the typed edit: the rationale is text for people.
    unlabelled = Evaluated(swap.schedule, "ok", 0.25, 40.0, rationale="", parent_key=base.key, edit=swap.edit)
    again = proposer.propose(_ctx(kernel, base, [parent, unlabelled], parent, seen={swap.schedule.key}), 30)
    assert again[0].edit.kind == "swap"


def test_heuristic_fuses_an_epilogue_into_a_measured_schedule():
    """A bias + activation after a contraction is another pass over the whole output; fused into
    the first tile level, each output tile is finished while in cache (a BERT Linear + GELU
    6.40 -> 6.15 ms). Fuse tiles parallel loops only, so the k block moves one level down."""
    base = Schedule.of([Tile((64, 64, 64), (0, 2, 1)), Tile((8, 32, 1)), Vectorize(), Hoist()])
    parent = Evaluated(base, "ok", 1.0, 10.0)
    epilogue = get_kernel("matmul_bias_relu", (256, 256, 256))
    fused = [p.schedule for p in HeuristicProposer().propose(_ctx(epilogue, base, [parent], parent), 4)
             if p.schedule.has("fuse")]
    assert fused and fused[0].tiles == (Tile((64, 64, 0), (0, 2, 1)), Tile((0, 0, 64)), Tile((8, 32, 1)))
    assert check(fused[0], epilogue) is None
    plain = get_kernel("matmul", (256, 256, 256))  # only a zero fill before it: nothing to finish in the tiles
    assert not any(p.schedule.has("fuse") for p in HeuristicProposer().propose(_ctx(plain, base, [parent], parent), 40))


def test_no_fused_epilogue_for_a_decomposed_conv():
    """decompose needs the conv's own tile levels: after fuse it failed to apply on every variant."""
    from mlir_snippets import conv_nhwc_bias_relu

    from rcompiler.kernels import kernel_from_mlir
    from rcompiler.search.edits import fused
    from rcompiler.transforms import Decompose

    conv = kernel_from_mlir(conv_nhwc_bias_relu(18, 16, 32))
    tiled = Schedule.of([Tile((1, 1, 8, 32, 1, 0, 2)), Vectorize(), Hoist()])
    assert fused(conv, tiled).tiles == (Tile((1, 1, 8, 32, 0, 0, 0)), Tile((0, 0, 0, 0, 1, 0, 2)))
    assert fused(conv, tiled.then(Decompose())) is None


def test_heuristic_repairs_a_failed_node():
    kernel = get_kernel("matmul", (256, 256, 256))
    base = Schedule.of([Tile((64, 64, 64)), Tile((8, 32, 1)), Vectorize(), Hoist()])
    failed = Evaluated(base, "timeout", None, None, "compile exceeded")
    first = HeuristicProposer().propose(_ctx(kernel, base, [failed], failed), 1)[0]
    assert first.rationale.startswith(("edit: drop", "edit: halve"))


def test_random_proposer_is_legal_new_and_seeded():
    kernel = get_kernel("conv2d", (1, 10, 18, 8, 32, 3, 3))
    a = RandomProposer().propose(_ctx(kernel), 5)
    b = RandomProposer().propose(_ctx(kernel), 5)
    assert [p.schedule.key for p in a] == [p.schedule.key for p in b]
    assert len({p.schedule.key for p in a}) == 5
    assert all(check(p.schedule, kernel) is None for p in a)
    edits = RandomProposer().propose(_ctx(kernel, a[0].schedule, seen={a[0].schedule.key}), 5)
    assert edits and all(p.rationale.startswith("random edit:") and p.parent_key == a[0].schedule.key for p in edits)


@pytest.mark.parametrize("strategy", [RandomSearch, Evolutionary])
def test_baselines_propose_legal_unique_schedules(strategy):
    kernel = get_kernel("matmul", (128, 128, 128))
    s = strategy(kernel, detect(), seed=1)
    keys = set()
    for _ in range(4):
        batch = s.ask()
        assert batch
        for p in batch:
            assert check(p.schedule, kernel) is None and p.schedule.key not in keys
            keys.add(p.schedule.key)
            s.tell(p, ev(p, 1.0 + len(keys)))


def test_evolution_breeds_from_the_fastest():
    kernel = get_kernel("matmul", (128, 128, 128))
    evo = Evolutionary(kernel, detect(), seed=0, population=4, tournament=4)
    initial = evo.ask()
    for i, p in enumerate(initial):
        evo.tell(p, ev(p, 100.0 if i == 2 else 2.0))
    children = evo.ask()
    assert children and all(c.parent_key == initial[2].schedule.key for c in children
                            if c.rationale.startswith("mutation"))


def test_with_threads_the_heuristic_first_splits_each_single_core_idea():
    kernel = get_kernel("matmul", (1024, 1024, 1024))
    singles = [s for _, s in HeuristicProposer().initial(kernel, detect(), 1)]
    ideas = [s for _, s in HeuristicProposer().initial(kernel, detect(), 2)]
    split = [s for s in ideas if s.threads == 2]
    assert len(split) >= 3 and ideas[:len(split)] == split  # split ideas lead: the answer uses both cores
    assert ideas[len(split):] == singles  # the single-core ideas stay, after them


def test_heuristic_packs_b_when_it_is_stored_n_by_k():
    hw = detect()
    linear = get_kernel("matmul_transpose_b", (128, 512, 512))
    ideas = [s for _, s in HeuristicProposer().initial(linear, hw, 1)]
    packed = [s for s in ideas if s.has("pack")]
    assert packed and ideas.index(packed[0]) <= 3 and all(check(s, linear) is None for s in packed)
    # B alone into panels (as BLAS does), and all three operands: both are measured
    assert {s.get("pack").sizes[0] == 0 for s in packed} == {True, False}
    assert not any(s.has("pack") for _, s in HeuristicProposer().initial(get_kernel("matmul", (128, 512, 512)), hw, 1))


def test_baseline_strategies_draw_their_own_schedules_from_the_whole_vocabulary():
    from rcompiler.search.baselines import Evolutionary, RandomSearch
    from rcompiler.search.mcts import MCTS
    from rcompiler.search.random_proposer import RandomProposer

    kernel, hw = get_kernel("matmul_bias_relu", (64, 96, 128)), detect()
    first = {
        "random": [p.schedule.key for p in RandomSearch(kernel, hw, 1, 0, batch=8).ask()],
        "evolutionary": [p.schedule.key for p in Evolutionary(kernel, hw, 1, 0, population=8).ask()],
        "mcts+random": [p.schedule.key for p in MCTS(kernel, hw, RandomProposer(), 1, 0, children=8).ask()],
    }
    assert all(len(v) == 8 for v in first.values())
    assert not set(first["random"]) & set(first["evolutionary"]) and not set(first["random"]) & set(first["mcts+random"])
    assert first["random"] == [p.schedule.key for p in RandomSearch(kernel, hw, 1, 0, batch=8).ask()]  # replayable
    import random

    from rcompiler.search.edits import random_schedule
    drawn = [random_schedule(kernel, random.Random(i)) for i in range(300)]
    used = {step.name for s in drawn for step in s.steps}
    assert {"pad", "pack", "fuse", "peel", "unroll", "tile", "vectorize", "hoist", "contraction", "lanes"} <= used
    assert any(step.name == "pack" and step.sizes[0] == 0 for s in drawn for step in s.steps)  # B alone
    assert all(check(s, kernel) is None for s in drawn)


def test_the_evolutionary_cost_model_is_trained_on_the_run_and_ranks_offspring(tmp_path):
    from rcompiler.db import Database
    from rcompiler.measure import Limits
    from rcompiler.search.cost_model import CostModel
    from rcompiler.search.tuner import TuneConfig, Tuner

    kernel = get_kernel("matmul", (64, 64, 64))
    result = Tuner(kernel, TuneConfig("evolutionary", budget=20, limits=Limits(min_time=0.01)),
                   Database(tmp_path / "t.db")).run()
    stats = result.strategy_stats
    assert stats["model_fits"] >= 1 and stats["ranked_by_model"] >= 1
    ranked = [s for s in result.samples if "cost model rank" in s.rationale]
    assert ranked and all(s.seq >= 8 for s in ranked)  # after the random first generation
    # The model learns: on what it was trained, it orders a fast and a naive-like schedule right.
    history = [Evaluated(s.schedule, s.status, s.seconds, s.speedup) for s in result.samples]
    model = CostModel(kernel)
    assert model.fit(history)
    ok = sorted((s for s in result.samples if s.seconds), key=lambda s: s.seconds)
    fast, slow = ok[0].schedule, ok[-1].schedule
    predicted = model.predict([fast, slow])
    assert predicted[0] < predicted[1]


def test_heuristic_vectorizes_along_k_when_both_operands_are_k_contiguous():
    hw = detect()
    linear = get_kernel("matmul_transpose_b", (32, 2816, 1024))  # a Linear layer on 32 tokens
    ideas = HeuristicProposer().initial(linear, hw, 1)
    lanes = [(why, s) for why, s in ideas if s.has("lanes")]
    assert lanes and check(lanes[0][1], linear) is None
    mr, nr, k = lanes[0][1].tiles[-1].sizes
    assert k == 0 and lanes[0][1].get("lanes").size == hw.f32_lanes
    assert mr * nr + mr + nr <= hw.vector_registers and "contiguous along k" in lanes[0][0]
    assert not any(s.has("lanes") for _, s in HeuristicProposer().initial(get_kernel("matmul", (32, 256, 64)), hw, 1))


def test_heuristic_pads_sizes_without_a_good_divisor():
    hw = detect()
    primes = get_kernel("matmul", (197, 769, 1031))
    ideas = [s for _, s in HeuristicProposer().initial(primes, hw, 1)]
    padded = [s for s in ideas if s.has("pad")]
    # The first idea: full padded tiles, not a peeled remainder of partial vectors.
    assert padded and ideas.index(padded[0]) == 0 and check(padded[0], primes) is None
    for shape in ((256, 256, 256), (240, 256, 64)):  # padded exactly when the register tile is partial
        mr, nr = register_tiles(hw, shape[0], shape[1])[0]
        proposed = any(s.has("pad") for _, s in HeuristicProposer().initial(get_kernel("matmul", shape), hw, 1))
        assert proposed == bool(shape[0] % mr or shape[1] % nr)


def test_heuristic_conv_with_a_prime_output_width_peels_full_register_tiles():
    """A stride-2 conv often leaves a prime output width (39 -> 19): its largest divisor that fits
    the register tile is 1, one pixel per tile. The first idea keeps the full tile and peels."""
    hw = detect()
    conv = get_kernel("conv2d", (1, 39, 39, 32, 64, 3, 3, 2, 1))
    (rows, _), first = register_tiles(hw, 19, 64)[0], HeuristicProposer().initial(conv, hw, 1)[0][1]
    assert first.tiles[-1].sizes[2] == rows > 1 and first.has("peel") and check(first, conv) is None
    even = HeuristicProposer().initial(get_kernel("conv2d", (1, 30, 30, 32, 32, 3, 3)), hw, 1)[0][1]
    assert 28 % even.tiles[-1].sizes[2] == 0  # a width with a fitting divisor keeps it, no remainder


def test_heuristic_proposes_im2col_only_where_upstream_applies_it():
    """Upstream's im2col rewrite refuses dilated windows: proposing it there wastes a sample."""
    hw = detect()
    for dilation, expected in ((1, True), (2, False)):
        conv = get_kernel("conv2d", (1, 30, 30, 32, 32, 3, 3, 1, dilation))
        ideas = [s for _, s in HeuristicProposer().initial(conv, hw, 1)]
        assert any(s.has("im2col") for s in ideas) is expected
        assert all(check(s, conv) is None for s in ideas)


def test_register_tiles_are_one_two_or_four_vectors_wide():
    """A row of three vectors (48 lanes with AVX-512) compiles to code 20x slower than two."""
    hw = detect()
    for rows, cols in ((1024, 1024), (56, 64), (100, 3000), (19, 48)):
        widths = {nr for _, nr in register_tiles(hw, rows, cols)}
        assert widths <= {hw.f32_lanes, 2 * hw.f32_lanes, 4 * hw.f32_lanes} | {cols}, widths


@pytest.mark.parametrize("registers", [AVX2, AVX512])
@pytest.mark.parametrize("channels,size", [(128, 30), (64, 58), (256, 16), (512, 9)])
def test_heuristic_packs_nchw_channels_into_vector_blocks_first(registers, channels, size):
    """NCHW: the first ideas pack channels into blocks of whole vectors (read in place) before the
    im2col ones (a patch-matrix copy), with a register tile of pixels x channel vectors that holds
    more accumulators than FMAs in flight and fits the register file; with none such (7 pixels
    a row), the tile with the most."""
    from mlir_snippets import conv_nchw_on_tensors

    from rcompiler.kernels import kernel_from_mlir
    from rcompiler.search.heuristic import FMAS_IN_FLIGHT

    hw = dataclasses.replace(detect(), **registers)
    conv = kernel_from_mlir(conv_nchw_on_tensors(channels, size, channels))
    ideas = [s for _, s in HeuristicProposer().initial(conv, hw, 1)]
    assert all(check(s, conv) is None for s in ideas)
    first = ideas[0]
    block, pixels = first.get("pack_channels").sizes[0], first.tiles[-1].sizes[3]
    vectors = block // hw.f32_lanes
    assert block % hw.f32_lanes == 0 and (size - 2) % pixels == 0
    assert pixels * vectors + vectors + 1 <= hw.vector_registers
    # 7 pixels by 2 vectors spill 16 AVX2 registers: then 7 by 1
    assert pixels * vectors >= FMAS_IN_FLIGHT or (pixels, vectors, size - 2) == (7, 1, 7)
    assert any(s.has("im2col") for s in ideas[1:])


def test_heuristic_packs_narrow_nchw_convs_with_im2col_only():
    from mlir_snippets import conv_nchw_on_tensors

    from rcompiler.kernels import kernel_from_mlir

    hw = detect()
    # too few output channels for a vector block: im2col only
    narrow = kernel_from_mlir(conv_nchw_on_tensors(8, 10, hw.f32_lanes // 2))
    assert not any(s.has("pack_channels") for _, s in HeuristicProposer().initial(narrow, hw, 1))


def test_random_schedules_draw_pack_channels_legally():
    from mlir_snippets import conv_nchw_on_tensors

    from rcompiler.kernels import kernel_from_mlir
    from rcompiler.search.edits import random_schedule, stream

    conv = kernel_from_mlir(conv_nchw_on_tensors(16, 10, 16))
    rng = stream("random", 0)
    drawn = [random_schedule(conv, rng) for _ in range(120)]
    packed = [s for s in drawn if s.has("pack_channels")]
    assert packed and all(check(s, conv) is None for s in packed)


def test_edits_resize_pack_channels_blocks():
    from mlir_snippets import conv_nchw_on_tensors

    from rcompiler.kernels import kernel_from_mlir
    from rcompiler.search.edits import block_edits
    from rcompiler.transforms import PackChannels

    conv = kernel_from_mlir(conv_nchw_on_tensors(16, 10, 32))
    base = Schedule.of([PackChannels((16, 8)), Tile((1, 1, 1, 4, 1, 1, 1, 0, 0)), Vectorize(), Hoist()])
    edits = {e.text: e.schedule for e in block_edits(conv, base)}
    assert {(e.kind, e.step, e.param("loop")) for e in block_edits(conv, base)} == {
        ("resize", "pack_channels", "output"), ("resize", "pack_channels", "input")}
    assert edits["halve input channel block 8->4"].get("pack_channels").sizes == (16, 4)
    assert edits["double output channel block 16->32"].get("pack_channels").sizes == (32, 8)
    assert all(check(s, conv) is None for s in edits.values())
    assert block_edits(conv, Schedule.of([Tile((1, 1, 1, 4, 1, 1, 1)), Vectorize()])) == []


def test_a_warm_start_skips_what_does_not_fit_and_takes_one_schedule_per_similar_task_first():
    from rcompiler.search.warm_start import choose
    kernel = get_kernel("matmul", (128, 128, 128))
    fits = lambda *sizes: Schedule.of([Tile(sizes)]).to_json()  # noqa: E731
    near, far = "matmul[128x128x256]", "matmul[512x512x512]"
    candidates = [(near, fits(64, 256, 0)),  # the nearest task's best: too large for n=128
                  (near, fits(32, 32, 0)), (near, fits(64, 64, 0)), (near, []),
                  (far, fits(16, 16, 0))]
    assert check(Schedule.from_json(candidates[0][1]), kernel) is not None
    assert choose(kernel, candidates) == [(near, fits(32, 32, 0)), (far, fits(16, 16, 0))]
    assert choose(kernel, candidates[:4]) == [(near, fits(32, 32, 0)), (near, fits(64, 64, 0))]


def test_a_depthwise_conv_is_vectorized_along_its_contiguous_output_dim_with_its_activation_fused():
    """Its loops run (n, oh, ow, c) but its NCHW output is contiguous along ow: the vectors go
    along ow (along c each lane would be a row apart), its window at 1, its ReLU6 fused."""
    from mlir_snippets import depthwise_nchw_relu6
    from rcompiler.kernels import kernel_from_mlir
    from rcompiler.transforms.space import plan

    kernel = kernel_from_mlir(depthwise_nchw_relu6(32, 58))
    hw = detect()
    why, first = HeuristicProposer().initial(kernel, hw, 1)[0]
    tiles = first.tiles
    assert first.has("fuse") and "fused" in why
    assert tiles[0].sizes[2] == snap(56, hw.f32_lanes) and tiles[0].sizes[3] == 1  # ow vectors, one channel
    assert tiles[-1].sizes[4:] == (1, 1)  # the window loops at 1
    assert plan(first, kernel).generalize
