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

}  // namespace metarisk
