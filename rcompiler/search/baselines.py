"""Baseline strategies at the same sample budget: random search and an
evolutionary search in the style of TVM MetaSchedule (population, mutation of
parameters, crossover, selection by measured speed, and a learned cost model
that ranks the offspring before they are measured)."""
from __future__ import annotations

import numpy as np

from rcompiler.hardware import Hardware
from rcompiler.kernels.base import Kernel
from rcompiler.transforms import Schedule, Tile, check

from .context import Evaluated, Proposal
from .cost_model import CostModel
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
    """Evolution as in TVM MetaSchedule: a random first generation, then each generation breeds
    many mutants and crossovers, a cost model trained on the measurements so far ranks them,
    and the best predicted (plus a few at random, to keep exploring) are measured."""

    name = "evolutionary"

    def __init__(self, kernel: Kernel, hardware: Hardware, threads: int = 1, seed: int = 0,
                 population: int = 8, tournament: int = 3, crossover: float = 0.25, breed: int = 8,
                 explore: float = 0.25):
        self.kernel, self.threads = kernel, threads
        self.population, self.tournament, self.crossover = population, tournament, crossover
        self.breed, self.explore = breed, explore
        self.rng = stream(self.name, seed)
        self.seen: set[str] = set()
        self.measured: list[Evaluated] = []
        self.model = CostModel(kernel, seed)
        self.stats = {"model_fits": 0, "ranked_by_model": 0, "explored": 0}

    def ask(self) -> list[Proposal]:
        if len(self.measured) < self.population:  # generation 0: random individuals
            fresh = fresh_random_schedules(self.kernel, self.rng, self.population - len(self.measured), self.seen,
                                           self.threads)
            return [Proposal(s, "initial population", "evolutionary") for s in fresh]
        want = self.population // 2
        pool: dict[str, tuple[str, Schedule, str]] = {}
        for _ in range(20 * self.breed * want):
            child = self._offspring()
            if child is not None and child[1].key not in self.seen:
                pool.setdefault(child[1].key, child)
            if len(pool) >= self.breed * want:
                break
        chosen = self._choose(list(pool.values()), want)
        for _, schedule, _ in chosen:
            self.seen.add(schedule.key)
        return [Proposal(s, why, "evolutionary", parent) for why, s, parent in chosen]

    def _choose(self, pool: list, want: int) -> list:
        """The cost model's favourites, and a share picked at random."""
        if len(pool) <= want:
            return pool
        if self.model.trained_on < len(self.measured) and self.model.fit(self.measured):
            self.stats["model_fits"] += 1
        if self.model.model is None:
            return self.rng.sample(pool, want)
        predicted = self.model.predict([s for _, s, _ in pool])
        ranked = [pool[i] for i in np.argsort(predicted, kind="stable")]
        explore = sum(self.rng.random() < self.explore for _ in range(want))
        best = ranked[: want - explore]
        rest = ranked[want - explore:]
        picked = best + self.rng.sample(rest, explore)
        self.stats["ranked_by_model"] += len(best)
        self.stats["explored"] += explore
        rank = {c[1].key: r for r, c in enumerate(ranked)}
        return [(f"{why} (cost model rank {rank[s.key] + 1} of {len(pool)})", s, parent) for why, s, parent in picked]

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
        edit = self.rng.choice(edits)
        return f"mutation: {edit.text}", edit.schedule, a.schedule.key
