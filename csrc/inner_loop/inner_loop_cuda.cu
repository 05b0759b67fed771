// CUDA twin of inner_loop_cpu.cpp: one thread block per task runs the same sequence (S SGD steps,
// query loss, the R-operator backward sweep for second order, Meta-SGD rate gradients) with the
// per-element math of common/host_device.h, so the CPU tests cover that math. Matrix products are
// block-cooperative loops (each thread owns output elements); weights are read in their
// (out, in) layout through strides, so no transposed copies are needed.
#include <cuda_runtime.h>

#include <sstream>
#include <stdexcept>

#include "../common/cuda_block.cuh"
#include "../common/host_device.h"
#include "inner_loop.h"

namespace metarisk {
namespace {

constexpr int MAX_LAYERS = 16;
constexpr int THREADS = CUDA_BLOCK_THREADS;

struct DevLayout {
  int L;
  int64_t P, A;
  int64_t d[MAX_LAYERS + 1], w[MAX_LAYERS + 1], b[MAX_LAYERS + 1], act[MAX_LAYERS + 1];
};

// C (m x n) = op(A) op(B) [+ C]; A(i, p) = A[i * ar + p * ac], B(p, j) = B[p * br + j * bc].
template <typename T>
__device__ void block_gemm(int64_t m, int64_t n, int64_t k, const T* A, int64_t ar, int64_t ac, const T* B,
                           int64_t br, int64_t bc, T* C, int64_t ldc, bool accumulate) {
  for (int64_t e = threadIdx.x; e < m * n; e += blockDim.x) {
    const int64_t i = e / n, j = e % n;
    T s = accumulate ? C[i * ldc + j] : T(0);
    for (int64_t p = 0; p < k; ++p) s += A[i * ar + p * ac] * B[p * br + j * bc];
    C[i * ldc + j] = s;
  }
  __syncthreads();
}

template <typename T>
__device__ void colsum(const T* X, int64_t n, int64_t cols, T* out) {
  for (int64_t o = threadIdx.x; o < cols; o += blockDim.x) {
    T s = T(0);
    for (int64_t r = 0; r < n; ++r) s += X[r * cols + o];
    out[o] = s;
  }
  __syncthreads();
}

template <typename T>
struct DevNet {
  const DevLayout& lay;
  Activation act;
  Loss loss;

  __device__ T* layer(T* buf, int64_t n, int l) const { return buf + n * lay.act[l]; }
  __device__ const T* in(const T* x, const T* buf, int64_t n, int l) const { return l == 0 ? x : buf + n * lay.act[l]; }

  __device__ void forward(const T* x, int64_t n, const T* th, T* acts) const {
    for (int l = 1; l <= lay.L; ++l) {
      const int64_t out = lay.d[l], inn = lay.d[l - 1];
      T* z = layer(acts, n, l);
      for (int64_t e = threadIdx.x; e < n * out; e += blockDim.x) z[e] = th[lay.b[l] + e % out];
      __syncthreads();
      block_gemm<T>(n, out, inn, in(x, acts, n, l - 1), inn, 1, th + lay.w[l], 1, inn, z, out, true);
      if (l < lay.L) {
        for (int64_t e = threadIdx.x; e < n * out; e += blockDim.x) z[e] = activate(act, z[e]);
        __syncthreads();
      }
    }
  }

  __device__ T backward(const T* x, const T* y, const T* w, int64_t n, const T* th, const T* acts, T* deltas,
                        T* grad) const {
    const int L = lay.L;
    const int64_t O = lay.d[L];
    const T inv = T(1) / T(n * O);
    const T* z = acts + n * lay.act[L];
    T* dL = layer(deltas, n, L);
    T part = T(0);
    for (int64_t e = threadIdx.x; e < n * O; e += blockDim.x) {
      const T wr = row_weight(w, e, O);
      part += wr * loss_value(loss, z[e], y[e]);
      dL[e] = wr * loss_grad(loss, z[e], y[e]) * inv;
    }
    const T total = block_reduce(part);
    if (grad == nullptr) return total * inv;
    for (int l = L; l >= 1; --l) {
      const int64_t out = lay.d[l], inn = lay.d[l - 1];
      const T* delta = layer(deltas, n, l);
      const T* a_prev = in(x, acts, n, l - 1);
      block_gemm<T>(out, inn, n, delta, 1, out, a_prev, inn, 1, grad + lay.w[l], inn, false);
      colsum(delta, n, out, grad + lay.b[l]);
      if (l > 1) {
        T* dprev = layer(deltas, n, l - 1);
        block_gemm<T>(n, inn, out, delta, out, 1, th + lay.w[l], inn, 1, dprev, inn, false);
        for (int64_t e = threadIdx.x; e < n * inn; e += blockDim.x)
          dprev[e] *= activation_grad_from_output(act, a_prev[e]);
        __syncthreads();
      }
    }
    return total * inv;
  }

  __device__ void hvp(const T* x, const T* y, const T* w, int64_t n, const T* th, const T* acts, const T* deltas, const T* u,
                      T* rz, T* ra, T* rd, T* hv) const {
    const int L = lay.L;
    const int64_t O = lay.d[L];
    const T inv = T(1) / T(n * O);
    for (int l = 1; l <= L; ++l) {
      const int64_t out = lay.d[l], inn = lay.d[l - 1];
      T* Rz = layer(rz, n, l);
      for (int64_t e = threadIdx.x; e < n * out; e += blockDim.x) Rz[e] = u[lay.b[l] + e % out];
      __syncthreads();
      block_gemm<T>(n, out, inn, in(x, acts, n, l - 1), inn, 1, u + lay.w[l], 1, inn, Rz, out, true);
      if (l > 1) block_gemm<T>(n, out, inn, layer(ra, n, l - 1), inn, 1, th + lay.w[l], 1, inn, Rz, out, true);
      if (l < L) {
        const T* a = acts + n * lay.act[l];
        T* Ra = layer(ra, n, l);
        for (int64_t e = threadIdx.x; e < n * out; e += blockDim.x) Ra[e] = activation_grad_from_output(act, a[e]) * Rz[e];
        __syncthreads();
      }
    }
    {
      const T* z = acts + n * lay.act[L];
      const T* Rz = layer(rz, n, L);
      T* Rd = layer(rd, n, L);
      for (int64_t e = threadIdx.x; e < n * O; e += blockDim.x) Rd[e] = row_weight(w, e, O) * loss_hess(loss, z[e], y[e]) * inv * Rz[e];
      __syncthreads();
    }
    for (int l = L; l >= 1; --l) {
      const int64_t out = lay.d[l], inn = lay.d[l - 1];
      const T* Rd = layer(rd, n, l);
      const T* delta = deltas + n * lay.act[l];
      block_gemm<T>(out, inn, n, Rd, 1, out, in(x, acts, n, l - 1), inn, 1, hv + lay.w[l], inn, false);
      if (l > 1) block_gemm<T>(out, inn, n, delta, 1, out, layer(ra, n, l - 1), inn, 1, hv + lay.w[l], inn, true);
      colsum(Rd, n, out, hv + lay.b[l]);
      if (l > 1) {
        T* Rdp = layer(rd, n, l - 1);
        block_gemm<T>(n, inn, out, Rd, out, 1, th + lay.w[l], inn, 1, Rdp, inn, false);
        block_gemm<T>(n, inn, out, delta, out, 1, u + lay.w[l], inn, 1, Rdp, inn, true);
        const T* a = acts + n * lay.act[l - 1];
        const T* dprev = deltas + n * lay.act[l - 1];
        const T* Rzp = layer(rz, n, l - 1);
        for (int64_t e = threadIdx.x; e < n * inn; e += blockDim.x)
          Rdp[e] = Rdp[e] * activation_grad_from_output(act, a[e]) + dprev[e] * activation_curvature_ratio(act, a[e]) * Rzp[e];
        __syncthreads();
      }
    }
  }
};

template <typename T>
__global__ void inner_loop_kernel(DevLayout lay, Activation act, Loss loss, InnerLoopArgs<T> a, T* work,
                                  int64_t per_task) {
  const int64_t b = blockIdx.x;
  const int64_t P = lay.P, A = lay.A, S = a.steps, K = a.support, Q = a.query;
  const int64_t D = lay.d[0], O = lay.d[lay.L];
  const bool second = a.mode == MetaMode::SecondOrder;
  const bool want_lr = a.task_lr_grad != nullptr;
  const TaskWorkspace<T> ws(work + b * per_task, P, A, S, K, Q, second, want_lr, 0);
  T *thetas = ws.thetas, *acts = ws.acts, *deltas = ws.deltas, *grads = ws.grads, *qacts = ws.qacts;
  T *qdeltas = ws.qdeltas, *v = ws.v, *u = ws.u, *hv = ws.hv, *rz = ws.rz, *ra = ws.ra, *rd = ws.rd;
  const DevNet<T> net{lay, act, loss};
  const T* xs = a.xs + b * K * D;
  const T* ys = a.ys + b * K * O;
  const T* wsb = a.ws ? a.ws + b * K : nullptr;
  const T* theta0 = a.theta + (a.theta_per_task ? b * P : 0);
  for (int64_t p = threadIdx.x; p < P; p += blockDim.x) thetas[p] = theta0[p];
  __syncthreads();
  for (int64_t s = 0; s < S; ++s) {
    const T* th = thetas + s * P;
    T* nxt = thetas + (s + 1) * P;
    T* st_acts = acts + (second ? s : 0) * K * A;
    T* st_deltas = deltas + (second ? s : 0) * K * A;
    T* g = grads + (want_lr ? s : 0) * P;
    net.forward(xs, K, th, st_acts);
    net.backward(xs, ys, wsb, K, th, st_acts, st_deltas, g);
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) nxt[p] = th[p] - a.lr[a.lr_per_param ? p : 0] * g[p];
    __syncthreads();
  }
  const T* thS = thetas + S * P;
  if (a.adapted)
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) a.adapted[b * P + p] = thS[p];
  if (Q > 0) {
    const T* xq = a.xq + b * Q * D;
    net.forward(xq, Q, thS, qacts);
    if (a.query_pred)
      for (int64_t e = threadIdx.x; e < Q * O; e += blockDim.x) a.query_pred[b * Q * O + e] = qacts[Q * lay.act[lay.L] + e];
    if (a.yq) {
      const bool need_v = a.mode == MetaMode::FirstOrder || second || want_lr;
      const T l = net.backward(xq, a.yq + b * Q * O, a.wq ? a.wq + b * Q : nullptr, Q, thS, qacts, qdeltas,
                               need_v ? v : nullptr);
      if (a.task_loss && threadIdx.x == 0) a.task_loss[b] = l;
    }
  }
  __syncthreads();
  if (a.mode == MetaMode::Reptile) {
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) a.task_grad[b * P + p] = theta0[p] - thS[p];
    return;
  }
  if (a.mode == MetaMode::None && !want_lr) return;
  T* lr_grad = want_lr ? a.task_lr_grad + b * P : nullptr;
  if (lr_grad)
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) lr_grad[p] = T(0);
  __syncthreads();
  for (int64_t s = S - 1; s >= 0; --s) {
    if (lr_grad)
      for (int64_t p = threadIdx.x; p < P; p += blockDim.x) lr_grad[p] -= grads[s * P + p] * v[p];
    __syncthreads();
    if (!second) continue;
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) u[p] = a.lr[a.lr_per_param ? p : 0] * v[p];
    __syncthreads();
    net.hvp(xs, ys, wsb, K, thetas + s * P, acts + s * K * A, deltas + s * K * A, u, rz, ra, rd, hv);
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) v[p] -= hv[p];
    __syncthreads();
  }
  if (a.task_grad)
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) a.task_grad[b * P + p] = v[p];
}

void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    std::ostringstream os;
    os << "CUDA error in " << what << ": " << cudaGetErrorString(err);
    throw std::runtime_error(os.str());
  }
}

}  // namespace

template <typename T>
void inner_loop_cuda(const MlpShape& shape, const InnerLoopArgs<T>& a) {
  shape.validate();
  if (shape.layers() > MAX_LAYERS) {
    std::ostringstream os;
    os << "the CUDA inner loop supports up to " << MAX_LAYERS << " layers, got " << shape.layers();
    throw std::invalid_argument(os.str());
  }
  DevLayout lay{};
  lay.L = static_cast<int>(shape.layers());
  for (int l = 0; l <= lay.L; ++l) lay.d[l] = shape.sizes[l];
  for (int l = 1; l <= lay.L; ++l) {
    lay.w[l] = lay.P;
    lay.b[l] = lay.P + lay.d[l] * lay.d[l - 1];
    lay.P = lay.b[l] + lay.d[l];
    lay.act[l] = lay.A;
    lay.A += lay.d[l];
  }
  const int64_t S = a.steps, K = a.support, Q = a.query, P = lay.P, A = lay.A;
  const int64_t per_task = TaskWorkspace<T>::size(P, A, S, K, Q, a.mode == MetaMode::SecondOrder,
                                                   a.task_lr_grad != nullptr, 0);
  T* work = nullptr;
  cuda_check(cudaMalloc(&work, sizeof(T) * per_task * a.tasks), "cudaMalloc (inner-loop workspace)");
  inner_loop_kernel<T><<<static_cast<unsigned>(a.tasks), THREADS>>>(lay, shape.activation, shape.loss, a, work, per_task);
  const cudaError_t launch = cudaGetLastError();
  const cudaError_t done = cudaDeviceSynchronize();
  cudaFree(work);
  cuda_check(launch, "inner_loop_kernel launch");
  cuda_check(done, "inner_loop_kernel");
}

template void inner_loop_cuda<float>(const MlpShape&, const InnerLoopArgs<float>&);
template void inner_loop_cuda<double>(const MlpShape&, const InnerLoopArgs<double>&);

}  // namespace metarisk
