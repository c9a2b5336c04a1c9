// Packs the matmul and stops: linalg.pack on buffers has no lowering in the pipeline.
module attributes {transform.with_named_sequence} {
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {
    %mm = transform.structured.match ops{["linalg.matmul"]} in %root : (!transform.any_op) -> !transform.any_op
    %packed = transform.structured.pack %mm packed_sizes = [8, 16, 4] : (!transform.any_op) -> !transform.any_op
    transform.yield
  }
}
