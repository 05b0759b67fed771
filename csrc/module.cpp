// One CPU variant's extension module: CMakeLists.txt compiles this file with that variant's
// kernels (-march, METARISK_MODULE_NAME, METARISK_ISA_VARIANT) while the bindings and the rest of the
// glue are compiled once for every variant. Only Python.h here, so the per-variant part stays the
// kernels.
#include <Python.h>

#include <array>

namespace metarisk {
PyObject* make_core_module(const char* name, PyModuleDef* def);  // bindings.cpp

const char* compiled_variant() { return METARISK_ISA_VARIANT; }

// The ISA flags this variant's kernels were compiled for (unset slots: nullptr).
const std::array<const char*, 6>& compiled_isa() {
  static const std::array<const char*, 6> flags = {
#ifdef __SSE4_2__
      "sse4.2",
#else
      nullptr,
#endif
#ifdef __AVX__
      "avx",
#else
      nullptr,
#endif
#ifdef __AVX2__
      "avx2",
#else
      nullptr,
#endif
#ifdef __FMA__
      "fma",
#else
      nullptr,
#endif
#ifdef __AVX512F__
      "avx512f",
#else
      nullptr,
#endif
#ifdef __ARM_NEON
      "neon",
#else
      nullptr,
#endif
  };
  return flags;
}
}  // namespace metarisk

#define METARISK_STRING(x) #x
#define METARISK_NAME(x) METARISK_STRING(x)
#define METARISK_PASTE(a, b) a##b
#define METARISK_INIT(name) METARISK_PASTE(PyInit_, name)

PyMODINIT_FUNC METARISK_INIT(METARISK_MODULE_NAME)() {
  static PyModuleDef def;  // single-phase initialisation: the definition outlives the module
  return metarisk::make_core_module(METARISK_NAME(METARISK_MODULE_NAME), &def);
}
