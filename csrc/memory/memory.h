// External memory kernels (Santoro et al. 2016): content-based read by cosine similarity and
// softmax, least-recently-used-access (LRUA) write, and an exact top-k read for large memories.
//
// Memories are E matrices of N slots x W (E = 1: one memory shared by all keys; E = episodes:
// one memory per episode). Keys come in E groups of G rows (G = keys per memory); key row q
// reads memory q / G.
#pragma once
#include <cstdint>

namespace metarisk {

// Key strengths above this are refused: the read's logits (beta log2(e) cos) must stay finite in
// float; far below it the softmax is already a hard maximum.
constexpr double kMaxBeta = 1e30;

template <typename T>
struct MemoryReadArgs {
  const T* memory = nullptr;  // (E, N, W)
  const T* keys = nullptr;    // (E * G, W)
  const T* beta = nullptr;    // (E * G,) key strengths >= 0
  int64_t E = 1, N = 0, W = 0, G = 0;
  T eps = T(1e-6);  // > 0: a zero key or slot has similarity 0, not 0/0
  T* read = nullptr;     // (E * G, W)
  T* weights = nullptr;  // (E * G, N)
};

// read = softmax_i(beta * cos(k, M_i)) . M, cos = k.M_i / (|k| |M_i| + eps)
template <typename T>
void memory_read_forward(const MemoryReadArgs<T>& a);

// Gradients of a loss through (read, weights): d_read (E*G, W), d_weights (E*G, N) or null.
// Fills d_keys (E*G, W), d_beta (E*G), d_memory (E, N, W) (overwritten).
template <typename T>
void memory_read_backward(const MemoryReadArgs<T>& a, const T* d_read, const T* d_weights,
                          T* d_keys, T* d_beta, T* d_memory);

template <typename T>
struct MemoryWriteArgs {
  const T* memory = nullptr;      // (E, N, W)
  const T* usage = nullptr;       // (E, N)
  const T* prev_read = nullptr;   // (E, P, N) w^r_{t-1} of each write
  const T* alpha = nullptr;       // (E, P) write gate logits
  const T* values = nullptr;      // (E, P, W) vectors a_t to write
  int64_t E = 1, N = 0, W = 0, P = 0;
  T gamma = T(0.95);
  T* new_memory = nullptr;   // (E, N, W)
  T* new_usage = nullptr;    // (E, N)  gamma * usage + sum_p w^w_p (add the next read weights)
  T* write_weights = nullptr;  // (E, P, N)
  int64_t* least_used = nullptr;  // (E, P) slot zeroed and written by each write
};

// LRUA: the P least-used slots of each memory (partial selection, ties by index) go one to
// each write; they are zeroed, then M += sum_p w^w_p a_p^T with
// w^w_p = sigmoid(alpha_p) w^r_p + (1 - sigmoid(alpha_p)) onehot(least_used_p).
template <typename T>
void memory_write_forward(const MemoryWriteArgs<T>& a);

// Gradients through w^r, alpha, a_t and the previous memory and usage (not through the
// least-used index): inputs d_new_memory (E,N,W), d_new_usage (E,N) or null, d_write_weights
// (E,P,N) or null. Outputs (overwritten): d_memory, d_usage, d_prev_read, d_alpha, d_values.
template <typename T>
void memory_write_backward(const MemoryWriteArgs<T>& a, const T* d_new_memory, const T* d_new_usage,
                           const T* d_write_weights, T* d_memory, T* d_usage, T* d_prev_read,
                           T* d_alpha, T* d_values);

// Exact top-k scan: for each key the k slots of highest cosine similarity (descending, ties by
// lower index), in chunks so no (keys x N) matrix is held. idx (E*G, k), sim (E*G, k).
template <typename T>
void memory_topk(const MemoryReadArgs<T>& a, int64_t k, int64_t* idx, T* sim);

// The same on a CUDA device (all pointers device memory; blocks until done). The exact top-k
// scan is CPU only: on a GPU the op selects with torch.topk over the dense similarities.
template <typename T>
void memory_read_forward_cuda(const MemoryReadArgs<T>& a);
template <typename T>
void memory_read_backward_cuda(const MemoryReadArgs<T>& a, const T* d_read, const T* d_weights, T* d_keys,
                               T* d_beta, T* d_memory);
template <typename T>
void memory_write_forward_cuda(const MemoryWriteArgs<T>& a);
template <typename T>
void memory_write_backward_cuda(const MemoryWriteArgs<T>& a, const T* d_new_memory, const T* d_new_usage,
                                const T* d_write_weights, T* d_memory, T* d_usage, T* d_prev_read, T* d_alpha,
                                T* d_values);

}  // namespace metarisk
