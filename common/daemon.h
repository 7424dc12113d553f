#pragma once

// What both daemons (sweepd, sweep-agent) do first: log format and level, and signals turned
// into something a thread can wait for.

#include <errno.h>
#include <pthread.h>
#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "common/logging.h"

namespace sweepd {

// Sets spdlog's level and the pattern: ISO-8601 time, level, component, message. An unknown level
// exits with status 2 and the allowed ones, as a malformed flag does: spdlog reads any other word
// as `off`, and a daemon that logs nothing at all is worse than one that does not start.
inline void SetUpDaemonLogging(const std::string& level) {
  static constexpr const char* kLevels[] = {"trace", "debug",    "info", "warn",
                                            "error", "critical", "off"};
  bool known = false;
  for (const char* l : kLevels) known = known || level == l;
  if (!known) {
    std::cerr << program_invocation_short_name << ": --log-level: '" << level
              << "' is not a level; one of trace, debug, info, warn, error, critical, off\n";
    std::exit(2);
  }
  spdlog::set_level(spdlog::level::from_str(level));
  // The component (sweepd, sweep-agent) after the level: both daemons often log to one journal
  // or terminal, and a line must say whose it is.
  spdlog::set_pattern(std::string("%Y-%m-%dT%H:%M:%S.%e %^%l%$ ") + program_invocation_short_name +
                      ": %v");
}

// Blocks SIGTERM and SIGINT in this thread and every thread it starts later (so exactly one
// thread receives them, with sigwait on the returned set) and ignores SIGPIPE (a closed socket
// is an error value, not a death). SIGHUP, SIGUSR1 and SIGUSR2 would kill the daemon without a
// word (their default action): they are blocked too and taken by a thread of their own that
// logs them and goes on. SIGHUP conventionally reopens log files; both daemons log to standard
// output (the service manager's journal), so there is nothing to reopen. Call before starting
// threads.
inline sigset_t BlockShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigset_t others;
  sigemptyset(&others);
  sigaddset(&others, SIGHUP);
  sigaddset(&others, SIGUSR1);
  sigaddset(&others, SIGUSR2);
  sigset_t blocked = signals;
  sigaddset(&blocked, SIGHUP);
  sigaddset(&blocked, SIGUSR1);
  sigaddset(&blocked, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &blocked, nullptr);
  signal(SIGPIPE, SIG_IGN);
  std::thread([others] {
    while (true) {
      int received = 0;
      if (sigwait(&others, &received) != 0) continue;
      if (received == SIGHUP) {
        spdlog::info("SIGHUP: nothing to reopen (logging to standard output); going on");
      } else {
        spdlog::info("{}: ignored (it has no meaning here); going on",
                     received == SIGUSR1 ? "SIGUSR1" : "SIGUSR2");
      }
    }
  }).detach();
  return signals;
}

}  // namespace sweepd
