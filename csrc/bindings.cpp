// The module's table of contents: argument checks live in the op files.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "common/thread_pool.h"

namespace py = pybind11;

namespace metarisk {
py::dict build_info();
py::dict mlp_inner_loop(const py::array&, const py::array&, const py::array&, const py::array&,
                        const py::object&, const py::object&, const std::vector<int64_t>&,
                        int64_t, const std::string&, const std::string&, const std::string&,
                        bool, bool, bool, bool);
}  // namespace metarisk

PYBIND11_MODULE(_core, m) {
  m.doc() = "metarisk_fast compiled core (no libtorch; buffers in, buffers out)";
  m.def("build_info", &metarisk::build_info);
  m.def("num_threads", &metarisk::num_threads);
  m.def("set_num_threads", &metarisk::set_num_threads, py::arg("n"));
  m.def("mlp_inner_loop", &metarisk::mlp_inner_loop, py::arg("theta"), py::arg("lr"),
        py::arg("xs"), py::arg("ys"), py::arg("xq"), py::arg("yq"), py::arg("sizes"),
        py::arg("steps"), py::arg("activation"), py::arg("loss"), py::arg("mode"),
        py::arg("want_loss"), py::arg("want_lr_grad"), py::arg("want_adapted"),
        py::arg("want_pred"));
}
