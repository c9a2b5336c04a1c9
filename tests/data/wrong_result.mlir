// Runs a pass that computes the f32 arithmetic in bf16: it compiles and runs,
// but loses most of the mantissa, as a miscompiling transformation would.
module attributes {transform.with_named_sequence} {
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {
    %f = transform.structured.match ops{["func.func"]} in %root : (!transform.any_op) -> !transform.any_op
    %mm = transform.structured.match ops{["linalg.matmul"]} in %root : (!transform.any_op) -> !transform.any_op
    %g = transform.structured.generalize %mm : (!transform.any_op) -> !transform.any_op
    %f2 = transform.apply_registered_pass "arith-emulate-unsupported-floats" with options = { "source-types" = ["f32"], "target-type" = "bf16" } to %f : (!transform.any_op) -> !transform.any_op
    transform.yield
  }
}
