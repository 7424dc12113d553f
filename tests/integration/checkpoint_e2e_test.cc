// Checkpoints end to end: real sweepd and agents on loopback, a real training loop
// (scripts/resumable.py) that saves a checkpoint at every step through the Python client. A trial
// whose node dies, or whose agent is stopped, runs again on the other agent from its last
// checkpoint, and its curve holds every step exactly once.

#include <signal.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
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
using ::sweepd::testing::CountProcessesWith;
using ::sweepd::testing::Int;
using ::sweepd::testing::Json;
using ::sweepd::testing::ReadFileText;
using ::sweepd::testing::WaitFor;
using ::testing::HasSubstr;

// What a dead node leaves: every process of the trial killed at once, the shim included.
void KillProcessesWith(const std::string& marker) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = ReadFileText(entry.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(marker) != std::string::npos) kill(std::stoi(name), SIGKILL);
  }
}

std::string Spec(const std::string& checkpoint_dir, const std::string& tag,
                 bool use_checkpoints = true) {
  return absl::StrCat(R"(
program: resumable.py
method: grid
metric: {name: loss}
max_retries: 2
checkpoint: {dir: )",
                      checkpoint_dir, R"(}
parameters:
  steps: {value: 10}
  hold_at: {value: 4}
  use_checkpoints: {value: )",
                      use_checkpoints ? "true" : "false", R"(}
  tag: {value: )",
                      tag, R"(}
)");
}

// `sweepctl trial ID -o json`.
Json TrialJson(Cluster& cluster, const std::string& trial_id) {
  auto r = cluster.Sweepctl({"trial", trial_id, "--output", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return Json::parse(r.out, nullptr, false);
}

// Whether sweepd stores `step` as the trial's checkpoint within 30 s.
bool WaitForCheckpoint(Cluster& cluster, const std::string& trial_id, int64_t step) {
  return WaitFor(
      [&] { return Int(TrialJson(cluster, trial_id)["trial"], "checkpoint_step") == step; }, 30000);
}

// The one trial's folder under the checkpoint dir, once its first attempt holds at hold_at.
std::string WaitUntilHeld(const std::string& checkpoint_root) {
  std::string folder;
  WaitFor(
      [&] {
        if (!std::filesystem::exists(checkpoint_root)) return false;
        for (const auto& e : std::filesystem::recursive_directory_iterator(checkpoint_root)) {
          if (e.path().filename() == "held") {
            folder = e.path().parent_path().string();
            return true;
          }
        }
        return false;
      },
      60000);
  return folder;
}

// The trial's stored curve of `metric`: step -> how many times it is stored, and the values.
struct Curve {
  std::map<int64_t, int> count;
  std::map<int64_t, double> value;
};
Curve StoredCurve(const std::string& db, const std::string& trial_id, const std::string& metric) {
  Curve curve;
  auto store = store::Store::Open({.path = db});
  EXPECT_TRUE(store.ok()) << store.status();
  if (!store.ok()) return curve;
  auto detail = (*store)->GetTrial(trial_id, {metric}, 0);
  EXPECT_TRUE(detail.ok()) << detail.status();
  if (!detail.ok() || detail->curves.empty()) return curve;
  for (const auto& p : detail->curves[0].points()) {
    ++curve.count[p.step()];
    curve.value[p.step()] = p.value();
  }
  return curve;
}

// Steps 0..9, each once, with the loss the script reports at it.
void ExpectWholeCurve(const Curve& loss) {
  ASSERT_EQ(loss.count.size(), 10u);
  for (int64_t step = 0; step < 10; ++step) {
    EXPECT_EQ(loss.count.at(step), 1) << "step " << step << " stored more than once";
    EXPECT_DOUBLE_EQ(loss.value.at(step), 1.0 / static_cast<double>(step + 1)) << step;
  }
}

int AgentIndex(const std::string& agent_id) { return agent_id == "agent-0" ? 0 : 1; }

// The node running the trial dies (its agent and the trial's processes SIGKILLed). sweepd
// declares the trial lost after the dead-agent timeout, and the other agent runs it again from
// the checkpoint sweepd recorded: steps 5..9, with the state the checkpoint carried.
TEST(CheckpointE2eTest, ATrialWhoseNodeDiesResumesFromItsCheckpointOnAnotherAgent) {
  Cluster cluster(ClusterOptions{.agents = 2, .slots = 1, .sweepd_flags = {"--agent_timeout=2"}});
  const std::string root = cluster.dir() + "/shared-ckpt";
  const std::string id = cluster.Submit(Spec(root, "ckpt-kill-5e21"));
  const std::string folder = WaitUntilHeld(root);
  ASSERT_FALSE(folder.empty()) << cluster.Logs();
  const std::string trial_id = std::filesystem::path(folder).filename();
  // The script heard back from its agent; wait until sweepd has stored the checkpoint too.
  ASSERT_TRUE(WaitForCheckpoint(cluster, trial_id, 4)) << cluster.Logs();
  const Json first = TrialJson(cluster, trial_id)["trial"];
  ASSERT_EQ(first["agent_ids"].size(), 1u);
  const int victim = AgentIndex(first["agent_ids"][0]);
  cluster.KillAgent(victim, SIGKILL);
  KillProcessesWith("ckpt-kill-5e21");

  ASSERT_TRUE(cluster.WaitForState(id, "finished", 120000)) << cluster.Logs();
  const Json trial = TrialJson(cluster, trial_id);
  EXPECT_EQ(trial["trial"]["state"], "completed") << trial.dump();
  EXPECT_EQ(Int(trial["trial"], "attempt"), 2);
  EXPECT_EQ(trial["trial"]["agent_ids"][0], absl::StrCat("agent-", 1 - victim));
  EXPECT_EQ(Int(trial["trial"], "checkpoint_step"), 9);
  // Attempt 2 began after the checkpoint at step 4, in the same folder.
  EXPECT_EQ(ReadFileText(folder + "/starts.log"), "1 0\n2 5\n");
  EXPECT_THAT(trial.dump(), HasSubstr("resumes from its checkpoint at step 4")) << trial.dump();
  ExpectWholeCurve(StoredCurve(cluster.db(), trial_id, "loss"));
  // `total` only reaches 0+1+...+9 if attempt 2 started from attempt 1's state.
  const Curve total = StoredCurve(cluster.db(), trial_id, "total");
  ASSERT_EQ(total.value.count(9), 1u);
  EXPECT_EQ(total.value.at(9), 45);
  // The last checkpoint stays (older ones go once the agent says a newer one is stored).
  EXPECT_TRUE(std::filesystem::exists(folder + "/ckpt-9-checkpoint.pt"));
}

// The agent is stopped (SIGTERM, as Slurm or Kubernetes stop a node): the trial hears it is
// preempted, keeps its checkpoint and exits within the grace period; sweepd requeues it at once
// (no dead-agent timeout) and the other agent resumes it.
TEST(CheckpointE2eTest, APreemptedTrialCheckpointsWithinItsGraceAndResumesElsewhere) {
  Cluster cluster(ClusterOptions{.agents = 2,
                                 .slots = 1,
                                 .agent_flags = {"--stop_grace=120"},
                                 .sweepd_flags = {"--agent_timeout=600"}});
  const std::string root = cluster.dir() + "/shared-ckpt";
  const std::string id = cluster.Submit(Spec(root, "ckpt-term-77a0"));
  const std::string folder = WaitUntilHeld(root);
  ASSERT_FALSE(folder.empty()) << cluster.Logs();
  const std::string trial_id = std::filesystem::path(folder).filename();
  ASSERT_TRUE(WaitForCheckpoint(cluster, trial_id, 4)) << cluster.Logs();
  const int victim = AgentIndex(TrialJson(cluster, trial_id)["trial"]["agent_ids"][0]);
  cluster.SignalAgent(victim, SIGTERM);
  // With a 120 s grace, the agent is gone well within it only because the trial left by itself.
  const int status = cluster.WaitAgentExit(victim, 100000);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << cluster.Logs();
  EXPECT_EQ(ReadFileText(folder + "/preempted"), "4\n");

  ASSERT_TRUE(cluster.WaitForState(id, "finished", 120000)) << cluster.Logs();
  const Json trial = TrialJson(cluster, trial_id);
  EXPECT_EQ(trial["trial"]["state"], "completed") << trial.dump();
  EXPECT_EQ(Int(trial["trial"], "attempt"), 2);
  EXPECT_EQ(trial["trial"]["agent_ids"][0], absl::StrCat("agent-", 1 - victim));
  EXPECT_EQ(ReadFileText(folder + "/starts.log"), "1 0\n2 5\n");
  EXPECT_THAT(trial.dump(), HasSubstr("shutting down"));
  EXPECT_THAT(trial.dump(), HasSubstr("resumes from its checkpoint at step 4"));
  ExpectWholeCurve(StoredCurve(cluster.db(), trial_id, "loss"));
  EXPECT_EQ(StoredCurve(cluster.db(), trial_id, "total").value.at(9), 45);
}

// Without checkpoints a retry starts over: the earlier attempt's reports are dropped (the curve
// still has each step once) and its GPU time counts as redone.
TEST(CheckpointE2eTest, ARetryWithoutACheckpointStartsOverAndItsCurveHasEachStepOnce) {
  Cluster cluster(ClusterOptions{.agents = 2, .slots = 1, .sweepd_flags = {"--agent_timeout=2"}});
  const std::string root = cluster.dir() + "/shared-ckpt";
  const std::string id = cluster.Submit(Spec(root, "ckpt-none-19c4", /*use_checkpoints=*/false));
  const std::string folder = WaitUntilHeld(root);
  ASSERT_FALSE(folder.empty()) << cluster.Logs();
  const std::string trial_id = std::filesystem::path(folder).filename();
  // Every report up to the hold is stored before the node dies.
  ASSERT_TRUE(WaitFor(
      [&] {
        const Curve loss = StoredCurve(cluster.db(), trial_id, "loss");
        return loss.count.size() == 5;
      },
      30000))
      << cluster.Logs();
  const int victim = AgentIndex(TrialJson(cluster, trial_id)["trial"]["agent_ids"][0]);
  cluster.KillAgent(victim, SIGKILL);
  KillProcessesWith("ckpt-none-19c4");

  ASSERT_TRUE(cluster.WaitForState(id, "finished", 120000)) << cluster.Logs();
  const Json trial = TrialJson(cluster, trial_id);
  EXPECT_EQ(Int(trial["trial"], "attempt"), 2);
  EXPECT_FALSE(trial["trial"].contains("checkpoint_step")) << trial.dump();
  EXPECT_EQ(ReadFileText(folder + "/starts.log"), "1 0\n2 0\n");
  EXPECT_THAT(trial.dump(), HasSubstr("starts over (no checkpoint)"));
  EXPECT_GT(trial["trial"].value("gpu_seconds_redone", 0.0), 0.0) << trial.dump();
  ExpectWholeCurve(StoredCurve(cluster.db(), trial_id, "loss"));
  EXPECT_EQ(StoredCurve(cluster.db(), trial_id, "total").value.at(9), 45);
}

// The steps every trial of the sweep ran (lines of steps.log, redone ones included).
int StepsRun(const std::string& checkpoint_root) {
  int steps = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(checkpoint_root)) {
    if (e.path().filename() != "steps.log") continue;
    const std::string text = ReadFileText(e.path());
    steps += static_cast<int>(std::count(text.begin(), text.end(), '\n'));
  }
  return steps;
}

// ASHA with promotion end to end, against ASHA that kills, on a seeded toy problem (loss =
// 1/(step+1) + 1000 (x-0.3)^2, a grid of 9 x at distinct distances from 0.3, so the step a
// value is taken at never reorders trials; one slot so the order is fixed): trials pause at the
// rungs and promoted ones resume from their checkpoints; both find x = 0.3. The expected
// promotions and outcomes come from a separate model of the two published rules
// (tests/pruning/asha_modes_model.py: Optuna's successive-halving stop rule; Li et al.'s
// Algorithm 2: 6 promotions, only x = 0.3 past the last rung).
TEST(PromotionE2eTest, PromotionAshaPausesAndResumesAndFindsTheKillModeBest) {
  Cluster cluster(ClusterOptions{.agents = 1, .slots = 1});
  struct Run {
    std::string id;
    std::string root;
  };
  std::map<std::string, Run> runs;
  for (const std::string mode : {"stop", "promotion"}) {
    const std::string root = cluster.dir() + "/ckpt-" + mode;
    const std::string id = cluster.Submit(absl::StrCat(R"(
program: resumable.py
method: grid
metric: {name: loss}
checkpoint: {dir: )",
                                                       root, R"(}
pruner: {type: asha, min_resource: 1, max_resource: 9, reduction_factor: 3, mode: )",
                                                       mode, R"(}
parameters:
  steps: {value: 9}
  hold_at: {value: -1}
  scale: {value: 1000}
  x: {values: [0.95, 0.7, 0.55, 0.3, 0.1, 0.8, 0.62, 0.4, 0.22]}
)"));
    ASSERT_TRUE(cluster.WaitForState(id, "finished", 180000)) << cluster.Logs();
    runs[mode] = {id, root};
  }
  auto best_x = [&](const std::string& sweep) {
    const Json status = cluster.Status(sweep);
    const Json trial = TrialJson(cluster, status.value("best_trial_id", ""))["trial"];
    for (const auto& p : trial["params"]) {
      if (p["name"] == "x") return p["value_json"].get<std::string>();
    }
    return std::string("none");
  };
  EXPECT_EQ(best_x(runs["stop"].id), "0.3");
  EXPECT_EQ(best_x(runs["promotion"].id), "0.3");
  // The steps each ran are not compared exactly: a trial runs on for the few milliseconds a
  // decision takes to reach it, however many steps that is (here 55 and 31 plus those). They are
  // printed for the record; simulator_test compares the modes' cost in virtual time.
  std::printf(
      "steps run: stop %d (55 by the rule), promotion %d (33 by the rule); GPU-seconds: stop "
      "%.2f, promotion %.2f\n",
      StepsRun(runs["stop"].root), StepsRun(runs["promotion"].root),
      cluster.Status(runs["stop"].id).value("gpu_seconds_used", 0.0),
      cluster.Status(runs["promotion"].id).value("gpu_seconds_used", 0.0));

  const Json status = cluster.Status(runs["promotion"].id);
  EXPECT_EQ(Int(status["counts"], "paused"), 0);
  EXPECT_EQ(Int(status["counts"], "completed") + Int(status["counts"], "pruned"), 9);
  EXPECT_EQ(Int(status["counts"], "completed"), 1);  // only x = 0.3 went past the last rung
  int paused = 0, promoted = 0;
  auto store = store::Store::Open({.path = cluster.db()});
  ASSERT_TRUE(store.ok());
  auto trials = (*store)->ListTrials({.sweep_public_id = runs["promotion"].id, .limit = 100});
  ASSERT_TRUE(trials.ok());
  for (const auto& t : trials->trials) {
    const std::string events = TrialJson(cluster, t.id()).dump();
    if (events.find("\"to_state\":\"paused\"") != std::string::npos) ++paused;
    promoted += t.promotions();
    // A promoted trial's curve goes on from its checkpoint: every step once, from 0.
    auto detail = (*store)->GetTrial(t.id(), {"loss"}, 0);
    ASSERT_TRUE(detail.ok());
    ASSERT_EQ(detail->curves.size(), 1u);
    int64_t expected = 0;
    for (const auto& point : detail->curves[0].points()) {
      EXPECT_EQ(point.step(), expected++) << t.id() << ": a step missing or stored twice";
    }
  }
  EXPECT_EQ(paused, 9) << "every trial pauses at a rung at least once";
  EXPECT_EQ(promoted, 6);
}

// The checkpoint policy. keep_best: once the sweep ends, only the best trials' checkpoints stay
// (on the shared folder). delete_pruned_after_hours: a pruned trial's node-local checkpoints go
// that long after it was pruned, while the sweep runs on; completed trials keep theirs.
TEST(CheckpointPolicyE2eTest, OnlyTheBestKeepTheirCheckpointsAndPrunedOnesLoseThemInTime) {
  Cluster cluster(ClusterOptions{.agents = 2, .slots = 1});
  const std::string root = cluster.dir() + "/shared-ckpt";
  const std::string kept = cluster.Submit(absl::StrCat(R"(
program: resumable.py
method: grid
metric: {name: loss}
checkpoint: {dir: )",
                                                       root, R"(, keep_best: 1}
parameters:
  steps: {value: 4}
  hold_at: {value: -1}
  x: {values: [0.5, 0.3, 0.1]}
)"));
  ASSERT_TRUE(cluster.WaitForState(kept, "finished", 60000)) << cluster.Logs();
  const std::string best = cluster.Status(kept).value("best_trial_id", "");
  ASSERT_EQ(best, kept + "-0001");  // x = 0.3
  auto folders = [](const std::filesystem::path& dir) {
    std::set<std::string> names;
    if (!std::filesystem::exists(dir)) return names;
    for (const auto& e : std::filesystem::directory_iterator(dir))
      names.insert(e.path().filename());
    return names;
  };
  ASSERT_TRUE(
      WaitFor([&] { return folders(root + "/" + kept) == std::set<std::string>{best}; }, 30000))
      << "left: " << folders(root + "/" + kept).size() << "\n"
      << cluster.Logs();
  for (const char* number : {"-0000", "-0002"}) {
    const Json trial = TrialJson(cluster, kept + number);
    EXPECT_EQ(trial["trial"].value("checkpoint_deleted", false), true) << trial.dump();
    EXPECT_THAT(trial.dump(), HasSubstr("not among the sweep's best 1 (checkpoint.keep_best)"));
  }
  EXPECT_FALSE(TrialJson(cluster, best)["trial"].value("checkpoint_deleted", false));

  // One trial at a time, best first: the later, worse ones are pruned at the first rung.
  const std::string pruned = cluster.Submit(R"(
program: resumable.py
method: grid
metric: {name: loss}
parallelism: 1
checkpoint: {delete_pruned_after_hours: 0.0003}
pruner: {type: asha, min_resource: 1, max_resource: 4, reduction_factor: 3}
parameters:
  steps: {value: 4}
  hold_at: {value: -1}
  x: {values: [0.3, 0.5, 0.7]}
)");
  ASSERT_TRUE(cluster.WaitForState(pruned, "finished", 60000)) << cluster.Logs();
  auto local_checkpoint = [&](const Json& trial) {
    return absl::StrCat(trial["workdir"].get<std::string>(), "/checkpoint");
  };
  int pruned_count = 0;
  for (const Json& t : cluster.Trials(pruned)) {
    const Json trial = TrialJson(cluster, t["id"])["trial"];
    if (trial["state"] == "pruned") {
      ++pruned_count;
      EXPECT_TRUE(WaitFor([&] { return !std::filesystem::exists(local_checkpoint(trial)); }, 30000))
          << trial.dump() << cluster.Logs();
    } else {
      EXPECT_EQ(trial["state"], "completed");
      EXPECT_TRUE(std::filesystem::exists(local_checkpoint(trial))) << trial.dump();
    }
  }
  EXPECT_GE(pruned_count, 1);
}

}  // namespace
}  // namespace sweepd
