#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "../common/checks.h"
#include "../common/fast_math.h"
#include "../common/host_device.h"
#include "../common/small_gemm.h"
#include "../common/stream_store.h"
#include "../common/parallel.h"
#include "../common/transpose.h"
#include "memory.h"

namespace metarisk {
namespace {

constexpr int64_t KEY_BLOCK = 32;    // keys per work item: their similarities stay in L2
constexpr int64_t SLOT_CHUNK = 512;  // memory rows per work item in the row-parallel passes
constexpr int64_t READ_CHUNK = 128;  // memory rows per step of the fused read: 32 KB of a 64-wide memory

template <typename T>
T* scratch(size_t n, int slot = 0) {
  thread_local std::vector<T> bufs[4];
  auto& b = bufs[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}

// Buffers that live across calls in the calling thread (grow-only: no page faults or zero fill
// once warm), handed to the workers of one call; separate from the workers' own scratch.
template <typename T>
T* call_buffer(size_t n, int slot) {
  thread_local std::vector<T> bufs[3];
  auto& b = bufs[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}

// The Euclidean norm, its squares summed in double (a float norm then rounds once); +inf where
// the sum of squares overflows T, as T's own sum would: the read's checks rely on it (a norm whose
// square is finite in T bounds every dot product and its partial sums in T).
template <typename T>
T norm(const T* x, int64_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += double(x[i]) * x[i];
  return s <= double(std::numeric_limits<T>::max()) ? T(std::sqrt(s)) : T(INFINITY);
}

template <typename T>
struct ReadPlan {
  int64_t blocks_per_memory, items;
  explicit ReadPlan(const MemoryReadArgs<T>& a)
      : blocks_per_memory((a.G + KEY_BLOCK - 1) / KEY_BLOCK), items(a.E * blocks_per_memory) {}
  void block(int64_t item, const MemoryReadArgs<T>& a, int64_t& e, int64_t& q0, int64_t& kb) const {
    e = item / blocks_per_memory;
    const int64_t g0 = (item % blocks_per_memory) * KEY_BLOCK;
    kb = std::min(KEY_BLOCK, a.G - g0);
    q0 = e * a.G + g0;
  }
};

template <typename T>
void check_read(const MemoryReadArgs<T>& a) {
  MR_CHECK(a.N >= 1, "memory has no slots (N = 0)");
  MR_CHECK(a.W >= 1 && a.E >= 1 && a.G >= 1, "empty memory or key batch");
  check_finite(a.memory, a.E * a.N * a.W, "memory");
  check_finite(a.keys, a.E * a.G * a.W, "keys");
  MR_CHECK(std::isfinite(a.eps) && a.eps > T(0), "eps must be finite and > 0, got " << a.eps);
  for (int64_t q = 0; q < a.E * a.G; ++q)
    MR_CHECK(std::isfinite(a.beta[q]) && a.beta[q] >= T(0) && a.beta[q] <= T(kMaxBeta),
             "beta (key strength) must be finite, >= 0 and <= " << kMaxBeta << ", got " << a.beta[q]
                                                                << " at key " << q);
  for (int64_t q = 0; q < a.E * a.G; ++q)
    MR_CHECK(std::isfinite(norm(a.keys + q * a.W, a.W)), "key " << q << " has a norm that overflows: scale the keys");
}

// Every similarity k.M_j / (|k| |M_j| + eps) is finite when the key and slot norms are: their
// squares did not overflow, so neither does |k| |M_j| >= |k.M_j|. No NaN reaches the softmax or
// the top-k scan.
template <typename T>
void check_slot_norms(const std::vector<T>& mn) {
  for (size_t j = 0; j < mn.size(); ++j)
    MR_CHECK(std::isfinite(mn[j]), "memory slot " << j << " has a norm that overflows: scale the memory");
}

}  // namespace

template <typename T>
void slot_norms(const T* memory, int64_t E, int64_t N, int64_t W, std::vector<T>& mn) {
  mn.resize(E * N);
  const int64_t chunks = (N + SLOT_CHUNK - 1) / SLOT_CHUNK;
  parallel_for(E * chunks, [&](int64_t item, int) {
    const int64_t e = item / chunks, j0 = (item % chunks) * SLOT_CHUNK, j1 = std::min(N, j0 + SLOT_CHUNK);
    for (int64_t j = j0; j < j1; ++j) mn[e * N + j] = norm(memory + (e * N + j) * W, W);
  });
}

// One block of up to KEY_BLOCK keys against its memory, as the dense read and the top-k scan
// see it: the keys transposed into the thread's scratch (so they are the vector lanes of the
// slot-major similarity tiles) and their norms.
template <typename T>
struct KeyBlock {
  int64_t item, e, q0, kb, N, W;  // item: the block's index in the read plan
  const T* K;      // (kb x W) keys
  const T* M;      // (N x W) their memory
  const T* mnorm;  // (N) its slot norms
  T* Kt;           // (W x kb) keys transposed
  T* St;           // (READ_CHUNK x kb) similarity tile
  T kn[KEY_BLOCK];

  // For each chunk of READ_CHUNK slots: S (cn x kb) = M_c . Vt, Vt (W x kb) the block's keys (or
  // another kb vectors) transposed; the memory is read in place and the chunk stays in L1/L2 for
  // whatever per_chunk(c0, cn, S) does with it next. S is the tile St, or with `whole` (N x kb,
  // slot-major) the chunk's rows of it.
  template <typename F>
  void chunk_products(const T* Vt, F&& per_chunk, T* whole = nullptr) const {
    for (int64_t c0 = 0; c0 < N; c0 += READ_CHUNK) {
      const int64_t cn = std::min(READ_CHUNK, N - c0);
      T* S = whole ? whole + c0 * kb : St;
      gemm_nn<T>(cn, kb, W, M + c0 * W, W, Vt, kb, S, kb, false);
      per_chunk(c0, cn, S);
    }
  }
  // The similarity dots k . M_j, chunk by chunk.
  template <typename F>
  void chunk_dots(F&& per_chunk, T* whole = nullptr) const {
    chunk_products(Kt, per_chunk, whole);
  }
};

// Checks, slot norms, then fn(block) for every key block, in parallel; returns the slot norms.
template <typename T, typename F>
std::vector<T> for_each_key_block(const MemoryReadArgs<T>& a, F&& fn) {
  check_read(a);
  std::vector<T> mn;
  slot_norms(a.memory, a.E, a.N, a.W, mn);
  check_slot_norms(mn);
  const ReadPlan<T> plan(a);
  parallel_for(plan.items, [&](int64_t item, int) {
    KeyBlock<T> b;
    b.item = item;
    plan.block(item, a, b.e, b.q0, b.kb);
    b.N = a.N;
    b.W = a.W;
    b.K = a.keys + b.q0 * a.W;
    b.M = a.memory + b.e * a.N * a.W;
    b.mnorm = mn.data() + b.e * a.N;
    b.Kt = scratch<T>(a.W * KEY_BLOCK, 2);
    b.St = scratch<T>(READ_CHUNK * KEY_BLOCK, 0);
    transpose(b.kb, a.W, b.K, a.W, b.Kt, b.kb);
    for (int64_t i = 0; i < b.kb; ++i) b.kn[i] = norm(b.K + i * a.W, a.W);
    fn(b);
  });
  return mn;
}

// Softmax shift: cos(k, M_j) <= 1, so beta is an upper bound of every logit and exp(logit - beta)
// never overflows; it cannot underflow to 0 for all slots while 2 beta stays inside exp's normal
// range. Up to this beta the read needs no max pass; above it, one extra pass finds the max.
template <typename T> constexpr T kFixedShiftMaxBeta = sizeof(T) == 4 ? T(40) : T(340);

template <typename T>
void memory_read_forward(const MemoryReadArgs<T>& a) {
  const int64_t N = a.N, W = a.W;
  for_each_key_block(a, [&](const KeyBlock<T>& b) {
    const int64_t kb = b.kb, q0 = b.q0;
    // One pass over the memory in chunks of slots that stay in L1/L2 while they are used twice:
    // S^T (chunk x kb) = M_c . K^T, exp in place (keys as vector lanes), read^T += M_c^T . P_c.
    // The unnormalised weights stay slot-major in the thread's scratch; the weights output is
    // written once, at the end, transposed and normalised on the way.
    T* RT = scratch<T>(W * KEY_BLOCK, 1);  // read^T (W x kb)
    T* E = scratch<T>(N * KEY_BLOCK, 3);   // exp(logit - shift), slot-major (N x kb)
    // logits in log2 units (beta log2(e) cos), so the exponential is a plain exp2; each key's
    // softmax is shifted by beta times its cosine bound, 1, or by the largest cosine
    T beta2[KEY_BLOCK], cos_shift[KEY_BLOCK], sum[KEY_BLOCK];
    bool fixed_shift = true;
    for (int64_t i = 0; i < kb; ++i) {
      beta2[i] = a.beta[q0 + i] * T(1.4426950408889634);
      cos_shift[i] = T(1);
      sum[i] = T(0);
      fixed_shift = fixed_shift && a.beta[q0 + i] <= kFixedShiftMaxBeta<T>;
    }
    if (!fixed_shift) {  // a very sharp key: shift by the true max instead
      for (int64_t i = 0; i < kb; ++i) cos_shift[i] = -INFINITY;
      b.chunk_dots([&](int64_t c0, int64_t cn, const T* S) {
        for (int64_t j = 0; j < cn; ++j) {
          const T mj = b.mnorm[c0 + j];
          for (int64_t i = 0; i < kb; ++i) cos_shift[i] = std::max(cos_shift[i], cosine(S[j * kb + i], b.kn[i], mj, a.eps));
        }
      });
    }
    b.chunk_dots([&](int64_t c0, int64_t cn, T* S) {
      for (int64_t j = 0; j < cn; ++j) {
        T* row = S + j * kb;
        const T mj = b.mnorm[c0 + j];
#pragma omp simd
        for (int64_t i = 0; i < kb; ++i) {
          row[i] = fast_exp2(shifted_logit(beta2[i], cosine(row[i], b.kn[i], mj, a.eps), cos_shift[i]));
          sum[i] += row[i];
        }
      }
      gemm_tn<T>(W, kb, cn, b.M + c0 * W, W, S, kb, RT, kb, c0 > 0);
    }, E);
    T inv[KEY_BLOCK];
    for (int64_t i = 0; i < kb; ++i) {
      inv[i] = T(1) / sum[i];
      T* r = a.read + (q0 + i) * W;
      for (int64_t w = 0; w < W; ++w) r[w] = RT[w * kb + i] * inv[i];
    }
    transpose(N, kb, E, kb, a.weights + q0 * N, N, inv);
  });
}

template <typename T>
void memory_read_backward(const MemoryReadArgs<T>& a, const T* d_read, const T* d_weights, T* d_keys,
                          T* d_beta, T* d_memory) {
  const ReadPlan<T> plan(a);
  const int64_t N = a.N, W = a.W, E = a.E;
  // Two passes, both parallel, with no per-thread accumulators: the result is bitwise the same
  // for any thread count or schedule. Pass 1, per key block: d_keys, d_beta, and the block's
  // share of the memory gradient as the factor G = dL/d(k . M_j) (kb x N, key-major, as the
  // weights and their gradient come), kept with the block's d|M_j|. Pass 2, per chunk of slots:
  // dM = sum over the memory's blocks, in block order, of G^T K + P^T dR, plus the slot-norm
  // terms. G's rows lie ld apart: N padded off a multiple of the page, so the rows a product
  // reads together do not share cache sets.
  const int64_t ld = N + (N % 1024 == 0 ? 16 : 0);
  T* g_all = call_buffer<T>(E * a.G * ld, 0);      // key q's row at q * ld
  T* dmn_all = call_buffer<T>(plan.items * N, 1);  // each block's d|M_j|
  const std::vector<T> mn = for_each_key_block(a, [&](const KeyBlock<T>& b) {
    const int64_t q0 = b.q0, kb = b.kb;
    const T* P = a.weights + q0 * N;
    T* G = g_all + q0 * ld;
    T* dP = scratch<T>(KEY_BLOCK * ld, 1);
    T* dRt = scratch<T>(2 * W * KEY_BLOCK, 3);  // dR^T (W x kb), then dK^T (W x kb)
    T* dKt = dRt + W * kb;
    T* dmn = dmn_all + b.item * N;
    transpose(kb, W, d_read + q0 * W, W, dRt, kb);
    T dkn[KEY_BLOCK], dbeta[KEY_BLOCK];
    double pdp[KEY_BLOCK];
    for (int64_t i = 0; i < kb; ++i) {
      pdp[i] = 0.0;
      dkn[i] = dbeta[i] = T(0);
    }
    // The products run slot-major on a chunk (keys as vector lanes) into the tile, transposed
    // into the key-major rows while it is in L1. First dP = dL/dweights + dR . M_j and
    // sum_j p_j dp_j; the sum accumulates in double (also for float): p (dp - sum p dp) cancels
    // when a sharp key puts nearly all weight on one slot.
    b.chunk_products(dRt, [&](int64_t c0, int64_t cn, const T* tile) {
      transpose(cn, kb, tile, kb, dP + c0, ld);
      for (int64_t i = 0; i < kb; ++i) {
        const T* p = P + i * N + c0;
        T* dp = dP + i * ld + c0;
        if (d_weights) {
          const T* dw = d_weights + (q0 + i) * N + c0;
#pragma omp simd
          for (int64_t j = 0; j < cn; ++j) dp[j] += dw[j];
        }
        double acc = 0.0;
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < cn; ++j) acc += static_cast<double>(p[j]) * dp[j];
        pdp[i] += acc;
      }
    });
    // Then G from the dots k . M_j (recomputed), the softmax and the cosine; d_beta, d|k| and
    // the block's d|M_j| on the way; dK^T += M_c^T G_c^T from the chunk's G transposed back.
    std::fill(dmn, dmn + N, T(0));
    b.chunk_dots([&](int64_t c0, int64_t cn, T* tile) {
      transpose(cn, kb, tile, kb, G + c0, ld);
      for (int64_t i = 0; i < kb; ++i) {
        T* __restrict g = G + i * ld + c0;
        const T* __restrict p = P + i * N + c0;
        const T* __restrict dp = dP + i * ld + c0;
        const T* __restrict mj = b.mnorm + c0;
        T* __restrict dmj = dmn + c0;
        const T dot = static_cast<T>(pdp[i]), bi = a.beta[q0 + i], ki = b.kn[i], eps = a.eps;
        T db_sum = T(0), dk_sum = T(0);
#pragma omp simd reduction(+ : db_sum, dk_sum)
        for (int64_t j = 0; j < cn; ++j) {
          T db, gj, dD;
          cosine_softmax_grad(p[j], dp[j], dot, bi, g[j], ki, mj[j], eps, db, gj, dD);
          db_sum += db;
          dk_sum += dD * mj[j];
          dmj[j] += dD * ki;
          g[j] = gj;
        }
        dbeta[i] += db_sum;
        dkn[i] += dk_sum;
      }
      transpose(kb, cn, G + c0, ld, tile, kb);
      gemm_tn<T>(W, kb, cn, b.M + c0 * W, W, tile, kb, dKt, kb, c0 > 0);
    });
    for (int64_t i = 0; i < kb; ++i) d_beta[q0 + i] = dbeta[i];
    T* dK = d_keys + q0 * W;
    transpose(W, kb, dKt, kb, dK, W);
    for (int64_t i = 0; i < kb; ++i)
      if (b.kn[i] > T(0))
        for (int64_t w = 0; w < W; ++w) dK[i * W + w] += dkn[i] / b.kn[i] * b.K[i * W + w];
  });
  const int64_t chunks = (N + SLOT_CHUNK - 1) / SLOT_CHUNK;
  parallel_for(E * chunks, [&](int64_t item, int) {
    const int64_t e = item / chunks, j0 = (item % chunks) * SLOT_CHUNK, j1 = std::min(N, j0 + SLOT_CHUNK);
    T* out = d_memory + (e * N + j0) * W;
    T* dmn = scratch<T>(SLOT_CHUNK, 3);
    std::fill(dmn, dmn + (j1 - j0), T(0));
    for (int64_t b = 0; b < plan.blocks_per_memory; ++b) {
      const int64_t it = e * plan.blocks_per_memory + b;
      int64_t e_, q0, kb;
      plan.block(it, a, e_, q0, kb);
      gemm_tn<T>(j1 - j0, W, kb, g_all + q0 * ld + j0, ld, a.keys + q0 * W, W, out, W, b > 0);
      gemm_tn<T>(j1 - j0, W, kb, a.weights + q0 * N + j0, N, d_read + q0 * W, W, out, W, true);
      const T* part = dmn_all + it * N;
      for (int64_t j = j0; j < j1; ++j) dmn[j - j0] += part[j];
    }
    for (int64_t j = j0; j < j1; ++j) {  // the slot-norm terms
      const T m = mn[e * N + j];
      if (m > T(0))
        for (int64_t w = 0; w < W; ++w) out[(j - j0) * W + w] += dmn[j - j0] / m * a.memory[(e * N + j) * W + w];
    }
  });
}

namespace {

template <typename T>
void check_write(const MemoryWriteArgs<T>& a) {
  MR_CHECK(a.N >= 1, "memory has no slots (N = 0)");
  MR_CHECK(a.P >= 1 && a.P <= a.N, "each memory takes between 1 and N = " << a.N << " writes per call, got " << a.P);
  MR_CHECK(a.gamma >= T(0) && a.gamma <= T(1), "usage decay gamma must be in [0, 1], got " << a.gamma);
  check_finite(a.memory, a.E * a.N * a.W, "memory");
  check_finite(a.usage, a.E * a.N, "usage");
  check_finite(a.prev_read, a.E * a.P * a.N, "prev_read_weights");
  check_finite(a.alpha, a.E * a.P, "alpha");
  check_finite(a.values, a.E * a.P * a.W, "values");
}

// The P least-used slots of usage u (ascending usage, ties by lower index), partial selection.
template <typename T>
void least_used(const T* u, int64_t N, int64_t P, int64_t* out) {
  std::vector<int64_t> idx(N);
  std::iota(idx.begin(), idx.end(), 0);
  auto less = [u](int64_t x, int64_t y) { return u[x] < u[y] || (u[x] == u[y] && x < y); };
  std::nth_element(idx.begin(), idx.begin() + (P - 1), idx.end(), less);
  std::sort(idx.begin(), idx.begin() + P, less);
  std::copy(idx.begin(), idx.begin() + P, out);
}

}  // namespace

template <typename T>
void memory_write_forward(const MemoryWriteArgs<T>& a) {
  check_write(a);
  const int64_t E = a.E, N = a.N, W = a.W, P = a.P;
  parallel_for(E, [&](int64_t e, int) { least_used(a.usage + e * N, N, P, a.least_used + e * P); });
  const int64_t chunks = (N + SLOT_CHUNK - 1) / SLOT_CHUNK;
  parallel_for(E * chunks, [&](int64_t item, int) {
    const int64_t e = item / chunks, j0 = (item % chunks) * SLOT_CHUNK, j1 = std::min(N, j0 + SLOT_CHUNK);
    const int64_t* lu = a.least_used + e * P;
    T* ww = a.write_weights + e * P * N;
    T* nu = a.new_usage + e * N;
    // The chunk's weights are computed into a scratch copy whose rows lie SLOT_CHUNK + 16 apart:
    // the product below reads them down the columns, and at the output's stride of N floats (a
    // multiple of 4 KB) those rows alias in L1 and the product slows by a quarter; from there they
    // are streamed to the output.
    constexpr int64_t ldw = SLOT_CHUNK + 16;
    T* wc = scratch<T>(P * ldw, 0);
    for (int64_t j = j0; j < j1; ++j) nu[j] = a.gamma * a.usage[e * N + j];
    for (int64_t p = 0; p < P; ++p) {
      const T g = lrua_gate(a.alpha[e * P + p]);
      const T* wr = a.prev_read + (e * P + p) * N;
      T* wcp = wc + p * ldw - j0;
      for (int64_t j = j0; j < j1; ++j) {
        wcp[j] = lrua_blend(g, wr[j], j == lu[p]);
        nu[j] += wcp[j];
      }
      // the weights output (B x N: 4 MB on W3) is written once: streamed, not read for ownership
      stream_copy(ww + p * N + j0, wcp + j0, j1 - j0);
    }
    T* M = a.new_memory + e * N * W;
    std::memcpy(M + j0 * W, a.memory + (e * N + j0) * W, sizeof(T) * (j1 - j0) * W);
    for (int64_t p = 0; p < P; ++p)  // the least-used slots are cleared before the write
      if (lu[p] >= j0 && lu[p] < j1) std::fill(M + lu[p] * W, M + (lu[p] + 1) * W, T(0));
    gemm_tn<T>(j1 - j0, W, P, wc, ldw, a.values + e * P * W, W, M + j0 * W, W, true);
    stream_fence();
    check_result_finite(M + j0 * W, (j1 - j0) * W, "the written memory");
    check_result_finite(nu + j0, j1 - j0, "the new usage");
  });
}

template <typename T>
void memory_write_backward(const MemoryWriteArgs<T>& a, const T* dM, const T* dU, const T* dWW, T* d_memory,
                           T* d_usage, T* d_prev_read, T* d_alpha, T* d_values) {
  const int64_t E = a.E, N = a.N, W = a.W, P = a.P;
  const int64_t chunks = (N + SLOT_CHUNK - 1) / SLOT_CHUNK;
  std::vector<T> partial(E * chunks * P * (W + 1), T(0));  // per item: dV (P x W) and dalpha (P)
  parallel_for(E * chunks, [&](int64_t item, int) {
    const int64_t e = item / chunks, j0 = (item % chunks) * SLOT_CHUNK, j1 = std::min(N, j0 + SLOT_CHUNK);
    const int64_t n = j1 - j0;
    const int64_t* lu = a.least_used + e * P;
    const T* V = a.values + e * P * W;
    const T* dMe = dM + (e * N + j0) * W;
    const T* ww = a.write_weights + e * P * N;
    // dww^T (n x P) = dM_rows (n x W) . V^T (W x P)
    T* Vt = scratch<T>(W * P, 2);
    for (int64_t p = 0; p < P; ++p)
      for (int64_t w = 0; w < W; ++w) Vt[w * P + p] = V[p * W + w];
    T* dwwT = scratch<T>(n * P, 3);
    gemm_nn<T>(n, P, W, dMe, W, Vt, P, dwwT, P, false);
    T* part = partial.data() + item * P * (W + 1);
    for (int64_t p = 0; p < P; ++p) {
      const T g = lrua_gate(a.alpha[e * P + p]);
      const T* wr = a.prev_read + (e * P + p) * N;
      T* dpr = d_prev_read + (e * P + p) * N;
      T dal = T(0);
      for (int64_t j = j0; j < j1; ++j) {
        T d = dwwT[(j - j0) * P + p];
        if (dU) d += dU[e * N + j];
        if (dWW) d += dWW[(e * P + p) * N + j];
        dpr[j] = g * d;
        dal += d * (wr[j] - (j == lu[p] ? T(1) : T(0)));
      }
      part[P * W + p] = dal * g * (T(1) - g);
    }
    gemm_nn<T>(P, W, n, ww + j0, N, dMe, W, part, W, false);  // dV partial = ww[:, rows] . dM_rows
    T* dMem = d_memory + (e * N + j0) * W;
    std::memcpy(dMem, dMe, sizeof(T) * n * W);
    for (int64_t p = 0; p < P; ++p)
      if (lu[p] >= j0 && lu[p] < j1) std::fill(dMem + (lu[p] - j0) * W, dMem + (lu[p] - j0 + 1) * W, T(0));
    for (int64_t j = j0; j < j1; ++j) d_usage[e * N + j] = dU ? a.gamma * dU[e * N + j] : T(0);
  });
  parallel_for(E, [&](int64_t e, int) {
    std::fill(d_values + e * P * W, d_values + (e + 1) * P * W, T(0));
    std::fill(d_alpha + e * P, d_alpha + (e + 1) * P, T(0));
    for (int64_t c = 0; c < chunks; ++c) {
      const T* part = partial.data() + (e * chunks + c) * P * (W + 1);
      for (int64_t i = 0; i < P * W; ++i) d_values[e * P * W + i] += part[i];
      for (int64_t p = 0; p < P; ++p) d_alpha[e * P + p] += part[P * W + p];
    }
  });
}

template <typename T>
void memory_topk(const MemoryReadArgs<T>& a, int64_t k, int64_t* idx, T* sim) {
  MR_CHECK(k >= 1 && k <= a.N, "topk must be in [1, N = " << a.N << "], got " << k);
  for_each_key_block(a, [&](const KeyBlock<T>& b) {
    const int64_t kb = b.kb, q0 = b.q0;
    // Slot-major chunks as in the dense read; each row of cosines is compared with every key's
    // current k-th best at once, and only the rare winners touch the heaps.
    // per key: a min-heap of (sim, index) of size k; the root is the weakest kept slot
    std::vector<std::vector<std::pair<T, int64_t>>> heaps(kb);
    auto weaker = [](const std::pair<T, int64_t>& x, const std::pair<T, int64_t>& y) {
      return x.first > y.first || (x.first == y.first && x.second < y.second);
    };
    // threshold: the k-th best so far; until a heap holds k slots every slot enters (filling).
    // A NaN similarity (an overflowing dot product) ranks below every number, as -inf.
    T threshold[KEY_BLOCK];
    int filling[KEY_BLOCK];
    for (int64_t i = 0; i < kb; ++i) {
      threshold[i] = -INFINITY;
      filling[i] = 1;
    }
    b.chunk_dots([&](int64_t c0, int64_t cn, T* S) {
      for (int64_t j = 0; j < cn; ++j) {
        T* row = S + j * kb;
        const T mj = b.mnorm[c0 + j];
        int wins = 0;
#pragma omp simd reduction(+ : wins)
        for (int64_t i = 0; i < kb; ++i) {
          const T c = cosine(row[i], b.kn[i], mj, a.eps);
          row[i] = c == c ? c : -INFINITY;
          wins += (row[i] > threshold[i]) | filling[i];
        }
        if (wins == 0) continue;
        for (int64_t i = 0; i < kb; ++i) {
          if (!(row[i] > threshold[i]) && !filling[i]) continue;  // equal similarity: the lower index kept wins
          auto& h = heaps[i];
          if (static_cast<int64_t>(h.size()) == k) {
            std::pop_heap(h.begin(), h.end(), weaker);
            h.pop_back();
          }
          h.emplace_back(row[i], c0 + j);
          std::push_heap(h.begin(), h.end(), weaker);
          if (static_cast<int64_t>(h.size()) == k) {
            threshold[i] = h.front().first;
            filling[i] = 0;
          }
        }
      }
    });
    for (int64_t i = 0; i < kb; ++i) {
      auto& h = heaps[i];
      std::sort(h.begin(), h.end(), weaker);  // strongest first
      for (int64_t r = 0; r < k; ++r) {
        idx[(q0 + i) * k + r] = h[r].second;
        sim[(q0 + i) * k + r] = h[r].first;
      }
    }
  });
}

#define MR_INSTANTIATE(T)                                                                              \
  template void memory_read_forward<T>(const MemoryReadArgs<T>&);                                      \
  template void memory_read_backward<T>(const MemoryReadArgs<T>&, const T*, const T*, T*, T*, T*);     \
  template void memory_write_forward<T>(const MemoryWriteArgs<T>&);                                    \
  template void memory_write_backward<T>(const MemoryWriteArgs<T>&, const T*, const T*, const T*, T*,  \
                                         T*, T*, T*, T*);                                              \
  template void memory_topk<T>(const MemoryReadArgs<T>&, int64_t, int64_t*, T*);
MR_INSTANTIATE(float)
MR_INSTANTIATE(double)

}  // namespace metarisk
