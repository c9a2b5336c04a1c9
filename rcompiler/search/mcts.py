"""Monte Carlo tree search over schedules.

A node is a schedule; its children extend or edit it as a proposer suggests.
Selection walks down by UCT while a node has had its share of expansions
(progressive widening: a node visited v times may be expanded 1 + sqrt(v)/2
times); expansion asks the proposer for a few children at once; every child is
measured for real, and its reward, log2 of the speedup over the naive
lowering (0 for a failure), is backed up to the root. A node's value mixes the
mean and the best reward below it, normalised by the best reward so far.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from rcompiler.hardware import Hardware
from rcompiler.kernels.base import Kernel
from rcompiler.transforms import Schedule

from .context import Evaluated, Proposal, ProposalContext, Proposer
from .edits import stream


@dataclass(eq=False)
class Node:
    schedule: Schedule
    parent: "Node | None" = None
    result: Evaluated | None = None
    children: list["Node"] = field(default_factory=list)
    visits: int = 0
    total: float = 0.0
    best: float = 0.0
    expansions: int = 0
    exhausted: bool = False  # the proposer had nothing new to offer

    def path(self) -> list["Node"]:
        node, out = self, []
        while node is not None:
            out.append(node)
            node = node.parent
        return out[::-1]


def reward(result: Evaluated) -> float:
    return max(0.0, math.log2(result.speedup)) if result.ok and result.speedup else 0.0


class MCTS:
    name = "mcts"

    def __init__(self, kernel: Kernel, hardware: Hardware, proposer: Proposer, threads: int = 1,
                 seed: int = 0, exploration: float = 1.0, children: int = 4):
        self.kernel, self.hardware, self.proposer = kernel, hardware, proposer
        self.threads, self.exploration, self.children = threads, exploration, children
        self.rng = stream(f"mcts+{getattr(proposer, 'name', 'proposer')}", seed)
        self.root = Node(Schedule())
        self.nodes: dict[str, Node] = {}
        self.pending: dict[str, Node] = {}  # proposal key -> parent node
        self.history: list[Evaluated] = []
        self.max_reward = 1e-9

    # -- ask / tell ------------------------------------------------------------
    def ask(self) -> list[Proposal]:
        for _ in range(8):  # a few tries: exhausted nodes are skipped next time
            node = self.select()
            if node is None:
                return []
            proposals = self.proposer.propose(self.context(node), self.children)
            node.expansions += 1
            if not proposals:
                node.exhausted = True
                continue
            for p in proposals:
                self.pending[p.schedule.key] = node
            return proposals
        return []

    def tell(self, proposal: Proposal, result: Evaluated) -> None:
        parent = self.pending.pop(proposal.schedule.key, None) or self.root
        child = Node(proposal.schedule, parent, result)
        parent.children.append(child)
        self.nodes[proposal.schedule.key] = child
        self.history.append(result)
        r = reward(result)
        self.max_reward = max(self.max_reward, r)
        for node in child.path():
            node.visits += 1
            node.total += r
            node.best = max(node.best, r)

    # -- tree policy -------------------------------------------------------------
    def select(self) -> Node | None:
        node = self.root
        while True:
            if not node.exhausted and node.expansions < self.allowed_expansions(node):
                return node
            live = [c for c in node.children if not (c.exhausted and not c.children)]
            if not live:
                if node is self.root:
                    return None if node.exhausted else node
                node.exhausted = True
                node = self.root
                continue
            node = max(live, key=lambda c: self.uct(c, node))

    @staticmethod
    def allowed_expansions(node: Node) -> int:
        return 1 + int(math.sqrt(node.visits) / 2)

    def value(self, node: Node) -> float:
        if not node.visits:
            return 0.0
        return (0.5 * node.total / node.visits + 0.5 * node.best) / self.max_reward

    def uct(self, child: Node, parent: Node) -> float:
        explore = self.exploration * math.sqrt(math.log(parent.visits + 1) / (child.visits + 1))
        return self.value(child) + explore

    def context(self, node: Node) -> ProposalContext:
        path = node.path()
        ancestors = [n.result for n in path[1:-1] if n.result]
        siblings = [c.result for c in node.children if c.result]
        measured = [e for e in self.history if e.ok]
        best = min(measured, key=lambda e: e.seconds) if measured else None
        seen = {e.schedule.key for e in self.history} | set(self.pending)
        return ProposalContext(self.kernel, self.hardware, node.schedule, node.result, ancestors, siblings,
                               self.history, best, self.threads, seen, self.rng)
