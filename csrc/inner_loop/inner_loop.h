// Fused batched inner loops for the MAML family on an MLP.
//
// Every task b starts from the same flat parameter vector theta (per layer: weight (out, in)
// then bias (out,), the nn.Linear order) or from its own row of a (B, P) theta (a
// memory-conditioned start), runs `steps` SGD steps on its support set
//   theta_{s+1} = theta_s - lr * grad L_support(theta_s)      (lr scalar or per parameter)
// and evaluates the query loss at theta_S. Depending on the mode it also returns the task's
// meta-gradient with respect to theta:
//   FirstOrder:  grad L_query(theta_S)
//   SecondOrder: the exact gradient through all steps, v_s = v_{s+1} - H_s (lr * v_{s+1}),
//                with Hessian-vector products by Pearlmutter's R-operator (no autograd graph)
//   Reptile:     theta - theta_S (the Reptile direction)
// and, for learned per-parameter rates (Meta-SGD), dL/dlr = -sum_s g_s * v_{s+1}.
#pragma once
#include <cstdint>
#include <vector>

#include "../common/host_device.h"

namespace metarisk {

enum class MetaMode : int { None = 0, FirstOrder = 1, SecondOrder = 2, Reptile = 3 };

struct MlpShape {
  std::vector<int64_t> sizes;  // d_0 (input) .. d_L (output)
  Activation activation = Activation::ReLU;
  Loss loss = Loss::MSE;

  int64_t layers() const { return static_cast<int64_t>(sizes.size()) - 1; }
  int64_t in_features() const { return sizes.front(); }
  int64_t out_features() const { return sizes.back(); }
  int64_t num_params() const;
  void validate() const;
};

template <typename T>
struct InnerLoopArgs {
  const T* theta = nullptr;  // (P,) shared, or (B, P) one starting point per task
  bool theta_per_task = false;
  const T* lr = nullptr;     // (P,) if lr_per_param else (1,)
  bool lr_per_param = false;
  const T* xs = nullptr;  // (B, K, d_0)
  const T* ys = nullptr;  // (B, K, d_L)
  const T* xq = nullptr;  // (B, Q, d_0), may be null when Q == 0
  const T* yq = nullptr;  // (B, Q, d_L), null: predict only
  const T* ws = nullptr;  // (B, K) weight of each support row's loss, null: 1 (an advantage-weighted
  const T* wq = nullptr;  // (B, Q) likelihood step of a policy); query rows likewise; constants
  int64_t tasks = 0, support = 0, query = 0;
  int64_t steps = 0;
  MetaMode mode = MetaMode::None;
  T* task_loss = nullptr;     // (B,)      query loss per task, needs yq
  T* task_grad = nullptr;     // (B, P)    meta-gradient per task, needs mode != None
  T* task_lr_grad = nullptr;  // (B, P)    gradient w.r.t. a per-parameter lr
  T* adapted = nullptr;       // (B, P)    theta_S per task
  T* query_pred = nullptr;    // (B, Q, d_L)
};

// One task's scratch, carved from a flat buffer, shared by the CPU and CUDA paths: parameters
// of every step, the activations / deltas / gradients the backward sweep needs, query buffers,
// the sweep's vectors and the R-operator's buffers. `extra` leading entries are left to the
// caller (the CPU path keeps transposed weights there).
template <typename T>
struct TaskWorkspace {
  // Elements of one task's workspace, computed in double so that user-sized arguments cannot
  // overflow it before the bound below is checked.
  static double size_bound(int64_t P, int64_t A, int64_t S, int64_t K, int64_t Q, bool second, bool want_lr,
                           int64_t extra) {
    const double kept = second ? S : 1, kept_g = want_lr && S > 1 ? S : 1, rows_q = Q > 1 ? Q : 1;
    return double(extra) + (double(S) + 1) * P + 2 * kept * K * A + kept_g * P + 2 * rows_q * A + 3.0 * P +
           (second ? 3.0 * K * A : 0.0);
  }

  T *thetas, *acts, *deltas, *grads, *qacts, *qdeltas, *v, *u, *hv, *rz, *ra, *rd;

  // kept: steps whose activations are kept (S for second order, else 1); kept_g likewise for
  // the per-step gradients (S when the learning rates get gradients).
  MR_HD static int64_t size(int64_t P, int64_t A, int64_t S, int64_t K, int64_t Q, bool second, bool want_lr,
                            int64_t extra) {
    const int64_t kept = second ? S : 1, kept_g = want_lr && S > 1 ? S : 1, rows_q = Q > 1 ? Q : 1;
    return extra + (S + 1) * P + 2 * kept * K * A + kept_g * P + 2 * rows_q * A + 3 * P + (second ? 3 * K * A : 0);
  }

  MR_HD TaskWorkspace(T* w, int64_t P, int64_t A, int64_t S, int64_t K, int64_t Q, bool second, bool want_lr,
                      int64_t extra) {
    const int64_t kept = second ? S : 1, kept_g = want_lr && S > 1 ? S : 1, rows_q = Q > 1 ? Q : 1;
    w += extra;
    thetas = w; w += (S + 1) * P;
    acts = w; w += kept * K * A;
    deltas = w; w += kept * K * A;
    grads = w; w += kept_g * P;
    qacts = w; w += rows_q * A;
    qdeltas = w; w += rows_q * A;
    v = w; w += P;
    u = w; w += P;
    hv = w; w += P;
    rz = w; ra = w + K * A; rd = w + 2 * K * A;
  }
};

// Bounds on what a caller controls: inner steps, and one task's workspace.
constexpr int64_t kMaxInnerSteps = 10000;
constexpr double kMaxTaskWorkspaceBytes = double(int64_t(4) << 30);

// Checks finiteness and argument consistency, then runs all tasks in parallel.
template <typename T>
void inner_loop_cpu(const MlpShape& shape, const InnerLoopArgs<T>& args);

// The same on a CUDA device: every pointer in args is device memory; inputs are not scanned for
// NaN here (the Python op checks them on the device). Blocks until the kernel has finished.
template <typename T>
void inner_loop_cuda(const MlpShape& shape, const InnerLoopArgs<T>& args);

}  // namespace metarisk
