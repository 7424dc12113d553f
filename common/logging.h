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
