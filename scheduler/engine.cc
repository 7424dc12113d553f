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

namespace sweepd::scheduler {
namespace {

using google::protobuf::util::TimeUtil;

std::string TrialPublicId(const std::string& sweep_public_id, int64_t number) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%04lld", static_cast<long long>(number));
  return absl::StrCat(sweep_public_id, "-", buf);
}

std::string ParamsJson(const ParamSet& params) {
  nlohmann::ordered_json obj = nlohmann::ordered_json::object();
  for (const auto& p : params) {
    auto v = nlohmann::ordered_json::parse(p.value_json(), nullptr, false);
    obj[p.name()] = v.is_discarded() ? nlohmann::ordered_json(p.value_json()) : v;
  }
  return obj.dump();
}

bool Better(double a, double b, bool maximize) {
  if (std::isnan(a)) return false;
  if (std::isnan(b)) return true;
  return maximize ? a > b : a < b;
}

// Checks a user-given value against the parameter's space; returns the value to store. A value
// that equals a categorical's (16.0 for 16) becomes the categorical's own, as in Optuna (it
// stores the choice it matched) and W&B: the script gets what the spec lists, and trials group
// by one value. An integral number for an integer parameter is stored as an integer likewise.
absl::StatusOr<std::string> CanonicalValue(const v1::Parameter& leaf,
                                           const std::string& full_value_json) {
  auto v = nlohmann::json::parse(full_value_json, nullptr, false);
  // Errors quote the value, cut: a 100,000-digit value must not make a 100 kB error.
  const std::string value_json =
      full_value_json.size() <= 80
          ? full_value_json
          : absl::StrCat(full_value_json.substr(0, 60), "... (", full_value_json.size(), " bytes)");
  if (v.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat("params.", leaf.path(), ": '", value_json, "' is not a JSON value"));
  }
  switch (leaf.distribution()) {
    case v1::CONSTANT:
    case v1::CATEGORICAL: {
      for (const auto& allowed : leaf.values_json()) {
        if (nlohmann::json::parse(allowed) == v) return allowed;
      }
      return absl::InvalidArgumentError(absl::StrCat("params.", leaf.path(), ": ", value_json,
                                                     " is not one of ",
                                                     absl::StrJoin(leaf.values_json(), ", ")));
    }
    default:
      break;
  }
  if (!v.is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat("params.", leaf.path(), ": must be a number; got ", value_json));
  }
  const double x = v.get<double>();
  double lo = leaf.min(), hi = leaf.max();
  switch (leaf.distribution()) {
    case v1::INT_UNIFORM:
    case v1::UNIFORM:
    case v1::LOG_UNIFORM_VALUES:
    case v1::INV_LOG_UNIFORM_VALUES:
      break;
    case v1::LOG_UNIFORM:
      lo = std::exp(lo);
      hi = std::exp(hi);
      break;
    case v1::INV_LOG_UNIFORM:
      lo = std::exp(-leaf.max());
      hi = std::exp(-leaf.min());
      break;
    default:
      lo = -std::numeric_limits<double>::infinity();  // unbounded or quantised laws: any number
      hi = std::numeric_limits<double>::infinity();
      break;
  }
  if (x < lo || x > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat("params.", leaf.path(), ": ", value_json, " is outside [", lo, ", ", hi, "]"));
  }
  if (leaf.integer() && !v.is_number_integer()) {
    if (x != std::floor(x) || std::fabs(x) > 9007199254740992.0) {
      return absl::InvalidArgumentError(
          absl::StrCat("params.", leaf.path(), ": must be an integer; got ", value_json));
    }
    return nlohmann::json(static_cast<int64_t>(x)).dump();
  }
  return v.dump();
}

}  // namespace

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
    std::function<void()> task;
    {
      std::lock_guard<std::mutex> lock(tasks_mu_);
      if (!tasks_.empty()) {
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
    }
    if (task) {
      task();
      continue;
    }
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

template <typename T>
T Engine::Call(std::function<T()> task) {
  auto promise = std::make_shared<std::promise<T>>();
  auto future = promise->get_future();
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    if (stopping_) {
      if constexpr (std::is_constructible_v<T, absl::Status>) {
        return T(absl::UnavailableError("sweepd is shutting down"));
      } else {
        return T{};
      }
    }
    tasks_.push_back([promise, task = std::move(task)] { promise->set_value(task()); });
  }
  tasks_cv_.notify_one();
  if (!options_.own_thread) RunUntilIdle();  // the caller is the driving thread
  return future.get();
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

// ---------------------------------------------------------------------------------------------

absl::Status Engine::Rebuild() {
  ASSIGN_OR_RETURN(store::MaxIds ids, store_->GetMaxIds());
  next_sweep_id_ = ids.sweep_id + 1;
  next_trial_id_ = ids.trial_id + 1;
  ASSIGN_OR_RETURN(auto sweeps, store_->ListSweeps({}, 1'000'000, 0));
  // Oldest first, so trial numbers and histories come back in order.
  std::reverse(sweeps.begin(), sweeps.end());
  int64_t sweep_key = 0;
  std::map<std::string, v1::Trial> stored_running;  // placements of trials that were running
  for (auto& s : sweeps) {
    ASSIGN_OR_RETURN(store::SweepKeys keys, store_->GetSweepKeys(s.id()));
    sweep_key = keys.sweep_id;
    Sweep sweep;
    sweep.id = sweep_key;
    sweep.public_id = s.id();
    sweep.spec = s.spec();
    sweep.state = s.state();
    sweep.external = s.external();
    sweep.gpu_seconds = s.gpu_seconds_used();
    auto search = CreateSearchMethod(sweep.spec);
    if (!search.ok()) return search.status();
    sweep.search = std::move(*search);
    ASSIGN_OR_RETURN(sweep.pruner, pruning::CreatePruner(sweep.spec));
    sweep.judge_period = sweep.spec.early_terminate().period_seconds();
    if (sweep.spec.has_pruner() && sweep.spec.pruner().resource() != "step") {
      sweep.resource_metric = sweep.spec.pruner().resource();
    }
    ASSIGN_OR_RETURN(store::TrialPage page, store_->ListTrials({.sweep_public_id = s.id(),
                                                                .sort_metric = "",
                                                                .limit = 10'000'000,
                                                                .with_total = false,
                                                                .by_number = true}));
    for (auto& t : page.trials) {
      Trial trial;
      trial.public_id = t.id();
      trial.id = keys.trial_ids.at(t.id());
      trial.sweep_id = sweep.id;
      trial.number = t.number();
      trial.state = t.state();
      trial.params.assign(t.params().begin(), t.params().end());
      trial.attempt = t.attempt();
      trial.enqueued = t.enqueued();
      trial.history_index = sweep.history.size();
      TrialRecord record{.params = trial.params, .state = trial.state};
      if (t.has_last_value()) record.value = t.last_value();
      record.last_step = t.last_step();
      sweep.history.push_back(std::move(record));
      if (t.has_best_value()) {
        const bool maximize = sweep.spec.metric().goal() == v1::GOAL_MAXIMIZE;
        if (!sweep.best_value || Better(t.best_value(), *sweep.best_value, maximize)) {
          sweep.best_value = t.best_value();
        }
      }
      if (!t.enqueued() && t.attempt() == 1) ++sweep.proposed;
      if (t.state() == v1::TRIAL_STATE_ASSIGNED || t.state() == v1::TRIAL_STATE_RUNNING) {
        stored_running[t.id()] = t;
      }
      if (t.state() == v1::TRIAL_STATE_FAILED) ++sweep.failures;
      CountTrial(sweep, trial.state, +1);
      sweep.trial_ids.push_back(trial.id);
      trial_ids_[trial.public_id] = trial.id;
      trials_[trial.id] = std::move(trial);
    }
    sweep_ids_[sweep.public_id] = sweep.id;
    sweeps_[sweep.id] = std::move(sweep);
    RETURN_IF_ERROR(ReplayPruner(sweeps_.at(sweep_key)));
    for (const auto& [trial_key, last_seq] : keys.last_seqs) {
      auto it = trials_.find(trial_key);
      if (it != trials_.end()) {
        it->second.last_seq_seen = std::max(it->second.last_seq_seen, last_seq);
      }
    }
  }
  // Trials that were on agents when sweepd stopped keep running there: they wait (state
  // unchanged) for their agents to re-register and reattach them, and count as lost only after
  // reattach_seconds. Their GPUs are held meanwhile, so nothing is placed on them twice.
  const double deadline = SteadySeconds() + options_.reattach_seconds;
  for (auto& [id, trial] : trials_) {
    Sweep& sweep = sweeps_.at(trial.sweep_id);
    if (trial.state == v1::TRIAL_STATE_ASSIGNED || trial.state == v1::TRIAL_STATE_RUNNING) {
      auto it = stored_running.find(trial.public_id);
      const bool external = it != stored_running.end() && it->second.agent_ids_size() == 1 &&
                            it->second.agent_ids(0) == "external";
      if (external) {
        trial.agent_id = "external";  // ask/tell: the runner tells when it ends
        continue;
      }
      if (it != stored_running.end() && it->second.agent_ids_size() > 0) {
        // Nodes from the stored placement: agent ids, and per node its GPUs ("0,1;2,3").
        const std::string gpus = absl::StrJoin(it->second.gpus(), ",");
        std::vector<std::string> per_node = absl::StrSplit(gpus, ';');
        for (int n = 0; n < it->second.agent_ids_size(); ++n) {
          Node node{.agent_id = it->second.agent_ids(n), .assigned = true, .attached = false};
          if (static_cast<size_t>(n) < per_node.size()) {
            for (absl::string_view g :
                 absl::StrSplit(per_node[static_cast<size_t>(n)], ',', absl::SkipEmpty())) {
              int index = 0;
              if (absl::SimpleAtoi(g, &index)) node.gpu_indices.push_back(index);
            }
          }
          trial.nodes.push_back(std::move(node));
        }
        trial.agent_id = trial.nodes[0].agent_id;
        trial.reattach_deadline = deadline;
        if (it->second.has_start_time()) {
          trial.start_us =
              google::protobuf::util::TimeUtil::TimestampToMicroseconds(it->second.start_time());
        }
        continue;
      }
      SetTrialState(trial, v1::TRIAL_STATE_LOST, "sweepd restarted before the trial was placed");
    }
    if (trial.state == v1::TRIAL_STATE_LOST && trial.attempt <= sweep.spec.max_retries() &&
        (sweep.state == v1::SWEEP_STATE_RUNNING || sweep.state == v1::SWEEP_STATE_PAUSED)) {
      SetTrialState(trial, v1::TRIAL_STATE_QUEUED, "retrying after loss",
                    {.attempt = trial.attempt + 1});
      trial.attempt += 1;
    }
    if (trial.state == v1::TRIAL_STATE_QUEUED) sweep.queue.push_back(trial.id);
  }
  spdlog::info("rebuilt {} sweeps and {} trials from the store", sweeps_.size(), trials_.size());
  return absl::OkStatus();
}

void Engine::Event(int64_t sweep_id, int64_t trial_id, const std::string& agent_id,
                   const std::string& kind, const std::string& from, const std::string& to,
                   const std::string& message) {
  store_->AppendEvent({.time_us = NowMicros(),
                       .sweep_id = sweep_id,
                       .trial_id = trial_id,
                       .agent_id = agent_id,
                       .kind = kind,
                       .from_state = from,
                       .to_state = to,
                       .message = message},
                      [this](absl::Status status) {
                        if (!status.ok()) {
                          spdlog::error("storing an event failed: {}", status.message());
                        }
                        {
                          std::lock_guard<std::mutex> lock(events_mu_);
                          ++event_counter_;
                        }
                        events_cv_.notify_all();
                      });
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
  }
  store_->UpdateSweep(std::move(update), [](absl::Status s) {
    if (!s.ok()) spdlog::error("storing a sweep state failed: {}", s.message());
  });
  Event(sweep.id, 0, "", "sweep.state", from, SweepStateName(state), reason);
  spdlog::info("[sweep={}] {} -> {}: {}", sweep.public_id, from, SweepStateName(state), reason);
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
  update.id = trial.id;
  if (changed) update.state = state;
  if (!reason.empty()) update.reason = reason;
  Sweep& sweep = sweeps_.at(trial.sweep_id);
  if (trial.history_index < sweep.history.size()) sweep.history[trial.history_index].state = state;
  store_->UpdateTrial(std::move(update), [](absl::Status s) {
    if (!s.ok()) spdlog::error("storing a trial update failed: {}", s.message());
  });
  if (changed) {
    Event(trial.sweep_id, trial.id, trial.agent_id, "trial.state", from, TrialStateName(state),
          reason);
    spdlog::info("[sweep={}][trial={}] {} -> {}{}{}", sweep.public_id, trial.public_id, from,
                 TrialStateName(state), reason.empty() ? "" : ": ", reason);
  }
}

// ---------------------------------------------------------------------------------------------
// Sweep operations.

absl::StatusOr<v1::CreateSweepResponse> Engine::CreateSweep(const v1::CreateSweepRequest& request) {
  if (request.spec_yaml().size() > kMaxSpecBytes) {
    return absl::InvalidArgumentError(absl::StrCat("spec_yaml: is ", request.spec_yaml().size(),
                                                   " bytes; the limit is ", kMaxSpecBytes));
  }
  auto parsed = ParseSweepSpec(request.spec_yaml(), request.external());
  if (!parsed.ok()) return parsed.status();
  if (parsed->spec.resources().nodes() > 1 && request.external()) {
    return absl::InvalidArgumentError(
        "resources.nodes: an external sweep has no agents to place a multi-node trial on; use "
        "nodes: 1 (your runner decides where its trials run)");
  }
  auto search = CreateSearchMethod(parsed->spec);
  if (!search.ok()) return search.status();
  auto pruner = pruning::CreatePruner(parsed->spec);
  if (!pruner.ok()) return pruner.status();
  auto done = std::make_shared<std::promise<absl::Status>>();
  auto committed = done->get_future();
  auto response = Call<absl::StatusOr<v1::CreateSweepResponse>>(
      [&]() -> absl::StatusOr<v1::CreateSweepResponse> {
        Sweep sweep;
        sweep.id = next_sweep_id_++;
        do {
          sweep.public_id = NewSweepPublicId();
        } while (sweep_ids_.contains(sweep.public_id));
        sweep.spec = parsed->spec;
        sweep.spec_dir = request.spec_dir();
        sweep.state = request.paused() ? v1::SWEEP_STATE_PAUSED : v1::SWEEP_STATE_RUNNING;
        sweep.external = request.external();
        sweep.search = std::move(*search);
        sweep.pruner = std::move(*pruner);
        sweep.judge_period = sweep.spec.early_terminate().period_seconds();
        if (sweep.spec.has_pruner() && sweep.spec.pruner().resource() != "step") {
          sweep.resource_metric = sweep.spec.pruner().resource();
        }
        store_->CreateSweep({.id = sweep.id,
                             .public_id = sweep.public_id,
                             .spec = sweep.spec,
                             .spec_yaml = request.spec_yaml(),
                             .state = sweep.state,
                             .external = sweep.external,
                             .created_us = NowMicros()},
                            [done](absl::Status s) { done->set_value(s); });
        Event(sweep.id, 0, "", "sweep.created", "", SweepStateName(sweep.state),
              absl::StrCat("method ", SearchMethodName(sweep.spec.method())));
        v1::CreateSweepResponse out;
        *out.mutable_sweep() = SweepSnapshot(sweep);
        for (const auto& w : parsed->warnings) out.add_warnings(w);
        spdlog::info("[sweep={}] created ({}, method {})", sweep.public_id,
                     sweep.spec.name().empty() ? "unnamed" : sweep.spec.name(),
                     SearchMethodName(sweep.spec.method()));
        sweep_ids_[sweep.public_id] = sweep.id;
        sweeps_[sweep.id] = std::move(sweep);
        Schedule();
        return out;
      });
  RETURN_IF_ERROR(committed.get());
  return response;
}

absl::StatusOr<v1::Sweep> Engine::PauseSweep(const std::string& sweep_id) {
  return Call<absl::StatusOr<v1::Sweep>>([&]() -> absl::StatusOr<v1::Sweep> {
    Sweep* sweep = FindSweep(sweep_id);
    if (sweep == nullptr) return absl::NotFoundError(absl::StrCat("no sweep '", sweep_id, "'"));
    if (sweep->state != v1::SWEEP_STATE_RUNNING) {
      return absl::FailedPreconditionError(absl::StrCat("sweep ", sweep_id, " is ",
                                                        SweepStateName(sweep->state),
                                                        "; only a running sweep can "
                                                        "be paused"));
    }
    SetSweepState(*sweep, v1::SWEEP_STATE_PAUSED, "paused by a user");
    return SweepSnapshot(*sweep);
  });
}

absl::StatusOr<v1::Sweep> Engine::ResumeSweep(const std::string& sweep_id) {
  return Call<absl::StatusOr<v1::Sweep>>([&]() -> absl::StatusOr<v1::Sweep> {
    Sweep* sweep = FindSweep(sweep_id);
    if (sweep == nullptr) return absl::NotFoundError(absl::StrCat("no sweep '", sweep_id, "'"));
    if (sweep->state != v1::SWEEP_STATE_PAUSED) {
      return absl::FailedPreconditionError(absl::StrCat("sweep ", sweep_id, " is ",
                                                        SweepStateName(sweep->state),
                                                        "; only a paused sweep can "
                                                        "be resumed"));
    }
    SetSweepState(*sweep, v1::SWEEP_STATE_RUNNING, "resumed by a user");
    Schedule();
    return SweepSnapshot(*sweep);
  });
}

absl::StatusOr<v1::Sweep> Engine::CancelSweep(const std::string& sweep_id,
                                              const std::string& reason) {
  return Call<absl::StatusOr<v1::Sweep>>([&]() -> absl::StatusOr<v1::Sweep> {
    Sweep* sweep = FindSweep(sweep_id);
    if (sweep == nullptr) return absl::NotFoundError(absl::StrCat("no sweep '", sweep_id, "'"));
    if (sweep->state != v1::SWEEP_STATE_RUNNING && sweep->state != v1::SWEEP_STATE_PAUSED) {
      return absl::FailedPreconditionError(
          absl::StrCat("sweep ", sweep_id, " already ended (", SweepStateName(sweep->state), ")"));
    }
    const std::string why = reason.empty() ? "canceled by a user" : reason;
    SetSweepState(*sweep, v1::SWEEP_STATE_CANCELED, why);
    for (int64_t id : sweep->trial_ids) {
      Trial& trial = trials_.at(id);
      if (trial.state == v1::TRIAL_STATE_QUEUED) {
        SetTrialState(trial, v1::TRIAL_STATE_CANCELED, why, {.end_us = NowMicros()});
      } else if (Live(trial)) {
        StopTrial(trial, v1::TRIAL_STATE_CANCELED, "sweep canceled");
      }
    }
    sweep->queue.clear();
    return SweepSnapshot(*sweep);
  });
}

absl::StatusOr<v1::Trial> Engine::EnqueueTrial(const v1::EnqueueTrialRequest& request) {
  return Call<absl::StatusOr<v1::Trial>>([&]() -> absl::StatusOr<v1::Trial> {
    Sweep* sweep = FindSweep(request.sweep_id());
    if (sweep == nullptr) {
      return absl::NotFoundError(absl::StrCat("no sweep '", request.sweep_id(), "'"));
    }
    if (sweep->state != v1::SWEEP_STATE_RUNNING && sweep->state != v1::SWEEP_STATE_PAUSED) {
      return absl::FailedPreconditionError(
          absl::StrCat("sweep ", request.sweep_id(), " ended (", SweepStateName(sweep->state),
                       "); trials can be enqueued only while it runs or is paused"));
    }
    if (static_cast<int64_t>(sweep->trial_ids.size()) >= kMaxTrialsPerSweep) {
      return absl::ResourceExhaustedError(
          absl::StrCat("sweep ", request.sweep_id(), " has ", kMaxTrialsPerSweep,
                       " trials, the most one sweep may have; start another sweep"));
    }
    const auto leaves = LeafParameters(sweep->spec);
    std::map<std::string, std::string> given;
    for (const auto& p : request.params()) {
      auto leaf = std::find_if(leaves.begin(), leaves.end(),
                               [&](const v1::Parameter* l) { return l->path() == p.name(); });
      if (leaf == leaves.end()) {
        std::vector<std::string> names;
        for (const auto* l : leaves) names.push_back(l->path());
        return absl::InvalidArgumentError(absl::StrCat("params.", p.name(),
                                                       ": not a parameter of this sweep; it has ",
                                                       absl::StrJoin(names, ", ")));
      }
      ASSIGN_OR_RETURN(std::string value, CanonicalValue(**leaf, p.value_json()));
      if (!given.emplace(p.name(), std::move(value)).second) {
        return absl::InvalidArgumentError(absl::StrCat("params.", p.name(), ": given twice"));
      }
    }
    // Parameters not given come from the search method, as a proposal would.
    ParamSet params;
    if (given.size() < leaves.size()) {
      auto proposal = sweep->search->Propose(sweep->history);
      if (!proposal.ok() && proposal.status().code() != absl::StatusCode::kOutOfRange) {
        return proposal.status();
      }
      if (proposal.ok()) params = std::move(*proposal);
    }
    if (params.empty()) {
      for (const auto* leaf : leaves) {
        v1::TrialParam p;
        p.set_name(leaf->path());
        p.set_value_json(GridValueCount(*leaf) > 0 ? GridValue(*leaf, 0) : "null");
        params.push_back(std::move(p));
      }
    }
    for (auto& p : params) {
      if (auto it = given.find(p.name()); it != given.end()) p.set_value_json(it->second);
    }
    auto id = NewTrial(*sweep, std::move(params), /*enqueued=*/true);
    if (!id) return absl::InternalError("could not create the trial");
    // Enqueued trials run before proposed ones.
    sweep->queue.erase(std::find(sweep->queue.begin(), sweep->queue.end(), *id));
    sweep->queue.push_front(*id);
    Trial& trial = trials_.at(*id);
    v1::Trial out;
    out.set_id(trial.public_id);
    out.set_sweep_id(sweep->public_id);
    out.set_number(trial.number);
    out.set_state(trial.state);
    out.set_enqueued(true);
    for (const auto& p : trial.params) *out.add_params() = p;
    Schedule();
    return out;
  });
}

v1::Agent Engine::AgentSnapshot(const Agent& agent) const {
  v1::Agent info = agent.info;
  info.set_state(!agent.connected    ? v1::AGENT_STATE_DISCONNECTED
                 : agent.quarantined ? v1::AGENT_STATE_QUARANTINED
                 : agent.draining    ? v1::AGENT_STATE_DRAINING
                                     : v1::AGENT_STATE_CONNECTED);
  info.set_quarantine_reason(agent.quarantine_reason);
  info.clear_running_trial_ids();
  for (size_t i = 0; i < agent.slot_trial.size(); ++i) {
    if (i < static_cast<size_t>(info.gpus_size())) {
      info.mutable_gpus(static_cast<int>(i))->set_trial_id(agent.slot_trial[i]);
    }
    if (!agent.slot_trial[i].empty()) {
      const auto& running = info.running_trial_ids();
      if (std::find(running.begin(), running.end(), agent.slot_trial[i]) == running.end()) {
        info.add_running_trial_ids(agent.slot_trial[i]);
      }
    }
  }
  return info;
}

absl::StatusOr<std::vector<v1::Agent>> Engine::ListAgents(bool all) {
  return Call<absl::StatusOr<std::vector<v1::Agent>>>(
      [&]() -> absl::StatusOr<std::vector<v1::Agent>> {
        std::vector<v1::Agent> out;
        for (auto& [id, agent] : agents_) {
          if (!all && !agent.connected) continue;
          out.push_back(AgentSnapshot(agent));
        }
        return out;
      });
}

absl::StatusOr<v1::Agent> Engine::ReleaseAgent(const std::string& agent_id) {
  return Call<absl::StatusOr<v1::Agent>>([&]() -> absl::StatusOr<v1::Agent> {
    auto it = agents_.find(agent_id);
    if (it == agents_.end()) return absl::NotFoundError(absl::StrCat("no agent ", agent_id));
    Agent& agent = it->second;
    if (!agent.quarantined) {
      return absl::FailedPreconditionError(absl::StrCat("agent ", agent_id, " is not quarantined"));
    }
    agent.quarantined = false;
    agent.quarantine_reason.clear();
    agent.failure_times.clear();
    Event(0, 0, agent.id, "agent.released", "quarantined", "connected", "released by a user");
    spdlog::info("[agent={}] released from quarantine", agent.id);
    Schedule();
    return AgentSnapshot(agent);
  });
}

void Engine::CountAgentFailure(Agent& agent, const std::string& trial_id) {
  const double now = SteadySeconds();
  agent.failure_times.push_back(now);
  while (!agent.failure_times.empty() &&
         agent.failure_times.front() < now - options_.quarantine_window_seconds) {
    agent.failure_times.pop_front();
  }
  if (agent.quarantined ||
      static_cast<int>(agent.failure_times.size()) < options_.quarantine_failures) {
    return;
  }
  agent.quarantined = true;
  agent.quarantine_reason =
      absl::StrCat(agent.failure_times.size(), " trials failed within ",
                   options_.quarantine_window_seconds, " s (last: ", trial_id, ")");
  Event(0, 0, agent.id, "agent.quarantined", "connected", "quarantined", agent.quarantine_reason);
  spdlog::warn("[agent={}] quarantined: {}; `sweepctl agents --release {}` lifts it", agent.id,
               agent.quarantine_reason, agent.id);
}

// ---------------------------------------------------------------------------------------------
// Scheduling.

std::optional<int64_t> Engine::NewTrial(Sweep& sweep, ParamSet params, bool enqueued) {
  Trial trial;
  trial.id = next_trial_id_++;
  trial.sweep_id = sweep.id;
  trial.number = static_cast<int64_t>(sweep.trial_ids.size());
  trial.public_id = TrialPublicId(sweep.public_id, trial.number);
  trial.params = std::move(params);
  trial.enqueued = enqueued;
  trial.history_index = sweep.history.size();
  sweep.history.push_back(TrialRecord{.params = trial.params, .state = v1::TRIAL_STATE_QUEUED});
  store_->CreateTrial({.id = trial.id,
                       .sweep_id = sweep.id,
                       .number = trial.number,
                       .public_id = trial.public_id,
                       .state = v1::TRIAL_STATE_QUEUED,
                       .params_json = ParamsJson(trial.params),
                       .attempt = 1,
                       .enqueued = enqueued,
                       .created_us = NowMicros()},
                      [](absl::Status s) {
                        if (!s.ok()) spdlog::error("storing a trial failed: {}", s.message());
                      });
  Event(sweep.id, trial.id, "", "trial.created", "", "queued",
        enqueued ? "enqueued by a user" : "proposed");
  if (!enqueued) ++sweep.proposed;
  CountTrial(sweep, v1::TRIAL_STATE_QUEUED, +1);
  sweep.trial_ids.push_back(trial.id);
  sweep.queue.push_back(trial.id);
  trial_ids_[trial.public_id] = trial.id;
  const int64_t id = trial.id;
  trials_[id] = std::move(trial);
  return id;
}

void Engine::Schedule() {
  // No new trials while the store cannot commit (they could not be stored; a trial created just
  // before a fault is detected may still start, and is killed on re-registration if sweepd
  // restarts before storing it).
  if (store_->Degraded()) {
    store_was_degraded_ = true;
    return;
  }
  for (auto& [id, sweep] : sweeps_) {
    if (sweep.state == v1::SWEEP_STATE_RUNNING) {
      while (ScheduleSweep(sweep)) {
      }
      MaybeFinish(sweep);
    }
    UpdateStall(sweep);
  }
}

void Engine::JudgeRunningTrials(Sweep& sweep) {
  if (!sweep.pruner ||
      (sweep.state != v1::SWEEP_STATE_RUNNING && sweep.state != v1::SWEEP_STATE_PAUSED)) {
    return;
  }
  for (int64_t id : sweep.trial_ids) {
    Trial& trial = trials_.at(id);
    if (trial.state != v1::TRIAL_STATE_RUNNING || trial.stop_as) continue;
    const pruning::Decision decision = sweep.pruner->Judge(trial.id);
    if (!decision.stop) continue;
    Event(sweep.id, trial.id, trial.agent_id, "trial.pruned", TrialStateName(trial.state), "pruned",
          decision.reason);
    spdlog::info("[sweep={}][trial={}] {}", sweep.public_id, trial.public_id, decision.reason);
    StopTrial(trial, v1::TRIAL_STATE_PRUNED, decision.reason);
  }
}

void Engine::UpdateStall(Sweep& sweep) {
  std::string reason;
  // Stuck: it has work left, nothing of it runs, and scheduling just found no place for it.
  // (With a trial running, or nothing left to run, it is only waiting.)
  const bool work_left = !sweep.queue.empty() || !(sweep.exhausted || sweep.target_reached);
  if (sweep.state == v1::SWEEP_STATE_RUNNING && !sweep.external && sweep.active == 0 && work_left &&
      Placement(sweep).empty()) {
    reason = WhyNoPlacement(sweep);
  }
  if (reason == sweep.stall_reason) return;
  sweep.stall_reason = reason;
  {
    std::lock_guard<std::mutex> lock(stalls_mu_);
    if (reason.empty()) {
      stalls_.erase(sweep.public_id);
    } else {
      stalls_[sweep.public_id] = reason;
    }
  }
  if (!reason.empty()) {
    spdlog::warn("[sweep={}] stalled: {}", sweep.public_id, reason);
    Event(sweep.id, 0, "", "sweep.stalled", "running", "stalled", reason);
  } else if (sweep.state == v1::SWEEP_STATE_RUNNING) {
    Event(sweep.id, 0, "", "sweep.unstalled", "stalled", "running", "trials can start again");
  }
}

std::string Engine::WhyNoPlacement(const Sweep& sweep) const {
  const int slots = std::max(1, sweep.spec.resources().gpus_per_node());
  const int nodes = std::max(1, sweep.spec.resources().nodes());
  const std::string needs =
      nodes > 1 ? absl::StrCat(nodes, " agents with ", slots, " free GPUs or slots each")
                : absl::StrCat("an agent with ", slots, " free GPU", slots > 1 ? "s" : "",
                               " or slot", slots > 1 ? "s" : "");
  // Not stuck while help may be on its way: just after sweepd started (agents re-register), or
  // while an agent that would fit is away but not yet given up (a reconnect, a restart).
  if (agents_.empty() && SteadySeconds() - started_at_ < options_.agent_timeout_seconds) return "";
  for (const auto& [id, agent] : agents_) {
    if (!agent.connected && agent.disconnected_at > 0 && !agent.quarantined &&
        agent.slot_trial.size() >= static_cast<size_t>(slots)) {
      return "";
    }
  }
  std::vector<std::string> quarantined;
  std::vector<std::string> draining;
  int connected = 0;
  int big_enough = 0;
  size_t largest = 0;
  for (const auto& [id, agent] : agents_) {
    if (!agent.connected) continue;
    ++connected;
    if (agent.quarantined) {
      quarantined.push_back(absl::StrCat(id, " (", agent.quarantine_reason, ")"));
    } else if (agent.draining) {
      draining.push_back(id);
    } else {
      largest = std::max(largest, agent.slot_trial.size());
      if (agent.slot_trial.size() >= static_cast<size_t>(slots)) ++big_enough;
    }
  }
  if (connected == 0) return absl::StrCat("no agent is connected; its trials need ", needs);
  std::vector<std::string> parts;
  if (!quarantined.empty()) {
    parts.push_back(absl::StrCat(
        quarantined.size() == static_cast<size_t>(connected) ? "every agent is quarantined: "
                                                             : "quarantined: ",
        absl::StrJoin(quarantined, "; "),
        " (`sweepctl agents --release ID` lifts it once the cause is fixed)"));
  }
  if (!draining.empty()) {
    parts.push_back(absl::StrCat("draining: ", absl::StrJoin(draining, ", ")));
  }
  // Agents that fit but whose slots hold other sweeps' trials: only waiting, not stuck.
  if (big_enough >= nodes) return "";
  if (quarantined.size() + draining.size() == static_cast<size_t>(connected)) {
    return absl::StrJoin(parts, "; ");
  }
  parts.push_back(absl::StrCat("its trials need ", needs, "; ",
                               big_enough == 0 && largest > 0
                                   ? absl::StrCat("the largest usable agent has ", largest)
                                   : absl::StrCat(big_enough, " usable agent(s) fit")));
  return absl::StrJoin(parts, "; ");
}

std::string Engine::StallReason(const std::string& sweep_id) const {
  std::lock_guard<std::mutex> lock(stalls_mu_);
  auto it = stalls_.find(sweep_id);
  return it == stalls_.end() ? "" : it->second;
}

// Starts at most one trial of the sweep; true when it did (call again).
bool Engine::ScheduleSweep(Sweep& sweep) {
  if (sweep.external) return false;
  if (sweep.spec.parallelism() > 0 && sweep.active >= sweep.spec.parallelism()) return false;
  if (sweep.queue.empty()) {
    if (sweep.exhausted || sweep.target_reached) return false;
    int64_t cap = sweep.spec.run_cap();
    if (sweep.spec.budget().max_trials() > 0) {
      cap = cap > 0 ? std::min(cap, sweep.spec.budget().max_trials())
                    : sweep.spec.budget().max_trials();
    }
    if (cap <= 0 || cap > kMaxTrialsPerSweep) cap = kMaxTrialsPerSweep;
    if (static_cast<int64_t>(sweep.trial_ids.size()) >= cap) {
      sweep.exhausted = true;
      sweep.exhausted_reason = absl::StrCat("run cap of ", cap, " trials reached");
      return false;
    }
    if (sweep.spec.budget().gpu_hours() > 0 &&
        sweep.gpu_seconds >= sweep.spec.budget().gpu_hours() * 3600) {
      sweep.exhausted = true;
      sweep.exhausted_reason =
          absl::StrCat("budget of ", sweep.spec.budget().gpu_hours(), " GPU-hours used");
      return false;
    }
    // A placement first: no point proposing what cannot run.
    if (Placement(sweep).empty()) return false;
    auto params = sweep.search->Propose(sweep.history);
    if (!params.ok()) {
      sweep.exhausted = true;
      sweep.exhausted_reason = std::string(params.status().message());
      if (params.status().code() != absl::StatusCode::kOutOfRange) {
        SetSweepState(sweep, v1::SWEEP_STATE_FAILED,
                      absl::StrCat("search failed: ", params.status().message()));
      }
      return false;
    }
    NewTrial(sweep, std::move(*params), false);
  }
  Trial& trial = trials_.at(sweep.queue.front());
  if (!Assign(sweep, trial)) return false;
  sweep.queue.pop_front();
  return true;
}

std::vector<Engine::Agent*> Engine::Placement(const Sweep& sweep) {
  const auto slots = static_cast<int64_t>(std::max(1, sweep.spec.resources().gpus_per_node()));
  const auto nodes = static_cast<size_t>(std::max(1, sweep.spec.resources().nodes()));
  // Pack: the agents with the fewest free slots that still fit, so whole nodes stay free for
  // gangs and larger trials. Ties go by agent id (agents_ is ordered), so placement is stable.
  std::vector<std::pair<int64_t, Agent*>> fits;
  for (auto& [id, agent] : agents_) {
    if (!agent.connected || agent.quarantined || agent.draining) continue;
    const auto free = std::count(agent.slot_trial.begin(), agent.slot_trial.end(), "");
    if (free >= slots) fits.emplace_back(free, &agent);
  }
  if (fits.size() < nodes) return {};
  std::stable_sort(fits.begin(), fits.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<Agent*> chosen;
  for (size_t i = 0; i < nodes; ++i) chosen.push_back(fits[i].second);
  return chosen;
}

bool Engine::Assign(Sweep& sweep, Trial& trial) {
  // All nodes or none: the engine thread reserves every node's slots in this one step, so two
  // gangs never hold part of what each needs.
  const std::vector<Agent*> agents = Placement(sweep);
  if (agents.empty()) return false;
  const size_t slots_needed =
      static_cast<size_t>(std::max(1, sweep.spec.resources().gpus_per_node()));
  trial.nodes.clear();
  trial.master_addr.clear();
  trial.master_port = 0;
  std::vector<std::string> agent_ids, gpus;
  for (Agent* agent : agents) {
    Node node{.agent_id = agent->id};
    for (size_t i = 0; i < agent->slot_trial.size() && node.gpu_indices.size() < slots_needed;
         ++i) {
      if (agent->slot_trial[i].empty()) {
        agent->slot_trial[i] = trial.public_id;
        // The GPU's CUDA index (an agent may offer GPUs 2 and 3 only), not its slot position.
        node.gpu_indices.push_back(i < static_cast<size_t>(agent->info.gpus_size())
                                       ? agent->info.gpus(static_cast<int>(i)).index()
                                       : static_cast<int32_t>(i));
      }
    }
    agent_ids.push_back(agent->id);
    gpus.push_back(absl::StrJoin(node.gpu_indices, ","));
    trial.nodes.push_back(std::move(node));
  }
  trial.agent_id = agents[0]->id;
  SetTrialState(trial, v1::TRIAL_STATE_ASSIGNED,
                agents.size() == 1 ? absl::StrCat("assigned to ", agents[0]->id)
                                   : absl::StrCat("assigned to ", absl::StrJoin(agent_ids, ", "),
                                                  " (", agents.size(), " nodes)"),
                {.agent_ids = absl::StrJoin(agent_ids, ","), .gpus = absl::StrJoin(gpus, ";")});
  // Node 0 first: it picks the rendezvous port; the others follow once it has started.
  AssignNode(sweep, trial, 0);
  return true;
}

void Engine::AssignNode(Sweep& sweep, Trial& trial, size_t rank) {
  Node& node = trial.nodes[rank];
  Agent& agent = agents_.at(node.agent_id);
  v1::SchedulerMessage message;
  v1::Assign* assign = message.mutable_assign();
  assign->set_trial_id(trial.public_id);
  assign->set_sweep_id(sweep.public_id);
  // From the spec's tree, not from anything stored with it: sweeps stored by an older sweepd
  // nest the same way.
  std::vector<v1::TrialParam> params(trial.params.begin(), trial.params.end());
  SetConfigKeys(sweep.spec, &params);
  for (auto& p : params) *assign->add_params() = std::move(p);
  for (const auto& token : LaunchCommand(sweep.spec)) assign->add_command(token);
  assign->set_program(sweep.spec.program());
  for (int32_t g : node.gpu_indices) assign->add_gpu_indices(g);
  assign->set_attempt(trial.attempt);
  assign->set_metric_pattern(sweep.spec.metric_pattern());
  assign->set_code_dir(sweep.spec_dir);
  assign->set_run_in_trial_dir(sweep.spec.run_in_trial_dir());
  assign->set_first_seq(trial.last_seq_seen + 1);
  v1::Gang* gang = assign->mutable_gang();
  gang->set_nnodes(static_cast<int32_t>(trial.nodes.size()));
  gang->set_node_rank(static_cast<int32_t>(rank));
  gang->set_master_addr(rank == 0 ? agent.info.address() : trial.master_addr);
  gang->set_master_port(rank == 0 ? 0 : trial.master_port);
  gang->set_gpus_per_node(static_cast<int32_t>(node.gpu_indices.size()));
  gang->set_world_size(static_cast<int32_t>(trial.nodes.size() * node.gpu_indices.size()));
  node.assigned = true;
  agent.channel->Send(std::move(message));
}

Engine::Node* Engine::NodeOn(Trial& trial, const std::string& agent_id) {
  for (Node& node : trial.nodes) {
    if (node.agent_id == agent_id) return &node;
  }
  return nullptr;
}

void Engine::StopTrial(Trial& trial, v1::TrialState stop_as, const std::string& reason) {
  if (trial.stop_as) return;
  trial.stop_as = stop_as;
  trial.stop_reason = reason;
  for (Node& node : trial.nodes) {
    if (node.exited) continue;
    if (!node.assigned) {
      // Never started (node 0 had not given its port yet): nothing to stop.
      node.exited = true;
      auto it = agents_.find(node.agent_id);
      if (it != agents_.end()) {
        for (auto& slot : it->second.slot_trial) {
          if (slot == trial.public_id) slot.clear();
        }
      }
      continue;
    }
    auto it = agents_.find(node.agent_id);
    if (it == agents_.end() || !it->second.connected) continue;
    v1::SchedulerMessage message;
    message.mutable_stop()->set_trial_id(trial.public_id);
    message.mutable_stop()->set_reason(reason);
    message.mutable_stop()->set_grace_seconds(options_.stop_grace_seconds);
    it->second.channel->Send(std::move(message));
  }
  Event(trial.sweep_id, trial.id, trial.agent_id, "trial.stop", TrialStateName(trial.state), "",
        reason);
}

void Engine::MaybeFinish(Sweep& sweep) {
  if (sweep.state != v1::SWEEP_STATE_RUNNING) return;
  if (!sweep.exhausted && !sweep.target_reached) return;
  if (sweep.live > 0) return;
  SetSweepState(sweep, v1::SWEEP_STATE_FINISHED,
                sweep.target_reached ? "metric target reached" : sweep.exhausted_reason);
}

void Engine::Prune(Sweep& sweep, Trial& trial, int64_t step,
                   const google::protobuf::Map<std::string, double>& metrics, bool decide) {
  if (!sweep.pruner) return;
  if (!sweep.resource_metric.empty()) {
    if (auto it = metrics.find(sweep.resource_metric); it != metrics.end()) {
      trial.resource_metric_value = it->second;
    }
  }
  auto value = metrics.find(sweep.spec.metric().name());
  if (value == metrics.end()) return;
  const double resource = sweep.resource_metric.empty()
                              ? static_cast<double>(step)
                              : trial.resource_metric_value.value_or(static_cast<double>(step));
  trial.resource = std::max(trial.resource, resource);
  const pruning::Observation observation{.trial = trial.id,
                                         .index = trial.metric_reports++,
                                         .resource = resource,
                                         .value = value->second};
  // With a judging period the report is only recorded; the timer decides (JudgeRunningTrials).
  const bool can_stop =
      decide && sweep.judge_period <= 0 && Live(trial) && !trial.stop_as &&
      (sweep.state == v1::SWEEP_STATE_RUNNING || sweep.state == v1::SWEEP_STATE_PAUSED);
  const pruning::Decision decision = sweep.pruner->OnReport(observation, can_stop);
  if (decision.stop) {
    Event(sweep.id, trial.id, trial.agent_id, "trial.pruned", TrialStateName(trial.state), "pruned",
          decision.reason);
    spdlog::info("[sweep={}][trial={}] {}", sweep.public_id, trial.public_id, decision.reason);
    StopTrial(trial, v1::TRIAL_STATE_PRUNED, decision.reason);
  }
}

absl::Status Engine::ReplayPruner(Sweep& sweep) {
  if (!sweep.pruner) return absl::OkStatus();
  std::vector<std::string> names = {sweep.spec.metric().name()};
  if (!sweep.resource_metric.empty()) names.push_back(sweep.resource_metric);
  for (int64_t id : sweep.trial_ids) {
    Trial& trial = trials_.at(id);
    ASSIGN_OR_RETURN(store::TrialDetail detail, store_->GetTrial(trial.public_id, names, 0));
    // Merge the curves back into reports by sequence number.
    std::map<int64_t, std::pair<int64_t, google::protobuf::Map<std::string, double>>> reports;
    for (const auto& curve : detail.curves) {
      for (const auto& p : curve.points()) {
        auto& r = reports[p.seq()];
        r.first = p.step();
        r.second[curve.name()] = p.value();
      }
    }
    for (const auto& [seq, report] : reports) {
      trial.last_seq_seen = seq;
      Prune(sweep, trial, report.first, report.second, /*decide=*/false);
    }
    if (!Live(trial)) {
      sweep.pruner->OnTrialEnd(trial.id, trial.state);
      if (trial.state == v1::TRIAL_STATE_COMPLETED) {
        const double progress = sweep.pruner->CountsReports()
                                    ? static_cast<double>(trial.metric_reports)
                                    : trial.resource;
        sweep.max_completed_resource = std::max(sweep.max_completed_resource, progress);
      }
    }
  }
  return absl::OkStatus();
}

void Engine::ReleaseSlots(Trial& trial) {
  for (const Node& node : trial.nodes) {
    auto it = agents_.find(node.agent_id);
    if (it == agents_.end()) continue;
    for (auto& slot : it->second.slot_trial) {
      if (slot == trial.public_id) slot.clear();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Agents.

absl::StatusOr<v1::Registered> Engine::AgentConnected(const v1::Register& request,
                                                      std::shared_ptr<AgentChannel> channel) {
  if (request.agent_id().empty() || request.agent_id().size() > 128) {
    return absl::InvalidArgumentError("register.agent_id: required, at most 128 characters");
  }
  if (request.gpus_size() == 0 || request.gpus_size() > 1024) {
    return absl::InvalidArgumentError(
        "register.gpus: an agent advertises 1 to 1024 GPUs or CPU slots");
  }
  return Call<absl::StatusOr<v1::Registered>>([&]() -> absl::StatusOr<v1::Registered> {
    if (auto it = agents_.find(request.agent_id());
        it != agents_.end() && it->second.connected && it->second.channel) {
      Agent& live = it->second;
      if (request.workdir_key().empty() || request.workdir_key() != live.workdir_key ||
          request.hostname() != live.info.hostname()) {
        // Another agent with the same id (two agents given one --agent-id, or a copied
        // workdir): taking the id over would lose the live one's trials and start them again
        // beside themselves. The live one is left exactly as it is.
        spdlog::warn("[agent={}] refused a second agent with its id from {} pid {}", live.id,
                     request.hostname(), request.pid());
        return absl::AlreadyExistsError(absl::StrCat(
            "agent id ", live.id, " is connected from ", live.info.hostname(), " pid ", live.pid,
            " since ",
            absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixMicros(live.connected_since_us),
                             absl::UTCTimeZone()),
            "; give this agent its own --agent-id (or its own --workdir, from which the default "
            "id is derived)"));
      }
      // The same agent, restarted before sweepd saw its old stream end: the new stream
      // replaces the old one.
      live.channel->Close();
    }
    Agent& agent = agents_[request.agent_id()];
    const bool returning = !agent.id.empty();
    agent.id = request.agent_id();
    agent.channel = std::move(channel);
    agent.connected = true;
    agent.incarnation = next_incarnation_++;
    agent.workdir_key = request.workdir_key();
    agent.pid = request.pid();
    agent.connected_since_us = NowMicros();
    agent.info.set_id(request.agent_id());
    agent.info.set_hostname(request.hostname());
    agent.info.set_address(request.address());
    agent.info.mutable_gpus()->CopyFrom(request.gpus());
    agent.info.mutable_labels()->insert(request.labels().begin(), request.labels().end());
    agent.info.set_incarnation(agent.incarnation);
    agent.info.set_version(request.version());
    *agent.info.mutable_connected_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
    v1::Registered reply;
    reply.set_agent_id(agent.id);
    reply.set_incarnation(agent.incarnation);
    // At least three heartbeats per timeout, so a live agent is never taken for a silent one.
    reply.set_heartbeat_seconds(
        std::max(1, std::min(options_.heartbeat_seconds,
                             static_cast<int>(options_.agent_timeout_seconds / 3))));
    agent.last_seen = SteadySeconds();
    agent.disconnected_at = 0;
    agent.draining = request.draining();
    (void)returning;
    // Its slots are what it says it runs now: trials it still runs and sweepd still counts as
    // its own are reattached (nothing restarts); the others (declared lost meanwhile, or
    // unknown) it must kill. Fencing: a lost trial's GPUs may already be someone else's.
    const std::vector<std::string> previous(agent.slot_trial.begin(), agent.slot_trial.end());
    agent.slot_trial.assign(static_cast<size_t>(request.gpus_size()), "");
    std::set<std::string> reported;
    for (const auto& running : request.running_trials()) {
      Trial* trial = FindTrial(running.trial_id());
      Node* node = trial == nullptr ? nullptr : NodeOn(*trial, agent.id);
      if (node == nullptr || node->exited || !Live(*trial)) {
        reply.add_kill_trial_ids(running.trial_id());
        continue;
      }
      reported.insert(trial->public_id);
      if (node == &trial->nodes[0])
        (*reply.mutable_next_seqs())[trial->public_id] = trial->last_seq_seen + 1;
      for (int32_t g : node->gpu_indices) {
        for (int i = 0; i < request.gpus_size(); ++i) {
          if (request.gpus(i).index() == g)
            agent.slot_trial[static_cast<size_t>(i)] = trial->public_id;
        }
      }
      if (!node->attached) {
        node->attached = true;
        Event(trial->sweep_id, trial->id, agent.id, "trial.reattached",
              TrialStateName(trial->state), TrialStateName(trial->state),
              "its agent re-registered with it");
      }
      if (trial->state == v1::TRIAL_STATE_ASSIGNED && node == &trial->nodes[0]) {
        trial->start_us = NowMicros();
        SetTrialState(*trial, v1::TRIAL_STATE_RUNNING, absl::StrCat("running on ", agent.id),
                      {.start_us = trial->start_us});
      }
      if (trial->stop_as) {
        // The stop may not have reached it before the stream broke: say it again.
        v1::SchedulerMessage stop;
        stop.mutable_stop()->set_trial_id(trial->public_id);
        stop.mutable_stop()->set_reason(trial->stop_reason);
        stop.mutable_stop()->set_grace_seconds(options_.stop_grace_seconds);
        agent.channel->Send(std::move(stop));
      }
    }
    // Trials sweepd placed here that the agent no longer has (it restarted, or never got the
    // assignment): lost now, not after a timeout.
    std::set<std::string> expected(previous.begin(), previous.end());
    for (auto& [id, trial] : trials_) {
      if (!Live(trial)) continue;
      for (const Node& node : trial.nodes) {
        if (node.agent_id == agent.id && !node.exited) expected.insert(trial.public_id);
      }
    }
    expected.erase("");
    for (const std::string& trial_id : expected) {
      if (reported.contains(trial_id)) continue;
      Trial* trial = FindTrial(trial_id);
      Node* node = trial == nullptr ? nullptr : NodeOn(*trial, agent.id);
      if (node == nullptr || node->exited || !Live(*trial)) continue;
      Post([this, trial_id, agent_id = agent.id] {
        Trial* t = FindTrial(trial_id);
        Node* n = t == nullptr ? nullptr : NodeOn(*t, agent_id);
        if (n == nullptr || n->exited || !Live(*t)) return;
        NodeEnded(sweeps_.at(t->sweep_id), *t, *n, v1::TRIAL_STATE_LOST,
                  absl::StrCat("agent ", agent_id, " came back without it"), {});
      });
    }
    store_->UpsertAgent(agent.info, nullptr);
    Event(0, 0, agent.id, "agent.connected", "", "connected",
          absl::StrCat(request.hostname(), ", ", request.gpus_size(), " slots"));
    spdlog::info("[agent={}] connected from {} with {} slots", agent.id, request.hostname(),
                 request.gpus_size());
    Post([this] { Schedule(); });
    return reply;
  });
}

void Engine::AgentDisconnected(const std::string& agent_id, const AgentChannel* channel) {
  Post([this, agent_id, channel] {
    auto it = agents_.find(agent_id);
    if (it == agents_.end() || it->second.channel.get() != channel) return;  // replaced
    Agent& agent = it->second;
    agent.connected = false;
    agent.channel.reset();
    spdlog::warn("[agent={}] disconnected", agent_id);
    Event(0, 0, agent_id, "agent.disconnected", "connected", "disconnected", "stream ended");
    // Its trials keep running on the node; they are lost only if it stays away longer than
    // agent_timeout_seconds (Tick), so a scheduler or network blip restarts nothing.
    agent.disconnected_at = SteadySeconds();
    Schedule();
  });
}

void Engine::AgentLeft(const std::string& agent_id, const AgentChannel* channel,
                       const std::string& reason) {
  Post([this, agent_id, channel, reason] {
    auto it = agents_.find(agent_id);
    if (it == agents_.end() || it->second.channel.get() != channel) return;  // replaced
    Agent& agent = it->second;
    agent.connected = false;
    agent.draining = false;
    agent.channel.reset();
    agent.disconnected_at = 0;  // handled now, not after the timeout
    spdlog::info("[agent={}] left: {}", agent_id, reason);
    Event(0, 0, agent_id, "agent.left", "connected", "disconnected", reason);
    LoseAgentTrials(agent, absl::StrCat("agent ", agent_id, " left (", reason, ")"));
    Schedule();
  });
}

void Engine::AgentMessageReceived(const std::string& agent_id, v1::AgentMessage message) {
  Post([this, agent_id, message = std::move(message)]() mutable {
    auto it = agents_.find(agent_id);
    if (it == agents_.end() || !it->second.connected) return;
    Agent& agent = it->second;
    agent.last_seen = SteadySeconds();
    switch (message.kind_case()) {
      case v1::AgentMessage::kHeartbeat:
        *agent.info.mutable_last_heartbeat() = google::protobuf::util::TimeUtil::GetCurrentTime();
        if (message.heartbeat().draining() && !agent.draining) {
          agent.draining = true;
          Event(0, 0, agent.id, "agent.draining", "connected", "draining",
                "finishing its trials before leaving; no new ones");
          spdlog::info("[agent={}] draining: no new trials for it", agent.id);
        }
        // GPU utilisation and memory, by index (NVML or nvidia-smi on the agent).
        for (const v1::Gpu& reading : message.heartbeat().gpus()) {
          for (v1::Gpu& gpu : *agent.info.mutable_gpus()) {
            if (gpu.index() != reading.index()) continue;
            gpu.set_utilization_percent(reading.utilization_percent());
            gpu.set_memory_used_bytes(reading.memory_used_bytes());
            if (reading.memory_total_bytes() > 0) {
              gpu.set_memory_total_bytes(reading.memory_total_bytes());
            }
          }
        }
        break;
      case v1::AgentMessage::kTrialStarted:
        OnTrialStarted(agent, message.trial_started());
        break;
      case v1::AgentMessage::kMetricBatch:
        OnMetricBatch(agent, std::move(*message.mutable_metric_batch()));
        break;
      case v1::AgentMessage::kTrialExited:
        OnTrialExited(agent, message.trial_exited());
        break;
      default:
        break;
    }
  });
}

void Engine::OnTrialStarted(Agent& agent, const v1::TrialStarted& started) {
  Trial* trial = FindTrial(started.trial_id());
  Node* node = trial == nullptr ? nullptr : NodeOn(*trial, agent.id);
  if (node == nullptr) {
    spdlog::warn("[agent={}] started unknown trial {}", agent.id, started.trial_id());
    return;
  }
  if (node != &trial->nodes[0] || trial->state != v1::TRIAL_STATE_ASSIGNED) return;
  trial->master_addr = started.master_addr().empty() ? agent.info.address() : started.master_addr();
  trial->master_port = started.master_port();
  trial->start_us = NowMicros();
  SetTrialState(*trial, v1::TRIAL_STATE_RUNNING, absl::StrCat("started on ", agent.id),
                {.start_us = trial->start_us, .workdir = started.workdir()});
  // The gang's other nodes now know where to meet node 0.
  if (trial->stop_as) return;
  Sweep& sweep = sweeps_.at(trial->sweep_id);
  for (size_t rank = 1; rank < trial->nodes.size(); ++rank) {
    Node& other = trial->nodes[rank];
    if (other.assigned || other.exited) continue;
    auto it = agents_.find(other.agent_id);
    if (it == agents_.end() || !it->second.connected) continue;  // its loss is being handled
    AssignNode(sweep, *trial, rank);
  }
}

void Engine::OnMetricBatch(Agent& agent, v1::MetricBatch batch) {
  Trial* trial = FindTrial(batch.trial_id());
  if (trial == nullptr || trial->agent_id != agent.id) {
    spdlog::warn("[agent={}] metrics for a trial it does not run: {}", agent.id, batch.trial_id());
    return;
  }
  if (batch.reports_size() == 0) return;
  if (batch.first_seq() > trial->last_seq_seen + 1) {
    // Acknowledgements are cumulative ("everything up to seq"), so a batch after a gap (an
    // earlier batch was refused) is not taken either: the agent re-sends from its oldest
    // unacknowledged report, and nothing is acknowledged that is not stored.
    spdlog::debug("[trial={}] metrics from seq {} but {} is next; waiting for the re-send",
                  trial->public_id, batch.first_seq(), trial->last_seq_seen + 1);
    return;
  }
  if (store_->Degraded()) {
    // The store cannot commit: queueing more would only grow memory. Not acknowledged, so the
    // agent keeps the reports and sends them again (it re-sends what stays unacknowledged).
    store_was_degraded_ = true;
    ++metric_batches_refused_;
    return;
  }
  StoreReports(sweeps_.at(trial->sweep_id), *trial, std::move(batch), agent.channel);
}

void Engine::StoreReports(Sweep& sweep, Trial& trial, v1::MetricBatch batch,
                          const std::shared_ptr<AgentChannel>& ack_to, bool prune) {
  const std::string& metric = sweep.spec.metric().name();
  const bool maximize = sweep.spec.metric().goal() == v1::GOAL_MAXIMIZE;
  std::vector<store::MetricReport> reports;
  reports.reserve(static_cast<size_t>(batch.reports_size()));
  int64_t last_seq = batch.first_seq();
  for (int i = 0; i < batch.reports_size(); ++i) {
    const auto& r = batch.reports(i);
    store::MetricReport report{
        .seq = batch.first_seq() + i, .step = r.step(), .time_us = r.time_us()};
    for (const auto& [name, value] : r.metrics()) {
      report.metrics.emplace_back(name, value);
      if (name == metric) {
        TrialRecord& record = sweep.history[trial.history_index];
        record.value = value;
        record.last_step = r.step();
        if (!sweep.best_value || Better(value, *sweep.best_value, maximize)) {
          sweep.best_value = value;
        }
        if (sweep.spec.metric().has_target() && !std::isnan(value) &&
            (maximize ? value >= sweep.spec.metric().target()
                      : value <= sweep.spec.metric().target())) {
          sweep.target_reached = true;
        }
      }
    }
    last_seq = report.seq;
    const bool fresh = report.seq > trial.last_seq_seen;
    reports.push_back(std::move(report));
    if (fresh) {
      trial.last_seq_seen = last_seq;
      if (prune) {
        Prune(sweep, trial, r.step(), r.metrics(), /*decide=*/true);
      } else if (r.metrics().contains(metric)) {
        ++trial.metric_reports;
      }
    }
  }
  // Ack once durable; the agent then drops its copy.
  std::weak_ptr<AgentChannel> channel = ack_to;
  store_->AppendMetrics(trial.id, std::move(reports),
                        [this, channel, trial_id = batch.trial_id(), first_seq = batch.first_seq(),
                         last_seq](absl::Status status) {
                          if (!status.ok()) {
                            spdlog::error("[trial={}] storing metrics failed: {}", trial_id,
                                          status.message());
                            // Not acknowledged: the agent sends them again. Until then no later
                            // batch may be taken (its cumulative ack would cover these).
                            Post([this, trial_id, first_seq] {
                              if (Trial* t = FindTrial(trial_id)) {
                                t->last_seq_seen = std::min(t->last_seq_seen, first_seq - 1);
                              }
                            });
                            return;
                          }
                          if (auto c = channel.lock()) {
                            v1::SchedulerMessage ack;
                            ack.mutable_ack()->set_trial_id(trial_id);
                            ack.mutable_ack()->set_seq(last_seq);
                            c->Send(std::move(ack));
                          }
                        });
  if (sweep.target_reached && !sweep.exhausted) {
    sweep.exhausted = true;
    sweep.exhausted_reason = "metric target reached";
    Schedule();
  }
}

void Engine::OnTrialExited(Agent& agent, const v1::TrialExited& exited) {
  // Acknowledged once what it changed is durable, whether or not it changes anything (a
  // re-sent exit after a reconnect): the agent keeps re-sending it until then.
  AckExitWhenDurable(agent.channel, exited.trial_id());
  Trial* trial = FindTrial(exited.trial_id());
  if (trial == nullptr || !Live(*trial)) return;
  Node* node = NodeOn(*trial, agent.id);
  if (node == nullptr || node->exited || !node->assigned) return;
  Sweep& sweep = sweeps_.at(trial->sweep_id);
  node->wall_seconds = std::max(0.0, exited.wall_seconds());
  if (exited.interrupted() && !trial->stop_as) {
    // The agent is leaving (shut down or drained past its timeout): the trial did nothing
    // wrong; it is lost and retried like one on a dead node, and counts against no one.
    NodeEnded(sweep, *trial, *node, v1::TRIAL_STATE_LOST,
              absl::StrCat("agent ", agent.id, " stopped it while shutting down",
                           exited.stderr_tail().empty() ? "" : ": ", exited.stderr_tail()),
              {.exit_code = exited.exit_code(), .exit_signal = exited.signal()});
    return;
  }
  const bool failed = exited.exit_code() != 0 || exited.signal() != 0;
  if (!failed || trial->stop_as || exited.stopped_by_scheduler()) {
    NodeEnded(sweep, *trial, *node, v1::TRIAL_STATE_COMPLETED, "exited 0",
              {.exit_code = exited.exit_code(), .exit_signal = exited.signal()});
    return;
  }
  std::string reason = exited.signal() != 0 ? absl::StrCat("killed by signal ", exited.signal())
                                            : absl::StrCat("exited with code ", exited.exit_code());
  if (trial->nodes.size() > 1) {
    reason = absl::StrCat("node ", node - trial->nodes.data(), " (", agent.id, ") ", reason);
  }
  if (!exited.spec_error().empty()) {
    // The spec's fault (e.g. a program outside the code dir): the trial fails with the reason,
    // and no node is quarantined for it, since any node would have refused it.
    NodeEnded(sweep, *trial, *node, v1::TRIAL_STATE_FAILED,
              absl::StrCat("cannot start: ", exited.spec_error()),
              {.exit_code = exited.exit_code(), .exit_signal = exited.signal()});
    return;
  }
  if (!exited.stderr_tail().empty()) absl::StrAppend(&reason, ": ", exited.stderr_tail());
  if (node->wall_seconds < options_.quarantine_window_seconds) {
    CountAgentFailure(agent, trial->public_id);
  }
  NodeEnded(sweep, *trial, *node, v1::TRIAL_STATE_FAILED, reason,
            {.exit_code = exited.exit_code(), .exit_signal = exited.signal()});
}

void Engine::AckExitWhenDurable(const std::shared_ptr<AgentChannel>& channel,
                                const std::string& trial_id) {
  // Runs after the state change this exit causes (posted to the engine after this returns).
  Post([this, weak = std::weak_ptr<AgentChannel>(channel), trial_id] {
    // The writer commits in order: once this no-op is committed, so is the trial's end.
    store_->RunOnWriter([](store::Connection&) { return absl::OkStatus(); },
                        [weak, trial_id](absl::Status status) {
                          if (!status.ok()) return;  // not acknowledged: the agent re-sends it
                          if (auto c = weak.lock()) {
                            v1::SchedulerMessage ack;
                            ack.mutable_ack()->set_trial_id(trial_id);
                            ack.mutable_ack()->set_seq(-1);
                            ack.mutable_ack()->set_exited(true);
                            c->Send(std::move(ack));
                          }
                        });
  });
}

void Engine::LoseAgentTrials(Agent& agent, const std::string& reason) {
  std::set<std::string> trial_ids(agent.slot_trial.begin(), agent.slot_trial.end());
  for (auto& [id, trial] : trials_) {
    if (!Live(trial)) continue;
    for (const Node& node : trial.nodes) {
      if (node.agent_id == agent.id && !node.exited) trial_ids.insert(trial.public_id);
    }
  }
  trial_ids.erase("");
  for (const std::string& trial_id : trial_ids) {
    Trial* trial = FindTrial(trial_id);
    Node* node = trial == nullptr ? nullptr : NodeOn(*trial, agent.id);
    if (node == nullptr || node->exited || !Live(*trial)) continue;
    NodeEnded(sweeps_.at(trial->sweep_id), *trial, *node, v1::TRIAL_STATE_LOST, reason, {});
  }
  for (auto& slot : agent.slot_trial) slot.clear();
}

void Engine::Tick() {
  const double now = SteadySeconds();
  for (auto& [id, sweep] : sweeps_) {
    // Stalls also begin with time alone (the start-up grace ends, an away agent is given up).
    UpdateStall(sweep);
    if (sweep.judge_period > 0 && now - sweep.judged_at >= sweep.judge_period) {
      sweep.judged_at = now;
      JudgeRunningTrials(sweep);
    }
  }
  if (store_was_degraded_ && !store_->Degraded()) {
    store_was_degraded_ = false;
    spdlog::info(
        "the store commits again; scheduling resumes ({} metric batches were refused "
        "meanwhile and are being re-sent by their agents)",
        metric_batches_refused_);
    metric_batches_refused_ = 0;
    Schedule();
  }
  for (auto& [id, agent] : agents_) {
    if (agent.connected && now - agent.last_seen > options_.agent_timeout_seconds) {
      // Connected but silent (a hung node, a half-open connection): treat it as gone.
      spdlog::warn("[agent={}] silent for {:.0f} s; closing its stream", agent.id,
                   now - agent.last_seen);
      Event(0, 0, agent.id, "agent.silent", "connected", "disconnected",
            absl::StrCat("no message for ", static_cast<int>(now - agent.last_seen), " s"));
      agent.connected = false;
      if (agent.channel) agent.channel->Close();
      agent.channel.reset();
      agent.disconnected_at = agent.last_seen;
    }
    if (!agent.connected && agent.disconnected_at > 0 &&
        now - agent.disconnected_at > options_.agent_timeout_seconds) {
      agent.disconnected_at = 0;
      Event(0, 0, agent.id, "agent.lost", "disconnected", "lost",
            absl::StrCat("away for more than ", options_.agent_timeout_seconds, " s"));
      spdlog::warn("[agent={}] away for more than {} s: its trials are lost", agent.id,
                   options_.agent_timeout_seconds);
      LoseAgentTrials(agent, absl::StrCat("agent ", agent.id, " went away"));
    }
  }
  // After a restart: nodes whose agents did not come back in time.
  std::vector<int64_t> overdue;
  for (auto& [id, trial] : trials_) {
    if (trial.reattach_deadline == 0) continue;
    if (!Live(trial)) {
      trial.reattach_deadline = 0;
      continue;
    }
    const bool waiting = std::any_of(trial.nodes.begin(), trial.nodes.end(),
                                     [](const Node& n) { return !n.attached && !n.exited; });
    if (!waiting) {
      trial.reattach_deadline = 0;
    } else if (now >= trial.reattach_deadline) {
      overdue.push_back(id);
    }
  }
  for (int64_t id : overdue) {
    Trial& trial = trials_.at(id);
    trial.reattach_deadline = 0;
    for (Node& node : trial.nodes) {
      if (node.attached || node.exited || !Live(trial)) continue;
      NodeEnded(sweeps_.at(trial.sweep_id), trial, node, v1::TRIAL_STATE_LOST,
                absl::StrCat("agent ", node.agent_id, " did not reattach within ",
                             options_.reattach_seconds, " s of a restart"),
                {});
    }
  }
}

void Engine::NodeEnded(Sweep& sweep, Trial& trial, Node& node, v1::TrialState node_state,
                       const std::string& reason, store::TrialUpdate update) {
  node.exited = true;
  if (auto it = agents_.find(node.agent_id); it != agents_.end()) {
    for (auto& slot : it->second.slot_trial) {
      if (slot == trial.public_id) slot.clear();
    }
  }
  // A failed or lost node ends the whole trial: the other nodes would hang in a collective.
  if (node_state != v1::TRIAL_STATE_COMPLETED) StopTrial(trial, node_state, reason);
  for (const Node& other : trial.nodes) {
    if (!other.exited) return;  // the trial ends with its last node
  }
  double gpu_seconds = 0;
  for (const Node& n : trial.nodes) {
    gpu_seconds += static_cast<double>(std::max<size_t>(1, n.gpu_indices.size())) * n.wall_seconds;
  }
  const v1::TrialState final_state = trial.stop_as.value_or(v1::TRIAL_STATE_COMPLETED);
  const std::string final_reason = trial.stop_as ? trial.stop_reason : reason;
  if (final_state != v1::TRIAL_STATE_LOST) {
    EndTrial(sweep, trial, final_state, final_reason, gpu_seconds, std::move(update));
    return;
  }
  // Lost: back to the queue under the retry policy, same parameters.
  sweep.gpu_seconds += gpu_seconds;
  SetTrialState(trial, v1::TRIAL_STATE_LOST, final_reason,
                {.end_us = NowMicros(), .add_gpu_seconds = gpu_seconds});
  const bool sweep_live =
      sweep.state == v1::SWEEP_STATE_RUNNING || sweep.state == v1::SWEEP_STATE_PAUSED;
  if (sweep_live && trial.attempt <= sweep.spec.max_retries()) {
    trial.attempt += 1;
    trial.agent_id.clear();
    trial.nodes.clear();
    trial.stop_as.reset();
    trial.stop_reason.clear();
    SetTrialState(trial, v1::TRIAL_STATE_QUEUED,
                  absl::StrCat("retry ", trial.attempt - 1, " of ", sweep.spec.max_retries()),
                  {.attempt = trial.attempt});
    sweep.queue.push_front(trial.id);
  }
  Schedule();
}

void Engine::EndTrial(Sweep& sweep, Trial& trial, v1::TrialState final_state,
                      const std::string& reason, double gpu_seconds, store::TrialUpdate update) {
  sweep.gpu_seconds += gpu_seconds;
  update.end_us = NowMicros();
  update.add_gpu_seconds = gpu_seconds;
  if (sweep.pruner) sweep.pruner->OnTrialEnd(trial.id, final_state);
  const double progress = sweep.pruner && sweep.pruner->CountsReports()
                              ? static_cast<double>(trial.metric_reports)
                              : trial.resource;
  if (final_state == v1::TRIAL_STATE_COMPLETED) {
    sweep.max_completed_resource = std::max(sweep.max_completed_resource, progress);
  }
  if (final_state == v1::TRIAL_STATE_PRUNED && progress > 0) {
    // What it would have cost to reach the end at its own pace.
    const double full = sweep.pruner && sweep.pruner->MaxResource() ? *sweep.pruner->MaxResource()
                                                                    : sweep.max_completed_resource;
    if (full > progress) {
      const double saved = gpu_seconds * (full - progress) / progress;
      store_->UpdateSweep({.id = sweep.id, .add_gpu_seconds_saved = saved}, nullptr);
    }
  }
  SetTrialState(trial, final_state, reason, std::move(update));
  if (final_state == v1::TRIAL_STATE_FAILED) {
    ++sweep.failures;
    if ((sweep.state == v1::SWEEP_STATE_RUNNING || sweep.state == v1::SWEEP_STATE_PAUSED) &&
        sweep.failures >= std::max(1, sweep.spec.max_failures())) {
      SetSweepState(sweep, v1::SWEEP_STATE_FAILED,
                    absl::StrCat(sweep.failures, " trials failed (max_failures ",
                                 sweep.spec.max_failures(), "); last: ", reason));
      for (int64_t id : sweep.trial_ids) {
        Trial& other = trials_.at(id);
        if (other.state == v1::TRIAL_STATE_QUEUED) {
          SetTrialState(other, v1::TRIAL_STATE_CANCELED, "sweep failed", {.end_us = NowMicros()});
        } else if (Live(other)) {
          StopTrial(other, v1::TRIAL_STATE_CANCELED, "sweep failed");
        }
      }
      sweep.queue.clear();
    }
  }
  Schedule();
}

// ---------------------------------------------------------------------------------------------
// Ask/tell for external runners.

absl::StatusOr<v1::Trial> Engine::AskTrial(const std::string& sweep_id) {
  return Call<absl::StatusOr<v1::Trial>>([&]() -> absl::StatusOr<v1::Trial> {
    Sweep* sweep = FindSweep(sweep_id);
    if (sweep == nullptr) return absl::NotFoundError(absl::StrCat("no sweep '", sweep_id, "'"));
    if (!sweep->external) {
      return absl::FailedPreconditionError(
          absl::StrCat("sweep ", sweep_id,
                       " runs its trials on agents; ask/tell needs a sweep submitted with "
                       "--external"));
    }
    if (sweep->state != v1::SWEEP_STATE_RUNNING) {
      return absl::FailedPreconditionError(
          absl::StrCat("sweep ", sweep_id, " is ", SweepStateName(sweep->state)));
    }
    if (sweep->queue.empty()) {
      int64_t cap = sweep->spec.run_cap();
      if (sweep->spec.budget().max_trials() > 0) {
        cap = cap > 0 ? std::min(cap, sweep->spec.budget().max_trials())
                      : sweep->spec.budget().max_trials();
      }
      if (cap <= 0 || cap > kMaxTrialsPerSweep) cap = kMaxTrialsPerSweep;
      if (!sweep->exhausted && static_cast<int64_t>(sweep->trial_ids.size()) >= cap) {
        sweep->exhausted = true;
        sweep->exhausted_reason = absl::StrCat("run cap of ", cap, " trials reached");
      }
      if (!sweep->exhausted && !sweep->target_reached) {
        auto params = sweep->search->Propose(sweep->history);
        if (params.ok()) {
          NewTrial(*sweep, std::move(*params), false);
        } else {
          sweep->exhausted = true;
          sweep->exhausted_reason = std::string(params.status().message());
        }
      }
      if (sweep->queue.empty()) {
        MaybeFinish(*sweep);
        return absl::OutOfRangeError(absl::StrCat(
            "sweep ", sweep_id, " has nothing left to propose: ",
            sweep->target_reached ? "metric target reached" : sweep->exhausted_reason));
      }
    }
    Trial& trial = trials_.at(sweep->queue.front());
    sweep->queue.pop_front();
    trial.agent_id = "external";
    trial.start_us = NowMicros();
    SetTrialState(trial, v1::TRIAL_STATE_RUNNING, "asked by an external runner",
                  {.start_us = trial.start_us, .agent_ids = std::string("external")});
    v1::Trial out;
    out.set_id(trial.public_id);
    out.set_sweep_id(sweep->public_id);
    out.set_number(trial.number);
    out.set_state(trial.state);
    out.set_attempt(trial.attempt);
    for (const auto& p : trial.params) *out.add_params() = p;
    return out;
  });
}

absl::StatusOr<v1::ReportTrialResponse> Engine::ReportTrial(const v1::ReportTrialRequest& request) {
  return Call<absl::StatusOr<v1::ReportTrialResponse>>(
      [&]() -> absl::StatusOr<v1::ReportTrialResponse> {
        Trial* trial = FindTrial(request.trial_id());
        if (trial == nullptr) {
          return absl::NotFoundError(absl::StrCat("no trial '", request.trial_id(), "'"));
        }
        if (trial->agent_id != "external" || trial->state != v1::TRIAL_STATE_RUNNING) {
          return absl::FailedPreconditionError(
              absl::StrCat("trial ", trial->public_id, " is ", TrialStateName(trial->state),
                           trial->agent_id == "external" ? "" : " on an agent",
                           "; only a running trial of an --external sweep takes reports"));
        }
        Sweep& sweep = sweeps_.at(trial->sweep_id);
        v1::MetricBatch batch;
        batch.set_trial_id(trial->public_id);
        batch.set_first_seq(trial->last_seq_seen + 1);
        v1::Report* report = batch.add_reports();
        report->set_seq(trial->last_seq_seen + 1);
        report->set_step(request.step());
        report->set_time_us(NowMicros());
        report->mutable_metrics()->insert(request.metrics().begin(), request.metrics().end());
        StoreReports(sweep, *trial, std::move(batch), nullptr);
        v1::ReportTrialResponse response;
        response.set_should_continue(!trial->stop_as);
        response.set_reason(trial->stop_reason);
        return response;
      });
}

absl::StatusOr<v1::Trial> Engine::TellTrial(const v1::TellTrialRequest& request) {
  return Call<absl::StatusOr<v1::Trial>>([&]() -> absl::StatusOr<v1::Trial> {
    Trial* trial = FindTrial(request.trial_id());
    if (trial == nullptr) {
      return absl::NotFoundError(absl::StrCat("no trial '", request.trial_id(), "'"));
    }
    if (trial->agent_id != "external" || trial->state != v1::TRIAL_STATE_RUNNING) {
      return absl::FailedPreconditionError(
          absl::StrCat("trial ", trial->public_id, " is ", TrialStateName(trial->state),
                       "; only a running trial of an --external sweep can be told"));
    }
    Sweep& sweep = sweeps_.at(trial->sweep_id);
    v1::TrialState state = request.state() == v1::TRIAL_STATE_UNSPECIFIED
                               ? v1::TRIAL_STATE_COMPLETED
                               : request.state();
    if (state != v1::TRIAL_STATE_COMPLETED && state != v1::TRIAL_STATE_FAILED &&
        state != v1::TRIAL_STATE_PRUNED) {
      return absl::InvalidArgumentError("state: a trial is told completed, failed or pruned");
    }
    if (state == v1::TRIAL_STATE_COMPLETED && !request.has_value() && sweep.spec.has_metric()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "value: required for a completed trial (the final ", sweep.spec.metric().name(), ")"));
    }
    if (request.has_value() && sweep.spec.has_metric()) {
      v1::MetricBatch batch;
      batch.set_trial_id(trial->public_id);
      batch.set_first_seq(trial->last_seq_seen + 1);
      v1::Report* report = batch.add_reports();
      report->set_seq(trial->last_seq_seen + 1);
      report->set_step(trial->metric_reports);
      report->set_time_us(NowMicros());
      (*report->mutable_metrics())[sweep.spec.metric().name()] = request.value();
      StoreReports(sweep, *trial, std::move(batch), nullptr, /*prune=*/false);
    }
    // A trial the pruner stopped ends pruned even if the runner finished it.
    if (trial->stop_as && state == v1::TRIAL_STATE_COMPLETED) state = *trial->stop_as;
    const double seconds = static_cast<double>(NowMicros() - trial->start_us) / 1e6;
    EndTrial(sweep, *trial, state,
             trial->stop_as ? trial->stop_reason : absl::StrCat("told ", TrialStateName(state)),
             std::max(0.0, seconds));
    MaybeFinish(sweep);
    v1::Trial out;
    out.set_id(trial->public_id);
    out.set_sweep_id(sweep.public_id);
    out.set_number(trial->number);
    out.set_state(trial->state);
    for (const auto& p : trial->params) *out.add_params() = p;
    return out;
  });
}

}  // namespace sweepd::scheduler
