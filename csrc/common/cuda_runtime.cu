// CUDA runtime queries for build_info(); a machine without a GPU or driver reports 0 devices.
#include <cuda_runtime.h>

namespace metarisk {
int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}
}  // namespace metarisk
