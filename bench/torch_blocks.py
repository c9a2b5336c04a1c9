"""The built-in model blocks in PyTorch, to time eager (and torch.compile) on the CPU:

    python -m bench.torch_blocks llama_mlp '{"tokens": 32, ...}' THREADS COMPILED
prints {"seconds": ..., "version": ...}. Same computation as kernels/models.py.
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

    return {"llama_mlp": llama_mlp, "llama_attention": llama_attention, "resnet_block": resnet_block}


def main() -> None:
    import torch

    model, sizes, threads, compiled = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    torch.set_num_threads(threads)
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
