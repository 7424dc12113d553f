// End to end with the real binaries: one sweepd and two sweep-agent processes on loopback,
// driven through sweepctl; assertions on its output and on the store.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

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
using ::sweepd::testing::ProcessResult;
using ::sweepd::testing::ReadFileText;
using ::sweepd::testing::RunProcess;
using ::sweepd::testing::SourcePath;
using ::sweepd::testing::SpawnProcess;
using ::sweepd::testing::WaitFor;
using ::testing::HasSubstr;
using Json = nlohmann::json;

// Whether `sweep` has exactly `n` trials and each has a stored report of the sweep metric: its
// script is past its start-up (`env`, pyenv's shims, the interpreter, its imports) and inside
// its report loop, so a stop reaches it through report(). Neither "running" at sweepd (set
// once the agent has spawned the command) nor a process carrying the marker (the launchers
// carry it too) says that.
bool EachTrialReported(Cluster& cluster, const std::string& sweep, size_t n) {
  auto r = cluster.Sweepctl({"trials", sweep, "--output", "json"});
  const Json doc = Json::parse(r.out, nullptr, false);
  if (r.exit_code != 0 || !doc.is_object() || !doc.contains("trials")) return false;
  const Json& trials = doc["trials"];
  if (trials.size() != n) return false;
  for (const auto& t : trials) {
    if (!t.contains("last_value")) return false;
  }
  return true;
}

TEST(SweepE2eTest, RandomSweepStoresEveryMetricOfEveryTrial) {
  Cluster cluster;
  const std::string id = cluster.Submit(R"(
name: e2e-random
program: report_socket.py
method: random
metric: {name: loss, goal: minimize}
run_cap: 6
seed: 3
parameters:
  x: {min: 0.0, max: 1.0}
)");
  ASSERT_TRUE(cluster.WaitForState(id, "finished")) << cluster.Logs();
  const Json status = cluster.Status(id);
  EXPECT_EQ(Int(status["counts"], "completed"), 6);
  EXPECT_EQ(status["reason"], "run cap of 6 trials reached");
  // Every report of every trial is in the store exactly once.
  auto store = store::Store::Open({.path = cluster.db()});
  ASSERT_TRUE(store.ok());
  auto trials = (*store)->ListTrials({.sweep_public_id = id});
  ASSERT_TRUE(trials.ok());
  ASSERT_EQ(trials->trials.size(), 6u);
  for (const auto& t : trials->trials) {
    auto detail = (*store)->GetTrial(t.id(), {"loss"}, 0);
    ASSERT_TRUE(detail.ok());
    ASSERT_EQ(detail->curves.size(), 1u);
    ASSERT_EQ(detail->curves[0].points_size(), 20) << t.id();
    for (int i = 0; i < 20; ++i) EXPECT_EQ(detail->curves[0].points(i).step(), i);
    EXPECT_EQ(detail->trial.state(), v1::TRIAL_STATE_COMPLETED);
  }
  // Best first, and `best` agrees with the summary.
  auto best = cluster.Sweepctl({"best", id, "--output", "json"});
  ASSERT_EQ(best.exit_code, 0) << best.err;
  EXPECT_EQ(Json::parse(best.out)["id"], status["best_trial_id"]);
  EXPECT_EQ(trials->trials[0].id(), status["best_trial_id"]);
  auto table = cluster.Sweepctl({"trials", id});
  EXPECT_THAT(table.out, HasSubstr("TRIAL"));
  EXPECT_THAT(table.out, HasSubstr("completed"));
}

TEST(SweepE2eTest, GridRunsEachPointOnceFromStdoutMetrics) {
  Cluster cluster;
  const std::string id = cluster.Submit(R"(
program: print_metrics.py
method: grid
metric: {name: loss}
parameters:
  lr: {values: [0.1, 0.2, 0.3]}
  layers: {values: [1, 2]}
)");
  ASSERT_TRUE(cluster.WaitForState(id, "finished")) << cluster.Logs();
  auto exported = cluster.Sweepctl({"export", id, "--format", "json"});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  const Json rows = Json::parse(exported.out);
  ASSERT_EQ(rows.size(), 6u);
  std::set<std::string> points;
  for (const auto& row : rows) {
    points.insert(row["lr"].dump() + "/" + row["layers"].dump());
    EXPECT_EQ(row["state"], "completed");
    // Parsed from `epoch=4 loss=...` printed lines: the last epoch's loss.
    EXPECT_NEAR(row["loss"].get<double>(),
                row["lr"].get<double>() * row["layers"].get<double>() / 5, 1e-6);
    EXPECT_EQ(row["epoch"], 4);
  }
  EXPECT_EQ(points.size(), 6u);
  auto csv = cluster.Sweepctl({"export", id});
  EXPECT_THAT(csv.out, HasSubstr("trial,number,state,attempt,gpu_seconds,reason,lr,layers"));
}

TEST(SweepE2eTest, PauseStopsNewTrialsAndResumeFinishes) {
  Cluster cluster;
  const std::string id = cluster.Submit(R"(
program: report_socket.py
method: random
metric: {name: loss}
run_cap: 4
parallelism: 1
command: ["${env}", "${interpreter}", "${program}", "${args}", "--sleep=0.05", "--steps=10"]
parameters:
  x: {min: 0.0, max: 1.0}
)");
  ASSERT_TRUE(WaitFor([&] { return Int(cluster.Status(id)["counts"], "running") == 1; }, 30000));
  auto paused = cluster.Sweepctl({"pause", id});
  ASSERT_EQ(paused.exit_code, 0) << paused.err;
  EXPECT_THAT(paused.out, HasSubstr("paused"));
  auto again = cluster.Sweepctl({"pause", id});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("only a running sweep can be paused"));
  // What runs finishes; nothing new starts while paused. (Under load the first trial may have
  // ended and the second started before the pause landed: then two complete, never more.)
  ASSERT_TRUE(WaitFor(
      [&] {
        const Json counts = cluster.Status(id)["counts"];
        return Int(counts, "completed") >= 1 &&
               Int(counts, "running") + Int(counts, "assigned") == 0;
      },
      60000))
      << cluster.Status(id).dump() << "\n"
      << cluster.Logs();
  const Json while_paused = cluster.Status(id);
  EXPECT_EQ(while_paused["state"], "paused");
  EXPECT_LE(Int(while_paused["counts"], "completed"), 2);
  ASSERT_EQ(cluster.Sweepctl({"resume", id}).exit_code, 0);
  ASSERT_TRUE(cluster.WaitForState(id, "finished")) << cluster.Logs();
  EXPECT_EQ(Int(cluster.Status(id)["counts"], "completed"), 4);
}

// W&B's agent runs the command in its own working directory, so packaged code
// (`python -m pkg.train`) and relative paths work; sweepd runs it in the code dir the same way,
// and gives the trial's own folder as SWEEP_TRIAL_DIR. No `program`: W&B needs none.
TEST(SweepE2eTest, CommandsRunInTheCodeDirAsUnderWandbAgent) {
  Cluster cluster(1, 1);
  const std::string id = cluster.Submit(R"(
method: grid
metric: {name: loss, goal: minimize}
command: ["${env}", "${interpreter}", "-m", "wdpkg.train", "${args}"]
parameters:
  x: {values: [1, 2]}
)");
  ASSERT_TRUE(cluster.WaitForState(id, "finished")) << cluster.Logs();
  const Json status = cluster.Status(id);
  EXPECT_EQ(Int(status["counts"], "completed"), 2) << status.dump();
  EXPECT_DOUBLE_EQ(status["best_value"].get<double>(), 1.25);
  auto listed = cluster.Sweepctl({"trials", id, "--output", "json"});
  const std::string code_dir =
      std::filesystem::canonical(SourcePath("tests/integration/scripts")).string();
  // Kept in a variable: a range-for over a temporary's member would read freed memory.
  const Json trials = Json::parse(listed.out);
  for (const auto& t : trials["trials"]) {
    auto logs = cluster.Sweepctl({"logs", t["id"]});
    EXPECT_THAT(logs.out, HasSubstr("cwd " + code_dir + "\n"));
    EXPECT_THAT(logs.out, HasSubstr("trial_dir " + t["workdir"].get<std::string>() + "\n"));
  }
}

TEST(SweepE2eTest, CancelStopsTrialsAndLeavesNoProcess) {
  // "stop" goes out through report() first; SIGTERM only after the grace. With the default 1 s
  // a script that reaches its next report() a second late (start-up under load) is killed
  // without a word, and its stdout.log stays empty.
  Cluster cluster(ClusterOptions{.sweepd_stop_grace = 30});
  const std::string marker = "cancel-marker-" + std::to_string(getpid());
  const std::string id = cluster.Submit(R"(
program: report_socket.py
method: random
metric: {name: loss}
command: ["${env}", "${interpreter}", "${program}", "${args}", "--sleep=0.1", "--steps=100000",
          "--tag=)" + marker + R"("]
parameters:
  x: {min: 0.0, max: 1.0}
)");
  ASSERT_TRUE(WaitFor([&] { return EachTrialReported(cluster, id, 2); }, 60000)) << cluster.Logs();
  auto canceled = cluster.Sweepctl({"cancel", id});
  ASSERT_EQ(canceled.exit_code, 0) << canceled.err;
  ASSERT_TRUE(WaitFor([&] { return CountProcessesWith(marker) == 0; }, 60000))
      << "trial processes left after cancel";
  // Canceled at sweepd only once the agent reported the exit, which it does after draining the
  // trial's stdout into stdout.log: the logs are complete from here on.
  ASSERT_TRUE(WaitFor([&] { return Int(cluster.Status(id)["counts"], "canceled") == 2; }, 60000));
  const Json status = cluster.Status(id);
  EXPECT_EQ(status["state"], "canceled");
  // The scripts were told to stop through report() before any signal.
  auto trials = cluster.Sweepctl({"trials", id, "--output", "json"});
  const Json parsed1 = Json::parse(trials.out);
  for (const auto& t : parsed1["trials"]) {
    auto logs = cluster.Sweepctl({"logs", t["id"]});
    // exit_signal in the dump tells "killed before it heard" from "output lost".
    EXPECT_THAT(logs.out, HasSubstr("stopped: sweep canceled")) << t.dump() << "\n" << logs.err;
  }
  EXPECT_EQ(cluster.Sweepctl({"cancel", id}).exit_code, 1);
}

TEST(SweepE2eTest, FailingScriptFailsTheSweepAfterMaxFailures) {
  Cluster cluster;
  const std::string id = cluster.Submit(R"(
program: fail.py
method: random
max_failures: 3
parameters:
  x: {min: 0.0, max: 1.0}
)");
  ASSERT_TRUE(cluster.WaitForState(id, "failed")) << cluster.Logs();
  const Json status = cluster.Status(id);
  EXPECT_THAT(status["reason"].get<std::string>(), HasSubstr("max_failures 3"));
  EXPECT_THAT(status["reason"].get<std::string>(), HasSubstr("exited with code 3"));
  EXPECT_GE(Int(status["counts"], "failed"), 3);
  auto trials = cluster.Sweepctl({"trials", id, "--state", "failed", "--output", "json"});
  const Json first = Json::parse(trials.out)["trials"][0];
  auto trial = cluster.Sweepctl({"trial", first["id"]});
  EXPECT_THAT(trial.out, HasSubstr("something is wrong with the data"));
}

TEST(SweepE2eTest, MissingProgramAndBadRequestsGetClearErrors) {
  Cluster cluster;
  const std::string id = cluster.Submit(R"(
program: no_such_script.py
method: random
max_failures: 1
parameters:
  x: {min: 0.0, max: 1.0}
)");
  ASSERT_TRUE(cluster.WaitForState(id, "failed"));
  EXPECT_THAT(cluster.Status(id)["reason"].get<std::string>(),
              HasSubstr("program 'no_such_script.py' not found"));
  auto unknown = cluster.Sweepctl({"status", "s-nosuchid"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("no sweep 's-nosuchid'"));
  auto bad_trial = cluster.Sweepctl({"trial", "s-nosuchid-0001"});
  EXPECT_EQ(bad_trial.exit_code, 1);
  EXPECT_THAT(bad_trial.err, HasSubstr("no trial"));
  // An invalid spec is refused by sweepd with every error.
  std::ofstream(cluster.dir() + "/bad.yaml")
      << "method: grid\nparameters:\n  x: {min: 1.0, max: 0.5}\n";
  auto bad = cluster.Sweepctl({"submit", cluster.dir() + "/bad.yaml"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("parameters.x.min: min 1.0 must be less than max 0.5"));
  EXPECT_THAT(bad.err, HasSubstr("program: required"));
}

TEST(SweepE2eTest, EnqueuedTrialRunsWithItsParameters) {
  Cluster cluster(1, 1);
  const std::string id = cluster.Submit(R"(
program: report_socket.py
method: random
metric: {name: loss}
run_cap: 2
parameters:
  x: {min: 0.0, max: 1.0}
  opt: {values: [sgd, adam]}
)",
                                        /*paused=*/true);
  auto bad = cluster.Sweepctl({"enqueue", id, "--param", "x=7"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("params.x: 7 is outside [0, 1]"));
  auto unknown = cluster.Sweepctl({"enqueue", id, "--param", "y=1"});
  EXPECT_THAT(unknown.err, HasSubstr("params.y: not a parameter of this sweep"));
  auto enqueued = cluster.Sweepctl(
      {"enqueue", id, "--param", "x=0.3", "--param", "opt=adam", "--output", "json"});
  ASSERT_EQ(enqueued.exit_code, 0) << enqueued.err;
  const std::string trial_id = Json::parse(enqueued.out)["id"];
  ASSERT_EQ(cluster.Sweepctl({"resume", id}).exit_code, 0);
  ASSERT_TRUE(cluster.WaitForState(id, "finished"));
  auto trial = cluster.Sweepctl({"trial", trial_id, "--output", "json"});
  const Json detail = Json::parse(trial.out);
  EXPECT_EQ(detail["trial"]["state"], "completed");
  EXPECT_EQ(detail["trial"]["params"][0]["value_json"], "0.3");
  EXPECT_EQ(detail["trial"]["params"][1]["value_json"], "\"adam\"");
}

TEST(SweepE2eTest, PythonClientReportsAndIsToldToStop) {
  // A long stop grace: see CancelStopsTrialsAndLeavesNoProcess.
  Cluster cluster(ClusterOptions{.sweepd_stop_grace = 30});
  const std::string id = cluster.Submit(R"(
program: client_script.py
method: grid
metric: {name: loss}
parameters:
  opt:
    parameters:
      lr: {values: [0.05, 0.1]}
  steps: {value: 8}
)");
  ASSERT_TRUE(cluster.WaitForState(id, "finished")) << cluster.Logs();
  auto store = store::Store::Open({.path = cluster.db()});
  ASSERT_TRUE(store.ok());
  auto trials = (*store)->ListTrials({.sweep_public_id = id});
  ASSERT_EQ(trials->trials.size(), 2u);
  for (const auto& t : trials->trials) {
    auto detail = (*store)->GetTrial(t.id(), {}, 0);
    ASSERT_TRUE(detail.ok());
    std::map<std::string, int> points;
    for (const auto& c : detail->curves) points[c.name()] = c.points_size();
    EXPECT_EQ(points["loss"], 8) << t.id();
    EXPECT_EQ(points["acc"], 8) << t.id();
    EXPECT_EQ(points["final_loss"], 1) << "finish() reports final metrics";
  }
  // The best is lr=0.1 (its loss has no (lr - 0.1)^2 term).
  EXPECT_EQ(trials->trials[0].params(0).value_json(), "0.1");

  // A long trial is told to stop through report() when the sweep is canceled.
  const std::string long_id = cluster.Submit(R"(
program: client_script.py
method: random
metric: {name: loss}
parameters:
  opt:
    parameters:
      lr: {min: 0.0, max: 1.0}
  steps: {value: 100000}
  sleep: {value: 0.05}
)");
  // Both clients are in their report loop (not still importing), then the cancel.
  ASSERT_TRUE(WaitFor([&] { return EachTrialReported(cluster, long_id, 2); }, 60000))
      << cluster.Logs();
  ASSERT_EQ(cluster.Sweepctl({"cancel", long_id}).exit_code, 0);
  ASSERT_TRUE(
      WaitFor([&] { return Int(cluster.Status(long_id)["counts"], "canceled") == 2; }, 60000))
      << cluster.Logs();
  auto listed = cluster.Sweepctl({"trials", long_id, "--output", "json"});
  const Json parsed2 = Json::parse(listed.out);
  for (const auto& t : parsed2["trials"]) {
    EXPECT_THAT(cluster.Sweepctl({"logs", t["id"]}).out, HasSubstr("told to stop: sweep canceled"))
        << t.dump();
  }
}

TEST(SweepE2eTest, HostileScriptGetsErrorsAndTheTrialGoesOn) {
  Cluster cluster(1, 1);
  const std::string id = cluster.Submit(R"(
program: hostile.py
method: random
metric: {name: loss}
run_cap: 1
parameters:
  x: {min: 0.0, max: 1.0}
)");
  ASSERT_TRUE(cluster.WaitForState(id, "finished")) << cluster.Logs();
  auto trials = cluster.Sweepctl({"trials", id, "--output", "json"});
  const Json trial = Json::parse(trials.out)["trials"][0];
  EXPECT_EQ(trial["state"], "completed");
  auto logs = cluster.Sweepctl({"logs", trial["id"]});
  EXPECT_THAT(logs.out, HasSubstr("reply-error: request is not a JSON object"));
  EXPECT_THAT(logs.out, HasSubstr("reply-error: op: 'explode' is unknown"));
  EXPECT_THAT(logs.out, HasSubstr("reply-error: this socket belongs to trial"));
  EXPECT_THAT(logs.out, HasSubstr("reply-error: metrics.loss: must be a number"));
  EXPECT_THAT(logs.out, HasSubstr("noise 199999"));
  // Only the five valid reports count; the flood's "loss=999" lines were not parsed.
  auto detail = cluster.Sweepctl({"trial", trial["id"], "--output", "json"});
  const Json metrics = Json::parse(detail.out)["trial"]["metrics"][0];
  EXPECT_EQ(metrics["name"], "loss");
  EXPECT_EQ(metrics["count"], 5);
  EXPECT_DOUBLE_EQ(metrics["best"].get<double>(), 0.2);
}

TEST(SweepE2eTest, AshaPrunesHopelessTrialsAndCountsSavedGpuTime) {
  // A long stop grace: see CancelStopsTrialsAndLeavesNoProcess.
  Cluster cluster(ClusterOptions{.sweepd_stop_grace = 30});
  const std::string id = cluster.Submit(R"(
program: report_socket.py
method: random
seed: 5
metric: {name: loss, goal: minimize}
run_cap: 12
command: ["${env}", "${interpreter}", "${program}", "${args}", "--sleep=0.01", "--steps=60"]
pruner: {type: asha, min_resource: 1, max_resource: 19, reduction_factor: 3}
parameters:
  x: {min: 0.0, max: 1.0}
)");
  ASSERT_TRUE(cluster.WaitForState(id, "finished")) << cluster.Logs();
  const Json status = cluster.Status(id);
  const int64_t pruned = Int(status["counts"], "pruned");
  EXPECT_GE(pruned, 1);
  EXPECT_EQ(pruned + Int(status["counts"], "completed"), 12);
  EXPECT_GT(status["gpu_seconds_saved"].get<double>(), 0);
  auto pruned_trials = cluster.Sweepctl({"trials", id, "--state", "pruned", "--output", "json"});
  const Json parsed3 = Json::parse(pruned_trials.out);
  int told = 0;
  for (const auto& t : parsed3["trials"]) {
    EXPECT_THAT(t["reason"].get<std::string>(), HasSubstr("pruned by asha at rung"));
    auto detail = cluster.Sweepctl({"trial", t["id"]});
    EXPECT_THAT(detail.out, HasSubstr("trial.pruned"));
    // The script saw stop through report() and left on its own, unless it had made its last
    // report before the stop reached it (it then ends pruned all the same, engine.cc
    // NodeEnded): 40 reports past the last rung make that rare, and it is no failure.
    if (Int(t, "last_step") < 59) {
      ++told;
      EXPECT_THAT(cluster.Sweepctl({"logs", t["id"]}).out, HasSubstr("stopped: pruned by asha"))
          << t.dump();
    }
  }
  EXPECT_GE(told, 1);
  auto text = cluster.Sweepctl({"status", id});
  EXPECT_THAT(text.out, HasSubstr("saved by pruning"));
}

TEST(SweepE2eTest, AskReportTellForAnExternalRunner) {
  Cluster cluster(0);  // no agents: an external runner does the work
  const std::string id = cluster.Submit(R"(
method: tpe
seed: 2
metric: {name: loss, goal: minimize}
run_cap: 14
search: {n_startup_trials: 4}
pruner: {type: asha, min_resource: 1, max_resource: 9, reduction_factor: 3}
parameters:
  x: {min: 0.0, max: 1.0}
)",
                                        /*paused=*/false, /*external=*/true);
  int asked = 0, pruned_by_report = 0;
  while (true) {
    auto ask = cluster.Sweepctl({"ask", id, "--output", "json"});
    if (ask.exit_code != 0) {
      EXPECT_THAT(ask.err, HasSubstr("nothing left to propose: run cap of 14 trials reached"));
      break;
    }
    ++asked;
    const Json trial = Json::parse(ask.out);
    const double x = trial["params"]["x"];
    bool stopped = false;
    for (int step = 0; step < 9 && !stopped; ++step) {
      const double loss = (x - 0.3) * (x - 0.3) + 1.0 / (step + 1);
      auto r = cluster.Sweepctl({"report", trial["trial"], "--step", std::to_string(step),
                                 "--metric", "loss=" + std::to_string(loss), "--output", "json"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      const Json answer = Json::parse(r.out);
      if (!answer["continue"].get<bool>()) {
        EXPECT_THAT(answer["reason"].get<std::string>(), HasSubstr("pruned by asha"));
        stopped = true;
        ++pruned_by_report;
      }
    }
    const double final_loss = (x - 0.3) * (x - 0.3) + 0.1;
    auto told = cluster.Sweepctl({"tell", trial["trial"], "--value", std::to_string(final_loss)});
    ASSERT_EQ(told.exit_code, 0) << told.err;
    EXPECT_THAT(told.out, HasSubstr(stopped ? "pruned" : "completed"));
    ASSERT_LE(asked, 14);
  }
  EXPECT_EQ(asked, 14);
  EXPECT_GE(pruned_by_report, 1);
  ASSERT_TRUE(cluster.WaitForState(id, "finished"));
  const Json status = cluster.Status(id);
  EXPECT_EQ(Int(status["counts"], "completed") + Int(status["counts"], "pruned"), 14);
  EXPECT_EQ(Int(status["counts"], "pruned"), pruned_by_report);
  // Bad calls: tell twice, report to an ended trial, ask on an agent sweep, a missing value.
  auto trials = cluster.Sweepctl({"trials", id, "--output", "json"});
  const Json listed = Json::parse(trials.out);
  const std::string first = listed["trials"][0]["id"];
  EXPECT_THAT(cluster.Sweepctl({"tell", first, "--value", "1"}).err,
              HasSubstr("only a running trial of an --external sweep can be told"));
  EXPECT_EQ(cluster.Sweepctl({"report", first, "--step", "1", "--metric", "loss=1"}).exit_code, 1);
  const std::string normal =
      cluster.Submit("program: x.py\nmethod: random\nparameters:\n  x: {min: 0.0, max: 1.0}\n",
                     /*paused=*/true);
  EXPECT_THAT(cluster.Sweepctl({"ask", normal}).err, HasSubstr("submitted with --external"));
}

// W&B's hyperband judges running runs on a timer; sweepd judges at each report unless
// `early_terminate_period` asks for W&B's timer. band_race.py makes trial b reach band 2 alone
// (threshold its own 10: it goes on) and then fall silent; a reaches band 2 with 1 afterwards.
// Only a judgement without a report stops b (threshold sorted([10, 1])[int(2/3)] = 1).
std::string BandRaceSpec(const std::string& dir, const std::string& extra) {
  return R"(
program: band_race.py
method: grid
metric: {name: loss, goal: minimize}
early_terminate: {type: hyperband, min_iter: 2, eta: 3}
parameters:
  role: {values: [a, b]}
  dir: {value: )" +
         dir + R"(}
)" + extra;
}

TEST(SweepE2eTest, EarlyTerminatePeriodJudgesSilentTrialsAsWandbsTimerDoes) {
  Cluster cluster(1, 2);
  const std::string id = cluster.Submit(BandRaceSpec(cluster.dir(), "early_terminate_period: 1\n"));
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 120000)) << cluster.Logs();
  const Json status = cluster.Status(id);
  EXPECT_EQ(Int(status["counts"], "completed"), 1) << status.dump();
  EXPECT_EQ(Int(status["counts"], "pruned"), 1) << status.dump();
  auto pruned = cluster.Sweepctl({"trials", id, "--state", "pruned", "--output", "json"});
  const Json trial = Json::parse(pruned.out)["trials"][0];
  EXPECT_EQ(trial["params"][0]["value_json"], "\"b\"") << trial.dump();
  EXPECT_THAT(trial["reason"].get<std::string>(), HasSubstr("stopped by hyperband at band 2"));
}

TEST(SweepE2eTest, WithoutAPeriodASilentTrialIsNotJudgedAgain) {
  Cluster cluster(1, 2);
  const std::string id = cluster.Submit(BandRaceSpec(cluster.dir(), ""));
  // a has reported after b and ended; b was judged only at its own reports.
  ASSERT_TRUE(WaitFor([&] { return Int(cluster.Status(id)["counts"], "completed") == 1; }, 120000))
      << cluster.Logs();
  std::ofstream(cluster.dir() + "/release") << "now\n";
  ASSERT_TRUE(cluster.WaitForState(id, "finished", 120000)) << cluster.Logs();
  const Json status = cluster.Status(id);
  EXPECT_EQ(Int(status["counts"], "completed"), 2) << status.dump();
  EXPECT_EQ(Int(status["counts"], "pruned"), 0) << status.dump();
}

// A fresh folder under the temp dir for one test, removed however the test ends.
struct ScratchDir {
  explicit ScratchDir(const std::string& name)
      : path((std::filesystem::temp_directory_path() / (name + "-" + std::to_string(getpid())))
                 .string()) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~ScratchDir() { std::filesystem::remove_all(path); }
  const std::string path;
};

TEST(SweepctlRunTest, RunsAWholeSweepWithNoDaemons) {
  const ScratchDir scratch("sweepctl-run");
  const std::string& dir = scratch.path;
  auto r = RunProcess({BinaryPath("cli/sweepctl"), "run", SourcePath("examples/grid/sweep.yaml"),
                       "--db", dir + "/run.db", "--workdir", dir + "/work", "--output", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json doc = Json::parse(r.out);
  EXPECT_EQ(doc["sweep"]["state"], "finished");
  EXPECT_EQ(Int(doc["sweep"]["counts"], "completed"), 12);
  EXPECT_EQ(doc["best_trial"]["id"], doc["sweep"]["best_trial_id"]);
  EXPECT_GT(doc["best_trial"]["best_value"].get<double>(), 0.5);
  // Numbers are JSON numbers and states the table's words, in every command's JSON.
  EXPECT_TRUE(doc["sweep"]["counts"]["completed"].is_number_integer()) << doc.dump();
  EXPECT_TRUE(doc["sweep"]["counts"]["pruned"].is_number_integer()) << "zero counts are present";
  EXPECT_EQ(doc["best_trial"]["state"], "completed");
  EXPECT_EQ(doc["sweep"]["spec"]["method"], "grid");
}

// A command that fails at once gets the only agent quarantined (3 quick failures): nothing can
// run any more, so `run` says why and exits 1 instead of waiting for ever.
TEST(SweepctlRunTest, ACommandThatKeepsFailingEndsTheRunWithItsStderr) {
  const ScratchDir scratch("sweepctl-stall");
  const std::string& dir = scratch.path;
  std::filesystem::copy_file(SourcePath("tests/integration/scripts/fail.py"), dir + "/fail.py");
  std::ofstream(dir + "/spec.yaml") << "program: fail.py\nmethod: random\n"
                                       "metric: {name: loss}\nmax_failures: 100\n"
                                       "parameters:\n  x: {min: 0.0, max: 1.0}\n";
  auto r = RunProcess({BinaryPath("cli/sweepctl"), "run", dir + "/spec.yaml", "--db",
                       dir + "/run.db", "--workdir", dir + "/work", "--parallel", "1"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("cannot go on: every agent is quarantined"));
  EXPECT_THAT(r.out, HasSubstr("STALLED: every agent is quarantined"));  // watch says it too
  EXPECT_THAT(r.err, HasSubstr("last failed trial"));
  EXPECT_THAT(r.err, HasSubstr("exited with code 3"));
  EXPECT_THAT(r.err, HasSubstr("  something is wrong with the data"));  // its stderr
  EXPECT_THAT(r.out, HasSubstr("failed 3"));                            // the summary
}

// A multi-node spec under `sweepctl run`: one embedded agent per loopback node, all in one
// process. Each agent's clean-up of what ended trials leave behind must leave the other agents'
// running trials alone (they are children of the same process, in sessions of their own).
TEST(SweepctlRunTest, LoopbackNodesInOneProcessLeaveEachOthersTrialsAlone) {
  const ScratchDir scratch("sweepctl-nodes");
  const std::string& dir = scratch.path;
  std::filesystem::copy_file(SourcePath("tests/integration/scripts/gang_node.py"),
                             dir + "/gang_node.py");
  std::ofstream(dir + "/spec.yaml") << "program: gang_node.py\nmethod: random\n"
                                       "metric: {name: loss}\nrun_cap: 3\nmax_retries: 0\n"
                                       "resources: {nodes: 2}\n"
                                       "parameters:\n  mode: {value: ok}\n"
                                       "  seconds: {value: 2.5}\n";
  auto r = RunProcess({BinaryPath("cli/sweepctl"), "run", dir + "/spec.yaml", "--db",
                       dir + "/run.db", "--workdir", dir + "/work", "--parallel", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("completed 3, pruned 0, failed 0"));
}

// The summary at the end of `run` shows pruning as `status` does.
TEST(SweepctlRunTest, TheSummaryShowsPrunedTrialsAndGpuHoursSaved) {
  const ScratchDir scratch("sweepctl-prune");
  const std::string& dir = scratch.path;
  std::filesystem::copy_file(SourcePath("tests/integration/scripts/report_socket.py"),
                             dir + "/report_socket.py");
  std::ofstream(dir + "/spec.yaml")
      << "program: report_socket.py\nmethod: grid\nmetric: {name: loss, goal: minimize}\n"
         "command: [\"${env}\", \"${interpreter}\", \"${program}\", \"${args}\", "
         "\"--steps=30\"]\n"
         "pruner: {type: asha, min_resource: 1, max_resource: 29, reduction_factor: 3}\n"
         "parameters:\n  x: {values: [0.3, 0.9, 1.5, 2.0, 3.0, 4.0]}\n";
  auto r = RunProcess({BinaryPath("cli/sweepctl"), "run", dir + "/spec.yaml", "--db",
                       dir + "/run.db", "--workdir", dir + "/work", "--parallel", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("pruned "));
  EXPECT_THAT(r.out, HasSubstr("saved by pruning"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("pruned [1-9]"));
  EXPECT_THAT(r.out, HasSubstr("best trial"));
}

}  // namespace
}  // namespace sweepd
