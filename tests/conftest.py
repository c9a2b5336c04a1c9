import pytest

from rcompiler.measure import Limits, Measurer


@pytest.fixture
def measure_with():
    """Open Measurers for kernels; all are closed at the end of the test."""
    opened = []

    def make(kernel, **limits):
        m = Measurer(kernel, Limits(**({"min_time": 0.01} | limits)))
        opened.append(m)
        return m

    yield make
    for m in opened:
        m.close()
