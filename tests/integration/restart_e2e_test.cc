// Fault tolerance end to end with the real binaries: sweepd killed with SIGKILL while trials
// run (agents keep them, buffer their reports and reattach them to the restarted sweepd), and an
// agent silent past the timeout (its trials are lost, and when it comes back it is told to kill
// them: fencing).

#include <signal.h>

#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/store.h"
#include "tests/integration/cluster.h"
#include "tests/testing/subprocess.h"

namespace sweepd {
namespace {

using ::sweepd::testing::Cluster;
using ::sweepd::testing::ClusterOptions;
using ::sweepd::testing::CountProcessesWith;
using ::sweepd::testing::Int;
using ::sweepd::testing::Json;
using ::sweepd::testing::WaitFor;
using ::testing::HasSubstr;

TEST(RestartE2eTest, ASchedulerCrashRestartsNoTrialAndLosesNoReport) {
  Cluster cluster(2, 1);
  const std::string id = cluster.Submit(R"(
program: gang_node.py
method: random
metric: {name: loss}
run_cap: 2
parallelism: 2
parameters:
  mode: {value: ok}
  seconds: {value: 4}
  tag: {value: restart-3d9e}
)");
  ASSERT_TRUE(WaitFor([&] { return Int(cluster.Status(id)["counts"], "running") == 2; }, 30000))
      << cluster.Logs();
  ASSERT_TRUE(WaitFor([] { return CountProcessesWith("restart-3d9e") == 2; }, 10000));
  cluster.RestartSweepd();
  // The trials went on running through the crash...
  EXPECT_EQ(CountProcessesWith("restart-3d9e"), 2);
  ASSERT_TRUE(cluster.WaitForState(id, "SWEEP_STATE_FINISHED", 60000)) << cluster.Logs();
  const Json status = cluster.Status(id);
  EXPECT_EQ(Int(status["counts"], "completed"), 2) << cluster.Logs();
  EXPECT_EQ(Int(status["counts"], "lost"), 0);
  // ...were reattached, not retried, and every report they made is stored exactly once.
  auto store = store::Store::Open({.path = cluster.db()});
  ASSERT_TRUE(store.ok());
  auto trials = (*store)->ListTrials({.sweep_public_id = id});
  ASSERT_TRUE(trials.ok());
  ASSERT_EQ(trials->trials.size(), 2u);
  for (const auto& t : trials->trials) {
    EXPECT_EQ(t.attempt(), 1) << t.id();
    auto detail = (*store)->GetTrial(t.id(), {"loss"}, 0);
    ASSERT_TRUE(detail.ok());
    ASSERT_EQ(detail->curves.size(), 1u);
    const auto& points = detail->curves[0].points();
    ASSERT_GT(points.size(), 20);
    for (int i = 0; i < points.size(); ++i) {
      EXPECT_EQ(points[i].step(), i) << t.id() << ": a report missing or stored twice";
    }
  }
  auto events = cluster.Sweepctl({"trial", trials->trials[0].id(), "--output", "json"});
  EXPECT_THAT(events.out, HasSubstr("trial.reattached"));
}

TEST(RestartE2eTest, ASilentAgentsTrialsAreLostAndItIsToldToKillThemWhenItReturns) {
  Cluster cluster(ClusterOptions{.agents = 1, .slots = 1, .sweepd_flags = {"--agent_timeout=3"}});
  const std::string id = cluster.Submit(R"(
program: gang_node.py
method: random
metric: {name: loss}
run_cap: 1
max_retries: 0
parameters:
  mode: {value: sleep}
  seconds: {value: 300}
  tag: {value: silent-8a41}
)");
  ASSERT_TRUE(WaitFor([] { return CountProcessesWith("silent-8a41") == 1; }, 30000))
      << cluster.Logs();
  cluster.SignalAgent(0, SIGSTOP);
  // Silent past the timeout: its trial is lost (no retries asked for), the sweep ends...
  ASSERT_TRUE(cluster.WaitForState(id, "SWEEP_STATE_FINISHED", 30000)) << cluster.Logs();
  EXPECT_EQ(Int(cluster.Status(id)["counts"], "lost"), 1);
  EXPECT_EQ(CountProcessesWith("silent-8a41"), 1) << "the node still runs it";
  // ...and when the agent wakes up and re-registers, sweepd tells it to kill the trial.
  cluster.SignalAgent(0, SIGCONT);
  EXPECT_TRUE(WaitFor([] { return CountProcessesWith("silent-8a41") == 0; }, 30000))
      << cluster.Logs();
  EXPECT_THAT(cluster.Logs(), HasSubstr("the scheduler no longer owns it"));
}

}  // namespace
}  // namespace sweepd
