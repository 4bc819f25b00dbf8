"""GPU backend: Triton kernels (they also run on CPU tensors under ``TRITON_INTERPRET=1``, as the tests do).

The dense input is tiled as a rows x cols matrix (see ``sau_core.op.Layout``). Forward reads x once and
writes y once; backward reads x and grad_y, writes grad_x, and writes one fp32 partial of grad_alpha per
(tile, channel); the partials are then summed by ``torch.sum`` in a fixed order: two stages, no atomics,
so the result is deterministic.
"""
import torch
import triton
import triton.language as tl

# Elements per program; a power of two. Large enough to saturate memory bandwidth with few programs.
TILE_ELEMENTS = 4096
NUM_WARPS = 8
# Recovering x from SAU(x): the band |n*x| < INVERT_BAND where SAU is not yet x or alpha*x, and the Halley steps
# taken there; the same values as kInvertBand and kHalleySteps of the CPU kernels (tests/test_op_inplace.py).
INVERT_BAND: tl.constexpr = tl.constexpr(8.0)
HALLEY_STEPS: tl.constexpr = tl.constexpr(4)


@triton.jit
def _load_tile(x_ptr, alpha_ptr, n_ptr, rows, cols, channels, pid,
               CHANNEL_ON_COLS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
               COMPUTE: tl.constexpr):
    col_tiles = tl.cdiv(cols, BLOCK_C)
    r = (pid // col_tiles) * BLOCK_R + tl.arange(0, BLOCK_R)
    c = (pid % col_tiles) * BLOCK_C + tl.arange(0, BLOCK_C)
    row_ok = r < rows
    col_ok = c < cols
    mask = row_ok[:, None] & col_ok[None, :]
    offsets = r[:, None].to(tl.int64) * cols + c[None, :]
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(COMPUTE)
    # Masked lanes get alpha = 1 (SAU is then the identity), so that recovering x from y = 0 stays finite.
    if CHANNEL_ON_COLS:
        a = tl.load(alpha_ptr + c, mask=col_ok, other=1.0).to(COMPUTE)[None, :]
    else:
        a = tl.load(alpha_ptr + r % channels, mask=row_ok, other=1.0).to(COMPUTE)[:, None]
    n = tl.load(n_ptr).to(COMPUTE)
    return x, a, n, r, c, offsets, mask


@triton.jit
def _terms(x, a, n):
    # t = n*x; gauss = exp(-t^2/2)/(n*sqrt(2*pi)); slope = (1+a)/2 + (1-a)/2*erf(t/sqrt(2)) = dSAU/dx.
    t = x * n
    gauss = tl.exp(-0.5 * t * t) / (n * 2.5066282746310002)
    erf = tl.math.erf(t * 0.7071067811865476)
    slope = 0.5 * (1.0 + a + (1.0 - a) * erf)
    return gauss, erf, slope


@triton.jit
def _invert(y, a, n):
    # x from y = SAU(x) for alpha > 0 (see invert() in sau_core/csrc/sau_cpu_kernel_impl.h): the Leaky-ReLU
    # inverse is exact outside the band; inside, Halley steps from it converge (cubically).
    x0 = tl.where(y > 0, y, y * (1.0 / a))
    in_band = tl.abs(x0 * n) < INVERT_BAND
    x = x0
    if tl.max(in_band.to(tl.int32)) > 0:
        for _ in tl.static_range(HALLEY_STEPS):
            gauss, erf, slope = _terms(x, a, n)
            f = x * slope + (1.0 - a) * gauss - y
            x = x - 2.0 * f * slope / (2.0 * slope * slope - f * (1.0 - a) * n * n * gauss)
    return tl.where(in_band, x, x0)


@triton.jit
def _sau_fwd_kernel(x_ptr, y_ptr, alpha_ptr, n_ptr, rows, cols, channels,
                    CHANNEL_ON_COLS: tl.constexpr, ZERO_CENTRED: tl.constexpr,
                    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, COMPUTE: tl.constexpr):
    x, a, n, r, c, offsets, mask = _load_tile(x_ptr, alpha_ptr, n_ptr, rows, cols, channels, tl.program_id(0),
                                              CHANNEL_ON_COLS, BLOCK_R, BLOCK_C, COMPUTE)
    gauss, erf, slope = _terms(x, a, n)
    # SAU(x) = x*slope + (1-a)*gauss; the zero-centred variant multiplies the Gaussian term by x.
    if ZERO_CENTRED:
        y = x * (slope + (1.0 - a) * gauss)
    else:
        y = x * slope + (1.0 - a) * gauss
    tl.store(y_ptr + offsets, y.to(y_ptr.dtype.element_ty), mask=mask)


# Backward. With t = n*x, G = exp(-t^2/2)/(n*sqrt(2*pi)) and E = erf(t/sqrt(2)):
#   SAU(x)       = (1-a)*G + (1+a)/2*x + (1-a)/2*x*E            (zero-centred: (1-a)*x*G + ...)
#   dSAU/dx      = (1+a)/2 + (1-a)/2*E = slope                  (the Gaussian's and erf's x-terms cancel)
#                  zero-centred: slope + (1-a)*G*(1 + n^2*x*(1-x))
#   dSAU/dalpha  = x/2*(1-E) - G                                (zero-centred: x*(1/2*(1-E) - G))
#   dSAU/dn      = -(1-a)*G/n                                   (zero-centred: (1-a)*(G*n*x^2*(1-x) - G*x/n))
# grad_x = grad_y * dSAU/dx per element; grad_alpha and grad_n are sums of grad_y * dSAU/d(.) over the elements
# of each channel (per-tile partials here, summed in a fixed order by the launcher). With SAVED_IS_OUTPUT the
# saved tensor is y and x is first recovered from it (_invert).
@triton.jit
def _sau_bwd_kernel(grad_y_ptr, saved_ptr, grad_x_ptr, alpha_ptr, n_ptr, alpha_partial_ptr, n_partial_ptr,
                    rows, cols, channels,
                    CHANNEL_ON_COLS: tl.constexpr, ZERO_CENTRED: tl.constexpr, SAVED_IS_OUTPUT: tl.constexpr,
                    NEED_ALPHA: tl.constexpr, NEED_N: tl.constexpr,
                    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, COMPUTE: tl.constexpr):
    pid = tl.program_id(0)
    x, a, n, r, c, offsets, mask = _load_tile(saved_ptr, alpha_ptr, n_ptr, rows, cols, channels, pid,
                                              CHANNEL_ON_COLS, BLOCK_R, BLOCK_C, COMPUTE)
    if SAVED_IS_OUTPUT:
        x = _invert(x, a, n)
    g = tl.load(grad_y_ptr + offsets, mask=mask, other=0.0).to(COMPUTE)
    gauss, erf, slope = _terms(x, a, n)
    # dSAU/dx = slope; zero-centred: slope + (1-a)*gauss*(1 + n^2*x*(1-x)), ordered so that gauss = 0
    # gives 0 where x^2 would overflow.
    if ZERO_CENTRED:
        grad_x = g * (slope + (1.0 - a) * (gauss + ((gauss * n) * n * x) * (1.0 - x)))
    else:
        grad_x = g * slope
    tl.store(grad_x_ptr + offsets, grad_x.to(grad_x_ptr.dtype.element_ty), mask=mask)
    if NEED_ALPHA:
        # dSAU/da = x/2*(1-erf) - gauss (zero-centred: x*(...)); masked lanes have g = 0.
        upper = 0.5 * (1.0 - erf)
        if ZERO_CENTRED:
            d_alpha = g * x * (upper - gauss)
        else:
            d_alpha = g * (x * upper - gauss)
        col_tiles = tl.cdiv(cols, BLOCK_C)
        if CHANNEL_ON_COLS:  # partial[row_tile, col]
            tl.store(alpha_partial_ptr + (pid // col_tiles).to(tl.int64) * cols + c,
                     tl.sum(d_alpha, axis=0), mask=c < cols)
        else:  # partial[row, col_tile]
            tl.store(alpha_partial_ptr + r.to(tl.int64) * col_tiles + pid % col_tiles,
                     tl.sum(d_alpha, axis=1), mask=r < rows)
    if NEED_N:
        # dSAU/dn = -(1-a)*gauss/n; zero-centred: (1-a)*(gauss*n*x^2*(1-x) - gauss*x/n), ordered so that
        # gauss = 0 gives 0 where x^3 would overflow.
        if ZERO_CENTRED:
            d_n = g * (1.0 - a) * ((gauss * n * x) * x * (1.0 - x) - gauss * x / n)
        else:
            d_n = -g * (1.0 - a) * gauss / n
        tl.store(n_partial_ptr + pid, tl.sum(tl.sum(d_n, axis=1), axis=0))


def _tiling(layout):
    block_c = min(triton.next_power_of_2(max(layout.cols, 1)), TILE_ELEMENTS)
    block_r = min(triton.next_power_of_2(max(layout.rows, 1)), max(1, TILE_ELEMENTS // block_c))
    row_tiles = triton.cdiv(layout.rows, block_r)
    col_tiles = triton.cdiv(layout.cols, block_c)
    return block_r, block_c, row_tiles, col_tiles


def _compute_dtype(x):
    return tl.float64 if x.dtype == torch.float64 else tl.float32


def _forward_into(x, y, alpha, n, zero_centred, layout):
    """Writes SAU(x) into y, which may be x: each program reads its tile before writing it."""
    if x.numel() == 0:
        return
    block_r, block_c, row_tiles, col_tiles = _tiling(layout)
    _sau_fwd_kernel[(row_tiles * col_tiles,)](
        x, y, alpha, n, layout.rows, layout.cols, alpha.numel(),
        CHANNEL_ON_COLS=layout.channel_on_cols, ZERO_CENTRED=zero_centred,
        BLOCK_R=block_r, BLOCK_C=block_c, COMPUTE=_compute_dtype(x), num_warps=NUM_WARPS)


def forward(x, alpha, n, zero_centred, layout):
    y = torch.empty_like(x)
    _forward_into(x, y, alpha, n, zero_centred, layout)
    return y


def forward_(x, alpha, n, layout):
    _forward_into(x, x, alpha, n, False, layout)


def backward(grad_y, x, grad_x, alpha, n, zero_centred, saved_is_output, layout, need_alpha, need_n):
    """``x`` is the saved input, or SAU(x) when ``saved_is_output``; grad_x may be grad_y (each program reads
    its tile before writing it)."""
    acc_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    if x.numel() == 0:
        return torch.zeros(alpha.numel(), dtype=acc_dtype, device=x.device), \
            torch.zeros((), dtype=acc_dtype, device=x.device)
    block_r, block_c, row_tiles, col_tiles = _tiling(layout)
    partial_shape = (row_tiles, layout.cols) if layout.channel_on_cols else (layout.rows, col_tiles)
    alpha_partial = torch.empty(partial_shape if need_alpha else (1,), dtype=acc_dtype, device=x.device)
    n_partial = torch.empty(row_tiles * col_tiles if need_n else 1, dtype=acc_dtype, device=x.device)
    _sau_bwd_kernel[(row_tiles * col_tiles,)](
        grad_y, x, grad_x, alpha, n, alpha_partial, n_partial, layout.rows, layout.cols, alpha.numel(),
        CHANNEL_ON_COLS=layout.channel_on_cols, ZERO_CENTRED=zero_centred, SAVED_IS_OUTPUT=saved_is_output,
        NEED_ALPHA=need_alpha, NEED_N=need_n,
        BLOCK_R=block_r, BLOCK_C=block_c, COMPUTE=_compute_dtype(x), num_warps=NUM_WARPS)
    grad_alpha = grad_n = torch.empty(0, dtype=acc_dtype, device=x.device)
    if need_alpha:  # stage 2: per-channel sums of the per-tile partials
        grad_alpha = (alpha_partial.sum(0) if layout.channel_on_cols
                      else alpha_partial.sum(1).reshape(-1, alpha.numel()).sum(0))
    if need_n:
        grad_n = n_partial.sum()
    return grad_alpha, grad_n
