#pragma once

// Time, as the scheduler's and agent's core logic see it. Core logic never reads the system
// clocks itself: it takes a Clock, so deterministic simulation (tests/sim/) can run every timeout,
// reattach window and quarantine rule in virtual time, exactly and from a seed.
//
// Thread safety: every Clock is safe to read from any thread; FakeClock's Advance/Set too.

#include <atomic>
#include <cstdint>

namespace sweepd {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic seconds (an arbitrary origin): what timeouts and windows are measured in.
  virtual double SteadySeconds() const = 0;
  // Wall-clock microseconds since the Unix epoch: what the store records.
  virtual int64_t NowMicros() const = 0;
};

// The process's real clocks (steady_clock and system_clock).
Clock& RealClock();

// A clock that moves only when told. Its wall clock is its steady clock plus a fixed epoch, so
// stored times are reproducible too.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(double start_seconds = 1000.0,
                     int64_t epoch_micros = 1'767'225'600'000'000)  // 2026-01-01T00:00:00Z
      : micros_(static_cast<int64_t>(start_seconds * 1e6)), epoch_micros_(epoch_micros) {}

  double SteadySeconds() const override { return static_cast<double>(micros_.load()) / 1e6; }
  int64_t NowMicros() const override { return epoch_micros_ + micros_.load(); }

  void Advance(double seconds) { micros_ += static_cast<int64_t>(seconds * 1e6); }

 private:
  // Whole microseconds, so repeated Advance calls add up exactly.
  std::atomic<int64_t> micros_;
  const int64_t epoch_micros_;
};

}  // namespace sweepd
