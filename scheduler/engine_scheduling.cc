// Scheduling: proposing trials, placement on agents' free slots, stalls, stopping, pruning.

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
#include "scheduler/engine.h"
#include "scheduler/engine_internal.h"

namespace sweepd::scheduler {
namespace {

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

}  // namespace

// ---------------------------------------------------------------------------------------------
// Scheduling.

std::optional<int64_t> Engine::NewTrial(Sweep& sweep, ParamSet params, bool enqueued,
                                        const Lineage* lineage) {
  Trial trial;
  trial.id = next_trial_id_++;
  trial.sweep_id = sweep.id;
  trial.number = static_cast<int64_t>(sweep.trial_ids.size());
  trial.public_id = TrialPublicId(sweep.public_id, trial.number);
  trial.params = std::move(params);
  trial.enqueued = enqueued;
  trial.history_index = sweep.history.size();
  sweep.history.push_back(TrialRecord{
      .params = trial.params, .state = v1::TRIAL_STATE_QUEUED, .pbt_copy = lineage != nullptr});
  store::NewTrial row{.id = trial.id,
                      .sweep_id = sweep.id,
                      .number = trial.number,
                      .public_id = trial.public_id,
                      .state = v1::TRIAL_STATE_QUEUED,
                      .params_json = ParamsJson(trial.params),
                      .attempt = 1,
                      .enqueued = enqueued,
                      .created_us = NowMicros()};
  std::string origin = enqueued ? "enqueued by a user" : "proposed";
  if (lineage != nullptr) {
    // It resumes from the parent's checkpoint as a retry resumes from its own.
    const Trial& parent = trials_.at(lineage->parent);
    trial.pbt_copy = true;
    trial.pbt_parent = lineage->parent;
    trial.pbt_parent_step = lineage->parent_step;
    trial.checkpoint_step = lineage->parent_step;
    trial.attempt_start_step = lineage->parent_step;
    trial.pbt_last_step = lineage->parent_step;
    trial.copy_pending = true;
    trial.ran_on = parent.ran_on;
    sweep.pending_copies.insert(trial.id);
    row.parent_trial = parent.public_id;
    row.parent_step = lineage->parent_step;
    row.replaced_trial = trials_.at(lineage->replaced).public_id;
    origin = absl::StrCat("pbt: a copy of ", parent.public_id, " at step ", lineage->parent_step,
                          " in place of ", row.replaced_trial);
  }
  store_->CreateTrial(row, [](absl::Status s) {
    if (!s.ok()) spdlog::error("storing a trial failed: {}", s.message());
  });
  Event(sweep.id, trial.id, "", "trial.created", "", "queued", origin);
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
    LogInfo({.sweep = sweep.public_id, .trial = trial.public_id}, "{}", decision.reason);
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
    LogWarn({.sweep = sweep.public_id}, "stalled: {}", reason);
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
  // ASHA's get_job: a promotable paused trial before any new one (also after the run cap, not
  // once the target is reached or the GPU-hour budget spent).
  if (sweep.queue.empty() && MayPromote(sweep) && !Placement(sweep).empty()) PromoteNext(sweep);
  // pbt copies that wait for the node holding their parent's checkpoint are not work that can go
  // now: a free slot elsewhere takes a new trial meanwhile. (Other sweeps stop at the first
  // queued trial, so this costs nothing there.)
  const bool nothing_ready = std::all_of(sweep.queue.begin(), sweep.queue.end(), [&](int64_t id) {
    const Trial& queued = trials_.at(id);
    return queued.copy_pending && Placement(sweep, &queued).empty();
  });
  if (nothing_ready) {
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
  // The queue's front, or the first after it that can go: a pbt copy waiting for the node that
  // holds its parent's checkpoint does not hold up the others.
  for (auto it = sweep.queue.begin(); it != sweep.queue.end(); ++it) {
    Trial& trial = trials_.at(*it);
    if (Assign(sweep, trial)) {
      sweep.queue.erase(it);
      return true;
    }
    if (!trial.copy_pending) return false;
  }
  return false;
}

std::vector<Engine::Agent*> Engine::Placement(const Sweep& sweep, const Trial* trial) {
  const auto slots = static_cast<int64_t>(std::max(1, sweep.spec.resources().gpus_per_node()));
  const auto nodes = static_cast<size_t>(std::max(1, sweep.spec.resources().nodes()));
  // A pbt copy whose parent's checkpoint is on one node's disk runs there, while that agent is
  // connected or away for less than its timeout (or, just after a restart, may still
  // re-register). Once it is gone, quarantined or draining, the copy goes anywhere and starts
  // over (Assign says so).
  std::string only;
  if (trial != nullptr && trial->copy_pending && trial->checkpoint_step &&
      sweep.spec.checkpoint().dir().empty() && trial->ran_on.size() == 1) {
    auto it = agents_.find(trial->ran_on[0]);
    if (it == agents_.end()) {
      if (SteadySeconds() - started_at_ < options_.reattach_seconds) return {};
    } else if (!it->second.quarantined && !it->second.draining &&
               (it->second.connected || it->second.disconnected_at > 0)) {
      only = it->first;
    }
  }
  // Pack: the agents with the fewest free slots that still fit, so whole nodes stay free for
  // gangs and larger trials. Ties go by agent id (agents_ is ordered), so placement is stable.
  std::vector<std::pair<int64_t, Agent*>> fits;
  for (auto& [id, agent] : agents_) {
    if (!agent.connected || agent.quarantined || agent.draining) continue;
    if (!only.empty() && id != only) continue;
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
  const std::vector<Agent*> agents = Placement(sweep, &trial);
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
  if (trial.checkpoint_step && sweep.spec.checkpoint().dir().empty() &&
      (agent_ids.size() > 1 || trial.ran_on != agent_ids)) {
    // Node-local checkpoints on another node (or a gang, whose other nodes never had them): the
    // retry cannot load them, so it starts over, and its curve and pruner do too.
    StartOver(
        sweep, trial, agent_ids[0],
        absl::StrCat("its checkpoint at step ", *trial.checkpoint_step, " is on ",
                     absl::StrJoin(trial.ran_on, ", "), " (no checkpoint.dir): it starts over",
                     " on ", absl::StrJoin(agent_ids, ", ")));
  }
  trial.ran_on = agent_ids;
  SetTrialState(trial, v1::TRIAL_STATE_ASSIGNED,
                agents.size() == 1 ? absl::StrCat("assigned to ", agents[0]->id)
                                   : absl::StrCat("assigned to ", absl::StrJoin(agent_ids, ", "),
                                                  " (", agents.size(), " nodes)"),
                {.agent_ids = absl::StrJoin(agent_ids, ","), .gpus = absl::StrJoin(gpus, ";")});
  // Node 0 first: it picks the rendezvous port; the others follow once it has started.
  AssignNode(sweep, trial, 0);
  return true;
}

void Engine::StartOver(Sweep& sweep, Trial& trial, const std::string& agent_id,
                       const std::string& why) {
  trial.checkpoint_step.reset();
  trial.copy_pending = false;
  sweep.pending_copies.erase(trial.id);
  trial.attempt_start_step = -1;
  trial.metric_reports = 0;
  trial.resource = 0;
  if (sweep.pruner) sweep.pruner->Rewind(trial.id, -std::numeric_limits<double>::infinity(), 0);
  store_->UpdateTrial({.id = trial.id,
                       .clear_checkpoint_step = true,
                       .drop_reports_after_step = std::numeric_limits<int64_t>::min()},
                      MakeEvent(sweep.id, trial.id, agent_id, "trial.checkpoint_unreachable",
                                TrialStateName(trial.state), "", why),
                      EventStored("a checkpoint out of reach"));
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
  assign->set_checkpoint_dir(sweep.spec.checkpoint().dir());
  if (trial.checkpoint_step) assign->set_resume_step(*trial.checkpoint_step);
  if (trial.copy_pending && trial.checkpoint_step) {
    assign->set_clone_checkpoint_from(trials_.at(trial.pbt_parent).public_id);
  }
  v1::Gang* gang = assign->mutable_gang();
  gang->set_nnodes(static_cast<int32_t>(trial.nodes.size()));
  gang->set_node_rank(static_cast<int32_t>(rank));
  gang->set_master_addr(rank == 0 ? agent.info.address() : trial.master_addr);
  gang->set_master_port(rank == 0 ? 0 : trial.master_port);
  gang->set_gpus_per_node(static_cast<int32_t>(node.gpu_indices.size()));
  gang->set_world_size(static_cast<int32_t>(trial.nodes.size() * node.gpu_indices.size()));
  node.assigned = true;
  SendWhenDurable(agent.channel, std::move(message));
}

Engine::Node* Engine::NodeOn(Trial& trial, const std::string& agent_id) {
  for (Node& node : trial.nodes) {
    if (node.agent_id == agent_id) return &node;
  }
  return nullptr;
}

void Engine::StopTrial(Trial& trial, v1::TrialState stop_as, const std::string& reason) {
  if (trial.stop_as) {
    // Already stopping. A trial told to pause that is then canceled (or its sweep fails) ends
    // as that says: it will not be promoted. The agent already stops it; nothing to send.
    if (*trial.stop_as == v1::TRIAL_STATE_PAUSED && stop_as != v1::TRIAL_STATE_PAUSED) {
      trial.stop_as = stop_as;
      trial.stop_reason = reason;
    }
    return;
  }
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
    message.mutable_stop()->set_checkpoint(stop_as == v1::TRIAL_STATE_PAUSED);
    SendWhenDurable(it->second.channel, std::move(message));
  }
  Event(trial.sweep_id, trial.id, trial.agent_id, "trial.stop", TrialStateName(trial.state), "",
        reason);
}

bool Engine::MayPromote(const Sweep& sweep) const {
  if (sweep.target_reached) return false;
  return !(sweep.spec.budget().gpu_hours() > 0 &&
           sweep.gpu_seconds >= sweep.spec.budget().gpu_hours() * 3600);
}

void Engine::MaybeFinish(Sweep& sweep) {
  if (sweep.state != v1::SWEEP_STATE_RUNNING) return;
  if (!sweep.exhausted && !sweep.target_reached) return;
  if (sweep.live > 0) return;
  if (!sweep.paused.empty()) {
    // Nothing left to start or run: paused trials that can still be promoted wait for a slot;
    // the others end where they stopped, as pruned (ASHA never promoted them).
    if (MayPromote(sweep) && sweep.pruner &&
        sweep.pruner->NextPromotion([&](int64_t id) { return sweep.paused.contains(id); })) {
      return;
    }
    if (ending_paused_) return;  // EndTrial below schedules, which comes back here
    ending_paused_ = true;
    const std::set<int64_t> waiting = sweep.paused;
    for (int64_t id : waiting) {
      Trial& trial = trials_.at(id);
      if (trial.state != v1::TRIAL_STATE_PAUSED) continue;
      const int rung = sweep.pruner ? sweep.pruner->RungOf(id) : -1;
      EndTrial(sweep, trial, v1::TRIAL_STATE_PRUNED,
               absl::StrCat("paused at rung ", rung, " and not promoted before the sweep ended"),
               0);
    }
    ending_paused_ = false;
    if (sweep.live > 0 || sweep.state != v1::SWEEP_STATE_RUNNING) return;
  }
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
  if (decision.pause) {
    // ASHA's own rule: the trial stops at the rung and a free worker takes the best promotable
    // trial. When that is this one, it goes on where it is (the same as pausing and resuming it
    // on the slot it frees, without the restart).
    const auto next = sweep.pruner->NextPromotion(
        [&](int64_t id) { return id == trial.id || sweep.paused.contains(id); });
    if (next == trial.id) {
      sweep.pruner->Promoted(trial.id);
      trial.promotions += 1;
      store_->UpdateTrial({.id = trial.id, .add_promotion = true}, nullptr);
      Event(sweep.id, trial.id, trial.agent_id, "trial.promoted", TrialStateName(trial.state), "",
            absl::StrCat(decision.reason, "; promoted at once (the best to promote)"));
      return;
    }
    Event(sweep.id, trial.id, trial.agent_id, "trial.paused", TrialStateName(trial.state), "paused",
          decision.reason);
    StopTrial(trial, v1::TRIAL_STATE_PAUSED, decision.reason);
    return;
  }
  if (decision.stop) {
    Event(sweep.id, trial.id, trial.agent_id, "trial.pruned", TrialStateName(trial.state), "pruned",
          decision.reason);
    LogInfo({.sweep = sweep.public_id, .trial = trial.public_id}, "{}", decision.reason);
    StopTrial(trial, v1::TRIAL_STATE_PRUNED, decision.reason);
  }
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

}  // namespace sweepd::scheduler
