"""Each buffer of a program lives from its first use to its last, not for the whole call.

Ownership-based deallocation frees a function's buffers at the end of its block: in a
model's entry function every intermediate tensor is then alive at once (MobileNetV2: tens
of MiB, more than the last-level cache), so each task writes its output into memory that
malloc has not handed out for a whole call, out of the cache, and peak memory is the sum of
all activations. Freed right after its last use (and allocated just before its first),
a buffer's memory goes back to malloc while it is still in the cache, for the next task's
output, as ONNX Runtime's memory planner reuses its arena.
"""
from __future__ import annotations

VIEWS = ("memref.subview", "memref.cast", "memref.reinterpret_cast", "memref.collapse_shape",
         "memref.expand_shape", "memref.extract_strided_metadata", "memref.view", "memref.transpose")


def shorten_lifetimes(module) -> int:
    """Move each `memref.dealloc` up to just after the last use of its buffer (or of a view of
    it) in the buffer's block, and each static `memref.alloc` down to just before its first.
    Returns how many deallocations moved."""
    moved = 0
    for func in module.body.operations:
        if func.operation.name != "func.func" or not func.regions[0].blocks:
            continue
        for block in func.regions[0].blocks:
            moved += _shorten_in(block)
    return moved


def _shorten_in(block) -> int:
    ops = [op.operation for op in block.operations]
    position = {op: i for i, op in enumerate(ops)}
    moved = 0
    for op in ops:
        if op.name == "memref.alloc" and not list(op.operands):
            users = _users_in(op.results[0], block)
            if users and all(u is not None for u in users):
                first = min(users, key=position.__getitem__)
                if position[first] > position[op] + 1:
                    op.move_before(first)
        elif op.name == "memref.dealloc":
            buffer = op.operands[0]
            users = [u for u in _users_in(buffer, block) if u != op]
            if not users or any(u is None for u in users):
                continue
            last = max(users, key=position.__getitem__)
            if position[last] < position[op] - 1:
                op.move_after(last)
                moved += 1
    return moved


def _users_in(value, block) -> list:
    """The ops of `block` that use `value` or a view of it, directly or in their regions."""
    found, pending, seen = [], [value], set()
    while pending:
        v = pending.pop()
        for use in v.uses:
            owner = use.owner.operation
            if owner in seen:
                continue
            seen.add(owner)
            if owner.name in VIEWS:
                pending.extend(r for r in owner.results if "memref" in str(r.type))
            anchor = _ancestor_in(owner, block)
            if anchor is None:  # used outside the block (returned through a region): leave it
                return [None]
            found.append(anchor)
    return found


def _ancestor_in(op, block):
    while op is not None:
        if op.block == block:
            return op
        parent = op.parent
        op = parent.operation if parent is not None and parent.name != "builtin.module" else None
    return None
