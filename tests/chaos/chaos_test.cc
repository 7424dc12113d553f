// Chaos: a real sweepd and three agents on loopback run a sweep of 50 short trials that report
// every 50 ms, while a driver SIGKILLs sweepd twice and one agent once at random moments and
// restarts them. Then: the sweep finished; every trial ended in a terminal state; every report an
// agent saw acknowledged (its --ack-log) is in the store, exactly once; no trial process is
// left; and PRAGMA integrity_check is ok.
//
// Each round writes its operations to a history file (kept when the round fails), and a round
// is a pure function of its seed, so a failure replays with --seed:
//   build/tests/chaos/chaos_test [--rounds N] [--seed S] [--history-dir DIR]

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "store/sqlite.h"
#include "tests/integration/cluster.h"
#include "tests/testing/subprocess.h"

namespace sweepd {
namespace {

using ::sweepd::testing::Cluster;
using ::sweepd::testing::ClusterOptions;
using ::sweepd::testing::CountProcessesWith;
using ::sweepd::testing::Int;
using ::sweepd::testing::Json;
using ::sweepd::testing::ReadFileText;
using ::sweepd::testing::WaitFor;

int g_rounds = 1;
uint64_t g_seed = 20261129;
std::string g_history_dir;

constexpr int kAgents = 3;
constexpr int kTrials = 50;
constexpr char kTag[] = "chaos-6e0f";

struct Op {
  double at;         // seconds after the sweep was submitted
  std::string what;  // "kill-sweepd" or "kill-agent-K"
};

// Two sweepd crashes and one agent crash at random moments of the sweep's first ~12 s.
std::vector<Op> Schedule(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> when(1.0, 12.0);
  std::vector<Op> ops = {{when(rng), "kill-sweepd"},
                         {when(rng), "kill-sweepd"},
                         {when(rng), "kill-agent-" + std::to_string(rng() % kAgents)}};
  std::sort(ops.begin(), ops.end(), [](const Op& a, const Op& b) { return a.at < b.at; });
  return ops;
}

void RunRound(uint64_t seed) {
  Cluster cluster(ClusterOptions{.agents = kAgents,
                                 .slots = 2,
                                 .agent_flags = {},
                                 .agent_env = {},
                                 .sweepd_flags = {"--agent_timeout=6", "--reattach_window=30"},
                                 .agent_ack_logs = true});
  const std::string history_path = (g_history_dir.empty() ? cluster.dir() : g_history_dir) +
                                   "/chaos-" + std::to_string(seed) + ".history";
  std::ofstream history(history_path);
  history << "seed " << seed << "\n";
  const std::string id = cluster.Submit(std::string(R"(
program: gang_node.py
method: random
metric: {name: loss}
run_cap: )") + std::to_string(kTrials) + R"(
parallelism: 6
max_retries: 5
max_failures: 100
parameters:
  mode: {value: ok}
  seconds: {value: 1.2}
  tag: {value: )" + kTag + R"(}
  x: {min: 0.0, max: 1.0}
)");
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  for (const Op& op : Schedule(seed)) {
    while (elapsed() < op.at) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    history << elapsed() << " " << op.what << "\n";
    history.flush();
    if (op.what == "kill-sweepd") {
      cluster.RestartSweepd();
    } else {
      const int agent = op.what.back() - '0';
      cluster.KillAgent(agent, SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      cluster.RestartAgent(agent);
    }
    history << elapsed() << " " << op.what << " done\n";
  }
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 180000)) << "history: " << history_path << "\n"
                                                            << cluster.Logs();
  history << elapsed() << " finished\n";

  // Every trial ended, none is left running anywhere.
  const Json status = cluster.Status(id);
  int64_t terminal = 0;
  for (const char* state : {"completed", "failed", "pruned", "lost", "canceled"}) {
    terminal += Int(status["counts"], state);
  }
  EXPECT_EQ(terminal, kTrials) << status.dump();
  EXPECT_GE(Int(status["counts"], "completed"), kTrials - 5) << status.dump();
  EXPECT_TRUE(WaitFor([] { return CountProcessesWith(kTag) == 0; }, 15000))
      << CountProcessesWith(kTag) << " trial processes left";

  // Every acknowledged report is stored, once.
  auto db = store::Connection::Open(cluster.db(), store::Connection::Mode::kReadOnly);
  ASSERT_TRUE(db.ok()) << db.status();
  auto integrity = (*db)->Prepare("PRAGMA integrity_check");
  ASSERT_TRUE(integrity.ok());
  auto row = integrity->Step();
  ASSERT_TRUE(row.ok() && *row);
  EXPECT_EQ(integrity->ColumnText(0), "ok");
  std::map<std::string, std::pair<int64_t, int64_t>> acked;  // (trial, first_seq) -> acked seq
  int64_t acks = 0;
  for (int i = 0; i < kAgents; ++i) {
    std::istringstream lines(ReadFileText(cluster.dir() + "/ack-" + std::to_string(i) + ".log"));
    std::string trial;
    int64_t first = 0, seq = 0;
    while (lines >> trial >> first >> seq) {
      ++acks;
      auto& entry = acked[trial + " " + std::to_string(first)];
      entry.first = first;
      entry.second = std::max(entry.second, seq);
    }
  }
  ASSERT_GT(acks, 0);
  int64_t reports_checked = 0;
  for (const auto& [key, range] : acked) {
    const std::string trial = key.substr(0, key.find(' '));
    auto count = (*db)->QueryInt(
        "SELECT COUNT(*) FROM metrics m JOIN trials t ON t.id = m.trial_id JOIN metric_names n "
        "ON n.id = m.name_id WHERE t.public_id = '" +
        trial + "' AND n.name = 'loss' AND m.seq BETWEEN " + std::to_string(range.first) + " AND " +
        std::to_string(range.second));
    ASSERT_TRUE(count.ok()) << count.status();
    EXPECT_EQ(*count, range.second - range.first + 1)
        << trial << ": acknowledged seqs " << range.first << ".." << range.second
        << " are not all stored (history: " << history_path << ")";
    reports_checked += range.second - range.first + 1;
  }
  auto duplicates = (*db)->QueryInt(
      "SELECT COUNT(*) FROM (SELECT trial_id, name_id, seq FROM metrics GROUP BY 1, 2, 3 "
      "HAVING COUNT(*) > 1)");
  ASSERT_TRUE(duplicates.ok());
  EXPECT_EQ(*duplicates, 0);
  history << "checked " << reports_checked << " acknowledged reports of " << acked.size()
          << " trial attempts\n";
  std::printf(
      "chaos round seed=%llu: %lld acknowledged reports of %zu trial attempts found "
      "once each; counts %s\n",
      static_cast<unsigned long long>(seed), static_cast<long long>(reports_checked), acked.size(),
      status["counts"].dump().c_str());
  if (!::testing::Test::HasFailure() && g_history_dir.empty())
    std::filesystem::remove(history_path);
}

TEST(ChaosTest, CrashesOfSweepdAndAnAgentLoseNothingAcknowledged) {
  for (int round = 0; round < g_rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round) + " seed " + std::to_string(g_seed + round));
    RunRound(g_seed + static_cast<uint64_t>(round));
    if (::testing::Test::HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace sweepd

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--rounds" && i + 1 < argc) {
      sweepd::g_rounds = std::atoi(argv[++i]);
    } else if (flag == "--seed" && i + 1 < argc) {
      sweepd::g_seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (flag == "--history-dir" && i + 1 < argc) {
      sweepd::g_history_dir = argv[++i];
    } else {
      std::fprintf(stderr, "usage: chaos_test [--rounds N] [--seed S] [--history-dir DIR]\n");
      return 2;
    }
  }
  return RUN_ALL_TESTS();
}
