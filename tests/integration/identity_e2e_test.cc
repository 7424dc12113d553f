// Identity end to end, as users start things: several agents on one host with no --agent-id,
// a second agent on a workdir, an agent given another's id, a second sweepd on a store. No
// trial may ever run twice at once and no GPU or slot may be handed out twice.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"
#include "tests/testing/subprocess.h"

namespace sweepd {
namespace {

using ::sweepd::testing::BinaryPath;
using ::sweepd::testing::Cluster;
using ::sweepd::testing::ClusterOptions;
using ::sweepd::testing::Int;
using ::sweepd::testing::ReadFileText;
using ::sweepd::testing::RunProcess;
using ::sweepd::testing::SourcePath;
using ::sweepd::testing::SpawnProcess;
using ::sweepd::testing::WaitFor;
using ::testing::HasSubstr;
using Json = nlohmann::json;

// An agent started the way a user starts one: the scheduler, a workdir and a code dir; no id.
int StartPlainAgent(const Cluster& cluster, const std::string& workdir, const std::string& log,
                    std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {BinaryPath("worker/sweep-agent"),
                                   "--scheduler=" + cluster.address(), "--workdir=" + workdir,
                                   "--code-dir=" + SourcePath("tests/integration/scripts")};
  for (auto& e : extra) argv.push_back(std::move(e));
  return SpawnProcess(argv, log);
}

// Waits (bounded) for `pid` to exit; its wait status, or -1.
int WaitExit(int pid, int timeout_ms) {
  int status = -1;
  if (!WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, timeout_ms)) return -1;
  return status;
}

void StopAndReap(int pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  if (WaitExit(pid, 60000) == -1) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
}

// The agents sweepd lists as connected.
std::vector<Json> ConnectedAgents(Cluster& cluster) {
  std::vector<Json> connected;
  for (const auto& a : cluster.Agents()) {
    if (a.value("state", "") == "connected") connected.push_back(a);
  }
  return connected;
}

TEST(IdentityE2eTest, FourAgentsOnOneHostWithoutIdsRunEveryTrialExactlyOnce) {
  Cluster cluster(ClusterOptions{.agents = 0});
  std::vector<int> agents;
  for (int i = 0; i < 4; ++i) {
    agents.push_back(StartPlainAgent(cluster, cluster.dir() + "/w" + std::to_string(i),
                                     cluster.dir() + "/plain-" + std::to_string(i) + ".log"));
  }
  ASSERT_TRUE(WaitFor([&] { return ConnectedAgents(cluster).size() == 4; }, 60000))
      << cluster.Logs();
  std::set<std::string> ids;
  for (const auto& a : ConnectedAgents(cluster)) ids.insert(a["id"].get<std::string>());
  EXPECT_EQ(ids.size(), 4u) << "agents on one host share an id";

  const std::string starts = cluster.dir() + "/starts.log";
  const std::string id = cluster.Submit(R"(
program: record_start.py
method: random
seed: 3
run_cap: 40
metric: {name: loss, goal: minimize}
parameters:
  log: {value: )" + starts + R"(}
  x: {min: 0.0, max: 1.0}
  seconds: {value: 0.2}
)");
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 240000)) << cluster.Logs();
  const Json status = cluster.Status(id);
  EXPECT_EQ(Int(status["counts"], "completed"), 40) << status.dump();
  EXPECT_EQ(Int(status["counts"], "lost"), 0) << status.dump();

  std::map<std::string, int> started;
  std::istringstream lines(ReadFileText(starts));
  for (std::string trial, pid; lines >> trial >> pid;) ++started[trial];
  EXPECT_EQ(started.size(), 40u);
  for (const auto& [trial, n] : started) EXPECT_EQ(n, 1) << trial << " started " << n << " times";
  // Nobody kicked anybody off: four connections, one per agent, for the whole sweep.
  const std::string sweepd_log = ReadFileText(cluster.dir() + "/sweepd.log");
  EXPECT_EQ(sweepd_log.find("refused"), std::string::npos) << sweepd_log;
  EXPECT_EQ(sweepd_log.find("disconnected"), std::string::npos) << sweepd_log;
  for (int pid : agents) StopAndReap(pid);
}

TEST(IdentityE2eTest, ASecondAgentOnTheSameWorkdirIsRefusedAtStart) {
  Cluster cluster(ClusterOptions{.agents = 0});
  const std::string workdir = cluster.dir() + "/shared-work";
  const int first = StartPlainAgent(cluster, workdir, cluster.dir() + "/first.log");
  ASSERT_TRUE(WaitFor([&] { return ConnectedAgents(cluster).size() == 1; }, 60000))
      << ReadFileText(cluster.dir() + "/first.log");
  const int second = StartPlainAgent(cluster, workdir, cluster.dir() + "/second.log");
  const int status = WaitExit(second, 60000);
  ASSERT_NE(status, -1) << "the second agent did not stop";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
  const std::string said = ReadFileText(cluster.dir() + "/second.log");
  EXPECT_THAT(said, HasSubstr("is in use by sweep-agent pid " + std::to_string(first)));
  EXPECT_THAT(said, HasSubstr("its own --workdir"));
  EXPECT_EQ(ConnectedAgents(cluster).size(), 1u);
  StopAndReap(first);
}

TEST(IdentityE2eTest, AnAgentGivenAConnectedAgentsIdIsRefusedAndTheFirstRunsOn) {
  Cluster cluster(ClusterOptions{.agents = 1});
  // agent-0 runs a long trial; a second agent claims its id from another workdir.
  const std::string id = cluster.Submit(R"(
program: report_socket.py
method: random
run_cap: 1
metric: {name: loss, goal: minimize}
command: ["${env}", "${interpreter}", "${program}", "${args}", "--steps=100000", "--sleep=0.05"]
parameters:
  x: {min: 0.0, max: 1.0}
)");
  ASSERT_TRUE(WaitFor([&] { return Int(cluster.Status(id)["counts"], "running") == 1; }, 60000))
      << cluster.Logs();
  const Json before = ConnectedAgents(cluster).at(0);
  const int impostor = StartPlainAgent(cluster, cluster.dir() + "/other-work",
                                       cluster.dir() + "/impostor.log", {"--agent-id=agent-0"});
  const int status = WaitExit(impostor, 60000);
  ASSERT_NE(status, -1) << "the agent with a taken id did not stop";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
  const std::string said = ReadFileText(cluster.dir() + "/impostor.log");
  EXPECT_THAT(said, HasSubstr("agent id agent-0 is connected from"));
  EXPECT_THAT(said, HasSubstr("give this agent its own --agent-id"));
  // The first agent kept its connection and its trial.
  const auto after = ConnectedAgents(cluster);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0]["incarnation"], before["incarnation"]);
  const Json now = cluster.Status(id);
  EXPECT_EQ(Int(now["counts"], "running"), 1) << now.dump();
  EXPECT_EQ(Int(now["counts"], "lost"), 0) << now.dump();
  ASSERT_EQ(cluster.Sweepctl({"cancel", id}).exit_code, 0);
}

TEST(IdentityE2eTest, ARestartedAgentKeepsItsDerivedId) {
  Cluster cluster(ClusterOptions{.agents = 0});
  const std::string workdir = cluster.dir() + "/w";
  int agent = StartPlainAgent(cluster, workdir, cluster.dir() + "/a1.log");
  ASSERT_TRUE(WaitFor([&] { return ConnectedAgents(cluster).size() == 1; }, 60000));
  const std::string first_id = ConnectedAgents(cluster)[0]["id"];
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::string short_host(host);
  short_host = short_host.substr(0, std::min<size_t>(short_host.find('.'), 56));
  EXPECT_EQ(first_id.rfind(short_host, 0), 0u) << first_id;
  EXPECT_THAT(first_id, ::testing::MatchesRegex(".*-[0-9a-f]{6}")) << first_id;
  kill(agent, SIGKILL);
  waitpid(agent, nullptr, 0);
  // The lock went with the process: the restart is not refused, and it is the same agent.
  agent = StartPlainAgent(cluster, workdir, cluster.dir() + "/a2.log");
  ASSERT_TRUE(WaitFor(
      [&] {
        auto connected = ConnectedAgents(cluster);
        return connected.size() == 1 && connected[0]["id"] == first_id &&
               connected[0]["incarnation"] != 1;
      },
      60000))
      << ReadFileText(cluster.dir() + "/a2.log") << cluster.Agents().dump();
  EXPECT_EQ(cluster.Agents().size(), 1u);
  StopAndReap(agent);
}

// A copy of a workdir (cp -r, a cloned image) is another agent: a new key and a new id, so the
// two never pass for each other at sweepd.
TEST(IdentityE2eTest, ACopiedWorkdirIsAnotherAgent) {
  Cluster cluster(ClusterOptions{.agents = 0});
  const int first = StartPlainAgent(cluster, cluster.dir() + "/w", cluster.dir() + "/a.log");
  ASSERT_TRUE(WaitFor([&] { return ConnectedAgents(cluster).size() == 1; }, 60000));
  std::filesystem::create_directories(cluster.dir() + "/copy/.sweep-agent");
  std::filesystem::copy_file(cluster.dir() + "/w/.sweep-agent/identity.json",
                             cluster.dir() + "/copy/.sweep-agent/identity.json",
                             std::filesystem::copy_options::overwrite_existing);
  const int second = StartPlainAgent(cluster, cluster.dir() + "/copy", cluster.dir() + "/b.log");
  ASSERT_TRUE(WaitFor([&] { return ConnectedAgents(cluster).size() == 2; }, 60000))
      << ReadFileText(cluster.dir() + "/b.log");
  const auto agents = ConnectedAgents(cluster);
  EXPECT_NE(agents[0]["id"], agents[1]["id"]);
  // Both stay: nobody was kicked off.
  EXPECT_EQ(ReadFileText(cluster.dir() + "/sweepd.log").find("disconnected"), std::string::npos);
  StopAndReap(first);
  StopAndReap(second);
}

TEST(IdentityE2eTest, ASecondSweepdOnTheSameStoreIsRefusedNamingTheFirst) {
  Cluster cluster(ClusterOptions{.agents = 0});
  auto second =
      RunProcess({BinaryPath("scheduler/sweepd"), "--listen=127.0.0.1:0", "--db=" + cluster.db()});
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_THAT(second.err, HasSubstr("is in use by sweepd pid"));
  EXPECT_THAT(second.err, HasSubstr("serving on " + cluster.address()));
  EXPECT_THAT(second.err, HasSubstr("another --db"));
  // The first one is untouched.
  EXPECT_EQ(cluster.Sweepctl({"list"}).exit_code, 0);
}

// `--help` lists the daemons' own flags (Abseil's default printed "No flags matched").
TEST(DaemonHelpTest, BothDaemonsListTheirFlags) {
  auto sweepd = RunProcess({BinaryPath("scheduler/sweepd"), "--help"});
  EXPECT_THAT(sweepd.out + sweepd.err, HasSubstr("--db"));
  EXPECT_THAT(sweepd.out + sweepd.err, HasSubstr("--listen"));
  EXPECT_EQ((sweepd.out + sweepd.err).find("No flags matched"), std::string::npos);
  auto agent = RunProcess({BinaryPath("worker/sweep-agent"), "--help"});
  EXPECT_THAT(agent.out + agent.err, HasSubstr("--workdir"));
  EXPECT_THAT(agent.out + agent.err, HasSubstr("--agent_id"));
  EXPECT_EQ((agent.out + agent.err).find("No flags matched"), std::string::npos);
}

}  // namespace
}  // namespace sweepd
