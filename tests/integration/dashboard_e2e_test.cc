// The dashboard in a real browser: Debian's Chromium, driven by playwright-core
// (tests/dashboard/browse.js), loads the pages of a live sweep that real sweepd and sweep-agent
// processes run, and the numbers drawn must equal `sweepctl status`. Screenshots of every page
// are kept in the build folder (test-artifacts/) for people to look at.

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"
#include "tests/testing/subprocess.h"

namespace sweepd {
namespace {

using ::sweepd::testing::Cluster;
using ::sweepd::testing::ClusterOptions;
using ::sweepd::testing::Int;
using ::sweepd::testing::ReadFileText;
using ::sweepd::testing::RunProcess;
using ::sweepd::testing::SourcePath;
using ::sweepd::testing::WaitFor;
using ::testing::Contains;
using ::testing::HasSubstr;
using Json = nlohmann::json;

std::string ArtifactDir() {
  const std::string dir = std::string(SWEEPD_BINARY_DIR) + "/test-artifacts";
  std::filesystem::create_directories(dir);
  return dir;
}

// What the page at `url` + `hash` shows, as browse.js reports it (and a screenshot).
Json Browse(const std::string& url, const std::string& hash, const std::string& screenshot) {
  auto r =
      RunProcess({"/usr/bin/env", "timeout", "180", "node", SourcePath("tests/dashboard/browse.js"),
                  url, hash, ArtifactDir() + "/" + screenshot});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  Json shown = Json::parse(r.out, nullptr, false);
  EXPECT_TRUE(shown.is_object()) << r.out << r.err;
  if (!shown.is_object()) return Json::object();
  EXPECT_EQ(shown["ready"], "true") << shown.dump(1);
  EXPECT_EQ(shown["errors"], Json::array()) << shown.dump(1);
  return shown;
}

double Number(const Json& shown, const std::string& stat) {
  return std::stod(shown["stats"].value(stat, std::string("nan")));
}

class DashboardE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "dashboard-XXXXXX").string();
    dir_ = mkdtemp(pattern.data());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(DashboardE2eTest, ALiveSweepsPagesShowWhatSweepctlStatusSays) {
  const std::string url_file = dir_ + "/url";
  Cluster cluster(
      ClusterOptions{.agents = 2,
                     .slots = 1,
                     .sweepd_flags = {"--http=127.0.0.1:0", "--dashboard_url_file=" + url_file}});
  ASSERT_TRUE(WaitFor([&] { return !ReadFileText(url_file).empty(); }, 30000));
  std::string url = ReadFileText(url_file);
  url.erase(url.find_last_not_of("\n") + 1);
  ASSERT_THAT(url, HasSubstr("http://127.0.0.1:"));

  // Hyperband prunes some trials, so the curves have both kinds.
  const std::string id = cluster.Submit(R"(
name: dashboard-e2e
program: report_socket.py
method: random
metric: {name: loss, goal: minimize}
run_cap: 8
seed: 5
early_terminate: {type: hyperband, min_iter: 3, eta: 3}
parameters:
  x: {min: 0.0, max: 1.0}
  steps: {value: 12}
  sleep: {value: 0.05}
)");

  // While it runs: the page loads, goes live, and draws the curves reported so far.
  ASSERT_TRUE(WaitFor(
      [&] {
        const Json s = cluster.Status(id);
        return Int(s["counts"], "running") + Int(s["counts"], "completed") > 0 &&
               s.contains("best_value");
      },
      60000))
      << cluster.Logs();
  const Json live = Browse(url, "#/sweeps/" + id, "dashboard-sweep-live.png");
  EXPECT_EQ(live["live"], "live");
  EXPECT_GE(live["canvases"]["curves"]["drawn"].get<int>(), 1);

  ASSERT_TRUE(cluster.WaitForState(id, "finished", 120000)) << cluster.Logs();
  const Json status = cluster.Status(id);
  const int64_t completed = Int(status["counts"], "completed");
  const int64_t pruned = Int(status["counts"], "pruned");
  ASSERT_EQ(completed + pruned + Int(status["counts"], "failed"), 8) << status.dump(1);

  const Json page = Browse(url, "#/sweeps/" + id, "dashboard-sweep.png");
  EXPECT_EQ(Number(page, "completed"), completed);
  EXPECT_EQ(Number(page, "pruned"), pruned);
  EXPECT_EQ(Number(page, "failed"), Int(status["counts"], "failed"));
  EXPECT_EQ(Number(page, "running"), 0);
  // Shown to 6 significant digits.
  const double best = status["best_value"].get<double>();
  EXPECT_NEAR(Number(page, "best"), best, std::abs(best) * 1e-5 + 1e-9);
  EXPECT_NEAR(Number(page, "gpu-used"), status["gpu_hours_used"].get<double>(), 1e-4);
  EXPECT_NEAR(Number(page, "gpu-saved"), status["gpu_hours_saved"].get<double>(), 1e-4);
  EXPECT_THAT(page["stats"]["best-trial"].get<std::string>(),
              HasSubstr(status["best_trial_id"].get<std::string>().substr(11)));
  // Every trial's curve is on the canvas, and each chart drew every trial with a value.
  EXPECT_EQ(page["canvases"]["curves"]["drawn"], 8);
  EXPECT_EQ(page["canvases"]["parallel"]["drawn"], 8);
  EXPECT_EQ(page["plots"]["best-trials"]["points"], 8);
  EXPECT_TRUE(page["plots"]["best-trials"]["canvas"].get<bool>());
  EXPECT_EQ(page["plots"]["gpu-time"]["points"], 8);
  EXPECT_EQ(page["slices"], Json::array({8, 8, 8}));  // x, steps, sleep
  EXPECT_THAT(page["importance"], Contains("x"));
  EXPECT_EQ(page["rows"].size(), 8u);

  // The sweeps list, the best trial and the agents.
  const Json sweeps = Browse(url, "#/", "dashboard-sweeps.png");
  EXPECT_THAT(sweeps["rows"], Contains(id));
  const std::string best_trial = status["best_trial_id"];
  const Json trial = Browse(url, "#/trials/" + best_trial, "dashboard-trial.png");
  EXPECT_NEAR(Number(trial, "best"), best, std::abs(best) * 1e-5 + 1e-9);
  // Its curve has every report it made (steps 0..last_step; fewer than 12 if it was pruned).
  int64_t best_last_step = -1;
  for (const Json& t : cluster.Trials(id)) {
    if (t.value("id", "") == best_trial) best_last_step = Int(t, "last_step");
  }
  EXPECT_EQ(trial["plots"]["curve"]["points"].get<int64_t>(), best_last_step + 1);
  EXPECT_THAT(trial["text"].get<std::string>(), HasSubstr("stdout.log"));
  const Json agents = Browse(url, "#/agents", "dashboard-agents.png");
  EXPECT_EQ(agents["rows"].size(), 2u);
}

// Method pbt: a copy's page says whose checkpoint it started from, at which step, and whom it
// replaced, with links to both.
TEST_F(DashboardE2eTest, APbtCopysPageShowsItsLineage) {
  const std::string url_file = dir_ + "/url";
  Cluster cluster(
      ClusterOptions{.agents = 1,
                     .slots = 4,
                     .sweepd_flags = {"--http=127.0.0.1:0", "--dashboard_url_file=" + url_file}});
  ASSERT_TRUE(WaitFor([&] { return !ReadFileText(url_file).empty(); }, 30000));
  std::string url = ReadFileText(url_file);
  url.erase(url.find_last_not_of("\n") + 1);
  const std::string id = cluster.Submit(R"(
program: pbt_toy.py
method: pbt
seed: 3
metric: {name: loss, goal: minimize}
pbt: {population_size: 4, interval: 3}
parameters:
  lr: {distribution: uniform, min: 0.01, max: 0.6}
  steps: {value: 15}
  sync_dir: {value: )" + cluster.dir() + R"(/sync}
)");
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 240000)) << cluster.Logs();
  Json copy;
  for (const Json& t : cluster.Trials(id)) {
    if (!t.value("parent_trial_id", "").empty()) copy = t;
  }
  ASSERT_TRUE(copy.is_object()) << "no member was replaced: " << cluster.Logs();
  const Json page = Browse(url, "#/trials/" + copy.value("id", ""), "dashboard-pbt-copy.png");
  EXPECT_THAT(page["text"].get<std::string>(),
              HasSubstr("pbt: a copy of " + copy.value("parent_trial_id", "") + " at step " +
                        std::to_string(Int(copy, "parent_step")) + ", in place of " +
                        copy.value("replaced_trial_id", "")));
}

}  // namespace
}  // namespace sweepd
