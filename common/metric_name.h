#pragma once

// The one rule for metric names, at every intake (the agent's report socket, the AgentService
// stream, the ReportTrial API): 1 to 256 bytes, no control characters. Names are printed in
// tables, CSV exports and log lines, where a NUL, tab or newline would break the row or the
// terminal. Stateless; safe from any thread.

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace sweepd {

inline constexpr size_t kMaxMetricNameLength = 256;

// OK, or INVALID_ARGUMENT saying what is wrong with `name` (to be prefixed with the field).
inline absl::Status CheckMetricName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxMetricNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("a name must have 1 to ", kMaxMetricNameLength, " bytes; got ", name.size()));
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a name must not contain control characters (NUL, tab, newline, ...); '",
          absl::string_view(name.data(), i), "' is followed by byte ", static_cast<int>(c)));
    }
  }
  return absl::OkStatus();
}

}  // namespace sweepd
