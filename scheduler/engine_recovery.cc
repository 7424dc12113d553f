// Recovery: the engine's state rebuilt from one read of the store at start.

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

using google::protobuf::util::TimeUtil;

}  // namespace

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
    std::map<std::string, v1::Trial> copies;  // method pbt's copies, for their lineage
    for (auto& t : page.trials) {
      if (!t.parent_trial_id().empty()) copies[t.id()] = t;
      Trial trial;
      trial.public_id = t.id();
      trial.id = keys.trial_ids.at(t.id());
      trial.sweep_id = sweep.id;
      trial.number = t.number();
      trial.state = t.state();
      trial.params.assign(t.params().begin(), t.params().end());
      trial.attempt = t.attempt();
      trial.enqueued = t.enqueued();
      if (t.has_checkpoint_step()) trial.checkpoint_step = t.checkpoint_step();
      trial.promotions = t.promotions();
      trial.resumed_promotions = t.resumed_promotions();
      trial.ran_on.assign(t.agent_ids().begin(), t.agent_ids().end());
      if (t.has_best_value()) trial.best_value = t.best_value();
      if (t.has_end_time()) trial.end_us = TimeUtil::TimestampToMicroseconds(t.end_time());
      trial.checkpoint_deletion_queued = t.checkpoint_deleted();
      if (t.state() == v1::TRIAL_STATE_PAUSED) sweep.paused.insert(trial.id);
      // Retries after the first resumed from the checkpoint as it was then (or from the start);
      // the exact step only weighs the GPU time a later retry redoes.
      if (t.attempt() > 1 && t.has_checkpoint_step())
        trial.attempt_start_step = t.checkpoint_step();
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
    RestorePbt(sweeps_.at(sweep_key), copies);
    RETURN_IF_ERROR(ReplayPruner(sweeps_.at(sweep_key)));
    {
      // The checkpoint policy picks up where it was: pruned trials not yet cleaned wait out
      // their time again (by their stored end), and an ended sweep's trials beyond the best go.
      Sweep& rebuilt = sweeps_.at(sweep_key);
      std::vector<int64_t> pruned;
      for (int64_t id : rebuilt.trial_ids) {
        const Trial& t = trials_.at(id);
        if (t.state == v1::TRIAL_STATE_PRUNED && !t.checkpoint_deletion_queued &&
            rebuilt.spec.checkpoint().delete_pruned_after_hours() > 0) {
          pruned.push_back(id);
        }
      }
      std::stable_sort(pruned.begin(), pruned.end(), [&](int64_t a, int64_t b) {
        return trials_.at(a).end_us < trials_.at(b).end_us;
      });
      rebuilt.pruned_checkpoints.assign(pruned.begin(), pruned.end());
      QueueCheckpointsBeyondTheBest(rebuilt);
      // ASHA with promotion: a running trial that recorded a rung it was not promoted past had
      // been told to pause when sweepd stopped (the pause is not stored). It pauses again: the
      // stop goes out with the checkpoint flag when its agent reattaches it.
      if (rebuilt.pruner && rebuilt.pruner->Promotes()) {
        for (int64_t id : rebuilt.trial_ids) {
          Trial& t = trials_.at(id);
          const int rung = rebuilt.pruner->RungOf(id);
          if ((t.state == v1::TRIAL_STATE_RUNNING || t.state == v1::TRIAL_STATE_ASSIGNED) &&
              rung >= 0 && rung >= t.promotions) {
            t.stop_as = v1::TRIAL_STATE_PAUSED;
            t.stop_reason = absl::StrCat("paused at rung ", rung,
                                         " until promoted (said again after a sweepd restart)");
          }
        }
      }
    }
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
        awaiting_reattach_.insert(trial.id);
        if (it->second.has_start_time()) {
          trial.start_us =
              google::protobuf::util::TimeUtil::TimestampToMicroseconds(it->second.start_time());
        }
        continue;
      }
      SetTrialState(trial, v1::TRIAL_STATE_LOST, "sweepd restarted before the trial was placed");
    }
    if (trial.state == v1::TRIAL_STATE_LOST &&
        trial.attempt - trial.resumed_promotions <= sweep.spec.max_retries() &&
        (sweep.state == v1::SWEEP_STATE_RUNNING || sweep.state == v1::SWEEP_STATE_PAUSED)) {
      Requeue(sweep, trial, /*attempt_gpu_seconds=*/0);  // counted when it was lost
      continue;
    }
    if (trial.state == v1::TRIAL_STATE_QUEUED) sweep.queue.push_back(trial.id);
  }
  for (auto& [id, trial] : trials_) Reindex(trial);
  spdlog::info("rebuilt {} sweeps and {} trials from the store", sweeps_.size(), trials_.size());
  return absl::OkStatus();
}

absl::Status Engine::ReplayPruner(Sweep& sweep) {
  if (!sweep.pruner) return absl::OkStatus();
  std::vector<std::string> names = {sweep.spec.metric().name()};
  if (!sweep.resource_metric.empty()) names.push_back(sweep.resource_metric);
  for (int64_t id : sweep.trial_ids) {
    Trial& trial = trials_.at(id);
    ASSIGN_OR_RETURN(store::TrialDetail detail, store_->GetTrial(trial.public_id, names, 0));
    for (int32_t i = 0; i < trial.promotions; ++i) sweep.pruner->Promoted(trial.id);
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
      if (trial.checkpoint_step && report.first <= *trial.checkpoint_step) {
        trial.metric_reports_at_checkpoint = trial.metric_reports;
        trial.resource_at_checkpoint = trial.resource;
      }
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

}  // namespace sweepd::scheduler
