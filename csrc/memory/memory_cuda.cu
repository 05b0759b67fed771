// CUDA twins of memory_cpu.cpp: the same equations with simple thread mappings (one block per
// key for the read, one thread per output element elsewhere); per-element math from
// common/host_device.h shared with the CPU path. Device pointers in, device pointers out;
// the Python op checks shapes and finiteness on the device.
#include <cuda_runtime.h>

#include <sstream>
#include <stdexcept>

#include "../common/cuda_block.cuh"
#include "../common/host_device.h"
#include "memory.h"

namespace metarisk {
namespace {

constexpr int THREADS = CUDA_BLOCK_THREADS;

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    std::ostringstream os;
    os << "CUDA error in " << what << ": " << cudaGetErrorString(err);
    throw std::runtime_error(os.str());
  }
}

unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + THREADS - 1) / THREADS); }

template <typename T>
__global__ void slot_norms(const T* M, int64_t rows, int64_t W, T* mn) {
  const int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  T s = T(0);
  for (int64_t w = 0; w < W; ++w) s += M[r * W + w] * M[r * W + w];
  mn[r] = sqrt(s);
}

template <typename T>
__device__ T key_norm(const T* k, int64_t W) {
  T part = T(0);
  for (int64_t w = threadIdx.x; w < W; w += blockDim.x) part += k[w] * k[w];
  return sqrt(block_reduce(part));
}

template <typename T>
__device__ T dot(const T* a, const T* b, int64_t W) {
  T s = T(0);
  for (int64_t w = 0; w < W; ++w) s += a[w] * b[w];
  return s;
}

// One block per key q (memory q / G): logits, softmax, weighted sum.
template <typename T>
__global__ void read_forward(MemoryReadArgs<T> a, const T* mn) {
  const int64_t q = blockIdx.x, e = q / a.G, N = a.N, W = a.W;
  const T* k = a.keys + q * W;
  const T* M = a.memory + e * N * W;
  T* P = a.weights + q * N;
  const T kn = key_norm(k, W), b = a.beta[q];
  T mx = -INFINITY;  // the largest cosine
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
    P[j] = cosine(dot(k, M + j * W, W), kn, mn[e * N + j], a.eps);
    mx = P[j] > mx ? P[j] : mx;
  }
  mx = block_reduce(mx, true);
  T part = T(0);
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) part += (P[j] = exp(shifted_logit(b, P[j], mx)));
  const T inv = T(1) / block_reduce(part);
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) P[j] *= inv;
  __syncthreads();
  for (int64_t w = threadIdx.x; w < W; w += blockDim.x) {
    T s = T(0);
    for (int64_t j = 0; j < N; ++j) s += P[j] * M[j * W + w];
    a.read[q * W + w] = s;
  }
}

// One block per key: G = dL/d(k . M_j) and H = dL/d|M_j| contributions into (E*G, N) buffers,
// d_beta and d_key.
template <typename T>
__global__ void read_backward_keys(MemoryReadArgs<T> a, const T* mn, const T* d_read, const T* d_weights,
                                   T* Gbuf, T* Hbuf, T* d_keys, T* d_beta) {
  const int64_t q = blockIdx.x, e = q / a.G, N = a.N, W = a.W;
  const T* k = a.keys + q * W;
  const T* M = a.memory + e * N * W;
  const T* P = a.weights + q * N;
  const T* dR = d_read + q * W;
  T* Gq = Gbuf + q * N;
  T* Hq = Hbuf + q * N;
  const T kn = key_norm(k, W), b = a.beta[q];
  T part = T(0);
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
    const T dp = (d_weights ? d_weights[q * N + j] : T(0)) + dot(dR, M + j * W, W);
    Gq[j] = dp;  // dP for now
    part += P[j] * dp;
  }
  const T pdp = block_reduce(part);
  T part_beta = T(0), part_kn = T(0);
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
    T dbeta, g, dD;
    cosine_softmax_grad(P[j], Gq[j], pdp, b, dot(k, M + j * W, W), kn, mn[e * N + j], a.eps, dbeta, g, dD);
    part_beta += dbeta;
    part_kn += dD * mn[e * N + j];
    Gq[j] = g;
    Hq[j] = dD * kn;
  }
  const T dbeta = block_reduce(part_beta), dkn = block_reduce(part_kn);
  if (threadIdx.x == 0) d_beta[q] = dbeta;
  for (int64_t w = threadIdx.x; w < W; w += blockDim.x) {
    T s = T(0);
    for (int64_t j = 0; j < N; ++j) s += Gq[j] * M[j * W + w];
    d_keys[q * W + w] = s + (kn > T(0) ? dkn / kn * k[w] : T(0));
  }
}

// One thread per memory entry (e, j, w): sum over the memory's G keys.
template <typename T>
__global__ void read_backward_memory(MemoryReadArgs<T> a, const T* mn, const T* d_read, const T* Gbuf,
                                     const T* Hbuf, T* d_memory) {
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t N = a.N, W = a.W;
  if (idx >= a.E * N * W) return;
  const int64_t e = idx / (N * W), j = (idx / W) % N, w = idx % W;
  T s = T(0), h = T(0);
  for (int64_t g = 0; g < a.G; ++g) {
    const int64_t q = e * a.G + g;
    s += Gbuf[q * N + j] * a.keys[q * W + w] + a.weights[q * N + j] * d_read[q * W + w];
    h += Hbuf[q * N + j];
  }
  const T m = mn[e * N + j];
  d_memory[idx] = s + (m > T(0) ? h / m * a.memory[idx] : T(0));
}

// One block per memory: the P least-used slots, ascending usage, ties by lower index.
template <typename T>
__global__ void least_used(MemoryWriteArgs<T> a, unsigned char* taken) {
  const int64_t e = blockIdx.x, N = a.N;
  const T* u = a.usage + e * N;
  unsigned char* tk = taken + e * N;
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) tk[j] = 0;
  __syncthreads();
  __shared__ T best_u[THREADS];
  __shared__ int64_t best_i[THREADS];
  for (int64_t p = 0; p < a.P; ++p) {
    T bu = INFINITY;
    int64_t bi = N;
    for (int64_t j = threadIdx.x; j < N; j += blockDim.x)
      if (!tk[j] && (u[j] < bu || (u[j] == bu && j < bi))) { bu = u[j]; bi = j; }
    best_u[threadIdx.x] = bu;
    best_i[threadIdx.x] = bi;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s) {
        const T ou = best_u[threadIdx.x + s];
        const int64_t oi = best_i[threadIdx.x + s];
        if (ou < best_u[threadIdx.x] || (ou == best_u[threadIdx.x] && oi < best_i[threadIdx.x])) {
          best_u[threadIdx.x] = ou;
          best_i[threadIdx.x] = oi;
        }
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      a.least_used[e * a.P + p] = best_i[0];
      tk[best_i[0]] = 1;
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void write_weights(MemoryWriteArgs<T> a) {
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // (e, p, j)
  if (idx >= a.E * a.P * a.N) return;
  const int64_t ep = idx / a.N, j = idx % a.N;
  a.write_weights[idx] = lrua_blend(lrua_gate(a.alpha[ep]), a.prev_read[idx], j == a.least_used[ep]);
}

template <typename T>
__global__ void write_usage(MemoryWriteArgs<T> a) {
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // (e, j)
  if (idx >= a.E * a.N) return;
  const int64_t e = idx / a.N, j = idx % a.N;
  T s = a.gamma * a.usage[idx];
  for (int64_t p = 0; p < a.P; ++p) s += a.write_weights[(e * a.P + p) * a.N + j];
  a.new_usage[idx] = s;
}

template <typename T>
__device__ bool is_least_used(const int64_t* lu, int64_t P, int64_t j) {
  for (int64_t p = 0; p < P; ++p)
    if (lu[p] == j) return true;
  return false;
}

template <typename T>
__global__ void write_memory(MemoryWriteArgs<T> a) {
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // (e, j, w)
  const int64_t N = a.N, W = a.W, P = a.P;
  if (idx >= a.E * N * W) return;
  const int64_t e = idx / (N * W), j = (idx / W) % N, w = idx % W;
  T s = is_least_used<T>(a.least_used + e * P, P, j) ? T(0) : a.memory[idx];
  for (int64_t p = 0; p < P; ++p) s += a.write_weights[(e * P + p) * N + j] * a.values[(e * P + p) * W + w];
  a.new_memory[idx] = s;
}

template <typename T>
__global__ void write_backward_weights(MemoryWriteArgs<T> a, const T* dM, const T* dU, const T* dWW, T* dww,
                                       T* d_prev_read) {
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // (e, p, j)
  const int64_t N = a.N, W = a.W, P = a.P;
  if (idx >= a.E * P * N) return;
  const int64_t ep = idx / N, e = ep / P, j = idx % N;
  T d = dot(dM + (e * N + j) * W, a.values + ep * W, W);
  if (dU) d += dU[e * N + j];
  if (dWW) d += dWW[idx];
  dww[idx] = d;
  d_prev_read[idx] = lrua_gate(a.alpha[ep]) * d;
}

template <typename T>
__global__ void write_backward_gate(MemoryWriteArgs<T> a, const T* dww, T* d_alpha) {
  const int64_t ep = blockIdx.x, N = a.N;
  T part = T(0);
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x)
    part += dww[ep * N + j] * (a.prev_read[ep * N + j] - (j == a.least_used[ep] ? T(1) : T(0)));
  const T s = block_reduce(part);
  if (threadIdx.x == 0) {
    const T g = lrua_gate(a.alpha[ep]);
    d_alpha[ep] = s * g * (T(1) - g);
  }
}

template <typename T>
__global__ void write_backward_values(MemoryWriteArgs<T> a, const T* dM, T* d_values) {
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // (e, p, w)
  const int64_t N = a.N, W = a.W, P = a.P;
  if (idx >= a.E * P * W) return;
  const int64_t ep = idx / W, e = ep / P, w = idx % W;
  T s = T(0);
  for (int64_t j = 0; j < N; ++j) s += a.write_weights[ep * N + j] * dM[(e * N + j) * W + w];
  d_values[idx] = s;
}

template <typename T>
__global__ void write_backward_memory(MemoryWriteArgs<T> a, const T* dM, const T* dU, T* d_memory, T* d_usage) {
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // (e, j, w)
  const int64_t N = a.N, W = a.W;
  if (idx >= a.E * N * W) return;
  const int64_t e = idx / (N * W), j = (idx / W) % N, w = idx % W;
  d_memory[idx] = is_least_used<T>(a.least_used + e * a.P, a.P, j) ? T(0) : dM[idx];
  if (w == 0) d_usage[e * N + j] = dU ? a.gamma * dU[e * N + j] : T(0);
}

template <typename T>
T* device_buffer(int64_t n, const char* what) {
  T* p = nullptr;
  check(cudaMalloc(&p, sizeof(T) * (n > 0 ? n : 1)), what);
  return p;
}

}  // namespace

template <typename T>
void memory_read_forward_cuda(const MemoryReadArgs<T>& a) {
  T* mn = device_buffer<T>(a.E * a.N, "cudaMalloc (memory norms)");
  slot_norms<T><<<blocks_for(a.E * a.N), THREADS>>>(a.memory, a.E * a.N, a.W, mn);
  read_forward<T><<<static_cast<unsigned>(a.E * a.G), THREADS>>>(a, mn);
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  cudaFree(mn);
  check(err, "memory_read_forward");
}

template <typename T>
void memory_read_backward_cuda(const MemoryReadArgs<T>& a, const T* d_read, const T* d_weights, T* d_keys,
                               T* d_beta, T* d_memory) {
  T* mn = device_buffer<T>(a.E * a.N, "cudaMalloc (memory norms)");
  T* G = device_buffer<T>(2 * a.E * a.G * a.N, "cudaMalloc (read backward)");
  slot_norms<T><<<blocks_for(a.E * a.N), THREADS>>>(a.memory, a.E * a.N, a.W, mn);
  read_backward_keys<T><<<static_cast<unsigned>(a.E * a.G), THREADS>>>(a, mn, d_read, d_weights, G,
                                                                        G + a.E * a.G * a.N, d_keys, d_beta);
  read_backward_memory<T><<<blocks_for(a.E * a.N * a.W), THREADS>>>(a, mn, d_read, G, G + a.E * a.G * a.N, d_memory);
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  cudaFree(mn);
  cudaFree(G);
  check(err, "memory_read_backward");
}

template <typename T>
void memory_write_forward_cuda(const MemoryWriteArgs<T>& a) {
  unsigned char* taken = device_buffer<unsigned char>(a.E * a.N, "cudaMalloc (least-used scratch)");
  least_used<T><<<static_cast<unsigned>(a.E), THREADS>>>(a, taken);
  write_weights<T><<<blocks_for(a.E * a.P * a.N), THREADS>>>(a);
  write_usage<T><<<blocks_for(a.E * a.N), THREADS>>>(a);
  write_memory<T><<<blocks_for(a.E * a.N * a.W), THREADS>>>(a);
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  cudaFree(taken);
  check(err, "memory_write_forward");
}

template <typename T>
void memory_write_backward_cuda(const MemoryWriteArgs<T>& a, const T* dM, const T* dU, const T* dWW, T* d_memory,
                                T* d_usage, T* d_prev_read, T* d_alpha, T* d_values) {
  T* dww = device_buffer<T>(a.E * a.P * a.N, "cudaMalloc (write backward)");
  write_backward_weights<T><<<blocks_for(a.E * a.P * a.N), THREADS>>>(a, dM, dU, dWW, dww, d_prev_read);
  write_backward_gate<T><<<static_cast<unsigned>(a.E * a.P), THREADS>>>(a, dww, d_alpha);
  write_backward_values<T><<<blocks_for(a.E * a.P * a.W), THREADS>>>(a, dM, d_values);
  write_backward_memory<T><<<blocks_for(a.E * a.N * a.W), THREADS>>>(a, dM, dU, d_memory, d_usage);
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  cudaFree(dww);
  check(err, "memory_write_backward");
}

#define MR_INSTANTIATE_CUDA(T)                                                                         \
  template void memory_read_forward_cuda<T>(const MemoryReadArgs<T>&);                                 \
  template void memory_read_backward_cuda<T>(const MemoryReadArgs<T>&, const T*, const T*, T*, T*, T*); \
  template void memory_write_forward_cuda<T>(const MemoryWriteArgs<T>&);                               \
  template void memory_write_backward_cuda<T>(const MemoryWriteArgs<T>&, const T*, const T*, const T*, T*, \
                                              T*, T*, T*, T*);
MR_INSTANTIATE_CUDA(float)
MR_INSTANTIATE_CUDA(double)

}  // namespace metarisk
