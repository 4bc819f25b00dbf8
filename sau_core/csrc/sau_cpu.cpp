// CPU kernels of the sau_core ops: TORCH_LIBRARY_IMPL(sau_core, CPU) below registers them for the operators that
// sau_core/op.py defines (torch.ops.sau_core.sau, .sau_backward and the private ._sau_inplace); the CUDA (Triton)
// kernels of the same operators are registered from Python. Only the op namespace sau_core exists.
//
// Like sau_core.op.dense_layout, a tensor is seen as a dense rows x cols matrix in memory order (NCHW-contiguous
// and channels_last inputs as they are, anything else made contiguous first).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <cstdlib>
#include <string>
#include <tuple>
#include <vector>

#include "sau_cpu_kernel.h"

namespace sau_core {
namespace {

enum class Isa { kGeneric, kAvx2, kAvx512 };

// The best build of the kernels this CPU runs; SAU_CORE_CPU_ISA=avx512|avx2|generic chooses one (tests, A/B).
Isa detect_isa() {
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const char* forced = std::getenv("SAU_CORE_CPU_ISA");
  if (forced == nullptr || *forced == '\0') return avx512 ? Isa::kAvx512 : avx2 ? Isa::kAvx2 : Isa::kGeneric;
  const std::string name(forced);
  TORCH_CHECK(name == "avx512" || name == "avx2" || name == "generic",
              "SAU_CORE_CPU_ISA must be avx512, avx2 or generic (or unset), got '", name, "'");
  TORCH_CHECK(name != "avx512" || avx512, "SAU_CORE_CPU_ISA=avx512 but this CPU lacks AVX-512 (F, BW, VL, DQ)");
  TORCH_CHECK(name != "avx2" || avx2, "SAU_CORE_CPU_ISA=avx2 but this CPU lacks AVX2, FMA or F16C");
  return name == "avx512" ? Isa::kAvx512 : name == "avx2" ? Isa::kAvx2 : Isa::kGeneric;
}

Isa isa() {
  static const Isa chosen = detect_isa();
  return chosen;
}

std::string isa_name() {
  switch (isa()) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "generic";
  }
}

template <typename T, typename Acc>
auto forward_kernel() {
  return isa() == Isa::kAvx512 ? &avx512::forward<T, Acc> : isa() == Isa::kAvx2 ? &avx2::forward<T, Acc>
                                                                                 : &generic::forward<T, Acc>;
}

template <typename T, typename Acc>
auto backward_kernel() {
  return isa() == Isa::kAvx512 ? &avx512::backward<T, Acc> : isa() == Isa::kAvx2 ? &avx2::backward<T, Acc>
                                                                                  : &generic::backward<T, Acc>;
}

// x (copied only when it is not dense in memory, or per-channel in an order the kernels do not index) and its
// layout; the same rules as sau_core.op.dense_layout, which the fake (meta) kernels and the Triton path use.
std::tuple<at::Tensor, Layout> dense_layout(const at::Tensor& x, int64_t channels) {
  TORCH_CHECK(channels >= 1, "sau_core: alpha is empty");
  if (channels == 1) {
    at::Tensor dense = x.numel() == 0 || x.is_non_overlapping_and_dense() ? x : x.contiguous();
    return {dense, Layout{1, dense.numel(), 1, false}};
  }
  TORCH_CHECK(x.dim() >= 2 && x.size(1) == channels, "sau_core: ", channels,
              " per-channel alphas do not match the input's dim 1 of shape ", x.sizes());
  if (x.dim() > 2 && !x.is_contiguous() && x.movedim(1, -1).is_contiguous())  // channels_last
    return {x, Layout{x.numel() / channels, channels, channels, true}};
  at::Tensor dense = x.contiguous();
  int64_t inner = 1;
  for (int64_t d = 2; d < dense.dim(); ++d) inner *= dense.size(d);
  if (inner == 1) return {dense, Layout{dense.size(0), channels, channels, true}};  // (N, C): channels innermost
  return {dense, Layout{dense.size(0) * channels, inner, channels, false}};
}

// n as the kernels take it: a number read from the one-element CPU tensor (no device sync on CPU).
double read_n(const at::Tensor& n) {
  TORCH_CHECK(n.numel() == 1 && n.device().is_cpu(), "sau_core: n must be a one-element CPU tensor here");
  const double value = n.item<double>();
  TORCH_CHECK(value > 0, "SAU needs n > 0 (the Gaussian has standard deviation 1/n); got n=", value);
  return value;
}

// Writes SAU(x) into y, which may be x itself (the in-place op); x and y are dense with equal strides.
void forward_into(const at::Tensor& x, const at::Tensor& y, const at::Tensor& alpha, double n, bool zero_centred,
                  const Layout& layout) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sau_forward", [&] {
    using Acc = at::opmath_type<scalar_t>;
    const at::Tensor a = alpha.to(c10::CppTypeToScalarType<Acc>::value).contiguous();
    auto kernel = forward_kernel<scalar_t, Acc>();
    kernel(x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), a.const_data_ptr<Acc>(),
           static_cast<Acc>(n), zero_centred, layout);
  });
}

// sau_core::sau: y = SAU(x), with x's strides when x is dense.
at::Tensor sau(const at::Tensor& x, const at::Tensor& alpha, const at::Tensor& n, bool zero_centred) {
  const double n_value = read_n(n);
  auto [dense, layout] = dense_layout(x, alpha.numel());
  at::Tensor y = at::empty_like(dense);
  forward_into(dense, y, alpha, n_value, zero_centred, layout);
  return y;
}

// sau_core::_sau_inplace: writes SAU(x) (standard form) into x; a non-dense x is computed in a copy written back.
void sau_inplace(const at::Tensor& x, const at::Tensor& alpha, const at::Tensor& n) {
  const double n_value = read_n(n);
  auto [dense, layout] = dense_layout(x, alpha.numel());
  forward_into(dense, dense, alpha, n_value, false, layout);
  if (!dense.is_same(x)) x.copy_(dense);
}

// sau_core::sau_backward: (grad_x, grad_alpha, grad_n) from the saved input x, or from y = SAU(x) when
// saved_is_output (standard form only: backward recovers x from y). A gradient that is not needed comes back
// empty. grad_alpha and grad_n are reduced from per-piece partial sums in a fixed order (in double), so they
// do not depend on the thread count.
std::tuple<at::Tensor, at::Tensor, at::Tensor> sau_backward(const at::Tensor& grad_y, const at::Tensor& saved_in,
                                                            const at::Tensor& alpha, const at::Tensor& n,
                                                            bool zero_centred, bool saved_is_output, bool need_alpha,
                                                            bool need_n) {
  TORCH_CHECK(!(saved_is_output && zero_centred), "sau_core: the zero-centred form cannot recover x from y");
  TORCH_CHECK(grad_y.sizes() == saved_in.sizes() && grad_y.scalar_type() == saved_in.scalar_type(),
              "sau_core: grad_y must match the saved tensor in shape and dtype");
  const double n_value = read_n(n);
  auto [saved, layout] = dense_layout(saved_in, alpha.numel());
  at::Tensor grad_x, grad;
  if (grad_y.strides() == saved.strides()) {
    grad_x = at::empty_like(saved);
    grad = grad_y;
  } else {  // a strided gradient (e.g. from torch.cat's backward): copy it once, and compute grad_x in the copy
    grad_x = grad = at::empty_like(saved).copy_(grad_y);
  }
  at::Tensor grad_alpha, grad_n;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, saved.scalar_type(), "sau_backward", [&] {
    using Acc = at::opmath_type<scalar_t>;
    const auto acc_type = c10::CppTypeToScalarType<Acc>::value;
    const at::Tensor a = alpha.to(acc_type).contiguous();
    const int64_t pieces = num_pieces(layout);
    const int64_t alpha_partials = pieces * (layout.channel_on_cols ? layout.cols : 1);
    std::vector<Acc> alpha_pieces(need_alpha ? alpha_partials : 0, Acc(0));
    std::vector<Acc> n_pieces(need_n ? pieces : 0, Acc(0));
    auto kernel = backward_kernel<scalar_t, Acc>();
    kernel(grad.const_data_ptr<scalar_t>(), saved.const_data_ptr<scalar_t>(), grad_x.mutable_data_ptr<scalar_t>(),
           a.const_data_ptr<Acc>(), static_cast<Acc>(n_value), zero_centred, saved_is_output, layout,
           need_alpha ? alpha_pieces.data() : nullptr, need_n ? n_pieces.data() : nullptr);
    if (need_alpha) {
      std::vector<double> sums(layout.channels, 0.0);
      if (layout.channel_on_cols) {
        for (int64_t p = 0; p < pieces; ++p)
          for (int64_t c = 0; c < layout.cols; ++c) sums[c] += alpha_pieces[p * layout.cols + c];
      } else {
        const int64_t per_row = pieces_per_row(layout);
        for (int64_t p = 0; p < pieces; ++p) sums[(p / per_row) % layout.channels] += alpha_pieces[p];
      }
      at::Tensor out = at::empty({layout.channels}, alpha.options().dtype(acc_type));
      Acc* data = out.mutable_data_ptr<Acc>();
      for (int64_t c = 0; c < layout.channels; ++c) data[c] = static_cast<Acc>(sums[c]);
      grad_alpha = out.to(alpha.scalar_type());
    }
    if (need_n) {
      double sum = 0.0;
      for (Acc v : n_pieces) sum += v;
      grad_n = at::scalar_tensor(static_cast<Acc>(sum), n.options().dtype(acc_type)).to(n.scalar_type())
                   .reshape(n.sizes());
    }
  });
  if (!grad_alpha.defined()) grad_alpha = at::empty({0}, alpha.options());
  if (!grad_n.defined()) grad_n = at::empty({0}, n.options());
  return {grad_x, grad_alpha, grad_n};
}

}  // namespace
}  // namespace sau_core

// The build of the kernels in use (sau_core.kernels.cpu.isa()); a private helper op of the one namespace.
TORCH_LIBRARY_FRAGMENT(sau_core, m) {
  m.def("_cpu_isa() -> str", &sau_core::isa_name);
}

TORCH_LIBRARY_IMPL(sau_core, CPU, m) {
  m.impl("sau", &sau_core::sau);
  m.impl("sau_backward", &sau_core::sau_backward);
  m.impl("_sau_inplace", &sau_core::sau_inplace);
}
