// A persistent pool of worker threads (one per core, the calling thread included) for kernels.
#pragma once
#include <cstdint>
#include <functional>

namespace frugal {
// Runs fn(begin, end) over [0, n) split into contiguous chunks, one per thread; blocks until done.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);
// Runs fn(task) for task in [0, ntasks), tasks handed out dynamically; blocks until done.
void parallel_tasks(int64_t ntasks, const std::function<void(int64_t)>& fn);
// fn(begin, end) over rows [0, rows) of `width` values each: on the pool (parallel_for) when there is
// more than one row and at least 2^15 values, else inline. For per-token work of prefill chunks.
void parallel_rows(int64_t rows, int64_t width, const std::function<void(int64_t, int64_t)>& fn);
int num_threads();
void set_num_threads(int n);
}  // namespace frugal
