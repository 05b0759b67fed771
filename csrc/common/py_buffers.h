// Zero-copy views of NumPy arrays (and anything with the buffer protocol, e.g. tensor.numpy())
// with checks that name the argument: dtype, C-contiguity and shape.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "checks.h"

namespace metarisk {
namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

inline std::string shape_str(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + (v.size() == 1 ? ",)" : ")");
}

// Whether `a`'s dtype is T's: numpy's equivalence, not the descriptor object's identity (an array
// made by another library, Numba's for one, carries its own float32 descriptor).
template <typename T>
bool holds(const py::array& a) {
  return py::isinstance<py::array_t<T>>(a);
}

// Checks that `a` holds dtype T, is C-contiguous and has the expected shape (-1: any).
template <typename T>
const T* checked_data(const py::array& a, const char* name, const std::vector<int64_t>& shape) {
  MR_CHECK(holds<T>(a),
           name << " must have dtype " << py::str(py::dtype::of<T>()).cast<std::string>()
                << ", got " << py::str(a.dtype()).cast<std::string>());
  MR_CHECK(a.flags() & py::array::c_style, name << " must be C-contiguous");
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || a.shape(i) == shape[i];
  MR_CHECK(ok, name << " must have shape " << shape_str(shape) << " (-1: any), got " << shape_str(a));
  return static_cast<const T*>(a.data());
}

// A device buffer handed over by a Python op as an integer address (tensor.data_ptr()) under
// `key` in `ptrs`; absent or None is a null pointer (an output not asked for).
template <typename T>
T* device_ptr(const py::dict& ptrs, const char* key) {
  return ptrs.contains(key) && !ptrs[key].is_none() ? reinterpret_cast<T*>(ptrs[key].cast<uintptr_t>()) : nullptr;
}

template <typename T>
py::array_t<T> new_array(const std::vector<int64_t>& shape) {
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  return py::array_t<T>(s);
}

}  // namespace metarisk
