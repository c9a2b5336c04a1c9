"""Build, verify and time candidates in isolated worker processes."""
from .measurer import Candidate, Limits, LocalRunners, Measurer, MeasurerBase, WorkerPoolError
from .results import Measurement, Status, Timing

__all__ = ["Candidate", "Limits", "LocalRunners", "Measurer", "MeasurerBase", "WorkerPoolError", "Measurement", "Status", "Timing"]
