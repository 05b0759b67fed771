// The module's table of contents, and what the binary was compiled with (build_info). Compiled once
// for every CPU variant: each variant's module.cpp, compiled with its kernels, has the PyInit_<name>
// that calls make_core_module and the variant's name and ISA flags.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>

#include "common/checks.h"
#include "common/parallel.h"

namespace py = pybind11;

namespace metarisk {
// ---------------------------------------------------------------- what this binary was compiled with
const char* compiled_variant();                // module.cpp
const std::array<const char*, 6>& compiled_isa();  // module.cpp: the flags its kernels were compiled for

#ifdef METARISK_WITH_CUDA
bool cuda_compiled() { return true; }
int cuda_device_count();
#else
bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
#endif

py::dict build_info() {
  py::list isa;
  for (const char* flag : compiled_isa()) {
    if (flag) isa.append(flag);
  }
  py::dict d;
  d["variant"] = py::str(compiled_variant());
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

// ---------------------------------------------------------------- the ops (argument checks in the op files)
py::dict mlp_inner_loop(const py::array&, const py::array&, const py::array&, const py::array&,
                        const py::object&, const py::object&, const py::object&, const py::object&,
                        const std::vector<int64_t>&,
                        int64_t, const std::string&, const std::string&, const std::string&,
                        bool, bool, bool, bool);
py::tuple memory_read_fwd(const py::array&, const py::array&, const py::array&, double);
py::tuple memory_read_bwd(const py::array&, const py::array&, const py::array&, double, const py::array&,
                          const py::array&, const py::object&);
py::tuple memory_write_fwd(const py::array&, const py::array&, const py::array&, const py::array&,
                           const py::array&, double);
py::tuple memory_write_bwd(const py::array&, const py::array&, const py::array&, const py::array&,
                           const py::array&, double, const py::array&, const py::array&, const py::array&,
                           const py::object&, const py::object&);
py::tuple memory_topk_py(const py::array&, const py::array&, int64_t, double);
#ifdef METARISK_WITH_CUDA
void memory_cuda(const std::string&, const py::dict&, const std::string&, int, int64_t, int64_t, int64_t, int64_t,
                 double);
void mlp_inner_loop_cuda(const py::dict&, const std::string&, int, int64_t, int64_t, int64_t, const std::vector<int64_t>&,
                         int64_t, const std::string&, const std::string&, const std::string&, bool, bool);
#endif

// The extension module named `name` (single-phase initialisation: `def` outlives it), every op
// defined; nullptr with the Python error set if anything fails.
PyObject* make_core_module(const char* name, PyModuleDef* def) {
  try {
    auto m = py::module_::create_extension_module(name, nullptr, def);
    m.doc() = "metarisk_fast compiled core (no libtorch; buffers in, buffers out)";
    py::register_exception<metarisk::FloatingPointError>(m, "FloatingPointError", PyExc_FloatingPointError);
    m.def("build_info", &metarisk::build_info);
    m.def("cpu_supports", &metarisk::cpu_supports);
    m.def("num_threads", &metarisk::num_threads);
    m.def("set_num_threads", &metarisk::set_num_threads, py::arg("n"));
    m.def("mlp_inner_loop", &metarisk::mlp_inner_loop, py::arg("theta"), py::arg("lr"),
          py::arg("xs"), py::arg("ys"), py::arg("xq"), py::arg("yq"), py::arg("ws"), py::arg("wq"), py::arg("sizes"),
          py::arg("steps"), py::arg("activation"), py::arg("loss"), py::arg("mode"),
          py::arg("want_loss"), py::arg("want_lr_grad"), py::arg("want_adapted"),
          py::arg("want_pred"));
    m.def("memory_read_forward", &metarisk::memory_read_fwd, py::arg("memory"), py::arg("keys"), py::arg("beta"),
          py::arg("eps"));
    m.def("memory_read_backward", &metarisk::memory_read_bwd, py::arg("memory"), py::arg("keys"), py::arg("beta"),
          py::arg("eps"), py::arg("weights"), py::arg("d_read"), py::arg("d_weights"));
    m.def("memory_write_forward", &metarisk::memory_write_fwd, py::arg("memory"), py::arg("usage"),
          py::arg("prev_read_weights"), py::arg("alpha"), py::arg("values"), py::arg("gamma"));
    m.def("memory_write_backward", &metarisk::memory_write_bwd, py::arg("memory"), py::arg("usage"),
          py::arg("prev_read_weights"), py::arg("alpha"), py::arg("values"), py::arg("gamma"),
          py::arg("write_weights"), py::arg("least_used"), py::arg("d_new_memory"), py::arg("d_new_usage"),
          py::arg("d_write_weights"));
#ifdef METARISK_WITH_CUDA
    m.def("mlp_inner_loop_cuda", &metarisk::mlp_inner_loop_cuda, py::arg("ptrs"), py::arg("dtype"), py::arg("device"),
          py::arg("tasks"), py::arg("support"), py::arg("query"), py::arg("sizes"), py::arg("steps"), py::arg("activation"),
          py::arg("loss"), py::arg("mode"), py::arg("lr_per_param"), py::arg("theta_per_task"));
    m.def("memory_cuda", &metarisk::memory_cuda, py::arg("op"), py::arg("ptrs"), py::arg("dtype"), py::arg("device"),
          py::arg("memories"), py::arg("slots"), py::arg("width"), py::arg("per_memory"), py::arg("param"));
#endif
    m.def("memory_topk", &metarisk::memory_topk_py, py::arg("memory"), py::arg("keys"), py::arg("k"), py::arg("eps"));
    return m.release().ptr();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_ImportError, e.what());
  }
  return nullptr;
}
}  // namespace metarisk
