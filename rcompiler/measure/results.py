"""Measurement outcomes as data: one bad candidate is a record, never an exception."""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field


class Status(str, enum.Enum):
    OK = "ok"
    APPLY_ERROR = "apply_error"      # the transform script failed (e.g. could not vectorize)
    LOWER_ERROR = "lower_error"      # transformed IR did not lower to LLVM
    JIT_ERROR = "jit_error"          # LLVM could not compile it
    CRASH = "crash"                  # the worker died (segfault, abort)
    TIMEOUT = "timeout"              # compile or run time limit exceeded
    WRONG_RESULT = "wrong_result"    # ran, but disagrees with the reference


@dataclass
class BuildResult:
    """What the builder hands the runner: LLVM-dialect IR, or why there is none."""

    status: Status
    llvm_ir: str | None = None
    reason: str = ""
    seconds: float = 0.0


@dataclass
class Timing:
    """Per-run times in seconds over `repeats` runs after warm-up."""

    min: float
    median: float
    repeats: int

    @property
    def spread(self) -> float:
        """(median - min) / min: how noisy this measurement was."""
        return (self.median - self.min) / self.min if self.min > 0 else 0.0


@dataclass
class Measurement:
    status: Status
    timing: Timing | None = None
    reason: str = ""
    max_error: float | None = None
    build_seconds: float = 0.0
    run_seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def seconds(self) -> float | None:
        return self.timing.min if self.timing else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["status"] = self.status.value
        if self.timing:
            d["timing"]["spread"] = self.timing.spread
        return d
