#pragma once

// Engine internals shared by its engine_*.cc files; not for use outside the engine.

#include <cmath>
#include <future>
#include <memory>
#include <type_traits>

#include "scheduler/engine.h"

namespace sweepd::scheduler {

// Whether `a` is better than `b` for the goal; NaN is never better and always beaten.
inline bool Better(double a, double b, bool maximize) {
  if (std::isnan(a)) return false;
  if (std::isnan(b)) return true;
  return maximize ? a > b : a < b;
}

template <typename T>
T Engine::Call(std::function<T()> task) {
  auto promise = std::make_shared<std::promise<T>>();
  auto future = promise->get_future();
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    if (stopping_) {
      if constexpr (std::is_constructible_v<T, absl::Status>) {
        return T(absl::UnavailableError("sweepd is shutting down"));
      } else {
        return T{};
      }
    }
    tasks_.push_back([promise, task = std::move(task)] { promise->set_value(task()); });
  }
  tasks_cv_.notify_one();
  if (!options_.own_thread) RunUntilIdle();  // the caller is the driving thread
  return future.get();
}

}  // namespace sweepd::scheduler
