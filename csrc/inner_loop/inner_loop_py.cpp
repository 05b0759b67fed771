// Python entry of the fused inner loop: argument checks, output allocation, GIL release.
#include <string>

#include "../common/py_buffers.h"
#include "inner_loop.h"

namespace metarisk {

Activation parse_activation(const std::string& s) {
  if (s == "relu") return Activation::ReLU;
  if (s == "tanh") return Activation::Tanh;
  fail("activation must be 'relu' or 'tanh', got '" + s + "'");
}

Loss parse_loss(const std::string& s) {
  if (s == "mse") return Loss::MSE;
  if (s == "gaussian_nll") return Loss::GaussianNLL;
  if (s == "bce") return Loss::BCE;
  if (s == "student_t_nll") return Loss::StudentTNLL;
  fail("loss must be 'mse', 'gaussian_nll', 'student_t_nll' or 'bce', got '" + s + "'");
}

static MetaMode parse_mode(const std::string& s) {
  if (s == "none") return MetaMode::None;
  if (s == "first_order") return MetaMode::FirstOrder;
  if (s == "second_order") return MetaMode::SecondOrder;
  if (s == "reptile") return MetaMode::Reptile;
  fail("mode must be 'none', 'first_order', 'second_order' or 'reptile', got '" + s + "'");
}

template <typename T>
static py::dict run(const MlpShape& shape, const py::array& theta, const py::array& lr,
                    const py::array& xs, const py::array& ys, const py::object& xq,
                    const py::object& yq, const py::object& ws, const py::object& wq, int64_t steps,
                    MetaMode mode, bool want_loss, bool want_lr_grad, bool want_adapted, bool want_pred) {
  const int64_t P = shape.num_params(), D = shape.in_features(), O = shape.out_features();
  InnerLoopArgs<T> a;
  a.theta_per_task = theta.ndim() == 2;
  MR_CHECK(lr.ndim() == 1 && (lr.shape(0) == 1 || lr.shape(0) == P),
           "lr must have shape (1,) or (" << P << ",) (one rate per parameter), got " << shape_str(lr));
  a.lr_per_param = lr.shape(0) == P && P != 1;
  a.lr = checked_data<T>(lr, "lr", {lr.shape(0)});
  a.xs = checked_data<T>(xs, "xs", {-1, -1, D});
  a.tasks = xs.shape(0);
  a.theta = a.theta_per_task ? checked_data<T>(theta, "theta", {a.tasks, P}) : checked_data<T>(theta, "theta", {P});
  a.support = xs.shape(1);
  a.ys = checked_data<T>(ys, "ys", {a.tasks, a.support, O});
  if (!xq.is_none()) {
    py::array xq_a = xq.cast<py::array>();
    a.xq = checked_data<T>(xq_a, "xq", {a.tasks, -1, D});
    a.query = xq_a.shape(1);
    if (!yq.is_none()) a.yq = checked_data<T>(yq.cast<py::array>(), "yq", {a.tasks, a.query, O});
  } else {
    MR_CHECK(yq.is_none(), "yq given without xq");
  }
  if (!ws.is_none()) a.ws = checked_data<T>(ws.cast<py::array>(), "ws", {a.tasks, a.support});
  if (!wq.is_none()) {
    MR_CHECK(a.yq, "wq (query row weights) given without query targets");
    a.wq = checked_data<T>(wq.cast<py::array>(), "wq", {a.tasks, a.query});
  }
  a.steps = steps;
  a.mode = mode;
  py::dict out;
  auto add = [&](const char* key, std::vector<int64_t> s) {
    auto arr = new_array<T>(s);
    out[key] = arr;
    return static_cast<T*>(arr.mutable_data());
  };
  if (want_loss) a.task_loss = add("loss", {a.tasks});
  if (mode != MetaMode::None) a.task_grad = add("grad", {a.tasks, P});
  if (want_lr_grad) a.task_lr_grad = add("lr_grad", {a.tasks, P});
  if (want_adapted) a.adapted = add("adapted", {a.tasks, P});
  if (want_pred) {
    MR_CHECK(a.query > 0 || a.xq, "predictions need xq");
    a.query_pred = add("pred", {a.tasks, a.query, O});
  }
  {
    py::gil_scoped_release release;
    inner_loop_cpu<T>(shape, a);
  }
  return out;
}

py::dict mlp_inner_loop(const py::array& theta, const py::array& lr, const py::array& xs,
                        const py::array& ys, const py::object& xq, const py::object& yq,
                        const py::object& ws, const py::object& wq, const std::vector<int64_t>& sizes, int64_t steps,
                        const std::string& activation, const std::string& loss,
                        const std::string& mode, bool want_loss, bool want_lr_grad,
                        bool want_adapted, bool want_pred) {
  MlpShape shape{sizes, parse_activation(activation), parse_loss(loss)};
  shape.validate();
  MR_CHECK(steps >= 0, "inner_steps must be >= 0, got " << steps);
  const MetaMode m = parse_mode(mode);
  if (holds<float>(theta))
    return run<float>(shape, theta, lr, xs, ys, xq, yq, ws, wq, steps, m, want_loss, want_lr_grad,
                      want_adapted, want_pred);
  if (holds<double>(theta))
    return run<double>(shape, theta, lr, xs, ys, xq, yq, ws, wq, steps, m, want_loss, want_lr_grad,
                       want_adapted, want_pred);
  throw py::type_error("theta must be float32 or float64, got " +
                       py::str(theta.dtype()).cast<std::string>());
}

#ifdef METARISK_WITH_CUDA
void cuda_set_device(int device);

template <typename T>
static void run_cuda(const MlpShape& shape, const py::dict& ptrs, int64_t B, int64_t K, int64_t Q, int64_t steps,
                     MetaMode mode, bool lr_per_param, bool theta_per_task) {
  auto ptr = [&](const char* key) { return device_ptr<T>(ptrs, key); };
  InnerLoopArgs<T> a;
  a.theta = ptr("theta");
  a.theta_per_task = theta_per_task;
  a.lr = ptr("lr");
  a.lr_per_param = lr_per_param;
  a.xs = ptr("xs");
  a.ys = ptr("ys");
  a.xq = ptr("xq");
  a.yq = ptr("yq");
  a.ws = ptr("ws");
  a.wq = ptr("wq");
  a.tasks = B;
  a.support = K;
  a.query = Q;
  a.steps = steps;
  a.mode = mode;
  a.task_loss = ptr("loss");
  a.task_grad = ptr("grad");
  a.task_lr_grad = ptr("lr_grad");
  a.adapted = ptr("adapted");
  a.query_pred = ptr("pred");
  MR_CHECK(a.theta && a.lr && a.xs && a.ys, "theta, lr, xs and ys device pointers are required");
  py::gil_scoped_release release;
  inner_loop_cuda<T>(shape, a);
}

// Device buffers come in as integer addresses (tensor.data_ptr()), allocated and shape-checked
// by the Python op; the outputs named in ptrs are written.
void mlp_inner_loop_cuda(const py::dict& ptrs, const std::string& dtype, int device, int64_t B, int64_t K, int64_t Q,
                         const std::vector<int64_t>& sizes, int64_t steps, const std::string& activation,
                         const std::string& loss, const std::string& mode, bool lr_per_param,
                         bool theta_per_task) {
  cuda_set_device(device);
  MlpShape shape{sizes, parse_activation(activation), parse_loss(loss)};
  shape.validate();
  MR_CHECK(B >= 1 && K >= 0 && Q >= 0 && steps >= 0, "bad task batch sizes");
  MR_CHECK(steps <= kMaxInnerSteps, "inner_steps must be <= " << kMaxInnerSteps << ", got " << steps);
  const MetaMode m = parse_mode(mode);
  if (dtype == "float32")
    run_cuda<float>(shape, ptrs, B, K, Q, steps, m, lr_per_param, theta_per_task);
  else if (dtype == "float64")
    run_cuda<double>(shape, ptrs, B, K, Q, steps, m, lr_per_param, theta_per_task);
  else
    throw py::type_error("dtype must be float32 or float64, got " + dtype);
}
#endif

}  // namespace metarisk
