// Non-temporal (streaming) stores for large outputs that a kernel writes once and does not read
// back: a plain store first reads the line from DRAM (write-allocate), a streaming store does
// not, so a write-only stream costs half the traffic (W3 LRUA write: 0.82 -> 0.49 ms, its 4 MB
// of write weights). Scalar head and tail around the aligned vector body; call stream_fence()
// before another thread reads the data.
#pragma once
#include <cstdint>
#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace metarisk {

template <typename T>
inline void stream_copy(T* dst, const T* src, int64_t n) {
  int64_t i = 0;
#if defined(__AVX__)
#if defined(__AVX512F__)
  using F = __m512;
  using D = __m512d;
  constexpr int64_t bytes = 64;
#else
  using F = __m256;
  using D = __m256d;
  constexpr int64_t bytes = 32;
#endif
  constexpr int64_t lanes = bytes / sizeof(T);
  for (; i < n && reinterpret_cast<uintptr_t>(dst + i) % bytes != 0; ++i) dst[i] = src[i];
  if (reinterpret_cast<uintptr_t>(dst + i) % bytes == 0) {  // false only for a misaligned T*
    for (; i + lanes <= n; i += lanes) {
      if constexpr (sizeof(T) == 4) {
        F v;
        __builtin_memcpy(&v, src + i, bytes);
#if defined(__AVX512F__)
        _mm512_stream_ps(reinterpret_cast<float*>(dst + i), v);
#else
        _mm256_stream_ps(reinterpret_cast<float*>(dst + i), v);
#endif
      } else {
        D v;
        __builtin_memcpy(&v, src + i, bytes);
#if defined(__AVX512F__)
        _mm512_stream_pd(reinterpret_cast<double*>(dst + i), v);
#else
        _mm256_stream_pd(reinterpret_cast<double*>(dst + i), v);
#endif
      }
    }
  }
#endif
  for (; i < n; ++i) dst[i] = src[i];
}

// Orders this thread's streaming stores before what follows (they bypass the usual ordering).
inline void stream_fence() {
#if defined(__AVX__)
  _mm_sfence();
#endif
}

}  // namespace metarisk
