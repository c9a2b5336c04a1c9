"""Build, verify and time candidates in isolated worker processes."""
from .measurer import Candidate, Limits, Measurer, WorkerPoolError
from .results import Measurement, Status, Timing

__all__ = ["Candidate", "Limits", "Measurer", "WorkerPoolError", "Measurement", "Status", "Timing"]
