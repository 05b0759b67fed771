// A small persistent thread pool for parallel-over-tasks loops. Our own std::threads rather than
// OpenMP so the core never brings a second OpenMP runtime next to torch's libgomp.
#pragma once
#include <cstdint>
#include <functional>

namespace metarisk {

// Number of threads the core uses (caller thread included). Default: METARISK_NUM_THREADS or
// the hardware concurrency.
int num_threads();
void set_num_threads(int n);

// Calls fn(i, worker) for i in [0, n) with dynamic scheduling; worker in [0, num_threads()).
// Exceptions thrown by fn are re-thrown in the caller (the first one wins).
void parallel_for(int64_t n, const std::function<void(int64_t, int)>& fn);

}  // namespace metarisk
