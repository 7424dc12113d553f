#pragma once

// Logging with spdlog. Debian's Abseil has its own absl::string_view (not std::string_view),
// which fmt cannot format by itself: this teaches it. Include this instead of spdlog directly.

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "absl/strings/string_view.h"

template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename FormatContext>
  auto format(absl::string_view s, FormatContext& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

namespace sweepd {

// Which sweep, trial and agent a log line is about. Every line about one of them starts the
// same way, "[sweep=S][trial=T][agent=A] " (the parts that are set, in that order), so
// `grep 'trial=s-abc-0004'` finds a trial's whole story across sweepd's and the agents' logs.
struct LogContext {
  absl::string_view sweep;
  absl::string_view trial;
  absl::string_view agent;
};

inline std::string FormatLogContext(const LogContext& context) {
  std::string out;
  if (!context.sweep.empty()) out += fmt::format("[sweep={}]", context.sweep);
  if (!context.trial.empty()) out += fmt::format("[trial={}]", context.trial);
  if (!context.agent.empty()) out += fmt::format("[agent={}]", context.agent);
  if (!out.empty()) out += ' ';
  return out;
}

// spdlog's calls with a LogContext first: LogInfo({.trial = id}, "exited: code {}", code).
template <typename... Args>
void LogAt(spdlog::level::level_enum level, const LogContext& context,
           fmt::format_string<Args...> format, Args&&... args) {
  if (!spdlog::should_log(level)) return;
  spdlog::log(level, "{}{}", FormatLogContext(context),
              fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void LogDebug(const LogContext& context, fmt::format_string<Args...> format, Args&&... args) {
  LogAt(spdlog::level::debug, context, format, std::forward<Args>(args)...);
}
template <typename... Args>
void LogInfo(const LogContext& context, fmt::format_string<Args...> format, Args&&... args) {
  LogAt(spdlog::level::info, context, format, std::forward<Args>(args)...);
}
template <typename... Args>
void LogWarn(const LogContext& context, fmt::format_string<Args...> format, Args&&... args) {
  LogAt(spdlog::level::warn, context, format, std::forward<Args>(args)...);
}
template <typename... Args>
void LogError(const LogContext& context, fmt::format_string<Args...> format, Args&&... args) {
  LogAt(spdlog::level::err, context, format, std::forward<Args>(args)...);
}

}  // namespace sweepd
