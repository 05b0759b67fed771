// Non-temporal (streaming) stores for large outputs that a kernel writes once and does not read
// back: a plain store first reads the line from DRAM (write-allocate), a streaming store does
// not, so a write-only stream costs half the traffic (the LRUA write's B x N write weights). Scalar head and tail around the aligned vector body; call stream_fence()
// before another thread reads the data.
#pragma once
#include <cstdint>
#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace metarisk {

#if defined(__AVX512F__)
constexpr int64_t kStreamBytes = 64;
inline void stream_vector(float* d, const float* s) { _mm512_stream_ps(d, _mm512_loadu_ps(s)); }
inline void stream_vector(double* d, const double* s) { _mm512_stream_pd(d, _mm512_loadu_pd(s)); }
#elif defined(__AVX__)
constexpr int64_t kStreamBytes = 32;
inline void stream_vector(float* d, const float* s) { _mm256_stream_ps(d, _mm256_loadu_ps(s)); }
inline void stream_vector(double* d, const double* s) { _mm256_stream_pd(d, _mm256_loadu_pd(s)); }
#endif

template <typename T>
inline void stream_copy(T* dst, const T* src, int64_t n) {
  int64_t i = 0;
#if defined(__AVX__)
  constexpr int64_t lanes = kStreamBytes / sizeof(T);
  for (; i < n && reinterpret_cast<uintptr_t>(dst + i) % kStreamBytes != 0; ++i) dst[i] = src[i];
  if (reinterpret_cast<uintptr_t>(dst + i) % kStreamBytes == 0)  // false only for a misaligned T*
    for (; i + lanes <= n; i += lanes) stream_vector(dst + i, src + i);
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
