// What this binary was compiled with, for metarisk_fast.build_info().
#include <pybind11/pybind11.h>

#include "common/parallel.h"

namespace metarisk {
namespace py = pybind11;

#ifdef METARISK_WITH_CUDA
bool cuda_compiled() { return true; }
int cuda_device_count();
#else
bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
#endif

py::dict build_info() {
  py::list isa;
#ifdef __SSE4_2__
  isa.append("sse4.2");
#endif
#ifdef __AVX__
  isa.append("avx");
#endif
#ifdef __AVX2__
  isa.append("avx2");
#endif
#ifdef __FMA__
  isa.append("fma");
#endif
#ifdef __AVX512F__
  isa.append("avx512f");
#endif
#ifdef __ARM_NEON
  isa.append("neon");
#endif
  py::dict d;
#ifdef METARISK_ISA_VARIANT
  d["variant"] = py::str(METARISK_ISA_VARIANT);
#endif
  d["cpu_isa"] = isa;
  d["compiler"] = py::str(__VERSION__);
  d["cuda_compiled"] = cuda_compiled();
#ifdef METARISK_CUDA_ARCHS
  d["cuda_architectures"] = py::str(METARISK_CUDA_ARCHS);
#endif
  d["cuda_devices"] = cuda_device_count();
  d["num_threads"] = num_threads();
  return d;
}

// Which of the x86-64 variants this CPU runs (the baseline module answers before a wider one
// is imported); empty elsewhere.
py::dict cpu_supports() {
  py::dict d;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const bool v2 = __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("popcnt") &&
                  __builtin_cpu_supports("ssse3");
  const bool v3 = v2 && __builtin_cpu_supports("avx") && __builtin_cpu_supports("avx2") &&
                  __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
  const bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
                  __builtin_cpu_supports("avx512vl");
  d["x86-64-v2"] = v2;
  d["x86-64-v3"] = v3;
  d["x86-64-v4"] = v4;
#endif
  return d;
}

}  // namespace metarisk
