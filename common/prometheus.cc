#include "common/prometheus.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sweepd {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {
  assert(std::is_sorted(bounds_.begin(), bounds_.end()));
}

void Histogram::Observe(double value) {
  // First bucket whose bound is >= value ("le" is inclusive); NaN lands in +Inf.
  const size_t bucket = static_cast<size_t>(
      std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[std::isnan(value) ? bounds_.size() : bucket];
  sum_ += value;
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot out;
  out.bounds = bounds_;
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t running = 0;
  for (uint64_t c : counts_) {
    running += c;
    out.cumulative.push_back(running);
  }
  out.count = running;
  out.sum = sum_;
  return out;
}

std::string MetricsText::SanitizeName(absl::string_view name, bool label) {
  std::string out(name);
  for (size_t i = 0; i < out.size(); ++i) {
    const char c = out[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                    (!label && c == ':') || (i > 0 && c >= '0' && c <= '9');
    assert(ok && "metric and label names are constants of ours");
    if (!ok) out[i] = '_';
  }
  if (out.empty()) out.push_back('_');
  return out;
}

namespace {

// Backslash and newline escaped, and the double quote too where `quote` (label values; HELP
// text keeps its quotes). push_back, not += "..": GCC 12 reports a false -Wrestrict on the
// latter (bug 105329).
std::string Escape(absl::string_view text, bool quote) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\' || (quote && c == '"')) {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out.push_back('\\');
      out.push_back('n');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

std::string MetricsText::EscapeLabelValue(absl::string_view value) { return Escape(value, true); }

std::string MetricsText::EscapeHelp(absl::string_view help) { return Escape(help, false); }

std::string MetricsText::FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Integers as integers (counts read best that way); others in the shortest form that reads
  // back as the same double (0.005, not 0.0050000000000000001).
  if (value == std::trunc(value) && std::fabs(value) < 1e15) {
    return absl::StrFormat("%.0f", value);
  }
  for (int precision = 6; precision < 17; ++precision) {
    std::string text = absl::StrFormat("%.*g", precision, value);
    if (std::strtod(text.c_str(), nullptr) == value) return text;
  }
  return absl::StrFormat("%.17g", value);
}

void MetricsText::Family(absl::string_view name, Type type, absl::string_view help) {
  family_ = SanitizeName(name, /*label=*/false);
  const char* type_name = type == Type::kCounter ? "counter"
                          : type == Type::kGauge ? "gauge"
                                                 : "histogram";
  absl::StrAppend(&text_, "# HELP ", family_, " ", EscapeHelp(help), "\n# TYPE ", family_, " ",
                  type_name, "\n");
}

void MetricsText::Sample(const MetricLabels& labels, double value, absl::string_view suffix) {
  absl::StrAppend(&text_, family_, suffix);
  if (!labels.empty()) {
    text_ += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i > 0) text_ += ',';
      absl::StrAppend(&text_, SanitizeName(labels[i].first, /*label=*/true), "=\"",
                      EscapeLabelValue(labels[i].second), "\"");
    }
    text_ += '}';
  }
  absl::StrAppend(&text_, " ", FormatValue(value), "\n");
}

void MetricsText::HistogramSamples(const MetricLabels& labels,
                                   const Histogram::Snapshot& histogram) {
  for (size_t i = 0; i < histogram.cumulative.size(); ++i) {
    MetricLabels with_le = labels;
    with_le.emplace_back(
        "le", i < histogram.bounds.size() ? FormatValue(histogram.bounds[i]) : std::string("+Inf"));
    Sample(with_le, static_cast<double>(histogram.cumulative[i]), "_bucket");
  }
  Sample(labels, histogram.sum, "_sum");
  Sample(labels, static_cast<double>(histogram.count), "_count");
}

}  // namespace sweepd
