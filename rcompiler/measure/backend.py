"""The backend protocol: where a study's candidates are built and timed.

As in TVM MetaSchedule, building (apply the script, lower to LLVM IR) and running (JIT,
verify, time) are separate roles, and every failure is a result, never an exception. A
backend hands out one `MeasurerBase` per kernel, which pipelines the two roles over its
own workers; the tuner and the module tuner see nothing else of it. Two backends
implement it: `LocalRunners` (this machine's worker pools, rcompiler.measure) and a Ray
cluster's `RunnerGroup` (rcompiler.cluster).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from rcompiler.hardware import Hardware
    from rcompiler.kernels.base import Kernel

    from .measurer import Limits, MeasurerBase


@runtime_checkable
class Backend(Protocol):
    """Builders and runners of one kind of hardware."""

    @property
    def hardware(self) -> "Hardware":
        """The hardware every runner of this backend has: measurements are keyed by it."""

    @property
    def parallelism(self) -> int:
        """Candidates to have in flight at once; 0: as many as the strategy asks for."""

    @property
    def parallel_tasks(self) -> int:
        """A module's tasks that may be tuned at the same time (each a study of its own)."""

    def measurer(self, kernel: "Kernel", limits: "Limits | None" = None, seed: int = 0) -> "MeasurerBase":
        """Build, verify and time candidates of `kernel` (a context manager; close it after)."""

    def progress(self) -> str:
        """A few words for a progress bar ("" when there is nothing to say)."""

    def interrupt(self, stop: BaseException | None) -> None:
        """Make studies measuring in other threads raise `stop`; None: carry on again."""

    def stats(self) -> dict:
        """What the report records of the backend (runners, their use)."""
