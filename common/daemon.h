#pragma once

// What both daemons (sweepd, sweep-agent) do first: log format and level, and shutdown signals
// turned into something a thread can wait for.

#include <pthread.h>
#include <signal.h>

#include <string>

#include "common/logging.h"

namespace sweepd {

// Sets spdlog's level (`info`, `debug`, ...) and an ISO-8601 pattern.
inline void SetUpDaemonLogging(const std::string& level) {
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
}

// Blocks SIGTERM and SIGINT in this thread and every thread it starts later (so exactly one
// thread receives them, with sigwait on the returned set) and ignores SIGPIPE (a closed socket
// is an error value, not a death). Call before starting threads.
inline sigset_t BlockShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return signals;
}

}  // namespace sweepd
