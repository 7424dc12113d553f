// A user's metric_pattern against hostile stdout: the first line of the input is the pattern,
// the rest the lines a trial prints. A pattern the spec check accepts must parse any line in time
// linear in the line (libFuzzer's -timeout catches a pattern that backtracks, as std::regex did
// with `(a|aa)*(a|aa)*b=(\d)`), and what it finds must keep the report limits.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/metric_name.h"
#include "common/metric_pattern.h"
#include "worker/report_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t newline = input.find('\n');
  const absl::string_view pattern = input.substr(0, newline);
  const absl::string_view text =
      newline == absl::string_view::npos ? absl::string_view() : input.substr(newline + 1);
  if (!sweepd::CompileMetricPattern(pattern).ok()) return 0;  // refused by `validate` already
  const sweepd::worker::MetricLineParser parser{std::string(pattern)};
  if (!parser.pattern_error().empty()) __builtin_trap();  // accepted, yet not used: a mismatch
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    auto parsed = parser.Parse(line);
    if (!parsed) continue;
    if (parsed->metrics.empty() || parsed->metrics.size() > sweepd::worker::kMaxMetricsPerReport) {
      __builtin_trap();
    }
    for (const auto& [name, value] : parsed->metrics) {
      if (!sweepd::CheckMetricName(name).ok()) __builtin_trap();
    }
  }
  return 0;
}
