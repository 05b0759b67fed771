// Per-element math shared by the CPU and CUDA paths: activations and losses with their
// first and second derivatives. Inline host/device so the CPU tests cover the CUDA math.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MR_HD __host__ __device__ __forceinline__
#else
#define MR_HD inline
#endif

namespace metarisk {

enum class Activation : int { ReLU = 0, Tanh = 1 };
enum class Loss : int { MSE = 0, GaussianNLL = 1, BCE = 2, StudentTNLL = 3 };

// Derivative of the activation expressed through its output a = f(z) (both ReLU and tanh allow it,
// so the forward pass only stores activations).
template <typename T>
MR_HD T activate(Activation act, T z) {
  return act == Activation::ReLU ? (z > T(0) ? z : T(0)) : std::tanh(z);
}
template <typename T>
MR_HD T activation_grad_from_output(Activation act, T a) {
  return act == Activation::ReLU ? (a > T(0) ? T(1) : T(0)) : T(1) - a * a;
}
// f''(z) / f'(z) written through a = f(z): 0 for ReLU, -2a for tanh.
template <typename T>
MR_HD T activation_curvature_ratio(Activation act, T a) {
  return act == Activation::ReLU ? T(0) : T(-2) * a;
}

// Loss of one output z against target y, and its first and second derivative in z.
//   MSE:          (z - y)^2
//   GaussianNLL:  0.5 (log 2 pi + z + y^2 exp(-z)), z the predicted log variance of return y
//   StudentTNLL:  0.5 z + (nu + 1) / 2 log(1 + u) + c_nu, u = y^2 exp(-z) / (nu - 2): the Student t
//                 with nu = kStudentTNu degrees of freedom scaled to variance exp(z) (a fat-tailed
//                 likelihood: one crash day moves z by a bounded amount), c_nu its normalising
//                 constant -lgamma((nu + 1) / 2) + lgamma(nu / 2) + 0.5 log(pi (nu - 2))
//   BCE:          softplus(z) - y z, z a logit
constexpr double kStudentTNu = 5.0;
constexpr double kStudentTLogNorm = 0.7132067771717296;

template <typename T>
MR_HD T student_t_u(T z, T y) { return y * y * std::exp(-z) / T(kStudentTNu - 2.0); }
// u / (1 + u) written as 1 / (1 + 1 / u): 1 where u overflows to inf, 0 where u is 0 (no inf / inf)
template <typename T>
MR_HD T student_t_share(T z, T y) { return T(1) / (T(1) + T(1) / student_t_u(z, y)); }

template <typename T>
MR_HD T loss_value(Loss loss, T z, T y) {
  switch (loss) {
    case Loss::MSE: { T d = z - y; return d * d; }
    case Loss::GaussianNLL: return T(0.5) * (T(1.8378770664093453) + z + y * y * std::exp(-z));
    case Loss::StudentTNLL:
      return T(0.5) * z + T(0.5 * (kStudentTNu + 1.0)) * std::log1p(student_t_u(z, y)) + T(kStudentTLogNorm);
    default: return (z > T(0) ? z : T(0)) - y * z + std::log1p(std::exp(-std::fabs(z)));
  }
}
template <typename T>
MR_HD T loss_grad(Loss loss, T z, T y) {
  switch (loss) {
    case Loss::MSE: return T(2) * (z - y);
    case Loss::GaussianNLL: return T(0.5) * (T(1) - y * y * std::exp(-z));
    case Loss::StudentTNLL: return T(0.5) - T(0.5 * (kStudentTNu + 1.0)) * student_t_share(z, y);
    default: return T(1) / (T(1) + std::exp(-z)) - y;
  }
}
template <typename T>
MR_HD T loss_hess(Loss loss, T z, T y) {
  switch (loss) {
    case Loss::MSE: return T(2);
    case Loss::GaussianNLL: return T(0.5) * y * y * std::exp(-z);
    case Loss::StudentTNLL: { T r = student_t_share(z, y); return T(0.5 * (kStudentTNu + 1.0)) * r * (T(1) - r); }
    default: { T s = T(1) / (T(1) + std::exp(-z)); return s * (T(1) - s); }
  }
}

// The weight of element e of an (n, outputs) block of losses: its row's weight, 1 without weights.
template <typename T>
MR_HD T row_weight(const T* w, int64_t e, int64_t outputs) { return w ? w[e / outputs] : T(1); }

// External memory (Santoro et al. 2016), per (key, slot) and per written slot.
// Read similarity cos(k, M_j) = (k . M_j) / (|k| |M_j| + eps): one division, one rounding.
template <typename T>
MR_HD T cosine(T dot, T kn, T mn, T eps) {
  return dot / (kn * mn + eps);
}
// The read's softmax argument, shifted: beta (cos - c), c the key's largest cosine (or its bound,
// 1). Where a slot carries weight, cos - c is exact (Sterbenz), so the argument rounds relative to
// its own small size, not to beta's: at a sharp key (float, beta = 500) the weights are as accurate
// as the cosines (beta cos - beta c would round twice at beta's size).
template <typename T>
MR_HD T shifted_logit(T beta, T cos, T cos_shift) {
  return beta * (cos - cos_shift);
}
// Backward through the softmax and the cosine for one (key, slot): p the read weight, dp = dL/dp,
// pdp = sum_j p_j dp_j. Gives the slot's share of dL/dbeta, g = dL/d(k . M_j) and
// dD = dL/d(|k| |M_j| + eps).
template <typename T>
MR_HD void cosine_softmax_grad(T p, T dp, T pdp, T beta, T dot, T kn, T mn, T eps, T& dbeta, T& g, T& dD) {
  const T dl = p * (dp - pdp);
  const T inv_D = T(1) / (kn * mn + eps);  // one division, not three
  const T sim = dot * inv_D;
  dbeta = dl * sim;
  const T dsim = beta * dl;
  g = dsim * inv_D;
  dD = -g * sim;
}
// LRUA write weight w^w = sigmoid(alpha) w^r + (1 - sigmoid(alpha)) w^lu, from the gate value.
template <typename T>
MR_HD T lrua_gate(T alpha) {
  return T(1) / (T(1) + std::exp(-alpha));
}
template <typename T>
MR_HD T lrua_blend(T gate, T prev_read, bool least_used) {
  return gate * prev_read + (least_used ? T(1) - gate : T(0));
}

}  // namespace metarisk
