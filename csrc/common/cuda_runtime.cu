// CUDA runtime queries for build_info(); a machine without a GPU or driver reports 0 devices.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace metarisk {
int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

// Our statically linked CUDA runtime keeps its own current device per thread (torch's runtime
// setting does not carry over), so every entry selects the tensors' device itself.
void cuda_set_device(int device) {
  const cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) throw std::runtime_error(std::string("cudaSetDevice: ") + cudaGetErrorString(err));
}
}  // namespace metarisk
