// What a training script can send the agent: a reporting-socket request line, and a stdout line
// for the metric collector. Either must be parsed or refused with an error, never crash; an
// accepted request keeps the protocol's limits.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "worker/report_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view line(reinterpret_cast<const char*>(data), size);
  auto request = sweepd::worker::ParseReportRequest(line);
  if (request.ok()) {
    if (request->metrics.size() > sweepd::worker::kMaxMetricsPerReport) __builtin_trap();
    for (const auto& [name, value] : request->metrics) {
      if (name.empty() || name.size() > sweepd::worker::kMaxMetricNameBytes) __builtin_trap();
    }
  }
  static const sweepd::worker::MetricLineParser parser("");
  if (size <= 64 * 1024) (void)parser.Parse(line);  // the agent cuts longer stdout lines
  return 0;
}
