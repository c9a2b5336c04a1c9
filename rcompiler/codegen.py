"""The version of the code a schedule compiles to.

Measurements are stored under the kernel's fingerprint, which includes this version: bump it
whenever rendering or lowering changes the code a schedule produces, so a database never
replays a timing of code that is no longer generated (its old studies stay, unused).
A change that only touches payloads holding some op bumps that op's entry in OP_VERSIONS
instead (a text the payload holds: an op name, or a generic's "reduction" iterator), so the
measurements of every other kernel stay valid.
"""

# 2: multiply-add pairs carry the contract flag, so LLVM fuses them into FMAs.
# 3: padded tensors (a pad step's operands, a module entry's tensor.pad) are filled and copied row
#    by row (memcpy), not by the runtime's element-wise strided copy.
# 4: leading unit dims are cast away from every vector before hoisting, so a decomposed conv's
#    accumulators stay in registers across its reduction loops.
# 5: an output materialized from a tensor.empty is written in place (empty tensors eliminated,
#    no temporary and copy); a windowed op (depthwise conv, 2-D conv, pooling) whose window the
#    innermost tile leaves at 1 is vectorized as a generic instead of staying scalar; a fused
#    consumer of an op whose loops run in another order than its output is tiled by the right sizes.
# 6: a pack step lays B's panels out n block by n block, each one contiguous run along k (they
#    were packed k-major, in B's own order: a copy with the same strides as B).
VERSION = 6

# Each op's entry, with what each bump changed (the order is part of the fingerprint text):
OP_VERSIONS = {
    "math.exp": 1,  # 1: f32 exp is a polynomial that vectorizes, not one libm call per lane (fast_math.py)
    # 1: lowered to libm (it failed to JIT); 2: an f32 polynomial that vectorizes;
    # 3: its tail is 1 - exp(L(|x|)), with no division and no special cases in that exp
    "math.erf": 3,
    # 1: lowered to libm calls (convert-math-to-libm); they failed to JIT
    "math.erfc": 1, "math.cbrt": 1, "math.asinh": 1, "math.acosh": 1, "math.atanh": 1,
    "math.tanh": 1,  # 1: an f32 polynomial that vectorizes, not one libm call per element
    '"reduction"': 1,  # a generic reduction (its iterator list); 1: its lane reductions are reassociated
    # a program of outlined tasks (kernels/module.py); 1: each task stays a function of its own,
    # called with its output buffers and not inlined; 2: each intermediate buffer is freed after its
    # last use, not at the end of the call (transforms/buffer_lifetimes.py)
    "@task_": 2,
}


def version(payload: str) -> str:
    """The codegen version of this payload: VERSION, plus the version of each op it holds
    whose code generation changed on its own."""
    return str(VERSION) + "".join(f"+{op} {v}" for op, v in OP_VERSIONS.items() if op in payload)
