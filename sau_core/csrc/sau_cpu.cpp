// ATen entry points of the CPU kernels, registered as torch.ops.sau_core_cpu.{forward,forward_,backward}.
// sau_core/op.py calls them from the CPU implementation of the public op sau_core::sau; the layout
// (rows, cols, channel_on_cols) is computed there, once for every backend.
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

Layout make_layout(const at::Tensor& x, const at::Tensor& alpha, int64_t rows, int64_t cols, bool channel_on_cols) {
  TORCH_CHECK(x.is_non_overlapping_and_dense(), "sau_core_cpu: x must be dense in memory");
  TORCH_CHECK(rows * cols == x.numel(), "sau_core_cpu: rows*cols must equal x.numel()");
  const int64_t channels = alpha.numel();
  TORCH_CHECK(channels >= 1, "sau_core_cpu: alpha is empty");
  TORCH_CHECK(channel_on_cols ? channels == cols : x.numel() == 0 || rows % channels == 0,
              "sau_core_cpu: alpha does not match the layout");
  return Layout{rows, cols, channels, channel_on_cols};
}

// Writes SAU(x) into y, which may be x itself (the in-place op).
void forward_into(const at::Tensor& x, const at::Tensor& y, const at::Tensor& alpha, double n, bool zero_centred,
                  int64_t rows, int64_t cols, bool channel_on_cols) {
  const Layout layout = make_layout(x, alpha, rows, cols, channel_on_cols);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sau_forward", [&] {
    using Acc = at::opmath_type<scalar_t>;
    const at::Tensor a = alpha.to(c10::CppTypeToScalarType<Acc>::value).contiguous();
    auto kernel = forward_kernel<scalar_t, Acc>();
    kernel(x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), a.const_data_ptr<Acc>(),
           static_cast<Acc>(n), zero_centred, layout);
  });
}

at::Tensor sau_forward(const at::Tensor& x, const at::Tensor& alpha, double n, bool zero_centred, int64_t rows,
                       int64_t cols, bool channel_on_cols) {
  at::Tensor y = at::empty_like(x);
  forward_into(x, y, alpha, n, zero_centred, rows, cols, channel_on_cols);
  return y;
}

void sau_forward_(const at::Tensor& x, const at::Tensor& alpha, double n, bool zero_centred, int64_t rows,
                  int64_t cols, bool channel_on_cols) {
  forward_into(x, x, alpha, n, zero_centred, rows, cols, channel_on_cols);
}

// x is the saved input, or the output SAU(x) when saved_is_output (standard form only). Writes grad_x, which may
// be grad_y itself (each element is read before it is written), and returns (grad_alpha, grad_n) in the compute
// type (float or double), empty when not requested. The piece partials are summed in a fixed order, in double.
std::tuple<at::Tensor, at::Tensor> sau_backward(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& grad_x,
                                                const at::Tensor& alpha, double n, bool zero_centred,
                                                bool saved_is_output, int64_t rows, int64_t cols,
                                                bool channel_on_cols, bool need_alpha, bool need_n) {
  const Layout layout = make_layout(x, alpha, rows, cols, channel_on_cols);
  TORCH_CHECK(!(saved_is_output && zero_centred), "sau_core_cpu: the zero-centred form cannot recover x from y");
  for (const at::Tensor* t : {&grad_y, &grad_x})
    TORCH_CHECK(t->sizes() == x.sizes() && t->strides() == x.strides() && t->scalar_type() == x.scalar_type(),
                "sau_core_cpu: grad_y and grad_x must match x in shape, strides and dtype");
  at::Tensor grad_alpha, grad_n;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sau_backward", [&] {
    using Acc = at::opmath_type<scalar_t>;
    const auto acc_type = c10::CppTypeToScalarType<Acc>::value;
    const at::Tensor a = alpha.to(acc_type).contiguous();
    const int64_t pieces = num_pieces(layout);
    const int64_t alpha_partials = pieces * (channel_on_cols ? cols : 1);
    std::vector<Acc> alpha_pieces(need_alpha ? alpha_partials : 0, Acc(0));
    std::vector<Acc> n_pieces(need_n ? pieces : 0, Acc(0));
    auto kernel = backward_kernel<scalar_t, Acc>();
    kernel(grad_y.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), grad_x.mutable_data_ptr<scalar_t>(),
           a.const_data_ptr<Acc>(), static_cast<Acc>(n), zero_centred, saved_is_output, layout,
           need_alpha ? alpha_pieces.data() : nullptr, need_n ? n_pieces.data() : nullptr);
    if (need_alpha) {
      std::vector<double> sums(layout.channels, 0.0);
      if (channel_on_cols) {
        for (int64_t p = 0; p < pieces; ++p)
          for (int64_t c = 0; c < cols; ++c) sums[c] += alpha_pieces[p * cols + c];
      } else {
        const int64_t per_row = pieces_per_row(layout);
        for (int64_t p = 0; p < pieces; ++p) sums[(p / per_row) % layout.channels] += alpha_pieces[p];
      }
      grad_alpha = at::empty({layout.channels}, x.options().dtype(acc_type));
      Acc* out = grad_alpha.mutable_data_ptr<Acc>();
      for (int64_t c = 0; c < layout.channels; ++c) out[c] = static_cast<Acc>(sums[c]);
    }
    if (need_n) {
      double sum = 0.0;
      for (Acc v : n_pieces) sum += v;
      grad_n = at::scalar_tensor(sum, x.options().dtype(acc_type));
    }
  });
  if (!grad_alpha.defined()) grad_alpha = at::empty({0}, x.options());
  if (!grad_n.defined()) grad_n = at::empty({0}, x.options());
  return {grad_alpha, grad_n};
}

}  // namespace
}  // namespace sau_core

TORCH_LIBRARY(sau_core_cpu, m) {
  m.def("isa() -> str");
  m.def("forward(Tensor x, Tensor alpha, float n, bool zero_centred, int rows, int cols, bool channel_on_cols)"
        " -> Tensor");
  m.def("forward_(Tensor(a!) x, Tensor alpha, float n, bool zero_centred, int rows, int cols, bool channel_on_cols)"
        " -> ()");
  m.def("backward(Tensor grad_y, Tensor saved, Tensor(a!) grad_x, Tensor alpha, float n, bool zero_centred,"
        " bool saved_is_output, int rows, int cols, bool channel_on_cols, bool need_alpha, bool need_n)"
        " -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(sau_core_cpu, CompositeExplicitAutograd, m) {
  m.impl("isa", &sau_core::isa_name);
}

TORCH_LIBRARY_IMPL(sau_core_cpu, CPU, m) {
  m.impl("forward", &sau_core::sau_forward);
  m.impl("forward_", &sau_core::sau_forward_);
  m.impl("backward", &sau_core::sau_backward);
}
