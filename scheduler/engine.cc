// The engine's lifecycle, its task queue and thread, events, lookups and the two state setters.
// The rest of Engine is defined by concern in engine_*.cc (see engine.h).

#include "scheduler/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <future>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <type_traits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/command_template.h"
#include "common/logging.h"
#include "common/param_space.h"
#include "common/spec_parser.h"
#include "common/state_names.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "scheduler/engine_internal.h"

namespace sweepd::scheduler {

Engine::Engine(store::Store* store, EngineOptions options)
    : store_(store),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : &RealClock()),
      id_rng_(options.id_seed) {}

Engine::~Engine() { Stop(); }

int64_t Engine::NowMicros() const { return clock_->NowMicros(); }

std::string Engine::NewSweepPublicId() {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
  uint64_t seed = 0;
  if (options_.id_seed != 0) {
    seed = id_rng_();
  } else {
    std::random_device device;
    seed = (static_cast<uint64_t>(device()) << 32) ^ device() ^
           static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  std::mt19937_64 rng(seed);
  std::string id = "s-";
  for (int i = 0; i < 8; ++i) id += kAlphabet[rng() % 32];
  return id;
}

absl::Status Engine::Start() {
  started_at_ = SteadySeconds();
  driver_ = std::this_thread::get_id();
  RETURN_IF_ERROR(Rebuild());
  if (options_.own_thread) thread_ = std::thread([this] { Loop(); });
  Post([this] { Schedule(); });
  return absl::OkStatus();
}

void Engine::RunUntilIdle() {
  while (true) {
    RunQueuedWithoutCommit();
    // Nothing of its own left: let the store commit what the engine wrote, then take in the
    // completions that posted work, in the order the writer ran them.
    (void)store_->Flush();
    std::lock_guard<std::mutex> lock(tasks_mu_);
    if (foreign_tasks_.empty()) return;
    for (auto& t : foreign_tasks_) tasks_.push_back(std::move(t));
    foreign_tasks_.clear();
  }
}

void Engine::RunQueuedWithoutCommit() {
  while (true) {
    std::function<void()> task;
    {
      std::lock_guard<std::mutex> lock(tasks_mu_);
      if (tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

void Engine::RunTick() { Tick(); }

void Engine::Stop() {
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  tasks_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (auto& [id, agent] : agents_) {
    if (agent.channel) agent.channel->Close();
  }
  {
    std::lock_guard<std::mutex> lock(events_mu_);
    ++event_counter_;
  }
  events_cv_.notify_all();
}

void Engine::Post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    if (stopping_) return;
    if (!options_.own_thread && std::this_thread::get_id() != driver_) {
      foreign_tasks_.push_back(std::move(task));
      return;
    }
    tasks_.push_back(std::move(task));
  }
  tasks_cv_.notify_one();
}

void Engine::Loop() {
  double next_tick = SteadySeconds() + 0.5;
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(tasks_mu_);
      tasks_cv_.wait_for(lock, std::chrono::milliseconds(500),
                         [this] { return stopping_ || !tasks_.empty(); });
      if (!stopping_ && SteadySeconds() >= next_tick) {
        next_tick = SteadySeconds() + 0.5;
        lock.unlock();
        Tick();
        continue;
      }
      if (!stopping_ && tasks_.empty()) continue;
      if (stopping_) {
        // Run what was queued (answers callers waiting in Call) before leaving.
        while (!tasks_.empty()) {
          auto t = std::move(tasks_.front());
          tasks_.pop_front();
          lock.unlock();
          t();
          lock.lock();
        }
        return;
      }
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

store::NewEvent Engine::MakeEvent(int64_t sweep_id, int64_t trial_id, const std::string& agent_id,
                                  const std::string& kind, const std::string& from,
                                  const std::string& to, const std::string& message) const {
  return {.time_us = NowMicros(),
          .sweep_id = sweep_id,
          .trial_id = trial_id,
          .agent_id = agent_id,
          .kind = kind,
          .from_state = from,
          .to_state = to,
          .message = message};
}

store::WriteDone Engine::EventStored(const char* what) {
  return [this, what](absl::Status status) {
    if (!status.ok()) spdlog::error("storing {} failed: {}", what, status.message());
    {
      std::lock_guard<std::mutex> lock(events_mu_);
      ++event_counter_;
    }
    events_cv_.notify_all();
  };
}

void Engine::Event(int64_t sweep_id, int64_t trial_id, const std::string& agent_id,
                   const std::string& kind, const std::string& from, const std::string& to,
                   const std::string& message) {
  store_->AppendEvent(MakeEvent(sweep_id, trial_id, agent_id, kind, from, to, message),
                      EventStored("an event"));
}

Engine::Stats Engine::GetStats() {
  Stats stats{.reports_received = reports_received_.load(std::memory_order_relaxed),
              .reports_acknowledged = reports_acknowledged_.load(std::memory_order_relaxed),
              .metric_batches_refused = batches_refused_total_.load(std::memory_order_relaxed)};
  std::lock_guard<std::mutex> lock(tasks_mu_);
  stats.queue_depth = static_cast<int64_t>(tasks_.size());
  return stats;
}

int64_t Engine::WaitForEvents(int64_t seen, int timeout_ms) {
  std::unique_lock<std::mutex> lock(events_mu_);
  events_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                      [&] { return event_counter_ != seen; });
  return event_counter_;
}

bool Engine::SweepDone(const std::string& sweep_id) {
  return Call<bool>([&]() {
    Sweep* sweep = FindSweep(sweep_id);
    if (sweep == nullptr) return true;
    if (sweep->state == v1::SWEEP_STATE_RUNNING || sweep->state == v1::SWEEP_STATE_PAUSED) {
      return false;
    }
    return sweep->live == 0;
  });
}

Engine::Sweep* Engine::FindSweep(const std::string& public_id) {
  auto it = sweep_ids_.find(public_id);
  return it == sweep_ids_.end() ? nullptr : &sweeps_.at(it->second);
}

Engine::Trial* Engine::FindTrial(const std::string& public_id) {
  auto it = trial_ids_.find(public_id);
  return it == trial_ids_.end() ? nullptr : &trials_.at(it->second);
}

void Engine::CountTrial(Sweep& sweep, v1::TrialState state, int delta) {
  if (state == v1::TRIAL_STATE_ASSIGNED || state == v1::TRIAL_STATE_RUNNING) sweep.active += delta;
  if (state == v1::TRIAL_STATE_QUEUED || state == v1::TRIAL_STATE_ASSIGNED ||
      state == v1::TRIAL_STATE_RUNNING) {
    sweep.live += delta;
  }
}

bool Engine::Live(const Trial& trial) const {
  return trial.state == v1::TRIAL_STATE_QUEUED || trial.state == v1::TRIAL_STATE_ASSIGNED ||
         trial.state == v1::TRIAL_STATE_RUNNING;
}

void Engine::Reindex(Trial& trial) {
  for (const std::string& agent_id : trial.indexed_on) {
    auto it = agent_trials_.find(agent_id);
    if (it == agent_trials_.end()) continue;
    it->second.erase(trial.id);
    if (it->second.empty()) agent_trials_.erase(it);
  }
  trial.indexed_on.clear();
  if (!Live(trial)) return;
  for (const Node& node : trial.nodes) {
    agent_trials_[node.agent_id].insert(trial.id);
    trial.indexed_on.push_back(node.agent_id);
  }
}

std::set<int64_t> Engine::TrialsOn(const std::string& agent_id) const {
  auto it = agent_trials_.find(agent_id);
  return it == agent_trials_.end() ? std::set<int64_t>{} : it->second;
}

v1::Sweep Engine::SweepSnapshot(const Sweep& sweep) {
  v1::Sweep out;
  out.set_id(sweep.public_id);
  out.set_state(sweep.state);
  *out.mutable_spec() = sweep.spec;
  out.set_external(sweep.external);
  if (auto size = sweep.search ? sweep.search->Size() : std::nullopt) out.set_total_trials(*size);
  return out;
}

void Engine::SetSweepState(Sweep& sweep, v1::SweepState state, const std::string& reason) {
  if (sweep.state == state) return;
  const std::string from = SweepStateName(sweep.state);
  sweep.state = state;
  store::SweepUpdate update{.id = sweep.id, .state = state, .reason = reason};
  if (state == v1::SWEEP_STATE_FINISHED || state == v1::SWEEP_STATE_CANCELED ||
      state == v1::SWEEP_STATE_FAILED) {
    update.end_us = NowMicros();
    QueueCheckpointsBeyondTheBest(sweep);
  }
  // The state and its event in one write (the store's invariant: no transition without event).
  store_->UpdateSweep(
      std::move(update),
      MakeEvent(sweep.id, 0, "", "sweep.state", from, SweepStateName(state), reason),
      EventStored("a sweep state change"));
  LogInfo({.sweep = sweep.public_id}, "{} -> {}: {}", from, SweepStateName(state), reason);
}

void Engine::SetTrialState(Trial& trial, v1::TrialState state, const std::string& reason,
                           store::TrialUpdate update) {
  const std::string from = TrialStateName(trial.state);
  const bool changed = trial.state != state;
  if (changed) {
    CountTrial(sweeps_.at(trial.sweep_id), trial.state, -1);
    CountTrial(sweeps_.at(trial.sweep_id), state, +1);
  }
  trial.state = state;
  if (state == v1::TRIAL_STATE_RUNNING && trial.copy_pending) {
    // A pbt copy runs once its agent has copied the parent's checkpoint (started, or reattached
    // after a restart): the parent's pin goes.
    trial.copy_pending = false;
    sweeps_.at(trial.sweep_id).pending_copies.erase(trial.id);
  }
  if (state == v1::TRIAL_STATE_PAUSED) {
    sweeps_.at(trial.sweep_id).paused.insert(trial.id);
  } else {
    sweeps_.at(trial.sweep_id).paused.erase(trial.id);
  }
  Reindex(trial);
  update.id = trial.id;
  if (changed) update.state = state;
  if (!reason.empty()) update.reason = reason;
  Sweep& sweep = sweeps_.at(trial.sweep_id);
  if (trial.history_index < sweep.history.size()) sweep.history[trial.history_index].state = state;
  if (!changed) {
    store_->UpdateTrial(std::move(update), [](absl::Status s) {
      if (!s.ok()) spdlog::error("storing a trial update failed: {}", s.message());
    });
    return;
  }
  // The state and its event in one write (the store's invariant: no transition without event).
  store_->UpdateTrial(std::move(update),
                      MakeEvent(trial.sweep_id, trial.id, trial.agent_id, "trial.state", from,
                                TrialStateName(state), reason),
                      EventStored("a trial state change"));
  LogInfo({.sweep = sweep.public_id, .trial = trial.public_id}, "{} -> {}{}{}", from,
          TrialStateName(state), reason.empty() ? "" : ": ", reason);
}

}  // namespace sweepd::scheduler
