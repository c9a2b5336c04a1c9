"""Run a module once, naively, in a worker process, and return what it computes (used to
fold a model's constant sub-graphs when it is loaded)."""
from __future__ import annotations

import numpy as np

from rcompiler.kernels import KernelError, kernel_from_mlir

from .measurer import Candidate, Limits, Measurer


def evaluate(text: str) -> list[np.ndarray]:
    """The results of `text`'s entry function (its inputs, if any, are test values)."""
    kernel = kernel_from_mlir(text, name="constants")
    with Measurer(kernel, Limits(min_time=0.0)) as measurer:
        m = measurer.measure(Candidate(None), verify=False, return_outputs=True)
    if not m.ok:
        raise KernelError(f"computing the model's constants failed: {m.status.value}: {m.reason}")
    return m.extra["outputs"]
