// Register-blocked small matrix products for the per-task MLP passes (tens of rows, widths up
// to a few hundred): C (m x n) = op(A) (m x k) * B (k x n) [+ C], all row-major.
// op(A) is addressed through strides, A(i, p) = A[i * a_row + p * a_col], so the same kernel
// serves A (a_row = lda, a_col = 1) and A^T (a_row = 1, a_col = lda).
// The inner loop runs over contiguous columns of B and C and is vectorised by the compiler;
// an MR x NR block of C stays in registers across the whole k loop.
#pragma once
#include <cstdint>

namespace metarisk {

template <typename T> struct GemmBlock;
template <> struct GemmBlock<float> { static constexpr int MR = 6, NR = 16; };
template <> struct GemmBlock<double> { static constexpr int MR = 6, NR = 8; };

template <typename T, int MR, int NR>
static inline void gemm_micro(int64_t k, const T* __restrict A, int64_t a_row, int64_t a_col,
                              const T* __restrict B, int64_t ldb, T* __restrict C, int64_t ldc,
                              bool accumulate) {
  T acc[MR][NR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) acc[r][j] = accumulate ? C[r * ldc + j] : T(0);
  for (int64_t p = 0; p < k; ++p) {
    const T* b = B + p * ldb;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const T a = A[r * a_row + p * a_col];
#pragma GCC unroll 16
      for (int j = 0; j < NR; ++j) acc[r][j] += a * b[j];
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) C[r * ldc + j] = acc[r][j];
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

template <typename T, int MR>
static inline void gemm_rows(int64_t n, int64_t k, const T* A, int64_t a_row, int64_t a_col,
                             const T* B, int64_t ldb, T* C, int64_t ldc, bool accumulate) {
  constexpr int NR = GemmBlock<T>::NR;
  int64_t j = 0;
  for (; j + NR <= n; j += NR)
    gemm_micro<T, MR, NR>(k, A, a_row, a_col, B + j, ldb, C + j, ldc, accumulate);
  if (j < n) gemm_edge<T>(MR, n - j, k, A, a_row, a_col, B + j, ldb, C + j, ldc, accumulate);
}

template <typename T>
inline void gemm(int64_t m, int64_t n, int64_t k, const T* A, int64_t a_row, int64_t a_col,
                 const T* B, int64_t ldb, T* C, int64_t ldc, bool accumulate) {
  constexpr int MR = GemmBlock<T>::MR;
  if (n == 1) {  // a column vector output (the last layer of a scalar regressor): plain dots
    for (int64_t i = 0; i < m; ++i) {
      T s = accumulate ? C[i * ldc] : T(0);
      for (int64_t p = 0; p < k; ++p) s += A[i * a_row + p * a_col] * B[p * ldb];
      C[i * ldc] = s;
    }
    return;
  }
  int64_t i = 0;
  for (; i + MR <= m; i += MR)
    gemm_rows<T, MR>(n, k, A + i * a_row, a_row, a_col, B, ldb, C + i * ldc, ldc, accumulate);
  const T* Ai = A + i * a_row;
  T* Ci = C + i * ldc;
  switch (m - i) {
    case 5: gemm_rows<T, 5>(n, k, Ai, a_row, a_col, B, ldb, Ci, ldc, accumulate); break;
    case 4: gemm_rows<T, 4>(n, k, Ai, a_row, a_col, B, ldb, Ci, ldc, accumulate); break;
    case 3: gemm_rows<T, 3>(n, k, Ai, a_row, a_col, B, ldb, Ci, ldc, accumulate); break;
    case 2: gemm_rows<T, 2>(n, k, Ai, a_row, a_col, B, ldb, Ci, ldc, accumulate); break;
    case 1: gemm_rows<T, 1>(n, k, Ai, a_row, a_col, B, ldb, Ci, ldc, accumulate); break;
    default: break;
  }
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
