"""Which task of a module gets the next round of samples.

Every task first gets `warmup` rounds, in module order. After that the round goes
to the task whose next round is expected to cut the most end-to-end time, as
TVM's gradient task scheduler (Ansor, OSDI 2020, section 6) estimates it:
weight x (how much its best time fell over the last `window` rounds, per round),
plus an optimistic share of its current time that shrinks with the rounds it has
had, so a task that has stalled early is not starved forever.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TaskState:
    weight: int  # occurrences in the module
    best: list[float] = field(default_factory=list)  # best time after each round (naive before any)
    done: bool = False  # stopped, or nothing left to propose

    @property
    def rounds(self) -> int:
        return max(0, len(self.best) - 1)


class TaskScheduler:
    def __init__(self, weights: list[int], naive: list[float], warmup: int = 1, window: int = 3,
                 optimism: float = 0.5):
        self.tasks = [TaskState(w, [t]) for w, t in zip(weights, naive)]
        self.warmup, self.window, self.optimism = warmup, window, optimism

    def tell(self, task: int, best_seconds: float | None, done: bool = False) -> None:
        state = self.tasks[task]
        state.best.append(min(state.best[-1], best_seconds) if best_seconds else state.best[-1])
        state.done = state.done or done

    def gain(self, task: int) -> float:
        """Expected end-to-end seconds saved by one more round of `task`."""
        s = self.tasks[task]
        w = min(self.window, s.rounds)
        backward = (s.best[-1 - w] - s.best[-1]) / w if w else 0.0
        return s.weight * (backward + self.optimism * s.best[-1] / (1 + s.rounds))

    def next(self, busy: set[int] = frozenset()) -> int | None:
        """The task for the next round, or None when every task is done (or `busy`: tuned now,
        when a cluster tunes several at once)."""
        live = [i for i, s in enumerate(self.tasks) if not s.done and i not in busy]
        if not live:
            return None
        warming = [i for i in live if self.tasks[i].rounds < self.warmup]
        if warming:
            return warming[0]
        return max(live, key=lambda i: (self.gain(i), -self.tasks[i].rounds))
