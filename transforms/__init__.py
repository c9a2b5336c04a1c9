"""The transformation vocabulary: schedule steps, rendering to transform IR, and lowering."""
from .lowering import MLIRFailure, apply_script, lower_to_llvm, lowering_pipeline

__all__ = ["MLIRFailure", "apply_script", "lower_to_llvm", "lowering_pipeline"]
