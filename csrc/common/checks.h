// Argument checks shared by the op files: each failure names the argument and what was expected.
#pragma once
#include <cmath>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

namespace metarisk {

[[noreturn]] inline void fail(const std::string& msg) { throw std::invalid_argument(msg); }

#define MR_CHECK(cond, msg)                         \
  do {                                              \
    if (!(cond)) {                                  \
      std::ostringstream mr_os_;                    \
      mr_os_ << msg;                                \
      ::metarisk::fail(mr_os_.str());               \
    }                                               \
  } while (0)

// Scans a buffer for NaN/inf and reports the first offending flat index.
template <typename T>
inline void check_finite(const T* p, int64_t n, const char* name) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(p[i])) {
      std::ostringstream os;
      os << name << " contains a non-finite value (" << p[i] << ") at flat index " << i;
      fail(os.str());
    }
  }
}

}  // namespace metarisk
