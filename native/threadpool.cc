#include "threadpool.h"
#include "isa.h"
#include "registry.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace frugal {
namespace {
// Wake-up: a worker that finished a region spins on the region counter for up to spin_seconds()
// before it sleeps on the condition variable, and the caller spins the same way for the workers to
// finish. A batch-1 decode step is ~100 regions of ~0.1 ms each, back to back: waking a sleeping
// thread through the kernel took tens of microseconds per region here, a large share of each.
double spin_seconds() {
  static const double s = [] {
    const char* e = std::getenv("FRUGAL_SPIN_US");
    const double us = e ? std::atof(e) : 200.0;
    return us > 0 ? us * 1e-6 : 0.0;
  }();
  return s;
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins until done() or spin_seconds() have passed; returns done().
template <class F>
bool spin_until(F done) {
  const double limit = spin_seconds();
  if (limit <= 0) return done();
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    for (int i = 0; i < 64; i++) {
      if (done()) return true;
      cpu_relax();
    }
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > limit) return done();
  }
}

class Pool {
 public:
  explicit Pool(int n) { resize(n); }
  ~Pool() { stop(); }
  int size() const { return static_cast<int>(workers_.size()) + 1; }
  void resize(int n) {
    stop();
    stopping_.store(false);
    for (int i = 1; i < n; i++) workers_.emplace_back([this] { loop(); });
  }
  void run(int64_t ntasks, const std::function<void(int64_t)>& fn) {
    if (ntasks <= 0) return;
    if (ntasks == 1 || workers_.empty()) {
      for (int64_t t = 0; t < ntasks; t++) fn(t);
      return;
    }
    std::lock_guard<std::mutex> serial(run_mutex_);  // one parallel region at a time
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &fn;
      ntasks_ = ntasks;
      next_.store(0);
      pending_.store(static_cast<int>(workers_.size()));
      generation_.fetch_add(1, std::memory_order_release);  // publishes the job to spinning workers
    }
    cv_.notify_all();
    drain();
    if (!spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lk(m_);
      done_cv_.wait(lk, [this] { return pending_.load() == 0; });
    }
    job_ = nullptr;
  }

 private:
  void drain() {
    for (;;) {
      int64_t t = next_.fetch_add(1);
      if (t >= ntasks_) break;
      (*job_)(t);
    }
  }
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      const auto ready = [&] { return stopping_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen; };
      if (!spin_until(ready)) {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, ready);
      }
      if (stopping_.load()) return;
      seen = generation_.load(std::memory_order_acquire);
      drain();
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(m_);  // the caller checks pending_ under m_ before it sleeps
        done_cv_.notify_one();
      }
    }
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stopping_.store(true);
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }
  std::vector<std::thread> workers_;
  std::mutex m_, run_mutex_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t ntasks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
};

Pool& pool() {
  static Pool p(std::max(1u, std::thread::hardware_concurrency()));
  return p;
}
}  // namespace

int num_threads() { return pool().size(); }
void set_num_threads(int n) { pool().resize(std::max(1, n)); }

void parallel_tasks(int64_t ntasks, const std::function<void(int64_t)>& fn) { pool().run(ntasks, fn); }

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  int64_t nt = std::min<int64_t>(num_threads(), n);
  int64_t chunk = (n + nt - 1) / nt;
  pool().run(nt, [&](int64_t t) {
    int64_t b = t * chunk, e = std::min(n, b + chunk);
    if (b < e) fn(b, e);
  });
}

void parallel_rows(int64_t rows, int64_t width, const std::function<void(int64_t, int64_t)>& fn) {
  if (rows > 1 && rows * width >= (int64_t{1} << 15)) parallel_for(rows, fn);
  else fn(0, rows);
}
static Napi::Value js_num_threads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), num_threads());
}
static Napi::Value js_set_num_threads(const Napi::CallbackInfo& info) {
  set_num_threads(static_cast<int>(num(info, 0)));
  return info.Env().Undefined();
}
static Napi::Value js_cpu_features(const Napi::CallbackInfo& info) {
  auto o = Napi::Object::New(info.Env());
  o.Set("avx512", has_avx512());
  o.Set("avx2", has_avx2());
  return o;
}
FRUGAL_EXPORT("numThreads", js_num_threads)
FRUGAL_EXPORT("setNumThreads", js_set_num_threads)
FRUGAL_EXPORT("cpuFeatures", js_cpu_features)
}  // namespace frugal
