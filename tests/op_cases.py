"""Inputs, layouts and tolerances shared by the op tests (CPU/CUDA op and the Triton kernels)."""
import torch

from sau_core import sau_reference

N = 20000.0
# (rtol, atol) against an fp64 reference evaluated on the same (rounded) inputs: about one unit in the last
# place of the output dtype; gradients of alpha and n are sums, accumulated in fp32 or fp64.
TOLERANCES = {
    torch.float64: (1e-10, 1e-14),
    torch.float32: (2e-5, 1e-8),
    torch.float16: (2e-3, 1e-7),
    torch.bfloat16: (1.6e-2, 1e-6),
}
REDUCTION_RTOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-4, torch.bfloat16: 1e-4}

# name -> (shape, channels, make): the layouts the kernels must handle
CASES = {
    'empty': ((0, 3), 3, lambda x: x),
    'one_element': ((1,), 1, lambda x: x),
    'prime_1d': ((7919,), 1, lambda x: x),
    'nchw_shared_alpha': ((2, 8, 5, 7), 1, lambda x: x),
    'nchw_per_channel': ((2, 8, 5, 7), 8, lambda x: x),
    'channels_last_per_channel': ((2, 8, 5, 7), 8, lambda x: x.to(memory_format=torch.channels_last)),
    'transposed_shared_alpha': ((13, 11), 1, lambda x: x.t()),
    'sliced_per_channel': ((3, 10, 9), 5, lambda x: x[:, ::2]),
    'matrix_per_channel': ((17, 31), 31, lambda x: x),
}


def make_input(shape, dtype, device, make, seed=0):
    """Values spread over SAU's smooth region (|x| ~ a few 1/n) and its linear tails."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * (3 / N)
    x.view(-1)[::7] *= 1000
    return make(x.to(dtype=dtype, device=device))


def reference_and_grads(x, alpha, n, grad_y, zero_centred=False):
    """The reference output and gradients in fp64, from the same rounded inputs."""
    x64, a64, n64 = (t.detach().double().requires_grad_() for t in (x, alpha, n))
    y = sau_reference(x64, a64, n64, zero_centred)
    grads = torch.autograd.grad(y, (x64, a64, n64), grad_y.double()) if y.numel() else (x64, a64 * 0, n64 * 0)
    return y.detach(), grads


def assert_matches_reference(outputs, x, alpha, n, grad_y, zero_centred, saved_is_output=False):
    """outputs = (y, grad_x, grad_alpha, grad_n) of a fused path, checked against the fp64 reference.

    With ``saved_is_output`` the gradients came from x recovered from y rounded to x's dtype: each term of
    grad_alpha then carries about one ulp of that dtype, so its sum gets the dtype's tolerance."""
    y, grad_x, grad_alpha, grad_n = outputs
    dtype = x.dtype
    y_ref, (grad_x_ref, grad_alpha_ref, grad_n_ref) = reference_and_grads(x, alpha, n, grad_y, zero_centred)

    rtol, atol = TOLERANCES[dtype]
    torch.testing.assert_close(y.double(), y_ref, rtol=rtol, atol=atol)
    # dSAU/dx of the zero-centred variant cancels terms of size n*x*gauss: errors scale with the largest gradient
    # (eager fp32 evaluation of the formula shows the same), so atol is relative to it.
    scale_x = grad_x_ref.abs().max().item() if grad_x_ref.numel() else 1.0
    torch.testing.assert_close(grad_x.double(), grad_x_ref, rtol=rtol, atol=max(atol * N, rtol * scale_x))
    reduction_rtol = max(REDUCTION_RTOL[dtype], rtol) if saved_is_output else REDUCTION_RTOL[dtype]
    scale_alpha = grad_alpha_ref.abs().max().item() if grad_alpha_ref.numel() else 1.0
    torch.testing.assert_close(grad_alpha.double(), grad_alpha_ref, rtol=reduction_rtol,
                               atol=reduction_rtol * scale_alpha)
    torch.testing.assert_close(grad_n.double(), grad_n_ref, rtol=reduction_rtol,
                               atol=reduction_rtol * abs(grad_n_ref.item()) + 1e-30)
