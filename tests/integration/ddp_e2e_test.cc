// Real distributed training end to end: examples/ddp/train.py (PyTorch DDP, gloo on CPU) as a
// two-node trial on two agents on loopback, launched by `launcher: torchrun`. The reported value
// must be the mean of the two ranks' local values, and a pruned trial must stop on both nodes.
// Needs Debian's python3-torch and python3-sklearn under /usr/bin/python3 (scripts/install-deps).

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

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
using ::sweepd::testing::Json;
using ::sweepd::testing::ReadFileText;
using ::sweepd::testing::RunProcess;
using ::sweepd::testing::SourcePath;
using ::sweepd::testing::WaitFor;

constexpr char kPython[] = "/usr/bin/python3";

// Each rank's local_metrics.jsonl lines for the sweep's only trial: rank -> epoch -> val_loss.
std::map<int, std::map<int, double>> LocalValues(const Cluster& cluster, const std::string& sweep) {
  std::map<int, std::map<int, double>> out;
  for (int agent = 0; agent < 2; ++agent) {
    const auto dir =
        std::filesystem::path(cluster.dir()) / ("work-" + std::to_string(agent)) / sweep;
    std::error_code ec;
    for (const auto& trial : std::filesystem::directory_iterator(dir, ec)) {
      std::istringstream lines(ReadFileText((trial.path() / "local_metrics.jsonl").string()));
      std::string line;
      while (std::getline(lines, line)) {
        Json j = Json::parse(line);
        out[j["rank"].get<int>()][j["epoch"].get<int>()] = j["val_loss"].get<double>();
      }
    }
  }
  return out;
}

class DdpE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto probe = RunProcess({kPython, "-c", "import torch, sklearn"});
    ASSERT_EQ(probe.exit_code, 0)
        << "the DDP tests need python3-torch and python3-sklearn (scripts/install-deps): "
        << probe.err;
  }

  static ClusterOptions Options(std::vector<std::string> env = {}) {
    return ClusterOptions{.agents = 2,
                          .slots = 1,
                          .agent_flags = {std::string("--interpreter=") + kPython},
                          .agent_env = std::move(env),
                          .code_dir = SourcePath("examples/ddp")};
  }

  static std::string Spec(const std::string& extra) {
    return std::string("program: train.py") + R"(
method: random
metric: {name: val_loss}
launcher: torchrun
resources: {nodes: 2, gpus_per_node: 1}
run_cap: 1
)" + extra;
  }
};

TEST_F(DdpE2eTest, TwoNodeTrialReportsTheMeanOfItsRanks) {
  Cluster cluster(Options());
  const std::string id = cluster.Submit(Spec(R"(
parameters:
  lr: {value: 0.05}
  hidden: {value: 32}
  epochs: {value: 3}
)"));
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 120000)) << cluster.Logs();
  auto store = store::Store::Open({.path = cluster.db()});
  ASSERT_TRUE(store.ok());
  auto trials = (*store)->ListTrials({.sweep_public_id = id});
  ASSERT_TRUE(trials.ok());
  ASSERT_EQ(trials->trials.size(), 1u);
  EXPECT_EQ(trials->trials[0].state(), v1::TRIAL_STATE_COMPLETED) << cluster.Logs();
  auto detail = (*store)->GetTrial(trials->trials[0].id(), {"val_loss"}, 0);
  ASSERT_TRUE(detail.ok());
  ASSERT_EQ(detail->curves.size(), 1u);
  const auto local = LocalValues(cluster, id);
  ASSERT_EQ(local.size(), 2u) << "both ranks trained";
  ASSERT_EQ(detail->curves[0].points_size(), 3);
  for (const auto& point : detail->curves[0].points()) {
    const int epoch = static_cast<int>(point.step());
    const double r0 = local.at(0).at(epoch), r1 = local.at(1).at(epoch);
    EXPECT_NE(r0, r1) << "each rank evaluates its own shard";
    EXPECT_NEAR(point.value(), (r0 + r1) / 2, 1e-9 * std::abs(r0 + r1)) << "epoch " << epoch;
  }
}

TEST_F(DdpE2eTest, APrunedTwoNodeTrialStopsOnBothNodes) {
  Cluster cluster(Options({"DDP_EPOCH_SLEEP=0.3"}));
  // The threshold pruner stops any trial whose loss is above 0.01 at its second report.
  const std::string id = cluster.Submit(Spec(R"(
pruner: {type: threshold, upper: 0.01, n_warmup_steps: 1}
parameters:
  lr: {value: 0.05}
  hidden: {value: 32}
  epochs: {value: 60}
  tag: {value: ddp-prune-91b2}
)"));
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 120000)) << cluster.Logs();
  EXPECT_EQ(::sweepd::testing::Int(cluster.Status(id)["counts"], "pruned"), 1) << cluster.Logs();
  // Every rank left at the same epoch, long before the 60th, and no process is left behind.
  const auto local = LocalValues(cluster, id);
  ASSERT_EQ(local.size(), 2u);
  EXPECT_EQ(local.at(0).size(), local.at(1).size());
  EXPECT_LT(local.at(0).size(), 10u);
  EXPECT_TRUE(WaitFor([] { return CountProcessesWith("ddp-prune-91b2") == 0; }, 20000));
}

}  // namespace
}  // namespace sweepd
