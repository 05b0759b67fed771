// Per-element math shared by the CPU and CUDA paths: activations and losses with their
// first and second derivatives. Inline host/device so the CPU tests cover the CUDA math.
#pragma once
#include <cmath>

#if defined(__CUDACC__)
#define MR_HD __host__ __device__ __forceinline__
#else
#define MR_HD inline
#endif

namespace metarisk {

enum class Activation : int { ReLU = 0, Tanh = 1 };
enum class Loss : int { MSE = 0, GaussianNLL = 1, BCE = 2 };

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
//   BCE:          softplus(z) - y z, z a logit
template <typename T>
MR_HD T loss_value(Loss loss, T z, T y) {
  switch (loss) {
    case Loss::MSE: { T d = z - y; return d * d; }
    case Loss::GaussianNLL: return T(0.5) * (T(1.8378770664093453) + z + y * y * std::exp(-z));
    default: return (z > T(0) ? z : T(0)) - y * z + std::log1p(std::exp(-std::fabs(z)));
  }
}
template <typename T>
MR_HD T loss_grad(Loss loss, T z, T y) {
  switch (loss) {
    case Loss::MSE: return T(2) * (z - y);
    case Loss::GaussianNLL: return T(0.5) * (T(1) - y * y * std::exp(-z));
    default: return T(1) / (T(1) + std::exp(-z)) - y;
  }
}
template <typename T>
MR_HD T loss_hess(Loss loss, T z, T y) {
  switch (loss) {
    case Loss::MSE: return T(2);
    case Loss::GaussianNLL: return T(0.5) * y * y * std::exp(-z);
    default: { T s = T(1) / (T(1) + std::exp(-z)); return s * (T(1) - s); }
  }
}

}  // namespace metarisk
