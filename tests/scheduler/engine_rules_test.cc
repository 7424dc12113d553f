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

}  // namespace
}  // namespace sweepd::scheduler
