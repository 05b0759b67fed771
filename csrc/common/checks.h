// Argument checks shared by the op files: each failure names the argument and what was expected.
#pragma once
#include <cmath>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

namespace metarisk {

[[noreturn]] inline void fail(const std::string& msg) { throw std::invalid_argument(msg); }

// A result that overflowed from finite inputs (Python sees FloatingPointError, as for a diverging
// inner loop: csrc/bindings.cpp registers the translation).
struct FloatingPointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

#define MR_CHECK(cond, msg)                         \
  do {                                              \
    if (!(cond)) {                                  \
      std::ostringstream mr_os_;                    \
      mr_os_ << msg;                                \
      ::metarisk::fail(mr_os_.str());               \
    }                                               \
  } while (0)

// Scans a buffer for NaN/inf and reports the first offending flat index (counted from `offset`:
// a slice checked on its own reports its place in the whole array).
template <typename T>
inline void check_finite(const T* p, int64_t n, const char* name, int64_t offset = 0) {
  // Branch-free count first (it vectorises; an early-exit scan does not),
  // then the rare path finds the first offender. x - x is NaN exactly for NaN and +-inf.
  int64_t bad = 0;
#pragma omp simd reduction(+ : bad)
  for (int64_t i = 0; i < n; ++i) bad += (p[i] - p[i]) != T(0);
  if (bad == 0) return;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(p[i])) {
      std::ostringstream os;
      os << name << " contains a non-finite value (" << p[i] << ") at flat index " << offset + i;
      fail(os.str());
    }
  }
}

// Counts the non-finite values of a result (vectorised) and throws FloatingPointError if any.
template <typename T>
inline void check_result_finite(const T* p, int64_t n, const char* what) {
  int64_t bad = 0;
#pragma omp simd reduction(+ : bad)
  for (int64_t i = 0; i < n; ++i) bad += (p[i] - p[i]) != T(0);
  if (bad) {
    std::ostringstream os;
    os << what << " overflowed: " << bad << " non-finite values from finite inputs; scale the inputs down";
    throw FloatingPointError(os.str());
  }
}

}  // namespace metarisk
