// GPUs and gangs end to end with the real binaries: multi-node trials placed all or none, the
// rendezvous environment on every node, a failed node stopping its gang, packing, quarantine,
// GPUs found by nvidia-smi handed out exclusively, and trials a crashed agent left behind.

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/store.h"
#include "tests/integration/cluster.h"
#include "tests/testing/subprocess.h"
#include "worker/trial_process.h"

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

// node.json files the gang_node.py trials of `sweep` wrote, keyed by (trial, node rank).
std::map<std::pair<std::string, int>, Json> NodeRecords(const Cluster& cluster,
                                                        const std::string& sweep, int agents) {
  std::map<std::pair<std::string, int>, Json> out;
  for (int i = 0; i < agents; ++i) {
    const auto dir = std::filesystem::path(cluster.dir()) / ("work-" + std::to_string(i)) / sweep;
    std::error_code ec;
    for (const auto& trial : std::filesystem::directory_iterator(dir, ec)) {
      const std::string text = ReadFileText((trial.path() / "node.json").string());
      if (text.empty()) continue;
      Json j = Json::parse(text);
      out[{trial.path().filename().string(), std::stoi(j["SWEEP_NODE_RANK"].get<std::string>())}] =
          j;
    }
  }
  return out;
}

TEST(GangE2eTest, EveryNodeGetsTheRendezvousAndOnlyNodeZeroReports) {
  Cluster cluster(2, 1);
  const std::string id = cluster.Submit(R"(
program: gang_node.py
method: random
metric: {name: loss}
resources: {nodes: 2, gpus_per_node: 1}
run_cap: 2
parameters:
  mode: {value: ok}
  seconds: {value: 0.4}
)");
  ASSERT_TRUE(cluster.WaitForState(id, "finished")) << cluster.Logs();
  EXPECT_EQ(Int(cluster.Status(id)["counts"], "completed"), 2);
  const auto records = NodeRecords(cluster, id, 2);
  ASSERT_EQ(records.size(), 4u) << "two trials, two nodes each";
  std::set<std::string> trials;
  for (const auto& [key, node] : records) trials.insert(key.first);
  for (const std::string& trial : trials) {
    const Json& n0 = records.at({trial, 0});
    const Json& n1 = records.at({trial, 1});
    for (const Json* n : {&n0, &n1}) {
      EXPECT_EQ((*n)["SWEEP_NNODES"], "2");
      EXPECT_EQ((*n)["WORLD_SIZE"], "2");
      EXPECT_EQ((*n)["SWEEP_NPROC_PER_NODE"], "1");
      EXPECT_EQ((*n)["SWEEP_GPUS_PER_NODE"], "0") << "CPU slots are not GPUs";
      EXPECT_EQ((*n)["MASTER_ADDR"], "127.0.0.1");
      EXPECT_TRUE((*n)["CUDA_VISIBLE_DEVICES"].is_null()) << "no GPUs, no CUDA_VISIBLE_DEVICES";
    }
    EXPECT_NE(n0["MASTER_PORT"], "0");
    EXPECT_EQ(n0["MASTER_PORT"], n1["MASTER_PORT"]) << "node 0 chose the port for both";
  }
  // Node 1 reported too (its client talks to its own agent), but only node 0's reports are
  // stored: each step once.
  auto store = store::Store::Open({.path = cluster.db()});
  ASSERT_TRUE(store.ok());
  const auto stored = cluster.Trials(id);
  ASSERT_EQ(stored.size(), 2u);
  for (const auto& t : stored) {
    auto detail = (*store)->GetTrial(t["id"], {"loss"}, 0);
    ASSERT_TRUE(detail.ok());
    ASSERT_EQ(detail->curves.size(), 1u);
    std::set<int64_t> steps;
    for (const auto& p : detail->curves[0].points()) {
      EXPECT_TRUE(steps.insert(p.step()).second) << "step " << p.step() << " stored twice";
    }
    EXPECT_GE(steps.size(), 2u);
  }
}

TEST(GangE2eTest, AFailedNodeStopsTheWholeGangAndFailsTheTrial) {
  Cluster cluster(2, 1);
  const std::string id = cluster.Submit(R"(
program: gang_node.py
method: random
metric: {name: loss}
resources: {nodes: 2}
run_cap: 1
parameters:
  mode: {value: fail_rank1}
  seconds: {value: 120}
  tag: {value: gang-fail-7f3a}
)");
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 60000)) << cluster.Logs();
  const auto trials = cluster.Trials(id);
  ASSERT_EQ(trials.size(), 1u);
  EXPECT_EQ(trials[0]["state"], "failed");
  auto detail = cluster.Sweepctl({"trial", trials[0]["id"], "--output", "json"});
  EXPECT_THAT(detail.out, HasSubstr("node 1 (agent-1) exited with code 3"));
  // Node 0 was stopped rather than left to run its 120 s.
  EXPECT_TRUE(WaitFor([] { return CountProcessesWith("gang-fail-7f3a") == 0; }, 10000));
}

TEST(GangE2eTest, TwoGangsCompetingForTheSameNodesBothFinish) {
  Cluster cluster(2, 1);
  const std::string spec = R"(
program: gang_node.py
method: random
metric: {name: loss}
resources: {nodes: 2}
run_cap: 3
parameters:
  mode: {value: ok}
  seconds: {value: 0.3}
)";
  const std::string a = cluster.Submit(spec);
  const std::string b = cluster.Submit(spec);
  ASSERT_TRUE(cluster.WaitForState(a, "finished", 90000)) << cluster.Logs();
  ASSERT_TRUE(cluster.WaitForState(b, "finished", 90000)) << cluster.Logs();
  EXPECT_EQ(Int(cluster.Status(a)["counts"], "completed"), 3);
  EXPECT_EQ(Int(cluster.Status(b)["counts"], "completed"), 3);
  // Never two gangs on the same node at once: each node's trials ran one after another.
  for (int agent = 0; agent < 2; ++agent) {
    std::vector<std::pair<double, double>> spans;
    for (const std::string& sweep : {a, b}) {
      for (const auto& [key, node] : NodeRecords(cluster, sweep, 2)) {
        const std::string dir = cluster.dir() + "/work-" + std::to_string(agent) + "/" + sweep +
                                "/" + key.first + "/node.json";
        if (std::filesystem::exists(dir) &&
            Json::parse(ReadFileText(dir))["SWEEP_NODE_RANK"] == node["SWEEP_NODE_RANK"]) {
          spans.emplace_back(node["start"].get<double>(), node["end"].get<double>());
        }
      }
    }
    ASSERT_EQ(spans.size(), 6u);
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i) {
      EXPECT_LE(spans[i - 1].second, spans[i].first) << "overlapping trials on agent-" << agent;
    }
  }
}

TEST(GangE2eTest, PlacementPacksOneNodeBeforeOpeningAnother) {
  Cluster cluster(2, 2);
  const std::string id = cluster.Submit(R"(
program: gang_node.py
method: random
metric: {name: loss}
parallelism: 2
run_cap: 2
parameters:
  mode: {value: hold}
  seconds: {value: 3}
)");
  // Both trials run at once, on one agent, leaving the other whole.
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& agent : cluster.Agents()) {
          if (agent.value("running_trial_ids", Json::array()).size() == 2) return true;
        }
        return false;
      },
      30000))
      << cluster.Logs();
  ASSERT_TRUE(cluster.WaitForState(id, "finished")) << cluster.Logs();
}

TEST(GangE2eTest, AnAgentWhoseTrialsKeepFailingIsQuarantinedUntilReleased) {
  Cluster cluster(1, 1);
  const std::string id = cluster.Submit(R"(
program: fail.py
method: random
metric: {name: loss}
run_cap: 6
max_failures: 100
parameters:
  x: {min: 0.0, max: 1.0}
)");
  auto agent_state = [&] {
    Json agents = cluster.Agents();
    return agents.size() == 1 ? agents[0].value("state", "") : std::string();
  };
  ASSERT_TRUE(WaitFor([&] { return agent_state() == "quarantined"; }, 30000)) << cluster.Logs();
  EXPECT_EQ(Int(cluster.Status(id)["counts"], "failed"), 3) << "no trial after quarantine";
  EXPECT_THAT(cluster.Agents()[0].value("quarantine_reason", ""),
              HasSubstr("3 trials failed within 60 s"));
  auto table = cluster.Sweepctl({"agents"});
  EXPECT_THAT(table.out, HasSubstr("quarantined"));
  auto wrong = cluster.Sweepctl({"agents", "--release", "agent-9"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.err, HasSubstr("no agent agent-9"));
  auto released = cluster.Sweepctl({"agents", "--release", "agent-0"});
  ASSERT_EQ(released.exit_code, 0) << released.err;
  // Released, it takes trials again (and, failing again, the rest of the sweep runs out).
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 60000)) << cluster.Logs();
  EXPECT_EQ(Int(cluster.Status(id)["counts"], "failed"), 6);
  auto again = cluster.Sweepctl({"agents", "--release", "agent-0"});
  EXPECT_EQ(again.exit_code, 0) << "quarantined again after three more failures";
}

// A fake nvidia-smi with two GPUs, for an agent on a machine without any.
std::string FakeNvidiaSmi(const std::string& dir) {
  const std::string bin = dir + "/fake-bin";
  std::filesystem::create_directories(bin);
  const std::string path = bin + "/nvidia-smi";
  std::ofstream(path) << "#!/bin/sh\n"
                         "echo '0, GPU-aaaa-0000, NVIDIA H200, 143771, 1024, 37'\n"
                         "echo '1, GPU-bbbb-1111, NVIDIA H200, 143771, 2048, 0'\n";
  chmod(path.c_str(), 0755);
  return bin;
}

TEST(GangE2eTest, GpusFromNvidiaSmiAreHandedOutOneTrialAtATime) {
  std::string pattern = (std::filesystem::temp_directory_path() / "sweepd-gpu-XXXXXX").string();
  const std::string bin_dir = FakeNvidiaSmi(mkdtemp(pattern.data()));
  const char* path = std::getenv("PATH");
  Cluster cluster(ClusterOptions{
      .agents = 1,
      .slots = 1,
      .agent_flags = {"--gpu_discovery=nvidia-smi"},
      .agent_env = {"PATH=" + bin_dir + ":" + (path != nullptr ? path : "/usr/bin:/bin")}});
  const std::string id = cluster.Submit(R"(
program: gang_node.py
method: random
metric: {name: loss}
resources: {gpus_per_node: 1}
parallelism: 2
run_cap: 6
parameters:
  mode: {value: hold}
  seconds: {value: 0.6}
)");
  // The agent offers the two GPUs nvidia-smi lists, with their readings.
  ASSERT_TRUE(WaitFor(
      [&] {
        Json agents = cluster.Agents();
        return agents.size() == 1 && agents[0]["gpus"].size() == 2 &&
               agents[0]["gpus"][0].value("utilization_percent", 0.0) == 37.0;
      },
      20000))
      << cluster.Logs();
  const Json gpus = cluster.Agents()[0]["gpus"];
  EXPECT_EQ(gpus[0]["uuid"], "GPU-aaaa-0000");
  EXPECT_EQ(gpus[1]["name"], "NVIDIA H200");
  auto table = cluster.Sweepctl({"agents"});
  EXPECT_THAT(table.out, HasSubstr("2 GPU"));
  EXPECT_THAT(table.out, HasSubstr("37%"));
  ASSERT_TRUE(cluster.WaitForState(id, "finished")) << cluster.Logs();
  // Each trial saw exactly one GPU, and no GPU ever had two trials at once.
  std::map<std::string, std::vector<std::pair<double, double>>> by_gpu;
  const auto records = NodeRecords(cluster, id, 1);
  ASSERT_EQ(records.size(), 6u);
  for (const auto& [key, node] : records) {
    const std::string gpu = node["CUDA_VISIBLE_DEVICES"];
    EXPECT_TRUE(gpu == "0" || gpu == "1") << gpu;
    EXPECT_EQ(node["SWEEP_GPUS"], gpu);
    EXPECT_EQ(node["SWEEP_GPUS_PER_NODE"], "1");
    EXPECT_EQ(node["CUDA_DEVICE_ORDER"], "PCI_BUS_ID");
    by_gpu[gpu].emplace_back(node["start"].get<double>(), node["end"].get<double>());
  }
  EXPECT_EQ(by_gpu.size(), 2u) << "both GPUs were used";
  for (auto& [gpu, spans] : by_gpu) {
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i) {
      EXPECT_LE(spans[i - 1].second, spans[i].first) << "two trials on GPU " << gpu;
    }
  }
  std::filesystem::remove_all(std::filesystem::path(bin_dir).parent_path());
}

// A crashed agent's trials keep running (sweep-trial-shim holds their stdout pipe); the
// restarted agent takes them over: same process, reporting socket back, reports numbered on
// from what the store has, the exit reported as usual. Nothing restarts, nothing is lost.
TEST(AgentRestartE2eTest, ARestartedAgentTakesOverTheTrialsItsCrashLeftRunning) {
  // However slow things get under load, sweepd must not give the trial up while its agent is
  // down: the restart is what is tested.
  Cluster cluster(ClusterOptions{.agents = 1, .slots = 1, .sweepd_flags = {"--agent_timeout=300"}});
  const std::string id = cluster.Submit(R"(
program: gang_node.py
method: random
metric: {name: loss}
run_cap: 1
max_retries: 0
parameters:
  mode: {value: ok}
  seconds: {value: 12}
  tag: {value: takeover-5c1e}
)");
  ASSERT_TRUE(WaitFor([&] { return Int(cluster.Status(id)["counts"], "running") == 1; }, 60000))
      << cluster.Logs();
  // The script itself runs (not only its launchers) and has reported: the crash comes mid-run.
  const std::string trial_id = cluster.Trials(id).at(0)["id"];
  const std::string workdir = cluster.dir() + "/work-0/" + id + "/" + trial_id;
  ASSERT_TRUE(WaitFor(
      [&] {
        return std::filesystem::exists(workdir + "/node.json") &&
               cluster.Trials(id).at(0).contains("last_value");
      },
      60000))
      << cluster.Logs();
  const auto before = cluster.Sweepctl({"trials", id, "--output", "json"});
  cluster.KillAgent(0, SIGKILL);
  // The trial lives on in its own session: the crash did not take it along.
  EXPECT_TRUE(WaitFor([] { return CountProcessesWith("takeover-5c1e") == 1; }, 10000));
  cluster.RestartAgent(0);
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 120000)) << cluster.Logs();
  const Json status = cluster.Status(id);
  EXPECT_EQ(Int(status["counts"], "completed"), 1) << cluster.Logs();
  EXPECT_EQ(Int(status["counts"], "lost"), 0);
  const std::string logs = cluster.Logs();
  EXPECT_THAT(logs, HasSubstr("taken over from an earlier run of this agent"));
  EXPECT_THAT(logs, HasSubstr("sweepd took it back"));
  EXPECT_EQ(logs.find("left running by an earlier run"), std::string::npos) << logs;
  // One attempt, one process: node.json was written once at its start and once at its end.
  auto store = store::Store::Open({.path = cluster.db()});
  ASSERT_TRUE(store.ok());
  auto trials = (*store)->ListTrials({.sweep_public_id = id});
  ASSERT_TRUE(trials.ok());
  ASSERT_EQ(trials->trials.size(), 1u);
  EXPECT_EQ(trials->trials[0].attempt(), 1);
  const Json node = Json::parse(
      ReadFileText(cluster.dir() + "/work-0/" + id + "/" + trials->trials[0].id() + "/node.json"));
  EXPECT_TRUE(node.contains("end")) << node.dump();
  EXPECT_GE(node.value("end", 0.0) - node.value("start", 0.0), 12.0);
  // Reports from before and after the restart, each step at most once, in order.
  auto detail = (*store)->GetTrial(trials->trials[0].id(), {"loss"}, 0);
  ASSERT_TRUE(detail.ok());
  ASSERT_EQ(detail->curves.size(), 1u);
  const auto& points = detail->curves[0].points();
  ASSERT_GT(points.size(), 20) << before.out;
  for (int i = 1; i < points.size(); ++i) {
    EXPECT_LT(points[i - 1].step(), points[i].step()) << "a report stored twice or out of order";
  }
}

// A trial that ends while its agent is down is reported when the agent comes back, with the
// exit status the shim recorded: completed, not lost.
TEST(AgentRestartE2eTest, ATrialThatEndedWhileItsAgentWasDownIsReportedWithItsExit) {
  // However slow the restart under load, sweepd must not give the trial up meanwhile.
  Cluster cluster(ClusterOptions{.agents = 1, .slots = 1, .sweepd_flags = {"--agent_timeout=300"}});
  const std::string id = cluster.Submit(R"(
program: gang_node.py
method: random
metric: {name: loss}
run_cap: 1
max_retries: 0
parameters:
  mode: {value: release}
  seconds: {value: 240}
  tag: {value: ended-2f0a}
)");
  // Running at sweepd: the agent wrote the trial's state file before it said the trial started
  // (agent.cc StartTrial), so a restarted agent finds it. A process carrying the tag says only
  // that the command was spawned, possibly before the state file exists.
  ASSERT_TRUE(WaitFor([&] { return Int(cluster.Status(id)["counts"], "running") == 1; }, 60000))
      << cluster.Logs();
  const auto trials = cluster.Trials(id);
  ASSERT_EQ(trials.size(), 1u);
  const std::string trial_id = trials[0]["id"];
  const std::string workdir = cluster.dir() + "/work-0/" + id + "/" + trial_id;
  const Json state = Json::parse(
      ReadFileText(cluster.dir() + "/work-0/.sweep-agent/agent-0/" + trial_id), nullptr, false);
  ASSERT_TRUE(state.is_object()) << "no state file for " << trial_id;
  const pid_t shim = state.value("pid", 0);
  const uint64_t shim_ticks = state.value("start_ticks", uint64_t{0});
  // Python runs (node.json), waiting to be released.
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(workdir + "/node.json"); }, 60000))
      << cluster.Logs();
  cluster.KillAgent(0, SIGKILL);
  // Only now may it end: while its agent is down.
  std::ofstream(workdir + "/release") << "now\n";
  // Its end recorded by the shim and the shim gone (a zombie at most), so the restarted agent
  // finds an ended trial rather than a running one.
  ASSERT_TRUE(WaitFor(
      [&] {
        return std::filesystem::exists(workdir + "/.exit") &&
               worker::ProcessStartTicks(shim) != shim_ticks;
      },
      60000))
      << ReadFileText(workdir + "/stderr.log");
  EXPECT_EQ(ReadFileText(workdir + "/.exit"), "exit 0\n");
  EXPECT_EQ(CountProcessesWith("ended-2f0a"), 0);
  cluster.RestartAgent(0);
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 60000)) << cluster.Logs();
  EXPECT_EQ(Int(cluster.Status(id)["counts"], "completed"), 1) << cluster.Logs();
  EXPECT_THAT(cluster.Logs(), HasSubstr("ended meanwhile"));
}

// A leftover the agent cannot take over (a state file from an older agent, without the shim)
// is killed, so its GPUs are not handed out twice.
TEST(AgentRestartE2eTest, ALeftoverItCannotTakeOverIsKilled) {
  Cluster cluster(1, 1);
  cluster.KillAgent(0, SIGKILL);
  const int pid = ::sweepd::testing::SpawnProcess(
      {"/usr/bin/env", "python3", "-c", "import os, time; os.setsid(); time.sleep(300)",
       "orphan-9d3b-" + std::to_string(getpid())},
      cluster.dir() + "/orphan.log");
  ASSERT_GT(pid, 0);
  // Our child, so a kill and a reap are bounded: it never outlives the test, however the test
  // ends (a 300 s sleeper reaped with a blocking waitpid is exactly ctest's TIMEOUT).
  struct Reaper {
    int pid;
    ~Reaper() {
      if (pid > 0 && kill(pid, SIGKILL) == 0) waitpid(pid, nullptr, 0);
    }
  } reaper{pid};
  // Its own session (os.setsid) once Python runs, after `env` and pyenv's shims: pgid == pid.
  ASSERT_TRUE(WaitFor([&] { return getpgid(pid) == pid; }, 60000))
      << ReadFileText(cluster.dir() + "/orphan.log");
  const uint64_t ticks = worker::ProcessStartTicks(pid);
  ASSERT_NE(ticks, 0u);
  const std::string state_dir = cluster.dir() + "/work-0/.sweep-agent/agent-0";
  std::filesystem::create_directories(state_dir);
  std::ofstream(state_dir + "/s-old-0001") << pid << " " << ticks << " 0\n";
  cluster.RestartAgent(0);
  // Dead, by the agent's SIGKILL to its group: wait on our own child, not on /proc.
  int status = 0;
  const bool reaped = WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, 60000);
  if (reaped) reaper.pid = -1;  // its pid may be reused from here on: never signal it again
  ASSERT_TRUE(reaped) << cluster.Logs();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  EXPECT_THAT(cluster.Logs(), HasSubstr("left running by an earlier run of this agent"));
}

TEST(GangE2eTest, AProgramOutsideTheCodeDirIsRefused) {
  Cluster cluster(1, 1);
  const std::string id = cluster.Submit(R"(
program: ../CMakeLists.txt
method: random
metric: {name: loss}
run_cap: 1
max_failures: 1
parameters:
  x: {min: 0.0, max: 1.0}
)");
  ASSERT_TRUE(cluster.WaitForState(id, "failed", 30000)) << cluster.Logs();
  EXPECT_THAT(cluster.Status(id).value("reason", ""), HasSubstr("is outside the code dir"));
}

}  // namespace
}  // namespace sweepd
