// sweepctl validate and preview, run as the real binary.

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"

namespace sweepd {
namespace {

using ::sweepd::testing::BinaryPath;
using ::sweepd::testing::ProcessResult;
using ::sweepd::testing::RunProcess;
using ::sweepd::testing::SourcePath;
using ::testing::HasSubstr;

ProcessResult Sweepctl(std::vector<std::string> args, const std::string& input = "") {
  args.insert(args.begin(), BinaryPath("cli/sweepctl"));
  return RunProcess(args, input);
}

TEST(SweepctlValidateTest, PrintsTheNormalisedSpecOfAValidFile) {
  auto r = Sweepctl({"validate", SourcePath("examples/bayes-hyperband/sweep.yaml")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("distribution: log_uniform_values"));
  EXPECT_THAT(r.out, HasSubstr("goal: minimize"));
  EXPECT_THAT(r.out, HasSubstr("eta: 3"));
}

TEST(SweepctlValidateTest, JsonOutputIsTheNormalisedSpec) {
  auto r = Sweepctl({"validate", "--output", "json", SourcePath("examples/grid/sweep.yaml")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["method"], "grid");
  EXPECT_EQ(doc["parameters"]["batch_size"]["distribution"], "categorical");
  EXPECT_EQ(doc["command"][3], "${args}");
}

TEST(SweepctlValidateTest, ReadsStandardInput) {
  auto r = Sweepctl({"validate", "-", "--output=json"},
                    "method: random\nprogram: t.py\nparameters:\n  x: {min: 1, max: 3}\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["parameters"]["x"]["distribution"], "int_uniform");
}

TEST(SweepctlValidateTest, InvalidSpecExitsOneNamingFileAndEveryPath) {
  const std::string spec =
      "method: grid\nprogram: t.py\nbogus: 1\nparameters:\n"
      "  opt:\n    parameters:\n      beta1: {min: 0.9, max: 0.1}\n"
      "  lr: {distribution: uniform, min: 0.1, max: 1.0}\n";
  auto r = Sweepctl({"validate", "-"}, spec);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("-: bogus: unknown key"));
  EXPECT_THAT(r.err, HasSubstr("-: parameters.opt.parameters.beta1.min: min 0.9 must be less "
                               "than max 0.1"));
  EXPECT_THAT(r.err, HasSubstr("-: parameters.lr: grid search needs a finite set of values"));
  EXPECT_THAT(r.err, HasSubstr("1 of 1 spec is invalid"));
}

TEST(SweepctlValidateTest, SeveralFilesOneBad) {
  auto r = Sweepctl({"validate", SourcePath("examples/grid/sweep.yaml"), "/nonexistent.yaml",
                     SourcePath("examples/nested/sweep.yaml")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot read /nonexistent.yaml"));
  EXPECT_THAT(r.err, HasSubstr("1 of 3 specs are invalid"));
  EXPECT_THAT(r.out, HasSubstr("examples/grid/sweep.yaml"));
  EXPECT_THAT(r.out, HasSubstr("examples/nested/sweep.yaml"));
}

TEST(SweepctlValidateTest, BinaryJunkIsAnErrorNotACrash) {
  std::string junk;
  for (int i = 0; i < 4096; ++i) junk.push_back(static_cast<char>((i * 131 + 7) % 256));
  auto r = Sweepctl({"validate", "-"}, junk);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("a spec is YAML text"));
}

TEST(SweepctlPreviewTest, GridJsonHasTheTotalAndEachPointOnce) {
  auto r = Sweepctl(
      {"preview", SourcePath("examples/grid/sweep.yaml"), "--n", "100", "--output", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["total"], 12);
  ASSERT_EQ(doc["trials"].size(), 12u);
  std::set<std::string> seen;
  for (const auto& t : doc["trials"]) EXPECT_TRUE(seen.insert(t["params"].dump()).second);
  // The command line each trial would run, W&B's default template.
  const auto& argv = doc["trials"][0]["command"];
  EXPECT_EQ(argv[0], "/usr/bin/env");
  EXPECT_EQ(argv[2], "train.py");
  EXPECT_THAT(argv[3].get<std::string>(), HasSubstr("--lr="));
}

TEST(SweepctlPreviewTest, TableAndCsv) {
  auto table = Sweepctl({"preview", SourcePath("examples/nested/sweep.yaml"), "--n", "3"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("optimizer.lr"));
  EXPECT_THAT(table.out, HasSubstr("model.hidden"));
  auto csv = Sweepctl(
      {"preview", SourcePath("examples/nested/sweep.yaml"), "--n", "3", "--output", "csv"});
  ASSERT_EQ(csv.exit_code, 0);
  EXPECT_EQ(std::count(csv.out.begin(), csv.out.end(), '\n'), 4);
  EXPECT_THAT(csv.out, HasSubstr("#,optimizer.name,optimizer.lr,optimizer.momentum,model.hidden"));
}

TEST(SweepctlPreviewTest, SameSpecSameProposals) {
  auto a = Sweepctl({"preview", SourcePath("examples/nested/sweep.yaml"), "--output", "json"});
  auto b = Sweepctl({"preview", SourcePath("examples/nested/sweep.yaml"), "--output", "json"});
  ASSERT_EQ(a.exit_code, 0);
  EXPECT_EQ(a.out, b.out);
}

TEST(SweepctlUsageTest, BadCommandLinesExitTwo) {
  EXPECT_EQ(Sweepctl({}).exit_code, 2);
  auto unknown = Sweepctl({"frobnicate"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("unknown command 'frobnicate'"));
  auto flag = Sweepctl({"preview", "x.yaml", "--bogus"});
  EXPECT_EQ(flag.exit_code, 2);
  EXPECT_THAT(flag.err, HasSubstr("unknown flag --bogus"));
  auto n = Sweepctl({"preview", SourcePath("examples/grid/sweep.yaml"), "--n", "0"});
  EXPECT_EQ(n.exit_code, 2);
  EXPECT_THAT(n.err, HasSubstr("--n"));
  auto output = Sweepctl({"validate", "--output", "xml", "x.yaml"});
  EXPECT_EQ(output.exit_code, 2);
  EXPECT_THAT(output.err, HasSubstr("one of yaml, json"));
  EXPECT_EQ(Sweepctl({"validate"}).exit_code, 2);
}

TEST(SweepctlUsageTest, HelpEverywhere) {
  auto top = Sweepctl({"--help"});
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_THAT(top.out, HasSubstr("validate"));
  EXPECT_THAT(top.out, HasSubstr("preview"));
  for (const std::string command : {"validate", "preview"}) {
    auto r = Sweepctl({command, "--help"});
    EXPECT_EQ(r.exit_code, 0) << command;
    EXPECT_THAT(r.out, HasSubstr("Usage: sweepctl " + command));
    EXPECT_THAT(r.out, HasSubstr("--output"));
  }
}

}  // namespace
}  // namespace sweepd
