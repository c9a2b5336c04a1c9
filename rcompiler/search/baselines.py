"""Baseline strategies at the same sample budget: random search and an
evolutionary search in the style of TVM MetaSchedule (population, mutation of
parameters, crossover, selection by measured speed)."""
from __future__ import annotations

from rcompiler.hardware import Hardware
from rcompiler.kernels.base import Kernel
from rcompiler.transforms import Schedule, Tile, check

from .context import Evaluated, Proposal
from .edits import all_edits, fresh_random_schedules, legal, stream


class RandomSearch:
    name = "random"

    def __init__(self, kernel: Kernel, hardware: Hardware, threads: int = 1, seed: int = 0, batch: int = 4):
        self.kernel, self.threads, self.batch = kernel, threads, batch
        self.rng = stream(self.name, seed)
        self.seen: set[str] = set()

    def ask(self) -> list[Proposal]:
        return [Proposal(s, "random schedule", "random")
                for s in fresh_random_schedules(self.kernel, self.rng, self.batch, self.seen, self.threads)]

    def tell(self, proposal: Proposal, result: Evaluated) -> None:
        self.seen.add(proposal.schedule.key)


class Evolutionary:
    name = "evolutionary"

    def __init__(self, kernel: Kernel, hardware: Hardware, threads: int = 1, seed: int = 0,
                 population: int = 8, tournament: int = 3, crossover: float = 0.25):
        self.kernel, self.threads = kernel, threads
        self.population, self.tournament, self.crossover = population, tournament, crossover
        self.rng = stream(self.name, seed)
        self.seen: set[str] = set()
        self.measured: list[Evaluated] = []

    def ask(self) -> list[Proposal]:
        if len(self.measured) < self.population:  # generation 0: random individuals
            fresh = fresh_random_schedules(self.kernel, self.rng, self.population - len(self.measured), self.seen,
                                           self.threads)
            return [Proposal(s, "initial population", "evolutionary") for s in fresh]
        out = []
        for _ in range(20 * self.population):
            child = self._offspring()
            if child is not None and child[1].key not in self.seen:
                self.seen.add(child[1].key)
                out.append(Proposal(child[1], child[0], "evolutionary", child[2]))
            if len(out) == self.population // 2:
                break
        return out

    def tell(self, proposal: Proposal, result: Evaluated) -> None:
        self.seen.add(proposal.schedule.key)
        self.measured.append(result)

    def _select(self) -> Evaluated:
        """Tournament selection by measured time; failures lose every tournament."""
        elite = sorted(self.measured, key=lambda e: e.seconds if e.ok else float("inf"))[: 2 * self.population]
        contenders = self.rng.sample(elite, min(self.tournament, len(elite)))
        return min(contenders, key=lambda e: e.seconds if e.ok else float("inf"))

    def _offspring(self):
        a = self._select()
        if self.rng.random() < self.crossover:
            b = self._select()
            child = Schedule.of([s for s in b.schedule.steps if not isinstance(s, Tile)] + list(a.schedule.tiles))
            if child.key not in self.seen and check(child, self.kernel) is None:
                return "crossover: tiles of one parent, other steps of another", child, a.schedule.key
        edits = legal(self.kernel, all_edits(self.kernel, a.schedule, self.threads, self.rng), self.seen)
        if not edits:
            return None
        desc, child = self.rng.choice(edits)
        return f"mutation: {desc}", child, a.schedule.key
