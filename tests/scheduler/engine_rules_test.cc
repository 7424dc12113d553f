// The engine's timing rules, in virtual time: the real Engine and a real Store (a temporary
// SQLite file), driven from the test's thread with a FakeClock, so each rule is checked just
// before and just after its limit instead of end to end in real seconds.

#include <unistd.h>

#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/engine.h"
#include "spdlog/spdlog.h"
#include "store/store.h"
#include "tests/testing/recording_channel.h"

namespace sweepd::scheduler {
namespace {

// The engine's end of an agent's stream, with the Assigns it sent taken out.
class Channel : public testing::RecordingChannel {
 public:
  std::vector<v1::Assign> TakeAssigns() {
    std::vector<v1::Assign> out;
    for (auto& m : Take()) {
      if (m.has_assign()) out.push_back(m.assign());
    }
    return out;
  }
};

constexpr double kTimeout = 30;
constexpr double kReattach = 120;

class EngineRulesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spdlog::set_level(spdlog::level::warn);
    char tmpl[] = "/tmp/engine-rules-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    OpenSweepd();
  }
  void TearDown() override {
    CloseSweepd();
    std::filesystem::remove_all(dir_);
  }

  void OpenSweepd() {
    store::StoreOptions options;
    options.path = dir_ + "/sweepd.db";
    options.synchronous = store::Synchronous::kNormal;
    options.hold_writes_until_flush = true;
    auto store = store::Store::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    EngineOptions engine_options;
    engine_options.clock = &clock_;
    engine_options.own_thread = false;
    engine_options.id_seed = 7;
    engine_options.agent_timeout_seconds = kTimeout;
    engine_options.reattach_seconds = kReattach;
    engine_options.quarantine_failures = 3;
    engine_options.quarantine_window_seconds = 60;
    engine_ = std::make_unique<Engine>(store_.get(), engine_options);
    ASSERT_TRUE(engine_->Start().ok());
  }

  // As sweepd shuts down (SchedulerServer::Shutdown): the engine stops, the store closes while
  // the engine still exists (writes still queued, with a full disk, complete into the engine's
  // callbacks), then the engine goes.
  void CloseSweepd() {
    if (engine_) engine_->Stop();
    store_.reset();
    engine_.reset();
  }

  void RestartSweepd() {
    CloseSweepd();
    OpenSweepd();
  }

  std::shared_ptr<Channel> Register(const std::string& agent_id,
                                    const std::vector<std::string>& running = {}) {
    v1::Register reg;
    reg.set_agent_id(agent_id);
    reg.set_hostname(agent_id);
    reg.set_workdir_key("key-" + agent_id);
    reg.add_gpus()->set_index(0);
    for (const auto& id : running) {
      auto* r = reg.add_running_trials();
      r->set_trial_id(id);
      r->add_gpu_indices(0);
    }
    auto channel = std::make_shared<Channel>();
    auto registered = engine_->AgentConnected(reg, channel);
    EXPECT_TRUE(registered.ok()) << registered.status();
    engine_->RunUntilIdle();
    return channel;
  }

  std::string CreateSweep(int run_cap) {
    v1::CreateSweepRequest request;
    request.set_spec_yaml(
        absl::StrCat("program: train.py\nmethod: random\nparameters:\n  lr: {min: 0.1, max: 1}\n"
                     "run_cap: ",
                     run_cap, "\nmax_retries: 3\nmax_failures: 100\n"));
    auto created = engine_->CreateSweep(request);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? created->sweep().id() : "";
  }

  void Send(const std::string& agent_id, v1::AgentMessage message) {
    engine_->AgentMessageReceived(agent_id, std::move(message));
    engine_->RunUntilIdle();
  }
  void Started(const std::string& agent_id, const std::string& trial_id) {
    v1::AgentMessage m;
    m.mutable_trial_started()->set_trial_id(trial_id);
    Send(agent_id, std::move(m));
  }
  // The one Assign the agent got is started; returns its trial id (empty, and a failure, when
  // the agent got no Assign or several).
  std::string StartOnlyTrial(Channel& channel, const std::string& agent_id = "a") {
    const auto assigns = channel.TakeAssigns();
    if (assigns.size() != 1) {
      ADD_FAILURE() << "expected one Assign, got " << assigns.size();
      return "";
    }
    Started(agent_id, assigns[0].trial_id());
    return assigns[0].trial_id();
  }
  void Exited(const std::string& agent_id, const std::string& trial_id, int code,
              double wall_seconds) {
    v1::AgentMessage m;
    m.mutable_trial_exited()->set_trial_id(trial_id);
    m.mutable_trial_exited()->set_exit_code(code);
    m.mutable_trial_exited()->set_wall_seconds(wall_seconds);
    Send(agent_id, std::move(m));
  }
  void Heartbeat(const std::string& agent_id) {
    v1::AgentMessage m;
    m.mutable_heartbeat();
    Send(agent_id, std::move(m));
  }
  // Moves time in half-second ticks, as the engine thread does; `beating` agents heartbeat.
  void Advance(double seconds, const std::vector<std::string>& beating = {}) {
    for (double t = 0; t < seconds - 1e-9; t += 0.5) {
      clock_.Advance(0.5);
      for (const auto& id : beating) Heartbeat(id);
      engine_->RunTick();
      engine_->RunUntilIdle();
    }
  }

  v1::Trial Trial(const std::string& id) {
    auto detail = store_->GetTrial(id, {}, 0, /*with_curves=*/false);
    EXPECT_TRUE(detail.ok()) << detail.status();
    return detail.ok() ? detail->trial : v1::Trial{};
  }
  v1::AgentState AgentState(const std::string& id) {
    auto agents = engine_->ListAgents(true);
    EXPECT_TRUE(agents.ok());
    for (const auto& a : *agents) {
      if (a.id() == id) return a.state();
    }
    return v1::AGENT_STATE_UNSPECIFIED;
  }

  FakeClock clock_;
  std::string dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineRulesTest, SilentAgentKeepsItsTrialUntilTheTimeoutThenItIsLostAndRetried) {
  auto channel = Register("a");
  CreateSweep(1);
  const std::string trial = StartOnlyTrial(*channel);
  ASSERT_FALSE(trial.empty());
  // Silent for just under the timeout: still its trial.
  Advance(kTimeout - 0.5);
  EXPECT_FALSE(channel->closed());
  EXPECT_EQ(Trial(trial).state(), v1::TRIAL_STATE_RUNNING);
  EXPECT_EQ(Trial(trial).attempt(), 1);
  // Past it: the stream is closed, the trial is lost and queued for its retry.
  Advance(1.0);
  EXPECT_TRUE(channel->closed());
  EXPECT_EQ(Trial(trial).state(), v1::TRIAL_STATE_QUEUED);
  EXPECT_EQ(Trial(trial).attempt(), 2);
}

TEST_F(EngineRulesTest, HeartbeatsKeepABusyAgentForAsLongAsItRuns) {
  auto channel = Register("a");
  CreateSweep(1);
  const std::string trial = StartOnlyTrial(*channel);
  ASSERT_FALSE(trial.empty());
  Advance(3600, {"a"});
  EXPECT_FALSE(channel->closed());
  EXPECT_EQ(Trial(trial).state(), v1::TRIAL_STATE_RUNNING);
  EXPECT_EQ(Trial(trial).attempt(), 1);
}

TEST_F(EngineRulesTest, AnAgentBackWithinTheTimeoutKeepsItsTrialAndNothingRestarts) {
  auto channel = Register("a");
  CreateSweep(1);
  const std::string trial = StartOnlyTrial(*channel);
  ASSERT_FALSE(trial.empty());
  engine_->AgentDisconnected("a", channel.get());
  engine_->RunUntilIdle();
  Advance(kTimeout - 1);
  auto again = Register("a", {trial});
  EXPECT_TRUE(again->TakeAssigns().empty());  // no second copy of it, nothing else either
  Advance(kTimeout * 4, {"a"});
  EXPECT_EQ(Trial(trial).state(), v1::TRIAL_STATE_RUNNING);
  EXPECT_EQ(Trial(trial).attempt(), 1);
}

TEST_F(EngineRulesTest, AfterARestartRunningTrialsWaitTheReattachWindowThenAreLost) {
  auto channel = Register("a");
  CreateSweep(1);
  const std::string trial = StartOnlyTrial(*channel);
  ASSERT_FALSE(trial.empty());
  RestartSweepd();
  Advance(kReattach - 1);
  EXPECT_EQ(Trial(trial).state(), v1::TRIAL_STATE_RUNNING);
  Advance(1.5);
  EXPECT_EQ(Trial(trial).state(), v1::TRIAL_STATE_QUEUED);
  EXPECT_EQ(Trial(trial).attempt(), 2);
}

TEST_F(EngineRulesTest, AnAgentThatReattachesAfterARestartKeepsItsTrial) {
  auto channel = Register("a");
  CreateSweep(1);
  const std::string trial = StartOnlyTrial(*channel);
  ASSERT_FALSE(trial.empty());
  RestartSweepd();
  Advance(kReattach - 1);
  auto again = Register("a", {trial});
  EXPECT_TRUE(again->TakeAssigns().empty());
  Advance(kReattach * 2, {"a"});
  EXPECT_EQ(Trial(trial).state(), v1::TRIAL_STATE_RUNNING);
  EXPECT_EQ(Trial(trial).attempt(), 1);
}

// What an agent is told to do is on disk first: sweepd killed between deciding an Assign and
// committing it must not leave a trial running that its store does not place anywhere (found by
// engine_sim: the same trial then ran on two agents after the restart).
TEST_F(EngineRulesTest, AnAssignLeavesOnlyOnceTheAssignmentIsStored) {
  auto channel = Register("a");
  CreateSweep(2);
  const std::string first = StartOnlyTrial(*channel);
  ASSERT_FALSE(first.empty());
  // The first trial ends; the engine places the second, and nothing is committed yet.
  v1::AgentMessage exited;
  exited.mutable_trial_exited()->set_trial_id(first);
  exited.mutable_trial_exited()->set_wall_seconds(10);
  engine_->AgentMessageReceived("a", exited);
  engine_->RunQueuedWithoutCommit();
  EXPECT_TRUE(channel->TakeAssigns().empty()) << "an Assign left before its commit";
  engine_->RunUntilIdle();
  const auto assigns = channel->TakeAssigns();
  ASSERT_EQ(assigns.size(), 1u) << "and leaves once it is committed";
  EXPECT_EQ(Trial(assigns[0].trial_id()).state(), v1::TRIAL_STATE_ASSIGNED);
}

// Fencing on re-registration: sweepd takes a trial back only as the attempt, node rank and GPUs
// it stored. A process of another attempt (sweepd placed a retry, then lost that in a restart)
// is killed, and the GPU it holds is not counted as the stored attempt's.
class EngineFencingTest : public EngineRulesTest,
                          public ::testing::WithParamInterface<std::tuple<int, int, bool>> {};

TEST_P(EngineFencingTest, AReturningAgentKeepsOnlyTheStoredPlacement) {
  const auto [attempt, gpu, kept] = GetParam();
  auto channel = Register("a");
  CreateSweep(1);
  const std::string trial = StartOnlyTrial(*channel);
  ASSERT_FALSE(trial.empty());
  RestartSweepd();
  v1::Register reg;
  reg.set_agent_id("a");
  reg.set_hostname("a");
  reg.set_workdir_key("key-a");
  reg.add_gpus()->set_index(0);
  reg.add_gpus()->set_index(1);
  auto* running = reg.add_running_trials();
  running->set_trial_id(trial);
  running->set_attempt(attempt);
  running->add_gpu_indices(gpu);
  auto registered = engine_->AgentConnected(reg, std::make_shared<Channel>());
  ASSERT_TRUE(registered.ok()) << registered.status();
  engine_->RunUntilIdle();
  if (kept) {
    EXPECT_EQ(registered->kill_trial_ids_size(), 0);
    EXPECT_EQ(Trial(trial).state(), v1::TRIAL_STATE_RUNNING);
    EXPECT_EQ(Trial(trial).attempt(), 1);
  } else {
    ASSERT_EQ(registered->kill_trial_ids_size(), 1);
    EXPECT_EQ(registered->kill_trial_ids(0), trial);
    EXPECT_NE(Trial(trial).attempt(), 1) << "the stored attempt is lost and retried";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Placements, EngineFencingTest,
    ::testing::Values(std::make_tuple(1, 0, true),    // the stored attempt on its GPU
                      std::make_tuple(0, 0, true),    // an agent that does not say its attempt
                      std::make_tuple(2, 0, false),   // a later attempt
                      std::make_tuple(1, 1, false),   // the stored attempt's id on another GPU
                      std::make_tuple(0, 1, false)),  // no attempt, another GPU
    [](const auto& info) {
      return absl::StrCat("attempt", std::get<0>(info.param), "gpu", std::get<1>(info.param));
    });

// W&B's flapping rule: three quick failures within the window quarantine the agent.
TEST_F(EngineRulesTest, ThreeQuickFailuresWithinTheWindowQuarantineTheAgent) {
  auto channel = Register("a");
  CreateSweep(10);
  for (int i = 0; i < 3; ++i) {
    const std::string trial = StartOnlyTrial(*channel);
    ASSERT_FALSE(trial.empty()) << "failure " << i;
    Advance(10, {"a"});
    Exited("a", trial, 1, 10);
  }
  EXPECT_EQ(AgentState("a"), v1::AGENT_STATE_QUARANTINED);
  EXPECT_TRUE(channel->TakeAssigns().empty());
  Advance(600, {"a"});
  EXPECT_TRUE(channel->TakeAssigns().empty()) << "a quarantined agent gets no trial";
  ASSERT_TRUE(engine_->ReleaseAgent("a").ok());
  engine_->RunUntilIdle();
  EXPECT_EQ(channel->TakeAssigns().size(), 1u);
}

TEST_F(EngineRulesTest, FailuresSpreadBeyondTheWindowDoNotQuarantine) {
  auto channel = Register("a");
  CreateSweep(10);
  for (int i = 0; i < 4; ++i) {
    const std::string trial = StartOnlyTrial(*channel);
    ASSERT_FALSE(trial.empty()) << "failure " << i;
    Advance(31, {"a"});  // three failures span more than 60 s
    Exited("a", trial, 1, 10);
  }
  EXPECT_EQ(AgentState("a"), v1::AGENT_STATE_CONNECTED);
}

// ---- Checkpoints and promotion, in the same virtual time.

class EngineCheckpointTest : public EngineRulesTest {
 protected:
  std::string CreatePromotionSweep(int run_cap, int max_retries) {
    v1::CreateSweepRequest request;
    request.set_spec_yaml(
        absl::StrCat("program: train.py\nmethod: random\nmetric: {name: loss}\n"
                     "parameters:\n  lr: {min: 0.1, max: 1}\n"
                     "pruner: {type: asha, min_resource: 1, max_resource: 9, reduction_factor: 3, "
                     "mode: promotion}\nrun_cap: ",
                     run_cap, "\nmax_retries: ", max_retries, "\n"));
    auto created = engine_->CreateSweep(request);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? created->sweep().id() : "";
  }
  // Reports (seq, step, loss), a checkpoint first when `checkpoint`.
  void Report(const std::string& agent_id, const std::string& trial_id, int64_t seq, int64_t step,
              double loss, bool checkpoint = false) {
    v1::AgentMessage m;
    auto* batch = m.mutable_metric_batch();
    batch->set_trial_id(trial_id);
    batch->set_first_seq(seq);
    if (checkpoint) {
      auto* c = batch->add_reports();
      c->set_seq(seq);
      c->set_step(step);
      c->set_checkpoint(true);
      seq += 1;
    }
    auto* r = batch->add_reports();
    r->set_seq(seq);
    r->set_step(step);
    (*r->mutable_metrics())["loss"] = loss;
    Send(agent_id, std::move(m));
  }
  void StoppedByScheduler(const std::string& agent_id, const std::string& trial_id) {
    v1::AgentMessage m;
    m.mutable_trial_exited()->set_trial_id(trial_id);
    m.mutable_trial_exited()->set_stopped_by_scheduler(true);
    m.mutable_trial_exited()->set_wall_seconds(1);
    Send(agent_id, std::move(m));
  }
  // Agent `agent_id` comes back (after a sweepd restart) still running attempt 1 of `trial`,
  // everything up to `acked_seq` acknowledged; returns its new stream.
  std::shared_ptr<Channel> Reattach(const std::string& agent_id, const std::string& trial,
                                    int64_t acked_seq) {
    v1::Register reg;
    reg.set_agent_id(agent_id);
    reg.set_hostname(agent_id);
    reg.set_workdir_key("key-" + agent_id);
    reg.add_gpus()->set_index(0);
    auto* running = reg.add_running_trials();
    running->set_trial_id(trial);
    running->add_gpu_indices(0);
    running->set_attempt(1);
    running->set_last_seq(acked_seq);
    running->set_acked_seq(acked_seq);
    auto channel = std::make_shared<Channel>();
    EXPECT_TRUE(engine_->AgentConnected(reg, channel).ok());
    engine_->RunUntilIdle();
    return channel;
  }
  std::vector<v1::Stop> TakeStops(Channel& channel) {
    std::vector<v1::Stop> stops;
    for (auto& m : channel.Take()) {
      if (m.has_stop()) stops.push_back(m.stop());
    }
    return stops;
  }
};

// A trial told to pause at a rung whose sweep is then canceled ends canceled: it is never left
// paused in an ended sweep.
TEST_F(EngineCheckpointTest, ATrialPausingWhenItsSweepIsCanceledEndsCanceled) {
  auto channel = Register("a");
  const std::string sweep = CreatePromotionSweep(3, 3);
  const std::string trial = StartOnlyTrial(*channel);
  Report("a", trial, 0, 1, 0.5, /*checkpoint=*/true);
  const auto stops = TakeStops(*channel);
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_TRUE(stops[0].checkpoint()) << "a pause asks the trial for a checkpoint";
  ASSERT_TRUE(engine_->CancelSweep(sweep, "").ok());
  engine_->RunUntilIdle();
  StoppedByScheduler("a", trial);
  EXPECT_EQ(Trial(trial).state(), v1::TRIAL_STATE_CANCELED);
  auto s = store_->GetSweep(sweep);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->counts().paused(), 0);
  EXPECT_EQ(s->state(), v1::SWEEP_STATE_CANCELED);
}

// Li et al.'s rule in the engine: trials pause at rung 0 until a third of the rung ranks below
// one; the best of three goes on in place (a promotion, not a new attempt); once nothing is left
// to start and nothing can be promoted, the paused trials end pruned and the sweep finishes.
TEST_F(EngineCheckpointTest, ThePromotableTrialGoesOnInPlaceAndUnpromotedOnesEndPruned) {
  auto channel = Register("a");
  CreatePromotionSweep(3, 0);
  // Three trials reach rung 0 (step 1) with losses 0.9, 0.8 and 0.1: the first two pause, the
  // third is the best of three and goes on in place.
  std::vector<std::string> trials;
  for (double loss : {0.9, 0.8, 0.1}) {
    const std::string trial = StartOnlyTrial(*channel);
    trials.push_back(trial);
    Report("a", trial, 0, 1, loss, /*checkpoint=*/true);
    if (loss > 0.5) StoppedByScheduler("a", trial);
  }
  EXPECT_EQ(Trial(trials[0]).state(), v1::TRIAL_STATE_PAUSED);
  EXPECT_EQ(Trial(trials[2]).state(), v1::TRIAL_STATE_RUNNING);
  EXPECT_EQ(Trial(trials[2]).promotions(), 1);
  EXPECT_EQ(Trial(trials[2]).resumed_promotions(), 0);
  // It pauses at rung 1 (step 3): alone there. Nothing else is promotable and the run cap is
  // reached; it is stopped.
  Report("a", trials[2], 2, 3, 0.05, /*checkpoint=*/true);
  ASSERT_EQ(TakeStops(*channel).size(), 1u);
  StoppedByScheduler("a", trials[2]);
  // Paused everywhere, nothing promotable (rung 1 holds one value, rung 0's top third is
  // used): the sweep ends and the paused trials end pruned.
  for (const auto& t : trials) EXPECT_EQ(Trial(t).state(), v1::TRIAL_STATE_PRUNED) << t;
  EXPECT_EQ(Trial(trials[2]).attempt(), 1);
}

// After a sweepd restart a running trial whose last acknowledged report was a checkpoint (no
// metric row in the store) goes on reporting: the engine continues after what its agent says is
// durable, not after the last stored row.
TEST_F(EngineCheckpointTest, AfterARestartReportsContinueAfterAnAcknowledgedCheckpoint) {
  auto channel = Register("a");
  CreateSweep(1);
  const std::string trial = StartOnlyTrial(*channel);
  Report("a", trial, 0, 0, 0.5, /*checkpoint=*/true);  // seq 0: checkpoint, seq 1: loss
  // A checkpoint alone at seq 2, acknowledged.
  {
    v1::AgentMessage m;
    auto* batch = m.mutable_metric_batch();
    batch->set_trial_id(trial);
    batch->set_first_seq(2);
    auto* c = batch->add_reports();
    c->set_seq(2);
    c->set_step(1);
    c->set_checkpoint(true);
    Send("a", std::move(m));
  }
  EXPECT_EQ(Trial(trial).checkpoint_step(), 1);
  RestartSweepd();
  auto again = Reattach("a", trial, /*acked_seq=*/2);
  Report("a", trial, 3, 2, 0.25);
  bool acked = false;
  for (auto& m : again->Take()) {
    if (m.has_ack() && !m.ack().exited() && m.ack().seq() == 3) acked = true;
  }
  EXPECT_TRUE(acked) << "the report after the checkpoint was refused as if after a gap";
  auto detail = store_->GetTrial(trial, {"loss"}, 0);
  ASSERT_TRUE(detail.ok());
  ASSERT_EQ(detail->curves.size(), 1u);
  EXPECT_EQ(detail->curves[0].points_size(), 2);  // steps 0 and 2
}

// A pause on its way when sweepd restarts is said again when the agent reattaches the trial
// (the pause is not stored; the rung the trial reached without a promotion is).
TEST_F(EngineCheckpointTest, APauseOnItsWayIsSaidAgainAfterARestart) {
  auto channel = Register("a");
  CreatePromotionSweep(3, 3);
  const std::string trial = StartOnlyTrial(*channel);
  Report("a", trial, 0, 1, 0.5, /*checkpoint=*/true);
  ASSERT_EQ(TakeStops(*channel).size(), 1u);
  RestartSweepd();
  auto again = Reattach("a", trial, /*acked_seq=*/1);
  const auto stops = TakeStops(*again);
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_TRUE(stops[0].checkpoint());
  StoppedByScheduler("a", trial);
  EXPECT_EQ(Trial(trial).state(), v1::TRIAL_STATE_PAUSED);
}

// A trial lost while it waits at a rung it was not promoted past waits there, paused: run again
// at once it would go on past the rung with nobody judging it.
TEST_F(EngineCheckpointTest, ATrialLostAtARungWaitsPausedForItsPromotion) {
  auto channel = Register("a");
  CreatePromotionSweep(3, 3);
  const std::string trial = StartOnlyTrial(*channel);
  Report("a", trial, 0, 1, 0.5, /*checkpoint=*/true);
  ASSERT_EQ(TakeStops(*channel).size(), 1u);
  engine_->AgentDisconnected("a", channel.get());
  engine_->RunUntilIdle();
  Advance(kTimeout + 1);
  EXPECT_EQ(Trial(trial).state(), v1::TRIAL_STATE_PAUSED);
  EXPECT_EQ(Trial(trial).attempt(), 2);
  EXPECT_EQ(Trial(trial).checkpoint_step(), 1);
}

// Method pbt copies checkpoints between trials its agents run: an external (ask/tell) sweep
// cannot use it, and is told so; the same spec on agents is accepted.
TEST_F(EngineRulesTest, AnExternalSweepCannotBePbt) {
  v1::CreateSweepRequest request;
  request.set_spec_yaml(
      "method: pbt\nmetric: {name: loss}\npbt: {interval: 2}\nprogram: train.py\n"
      "parameters:\n  lr: {min: 0.1, max: 1}\n");
  request.set_external(true);
  auto refused = engine_->CreateSweep(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("method: pbt copies checkpoints"));
  request.set_external(false);
  EXPECT_TRUE(engine_->CreateSweep(request).ok());
}

}  // namespace
}  // namespace sweepd::scheduler
