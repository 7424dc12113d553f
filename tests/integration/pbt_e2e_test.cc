// Population-based training end to end: real sweepd, two agents on loopback with node-local
// checkpoints, a population of real processes (scripts/pbt_toy.py) that checkpoint through the
// Python client. A member that falls into the bottom quantile at an interval boundary stops,
// and a copy of a top member's checkpoint, with its lr multiplied by 0.8 or 1.2, takes its
// place: it starts from exactly the state its parent saved at that step, on the node that has
// the parent's files, and its lineage is shown by `sweepctl trial`.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/store.h"
#include "tests/integration/cluster.h"

namespace sweepd {
namespace {

using ::sweepd::testing::Cluster;
using ::sweepd::testing::ClusterOptions;
using ::sweepd::testing::Json;
using ::sweepd::testing::WaitFor;
using ::testing::HasSubstr;
using ::testing::StartsWith;

double Param(const v1::Trial& trial, const std::string& name) {
  for (const auto& p : trial.params()) {
    if (p.name() == name) return std::stod(p.value_json());
  }
  ADD_FAILURE() << trial.id() << " has no parameter " << name;
  return NAN;
}

// The trial's stored curve of `metric`, by step.
std::map<int64_t, double> Curve(store::Store& store, const std::string& trial_id,
                                const std::string& metric) {
  std::map<int64_t, double> curve;
  auto detail = store.GetTrial(trial_id, {metric}, 0);
  EXPECT_TRUE(detail.ok()) << detail.status();
  if (!detail.ok() || detail->curves.empty()) return curve;
  for (const auto& p : detail->curves[0].points()) curve[p.step()] = p.value();
  return curve;
}

// Runs a population of 4 (lr uniform in [0.01, 0.6], 15 steps, decisions every 3) to the end and
// checks every copy it made; returns how many. `meanwhile` runs once it is submitted.
int RunAndCheckPopulation(Cluster& cluster, const std::string& checkpoint,
                          const std::function<void(const std::string&)>& meanwhile = nullptr,
                          double step_sleep = 0.05) {
  const std::string id = cluster.Submit(absl::StrCat(R"(
program: pbt_toy.py
method: pbt
seed: 3
metric: {name: loss, goal: minimize}
)",
                                                     checkpoint, R"(
pbt: {population_size: 4, interval: 3, quantile: 0.25, resample_probability: 0, perturb_factors: [0.8, 1.2]}
parameters:
  lr: {distribution: uniform, min: 0.01, max: 0.6}
  steps: {value: 15}
  step_sleep: {value: )",
                                                     step_sleep, R"(}
  sync_dir: {value: )",
                                                     cluster.dir(), R"(/sync}
)"));
  if (meanwhile) meanwhile(id);
  EXPECT_TRUE(cluster.WaitForState(id, "finished", 240000)) << cluster.Logs();

  auto store = store::Store::Open({.path = cluster.db()});
  EXPECT_TRUE(store.ok()) << store.status();
  if (!store.ok()) return 0;
  auto page = (*store)->ListTrials({.sweep_public_id = id, .limit = 1000});
  EXPECT_TRUE(page.ok()) << page.status();
  if (!page.ok()) return 0;
  std::map<std::string, v1::Trial> trials;
  int first_generation = 0;
  for (const auto& t : page->trials) {
    trials[t.id()] = t;
    if (t.parent_trial_id().empty()) ++first_generation;
  }
  EXPECT_EQ(first_generation, 4) << "the population is population_size random trials";

  int copies = 0;
  for (const auto& [trial_id, copy] : trials) {
    if (copy.parent_trial_id().empty()) continue;
    ++copies;
    SCOPED_TRACE(trial_id);
    EXPECT_TRUE(trials.contains(copy.parent_trial_id()));
    EXPECT_TRUE(trials.contains(copy.replaced_trial_id()));
    if (!trials.contains(copy.parent_trial_id()) || !trials.contains(copy.replaced_trial_id())) {
      continue;
    }
    const v1::Trial& parent = trials.at(copy.parent_trial_id());
    const v1::Trial& replaced = trials.at(copy.replaced_trial_id());
    EXPECT_NE(copy.parent_trial_id(), copy.replaced_trial_id());
    // The replaced member stopped, as pruned, saying why and by whom.
    EXPECT_EQ(replaced.state(), v1::TRIAL_STATE_PRUNED);
    // ("pbt: in the bottom 25% at step 5 (0.3); replaced by ...", or after a sweepd restart
    // that lost the stop, "pbt: replaced by ..., said again after a sweepd restart".)
    EXPECT_THAT(replaced.reason(), StartsWith("pbt: "));
    EXPECT_THAT(replaced.reason(),
                HasSubstr(absl::StrCat("replaced by ", trial_id, ", a copy of ",
                                       copy.parent_trial_id(), " at step ", copy.parent_step())));
    // A copy is a member like the others: it runs to the end, or is replaced in turn.
    const bool replaced_in_turn = copy.state() == v1::TRIAL_STATE_PRUNED;
    if (replaced_in_turn) {
      EXPECT_THAT(copy.reason(), StartsWith("pbt: in the bottom 25%"));
    } else {
      EXPECT_EQ(copy.state(), v1::TRIAL_STATE_COMPLETED) << copy.reason();
    }
    // Explore (Ray's, resample_probability 0): lr times 0.8 or 1.2, kept in [0.01, 0.6].
    const double ratio = Param(copy, "lr") / Param(parent, "lr");
    const double clipped = std::clamp(Param(parent, "lr") * ratio, 0.01, 0.6);
    EXPECT_TRUE(std::abs(ratio - 0.8) < 1e-9 || std::abs(ratio - 1.2) < 1e-9 ||
                std::abs(Param(copy, "lr") - clipped) < 1e-12)
        << "lr " << Param(parent, "lr") << " -> " << Param(copy, "lr");
    EXPECT_EQ(Param(copy, "steps"), Param(parent, "steps"));
    EXPECT_EQ(Param(copy, "step_sleep"), Param(parent, "step_sleep"));
    // Exploit: it started from the parent's checkpoint at parent_step, exactly, and its curve
    // goes on from the step after.
    const auto parent_w = Curve(**store, parent.id(), "w");
    const auto copy_w_prev = Curve(**store, trial_id, "w_prev");
    // (A copy of a parent's last checkpoint, at step 14, has nothing left to run.)
    EXPECT_TRUE(!copy_w_prev.empty() || copy.parent_step() == 14) << copy.parent_step();
    EXPECT_TRUE(parent_w.contains(copy.parent_step()));
    if (!copy_w_prev.empty() && parent_w.contains(copy.parent_step())) {
      EXPECT_EQ(copy_w_prev.begin()->first, copy.parent_step() + 1);
      EXPECT_EQ(copy_w_prev.begin()->second, parent_w.at(copy.parent_step()))
          << "the copy did not start from its parent's state at step " << copy.parent_step();
      if (!replaced_in_turn) {
        EXPECT_EQ(Curve(**store, trial_id, "loss").rbegin()->first, 14);
      }
    }
    // Without a shared checkpoint.dir the copy runs where its parent's files are.
    EXPECT_GT(copy.agent_ids_size(), 0);
    EXPECT_GT(parent.agent_ids_size(), 0);
    if (checkpoint.empty() && copy.agent_ids_size() > 0 && parent.agent_ids_size() > 0) {
      EXPECT_EQ(copy.agent_ids(0), parent.agent_ids(0));
    }

    // `sweepctl trial` shows the lineage.
    auto shown = cluster.Sweepctl({"trial", trial_id});
    EXPECT_EQ(shown.exit_code, 0) << shown.err;
    EXPECT_THAT(shown.out,
                HasSubstr(absl::StrCat("copy of ", parent.id(), " at step ", copy.parent_step())));
    EXPECT_THAT(shown.out, HasSubstr(absl::StrCat("replaced ", replaced.id())));
  }
  std::printf("%d copies in %zu trials\n", copies, trials.size());
  // Every member still in the population ran to the end.
  for (const auto& [trial_id, t] : trials) {
    if (t.state() == v1::TRIAL_STATE_PRUNED) continue;
    EXPECT_EQ(t.state(), v1::TRIAL_STATE_COMPLETED) << trial_id << ": " << t.reason();
  }
  return copies;
}

// One agent: a replaced member's slot is where its copy starts, at once.
TEST(PbtE2eTest, BottomMembersAreReplacedByPerturbedCopiesOfTopCheckpoints) {
  Cluster cluster(ClusterOptions{.agents = 1, .slots = 4});
  EXPECT_GE(RunAndCheckPopulation(cluster, ""), 1) << "no member was replaced: " << cluster.Logs();
}

// Two agents, node-local checkpoints: a copy waits for a slot on its parent's node, and starts
// from the parent's files there.
TEST(PbtE2eTest, WithNodeLocalCheckpointsACopyRunsOnItsParentsNode) {
  Cluster cluster(ClusterOptions{.agents = 2, .slots = 2});
  EXPECT_GE(RunAndCheckPopulation(cluster, ""), 1) << "no member was replaced: " << cluster.Logs();
}

// A shared checkpoint.dir: a copy starts wherever a slot is free.
TEST(PbtE2eTest, WithASharedCheckpointDirACopyRunsAnywhere) {
  Cluster cluster(ClusterOptions{.agents = 2, .slots = 2});
  EXPECT_GE(RunAndCheckPopulation(
                cluster, absl::StrCat("checkpoint: {dir: ", cluster.dir(), "/checkpoints}")),
            1)
      << "no member was replaced: " << cluster.Logs();
}

// sweepd is killed (-9) once the population has made a copy, and started again: the copies
// made before are rebuilt from the store (their lineage, pins and placement), a replaced member
// whose stop was not yet stored is stopped again, and the sweep ends with every copy having
// started from exactly its parent's state.
TEST(PbtE2eTest, ASweepdKilledMidPopulationRebuildsItsLineage) {
  Cluster cluster(ClusterOptions{.agents = 1, .slots = 4});
  bool restarted = false;
  const int copies = RunAndCheckPopulation(
      cluster, "",
      [&](const std::string& id) {
        const bool copied = WaitFor(
            [&] {
              for (const Json& t : cluster.Trials(id)) {
                if (!t.value("parent_trial_id", "").empty()) return true;
              }
              return false;
            },
            120000);
        ASSERT_TRUE(copied) << cluster.Logs();
        cluster.RestartSweepd();
        restarted = true;
      },
      /*step_sleep=*/0.3);
  EXPECT_TRUE(restarted);
  EXPECT_GE(copies, 1);
}

// `sweepctl simulate` on a pbt spec, as a user tries one before spending GPUs: the population
// with exploit and explore against the same population never exploited, at the same GPU-hours.
TEST(PbtSimulateTest, SweepctlSimulateComparesPbtWithItsFirstGeneration) {
  const std::string dir = ::testing::TempDir();
  const std::string spec = dir + "/pbt-simulate.yaml";
  std::ofstream(spec) << R"(
method: pbt
seed: 2
command: [run]
metric: {name: loss}
pbt: {population_size: 16, interval: 10}
parameters:
  lr: {distribution: log_uniform_values, min: 0.0001, max: 1}
  dropout: {min: 0.0, max: 0.5}
)";
  auto r = ::sweepd::testing::RunProcess({::sweepd::testing::BinaryPath("cli/sweepctl"), "simulate",
                                          spec, "--workers", "16", "--steps", "100", "--output",
                                          "json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const Json doc = Json::parse(r.out, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << r.out;
  const Json& pbt = doc["with_pruning"];
  const Json& first_generation = doc["without_pruning"];
  EXPECT_EQ(pbt["trials"], 16);
  EXPECT_EQ(first_generation["trials"], 16);
  EXPECT_GT(pbt["pbt_copies"].get<int64_t>(), 0);
  EXPECT_EQ(first_generation["pbt_copies"], 0);
  EXPECT_LT(pbt["best_value"].get<double>(), first_generation["best_value"].get<double>());
  EXPECT_NEAR(pbt["gpu_hours"].get<double>(), first_generation["gpu_hours"].get<double>(),
              0.1 * first_generation["gpu_hours"].get<double>());
}

}  // namespace
}  // namespace sweepd
