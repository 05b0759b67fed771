// Parallel loops of the core, run on the OpenMP runtime that torch has already loaded.
//
// Why OpenMP and not a pool of our own: torch's OpenMP workers spin for milliseconds after each
// torch op. A pool of our own threads then shares the cores with those spinners, and a kernel
// called right after a torch op runs at about half speed.
// Our extension links libgomp.so.1 by soname and `metarisk_fast._native` imports torch before
// the core, so the dynamic loader hands us torch's copy: one runtime, one team of threads, and the spinning
// workers are the ones that pick up our work. Only GOMP_parallel and omp_get_thread_num are
// used, which every libgomp since GCC 4.9 provides.
#pragma once
#include <cstdint>
#include <functional>

namespace metarisk {

// Number of threads the core uses (caller thread included). Default: METARISK_NUM_THREADS or
// the hardware concurrency. Setting it does not change torch's own thread count.
int num_threads();
void set_num_threads(int n);

// Calls fn(i, worker) for i in [0, n) with dynamic scheduling; worker in [0, num_threads()).
// Exceptions thrown by fn are re-thrown in the caller (the first one wins).
void parallel_for(int64_t n, const std::function<void(int64_t, int)>& fn);

}  // namespace metarisk
