#pragma once

// The engine's end of an agent stream, for tests that drive the Engine without gRPC: what the
// engine sends waits until the test takes it; Close marks the stream ended (later sends are
// dropped, as on a closed stream).
//
// Thread safety: every method may be called from any thread.

#include <deque>
#include <mutex>
#include <utility>

#include "scheduler/engine.h"

namespace sweepd::testing {

class RecordingChannel : public scheduler::AgentChannel {
 public:
  void Send(v1::SchedulerMessage message) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!closed_) inbox_.push_back(std::move(message));
  }
  void Close() override {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  bool closed() {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }
  // Everything sent since the last Take, in order.
  std::deque<v1::SchedulerMessage> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(inbox_, {});
  }

 private:
  std::mutex mu_;
  std::deque<v1::SchedulerMessage> inbox_;
  bool closed_ = false;
};

}  // namespace sweepd::testing
