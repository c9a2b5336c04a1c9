"""Warm starts: a task's first children include the best schedules of similar tasks.

A model holds many tasks of one kind (twenty NCHW convs of five shapes, a dozen identical
Linear layers in each of several widths). The best schedule of one is a good first guess
for its neighbours: same ops, nearby loop sizes, the same hardware. Those found in the
database (any earlier study) or among the tasks already tuned in this run are offered,
nearest shape first, as the root's first children, beside the proposer's own first ideas;
what does not fit the new shape is dropped by the legality check. The list is chosen once
per study and stored with it, so a resumed study replays the same search.
"""
from __future__ import annotations

import math

from rcompiler.kernels.base import Kernel
from rcompiler.transforms import Schedule, check

from .context import Proposal, ProposalContext

MOST = 2  # transferred schedules among the root's first children


INITS = {"fill", "copy", "broadcast"}


def family(label: str) -> str:
    """What makes tasks similar: their main op (the first that is not an init: a conv with ReLU
    and one with a residual add and ReLU are alike), and how many loops it has."""
    ops, _, sizes = label.partition("[")
    main = next((op for op in ops.split("+") if op not in INITS), ops)
    return f"{main}/{sizes.count('x') + 1}"


def distance(a: str, b: str) -> float:
    """How far apart two tasks' loop sizes are (log scale; sizes read from their labels)."""
    sa, sb = (tuple(int(x) for x in s.partition("[")[2].rstrip("]").split("x")) for s in (a, b))
    return sum(abs(math.log(x / y)) for x, y in zip(sa, sb))


def choose(kernel: Kernel, candidates: list[tuple[str, list]]) -> list[tuple[str, list]]:
    """The legal transfers for `kernel` from (label, schedule JSON) candidates (each task's
    fastest first): nearest task first, one per task before a second from the same."""
    legal, seen = [], set()
    for label, steps in sorted(candidates, key=lambda c: distance(kernel.label, c[0])):
        schedule = Schedule.from_json(steps)
        if schedule.steps and schedule.key not in seen and check(schedule, kernel) is None:
            seen.add(schedule.key)
            legal.append((label, steps))
    firsts, seconds = [], []
    for c in legal:
        (seconds if any(c[0] == f[0] for f in firsts) else firsts).append(c)
    return (firsts + seconds)[:MOST]


class WarmStart:
    """A proposer whose root children start with transferred schedules."""

    def __init__(self, inner, transfers: list[tuple[str, list]]):
        self.inner, self.name = inner, inner.name
        self.transfers = [(label, Schedule.from_json(steps)) for label, steps in transfers]

    def propose(self, ctx: ProposalContext, k: int) -> list[Proposal]:
        if ctx.schedule.steps:
            return self.inner.propose(ctx, k)
        out = [Proposal(s, f"the best schedule of the similar task {label}", self.name, None)
               for label, s in self.transfers if s.key not in ctx.seen][:k]
        ctx.seen |= {p.schedule.key for p in out}
        return out + self.inner.propose(ctx, k - len(out)) if len(out) < k else out

    def __getattr__(self, name):  # stats, close, ... of the proposer it wraps
        return getattr(self.inner, name)
