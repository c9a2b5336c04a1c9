"""Built-in kernels verify against NumPy when lowered naively; registry and shapes."""
import pytest

from rcompiler.kernels import KERNELS, KernelError, get_kernel, parse_shape

SMALL = {
    "matmul": (24, 40, 16), "matmul_transpose_b": (24, 40, 16), "batch_matmul": (2, 8, 24, 16),
    "conv2d": (1, 9, 10, 4, 8, 3, 3), "matmul_bias_relu": (24, 40, 16),
    "llama3_attention": (2, 16, 16, 8), "llama3_mlp": (8, 32, 64), "deepseek_moe_expert": (4, 16, 56),
    "flux_attention": (2, 8, 16, 8), "flux_vae_conv": (1, 8, 8, 4, 4, 3, 3),
}


def test_every_registered_kernel_has_a_small_shape_here():
    assert set(SMALL) == set(KERNELS)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_naive_lowering_verifies_against_numpy(name, measure_with):
    kernel = get_kernel(name, SMALL[name])
    result = measure_with(kernel).measure_naive()
    assert result.ok, result.reason
    assert result.max_error is not None and result.max_error <= kernel.tolerance


def test_strided_dilated_conv_verifies(measure_with):
    kernel = get_kernel("conv2d", (2, 13, 11, 3, 5, 3, 2, 2, 2))
    assert kernel.args[-1].shape == (2, 5, 5, 5)  # (13-2*2-1)//2+1, (11-2*1-1)//2+1
    assert measure_with(kernel).measure_naive().ok


@pytest.mark.parametrize("name", [k for k in KERNELS if k.startswith(("llama", "deepseek", "flux"))])
def test_model_layers_take_1_to_50_ms_at_a_good_schedule(name):
    """At 50-150 GFLOP/s (a good single-core schedule here) a run lasts 1-50 ms."""
    kernel = get_kernel(name)
    assert 1e-3 <= kernel.flops / 150e9 and kernel.flops / 50e9 <= 50e-3


def test_flops_and_tolerance():
    k = get_kernel("matmul", "64,32,16")
    assert k.flops == 2 * 64 * 32 * 16 and k.reduction_length == 16
    assert get_kernel("conv2d", (1, 10, 10, 4, 8, 3, 3)).flops == 2 * 8 * 8 * 8 * 4 * 9
    assert get_kernel("matmul", "8,8,4096").tolerance > k.tolerance


@pytest.mark.parametrize("shape,message", [
    ("1024,1024", "takes shape M,N,K"), ("10,x,3", "bad shape"), ("0,4,4", "positive"),
])
def test_bad_shapes_get_clear_errors(shape, message):
    with pytest.raises(KernelError, match=message):
        get_kernel("matmul", shape)


def test_unknown_kernel_lists_the_known_ones():
    with pytest.raises(KernelError, match="built-in kernels: matmul"):
        get_kernel("gemv")


def test_conv_filter_larger_than_input():
    with pytest.raises(KernelError, match="does not fit"):
        get_kernel("conv2d", (1, 2, 2, 1, 1, 3, 3))


def test_parse_shape_accepts_x_separators():
    assert parse_shape("197x768x3072") == (197, 768, 3072)


def test_operand_strides_come_from_the_indexing_maps():
    plain = get_kernel("matmul", (64, 128, 256))
    a, b, c = plain.structure[plain.main_index].operands
    assert [b.stride_bytes(loop) for loop in range(3)] == [0, 4, 128 * 4]  # B[k, n]: n contiguous
    assert b.contiguous_loop() == 1 and c.is_output and not b.is_output
    linear = get_kernel("matmul_transpose_b", (64, 128, 256))
    _, bt, _ = linear.structure[linear.main_index].operands
    assert [bt.stride_bytes(loop) for loop in range(3)] == [0, 256 * 4, 4]  # B[n, k]: k contiguous
    conv = get_kernel("conv2d", (1, 11, 11, 4, 8, 3, 3, 2, 1))  # stride 2
    image = conv.structure[conv.main_index].operands[0]
    n, oh, ow, f, kh, kw, ch = range(7)
    assert image.stride_bytes(oh) == 2 * 11 * 4 * 4 and image.stride_bytes(kh) == 11 * 4 * 4
    assert image.stride_bytes(f) == 0 and image.contiguous_loop() == ch


def test_measured_arrays_start_on_a_cache_line():
    """Buffers start on a 64-byte line as a framework's do; NumPy's start 16-48 bytes into one,
    differently in each worker process, so every vector load of a candidate spanned two lines."""
    import numpy as np

    from rcompiler.kernels.base import make_arrays

    for name, shape in (("conv2d", (1, 30, 30, 32, 32, 3, 3, 1, 2)), ("matmul", (3, 5, 7)), ("matmul", (1, 1, 1))):
        kernel = get_kernel(name, shape)
        arrays = make_arrays(kernel.args, seed=3)
        assert [a.shape for a in arrays] == [a.shape for a in kernel.args]
        assert all(a.ctypes.data % 64 == 0 and a.flags.c_contiguous for a in arrays)
        inputs = [a for a, spec in zip(arrays, kernel.args) if not spec.is_output]
        assert all(np.all((-1 <= a) & (a < 1)) for a in inputs)
        assert all(np.isnan(a).all() for a, spec in zip(arrays, kernel.args) if spec.is_output)
