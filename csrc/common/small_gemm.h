// Register-blocked small matrix products for the per-task MLP passes (tens of rows, widths up
// to a few hundred): C (m x n) = op(A) (m x k) * B (k x n) [+ C], all row-major.
// op(A) is addressed through strides, A(i, p) = A[i * a_row + p * a_col], so the same kernel
// serves A (a_row = lda, a_col = 1) and A^T (a_row = 1, a_col = lda).
// The inner loop runs over contiguous columns of B and C and is vectorised by the compiler;
// an MR x NR block of C stays in registers across the whole k loop.
#pragma once
#include <cstdint>
#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

namespace metarisk {

// Explicit vectors (GCC/Clang vector extensions) keep the MR x NR accumulator block in
// registers; left to itself the compiler vectorised the k loop instead when a_col == 1. Their
// width is the widest the build targets: 64 bytes with AVX-512 (twice the FLOPs per
// instruction), else 32.
#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#else
constexpr int kVecBytes = 32;
#endif
template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(kVecBytes), aligned(sizeof(T))));
  static constexpr int lanes = kVecBytes / sizeof(T);
};

template <typename T> struct GemmBlock {
  // 6 rows x NV vectors of accumulators: 24 of AVX-512's 32 registers (a 64-float panel), 12 of
  // AVX2's 16
  static constexpr int MR = 6, NV = kVecBytes == 64 ? 4 : 2, NR = NV * Vec<T>::lanes;
};

// How op(A) is laid out, a template parameter of the micro-kernels so each addresses A with as
// few registers as it can: rows contiguous (a_col == 1: A as given), columns contiguous
// (a_row == 1: A^T, the MR values of one step of k lie side by side), or any strides.
enum ALayout { kARows, kACols, kAStrided };

template <typename T, int MR, int NR, int AL>
static inline void gemm_micro(int64_t k, const T* __restrict A, int64_t a_row, int64_t a_col,
                              const T* __restrict B, int64_t ldb, T* __restrict C, int64_t ldc,
                              bool accumulate) {
  using V = typename Vec<T>::type;
  constexpr int NV = NR / Vec<T>::lanes;
  constexpr int W = Vec<T>::lanes;
  V acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v)
      acc[r][v] = accumulate ? *reinterpret_cast<const V*>(C + r * ldc + v * W) : V{};
  const T* rows[MR];  // kARows: one pointer per row, stepping by one element
  for (int r = 0; r < MR; ++r) rows[r] = A + r * a_row;
  for (int64_t p = 0; p < k; ++p) {
    V b[NV];
    for (int v = 0; v < NV; ++v) b[v] = *reinterpret_cast<const V*>(B + p * ldb + v * W);
    for (int r = 0; r < MR; ++r) {
      T a;
      if constexpr (AL == kARows) a = rows[r][p];
      else if constexpr (AL == kACols) a = A[p * a_col + r];
      else a = A[r * a_row + p * a_col];
      for (int v = 0; v < NV; ++v) acc[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) *reinterpret_cast<V*>(C + r * ldc + v * W) = acc[r][v];
}

// Columns left over after the NR-wide blocks (n % NR of them, fewer than NR).
template <typename T>
static inline void gemm_edge(int64_t m, int64_t n, int64_t k, const T* __restrict A, int64_t a_row,
                             int64_t a_col, const T* __restrict B, int64_t ldb, T* __restrict C,
                             int64_t ldc, bool accumulate) {
  for (int64_t i = 0; i < m; ++i) {
    T* c = C + i * ldc;
    if (!accumulate)
      for (int64_t j = 0; j < n; ++j) c[j] = T(0);
    for (int64_t p = 0; p < k; ++p) {
      const T a = A[i * a_row + p * a_col];
      const T* b = B + p * ldb;
      for (int64_t j = 0; j < n; ++j) c[j] += a * b[j];
    }
  }
}

// Up to MR rows (r of them) of one NR-wide column panel.
template <typename T, int NR, int AL>
static inline void gemm_rows(int64_t r, int64_t k, const T* A, int64_t a_row, int64_t a_col, const T* B,
                             int64_t ldb, T* C, int64_t ldc, bool accumulate) {
  switch (r) {
    case 6: gemm_micro<T, 6, NR, AL>(k, A, a_row, a_col, B, ldb, C, ldc, accumulate); break;
    case 5: gemm_micro<T, 5, NR, AL>(k, A, a_row, a_col, B, ldb, C, ldc, accumulate); break;
    case 4: gemm_micro<T, 4, NR, AL>(k, A, a_row, a_col, B, ldb, C, ldc, accumulate); break;
    case 3: gemm_micro<T, 3, NR, AL>(k, A, a_row, a_col, B, ldb, C, ldc, accumulate); break;
    case 2: gemm_micro<T, 2, NR, AL>(k, A, a_row, a_col, B, ldb, C, ldc, accumulate); break;
    case 1: gemm_micro<T, 1, NR, AL>(k, A, a_row, a_col, B, ldb, C, ldc, accumulate); break;
    default: break;
  }
}

// The m rows of one NR-wide column panel (B: k x NR at stride ldb) in blocks of MR rows. A
// remainder of 1-3 rows would run with too few accumulators to hide the FMA latency (half
// speed at 2 rows: the per-task products have 32 rows), so it shares the last full block's
// rows instead: 6 + 2 rows run as 4 + 4.
template <typename T, int NR, int AL>
static inline void gemm_panel(int64_t m, int64_t k, const T* A, int64_t a_row, int64_t a_col,
                              const T* B, int64_t ldb, T* C, int64_t ldc, bool accumulate) {
  constexpr int MR = GemmBlock<T>::MR;
  static_assert(MR == 6, "the remainder split below assumes blocks of 6 rows");
  const int64_t rem = m % MR;
  const int64_t full = m / MR - (m > MR && rem > 0 && rem < 4 ? 1 : 0);
  int64_t i = 0;
  for (; i < full * MR; i += MR)
    gemm_micro<T, MR, NR, AL>(k, A + i * a_row, a_row, a_col, B, ldb, C + i * ldc, ldc, accumulate);
  const int64_t left = m - i;  // at most MR, or MR + 1 .. MR + 3
  const int64_t first = left > MR ? left / 2 : left;
  gemm_rows<T, NR, AL>(first, k, A + i * a_row, a_row, a_col, B, ldb, C + i * ldc, ldc, accumulate);
  i += first;
  if (i < m) gemm_rows<T, NR, AL>(m - i, k, A + i * a_row, a_row, a_col, B, ldb, C + i * ldc, ldc, accumulate);
}

template <typename T>
inline void gemm(int64_t m, int64_t n, int64_t k, const T* A, int64_t a_row, int64_t a_col,
                 const T* B, int64_t ldb, T* C, int64_t ldc, bool accumulate) {
  constexpr int MR = GemmBlock<T>::MR, NR = GemmBlock<T>::NR;
  if (n == 1) {  // a column vector output (the last layer of a scalar regressor): dots
    if (a_col == 1 && ldb == 1) {  // contiguous rows: vector dots (the sum reassociated)
      for (int64_t i = 0; i < m; ++i) {
        const T* a = A + i * a_row;
        T s = T(0);
#pragma omp simd reduction(+ : s)
        for (int64_t p = 0; p < k; ++p) s += a[p] * B[p];
        C[i * ldc] = accumulate ? C[i * ldc] + s : s;
      }
      return;
    }
    for (int64_t i = 0; i < m; ++i) {
      T s = accumulate ? C[i * ldc] : T(0);
      for (int64_t p = 0; p < k; ++p) s += A[i * a_row + p * a_col] * B[p * ldb];
      C[i * ldc] = s;
    }
    return;
  }
  // Long reductions in slices of KC, so a packed panel slice (KC x NR, at most 32 KB) stays in L1
  // across the row blocks.
  constexpr int64_t KC = std::min<int64_t>(256, 32768 / (NR * static_cast<int64_t>(sizeof(T))));
  if (k > 2 * KC) {
    for (int64_t p0 = 0; p0 < k; p0 += KC)
      gemm<T>(m, n, std::min<int64_t>(KC, k - p0), A + p0 * a_col, a_row, a_col, B + p0 * ldb, ldb, C, ldc,
              accumulate || p0 > 0);
    return;
  }
  // Column panels outermost. A panel is copied into a contiguous buffer first when several row
  // blocks reuse it and its rows lie far apart (a wide B: rows at a large, often power-of-two
  // stride alias in the cache), or when many row blocks do (the copy pays for itself); for the
  // per-task MLP's few row blocks the copy cost more than it saved.
  const bool pack = m > MR && (ldb * static_cast<int64_t>(sizeof(T)) >= 512 || m >= 16 * MR);
  thread_local std::vector<T> packed;
  if (pack && packed.size() < static_cast<size_t>(k * NR)) packed.resize(k * NR);
  auto panel = [&](auto width, int64_t j) {
    constexpr int w = decltype(width)::value;
    const T* Bj = B + j;
    int64_t ldbj = ldb;
    if (pack) {
      for (int64_t p = 0; p < k; ++p)
        for (int q = 0; q < w; ++q) packed[p * w + q] = B[p * ldb + j + q];
      Bj = packed.data();
      ldbj = w;
    }
    if (a_col == 1)
      gemm_panel<T, w, kARows>(m, k, A, a_row, a_col, Bj, ldbj, C + j, ldc, accumulate);
    else if (a_row == 1)
      gemm_panel<T, w, kACols>(m, k, A, a_row, a_col, Bj, ldbj, C + j, ldc, accumulate);
    else
      gemm_panel<T, w, kAStrided>(m, k, A, a_row, a_col, Bj, ldbj, C + j, ldc, accumulate);
  };
  constexpr int L = Vec<T>::lanes;
  int64_t j = 0;
  for (; j + NR <= n; j += NR) panel(std::integral_constant<int, NR>{}, j);
  if constexpr (NR > 2 * L)
    for (; j + 2 * L <= n; j += 2 * L) panel(std::integral_constant<int, 2 * L>{}, j);  // two vectors wide
  for (; j + L <= n; j += L) panel(std::integral_constant<int, L>{}, j);  // one vector wide
  if (j < n) gemm_edge<T>(m, n - j, k, A, a_row, a_col, B + j, ldb, C + j, ldc, accumulate);
}

// C = A * B (A: m x k, lda) [+ C]
template <typename T>
inline void gemm_nn(int64_t m, int64_t n, int64_t k, const T* A, int64_t lda, const T* B,
                    int64_t ldb, T* C, int64_t ldc, bool accumulate) {
  gemm<T>(m, n, k, A, lda, 1, B, ldb, C, ldc, accumulate);
}
// C = A^T * B (A stored k x m, lda) [+ C]
template <typename T>
inline void gemm_tn(int64_t m, int64_t n, int64_t k, const T* A, int64_t lda, const T* B,
                    int64_t ldb, T* C, int64_t ldc, bool accumulate) {
  gemm<T>(m, n, k, A, 1, lda, B, ldb, C, ldc, accumulate);
}

}  // namespace metarisk
