// Block-cooperative helpers shared by the CUDA kernels (inner loop and memory).
#pragma once

namespace metarisk {

constexpr int CUDA_BLOCK_THREADS = 256;  // every kernel launches blocks of this many threads

// Sum (or max) of one value per thread over the block; every thread gets the result.
template <typename T>
__device__ T block_reduce(T v, bool take_max = false) {
  __shared__ T buf[CUDA_BLOCK_THREADS];
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const T o = buf[threadIdx.x + s];
      buf[threadIdx.x] = take_max ? (o > buf[threadIdx.x] ? o : buf[threadIdx.x]) : buf[threadIdx.x] + o;
    }
    __syncthreads();
  }
  const T out = buf[0];
  __syncthreads();
  return out;
}

}  // namespace metarisk
