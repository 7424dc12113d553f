// The Prometheus text writer, against the exposition format's own rules
// (prometheus.io/docs/instrumenting/exposition_formats): escaping, special values, cumulative
// histogram buckets with an inclusive `le`. The whole /metrics page is also parsed by Prometheus's
// reference parser (python prometheus_client) in http_server_test.

#include "common/prometheus.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace sweepd {
namespace {

using ::testing::HasSubstr;

TEST(PrometheusTest, LabelValuesEscapeBackslashQuoteAndNewline) {
  EXPECT_EQ(MetricsText::EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(MetricsText::EscapeLabelValue("plain é"), "plain é");
  // HELP escapes backslash and newline, not quotes.
  EXPECT_EQ(MetricsText::EscapeHelp("say \"hi\"\\\n"), "say \"hi\"\\\\\\n");
}

TEST(PrometheusTest, ValuesUseGoFloatSpellings) {
  EXPECT_EQ(MetricsText::FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(MetricsText::FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(MetricsText::FormatValue(NAN), "NaN");
  EXPECT_EQ(MetricsText::FormatValue(42), "42");
  EXPECT_EQ(MetricsText::FormatValue(0.005), "0.005");
  EXPECT_EQ(std::stod(MetricsText::FormatValue(0.1 + 0.2)), 0.1 + 0.2);  // round-trips
}

TEST(PrometheusTest, FamiliesHaveHelpTypeThenSamples) {
  MetricsText m;
  m.Family("sweepd_trials", MetricsText::Type::kGauge, "Trials by state.");
  m.Sample({{"state", "running"}}, 3);
  m.Sample({{"state", "completed"}, {"sweep", "s-1"}}, 7);
  m.Family("sweepd_reports_received_total", MetricsText::Type::kCounter, "Reports.");
  m.Sample({}, 12);
  EXPECT_EQ(m.text(),
            "# HELP sweepd_trials Trials by state.\n"
            "# TYPE sweepd_trials gauge\n"
            "sweepd_trials{state=\"running\"} 3\n"
            "sweepd_trials{state=\"completed\",sweep=\"s-1\"} 7\n"
            "# HELP sweepd_reports_received_total Reports.\n"
            "# TYPE sweepd_reports_received_total counter\n"
            "sweepd_reports_received_total 12\n");
}

TEST(PrometheusTest, HistogramBucketsAreCumulativeAndLeIsInclusive) {
  Histogram h({0.001, 0.01, 1});
  for (double v : {0.001, 0.003, 0.5, 20.0}) h.Observe(v);
  MetricsText m;
  m.Family("commit_seconds", MetricsText::Type::kHistogram, "Commit time.");
  m.HistogramSamples({{"store", "main"}}, h.Read());
  EXPECT_THAT(m.text(), HasSubstr("commit_seconds_bucket{store=\"main\",le=\"0.001\"} 1\n"
                                  "commit_seconds_bucket{store=\"main\",le=\"0.01\"} 2\n"
                                  "commit_seconds_bucket{store=\"main\",le=\"1\"} 3\n"
                                  "commit_seconds_bucket{store=\"main\",le=\"+Inf\"} 4\n"
                                  "commit_seconds_sum{store=\"main\"} 20.504\n"
                                  "commit_seconds_count{store=\"main\"} 4\n"));
}

TEST(PrometheusTest, AnEmptyHistogramStillListsEveryBucket) {
  Histogram h({1, 2});
  const auto snapshot = h.Read();
  ASSERT_EQ(snapshot.cumulative.size(), 3u);
  EXPECT_EQ(snapshot.count, 0u);
  EXPECT_EQ(snapshot.cumulative.back(), 0u);
}

}  // namespace
}  // namespace sweepd
