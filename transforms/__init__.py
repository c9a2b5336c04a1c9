"""The transformation vocabulary: schedule steps, legality, rendering to transform IR, and lowering."""
from .lowering import MLIRFailure, apply_script, lower_to_llvm, lowering_pipeline
from .render import ModuleEntry, Script, render, render_module
from .schedule import Schedule
from .space import applicable, check, loop_nest, plan
from .steps import (CONTRACTION_STRATEGIES, STEP_TYPES, Contraction, Decompose, Fuse, Hoist, Im2col, Lanes, Pack,
                    PackChannels, Pad, Parallel, Peel, ScheduleError, Step, Tile, Unroll, Vectorize, step_from_json)

__all__ = ["MLIRFailure", "apply_script", "lower_to_llvm", "lowering_pipeline", "ModuleEntry", "Script", "render",
           "render_module", "Schedule", "applicable", "check", "loop_nest", "plan", "CONTRACTION_STRATEGIES",
           "STEP_TYPES", "Contraction", "Decompose", "Fuse", "Hoist", "Im2col", "Lanes", "Pack", "PackChannels", "Pad",
           "Parallel", "Peel", "ScheduleError", "Step", "Tile", "Unroll", "Vectorize", "step_from_json"]
