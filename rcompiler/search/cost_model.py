"""A learned cost model for the evolutionary baseline, as TVM MetaSchedule uses one: gradient
boosted trees (XGBoost) trained on the run's own measurements, ranking candidates before any
of them is measured.

Features are read from the schedule's decisions, per loop of the kernel's nest and per tile
level (log2 of each tile size, whether the loop is tiled, its position in the level's loop
order), plus the steps present, the contraction lowering, unroll factor, layout step sizes
and threads. The target is log(seconds); a failed candidate counts as much slower than the
slowest measured one, so the model learns to avoid what fails.
"""
from __future__ import annotations

import math

import numpy as np

from rcompiler.kernels.base import Kernel
from rcompiler.transforms import CONTRACTION_STRATEGIES, STEP_TYPES, Schedule, loop_nest

from .context import Evaluated

LEVELS = 3  # tile levels described; deeper ones are rare
MIN_TRAINING = 8  # samples before the model is trusted
FAILURE_PENALTY = math.log(8.0)  # a failure scores as 8x slower than the slowest success


class CostModel:
    def __init__(self, kernel: Kernel, seed: int = 0):
        self.kernel = kernel
        self.loops = len(loop_nest(kernel).extents)
        self.seed = seed
        self.model = None
        self.trained_on = 0

    def features(self, schedule: Schedule) -> np.ndarray:
        n = self.loops
        out: list[float] = []
        tiles = schedule.tiles
        for level in range(LEVELS):
            tile = tiles[level] if level < len(tiles) else None
            sizes = list(tile.sizes) if tile is not None else []
            order = list(tile.interchange) if tile is not None and tile.interchange is not None else list(range(len(sizes)))
            for loop in range(max(n, len(sizes))):
                size = sizes[loop] if loop < len(sizes) else 0
                out += [math.log2(size) if size else -1.0, float(size > 0),
                        float(order.index(loop)) if loop in order else -1.0]
        width = 3 * LEVELS * n
        out = (out + [0.0] * width)[:width]  # a packed nest has more loops: keep the vector's length
        out += [float(schedule.has(name)) for name in STEP_TYPES]
        strategy = schedule.get("contraction").strategy if schedule.has("contraction") else "outerproduct"
        out += [float(strategy == s) for s in CONTRACTION_STRATEGIES]
        unroll = schedule.get("unroll")
        out.append(math.log2(unroll.factor) if unroll is not None else 0.0)
        layout = schedule.get("pack") or schedule.get("pad")
        params = list(getattr(layout, "sizes", None) or getattr(layout, "multiples", None) or ())
        out += [math.log2(p) if p else 0.0 for p in (params + [0, 0, 0])[:3]]
        out.append(float(len(tiles)))
        out.append(float(schedule.threads))
        return np.asarray(out, dtype=np.float32)

    def fit(self, history: list[Evaluated]) -> bool:
        """Train on every measurement so far; False while there are too few to trust."""
        ok = [e.seconds for e in history if e.ok and e.seconds]
        if len(history) < MIN_TRAINING or len(ok) < 2:
            return False
        import xgboost

        worst = math.log(max(ok)) + FAILURE_PENALTY
        x = np.stack([self.features(e.schedule) for e in history])
        y = np.asarray([math.log(e.seconds) if e.ok and e.seconds else worst for e in history], dtype=np.float32)
        params = {"max_depth": 4, "eta": 0.2, "subsample": 0.9, "seed": self.seed, "nthread": 1, "verbosity": 0,
                  "objective": "reg:squarederror"}
        self.model = xgboost.train(params, xgboost.DMatrix(x, label=y), num_boost_round=60)
        self.trained_on = len(history)
        return True

    def predict(self, schedules: list[Schedule]) -> np.ndarray:
        """Predicted log(seconds) of each schedule (lower is faster)."""
        if self.model is None:
            raise RuntimeError("the cost model is not trained yet")
        import xgboost

        return self.model.predict(xgboost.DMatrix(np.stack([self.features(s) for s in schedules])))
