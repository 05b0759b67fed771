#include <algorithm>
#include <cstring>
#include <vector>

#include "../common/checks.h"
#include "../common/small_gemm.h"
#include "../common/transpose.h"
#include "../common/parallel.h"
#include "inner_loop.h"

namespace metarisk {

int64_t MlpShape::num_params() const {
  int64_t p = 0;
  for (int64_t l = 1; l <= layers(); ++l) p += sizes[l] * sizes[l - 1] + sizes[l];
  return p;
}

void MlpShape::validate() const {
  MR_CHECK(sizes.size() >= 2 && sizes.size() <= 64, "an MLP needs 2 to 64 layer sizes (input to output), got "
                                                        << sizes.size() << " sizes");
  double params = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    MR_CHECK(sizes[i] >= 1 && sizes[i] <= (int64_t(1) << 24), "layer size " << i << " must be in [1, 2^24], got "
                                                                             << sizes[i]);
    if (i > 0) params += double(sizes[i - 1] + 1) * sizes[i];
  }
  MR_CHECK(params <= double(int64_t(1) << 31), "the MLP has " << params << " parameters; the limit is 2^31");
}

namespace {

// Offsets of every layer's pieces inside the flat parameter vector and the work buffers.
struct Layout {
  int64_t L = 0, P = 0, Pw = 0, A = 0;  // layers, params, weight entries, activation width
  std::vector<int64_t> d, w, b, wt, act;  // indexed by layer l = 1..L (d by 0..L)

  explicit Layout(const MlpShape& s) : L(s.layers()), d(s.sizes) {
    w.assign(L + 1, 0); b.assign(L + 1, 0); wt.assign(L + 1, 0); act.assign(L + 1, 0);
    for (int64_t l = 1; l <= L; ++l) {
      w[l] = P; b[l] = P + d[l] * d[l - 1]; P = b[l] + d[l];
      wt[l] = Pw; Pw += d[l] * d[l - 1];
      act[l] = A; A += d[l];
    }
  }
};

// Transposed copies of the weights, (in, out) per layer, so the forward pass is A * W^T with
// contiguous rows of W^T (8x8 register-block transposes where the ISA has them).
template <typename T>
void transpose_weights(const Layout& lay, const T* theta, T* wt) {
  for (int64_t l = 1; l <= lay.L; ++l) {
    const int64_t out = lay.d[l], in = lay.d[l - 1];
    transpose(out, in, theta + lay.w[l], in, wt + lay.wt[l], out);
  }
}

// out[o] = sum over the n rows of m (n, cols): a bias gradient from the layer's deltas.
template <typename T>
void sum_rows(const T* m, int64_t n, int64_t cols, T* out) {
  std::fill(out, out + cols, T(0));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t o = 0; o < cols; ++o) out[o] += m[r * cols + o];
}

// grad (out x in) [+]= delta^T (out x n rows) * a_prev (n x in): a layer's weight gradient.
// With fewer inputs than a vector holds (the first layer's features), C = delta^T a_prev would
// have rows narrower than a vector and run in the scalar edge loop; its transpose (in x out,
// rows a vector wide or more) runs in the register-blocked kernel instead and is transposed
// into place. Each entry is the same sum over the rows in the same order either way.
template <typename T>
void weight_grad(int64_t out, int64_t in, int64_t n, const T* delta, const T* a_prev, T* grad, bool accumulate) {
  if (in >= Vec<T>::lanes || out < Vec<T>::lanes) {
    gemm_tn<T>(out, in, n, delta, out, a_prev, in, grad, in, accumulate);
    return;
  }
  thread_local std::vector<T> transposed;
  if (transposed.size() < static_cast<size_t>(in * out)) transposed.resize(in * out);
  T* gt = transposed.data();
  gemm_tn<T>(in, out, n, a_prev, in, delta, out, gt, out, false);
  if (!accumulate) {
    transpose(in, out, gt, out, grad, in);
    return;
  }
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) grad[o * in + i] += gt[i * out + o];
}

template <typename T>
struct Net {
  const Layout& lay;
  Activation act;
  Loss loss;

  T* layer(T* buf, int64_t n, int64_t l) const { return buf + n * lay.act[l]; }
  const T* layer(const T* buf, int64_t n, int64_t l) const { return buf + n * lay.act[l]; }
  const T* input_or_layer(const T* x, const T* buf, int64_t n, int64_t l) const {
    return l == 0 ? x : buf + n * lay.act[l];
  }

  // acts (n x A): layer l's outputs (after activation; raw outputs for the last layer).
  void forward(const T* x, int64_t n, const T* theta, const T* wt, T* acts) const {
    for (int64_t l = 1; l <= lay.L; ++l) {
      const int64_t out = lay.d[l], in = lay.d[l - 1];
      const T* a_prev = input_or_layer(x, acts, n, l - 1);
      T* z = layer(acts, n, l);
      const T* bias = theta + lay.b[l];
      for (int64_t r = 0; r < n; ++r) std::memcpy(z + r * out, bias, sizeof(T) * out);
      gemm_nn<T>(n, out, in, a_prev, in, wt + lay.wt[l], out, z, out, true);
      if (l < lay.L)
        for (int64_t e = 0; e < n * out; ++e) z[e] = activate(act, z[e]);
    }
  }

  // Mean loss over n rows x outputs, each row's loss times its weight w[r] (w null: 1); fills
  // deltas (n x A) and, if grad, the parameter gradient. With value false (an inner step, which
  // needs the gradient alone) the loss is not evaluated and 0 is returned.
  T backward(const T* x, const T* y, const T* w, int64_t n, const T* theta, const T* acts, T* deltas,
             T* grad, bool value = true) const {
    const int64_t L = lay.L, O = lay.d[L];
    const T inv = T(1) / T(n * O);
    const T* z = acts + n * lay.act[L];
    T* dL = layer(deltas, n, L);
    T total = T(0);
    for (int64_t e = 0; e < n * O; ++e) {
      const T wr = row_weight(w, e, O);
      if (value) total += wr * loss_value(loss, z[e], y[e]);
      dL[e] = wr * loss_grad(loss, z[e], y[e]) * inv;
    }
    if (grad == nullptr) return total * inv;
    for (int64_t l = L; l >= 1; --l) {
      const int64_t out = lay.d[l], in = lay.d[l - 1];
      const T* delta = layer(deltas, n, l);
      const T* a_prev = input_or_layer(x, acts, n, l - 1);
      weight_grad<T>(out, in, n, delta, a_prev, grad + lay.w[l], false);
      sum_rows(delta, n, out, grad + lay.b[l]);
      if (l > 1) {
        T* dprev = layer(deltas, n, l - 1);
        if (out == 1) {  // a scalar output: an outer product, no reduction for the kernel to block
          const T* wl = theta + lay.w[l];
          for (int64_t r = 0; r < n; ++r)
            for (int64_t i = 0; i < in; ++i) dprev[r * in + i] = delta[r] * wl[i];
        } else {
          gemm_nn<T>(n, in, out, delta, out, theta + lay.w[l], in, dprev, in, false);
        }
        for (int64_t e = 0; e < n * in; ++e) dprev[e] *= activation_grad_from_output(act, a_prev[e]);
      }
    }
    return total * inv;
  }

  // hv = H u, the Hessian of the mean loss at theta (whose forward/backward left acts, deltas)
  // times u, by the R-operator. rz, ra, rd: n x A scratch; ut: transposed weights of u.
  void hessian_vector(const T* x, const T* y, const T* w, int64_t n, const T* theta, const T* wt,
                      const T* acts, const T* deltas, const T* u, T* ut, T* rz, T* ra, T* rd,
                      T* hv) const {
    const int64_t L = lay.L, O = lay.d[L];
    const T inv = T(1) / T(n * O);
    transpose_weights(lay, u, ut);
    for (int64_t l = 1; l <= L; ++l) {  // forward: R{z_l}, R{a_l}
      const int64_t out = lay.d[l], in = lay.d[l - 1];
      T* Rz = layer(rz, n, l);
      const T* ub = u + lay.b[l];
      for (int64_t r = 0; r < n; ++r) std::memcpy(Rz + r * out, ub, sizeof(T) * out);
      gemm_nn<T>(n, out, in, input_or_layer(x, acts, n, l - 1), in, ut + lay.wt[l], out, Rz, out, true);
      if (l > 1) gemm_nn<T>(n, out, in, layer(ra, n, l - 1), in, wt + lay.wt[l], out, Rz, out, true);
      if (l < L) {
        const T* a = layer(acts, n, l);
        T* Ra = layer(ra, n, l);
        for (int64_t e = 0; e < n * out; ++e) Ra[e] = activation_grad_from_output(act, a[e]) * Rz[e];
      }
    }
    {
      const T* z = layer(acts, n, L);
      const T* Rz = layer(rz, n, L);
      T* Rd = layer(rd, n, L);
      for (int64_t e = 0; e < n * O; ++e) Rd[e] = row_weight(w, e, O) * loss_hess(loss, z[e], y[e]) * inv * Rz[e];
    }
    for (int64_t l = L; l >= 1; --l) {  // backward: R{delta_l} and the products
      const int64_t out = lay.d[l], in = lay.d[l - 1];
      const T* Rd = layer(rd, n, l);
      const T* delta = layer(deltas, n, l);
      weight_grad<T>(out, in, n, Rd, input_or_layer(x, acts, n, l - 1), hv + lay.w[l], false);
      if (l > 1) weight_grad<T>(out, in, n, delta, layer(ra, n, l - 1), hv + lay.w[l], true);
      sum_rows(Rd, n, out, hv + lay.b[l]);
      if (l > 1) {
        T* Rdp = layer(rd, n, l - 1);
        gemm_nn<T>(n, in, out, Rd, out, theta + lay.w[l], in, Rdp, in, false);
        gemm_nn<T>(n, in, out, delta, out, u + lay.w[l], in, Rdp, in, true);
        const T* a = layer(acts, n, l - 1);
        const T* dprev = layer(deltas, n, l - 1);
        const T* Rzp = layer(rz, n, l - 1);
        for (int64_t e = 0; e < n * in; ++e)
          Rdp[e] = Rdp[e] * activation_grad_from_output(act, a[e]) +
                   dprev[e] * activation_curvature_ratio(act, a[e]) * Rzp[e];
      }
    }
  }
};

// Per-thread scratch that only grows: no allocation once warm.
template <typename T>
T* scratch(size_t n) {
  thread_local std::vector<T> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

template <typename T>
void run_task(const Net<T>& net, const InnerLoopArgs<T>& a, int64_t b) {
  const Layout& lay = net.lay;
  const int64_t P = lay.P, A = lay.A, S = a.steps, K = a.support, Q = a.query;
  const int64_t D = lay.d[0], O = lay.d[lay.L];
  const bool second = a.mode == MetaMode::SecondOrder;
  const bool want_lr = a.task_lr_grad != nullptr;
  T* base = scratch<T>(TaskWorkspace<T>::size(P, A, S, K, Q, second, want_lr, 2 * lay.Pw));
  T* wt = base;  // transposed weights of the current step, then of the direction u
  T* ut = base + lay.Pw;
  const TaskWorkspace<T> ws(base, P, A, S, K, Q, second, want_lr, 2 * lay.Pw);
  T *thetas = ws.thetas, *acts = ws.acts, *deltas = ws.deltas, *grads = ws.grads, *qacts = ws.qacts;
  T *qdeltas = ws.qdeltas, *v = ws.v, *u = ws.u, *hv = ws.hv, *rz = ws.rz, *ra = ws.ra, *rd = ws.rd;

  const T* xs = a.xs + b * K * D;
  const T* ys = a.ys + b * K * O;
  const T* wsb = a.ws ? a.ws + b * K : nullptr;
  const T* theta0 = a.theta + (a.theta_per_task ? b * P : 0);
  // a task's own parameters are checked here, in cache and in parallel, not in a pass of their own
  if (a.theta_per_task) check_finite(theta0, P, "theta (initial parameters)", b * P);
  if (S > 0) std::memcpy(thetas, theta0, sizeof(T) * P);
  for (int64_t s = 0; s < S; ++s) {
    const T* th = thetas + s * P;
    T* th_next = thetas + (s + 1) * P;
    T* st_acts = acts + (second ? s : 0) * K * A;
    T* st_deltas = deltas + (second ? s : 0) * K * A;
    T* g = grads + (want_lr ? s : 0) * P;
    transpose_weights(lay, th, wt);
    net.forward(xs, K, th, wt, st_acts);
    net.backward(xs, ys, wsb, K, th, st_acts, st_deltas, g, false);
    if (a.lr_per_param) {
      const T* lr = a.lr;
#pragma omp simd
      for (int64_t p = 0; p < P; ++p) th_next[p] = th[p] - lr[p] * g[p];
    } else {
      const T lr = a.lr[0];
#pragma omp simd
      for (int64_t p = 0; p < P; ++p) th_next[p] = th[p] - lr * g[p];
    }
  }
  const T* thS = S > 0 ? thetas + S * P : theta0;  // no step: the parameters as given
  if (a.adapted) std::memcpy(a.adapted + b * P, thS, sizeof(T) * P);

  if (Q > 0) {
    const T* xq = a.xq + b * Q * D;
    transpose_weights(lay, thS, wt);
    net.forward(xq, Q, thS, wt, qacts);
    if (a.query_pred) {
      const T* out = qacts + Q * lay.act[lay.L];
      std::memcpy(a.query_pred + b * Q * O, out, sizeof(T) * Q * O);
    }
    if (a.yq) {
      const bool need_v = a.mode == MetaMode::FirstOrder || second || want_lr;
      const T loss = net.backward(xq, a.yq + b * Q * O, a.wq ? a.wq + b * Q : nullptr, Q, thS, qacts, qdeltas,
                                  need_v ? v : nullptr);
      if (a.task_loss) a.task_loss[b] = loss;
    }
  }

  if (a.mode == MetaMode::Reptile) {
    T* out = a.task_grad + b * P;
    for (int64_t p = 0; p < P; ++p) out[p] = theta0[p] - thS[p];
    return;
  }
  if (a.mode == MetaMode::None && !want_lr) return;

  T* lr_grad = want_lr ? a.task_lr_grad + b * P : nullptr;
  if (lr_grad) std::fill(lr_grad, lr_grad + P, T(0));
  for (int64_t s = S - 1; s >= 0; --s) {
    if (lr_grad) {  // dL/dlr += -g_s * v_{s+1}
      const T* g = grads + s * P;
      for (int64_t p = 0; p < P; ++p) lr_grad[p] -= g[p] * v[p];
    }
    if (!second) continue;
    const T* th = thetas + s * P;
    if (a.lr_per_param)
      for (int64_t p = 0; p < P; ++p) u[p] = a.lr[p] * v[p];
    else
      for (int64_t p = 0; p < P; ++p) u[p] = a.lr[0] * v[p];
    transpose_weights(lay, th, wt);
    net.hessian_vector(xs, ys, wsb, K, th, wt, acts + s * K * A, deltas + s * K * A, u, ut, rz, ra, rd, hv);
    for (int64_t p = 0; p < P; ++p) v[p] -= hv[p];
  }
  if (a.task_grad) std::memcpy(a.task_grad + b * P, v, sizeof(T) * P);
}

}  // namespace

template <typename T>
void inner_loop_cpu(const MlpShape& shape, const InnerLoopArgs<T>& a) {
  shape.validate();
  const Layout lay(shape);
  const int64_t B = a.tasks, K = a.support, Q = a.query, D = lay.d[0], O = lay.d[lay.L];
  MR_CHECK(B >= 1, "need at least one task, got " << B);
  MR_CHECK(K >= 1 || a.steps == 0, "support set needs at least one row when inner_steps > 0");
  MR_CHECK(Q >= 0 && a.steps >= 0, "query rows and inner_steps must be >= 0");
  MR_CHECK(a.steps <= kMaxInnerSteps, "inner_steps must be <= " << kMaxInnerSteps << ", got " << a.steps);
  const double workspace = sizeof(T) * TaskWorkspace<T>::size_bound(lay.P, lay.A, a.steps, K, Q,
                                                                     a.mode == MetaMode::SecondOrder,
                                                                     a.task_lr_grad != nullptr, 2 * lay.Pw);
  MR_CHECK(workspace <= kMaxTaskWorkspaceBytes,
           "one task's inner-loop workspace would take " << workspace / double(1 << 30) << " GiB (inner_steps "
               << a.steps << ", support rows " << K << ", " << lay.P << " parameters); the limit is "
               << kMaxTaskWorkspaceBytes / double(1 << 30) << " GiB");
  MR_CHECK(a.theta && a.lr && a.xs && a.ys, "theta, lr, xs and ys are required");
  MR_CHECK(Q == 0 || a.xq, "xq is required when query rows > 0");
  MR_CHECK(a.mode == MetaMode::None || a.task_grad, "a meta-gradient mode needs task_grad");
  MR_CHECK(a.mode == MetaMode::None || a.mode == MetaMode::Reptile || (Q > 0 && a.yq),
           "a MAML meta-gradient needs a query set with targets");
  MR_CHECK(!a.task_lr_grad || (Q > 0 && a.yq), "the learning-rate gradient needs query targets");
  MR_CHECK(!a.task_loss || a.yq, "task_loss needs query targets");
  if (!a.theta_per_task) check_finite(a.theta, lay.P, "theta (initial parameters)");  // per task: in run_task
  check_finite(a.lr, a.lr_per_param ? lay.P : 1, "inner learning rate");
  check_finite(a.xs, B * K * D, "xs (support inputs)");
  check_finite(a.ys, B * K * O, "ys (support targets)");
  if (Q > 0) check_finite(a.xq, B * Q * D, "xq (query inputs)");
  if (Q > 0 && a.yq) check_finite(a.yq, B * Q * O, "yq (query targets)");
  MR_CHECK(!a.wq || a.yq, "query row weights need query targets");
  if (a.ws) check_finite(a.ws, B * K, "ws (support row weights)");
  if (a.wq) check_finite(a.wq, B * Q, "wq (query row weights)");
  const Net<T> net{lay, shape.activation, shape.loss};
  parallel_for(B, [&](int64_t b, int) { run_task<T>(net, a, b); });
}

template void inner_loop_cpu<float>(const MlpShape&, const InnerLoopArgs<float>&);
template void inner_loop_cpu<double>(const MlpShape&, const InnerLoopArgs<double>&);

}  // namespace metarisk
