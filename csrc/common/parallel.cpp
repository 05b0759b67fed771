#include "parallel.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>

#include "checks.h"

namespace metarisk {
namespace {

int default_threads() {
  if (const char* env = std::getenv("METARISK_NUM_THREADS")) {
    const int v = std::atoi(env);
    if (v > 0) return v;
  }
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

std::atomic<int>& thread_count() {
  static std::atomic<int> n{default_threads()};
  return n;
}

}  // namespace

int num_threads() { return thread_count().load(); }

void set_num_threads(int n) {
  MR_CHECK(n >= 1, "num_threads must be >= 1, got " << n);
  thread_count().store(n);
}

void parallel_for(int64_t n, const std::function<void(int64_t, int)>& fn) {
  if (n <= 0) return;
  const int threads = static_cast<int>(std::min<int64_t>(num_threads(), n));
  if (threads == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i, 0);
    return;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  // Items are handed out one at a time from a shared counter (dynamic scheduling by hand keeps
  // the libgomp ABI we need to GOMP_parallel alone).
#pragma omp parallel num_threads(threads)
  {
    const int worker = omp_get_thread_num();
    for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
      try {
        fn(i, worker);
      } catch (...) {
        std::lock_guard<std::mutex> lk(error_mutex);
        if (!error) error = std::current_exception();
        next.store(n);  // stop handing out work
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace metarisk
