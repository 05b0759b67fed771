// Out-of-place matrix transpose: the memory kernels' layout changes (slot-major scratch <->
// key-major outputs) and the inner loop's transposed weights.
#pragma once
#include <cstdint>
#if defined(__AVX2__)
#include <immintrin.h>
#endif
namespace metarisk {
// dst (cols x rows, ldd) = src^T, src (rows x cols, lds); with dst_scale, dst row c is multiplied
// by dst_scale[c] on the way (the read's softmax normalisation rides on its weights' transpose).
// 8x8 register transposes for float on AVX2; a scalar loop for double and for the edges (it is
// about half as fast on the read's weight output: bench/RESULTS.md).
template <typename T>
inline void transpose(int64_t rows, int64_t cols, const T* src, int64_t lds, T* dst, int64_t ldd,
                      const T* dst_scale = nullptr) {
  int64_t r0 = 0;
#if defined(__AVX2__)
  if constexpr (sizeof(T) == 4) {
    const int64_t rows8 = rows / 8 * 8, cols8 = cols / 8 * 8;
    for (int64_t c0 = 0; c0 < cols8; c0 += 8)  // dst rows outer: each gets consecutive stores
      for (r0 = 0; r0 < rows8; r0 += 8) {
        __m256 r[8], t[8];
        for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(reinterpret_cast<const float*>(src + (r0 + k) * lds + c0));
        for (int k = 0; k < 8; k += 2) {
          t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
          t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
        }
        for (int k = 0; k < 8; k += 4) {
          r[k] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(1, 0, 1, 0));
          r[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(3, 2, 3, 2));
          r[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(1, 0, 1, 0));
          r[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(3, 2, 3, 2));
        }
        for (int k = 0; k < 4; ++k) {
          t[k] = _mm256_permute2f128_ps(r[k], r[k + 4], 0x20);
          t[k + 4] = _mm256_permute2f128_ps(r[k], r[k + 4], 0x31);
        }
        if (dst_scale)
          for (int k = 0; k < 8; ++k) t[k] = _mm256_mul_ps(t[k], _mm256_set1_ps(dst_scale[c0 + k]));
        for (int k = 0; k < 8; ++k) _mm256_storeu_ps(reinterpret_cast<float*>(dst + (c0 + k) * ldd + r0), t[k]);
      }
    for (int64_t r = 0; r < rows8; ++r)  // columns left over
      for (int64_t c = cols8; c < cols; ++c) dst[c * ldd + r] = src[r * lds + c] * (dst_scale ? dst_scale[c] : T(1));
    r0 = rows8;
  }
#endif
  for (; r0 < rows; ++r0)
    for (int64_t c = 0; c < cols; ++c) dst[c * ldd + r0] = src[r0 * lds + c] * (dst_scale ? dst_scale[c] : T(1));
}

}  // namespace metarisk
