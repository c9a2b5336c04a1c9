// A single-head attention block as a frontend lowers it to Linalg on tensors: Q, K, V
// projections, a linalg.transpose of K, scores, a scale, softmax as max-reduce /
// sub-exp / sum-reduce / divide generics, the weighted sum, an output projection and
// a residual add.
#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0)>
module {
  func.func @attention(%x: tensor<128x256xf32>, %wq: tensor<256x256xf32>, %wk: tensor<256x256xf32>,
                       %wv: tensor<256x256xf32>, %wo: tensor<256x256xf32>) -> tensor<128x256xf32> {
    %zero = arith.constant 0.000000e+00 : f32
    %ninf = arith.constant 0xFF800000 : f32
    %scale = arith.constant 6.250000e-02 : f32
    %e0 = tensor.empty() : tensor<128x256xf32>
    %f0 = linalg.fill ins(%zero : f32) outs(%e0 : tensor<128x256xf32>) -> tensor<128x256xf32>
    %q = linalg.matmul ins(%x, %wq : tensor<128x256xf32>, tensor<256x256xf32>) outs(%f0 : tensor<128x256xf32>) -> tensor<128x256xf32>
    %e1 = tensor.empty() : tensor<128x256xf32>
    %f1 = linalg.fill ins(%zero : f32) outs(%e1 : tensor<128x256xf32>) -> tensor<128x256xf32>
    %k = linalg.matmul ins(%x, %wk : tensor<128x256xf32>, tensor<256x256xf32>) outs(%f1 : tensor<128x256xf32>) -> tensor<128x256xf32>
    %e2 = tensor.empty() : tensor<128x256xf32>
    %f2 = linalg.fill ins(%zero : f32) outs(%e2 : tensor<128x256xf32>) -> tensor<128x256xf32>
    %v = linalg.matmul ins(%x, %wv : tensor<128x256xf32>, tensor<256x256xf32>) outs(%f2 : tensor<128x256xf32>) -> tensor<128x256xf32>
    %et = tensor.empty() : tensor<256x128xf32>
    %kt = linalg.transpose ins(%k : tensor<128x256xf32>) outs(%et : tensor<256x128xf32>) permutation = [1, 0]
    %es = tensor.empty() : tensor<128x128xf32>
    %fs = linalg.fill ins(%zero : f32) outs(%es : tensor<128x128xf32>) -> tensor<128x128xf32>
    %s = linalg.matmul ins(%q, %kt : tensor<128x256xf32>, tensor<256x128xf32>) outs(%fs : tensor<128x128xf32>) -> tensor<128x128xf32>
    %scaled = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%s : tensor<128x128xf32>) outs(%es : tensor<128x128xf32>) {
    ^bb0(%in: f32, %out: f32):
      %m = arith.mulf %in, %scale : f32
      linalg.yield %m : f32
    } -> tensor<128x128xf32>
    %er = tensor.empty() : tensor<128xf32>
    %fm = linalg.fill ins(%ninf : f32) outs(%er : tensor<128xf32>) -> tensor<128xf32>
    %max = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]} ins(%scaled : tensor<128x128xf32>) outs(%fm : tensor<128xf32>) {
    ^bb0(%in: f32, %acc: f32):
      %m = arith.maximumf %in, %acc : f32
      linalg.yield %m : f32
    } -> tensor<128xf32>
    %ex = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]} ins(%scaled, %max : tensor<128x128xf32>, tensor<128xf32>) outs(%es : tensor<128x128xf32>) {
    ^bb0(%in: f32, %mx: f32, %out: f32):
      %d = arith.subf %in, %mx : f32
      %e = math.exp %d : f32
      linalg.yield %e : f32
    } -> tensor<128x128xf32>
    %fsum = linalg.fill ins(%zero : f32) outs(%er : tensor<128xf32>) -> tensor<128xf32>
    %sum = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]} ins(%ex : tensor<128x128xf32>) outs(%fsum : tensor<128xf32>) {
    ^bb0(%in: f32, %acc: f32):
      %a = arith.addf %in, %acc : f32
      linalg.yield %a : f32
    } -> tensor<128xf32>
    %p = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]} ins(%ex, %sum : tensor<128x128xf32>, tensor<128xf32>) outs(%es : tensor<128x128xf32>) {
    ^bb0(%in: f32, %sm: f32, %out: f32):
      %d = arith.divf %in, %sm : f32
      linalg.yield %d : f32
    } -> tensor<128x128xf32>
    %e3 = tensor.empty() : tensor<128x256xf32>
    %f3 = linalg.fill ins(%zero : f32) outs(%e3 : tensor<128x256xf32>) -> tensor<128x256xf32>
    %o = linalg.matmul ins(%p, %v : tensor<128x128xf32>, tensor<128x256xf32>) outs(%f3 : tensor<128x256xf32>) -> tensor<128x256xf32>
    %e4 = tensor.empty() : tensor<128x256xf32>
    %f4 = linalg.fill ins(%zero : f32) outs(%e4 : tensor<128x256xf32>) -> tensor<128x256xf32>
    %proj = linalg.matmul ins(%o, %wo : tensor<128x256xf32>, tensor<256x256xf32>) outs(%f4 : tensor<128x256xf32>) -> tensor<128x256xf32>
    %res = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%proj, %x : tensor<128x256xf32>, tensor<128x256xf32>) outs(%e4 : tensor<128x256xf32>) {
    ^bb0(%a: f32, %b: f32, %out: f32):
      %r = arith.addf %a, %b : f32
      linalg.yield %r : f32
    } -> tensor<128x256xf32>
    return %res : tensor<128x256xf32>
  }
}
