// Python entries of the memory kernels: argument checks, output allocation, GIL release.
#include <pybind11/stl.h>

#include "../common/py_buffers.h"
#include "memory.h"

namespace metarisk {
namespace {

// The memory argument of every entry: (E, N, W), checked, with its dimensions.
template <typename T>
const T* memory_arg(const py::array& memory, int64_t& E, int64_t& N, int64_t& W) {
  MR_CHECK(memory.ndim() == 3, "memory must be 3-D (memories, slots, width), got " << shape_str(memory));
  E = memory.shape(0);
  N = memory.shape(1);
  W = memory.shape(2);
  return checked_data<T>(memory, "memory", {E, N, W});
}

template <typename T>
MemoryReadArgs<T> read_args(const py::array& memory, const py::array& keys, const py::array& beta, double eps) {
  MemoryReadArgs<T> a;
  a.memory = memory_arg<T>(memory, a.E, a.N, a.W);
  MR_CHECK(keys.ndim() == 2 && keys.shape(1) == a.W,
           "keys must be (rows, " << a.W << ") to match the memory width, got " << shape_str(keys));
  MR_CHECK(keys.shape(0) % a.E == 0 && keys.shape(0) > 0,
           "key rows (" << keys.shape(0) << ") must be a positive multiple of the number of memories (" << a.E << ")");
  a.G = keys.shape(0) / a.E;
  a.keys = checked_data<T>(keys, "keys", {a.E * a.G, a.W});
  a.beta = checked_data<T>(beta, "beta", {a.E * a.G});
  a.eps = static_cast<T>(eps);
  return a;
}

template <typename T>
py::tuple read_fwd(const py::array& memory, const py::array& keys, const py::array& beta, double eps) {
  auto a = read_args<T>(memory, keys, beta, eps);
  auto read = new_array<T>({a.E * a.G, a.W});
  auto weights = new_array<T>({a.E * a.G, a.N});
  a.read = read.mutable_data();
  a.weights = weights.mutable_data();
  {
    py::gil_scoped_release release;
    memory_read_forward<T>(a);
  }
  return py::make_tuple(read, weights);
}

template <typename T>
py::tuple read_bwd(const py::array& memory, const py::array& keys, const py::array& beta, double eps,
                   const py::array& weights, const py::array& d_read, const py::object& d_weights) {
  auto a = read_args<T>(memory, keys, beta, eps);
  a.weights = const_cast<T*>(checked_data<T>(weights, "weights", {a.E * a.G, a.N}));
  const T* dr = checked_data<T>(d_read, "d_read", {a.E * a.G, a.W});
  const T* dw = d_weights.is_none() ? nullptr
                                    : checked_data<T>(d_weights.cast<py::array>(), "d_weights", {a.E * a.G, a.N});
  auto dk = new_array<T>({a.E * a.G, a.W});
  auto db = new_array<T>({a.E * a.G});
  auto dm = new_array<T>({a.E, a.N, a.W});
  {
    py::gil_scoped_release release;
    memory_read_backward<T>(a, dr, dw, dk.mutable_data(), db.mutable_data(), dm.mutable_data());
  }
  return py::make_tuple(dk, db, dm);
}

template <typename T>
MemoryWriteArgs<T> write_args(const py::array& memory, const py::array& usage, const py::array& prev_read,
                              const py::array& alpha, const py::array& values, double gamma) {
  MemoryWriteArgs<T> a;
  a.memory = memory_arg<T>(memory, a.E, a.N, a.W);
  a.usage = checked_data<T>(usage, "usage", {a.E, a.N});
  MR_CHECK(values.ndim() == 3, "values must be 3-D (memories, writes, width), got " << shape_str(values));
  a.P = values.shape(1);
  a.values = checked_data<T>(values, "values", {a.E, a.P, a.W});
  a.prev_read = checked_data<T>(prev_read, "prev_read_weights", {a.E, a.P, a.N});
  a.alpha = checked_data<T>(alpha, "alpha", {a.E, a.P});
  a.gamma = static_cast<T>(gamma);
  return a;
}

template <typename T>
py::tuple write_fwd(const py::array& memory, const py::array& usage, const py::array& prev_read,
                    const py::array& alpha, const py::array& values, double gamma) {
  auto a = write_args<T>(memory, usage, prev_read, alpha, values, gamma);
  auto nm = new_array<T>({a.E, a.N, a.W});
  auto nu = new_array<T>({a.E, a.N});
  auto ww = new_array<T>({a.E, a.P, a.N});
  auto lu = new_array<int64_t>({a.E, a.P});
  a.new_memory = nm.mutable_data();
  a.new_usage = nu.mutable_data();
  a.write_weights = ww.mutable_data();
  a.least_used = lu.mutable_data();
  {
    py::gil_scoped_release release;
    memory_write_forward<T>(a);
  }
  return py::make_tuple(nm, nu, ww, lu);
}

template <typename T>
py::tuple write_bwd(const py::array& memory, const py::array& usage, const py::array& prev_read,
                    const py::array& alpha, const py::array& values, double gamma, const py::array& write_weights,
                    const py::array& least_used, const py::array& d_memory, const py::object& d_usage,
                    const py::object& d_write_weights) {
  auto a = write_args<T>(memory, usage, prev_read, alpha, values, gamma);
  a.write_weights = const_cast<T*>(checked_data<T>(write_weights, "write_weights", {a.E, a.P, a.N}));
  a.least_used = const_cast<int64_t*>(checked_data<int64_t>(least_used, "least_used", {a.E, a.P}));
  const T* dm = checked_data<T>(d_memory, "d_new_memory", {a.E, a.N, a.W});
  const T* du = d_usage.is_none() ? nullptr : checked_data<T>(d_usage.cast<py::array>(), "d_new_usage", {a.E, a.N});
  const T* dww = d_write_weights.is_none()
                     ? nullptr
                     : checked_data<T>(d_write_weights.cast<py::array>(), "d_write_weights", {a.E, a.P, a.N});
  auto o_m = new_array<T>({a.E, a.N, a.W});
  auto o_u = new_array<T>({a.E, a.N});
  auto o_r = new_array<T>({a.E, a.P, a.N});
  auto o_a = new_array<T>({a.E, a.P});
  auto o_v = new_array<T>({a.E, a.P, a.W});
  {
    py::gil_scoped_release release;
    memory_write_backward<T>(a, dm, du, dww, o_m.mutable_data(), o_u.mutable_data(), o_r.mutable_data(),
                             o_a.mutable_data(), o_v.mutable_data());
  }
  return py::make_tuple(o_m, o_u, o_r, o_a, o_v);
}

template <typename T>
py::tuple topk(const py::array& memory, const py::array& keys, int64_t k, double eps) {
  py::array_t<T> ones(std::vector<py::ssize_t>{keys.ndim() == 2 ? keys.shape(0) : 0});
  std::fill(ones.mutable_data(), ones.mutable_data() + ones.size(), T(1));
  auto a = read_args<T>(memory, keys, ones, eps);
  auto idx = new_array<int64_t>({a.E * a.G, k});
  auto sim = new_array<T>({a.E * a.G, k});
  {
    py::gil_scoped_release release;
    MR_CHECK(k >= 1 && k <= a.N, "topk must be in [1, N = " << a.N << "], got " << k);
    memory_topk<T>(a, k, idx.mutable_data(), sim.mutable_data());
  }
  return py::make_tuple(idx, sim);
}

bool is_f64(const py::array& a) {
  if (holds<double>(a)) return true;
  if (holds<float>(a)) return false;
  throw py::type_error("memory must be float32 or float64, got " + py::str(a.dtype()).cast<std::string>());
}

}  // namespace

py::tuple memory_read_fwd(const py::array& m, const py::array& k, const py::array& b, double eps) {
  return is_f64(m) ? read_fwd<double>(m, k, b, eps) : read_fwd<float>(m, k, b, eps);
}
py::tuple memory_read_bwd(const py::array& m, const py::array& k, const py::array& b, double eps,
                          const py::array& w, const py::array& dr, const py::object& dw) {
  return is_f64(m) ? read_bwd<double>(m, k, b, eps, w, dr, dw) : read_bwd<float>(m, k, b, eps, w, dr, dw);
}
py::tuple memory_write_fwd(const py::array& m, const py::array& u, const py::array& r, const py::array& al,
                           const py::array& v, double g) {
  return is_f64(m) ? write_fwd<double>(m, u, r, al, v, g) : write_fwd<float>(m, u, r, al, v, g);
}
py::tuple memory_write_bwd(const py::array& m, const py::array& u, const py::array& r, const py::array& al,
                           const py::array& v, double g, const py::array& ww, const py::array& lu,
                           const py::array& dm, const py::object& du, const py::object& dww) {
  return is_f64(m) ? write_bwd<double>(m, u, r, al, v, g, ww, lu, dm, du, dww)
                   : write_bwd<float>(m, u, r, al, v, g, ww, lu, dm, du, dww);
}
py::tuple memory_topk_py(const py::array& m, const py::array& k, int64_t topk_, double eps) {
  return is_f64(m) ? topk<double>(m, k, topk_, eps) : topk<float>(m, k, topk_, eps);
}

#ifdef METARISK_WITH_CUDA
void cuda_set_device(int device);

namespace {
template <typename T>
MemoryReadArgs<T> dev_read_args(const py::dict& d, int64_t E, int64_t N, int64_t W, int64_t G, double eps) {
  MemoryReadArgs<T> a;
  a.memory = device_ptr<const T>(d, "memory");
  a.keys = device_ptr<const T>(d, "keys");
  a.beta = device_ptr<const T>(d, "beta");
  a.read = device_ptr<T>(d, "read");
  a.weights = device_ptr<T>(d, "weights");
  a.E = E, a.N = N, a.W = W, a.G = G, a.eps = static_cast<T>(eps);
  return a;
}

template <typename T>
MemoryWriteArgs<T> dev_write_args(const py::dict& d, int64_t E, int64_t N, int64_t W, int64_t P, double gamma) {
  MemoryWriteArgs<T> a;
  a.memory = device_ptr<const T>(d, "memory");
  a.usage = device_ptr<const T>(d, "usage");
  a.prev_read = device_ptr<const T>(d, "prev_read");
  a.alpha = device_ptr<const T>(d, "alpha");
  a.values = device_ptr<const T>(d, "values");
  a.new_memory = device_ptr<T>(d, "new_memory");
  a.new_usage = device_ptr<T>(d, "new_usage");
  a.write_weights = device_ptr<T>(d, "write_weights");
  a.least_used = device_ptr<int64_t>(d, "least_used");
  a.E = E, a.N = N, a.W = W, a.P = P, a.gamma = static_cast<T>(gamma);
  return a;
}

template <typename T>
void run_memory_cuda(const std::string& op, const py::dict& d, int64_t E, int64_t N, int64_t W, int64_t G,
                     double param) {
  if (op == "read_forward") {
    auto a = dev_read_args<T>(d, E, N, W, G, param);
    py::gil_scoped_release release;
    memory_read_forward_cuda<T>(a);
  } else if (op == "read_backward") {
    auto a = dev_read_args<T>(d, E, N, W, G, param);
    const T *dr = device_ptr<const T>(d, "d_read"), *dw = device_ptr<const T>(d, "d_weights");
    T *dk = device_ptr<T>(d, "d_keys"), *db = device_ptr<T>(d, "d_beta"), *dm = device_ptr<T>(d, "d_memory");
    py::gil_scoped_release release;
    memory_read_backward_cuda<T>(a, dr, dw, dk, db, dm);
  } else if (op == "write_forward") {
    auto a = dev_write_args<T>(d, E, N, W, G, param);
    py::gil_scoped_release release;
    memory_write_forward_cuda<T>(a);
  } else if (op == "write_backward") {
    auto a = dev_write_args<T>(d, E, N, W, G, param);
    const T *dm = device_ptr<const T>(d, "d_new_memory"), *du = device_ptr<const T>(d, "d_new_usage");
    const T* dww = device_ptr<const T>(d, "d_write_weights");
    T *om = device_ptr<T>(d, "d_memory"), *ou = device_ptr<T>(d, "d_usage"), *orr = device_ptr<T>(d, "d_prev_read");
    T *oa = device_ptr<T>(d, "d_alpha"), *ov = device_ptr<T>(d, "d_values");
    py::gil_scoped_release release;
    memory_write_backward_cuda<T>(a, dm, du, dww, om, ou, orr, oa, ov);
  } else {
    fail("unknown memory op '" + op + "'");
  }
}
}  // namespace

// One entry for the four CUDA memory kernels; G is the keys per memory (read) or the writes
// per memory (write); param is eps (read) or gamma (write).
void memory_cuda(const std::string& op, const py::dict& ptrs, const std::string& dtype, int device, int64_t E,
                 int64_t N, int64_t W, int64_t G, double param) {
  cuda_set_device(device);
  if (dtype == "float32")
    run_memory_cuda<float>(op, ptrs, E, N, W, G, param);
  else if (dtype == "float64")
    run_memory_cuda<double>(op, ptrs, E, N, W, G, param);
  else
    throw py::type_error("dtype must be float32 or float64, got " + dtype);
}
#endif

}  // namespace metarisk
