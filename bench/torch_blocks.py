"""The built-in model blocks and kernels in PyTorch, to time eager (and torch.compile) on the CPU:

    python -m bench.torch_blocks llama_mlp '{"tokens": 32, ...}' THREADS COMPILED
    python -m bench.torch_blocks matmul '{"M": 512, "N": 512, "K": 512}' THREADS COMPILED
prints {"seconds": ..., "version": ...}. Same computation as kernels/models.py and kernels/library.py
(kernels by their kind, with the dims of Kernel.dims).
"""
import json
import sys
import time


def blocks(torch):
    F = torch.nn.functional

    def llama_mlp(tokens=32, hidden=1024, inner=2816):
        x = torch.randn(tokens, hidden)
        wg, wu, wd = torch.randn(inner, hidden), torch.randn(inner, hidden), torch.randn(hidden, inner)
        return (lambda x, wg, wu, wd: F.linear(F.silu(F.linear(x, wg)) * F.linear(x, wu), wd)), (x, wg, wu, wd)

    def llama_attention(tokens=128, hidden=512):
        x = torch.randn(tokens, hidden)
        ws = [torch.randn(hidden, hidden) * 0.05 for _ in range(4)]

        def fn(x, wq, wk, wv, wo):
            q, k, v = F.linear(x, wq), F.linear(x, wk), F.linear(x, wv)
            p = torch.softmax((q @ k.T) * hidden ** -0.5, dim=-1)
            return F.linear(p @ v, wo) + x
        return fn, (x, *ws)

    def resnet_block(channels=64, size=28):
        x = torch.randn(1, channels, size, size)
        w1, w2 = torch.randn(channels, channels, 3, 3), torch.randn(channels, channels, 3, 3)
        b1, b2 = torch.randn(channels), torch.randn(channels)

        def fn(x, w1, b1, w2, b2):
            h = torch.relu(F.conv2d(x, w1, b1, padding=1))
            return torch.relu(F.conv2d(h, w2, b2, padding=1) + x)
        return fn, (x, w1, b1, w2, b2)

    def bert_ffn(tokens=128, hidden=768, inner=3072, eps=1e-12):
        x = torch.randn(tokens, hidden)
        w1, b1 = torch.randn(inner, hidden) * 0.05, torch.randn(inner)
        w2, b2 = torch.randn(hidden, inner) * 0.05, torch.randn(hidden)
        gamma, beta = torch.randn(hidden), torch.randn(hidden)

        def fn(x, w1, b1, w2, b2, gamma, beta):
            h = F.gelu(F.linear(x, w1, b1))  # exact (erf) GELU, PyTorch's default
            return F.layer_norm(x + F.linear(h, w2, b2), (hidden,), gamma, beta, eps)
        return fn, (x, w1, b1, w2, b2, gamma, beta)

    return {"llama_mlp": llama_mlp, "llama_attention": llama_attention, "resnet_block": resnet_block,
            "bert_ffn": bert_ffn}


def kernels(torch):
    F = torch.nn.functional

    def matmul(M, N, K):
        return torch.matmul, (torch.randn(M, K), torch.randn(K, N))

    def matmul_transpose_b(M, N, K):  # a Linear layer: B stored N x K
        return F.linear, (torch.randn(M, K), torch.randn(N, K))

    def batch_matmul(B, M, N, K):
        return torch.bmm, (torch.randn(B, M, K), torch.randn(B, K, N))

    def matmul_bias_relu(M, N, K):
        return (lambda a, b, bias: torch.relu(torch.addmm(bias, a, b))), (torch.randn(M, K), torch.randn(K, N),
                                                                          torch.randn(N))

    def conv2d(N, H, W, C, F_, KH, KW, stride=1, dilation=1):
        # PyTorch's own fast layout for NHWC activations: channels_last (oneDNN), same computation.
        x = torch.randn(N, C, H, W).to(memory_format=torch.channels_last)
        w = torch.randn(F_, C, KH, KW).to(memory_format=torch.channels_last)
        return (lambda x, w: F.conv2d(x, w, stride=stride, dilation=dilation)), (x, w)

    return {"matmul": matmul, "matmul_transpose_b": matmul_transpose_b, "batch_matmul": batch_matmul,
            "matmul_bias_relu": matmul_bias_relu, "conv2d": conv2d}


def main() -> None:
    import torch

    model, sizes, threads, compiled = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    torch.set_num_threads(threads)
    if model in kernels(torch):
        fn, args = kernels(torch)[model](**{("F_" if k == "F" else k): v for k, v in sizes.items()})
    else:
        fn, args = blocks(torch)[model](**sizes)
    if compiled:
        fn = torch.compile(fn)
    with torch.inference_mode():
        for _ in range(3):
            fn(*args)
        best, start = float("inf"), time.perf_counter()
        while time.perf_counter() - start < 1.0:
            t = time.perf_counter()
            fn(*args)
            best = min(best, time.perf_counter() - t)
    print(json.dumps({"seconds": best, "version": f"PyTorch {torch.__version__}" + (" compile" if compiled else "")}))


if __name__ == "__main__":
    main()
