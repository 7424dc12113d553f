// Hostile trials, with the real binaries and real processes (issue 14): a metric_pattern that
// makes a backtracking engine take exponential time, a stdout flood, children that leave the
// trial's process group, a trial deaf to SIGTERM, garbage on the reporting socket. For each: the
// agent keeps heartbeating (no trial is lost because of another), the trial ends with no process
// left, and the next sweep on the same agent succeeds.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/integration/cluster.h"

namespace sweepd {
namespace {

using ::sweepd::testing::Cluster;
using ::sweepd::testing::ClusterOptions;
using ::sweepd::testing::CountProcessesWith;
using ::sweepd::testing::Int;
using ::sweepd::testing::Json;
using ::sweepd::testing::ReadFileText;
using ::sweepd::testing::WaitFor;
using ::testing::HasSubstr;

std::string Spec(const std::string& params, int run_cap, const std::string& extra = "") {
  return "program: misbehave.py\nmethod: grid\nmetric: {name: loss}\nmax_retries: 0\n" + extra +
         "run_cap: " + std::to_string(run_cap) + "\nparameters:\n" + params;
}

// After the hostile sweep: the same agent runs an ordinary one to the end, and nothing was lost.
void ExpectTheAgentStillWorks(Cluster& cluster) {
  const std::string id = cluster.Submit(Spec("  mode: {value: ok}\n", 1));
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 120000)) << cluster.Logs();
  const Json status = cluster.Status(id);
  EXPECT_EQ(Int(status["counts"], "completed"), 1) << cluster.Logs();
  EXPECT_EQ(cluster.Logs().find("declared lost"), std::string::npos) << cluster.Logs();
}

std::vector<int> Escapees(Cluster& cluster, const std::string& sweep) {
  const std::vector<Json> trials = cluster.Trials(sweep);
  std::vector<int> pids;
  for (const auto& t : trials) {
    const std::string path =
        cluster.dir() + "/work-0/" + sweep + "/" + t.value("id", std::string()) + "/escapees.json";
    if (!std::filesystem::exists(path)) continue;
    const Json list = Json::parse(ReadFileText(path), nullptr, false);
    for (const auto& pid : list) pids.push_back(pid.get<int>());
  }
  return pids;
}

// The probe that hung an agent for good: `(a|aa)*(a|aa)*(a|aa)*b=(\d)` against lines of 4,000
// `a`. With RE2 each line costs linear time; two such trials side by side both complete.
TEST(HostileTrialTest, AnExponentialMetricPatternDoesNotHangTheAgent) {
  Cluster cluster(ClusterOptions{.agents = 1, .slots = 2});
  const std::string id =
      cluster.Submit(Spec("  mode: {value: redos}\n  x: {values: [1, 2]}\n", 2,
                          "metric_pattern: \"(a|aa)*(a|aa)*(a|aa)*b=(\\\\d)\"\n"));
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 120000)) << cluster.Logs();
  const Json status = cluster.Status(id);
  EXPECT_EQ(Int(status["counts"], "completed"), 2) << cluster.Logs();
  EXPECT_EQ(Int(status["counts"], "lost"), 0);
  ExpectTheAgentStillWorks(cluster);
}

// 256 MiB of 1 MiB lines from one trial while another runs beside it: both complete, stdout.log
// stops at --max-log-mb with its marker, and the metric printed after the flood is found.
TEST(HostileTrialTest, AnOutputFloodDoesNotStallTheAgent) {
  Cluster cluster(ClusterOptions{.agents = 1, .slots = 2, .agent_flags = {"--max_log_mb=1"}});
  const std::string id =
      cluster.Submit(Spec("  mode: {values: [flood, ok]}\n  mib: {value: 256}\n", 2));
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 180000)) << cluster.Logs();
  const Json status = cluster.Status(id);
  EXPECT_EQ(Int(status["counts"], "completed"), 2) << cluster.Logs();
  EXPECT_EQ(Int(status["counts"], "lost"), 0);
  const std::vector<Json> trials = cluster.Trials(id);
  bool flood_seen = false;
  for (const auto& t : trials) {
    EXPECT_TRUE(t.contains("best_value")) << t.dump();  // loss=0.5 after the flood, too
    const std::string log =
        cluster.dir() + "/work-0/" + id + "/" + t.value("id", std::string()) + "/stdout.log";
    if (std::filesystem::file_size(log) < (1u << 20)) continue;
    flood_seen = true;
    EXPECT_LE(std::filesystem::file_size(log), (1u << 20) + 200);
    EXPECT_THAT(ReadFileText(log),
                HasSubstr("stdout.log reached 1048576 bytes; the rest is not kept"));
  }
  EXPECT_TRUE(flood_seen);
  ExpectTheAgentStillWorks(cluster);
}

// Garbage on the reporting socket gets error replies; the trial's real report still counts.
TEST(HostileTrialTest, GarbageOnTheSocketIsRefusedAndTheTrialGoesOn) {
  Cluster cluster(ClusterOptions{.agents = 1, .slots = 1});
  const std::string id = cluster.Submit(Spec("  mode: {value: garbage}\n", 1));
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 120000)) << cluster.Logs();
  const Json status = cluster.Status(id);
  EXPECT_EQ(Int(status["counts"], "completed"), 1) << cluster.Logs();
  EXPECT_DOUBLE_EQ(status.value("best_value", 0.0), 0.75) << status.dump();
  ExpectTheAgentStillWorks(cluster);
}

// A spec that cannot start (its program outside the code dir) fails its trials with the reason,
// and never quarantines the node: before, three such failures in a row took the agent away
// from every sweep.
TEST(HostileTrialTest, ASpecThatCannotStartFailsItsTrialsNotTheNode) {
  Cluster cluster(ClusterOptions{.agents = 1, .slots = 1});
  const std::string id = cluster.Submit(
      "program: ../CMakeLists.txt\nmethod: random\nmetric: {name: loss}\nmax_failures: 5\n"
      "max_retries: 0\nparameters:\n  x: {min: 0.0, max: 1.0}\n");
  ASSERT_TRUE(cluster.WaitForState(id, "failed", 120000)) << cluster.Logs();
  const Json status = cluster.Status(id);
  EXPECT_EQ(Int(status["counts"], "failed"), 5);
  EXPECT_THAT(status.value("reason", ""), HasSubstr("cannot start: program '../CMakeLists.txt' "
                                                    "is outside the code dir"));
  const Json agents =
      Json::parse(cluster.Sweepctl({"agents", "--output", "json"}).out, nullptr, false);
  ASSERT_EQ(agents.size(), 1u) << agents.dump();
  EXPECT_NE(agents[0].value("state", ""), "quarantined") << agents.dump();
  EXPECT_EQ(cluster.Logs().find("quarantined:"), std::string::npos) << cluster.Logs();
  ExpectTheAgentStillWorks(cluster);
}

// A report sent after `finish` is refused, not stored: the trial's value is what finish said.
TEST(HostileTrialTest, AReportAfterFinishIsRefused) {
  Cluster cluster(ClusterOptions{.agents = 1, .slots = 1});
  const std::string id = cluster.Submit(Spec("  mode: {value: after_finish}\n", 1));
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 120000)) << cluster.Logs();
  const Json status = cluster.Status(id);
  EXPECT_EQ(Int(status["counts"], "completed"), 1) << cluster.Logs();
  EXPECT_DOUBLE_EQ(status.value("best_value", 0.0), 0.5) << status.dump();
  const std::vector<Json> trials = cluster.Trials(id);
  ASSERT_EQ(trials.size(), 1u);
  const std::string out = ReadFileText(cluster.dir() + "/work-0/" + id + "/" +
                                       trials[0].value("id", std::string()) + "/stdout.log");
  EXPECT_THAT(out, HasSubstr("already sent finish; reports after it are not stored")) << out;
}

// Children that leave the trial's process group (setsid, setpgid) end with their trial: when it
// completes normally, and when it is canceled while deaf to SIGTERM (the agent's SIGKILL then
// takes its shim too). With a cgroup per trial, and without (the shim's and the agent's clean-up
// as subreapers).
class EscapeeTest : public ::testing::TestWithParam<bool> {
 protected:
  ClusterOptions Options() {
    ClusterOptions options{.agents = 1, .slots = 2};
    if (!GetParam()) options.agent_flags.push_back("--trial_cgroups=false");
    return options;
  }
  void ExpectContainment(Cluster& cluster) {
    ASSERT_TRUE(WaitFor([&] { return cluster.Logs().find("registered with") != std::string::npos; },
                        30000));
    const std::string logs = cluster.Logs();
    if (GetParam()) {
      if (logs.find("each trial runs in a cgroup of its own") == std::string::npos) {
        GTEST_SKIP() << "cgroup v2 is not writable here; the subreaper case covers this machine";
      }
    } else {
      EXPECT_THAT(logs, HasSubstr("trials run without cgroups"));
    }
  }
};

TEST_P(EscapeeTest, ChildrenThatLeaveTheGroupDieWithACompletedTrial) {
  Cluster cluster(Options());
  ExpectContainment(cluster);
  if (IsSkipped()) return;
  const std::string tag = "escape-c-" + std::to_string(getpid());
  const std::string id =
      cluster.Submit(Spec("  mode: {value: escape}\n  tag: {value: " + tag + "}\n", 1));
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 120000)) << cluster.Logs();
  EXPECT_EQ(Int(cluster.Status(id)["counts"], "completed"), 1) << cluster.Logs();
  EXPECT_EQ(Escapees(cluster, id).size(), 2u);
  EXPECT_TRUE(WaitFor([&] { return CountProcessesWith(tag) == 0; }, 30000))
      << CountProcessesWith(tag) << " escaped processes still run\n"
      << cluster.Logs();
  ExpectTheAgentStillWorks(cluster);
}

TEST_P(EscapeeTest, ChildrenThatLeaveTheGroupDieWithACanceledTrialDeafToSigterm) {
  Cluster cluster(Options());
  ExpectContainment(cluster);
  if (IsSkipped()) return;
  const std::string tag = "escape-k-" + std::to_string(getpid());
  const std::string id = cluster.Submit(
      Spec("  mode: {value: escape}\n  wait: {value: 1}\n  tag: {value: " + tag + "}\n", 1));
  ASSERT_TRUE(WaitFor([&] { return Escapees(cluster, id).size() == 2; }, 60000)) << cluster.Logs();
  EXPECT_EQ(CountProcessesWith(tag), 3);  // the trial itself (its --tag) and the two
  ASSERT_EQ(cluster.Sweepctl({"cancel", id}).exit_code, 0);
  ASSERT_TRUE(cluster.WaitForState(id, "canceled", 120000)) << cluster.Logs();
  EXPECT_TRUE(WaitFor([&] { return CountProcessesWith(tag) == 0; }, 30000))
      << CountProcessesWith(tag) << " escaped processes still run\n"
      << cluster.Logs();
  if (!GetParam()) {
    EXPECT_THAT(cluster.Logs(), HasSubstr("left running by a trial that has ended"));
  }
  ExpectTheAgentStillWorks(cluster);
}

INSTANTIATE_TEST_SUITE_P(Containment, EscapeeTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Cgroup" : "Subreaper"; });

}  // namespace
}  // namespace sweepd
