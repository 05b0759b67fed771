// A branch-free 2^y the compiler vectorises (libm's exp stays scalar): n = round(y) by the
// shifter trick, f = y - n in [-1/2, 1/2], 2^f by its Taylor series in f ln 2 (degree 6 in float,
// 13 in double: a few ulp), and 2^n built in the exponent bits with integer adds and shifts only
// (AVX2 has no double <-> int64 conversion). A softmax that folds log2(e) into its scale calls it
// instead of exp and skips exp's Cody-Waite reduction (bench/RESULTS.md has the measurement).
// Inputs are clamped to the range where the result is a normal number; below it 2^y
// returns ~0. Accuracy is checked through the memory read against its PyTorch twin (float64 to
// 1e-9).
#pragma once
#include <cstdint>

namespace metarisk {

template <typename T> struct Exp2Traits;
template <> struct Exp2Traits<double> {
  using I = int64_t;
  static constexpr double lo = -1021.0, hi = 1023.0, shifter = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr int mant = 52;
  static constexpr I bias = 1023;
};
template <> struct Exp2Traits<float> {
  using I = int32_t;
  static constexpr float lo = -125.0f, hi = 127.0f, shifter = 12582912.0f;  // 1.5 * 2^23
  static constexpr int mant = 23;
  static constexpr I bias = 127;
};

template <typename T>
inline T fast_exp2(T y) {
  using Tr = Exp2Traits<T>;
  using I = typename Tr::I;
  const T lo = Tr::lo, hi = Tr::hi;  // locals: std::min / max on static members blocks vectorisation
  y = y < lo ? lo : y;
  y = y > hi ? hi : y;
  const T kd = y + Tr::shifter;  // round(y) sits in the low bits
  const I kbits = __builtin_bit_cast(I, kd);
  const T f = y - (kd - Tr::shifter);
  // (ln 2)^k / k! for k = 13 .. 0
  constexpr double c[] = {1.3691488853904124e-12, 2.5678435993488196e-11, 4.44553827187081e-10,
                          7.054911620801121e-09, 1.0178086009239696e-07, 1.3215486790144305e-06,
                          1.5252733804059838e-05, 1.5403530393381606e-04, 1.3333558146428441e-03,
                          9.618129107628477e-03, 5.5504108664821576e-02, 2.402265069591007e-01,
                          6.931471805599453e-01, 1.0};
  constexpr int first = sizeof(T) == 8 ? 0 : 7;  // float: degree 6
  T p = T(c[first]);
  for (int k = first + 1; k < 14; ++k) p = p * f + T(c[k]);
  // 2^n: the integer n is kbits minus the shifter's bits; move it into the exponent field
  const I sbits = __builtin_bit_cast(I, T(Tr::shifter));
  const I ebits = static_cast<I>((kbits - sbits + Tr::bias)) << Tr::mant;
  return p * __builtin_bit_cast(T, ebits);
}

}  // namespace metarisk
