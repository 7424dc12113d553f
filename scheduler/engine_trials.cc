// Metric intake with its acknowledgements, and the ends of trials (nodes, retries, accounting).

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

// Where a trial that runs again starts, for its event: "; resumes from its checkpoint at step
// 12" or "; starts over (no checkpoint)".
std::string ResumesFrom(const std::optional<int64_t>& checkpoint_step) {
  return checkpoint_step ? absl::StrCat("; resumes from its checkpoint at step ", *checkpoint_step)
                         : std::string("; starts over (no checkpoint)");
}

}  // namespace

void Engine::OnMetricBatch(Agent& agent, v1::MetricBatch batch) {
  Trial* trial = FindTrial(batch.trial_id());
  if (trial == nullptr || trial->agent_id != agent.id) {
    LogWarn({.agent = agent.id}, "metrics for a trial it does not run: {}", batch.trial_id());
    return;
  }
  if (batch.reports_size() == 0) return;
  if (batch.first_seq() > trial->last_seq_seen + 1) {
    // Acknowledgements are cumulative ("everything up to seq"), so a batch after a gap (an
    // earlier batch was refused) is not taken either: the agent re-sends from its oldest
    // unacknowledged report, and nothing is acknowledged that is not stored.
    LogDebug({.trial = trial->public_id},
             "metrics from seq {} but {} is next; waiting for the re-send", batch.first_seq(),
             trial->last_seq_seen + 1);
    return;
  }
  if (store_->Degraded()) {
    // The store cannot commit: queueing more would only grow memory. Not acknowledged, so the
    // agent keeps the reports and sends them again (it re-sends what stays unacknowledged).
    store_was_degraded_ = true;
    ++metric_batches_refused_;
    batches_refused_total_.fetch_add(1, std::memory_order_relaxed);
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
  reports_received_.fetch_add(batch.reports_size(), std::memory_order_relaxed);
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
        if (!trial.best_value || Better(value, *trial.best_value, maximize)) {
          trial.best_value = value;
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
        PbtOnReport(sweep, trial, r.step(), r.metrics());
      } else if (r.metrics().contains(metric)) {
        ++trial.metric_reports;
      }
      if (!r.checkpoint() && trial.checkpoint_step && r.step() <= *trial.checkpoint_step) {
        // A report at or before the checkpoint's step that arrives after it ("save, then
        // report"): a retry keeps it, so the pruner's rewind point includes it, as a replay
        // of the stored reports (by step) does.
        trial.metric_reports_at_checkpoint = trial.metric_reports;
        trial.resource_at_checkpoint = trial.resource;
      }
      if (r.checkpoint()) {
        // Stored before the batch's acknowledgement (the writer keeps order): once the script
        // hears its checkpoint is recorded, a retry resumes from it.
        trial.checkpoint_step = r.step();
        trial.metric_reports_at_checkpoint = trial.metric_reports;
        trial.resource_at_checkpoint = trial.resource;
        store_->UpdateTrial({.id = trial.id, .checkpoint_step = r.step()}, nullptr);
      }
    }
  }
  // Ack once durable; the agent then drops its copy. It names the checkpoint a pbt copy still
  // needs (decided before this ack, so the client never drops it in between).
  std::weak_ptr<AgentChannel> channel = ack_to;
  store_->AppendMetrics(
      trial.id, std::move(reports),
      [this, channel, trial_id = batch.trial_id(), first_seq = batch.first_seq(), last_seq,
       count = batch.reports_size(), keep = PinnedCheckpoint(sweep, trial)](absl::Status status) {
        if (!status.ok()) {
          LogError({.trial = trial_id}, "storing metrics failed: {}", status.message());
          // Not acknowledged: the agent sends them again. Until then no later
          // batch may be taken (its cumulative ack would cover these).
          Post([this, trial_id, first_seq] {
            if (Trial* t = FindTrial(trial_id)) {
              t->last_seq_seen = std::min(t->last_seq_seen, first_seq - 1);
            }
          });
          return;
        }
        reports_acknowledged_.fetch_add(count, std::memory_order_relaxed);
        if (auto c = channel.lock()) {
          v1::SchedulerMessage ack;
          ack.mutable_ack()->set_trial_id(trial_id);
          ack.mutable_ack()->set_seq(last_seq);
          if (keep) ack.mutable_ack()->set_keep_checkpoint_step(*keep);
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
  // An earlier attempt's exit (re-sent after a restart) says nothing about this one.
  if (exited.attempt() != 0 && exited.attempt() != trial->attempt) return;
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
  if (failed && trial->copy_pending && !trial->stop_as && exited.spec_error().empty()) {
    // A pbt copy that could not start (its agent could not copy the parent's checkpoint): it is
    // not the node's fault nor the trial's; it runs again from the beginning, as one whose
    // checkpoint is out of reach does.
    StartOver(sweep, *trial, agent.id,
              absl::StrCat("could not start from its parent's checkpoint at step ",
                           trial->checkpoint_step.value_or(-1), ": ", exited.stderr_tail(),
                           "; it starts over"));
    NodeEnded(sweep, *trial, *node, v1::TRIAL_STATE_LOST,
              absl::StrCat("could not copy its parent's checkpoint on ", agent.id),
              {.exit_code = exited.exit_code(), .exit_signal = exited.signal()});
    return;
  }
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

void Engine::NodeEnded(Sweep& sweep, Trial& trial, Node& node, v1::TrialState node_state,
                       const std::string& reason, store::TrialUpdate update) {
  node.exited = true;
  if (auto it = agents_.find(node.agent_id); it != agents_.end()) {
    for (auto& slot : it->second.slot_trial) {
      if (slot == trial.public_id) slot.clear();
    }
    if (node_state == v1::TRIAL_STATE_LOST && node.wall_seconds <= 0 && trial.start_us > 0 &&
        trial.state == v1::TRIAL_STATE_RUNNING) {
      // Its agent went away without telling how long the trial ran: it ran (and held its GPUs)
      // at least until sweepd last heard from the agent. GPU-hours count every attempt.
      const double heard_us = static_cast<double>(NowMicros()) -
                              std::max(0.0, SteadySeconds() - it->second.last_seen) * 1e6;
      node.wall_seconds = std::max(0.0, (heard_us - static_cast<double>(trial.start_us)) / 1e6);
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
  if (final_state == v1::TRIAL_STATE_PAUSED) {
    PauseTrial(sweep, trial, final_reason, gpu_seconds, std::move(update));
    return;
  }
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
  // Promotions (ASHA's) are attempts too, but not retries.
  if (sweep_live && trial.attempt - trial.resumed_promotions <= sweep.spec.max_retries()) {
    Requeue(sweep, trial, gpu_seconds);
  }
  Schedule();
}

void Engine::PauseTrial(Sweep& sweep, Trial& trial, const std::string& reason, double gpu_seconds,
                        store::TrialUpdate update) {
  if (sweep.state != v1::SWEEP_STATE_RUNNING && sweep.state != v1::SWEEP_STATE_PAUSED) {
    // The sweep ended while the pause was on its way: nothing will promote it.
    EndTrial(sweep, trial, v1::TRIAL_STATE_CANCELED,
             absl::StrCat("sweep ", SweepStateName(sweep.state), " while pausing"), gpu_seconds,
             std::move(update));
    return;
  }
  sweep.gpu_seconds += gpu_seconds;
  update.end_us = NowMicros();
  update.add_gpu_seconds = gpu_seconds;
  trial.agent_id.clear();
  trial.nodes.clear();
  trial.stop_as.reset();
  trial.stop_reason.clear();
  SetTrialState(trial, v1::TRIAL_STATE_PAUSED, reason, std::move(update));
  Schedule();
}

bool Engine::PromoteNext(Sweep& sweep) {
  if (!sweep.pruner || !sweep.pruner->Promotes() || sweep.paused.empty()) return false;
  const auto next =
      sweep.pruner->NextPromotion([&](int64_t id) { return sweep.paused.contains(id); });
  if (!next) return false;
  Trial& trial = trials_.at(*next);
  const int rung = sweep.pruner->RungOf(trial.id);
  sweep.pruner->Promoted(trial.id);
  trial.attempt += 1;
  trial.promotions += 1;
  trial.resumed_promotions += 1;
  trial.start_us = 0;
  trial.attempt_start_step = trial.checkpoint_step.value_or(-1);
  // It runs on from its checkpoint; what it reported after it is reported again. The pruner
  // keeps the rung it recorded (it was promoted for that value).
  SetTrialState(trial, v1::TRIAL_STATE_QUEUED,
                absl::StrCat("promoted past rung ", rung, ResumesFrom(trial.checkpoint_step)),
                {.attempt = trial.attempt,
                 .drop_reports_after_step =
                     trial.checkpoint_step.value_or(std::numeric_limits<int64_t>::min()),
                 .add_promotion = true,
                 .add_resumed_promotion = true});
  sweep.queue.push_front(trial.id);
  return true;
}

void Engine::Requeue(Sweep& sweep, Trial& trial, double attempt_gpu_seconds) {
  // What this attempt ran past the checkpoint the retry starts from is done again: its share of
  // the attempt's GPU time (by steps; all of it when nothing was kept) is the restart's waste.
  const int64_t resume_from = trial.checkpoint_step.value_or(-1);
  const int64_t last_step =
      std::max(sweep.history[trial.history_index].last_step, trial.attempt_start_step);
  double redone = attempt_gpu_seconds;
  if (trial.checkpoint_step && last_step > trial.attempt_start_step) {
    const double span = static_cast<double>(last_step - trial.attempt_start_step);
    redone *= std::clamp(static_cast<double>(last_step - resume_from) / span, 0.0, 1.0);
  }
  trial.attempt += 1;
  trial.agent_id.clear();
  trial.nodes.clear();
  trial.stop_as.reset();
  trial.stop_reason.clear();
  trial.start_us = 0;
  trial.attempt_start_step = resume_from;
  // The pruner forgets what the retry will report again; the store drops those reports, so the
  // curve has each step once and a rebuilt sweepd replays the same.
  trial.metric_reports = trial.checkpoint_step ? trial.metric_reports_at_checkpoint : 0;
  trial.resource = trial.checkpoint_step ? trial.resource_at_checkpoint : 0;
  if (sweep.pruner) {
    sweep.pruner->Rewind(trial.id,
                         trial.checkpoint_step ? trial.resource_at_checkpoint
                                               : -std::numeric_limits<double>::infinity(),
                         trial.metric_reports);
  }
  const std::string how = ResumesFrom(trial.checkpoint_step);
  const std::string waste =
      redone > 0 ? absl::StrCat(", redoing ", pruning::FormatNumber(redone), " GPU-seconds") : "";
  if (sweep.pruner && sweep.pruner->Promotes() && trial.checkpoint_step &&
      sweep.pruner->RungOf(trial.id) >= trial.promotions) {
    // ASHA with promotion: it had reached a rung it was not promoted past (it was pausing
    // there, or about to). It waits there, paused, and a promotion resumes it from its
    // checkpoint; run now, it would go on past the rung unjudged.
    SetTrialState(trial, v1::TRIAL_STATE_PAUSED,
                  absl::StrCat("lost while at rung ", sweep.pruner->RungOf(trial.id),
                               "; paused there until promoted", waste),
                  {.end_us = NowMicros(),
                   .attempt = trial.attempt,
                   .add_gpu_seconds_redone = redone,
                   .drop_reports_after_step = *trial.checkpoint_step});
    return;
  }
  SetTrialState(
      trial, v1::TRIAL_STATE_QUEUED,
      absl::StrCat("retry ", trial.attempt - 1, " of ", sweep.spec.max_retries(), how, waste),
      {.attempt = trial.attempt,
       .add_gpu_seconds_redone = redone,
       .drop_reports_after_step =
           trial.checkpoint_step.value_or(std::numeric_limits<int64_t>::min())});
  sweep.queue.push_front(trial.id);
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
      update.add_gpu_seconds_saved = saved;
    }
  }
  trial.end_us = *update.end_us;
  SetTrialState(trial, final_state, reason, std::move(update));
  CheckpointPolicyOnTrialEnd(sweep, trial);
  if (final_state == v1::TRIAL_STATE_FAILED) {
    ++sweep.failures;
    if ((sweep.state == v1::SWEEP_STATE_RUNNING || sweep.state == v1::SWEEP_STATE_PAUSED) &&
        sweep.failures >= std::max(1, sweep.spec.max_failures())) {
      SetSweepState(sweep, v1::SWEEP_STATE_FAILED,
                    absl::StrCat(sweep.failures, " trials failed (max_failures ",
                                 sweep.spec.max_failures(), "); last: ", reason));
      for (int64_t id : sweep.trial_ids) {
        Trial& other = trials_.at(id);
        if (other.state == v1::TRIAL_STATE_QUEUED || other.state == v1::TRIAL_STATE_PAUSED) {
          SetTrialState(other, v1::TRIAL_STATE_CANCELED, "sweep failed", {.end_us = NowMicros()});
        } else if (Live(other)) {
          StopTrial(other, v1::TRIAL_STATE_CANCELED, "sweep failed");
        }
      }
      sweep.queue.clear();
      QueueCheckpointsBeyondTheBest(sweep);
    }
  }
  Schedule();
}

}  // namespace sweepd::scheduler
