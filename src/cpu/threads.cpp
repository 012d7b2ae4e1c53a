#include "cpu/threads.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>

#include "breccia/error.hpp"
#include "breccia/kernels/cpu.hpp"

namespace breccia::kernels::cpu {
namespace {

int initial_threads() {
  if (const char* value = std::getenv("BRECCIA_NUM_THREADS"); value != nullptr && *value != 0) {
    char* end = nullptr;
    const long threads = std::strtol(value, &end, 10);
    if (*end != 0 || threads < 1 || threads > 4096) {
      fail<ValueError>("BRECCIA_NUM_THREADS: expected a whole number from 1 to 4096, got '", value,
                       "'");
    }
    return static_cast<int>(threads);
  }
  return std::max(1, omp_get_max_threads());
}

std::atomic<int>& thread_setting() {
  static std::atomic<int> threads{initial_threads()};
  return threads;
}

}  // namespace

int num_threads() {
  return thread_setting().load();
}

void set_num_threads(int threads) {
  if (threads < 1) fail<ValueError>("threads: expected at least 1, got ", threads);
  thread_setting().store(threads);
}

void parallel_for(std::int64_t units, const std::function<void(std::int64_t, std::int64_t)>& body) {
  if (units <= 0) return;
  const int threads = static_cast<int>(std::min<std::int64_t>(num_threads(), units));
  if (threads == 1) {
    body(0, units);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mutex;
#pragma omp parallel num_threads(threads)
  {
    const std::int64_t team = omp_get_num_threads();
    const std::int64_t me = omp_get_thread_num();
    const std::int64_t begin = units * me / team;
    const std::int64_t end = units * (me + 1) / team;
    try {
      if (begin < end) body(begin, end);
    } catch (...) {
      const std::lock_guard lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace breccia::kernels::cpu
