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
      {std::string(70000, ' '), "the limit is 65536"},
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

}  // namespace
}  // namespace sweepd::worker
