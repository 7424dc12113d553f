#pragma once

// Prometheus's text exposition format (version 0.0.4), written by hand: Debian packages no C++
// client library, and sweepd needs only the writer. Families are written whole (HELP, TYPE, then
// every sample), label values and help text escaped as the format says, values in Go's float
// notation (`+Inf`, `-Inf`, `NaN`).
// https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
//
// Thread safety: a MetricsText is built by one thread; Histogram is thread-safe.

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"

namespace sweepd {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// Counts of observations at most each bound, as Prometheus histograms keep them (cumulative
// buckets, plus the sum and count of all observations).
class Histogram {
 public:
  // `bounds` strictly increasing; +Inf is implied.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (= count)
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Read() const;

 private:
  const std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_ ABSL_GUARDED_BY(mu_);  // per bucket, not cumulative; last is +Inf
  double sum_ ABSL_GUARDED_BY(mu_) = 0;
};

class MetricsText {
 public:
  enum class Type { kCounter, kGauge, kHistogram };

  // Starts a family; its samples follow. A name must match [a-zA-Z_:][a-zA-Z0-9_:]*, a label
  // name [a-zA-Z_][a-zA-Z0-9_]* (not starting "__"): callers pass constants, so a bad one is a
  // programming error and aborts in debug builds; release builds replace bad characters by '_'.
  void Family(absl::string_view name, Type type, absl::string_view help);
  // A sample of the current family (`suffix` for histograms: "_bucket", "_sum", "_count").
  void Sample(const MetricLabels& labels, double value, absl::string_view suffix = "");
  // A whole histogram sample set with `labels` (plus `le` on the buckets).
  void HistogramSamples(const MetricLabels& labels, const Histogram::Snapshot& histogram);

  const std::string& text() const { return text_; }

  // Exposed for tests.
  static std::string EscapeLabelValue(absl::string_view value);
  static std::string EscapeHelp(absl::string_view help);
  static std::string FormatValue(double value);
  static std::string SanitizeName(absl::string_view name, bool label);

 private:
  std::string text_;
  std::string family_;
};

}  // namespace sweepd
