// A two-layer MLP as a frontend lowers it to Linalg on tensors (ONNX Gemm + Relu through
// torch-mlir): fills on tensor.empty, matmuls, bias adds with broadcast maps, ReLU as cmpf+select.
#map = affine_map<(d0, d1) -> (d0, d1)>
#map1 = affine_map<(d0, d1) -> (d1)>
module {
  func.func @main_graph(%x: tensor<64x256xf32>, %w1: tensor<256x512xf32>, %b1: tensor<512xf32>,
                        %w2: tensor<512x128xf32>, %b2: tensor<128xf32>) -> tensor<64x128xf32> {
    %cst = arith.constant 0.000000e+00 : f32
    %0 = tensor.empty() : tensor<64x512xf32>
    %1 = linalg.fill ins(%cst : f32) outs(%0 : tensor<64x512xf32>) -> tensor<64x512xf32>
    %2 = linalg.matmul ins(%x, %w1 : tensor<64x256xf32>, tensor<256x512xf32>) outs(%1 : tensor<64x512xf32>) -> tensor<64x512xf32>
    %3 = linalg.generic {indexing_maps = [#map, #map1, #map], iterator_types = ["parallel", "parallel"]} ins(%2, %b1 : tensor<64x512xf32>, tensor<512xf32>) outs(%0 : tensor<64x512xf32>) {
    ^bb0(%in: f32, %in_0: f32, %out: f32):
      %s = arith.addf %in, %in_0 : f32
      linalg.yield %s : f32
    } -> tensor<64x512xf32>
    %4 = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]} ins(%3 : tensor<64x512xf32>) outs(%0 : tensor<64x512xf32>) {
    ^bb0(%in: f32, %out: f32):
      %c = arith.cmpf ugt, %in, %cst : f32
      %r = arith.select %c, %in, %cst : f32
      linalg.yield %r : f32
    } -> tensor<64x512xf32>
    %5 = tensor.empty() : tensor<64x128xf32>
    %6 = linalg.fill ins(%cst : f32) outs(%5 : tensor<64x128xf32>) -> tensor<64x128xf32>
    %7 = linalg.matmul ins(%4, %w2 : tensor<64x512xf32>, tensor<512x128xf32>) outs(%6 : tensor<64x128xf32>) -> tensor<64x128xf32>
    %8 = linalg.generic {indexing_maps = [#map, #map1, #map], iterator_types = ["parallel", "parallel"]} ins(%7, %b2 : tensor<64x128xf32>, tensor<128xf32>) outs(%5 : tensor<64x128xf32>) {
    ^bb0(%in: f32, %in_0: f32, %out: f32):
      %s = arith.addf %in, %in_0 : f32
      linalg.yield %s : f32
    } -> tensor<64x128xf32>
    return %8 : tensor<64x128xf32>
  }
}
