#include "common/clock.h"

#include <chrono>

namespace sweepd {
namespace {

class SystemClock final : public Clock {
 public:
  double SteadySeconds() const override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  int64_t NowMicros() const override {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace

Clock& RealClock() {
  static SystemClock* const clock = new SystemClock();  // never destroyed: used at exit
  return *clock;
}

}  // namespace sweepd
