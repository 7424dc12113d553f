#pragma once

// The trial <-> agent reporting protocol (DESIGN.md): newline-delimited JSON on a Unix socket,
// one request one reply, and the stdout fallback that finds `name=value` pairs in printed lines.
// Stateless functions and a small parser class; safe from any thread (MetricLineParser: one
// owner).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace re2 {
class RE2;
}

namespace sweepd::worker {

// Limits that keep a misbehaving script from exhausting the agent.
inline constexpr size_t kMaxRequestBytes = 64 * 1024;
inline constexpr size_t kMaxMetricsPerReport = 1000;
inline constexpr size_t kMaxMetricNameBytes = 256;

struct ReportRequest {
  // kCheckpoint: the script saved a checkpoint at `step` (metrics optional); a retry of the
  // trial resumes from it.
  enum class Op { kReport, kFinish, kShouldStop, kCheckpoint };
  Op op = Op::kReport;
  // The trial the client believes it belongs to ($SWEEP_TRIAL_ID); empty when not sent.
  std::string trial_id;
  // Absent: the agent numbers reports itself.
  std::optional<int64_t> step;
  // Name -> value; NaN and infinities arrive as the strings "NaN", "Infinity", "-Infinity".
  std::vector<std::pair<std::string, double>> metrics;
};

// Parses one request line. Errors name the field and what is allowed; the caller sends them back
// as {"error": "..."} and the trial goes on.
absl::StatusOr<ReportRequest> ParseReportRequest(absl::string_view line);

// Replies, each one JSON line with its newline.
// `checkpoint_recorded` (>= 0): the step of the newest checkpoint sweepd has stored for the
// trial; the client may delete older checkpoint files, except the one of `checkpoint_keep`
// (>= 0), which a newer trial of a pbt sweep is still to copy.
std::string ContinueReply(int64_t checkpoint_recorded = -1, int64_t checkpoint_keep = -1);
// `preempted`: the trial is stopped to be run again elsewhere (its agent is shutting down), not
// for good: it should save a checkpoint before it exits.
std::string StopReply(absl::string_view reason, bool preempted = false,
                      int64_t checkpoint_recorded = -1, int64_t checkpoint_keep = -1);
std::string ErrorReply(absl::string_view message);

// Finds metrics in a script's stdout lines with the sweep's `metric_pattern` (group 1 the name,
// group 2 the value), Katib's `name=value` collector by default. A line's `step=N` (or
// `epoch=N`, `iteration=N`) gives the report's step; otherwise reports are numbered 0, 1, ...
// Matching is RE2's, linear in the line whatever the pattern (common/metric_pattern.h), and only
// the first kMaxParsedLineBytes of a line are looked at.
class MetricLineParser {
 public:
  // `pattern` empty: the default. A pattern that does not compile (it was checked with the spec,
  // so only a spec from an older sweepd) falls back to the default, said by `pattern_error()`.
  explicit MetricLineParser(const std::string& pattern);

  struct Parsed {
    std::optional<int64_t> step;
    std::vector<std::pair<std::string, double>> metrics;
  };
  // Nothing when the line has no metric.
  std::optional<Parsed> Parse(absl::string_view line) const;
  const std::string& pattern_error() const { return pattern_error_; }

  static const char* DefaultPattern();

 private:
  std::shared_ptr<const re2::RE2> regex_;
  std::string pattern_error_;
};

// Of a longer stdout line, only this much is searched for metrics.
inline constexpr size_t kMaxParsedLineBytes = 4096;

}  // namespace sweepd::worker
