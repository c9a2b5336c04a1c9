"""What a proposer sees when asked for children of a node, and what it answers."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

from rcompiler.hardware import Hardware
from rcompiler.kernels.base import Kernel
from rcompiler.transforms import Schedule

from .edits import Edit


@dataclass(frozen=True)
class Evaluated:
    """A measured schedule, as proposers read it."""

    schedule: Schedule
    status: str
    seconds: float | None
    speedup: float | None  # over the naive lowering
    reason: str = ""
    rationale: str = ""
    parent_key: str | None = None
    edit: Edit | None = None  # the edit of its parent that made it, if one did

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe(self) -> str:
        result = f"{self.speedup:.1f}x over naive" if self.ok and self.speedup else f"{self.status}: {self.reason[:160]}"
        return f"{self.schedule} -> {result}"


@dataclass(frozen=True)
class Proposal:
    schedule: Schedule
    rationale: str
    proposer: str
    parent_key: str | None = None
    edit: Edit | None = None  # the edit of its parent that makes it, if one does


@dataclass
class ProposalContext:
    kernel: Kernel
    hardware: Hardware
    schedule: Schedule  # the node to extend
    result: Evaluated | None  # the node's own measurement (None for the root)
    ancestors: list[Evaluated]  # root first
    siblings: list[Evaluated]  # children of this node measured so far
    history: list[Evaluated]  # everything measured in this study, in order
    best: Evaluated | None
    threads: int
    seen: set[str]  # schedule keys already sampled: propose something new
    rng: random.Random = field(default_factory=random.Random)


class Proposer(Protocol):
    name: str

    def propose(self, ctx: ProposalContext, k: int) -> list[Proposal]:
        """Up to k new legal schedules extending or editing ctx.schedule."""
        ...
