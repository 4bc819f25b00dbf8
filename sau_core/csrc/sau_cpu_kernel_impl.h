// Body of the CPU kernels. Included by one translation unit per instruction set, which first defines
// CPU_CAPABILITY (ATen's vector namespace) and SAU_KERNEL_NS (our namespace for that build).
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "sau_cpu_kernel.h"

namespace sau_core {
namespace SAU_KERNEL_NS {
namespace {

using at::vec::Vectorized;

// Reduced-precision inputs are converted to Acc in chunks that stay in L1.
constexpr int64_t kChunk = 512;
// Enough elements per parallel task to amortise the thread hand-off.
constexpr int64_t kGrainElements = 32768;

// The out-of-band fast path (forward and backward of the standard form): where every lane of a vector has
// |n*x| >= kLeakyBand, SAU is Leaky ReLU to below half an ulp of the compute dtype Acc, and the vector takes
// y = x or alpha*x, dSAU/dx = 1 or alpha, dSAU/dalpha = min(x, 0) instead of exp and erf. The largest term
// skipped, relative to the result, is that of the slope: |1-a|/min(a, 1) * Q(|t|), Q the normal upper tail
// (y: |1-a|/min(a, 1) * phi(t)/|t|^3, smaller; dSAU/dalpha for x > 0: phi(t)/t^3 of |x|). Half an ulp is
// 2^-25 (float) and 2^-54 (double) relative; Q(8) = 6.2e-16 and Q(10) = 7.6e-24 keep the skipped terms below it
// for |1-a|/min(a, 1) < 4.7e7 (float: 2.2e-8 <= alpha <= 4.7e7) and < 7.2e6 (double: 1.4e-7 <= alpha <= 7.2e6).
// fp16 and bf16 inputs are computed in float and use float's band. A lane that is NaN counts as in the band
// (the vector takes the full path), so NaN propagates to every gradient as before.
template <typename Acc>
constexpr Acc kLeakyBand = std::is_same_v<Acc, double> ? Acc(10) : Acc(8);

template <typename Acc>
struct Constants {
  using Vec = Vectorized<Acc>;
  explicit Constants(Acc n_)
      : n(n_), inv_n(Acc(1) / n_), gauss_scale(Acc(1) / (n_ * Acc(2.5066282746310002))),
        half(Acc(0.5)), one(Acc(1)), minus_half(Acc(-0.5)), inv_sqrt2(Acc(0.70710678118654752)),
        min_exponent(-underflow_exponent(Acc(1) / (n_ * Acc(2.5066282746310002)))),
        band_x(std::max(kLeakyBand<Acc> / n_, std::numeric_limits<Acc>::denorm_min())), zero(Acc(0)) {}
  Vec n, inv_n, gauss_scale, half, one, minus_half, inv_sqrt2, min_exponent, band_x, zero;

  // True when no lane of x is in the band |x| < kLeakyBand/n (NaN lanes count as in it; x = 0 always does).
  // One compare of |x| with the band's edge in x, not |n*x| with kLeakyBand: a multiply less per vector, and
  // the edge moves by an ulp at most, where the skipped terms are far below half an ulp.
  bool out_of_band(const Vec& x) const { return (x.abs() >= band_x).zero_mask() == 0; }

  // Below exp(-q), gauss = exp(-q)*gauss_scale (and the products made from it) would be subnormal, which
  // costs a microcode assist per lane, ~10x the whole kernel. There the Gaussian term is < 1e-30 of x*slope
  // and is set to exactly 0. q >= 20 keeps erf (which uses the same exponential) exact to float precision.
  static Acc underflow_exponent(Acc scale) {
    const Acc q = -std::log(std::numeric_limits<Acc>::min()) - Acc(2) + std::log(scale);
    return std::max(q, Acc(20));
  }
};

// erf(z) given exp(-z^2): Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), the formula ATen's AVX2 erf uses.
// SAU needs exp(-(n*x)^2/2) = exp(-z^2) for its Gaussian term anyway, so one exponential serves both.
inline Vectorized<float> erf_given_exp(const Vectorized<float>& z, const Vectorized<float>& exp_minus_z2) {
  using Vec = Vectorized<float>;
  const Vec one(1.0f);
  const Vec t = one / at::vec::fmadd(Vec(0.3275911f), z.abs(), one);
  Vec r = at::vec::fmadd(Vec(1.061405429f), t, Vec(-1.453152027f));
  r = at::vec::fmadd(r, t, Vec(1.421413741f));
  r = at::vec::fmadd(r, t, Vec(-0.284496736f));
  r = at::vec::fmadd(r, t, Vec(0.254829592f));
  const Vec magnitude = one - r * t * exp_minus_z2;
  return Vec::blendv(magnitude, Vec(0.0f) - magnitude, z < Vec(0.0f));
}

// Shared by forward and backward: with t = n*x,
//   gauss = exp(-t^2/2) / (n*sqrt(2*pi)),  erf = erf(t/sqrt(2)),  slope = (1+a)/2 + (1-a)/2*erf = dSAU/dx.
// SAU(x) = x*slope + (1-a)*gauss; writing it this way keeps x = -inf finite-slope (a*x) instead of inf-inf.
template <typename Acc>
struct Terms {
  Vectorized<Acc> gauss, erf, slope, one_minus_a;
};

// exp_u20 (a few ulp) is enough for the standard form. The zero-centred variant's dSAU/dx has terms of size
// n*x*gauss that amplify the exponential's error, so it uses Sleef's 1-ulp exp.
template <bool kPreciseExp, typename Acc>
inline Terms<Acc> terms(const Vectorized<Acc>& x, const Vectorized<Acc>& a, const Constants<Acc>& k) {
  const auto t = x * k.n;
  const auto z = t * k.inv_sqrt2;
  const auto exponent = t * t * k.minus_half;
  const auto clamped = at::vec::maximum(exponent, k.min_exponent);
  const auto exp_minus_z2 = Vectorized<Acc>::blendv(kPreciseExp ? clamped.exp() : clamped.exp_u20(),
                                                    Vectorized<Acc>(Acc(0)), exponent < k.min_exponent);
  Terms<Acc> r;
  r.gauss = exp_minus_z2 * k.gauss_scale;
  if constexpr (std::is_same_v<Acc, float>) {
    r.erf = erf_given_exp(z, exp_minus_z2);
  } else {
    r.erf = z.erf();  // double: keep Sleef's 1-ulp erf, precision matters more than speed there
  }
  r.one_minus_a = k.one - a;
  r.slope = (k.one + a + r.one_minus_a * r.erf) * k.half;
  return r;
}

// x from y = SAU(x) (standard form, alpha > 0, where SAU is strictly increasing), for the in-place op that
// keeps only its output. Outside |n*x| < kInvertBand, SAU(x) is x or alpha*x to within 1e-10 relative, so the
// Leaky-ReLU inverse is exact there. Inside, Halley's method (f'' = (1-a)*n^2*gauss comes free) starts from
// that inverse and converges cubically: kHalleySteps reach double precision for 0.01 <= alpha <= 100
// (sau_core.op.INPLACE_ALPHA_RANGE); it stops early once every lane's step is below kConverged/n.
constexpr float kInvertBand = 8.0f;
constexpr int kHalleySteps = 4;

// The Leaky-ReLU inverse, x where y = SAU(x) is out of the band; y * (1/a): a division per vector costs ~30 %.
template <typename Acc>
inline Vectorized<Acc> leaky_inverse(const Vectorized<Acc>& y, const Vectorized<Acc>& inv_a) {
  return Vectorized<Acc>::blendv(y * inv_a, y, y > Vectorized<Acc>(Acc(0)));
}

// x from y and its Leaky-ReLU inverse x0: x0 where it is out of the band, Halley's steps from x0 in it. Out of
// line: only the band's vectors reach it (the timings in tools/benchmarks/README.md are of this build; inlined,
// the effect was not measured separately).
template <typename Acc>
__attribute__((noinline)) Vectorized<Acc> invert(const Vectorized<Acc>& y, const Vectorized<Acc>& x0,
                                                 const Vectorized<Acc>& a, const Constants<Acc>& k) {
  using Vec = Vectorized<Acc>;
  const Vec in_band = (x0 * k.n).abs() < Vec(Acc(kInvertBand));
  if (in_band.zero_mask() == (1 << Vec::size()) - 1) return x0;  // no lane in the band
  // After a step below converged/n the error is ~converged^3/n: below the precision of Acc. Lanes outside the
  // band keep x0 and do not count (their steps are rounding noise of the size of their ulp).
  const Vec converged(std::is_same_v<Acc, float> ? Acc(3e-4) : Acc(1e-7));
  const Vec out_of_band = (x0 * k.n).abs() >= Vec(Acc(kInvertBand));
  const Vec n2 = k.n * k.n, two(Acc(2));
  Vec x = x0;
  for (int step = 0; step < kHalleySteps; ++step) {
    const auto tm = terms<false>(x, a, k);
    const Vec f = x * tm.slope + tm.one_minus_a * tm.gauss - y;
    const Vec curvature = tm.one_minus_a * n2 * tm.gauss;
    const Vec delta = two * f * tm.slope / (two * tm.slope * tm.slope - f * curvature);
    x = x - delta;
    if ((((delta * k.n).abs() < converged) | out_of_band).zero_mask() == 0) break;  // every lane converged
  }
  return Vec::blendv(x0, x, in_band);
}

template <typename Acc>
inline Vectorized<Acc> load(const Acc* p, int64_t count) {
  return count == Vectorized<Acc>::size() ? Vectorized<Acc>::loadu(p) : Vectorized<Acc>::loadu(p, count);
}

template <typename Acc>
inline void store(const Vectorized<Acc>& v, Acc* p, int64_t count) {
  if (count == Vectorized<Acc>::size()) {
    v.store(p);
  } else {
    v.store(p, count);
  }
}

// Calls body(acc_in..., offset, count) over [0, len) in chunks, converting T <-> Acc when they differ.
template <typename T, typename Acc, int kIn, int kOut, typename Body>
inline void for_chunks(const T* const (&in)[kIn], T* const (&out)[kOut], int64_t len, Body body) {
  if constexpr (std::is_same_v<T, Acc>) {
    body(in, out, int64_t(0), len);
  } else {
    Acc in_buf[kIn][kChunk];
    Acc out_buf[kOut][kChunk];
    for (int64_t s = 0; s < len; s += kChunk) {
      const int64_t m = std::min(kChunk, len - s);
      const Acc* in_ptr[kIn];
      Acc* out_ptr[kOut];
      for (int j = 0; j < kIn; ++j) {
        at::vec::convert(in[j] + s, in_buf[j], m);
        in_ptr[j] = in_buf[j];
      }
      for (int j = 0; j < kOut; ++j) out_ptr[j] = out_buf[j];
      body(in_ptr, out_ptr, s, m);
      for (int j = 0; j < kOut; ++j) at::vec::convert(out_buf[j], out[j] + s, m);
    }
  }
}

// Elements per block of split_at_band: a block's vectors in the band are computed after its pass.
constexpr int64_t kBandBlock = 1024;

// Calls fast(i, c) on each vector (offset i, c lanes) of [0, m); the vectors for which it returns false (a
// lane in the band) go to full(i, c) after their block's pass. That pass, over nearly every vector of a
// batch-normalised input, then holds only Leaky-ReLU code: with exp, erf and Halley's steps in the same loop,
// gcc's loop cost up to 1.5x Leaky ReLU's (the in-place backward) even where no vector entered the band.
template <typename Acc, typename Fast, typename Full>
inline void split_at_band(int64_t m, const Fast& fast, const Full& full) {
  constexpr int64_t kSize = Vectorized<Acc>::size();
  int64_t in_band[kBandBlock / kSize];
  for (int64_t start = 0; start < m; start += kBandBlock) {
    const int64_t end = std::min(m, start + kBandBlock);
    int64_t count = 0;
    for (int64_t i = start; i < end; i += kSize) {
      if (!fast(i, std::min(kSize, m - i))) in_band[count++] = i;
    }
    for (int64_t j = 0; j < count; ++j) full(in_band[j], std::min(kSize, m - in_band[j]));
  }
}

// full(i, c) on each vector of [0, m), for the forms without a fast path.
template <typename Acc, typename Full>
inline void every_vector(int64_t m, const Full& full) {
  constexpr int64_t kSize = Vectorized<Acc>::size();
  for (int64_t i = 0; i < m; i += kSize) full(i, std::min(kSize, m - i));
}

// One contiguous span whose alpha is either per element (kAlphaPerElement, alpha[i]) or one value.
template <typename T, typename Acc, bool kZeroCentred, bool kAlphaPerElement>
void forward_span(const T* x, T* y, int64_t len, const Acc* alpha, const Constants<Acc>& k) {
  using Vec = Vectorized<Acc>;
  const T* const in[1] = {x};
  T* const out[1] = {y};
  for_chunks<T, Acc, 1, 1>(in, out, len, [&](const auto& xs, const auto& ys, int64_t base, int64_t m) {
    const auto alpha_at = [&](int64_t i, int64_t c) {
      return kAlphaPerElement ? load(alpha + base + i, c) : Vec(alpha[0]);
    };
    const auto full = [&](int64_t i, int64_t c) {
      const Vec a = alpha_at(i, c), xv = load(xs[0] + i, c);
      const auto tm = terms<kZeroCentred>(xv, a, k);
      // Zero-centred variant: the Gaussian term is multiplied by x.
      const Vec yv = kZeroCentred ? xv * (tm.slope + tm.one_minus_a * tm.gauss) : xv * tm.slope + tm.one_minus_a * tm.gauss;
      store(yv, ys[0] + i, c);
    };
    if constexpr (kZeroCentred) {
      every_vector<Acc>(m, full);
    } else {
      split_at_band<Acc>(m, [&](int64_t i, int64_t c) {
        const Vec xv = load(xs[0] + i, c);
        if (!k.out_of_band(xv)) return false;
        store(Vec::blendv(alpha_at(i, c) * xv, xv, xv > k.zero), ys[0] + i, c);  // Leaky ReLU (see kLeakyBand)
        return true;
      }, full);
    }
  });
}

// Backward. With t = n*x, G = exp(-t^2/2)/(n*sqrt(2*pi)) and E = erf(t/sqrt(2)):
//   SAU(x)      = (1-a)*G + (1+a)/2*x + (1-a)/2*x*E           (zero-centred: (1-a)*x*G + ...)
//   dSAU/dx     = (1+a)/2 + (1-a)/2*E = slope                 (the Gaussian's and erf's x-terms cancel)
//                 zero-centred: slope + (1-a)*G*(1 + n^2*x*(1-x))
//   dSAU/dalpha = x/2*(1-E) - G                               (zero-centred: x*(1/2*(1-E) - G))
//   dSAU/dn     = -(1-a)*G/n                                  (zero-centred: (1-a)*(G*n*x^2*(1-x) - G*x/n))
// grad_x = grad_y * dSAU/dx; grad_alpha and grad_n are sums of grad_y * dSAU/d(.) (per-piece partials here).
//
// Backward of one span; saved is x, or y = SAU(x) when kFromOutput. Accumulates grad_alpha into acc_alpha (one
// vector, or one Acc per element when kAlphaPerElement) and grad_n into acc_n; padded lanes carry grad_y = 0
// and add nothing.
template <typename T, typename Acc, bool kZeroCentred, bool kFromOutput, bool kAlphaPerElement>
void backward_span(const T* grad_y, const T* saved, T* grad_x, int64_t len, const Acc* alpha, const Constants<Acc>& k,
                   bool need_alpha, bool need_n, Vectorized<Acc>& acc_alpha, Acc* acc_alpha_per_element,
                   Vectorized<Acc>& acc_n) {
  using Vec = Vectorized<Acc>;
  const T* const in[2] = {grad_y, saved};
  const Vec inv_alpha(kAlphaPerElement ? Acc(1) : Acc(1) / alpha[0]);
  T* const out[1] = {grad_x};
  for_chunks<T, Acc, 2, 1>(in, out, len, [&](const auto& ins, const auto& outs, int64_t base, int64_t m) {
    // Local sums: the caller's are memory that the stores of grad_x may alias (a vector type may alias any
    // float), which would make every vector wait for the last one's sum to reach memory and come back.
    Vec alpha_sum = acc_alpha, n_sum = acc_n;
    // Padded lanes get alpha = 1 (SAU is then the identity), so that recovering x from y = 0 stays finite.
    const auto alpha_at = [&](int64_t i, int64_t c) {
      return kAlphaPerElement ? Vec::set(Vec(Acc(1)), load(alpha + base + i, c), c) : Vec(alpha[0]);
    };
    // x, or from the output its Leaky-ReLU inverse (exact wherever it is out of the band).
    const auto leaky_x = [&](const Vec& saved_v, const Vec& a) {
      return kFromOutput ? leaky_inverse(saved_v, kAlphaPerElement ? Vec(Acc(1)) / a : inv_alpha) : saved_v;
    };
    const auto add_alpha = [&](int64_t i, int64_t c, const Vec& term) {
      if constexpr (kAlphaPerElement) {
        Acc* acc = acc_alpha_per_element + base + i;
        store(load(acc, c) + term, acc, c);
      } else {
        alpha_sum = alpha_sum + term;
      }
    };
    const auto full = [&](int64_t i, int64_t c) {
      const Vec a = alpha_at(i, c), g = load(ins[0] + i, c), saved_v = load(ins[1] + i, c);
      const Vec xv = kFromOutput ? invert(saved_v, leaky_x(saved_v, a), a, k) : saved_v;
      const auto tm = terms<kZeroCentred>(xv, a, k);
      // dSAU/dx = slope; zero-centred: slope + (1-a)*gauss*(1 + n^2*x*(1-x)), ordered so that gauss = 0
      // gives 0 where x^2 would overflow.
      const Vec d_x = kZeroCentred
                          ? tm.slope + tm.one_minus_a * (tm.gauss + ((tm.gauss * k.n) * k.n * xv) * (k.one - xv))
                          : tm.slope;
      store(g * d_x, outs[0] + i, c);
      if (need_alpha) {
        // dSAU/da = x/2*(1-erf) - gauss (the zero-centred variant: x*(...)).
        const Vec upper = k.half * (k.one - tm.erf);
        add_alpha(i, c, g * (kZeroCentred ? xv * (upper - tm.gauss) : xv * upper - tm.gauss));
      }
      if (need_n) {
        // dSAU/dn = -(1-a)*gauss/n; zero-centred: (1-a)*(gauss*n*x^2*(1-x) - gauss*x/n). The products are
        // ordered so that gauss = 0 gives 0 even where x^3 would overflow.
        const Vec d_n = kZeroCentred
                            ? tm.one_minus_a * ((tm.gauss * k.n * xv) * xv * (k.one - xv) - tm.gauss * xv * k.inv_n)
                            : Vec(Acc(0)) - tm.one_minus_a * tm.gauss * k.inv_n;
        n_sum = n_sum + g * d_n;
      }
    };
    // Out of the band (and without grad_n, whose integrand is the Gaussian itself): Leaky-ReLU derivatives.
    if (kZeroCentred || need_n) {
      every_vector<Acc>(m, full);
    } else {
      split_at_band<Acc>(m, [&](int64_t i, int64_t c) {
        const Vec a = alpha_at(i, c), saved_v = load(ins[1] + i, c);
        const Vec xv = leaky_x(saved_v, a);
        if (!k.out_of_band(xv)) return false;
        const Vec g = load(ins[0] + i, c);
        store(g * Vec::blendv(a, k.one, xv > k.zero), outs[0] + i, c);
        if (need_alpha) add_alpha(i, c, g * at::vec::minimum(xv, k.zero));
        return true;
      }, full);
    }
    acc_alpha = alpha_sum;
    acc_n = n_sum;
  });
}

template <typename Acc>
inline Acc sum_lanes(const Vectorized<Acc>& v) {
  return at::vec::vec_reduce_all<Acc>([](Vectorized<Acc>& a, Vectorized<Acc>& b) { return a + b; }, v);
}

// Runs piece_fn(p) over all pieces in parallel; pieces are fixed by the layout, not by the thread count.
template <typename PieceFn>
void for_pieces(const Layout& l, PieceFn piece_fn) {
  const int64_t pieces = num_pieces(l);
  const int64_t piece_elements = l.channel_on_cols ? rows_per_piece(l) * l.cols : std::min(l.cols, kPieceElements);
  const int64_t grain = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, piece_elements));
  at::parallel_for(0, pieces, grain, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) piece_fn(p);
  });
}

template <typename T, typename Acc, bool kZeroCentred>
void forward_impl(const T* x, T* y, const Acc* alpha, Acc n, const Layout& l) {
  const Constants<Acc> k(n);
  for_pieces(l, [&](int64_t p) {
    if (l.channel_on_cols) {
      const int64_t r0 = p * rows_per_piece(l), r1 = std::min(l.rows, r0 + rows_per_piece(l));
      for (int64_t r = r0; r < r1; ++r)
        forward_span<T, Acc, kZeroCentred, true>(x + r * l.cols, y + r * l.cols, l.cols, alpha, k);
    } else {
      const int64_t row = p / pieces_per_row(l), offset = (p % pieces_per_row(l)) * kPieceElements;
      const int64_t start = row * l.cols + offset, len = std::min(kPieceElements, l.cols - offset);
      forward_span<T, Acc, kZeroCentred, false>(x + start, y + start, len, alpha + row % l.channels, k);
    }
  });
}

template <typename T, typename Acc, bool kZeroCentred, bool kFromOutput>
void backward_impl(const T* grad_y, const T* saved, T* grad_x, const Acc* alpha, Acc n, const Layout& l,
                   Acc* grad_alpha_pieces, Acc* grad_n_pieces) {
  const Constants<Acc> k(n);
  const bool need_alpha = grad_alpha_pieces != nullptr, need_n = grad_n_pieces != nullptr;
  for_pieces(l, [&](int64_t p) {
    Vectorized<Acc> acc_alpha(Acc(0)), acc_n(Acc(0));
    if (l.channel_on_cols) {
      Acc* acc_alpha_per_channel = need_alpha ? grad_alpha_pieces + p * l.cols : nullptr;
      const int64_t r0 = p * rows_per_piece(l), r1 = std::min(l.rows, r0 + rows_per_piece(l));
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t start = r * l.cols;
        backward_span<T, Acc, kZeroCentred, kFromOutput, true>(grad_y + start, saved + start, grad_x + start,
                                                               l.cols, alpha, k,
                                                  need_alpha, need_n, acc_alpha, acc_alpha_per_channel, acc_n);
      }
    } else {
      const int64_t row = p / pieces_per_row(l), offset = (p % pieces_per_row(l)) * kPieceElements;
      const int64_t start = row * l.cols + offset, len = std::min(kPieceElements, l.cols - offset);
      backward_span<T, Acc, kZeroCentred, kFromOutput, false>(grad_y + start, saved + start, grad_x + start, len,
                                                              alpha + row % l.channels, k, need_alpha, need_n, acc_alpha,
                                                 nullptr, acc_n);
      if (need_alpha) grad_alpha_pieces[p] = sum_lanes(acc_alpha);
    }
    if (need_n) grad_n_pieces[p] = sum_lanes(acc_n);
  });
}

}  // namespace

template <typename T, typename Acc>
void forward(const T* x, T* y, const Acc* alpha, Acc n, bool zero_centred, const Layout& layout) {
  if (zero_centred) {
    forward_impl<T, Acc, true>(x, y, alpha, n, layout);
  } else {
    forward_impl<T, Acc, false>(x, y, alpha, n, layout);
  }
}

template <typename T, typename Acc>
void backward(const T* grad_y, const T* saved, T* grad_x, const Acc* alpha, Acc n, bool zero_centred,
              bool saved_is_output, const Layout& layout, Acc* grad_alpha_pieces, Acc* grad_n_pieces) {
  if (zero_centred) {  // not invertible in general: sau_cpu.cpp refuses saved_is_output here
    backward_impl<T, Acc, true, false>(grad_y, saved, grad_x, alpha, n, layout, grad_alpha_pieces, grad_n_pieces);
  } else if (saved_is_output) {
    backward_impl<T, Acc, false, true>(grad_y, saved, grad_x, alpha, n, layout, grad_alpha_pieces, grad_n_pieces);
  } else {
    backward_impl<T, Acc, false, false>(grad_y, saved, grad_x, alpha, n, layout, grad_alpha_pieces, grad_n_pieces);
  }
}

#define SAU_INSTANTIATE(T, Acc)                                                                          \
  template void forward<T, Acc>(const T*, T*, const Acc*, Acc, bool, const Layout&);                    \
  template void backward<T, Acc>(const T*, const T*, T*, const Acc*, Acc, bool, bool, const Layout&, Acc*, Acc*);

SAU_INSTANTIATE(float, float)
SAU_INSTANTIATE(double, double)
SAU_INSTANTIATE(c10::Half, float)
SAU_INSTANTIATE(c10::BFloat16, float)
#undef SAU_INSTANTIATE

}  // namespace SAU_KERNEL_NS
}  // namespace sau_core
