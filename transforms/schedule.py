"""A schedule: an ordered tuple of steps with one canonical form and a stable hash."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterable

from .steps import ScheduleError, Step, Tile, step_from_json


@dataclass(frozen=True)
class Schedule:
    steps: tuple[Step, ...] = ()

    @staticmethod
    def of(steps: Iterable[Step]) -> "Schedule":
        """The canonical schedule: steps in phase order (tile levels keep their order),
        one of each non-tile step (the last one given wins)."""
        steps = list(steps)
        singles: dict[str, Step] = {}
        tiles: list[Step] = []
        for s in steps:
            if not isinstance(s, Step):
                raise ScheduleError(f"not a step: {s!r:.60}")
            if isinstance(s, Tile):
                tiles.append(s)
            else:
                singles[s.name] = s
        ordered = sorted(list(singles.values()) + tiles, key=lambda s: s.phase)  # stable: tiles keep order
        return Schedule(tuple(ordered))

    def then(self, *steps: Step) -> "Schedule":
        return Schedule.of(self.steps + steps)

    def without(self, name: str) -> "Schedule":
        return Schedule.of(s for s in self.steps if s.name != name)

    def has(self, name: str) -> bool:
        return any(s.name == name for s in self.steps)

    def get(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    @property
    def threads(self) -> int:
        """Threads the schedule runs on: its parallel step's, else one."""
        par = self.get("parallel")
        return par.threads if par else 1

    @property
    def tiles(self) -> tuple[Tile, ...]:
        return tuple(s for s in self.steps if isinstance(s, Tile))

    def to_json(self) -> list[dict]:
        return [s.to_json() for s in self.steps]

    @staticmethod
    def from_json(data) -> "Schedule":
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as err:
                raise ScheduleError(f"schedule is not valid JSON: {err}") from None
        if not isinstance(data, list):
            raise ScheduleError("a schedule is a list of steps")
        return Schedule.of(step_from_json(d) for d in data)

    @property
    def key(self) -> str:
        """Stable hash of the canonical JSON: identical schedules are measured once."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __str__(self) -> str:
        return " ; ".join(str(s) for s in self.steps) if self.steps else "(no transforms)"

    def __len__(self) -> int:
        return len(self.steps)
