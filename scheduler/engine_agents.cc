// The agent registry: identity, streams, liveness and quarantine, and their periodic checks.

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
#include "scheduler/agent_messages.h"
#include "scheduler/engine.h"
#include "scheduler/engine_internal.h"

namespace sweepd::scheduler {
namespace {

using google::protobuf::util::TimeUtil;

std::vector<int32_t> Sorted(std::vector<int32_t> values) {
  std::sort(values.begin(), values.end());
  return values;
}

}  // namespace

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
    LogInfo({.agent = agent.id}, "released from quarantine");
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
  LogWarn({.agent = agent.id}, "quarantined: {}; `sweepctl agents --release {}` lifts it",
          agent.quarantine_reason, agent.id);
}

// ---------------------------------------------------------------------------------------------
// Agents.

absl::StatusOr<v1::Registered> Engine::AgentConnected(const v1::Register& request,
                                                      std::shared_ptr<AgentChannel> channel) {
  // The stream's handler validated the message already (ValidateAgentMessage); the engine checks
  // again what it relies on, with the same limits, for callers that are not the stream.
  if (request.agent_id().empty() || request.agent_id().size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("register.agent_id: required, at most ", kMaxIdBytes, " bytes"));
  }
  if (request.gpus_size() == 0 || request.gpus_size() > kMaxGpusPerAgent) {
    return absl::InvalidArgumentError(absl::StrCat("register.gpus: an agent advertises 1 to ",
                                                   kMaxGpusPerAgent, " GPUs or CPU slots"));
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
        LogWarn({.agent = live.id}, "refused a second agent with its id from {} pid {}",
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
      // Fencing: only the placement sweepd holds is taken back (attempt, rank and GPUs). A
      // process of an earlier attempt can outlive what sweepd stored about it: its retry was
      // placed and then lost with a restart (found by engine_sim with disk faults).
      std::vector<int32_t> gpus(running.gpu_indices().begin(), running.gpu_indices().end());
      std::sort(gpus.begin(), gpus.end());
      const bool same_placement = node != nullptr &&
                                  (running.attempt() == 0 || running.attempt() == trial->attempt) &&
                                  running.node_rank() == node - trial->nodes.data() &&
                                  (gpus.empty() || gpus == Sorted(node->gpu_indices));
      if (node == nullptr || node->exited || !Live(*trial) || !same_placement) {
        reply.add_kill_trial_ids(running.trial_id());
        continue;
      }
      reported.insert(trial->public_id);
      // What the agent was acknowledged is durable, even where the store holds no row for it
      // (a checkpoint report has no metrics; a retry's first_seq is above reports a resume
      // dropped): without this a rebuilt sweepd would wait for a re-send that never comes.
      trial->last_seq_seen = std::max(trial->last_seq_seen, running.acked_seq());
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
        stop.mutable_stop()->set_checkpoint(*trial->stop_as == v1::TRIAL_STATE_PAUSED);
        SendWhenDurable(agent.channel, std::move(stop));
      }
    }
    // Trials sweepd placed here that the agent no longer has (it restarted, or never got the
    // assignment): lost now, not after a timeout.
    for (const std::string& trial_id : TrialsHeldBy(agent.id, previous)) {
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
    LogInfo({.agent = agent.id}, "connected from {} with {} slots", request.hostname(),
            request.gpus_size());
    // Registered goes first on the stream, before anything SendWhenDurable sends from the
    // store's writer thread (an Assign or Stop that overtook it made the agent act on the new
    // registration before it had it; found by RestartE2eTest in a clean CI run).
    v1::SchedulerMessage registered;
    *registered.mutable_registered() = reply;
    agent.channel->Send(std::move(registered));
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
    LogWarn({.agent = agent_id}, "disconnected");
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
    LogInfo({.agent = agent_id}, "left: {}", reason);
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
          LogInfo({.agent = agent.id}, "draining: no new trials for it");
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
    LogWarn({.agent = agent.id}, "started unknown trial {}", started.trial_id());
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

void Engine::AckExitWhenDurable(const std::shared_ptr<AgentChannel>& channel,
                                const std::string& trial_id) {
  // Runs after the state change this exit causes (posted to the engine after this returns).
  Post([this, channel, trial_id] {
    v1::SchedulerMessage ack;
    ack.mutable_ack()->set_trial_id(trial_id);
    ack.mutable_ack()->set_seq(-1);
    ack.mutable_ack()->set_exited(true);
    SendWhenDurable(channel, std::move(ack));  // not acknowledged if not: the agent re-sends it
  });
}

void Engine::SendWhenDurable(const std::shared_ptr<AgentChannel>& channel,
                             v1::SchedulerMessage message) {
  if (channel == nullptr) return;
  // The writer commits in order and runs completions in order: once this no-op is committed, so
  // is everything written before it, and messages leave in the order they were given.
  store_->RunOnWriter([](store::Connection&) { return absl::OkStatus(); },
                      [weak = std::weak_ptr<AgentChannel>(channel),
                       message = std::move(message)](absl::Status status) mutable {
                        // Not on disk: not said; except a Stop, which only ends work and is
                        // safe to act on whether or not its reason was stored.
                        if (!status.ok() && !message.has_stop()) return;
                        if (auto c = weak.lock()) c->Send(std::move(message));
                      });
}

std::set<std::string> Engine::TrialsHeldBy(const std::string& agent_id,
                                           const std::vector<std::string>& slots) const {
  std::set<std::string> held(slots.begin(), slots.end());
  for (int64_t id : TrialsOn(agent_id)) {
    const Trial& trial = trials_.at(id);
    for (const Node& node : trial.nodes) {
      if (node.agent_id == agent_id && !node.exited) held.insert(trial.public_id);
    }
  }
  held.erase("");
  return held;
}

void Engine::LoseAgentTrials(Agent& agent, const std::string& reason) {
  for (const std::string& trial_id : TrialsHeldBy(agent.id, agent.slot_trial)) {
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
    RunCheckpointPolicy(sweep);
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
      LogWarn({.agent = agent.id}, "silent for {:.0f} s; closing its stream",
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
      LogWarn({.agent = agent.id}, "away for more than {} s: its trials are lost",
              options_.agent_timeout_seconds);
      LoseAgentTrials(agent, absl::StrCat("agent ", agent.id, " went away"));
    }
  }
  // After a restart: nodes whose agents did not come back in time.
  std::vector<int64_t> overdue;
  for (auto it = awaiting_reattach_.begin(); it != awaiting_reattach_.end();) {
    Trial& trial = trials_.at(*it);
    const bool waiting = trial.reattach_deadline != 0 && Live(trial) &&
                         std::any_of(trial.nodes.begin(), trial.nodes.end(),
                                     [](const Node& n) { return !n.attached && !n.exited; });
    if (!waiting) {
      trial.reattach_deadline = 0;
      it = awaiting_reattach_.erase(it);
      continue;
    }
    if (now >= trial.reattach_deadline) overdue.push_back(*it);
    ++it;
  }
  for (int64_t id : overdue) {
    Trial& trial = trials_.at(id);
    trial.reattach_deadline = 0;
    awaiting_reattach_.erase(id);
    for (Node& node : trial.nodes) {
      if (node.attached || node.exited || !Live(trial)) continue;
      NodeEnded(sweeps_.at(trial.sweep_id), trial, node, v1::TRIAL_STATE_LOST,
                absl::StrCat("agent ", node.agent_id, " did not reattach within ",
                             options_.reattach_seconds, " s of a restart"),
                {});
    }
  }
}

}  // namespace sweepd::scheduler
