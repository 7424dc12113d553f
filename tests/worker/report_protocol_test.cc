// The reporting protocol's request parser, replies, and the stdout metric collector.

#include "worker/report_protocol.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd::worker {
namespace {

using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

TEST(ReportRequestTest, ParsesAReport) {
  auto req = ParseReportRequest(
      R"({"op":"report","step":120,"metrics":{"val_loss":0.41,"acc":0.87},"trial":"s-a-0001"})");
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ(req->op, ReportRequest::Op::kReport);
  EXPECT_EQ(req->step, 120);
  EXPECT_EQ(req->trial_id, "s-a-0001");
  EXPECT_THAT(req->metrics, UnorderedElementsAre(Pair("val_loss", 0.41), Pair("acc", 0.87)));
}

TEST(ReportRequestTest, NonFiniteValuesAndMissingStep) {
  auto req = ParseReportRequest(
      R"({"op":"report","metrics":{"a":"NaN","b":"Infinity","c":"-Infinity","d":3}})");
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_FALSE(req->step.has_value());
  ASSERT_EQ(req->metrics.size(), 4u);
  for (const auto& [name, value] : req->metrics) {
    if (name == "a") {
      EXPECT_TRUE(std::isnan(value));
    } else if (name == "b") {
      EXPECT_EQ(value, INFINITY);
    } else if (name == "c") {
      EXPECT_EQ(value, -INFINITY);
    } else {
      EXPECT_EQ(value, 3);
    }
  }
}

TEST(ReportRequestTest, BadRequestsNameTheProblem) {
  struct Case {
    std::string line;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"not json", "not a JSON object"},
      {"[1,2]", "not a JSON object"},
      {R"({"step":1})", "op: required"},
      {R"({"op":"explode"})", "op: 'explode' is unknown"},
      {R"({"op":"report","step":-1,"metrics":{"a":1}})", "step: must be a whole number >= 0"},
      {R"({"op":"report","step":1.5,"metrics":{"a":1}})", "step: must be a whole number"},
      {R"({"op":"report","metrics":{"a":"high"}})", "metrics.a: must be a number"},
      {R"({"op":"report","metrics":{"a":[1]}})", "metrics.a: must be a number"},
      {R"({"op":"report","metrics":[1]})", "metrics: must be an object"},
      {R"({"op":"report","metrics":{}})", "needs at least one metric"},
      {R"({"op":"report","metrics":{"":1}})", "a name must have 1 to 256 bytes"},
      {R"({"op":"report","trial":7,"metrics":{"a":1}})", "trial: must be a string"},
      // The reader hands over at most 64 KiB + 1 bytes of a longer line: the message says the
      // limit, not a size it never saw.
      {std::string(70000, ' '), "request is over the limit of 64 KiB"},
      {R"({"op":"report","metrics":{"a":1e999}})", "request has a number out of range"},
      {R"({"op":"report","metrics":{"a\tb":1}})", "a name must not contain control characters"},
      {R"({"op":"report","metrics":{"a\nb":1}})", "a name must not contain control characters"},
      {R"({"op":"report","metrics":{"a\u0000b":1}})", "a name must not contain control characters"},
  };
  for (const auto& c : cases) {
    auto req = ParseReportRequest(c.line);
    ASSERT_FALSE(req.ok()) << c.line.substr(0, 80);
    EXPECT_EQ(req.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(req.status().message()), HasSubstr(c.expect)) << c.line.substr(0, 80);
  }
  std::string many = R"({"op":"report","metrics":{)";
  for (int i = 0; i < 1001; ++i) many += "\"m" + std::to_string(i) + "\":1,";
  many.back() = '}';
  many += "}";
  EXPECT_THAT(std::string(ParseReportRequest(many).status().message()), HasSubstr("limit is 1000"));
}

TEST(ReportRequestTest, FinishAndShouldStopNeedNoMetrics) {
  EXPECT_EQ(ParseReportRequest(R"({"op":"finish"})")->op, ReportRequest::Op::kFinish);
  EXPECT_EQ(ParseReportRequest(R"({"op":"should_stop"})")->op, ReportRequest::Op::kShouldStop);
}

TEST(ReportRequestTest, ACheckpointNeedsItsStep) {
  auto checkpoint = ParseReportRequest(R"({"op":"checkpoint","step":12})");
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ(checkpoint->op, ReportRequest::Op::kCheckpoint);
  EXPECT_EQ(checkpoint->step, 12);
  EXPECT_TRUE(checkpoint->metrics.empty());
  auto missing = ParseReportRequest(R"({"op":"checkpoint"})");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), ::testing::StartsWith("step: "));
  EXPECT_FALSE(ParseReportRequest(R"({"op":"checkpoint","step":-1})").ok());
}

TEST(ReplyTest, APreemptedStopAsksForACheckpoint) {
  auto stop = nlohmann::json::parse(StopReply("preempted: the agent is shutting down", true));
  EXPECT_EQ(stop["action"], "stop");
  EXPECT_EQ(stop["preempted"], true);
  EXPECT_FALSE(nlohmann::json::parse(StopReply("pruned", false)).contains("preempted"));
}

TEST(ReplyTest, RepliesAreOneJsonLineEach) {
  EXPECT_EQ(ContinueReply(), "{\"action\":\"continue\"}\n");
  auto stop = nlohmann::json::parse(StopReply("pruned by asha at rung 2"));
  EXPECT_EQ(stop["action"], "stop");
  EXPECT_EQ(stop["reason"], "pruned by asha at rung 2");
  const std::string error = ErrorReply("bad \"thing\"\n\xff");
  EXPECT_EQ(std::count(error.begin(), error.end(), '\n'), 1);
  EXPECT_EQ(nlohmann::json::parse(error)["error"].get<std::string>().substr(0, 11),
            "bad \"thing\"");
}

TEST(MetricLineParserTest, DefaultFindsNameValuePairsLikeKatib) {
  MetricLineParser parser("");
  auto parsed = parser.Parse("epoch=3 train_loss=0.52 val_loss=4.1e-01 val-acc = 0.875 note=x");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->step, 3);
  EXPECT_THAT(parsed->metrics,
              UnorderedElementsAre(Pair("epoch", 3.0), Pair("train_loss", 0.52),
                                   Pair("val_loss", 0.41), Pair("val-acc", 0.875)));
  EXPECT_FALSE(parser.Parse("Loading data...").has_value());
  EXPECT_FALSE(parser.Parse("").has_value());
  auto step = parser.Parse("step=10 loss=1");
  ASSERT_TRUE(step.has_value());
  EXPECT_EQ(step->step, 10);
  EXPECT_THAT(step->metrics, UnorderedElementsAre(Pair("loss", 1.0)));
}

// A step too large for int64 is not a step (it stays a metric); found by fuzz_report_line.
TEST(MetricLineParserTest, HugeStepValuesAreNotSteps) {
  MetricLineParser parser("");
  auto parsed = parser.Parse("iteration=3888888888888888888888888888888888 loss=0.5");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_FALSE(parsed->step.has_value());
  EXPECT_EQ(parsed->metrics.size(), 2u);
}

TEST(MetricLineParserTest, CustomPattern) {
  MetricLineParser parser(R"(^METRIC (\w+): ([-+0-9.eE]+)$)");
  auto parsed = parser.Parse("METRIC loss: 0.25");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_THAT(parsed->metrics, UnorderedElementsAre(Pair("loss", 0.25)));
  EXPECT_FALSE(parser.Parse("loss=0.25").has_value());
}

// The issue 14 probe: with a backtracking engine this pattern against a line of 4,000 `a`s takes
// exponential time (the agent hung at 100% CPU); RE2 is linear in the line. The test would not
// finish before the fix.
TEST(MetricLineParserTest, APatternThatBacktracksExponentiallyStillParsesAtOnce) {
  MetricLineParser parser(R"((a|aa)*(a|aa)*(a|aa)*b=(\d))");
  EXPECT_TRUE(parser.pattern_error().empty()) << parser.pattern_error();
  const std::string hostile(4000, 'a');
  EXPECT_FALSE(parser.Parse(hostile).has_value());
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(parser.Parse(hostile + "c").has_value());
  // Still a working pattern: groups 1 and 2 are the name and the value.
  MetricLineParser named(R"((loss|acc)=(\d+(?:\.\d+)?))");
  auto parsed = named.Parse(hostile + " loss=0.5 acc=1");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_THAT(parsed->metrics, UnorderedElementsAre(Pair("loss", 0.5), Pair("acc", 1.0)));
}

// A pattern that matches the empty string must not loop, and finds what it can.
TEST(MetricLineParserTest, EmptyMatchesMoveOn) {
  MetricLineParser parser(R"((\w*)=?(\d*))");
  EXPECT_FALSE(parser.Parse(std::string(5000, ' ')).has_value());
}

// Only the first kMaxParsedLineBytes of a line are searched.
TEST(MetricLineParserTest, OnlyTheHeadOfALongLineIsSearched) {
  MetricLineParser parser("");
  EXPECT_TRUE(parser.Parse("loss=1 " + std::string(10000, 'x')).has_value());
  EXPECT_FALSE(parser.Parse(std::string(kMaxParsedLineBytes, 'x') + " loss=1").has_value());
}

// A spec from an older sweepd whose pattern RE2 does not take: the default instead, and said.
TEST(MetricLineParserTest, APatternRe2RefusesFallsBackToTheDefault) {
  MetricLineParser parser(R"((\w+)=(\d+)\1)");
  EXPECT_THAT(parser.pattern_error(), ::testing::HasSubstr("using the default"));
  EXPECT_TRUE(parser.Parse("loss=1").has_value());
}

}  // namespace
}  // namespace sweepd::worker
