// Fault tolerance end to end with the real binaries: sweepd killed with SIGKILL while trials
// run (agents keep them, buffer their reports and reattach them to the restarted sweepd), and an
// agent silent past the timeout (its trials are lost, and when it comes back it is told to kill
// them: fencing), and the store's disk filling up under sweepd (it stops acknowledging, agents
// keep their reports, and everything is stored once space returns).

#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/store.h"
#include "tests/integration/cluster.h"
#include "tests/testing/subprocess.h"

namespace sweepd {
namespace {

using ::sweepd::testing::BinaryPath;
using ::sweepd::testing::Cluster;
using ::sweepd::testing::ClusterOptions;
using ::sweepd::testing::CountProcessesWith;
using ::sweepd::testing::Int;
using ::sweepd::testing::Json;
using ::sweepd::testing::ReadFileText;
using ::sweepd::testing::SpawnProcess;
using ::sweepd::testing::WaitFor;
using ::testing::HasSubstr;

// sweepd's environment for storage-fault tests: while `flag` exists its store's files answer
// writes with ENOSPC (tests/testing/disk_full_shim.cc).
std::vector<std::string> DiskFullEnv(const std::string& flag) {
  return {"LD_PRELOAD=" + ::sweepd::testing::BinaryPath("tests/testing/libdisk_full_shim.so"),
          "SWEEPD_DISK_FULL_FLAG=" + flag, "SWEEPD_DISK_FULL_PATH=/sweepd.db",
          // The shim comes before a sanitizer runtime in a sanitized build.
          "ASAN_OPTIONS=verify_asan_link_order=0"};
}

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
  // Both scripts are running Python (they write node.json first): no launcher process (a pyenv
  // shim, `env`) is left that carries the tag too.
  ASSERT_TRUE(WaitFor(
      [&] {
        int started = 0;
        for (const auto& entry : std::filesystem::recursive_directory_iterator(cluster.dir())) {
          if (entry.path().filename() == "node.json") ++started;
        }
        return started == 2 && CountProcessesWith("restart-3d9e") == 2;
      },
      10000));
  cluster.RestartSweepd();
  // The trials went on running through the crash...
  EXPECT_EQ(CountProcessesWith("restart-3d9e"), 2);
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 60000)) << cluster.Logs();
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
  EXPECT_THAT(events.out, HasSubstr("trial.reattached")) << cluster.Logs();
}

// `sweepctl watch` across a sweepd restart: it says sweepd is gone, reconnects with backoff,
// says it is back, and ends only when the sweep ends, with exit 0.
TEST(RestartE2eTest, WatchReconnectsAcrossASweepdRestartAndEndsWithTheSweep) {
  Cluster cluster(1, 1);
  const std::string id = cluster.Submit(R"(
program: gang_node.py
method: random
run_cap: 1
max_retries: 0
parameters:
  mode: {value: release}
  seconds: {value: 240}
  tag: {value: watch-4c1e}
)");
  ASSERT_TRUE(WaitFor([&] { return Int(cluster.Status(id)["counts"], "running") == 1; }, 60000))
      << cluster.Logs();
  const std::string watch_log = cluster.dir() + "/watch.log";
  const int watch = SpawnProcess(
      {BinaryPath("cli/sweepctl"), "watch", id, "--scheduler=" + cluster.address()}, watch_log);
  ASSERT_GT(watch, 0);
  ASSERT_TRUE(
      WaitFor([&] { return ReadFileText(watch_log).find(id) != std::string::npos; }, 60000));
  cluster.RestartSweepd();
  ASSERT_TRUE(WaitFor(
      [&] { return ReadFileText(watch_log).find("is back; watching again") != std::string::npos; },
      120000))
      << ReadFileText(watch_log);
  EXPECT_THAT(ReadFileText(watch_log), HasSubstr("lost sweepd at " + cluster.address()));
  int status = -1;
  EXPECT_EQ(waitpid(watch, &status, WNOHANG), 0) << "watch ended with the sweep still running";
  // The trial (reattached) ends; the sweep finishes; watch ends with it.
  const auto trials = Json::parse(cluster.Sweepctl({"trials", id, "--output", "json"}).out);
  const std::string trial_dir = trials["trials"][0]["workdir"];
  std::ofstream(trial_dir + "/release") << "now\n";
  const bool ended = WaitFor([&] { return waitpid(watch, &status, WNOHANG) == watch; }, 120000);
  if (!ended) {
    kill(watch, SIGKILL);
    waitpid(watch, nullptr, 0);
  }
  ASSERT_TRUE(ended) << ReadFileText(watch_log) << cluster.Logs();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFileText(watch_log);
  EXPECT_THAT(ReadFileText(watch_log), HasSubstr(id + " finished"));
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
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 30000)) << cluster.Logs();
  EXPECT_EQ(Int(cluster.Status(id)["counts"], "lost"), 1);
  EXPECT_EQ(CountProcessesWith("silent-8a41"), 1) << "the node still runs it";
  // ...and when the agent wakes up and re-registers, sweepd tells it to kill the trial.
  cluster.SignalAgent(0, SIGCONT);
  EXPECT_TRUE(WaitFor([] { return CountProcessesWith("silent-8a41") == 0; }, 30000))
      << cluster.Logs();
  EXPECT_THAT(cluster.Logs(), HasSubstr("the scheduler no longer owns it"));
}

// The same, with a retry: sweepd places the retry on the same (only) agent the moment it tells
// it to kill the first attempt, whose process is still ending there. The agent starts the retry
// once the first attempt is gone, instead of dropping it as a duplicate Assign (which left the
// trial assigned for ever; found in review of the attempt fencing).
TEST(RestartE2eTest, ARetryPlacedWhereItsKilledAttemptIsStillEndingStartsAfterIt) {
  Cluster cluster(ClusterOptions{.agents = 1, .slots = 1, .sweepd_flags = {"--agent_timeout=3"}});
  const std::string id = cluster.Submit(R"(
program: gang_node.py
method: random
metric: {name: loss}
run_cap: 1
max_retries: 1
parameters:
  mode: {value: sleep_first_attempt}
  seconds: {value: 300}
  tag: {value: retry-here-5e02}
)");
  ASSERT_TRUE(WaitFor([] { return CountProcessesWith("retry-here-5e02") == 1; }, 30000))
      << cluster.Logs();
  cluster.SignalAgent(0, SIGSTOP);
  // Silent past the timeout: the first attempt is lost and its retry waits for an agent.
  ASSERT_TRUE(
      WaitFor([&] { return cluster.Logs().find("lost -> queued") != std::string::npos; }, 30000))
      << cluster.Logs();
  cluster.SignalAgent(0, SIGCONT);
  // The agent kills the first attempt and runs the retry, which completes.
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 60000)) << cluster.Logs();
  const auto status = cluster.Status(id);
  EXPECT_EQ(Int(status["counts"], "completed"), 1) << cluster.Logs();
  EXPECT_EQ(CountProcessesWith("retry-here-5e02"), 0);
}

TEST(RestartE2eTest, AFullDiskStopsAcknowledgementsAndLosesNothingWhenSpaceReturns) {
  const std::string flag =
      (std::filesystem::temp_directory_path() / ("sweepd-disk-full-" + std::to_string(getpid())))
          .string();
  std::filesystem::remove(flag);
  Cluster cluster(ClusterOptions{.agents = 1,
                                 .slots = 2,
                                 .agent_flags = {"--max_buffered_reports=5"},
                                 .sweepd_env = DiskFullEnv(flag),
                                 .agent_ack_logs = true});
  const std::string id = cluster.Submit(R"(
program: report_socket.py
method: grid
metric: {name: loss}
parallelism: 2
parameters:
  x: {values: [0.1, 0.5]}
  steps: {value: 80}
  sleep: {value: 0.05}
  tag: {value: diskfull-51c7}
)");
  // Reports flow and are acknowledged...
  const std::string ack_log = cluster.dir() + "/ack-0.log";
  ASSERT_TRUE(WaitFor(
      [&] { return std::filesystem::exists(ack_log) && std::filesystem::file_size(ack_log) > 0; },
      30000))
      << cluster.Logs();
  // ...until the disk fills up.
  std::ofstream(flag) << "full\n";
  ASSERT_TRUE(WaitFor(
      [&] { return cluster.Logs().find("STORE WRITES FAILING") != std::string::npos; }, 20000))
      << cluster.Logs();
  // Changes are refused with the reason; reads still answer.
  auto pause = cluster.Sweepctl({"pause", id});
  EXPECT_NE(pause.exit_code, 0);
  EXPECT_THAT(pause.err, HasSubstr("cannot write its store"));
  auto status = cluster.Sweepctl({"status", id});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.err, HasSubstr("warning: sweepd cannot write its store"));
  EXPECT_THAT(cluster.Sweepctl({"list"}).err, HasSubstr("database or disk is full"));
  // Nothing is acknowledged while full: the trials finish, their reports wait on the agent.
  ASSERT_TRUE(WaitFor([] { return CountProcessesWith("diskfull-51c7") == 0; }, 30000));
  const auto acked_while_full = std::filesystem::file_size(ack_log);
  ASSERT_TRUE(WaitFor(
      [&] { return cluster.Logs().find("unacknowledged for") != std::string::npos; }, 20000))
      << "the agent re-sends what stays unacknowledged\n"
      << cluster.Logs();
  EXPECT_EQ(std::filesystem::file_size(ack_log), acked_while_full);
  // Past 5 reports in memory (--max_buffered_reports), the agent keeps them in a file.
  EXPECT_THAT(cluster.Logs(), HasSubstr("keeping newer ones in"));
  // Space returns: everything is stored, once.
  std::filesystem::remove(flag);
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 60000)) << cluster.Logs();
  std::string stored;  // points per trial, for the failure message
  ASSERT_TRUE(WaitFor(
      [&] {
        auto store = store::Store::Open({.path = cluster.db()});
        if (!store.ok()) return false;
        auto trials = (*store)->ListTrials({.sweep_public_id = id});
        if (!trials.ok() || trials->trials.size() != 2) return false;
        stored.clear();
        bool all = true;
        for (const auto& t : trials->trials) {
          auto detail = (*store)->GetTrial(t.id(), {"loss"}, 0);
          const int points =
              detail.ok() && detail->curves.size() == 1 ? detail->curves[0].points_size() : -1;
          stored += t.id() + ": " + std::to_string(points) + " points";
          if (points > 0) {
            std::set<int64_t> steps;
            for (const auto& p : detail->curves[0].points()) steps.insert(p.step());
            stored += " (missing steps:";
            for (int64_t i = 0; i < 80; ++i) {
              if (!steps.contains(i)) stored += " " + std::to_string(i);
            }
            stored += ")";
          }
          stored += "; ";
          all = all && points == 80;
        }
        return all;
      },
      60000))
      << stored << "\nacks:\n"
      << ::sweepd::testing::ReadFileText(ack_log) << cluster.Logs();
  auto store = store::Store::Open({.path = cluster.db()});
  ASSERT_TRUE(store.ok());
  auto trials = (*store)->ListTrials({.sweep_public_id = id});
  ASSERT_TRUE(trials.ok());
  for (const auto& t : trials->trials) {
    EXPECT_EQ(t.state(), v1::TRIAL_STATE_COMPLETED) << t.id();
    EXPECT_EQ(t.attempt(), 1) << t.id();
    const auto points = (*store)->GetTrial(t.id(), {"loss"}, 0)->curves[0].points();
    for (int i = 0; i < points.size(); ++i) EXPECT_EQ(points[i].step(), i) << t.id();
  }
  EXPECT_THAT(cluster.Logs(), HasSubstr("store writes resumed"));
  EXPECT_EQ(cluster.Sweepctl({"status", id}).err.find("warning"), std::string::npos);
  auto db = store::Connection::Open(cluster.db(), store::Connection::Mode::kReadOnly);
  ASSERT_TRUE(db.ok());
  auto check = (*db)->Prepare("PRAGMA integrity_check");
  ASSERT_TRUE(check.ok());
  ASSERT_TRUE(*check->Step());
  EXPECT_EQ(check->ColumnText(0), "ok");
}

// SIGTERM while the store's disk is full: sweepd does not wait for space for ever; it retries
// briefly, gives up on what it never acknowledged, and exits 0.
TEST(RestartE2eTest, SigtermWithAFullDiskStillExits) {
  const std::string flag = (std::filesystem::temp_directory_path() /
                            ("sweepd-disk-full-term-" + std::to_string(getpid())))
                               .string();
  std::filesystem::remove(flag);
  Cluster cluster(ClusterOptions{.agents = 1, .slots = 1, .sweepd_env = DiskFullEnv(flag)});
  const std::string id = cluster.Submit(R"(
program: report_socket.py
method: random
metric: {name: loss}
run_cap: 1
parameters:
  x: {value: 0.5}
  steps: {value: 100000}
  sleep: {value: 0.02}
)");
  ASSERT_TRUE(WaitFor([&] { return Int(cluster.Status(id)["counts"], "running") == 1; }, 30000));
  std::ofstream(flag) << "full\n";
  ASSERT_TRUE(WaitFor(
      [&] { return cluster.Logs().find("STORE WRITES FAILING") != std::string::npos; }, 20000))
      << cluster.Logs();
  const int status = cluster.StopSweepd(SIGTERM, 60000);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << cluster.Logs();
  EXPECT_THAT(cluster.Logs(), HasSubstr("closing while writes still fail"));
  std::filesystem::remove(flag);
  // Nothing it acknowledged is missing or damaged: a new sweepd opens the store.
  cluster.StartSweepd(cluster.address());
  EXPECT_EQ(cluster.Status(id).value("state", ""), "running");
}

// sweep-agent --drain: a stop signal lets the running trials finish, gives the agent no new
// ones, and it deregisters and exits 0; the sweep goes on when an agent is back.
TEST(ShutdownE2eTest, ADrainingAgentFinishesItsTrialsTakesNoNewOnesAndLeaves) {
  Cluster cluster(ClusterOptions{.agents = 1, .slots = 2, .agent_flags = {"--drain"}});
  const std::string id = cluster.Submit(R"(
program: gang_node.py
method: grid
metric: {name: loss}
parallelism: 2
parameters:
  mode: {value: ok}
  seconds: {value: 3}
  n: {values: [1, 2, 3]}
  tag: {value: drain-7c2e}
)");
  ASSERT_TRUE(WaitFor([&] { return Int(cluster.Status(id)["counts"], "running") == 2; }, 30000))
      << cluster.Logs();
  cluster.SignalAgent(0, SIGTERM);
  ASSERT_TRUE(WaitFor(
      [&] {
        const Json agents = cluster.Agents();
        return agents.size() == 1 && agents[0].value("state", "") == "draining";
      },
      10000))
      << cluster.Logs();
  const int status = cluster.WaitAgentExit(0, 30000);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << cluster.Logs();
  // Both running trials finished there; the third was never given to the draining agent.
  const Json counts = cluster.Status(id)["counts"];
  EXPECT_EQ(Int(counts, "completed"), 2) << cluster.Logs();
  EXPECT_EQ(Int(counts, "lost"), 0);
  EXPECT_EQ(Int(counts, "running") + Int(counts, "assigned"), 0);
  EXPECT_THAT(cluster.Logs(), HasSubstr("drained; deregistered"));
  EXPECT_EQ(cluster.Agents()[0].value("state", ""), "disconnected");
  // An agent comes back: the sweep finishes.
  cluster.RestartAgent(0);
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 60000)) << cluster.Logs();
  EXPECT_EQ(Int(cluster.Status(id)["counts"], "completed"), 3);
}

// Without --drain, a stop signal stops the agent's trials (SIGTERM, then SIGKILL) and sweepd
// retries them at once, not after the dead-agent timeout; a second signal does not wait.
TEST(ShutdownE2eTest, AStoppedAgentsTrialsAreRetriedAtOnce) {
  Cluster cluster(ClusterOptions{.agents = 1,
                                 .slots = 1,
                                 .agent_flags = {"--stop_grace=1"},
                                 .sweepd_flags = {"--agent_timeout=600"}});
  const std::string id = cluster.Submit(R"(
program: gang_node.py
method: random
metric: {name: loss}
run_cap: 1
max_retries: 1
parameters:
  mode: {value: sleep}
  seconds: {value: 300}
  tag: {value: stop-4b19}
)");
  ASSERT_TRUE(WaitFor([] { return CountProcessesWith("stop-4b19") == 1; }, 30000))
      << cluster.Logs();
  cluster.SignalAgent(0, SIGTERM);
  const int status = cluster.WaitAgentExit(0, 20000);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << cluster.Logs();
  EXPECT_EQ(CountProcessesWith("stop-4b19"), 0);
  // Lost and queued again for its second attempt, long before the 600 s timeout.
  ASSERT_TRUE(WaitFor([&] { return Int(cluster.Status(id)["counts"], "queued") == 1; }, 5000))
      << cluster.Logs();
  EXPECT_THAT(cluster.Logs(), HasSubstr("stopped it while shutting down"));
  // The retry runs on the next agent.
  cluster.RestartAgent(0);
  ASSERT_TRUE(WaitFor([] { return CountProcessesWith("stop-4b19") == 1; }, 30000))
      << cluster.Logs();
}

}  // namespace
}  // namespace sweepd
