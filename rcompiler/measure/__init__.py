"""Build, verify and time candidates in isolated worker processes."""
from .measurer import Candidate, Limits, Measurer
from .results import Measurement, Status, Timing

__all__ = ["Candidate", "Limits", "Measurer", "Measurement", "Status", "Timing"]
