// Fused SAU kernels for the CPU, compiled once per instruction set (see setup.py) and chosen at run time.
//
// The tensor is seen as a dense rows x cols matrix in memory order. The slope alpha is either one value per
// row (channel = row % channels: NCHW-contiguous inputs and the shared-alpha case) or one value per column
// (channels innermost: channels_last inputs and (N, C) matrices).
#pragma once
#include <cstdint>

namespace sau_core {

struct Layout {
  int64_t rows;
  int64_t cols;
  int64_t channels;      // alpha.numel()
  bool channel_on_cols;  // alpha indexed by column (true) or by row % channels (false)
};

// Work is split into fixed pieces that do not depend on the thread count, so the reduction of grad_alpha and
// grad_n (piece partials, then an ordered sum) gives bitwise-identical results however many threads run.
constexpr int64_t kPieceElements = 4096;

inline int64_t pieces_per_row(const Layout& l) { return (l.cols + kPieceElements - 1) / kPieceElements; }
inline int64_t rows_per_piece(const Layout& l) {
  return l.cols >= kPieceElements ? 1 : kPieceElements / (l.cols > 0 ? l.cols : 1);
}
inline int64_t num_pieces(const Layout& l) {
  if (l.rows == 0 || l.cols == 0) return 0;
  if (l.channel_on_cols) return (l.rows + rows_per_piece(l) - 1) / rows_per_piece(l);
  return l.rows * pieces_per_row(l);
}

// T is the storage type (float, double, c10::Half, c10::BFloat16); Acc is float, or double for double.
// forward may run in place (y == x). backward takes the saved input x, or with saved_is_output the output y of
// the standard form (it recovers x from y, see invert()); it writes per-piece partial sums into
// grad_alpha_pieces (num_pieces values, times cols when channel_on_cols) and grad_n_pieces (num_pieces values);
// nullptr skips that gradient.
#define SAU_DECLARE_KERNELS(NS)                                                                          \
  namespace NS {                                                                                         \
  template <typename T, typename Acc>                                                                    \
  void forward(const T* x, T* y, const Acc* alpha, Acc n, bool zero_centred, const Layout& layout);     \
  template <typename T, typename Acc>                                                                    \
  void backward(const T* grad_y, const T* saved, T* grad_x, const Acc* alpha, Acc n, bool zero_centred,  \
                bool saved_is_output, const Layout& layout, Acc* grad_alpha_pieces, Acc* grad_n_pieces); \
  }

SAU_DECLARE_KERNELS(avx512)
SAU_DECLARE_KERNELS(avx2)
SAU_DECLARE_KERNELS(generic)

}  // namespace sau_core
