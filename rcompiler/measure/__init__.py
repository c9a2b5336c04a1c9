"""Build, verify and time candidates in isolated worker processes."""
from .backend import Backend
from .measurer import Candidate, Limits, LocalRunners, Measurer, MeasurerBase, WorkerPoolError
from .results import Measurement, Status, Timing

__all__ = ["Backend", "Candidate", "Limits", "LocalRunners", "Measurer", "MeasurerBase", "WorkerPoolError",
           "Measurement", "Status", "Timing"]
