"""A program's intermediate buffers live from their first use to their last (buffer_lifetimes.py)."""
from pathlib import Path

import pytest

from rcompiler.kernels.models import bert_ffn, resnet_block
from rcompiler.kernels.module import load_program
from rcompiler.transforms.buffer_lifetimes import VIEWS, shorten_lifetimes
from rcompiler.transforms.lowering import _stages

MLP = Path(__file__).parent / "data" / "mlp_frontend.mlir"


def _entry_after_bufferization(program):
    from mlir import ir, passmanager

    module = ir.Module.parse(program.kernel.payload)
    front, _ = _stages(1, program=True)
    passmanager.PassManager.parse("builtin.module(" + ",".join(front) + ")").run(module.operation)
    entry = next(op for op in module.body.operations if op.operation.name == "func.func"
                 and op.attributes["sym_name"].value == program.kernel.func_name)
    return module, entry


def _lifetimes(entry) -> list[tuple[int, int, int]]:
    """(alloc, last use, dealloc) positions of each buffer the entry allocates and frees."""
    ops = [op.operation for op in entry.regions[0].blocks[0].operations]
    where = {op: i for i, op in enumerate(ops)}

    def top(op):
        while op not in where:
            op = op.parent.operation
        return op

    spans = []
    for i, op in enumerate(ops):
        if op.name != "memref.alloc":
            continue
        users, pending = [], [op.results[0]]
        while pending:
            for use in pending.pop().uses:
                user = use.owner.operation
                if user.name in VIEWS:
                    pending.extend(r for r in user.results if "memref" in str(r.type))
                users.append(where[top(user)])
        frees = [u for u in users if ops[u].name == "memref.dealloc"]
        if frees:
            spans.append((i, max(u for u in users if ops[u].name != "memref.dealloc"), frees[0]))
    return spans


@pytest.mark.parametrize("text", [MLP.read_text(), resnet_block(8, 8), bert_ffn(8, 16, 32)],
                         ids=["mlp", "resnet block", "bert ffn"])
def test_each_intermediate_is_freed_right_after_its_last_use(text):
    from mlir import ir

    program = load_program(text)
    with ir.Context():
        _check(*_entry_after_bufferization(program))


def _check(module, entry):
    n = len(list(entry.regions[0].blocks[0]))
    before = _lifetimes(entry)
    # As deallocation places them: every free at the end, before the return.
    assert before and sorted(f for *_, f in before) == list(range(n - 1 - len(before), n - 1))
    moved = shorten_lifetimes(module)
    module.operation.verify()
    after = _lifetimes(entry)
    assert moved >= 1 and len(after) == len(before)  # every buffer is still freed, once
    for alloc, last, free in after:
        assert alloc < last < free and free == last + 1  # freed by the op after its last user
    # At most the buffers a task reads and writes are alive at once, not every intermediate.
    alive = max(sum(a <= i <= f for a, _, f in after) for i in range(n))
    assert alive < len(after) or len(after) <= 2, (alive, after)

