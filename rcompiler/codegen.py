"""The version of the code a schedule compiles to.

Measurements are stored under the kernel's fingerprint, which includes this version: bump it
whenever rendering or lowering changes the code a schedule produces, so a database never
replays a timing of code that is no longer generated (its old studies stay, unused).
"""

# 2: multiply-add pairs carry the contract flag, so LLVM fuses them into FMAs.
# 3: padded tensors (a pad step's operands, a module entry's tensor.pad) are filled and copied row
#    by row (memcpy), not by the runtime's element-wise strided copy.
# 4: leading unit dims are cast away from every vector before hoisting, so a decomposed conv's
#    accumulators stay in registers across its reduction loops.
VERSION = 4
