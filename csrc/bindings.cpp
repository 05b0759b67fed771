// The module's table of contents: argument checks live in the op files.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "common/checks.h"
#include "common/parallel.h"

namespace py = pybind11;

namespace metarisk {
py::dict build_info();
py::dict cpu_supports();
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
}  // namespace metarisk

// One module per CPU variant (CMakeLists.txt): the name comes from the build, expanded before
// pybind11 pastes it into PyInit_<name>.
#ifndef METARISK_MODULE_NAME
#define METARISK_MODULE_NAME _core
#endif
#define METARISK_PYBIND11_MODULE(name, m) PYBIND11_MODULE(name, m)

METARISK_PYBIND11_MODULE(METARISK_MODULE_NAME, m) {
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
  m.def("mlp_inner_loop_cuda", &metarisk::mlp_inner_loop_cuda, py::arg("ptrs"), py::arg("dtype"), py::arg("device"), py::arg("tasks"),
        py::arg("support"), py::arg("query"), py::arg("sizes"), py::arg("steps"), py::arg("activation"),
        py::arg("loss"), py::arg("mode"), py::arg("lr_per_param"), py::arg("theta_per_task"));
  m.def("memory_cuda", &metarisk::memory_cuda, py::arg("op"), py::arg("ptrs"), py::arg("dtype"), py::arg("device"),
        py::arg("memories"), py::arg("slots"), py::arg("width"), py::arg("per_memory"), py::arg("param"));
#endif
  m.def("memory_topk", &metarisk::memory_topk_py, py::arg("memory"), py::arg("keys"), py::arg("k"), py::arg("eps"));
}
