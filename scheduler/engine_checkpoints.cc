// The checkpoint policy of a sweep (spec `checkpoint: {keep_best, delete_pruned_after_hours}`):
// which trials' checkpoints may go, and which agent deletes them.

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/state_names.h"
#include "scheduler/engine.h"
#include "scheduler/engine_internal.h"

namespace sweepd::scheduler {
namespace {

bool Ended(v1::TrialState state) {
  return state == v1::TRIAL_STATE_COMPLETED || state == v1::TRIAL_STATE_PRUNED ||
         state == v1::TRIAL_STATE_FAILED || state == v1::TRIAL_STATE_LOST ||
         state == v1::TRIAL_STATE_CANCELED;
}

bool SweepEnded(v1::SweepState state) {
  return state == v1::SWEEP_STATE_FINISHED || state == v1::SWEEP_STATE_CANCELED ||
         state == v1::SWEEP_STATE_FAILED;
}

}  // namespace

void Engine::QueueCheckpointsBeyondTheBest(Sweep& sweep) {
  const int keep = sweep.spec.checkpoint().keep_best();
  if (keep <= 0 || !SweepEnded(sweep.state)) return;
  const bool maximize = sweep.spec.metric().goal() == v1::GOAL_MAXIMIZE;
  // The best `keep` trials by their best value (NaN and no value rank last), ties by number.
  std::vector<int64_t> ranked;
  for (int64_t id : sweep.trial_ids) {
    if (trials_.at(id).best_value) ranked.push_back(id);
  }
  auto score = [&](int64_t id) { return pruning::Score(*trials_.at(id).best_value, maximize); };
  const size_t kept = std::min(ranked.size(), static_cast<size_t>(keep));
  std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(kept),
                    ranked.end(), [&](int64_t a, int64_t b) {
                      return score(a) != score(b) ? score(a) < score(b)
                                                  : trials_.at(a).number < trials_.at(b).number;
                    });
  ranked.resize(kept);
  for (int64_t id : sweep.trial_ids) {
    Trial& trial = trials_.at(id);
    if (!Ended(trial.state) || trial.checkpoint_deletion_queued) continue;
    if (std::find(ranked.begin(), ranked.end(), id) != ranked.end()) continue;
    trial.checkpoint_deletion_queued = true;
    sweep.checkpoint_deletions.push_back(id);
  }
}

void Engine::CheckpointPolicyOnTrialEnd(Sweep& sweep, Trial& trial) {
  if (trial.state == v1::TRIAL_STATE_PRUNED &&
      sweep.spec.checkpoint().delete_pruned_after_hours() > 0) {
    sweep.pruned_checkpoints.push_back(trial.id);
  }
  // A trial that ends after its sweep did (one stopped by a cancel).
  QueueCheckpointsBeyondTheBest(sweep);
}

void Engine::RunCheckpointPolicy(Sweep& sweep) {
  const double hours = sweep.spec.checkpoint().delete_pruned_after_hours();
  const int64_t now_us = NowMicros();
  while (!sweep.pruned_checkpoints.empty()) {
    Trial& trial = trials_.at(sweep.pruned_checkpoints.front());
    if (trial.end_us + static_cast<int64_t>(hours * 3600e6) > now_us) break;
    sweep.pruned_checkpoints.pop_front();
    if (trial.checkpoint_deletion_queued || trial.state != v1::TRIAL_STATE_PRUNED) continue;
    trial.checkpoint_deletion_queued = true;
    sweep.checkpoint_deletions.push_back(trial.id);
  }
  // One pass over what is due: a trial whose agent is away goes to the back, and waits.
  for (size_t n = sweep.checkpoint_deletions.size(); n > 0; --n) {
    Trial& trial = trials_.at(sweep.checkpoint_deletions.front());
    sweep.checkpoint_deletions.pop_front();
    if (PinnedCheckpoint(sweep, trial)) {
      // A pbt copy not yet started still needs its checkpoint: after that, then.
      sweep.checkpoint_deletions.push_back(trial.id);
      continue;
    }
    const std::string& shared = sweep.spec.checkpoint().dir();
    // Node-local checkpoints: only the agent the trial last ran on has them. Shared ones: any
    // agent reaches them, that one first.
    Agent* agent = nullptr;
    for (const std::string& id : trial.ran_on) {
      auto it = agents_.find(id);
      if (it != agents_.end() && it->second.connected) {
        agent = &it->second;
        break;
      }
    }
    if (agent == nullptr && !shared.empty()) {
      for (auto& [id, candidate] : agents_) {
        if (candidate.connected) {
          agent = &candidate;
          break;
        }
      }
    }
    if (agent == nullptr) {
      // Node-local checkpoints of a trial that never ran anywhere: nothing to delete.
      if (!trial.ran_on.empty() || !shared.empty()) sweep.checkpoint_deletions.push_back(trial.id);
      continue;
    }
    const std::string why =
        trial.state == v1::TRIAL_STATE_PRUNED && hours > 0 && !SweepEnded(sweep.state)
            ? absl::StrCat("pruned ", hours, " h ago (checkpoint.delete_pruned_after_hours)")
            : absl::StrCat("not among the sweep's best ", sweep.spec.checkpoint().keep_best(),
                           " (checkpoint.keep_best)");
    store_->UpdateTrial({.id = trial.id, .checkpoint_deleted = true},
                        MakeEvent(sweep.id, trial.id, agent->id, "trial.checkpoint_deleted",
                                  TrialStateName(trial.state), "", why),
                        EventStored("a checkpoint deletion"));
    v1::SchedulerMessage message;
    message.mutable_delete_checkpoint()->set_sweep_id(sweep.public_id);
    message.mutable_delete_checkpoint()->set_trial_id(trial.public_id);
    message.mutable_delete_checkpoint()->set_checkpoint_dir(shared);
    SendWhenDurable(agent->channel, std::move(message));
    LogInfo({.sweep = sweep.public_id, .trial = trial.public_id, .agent = agent->id},
            "deleting its checkpoints: {}", why);
  }
}

}  // namespace sweepd::scheduler
