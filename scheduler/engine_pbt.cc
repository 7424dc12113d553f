// Method pbt: exploit and explore at members' interval boundaries, the pins that keep a parent's
// checkpoint until its copy has it, and the lineage rebuilt after a restart.

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/state_names.h"
#include "scheduler/engine.h"
#include "scheduler/engine_internal.h"
#include "scheduler/search/param_sampler.h"

namespace sweepd::scheduler {
namespace {

// "lr 0.01 -> 0.012, momentum 0.9 -> 0.72": what explore changed.
std::string ParamChanges(const ParamSet& before, const ParamSet& after) {
  std::vector<std::string> changes;
  for (size_t i = 0; i < before.size() && i < after.size(); ++i) {
    if (before[i].value_json() != after[i].value_json()) {
      changes.push_back(absl::StrCat(after[i].name(), " ", before[i].value_json(), " -> ",
                                     after[i].value_json()));
    }
  }
  return changes.empty() ? "parameters unchanged" : absl::StrJoin(changes, ", ");
}

}  // namespace

void Engine::PbtOnReport(Sweep& sweep, Trial& trial, int64_t step,
                         const google::protobuf::Map<std::string, double>& metrics) {
  if (sweep.pbt == nullptr) return;
  auto value = metrics.find(sweep.spec.metric().name());
  if (value == metrics.end()) return;
  const int64_t previous = trial.pbt_last_step;
  trial.pbt_last_step = std::max(previous, step);
  if (trial.state != v1::TRIAL_STATE_RUNNING || trial.stop_as || trial.pbt_replaced ||
      sweep.state != v1::SWEEP_STATE_RUNNING || !MayPromote(sweep) ||
      static_cast<int64_t>(sweep.trial_ids.size()) >= kMaxTrialsPerSweep) {
    return;
  }
  // Steps count from 0, so the first generation's first decision comes after `interval`
  // reports, as Ray's comes at training_iteration == perturbation_interval.
  const int64_t origin = trial.pbt_copy ? trial.pbt_parent_step : -1;
  if (!sweep.pbt->DecisionDue(origin, previous, step)) return;
  trial.pbt_score = value->second;
  // The population as Ray's _quantiles sees it: the members not finished (nor replaced) that
  // have made a decision, each by its score then.
  const bool maximize = sweep.spec.metric().goal() == v1::GOAL_MAXIMIZE;
  std::vector<PbtMember> population;
  for (int64_t id : sweep.trial_ids) {
    const Trial& member = trials_.at(id);
    const std::optional<double>& score = member.pbt_score;
    if (member.pbt_replaced || !score || !Live(member)) continue;
    // A source is running, has a recorded checkpoint, and has no copy waiting on an older one
    // (its client keeps one pinned step at a time).
    bool other_pin = false;
    if (const auto pin = PinnedCheckpoint(sweep, member); pin && pin != member.checkpoint_step) {
      other_pin = true;
    }
    population.push_back({.trial = id,
                          .score = pruning::Score(*score, maximize),
                          .can_be_source = member.state == v1::TRIAL_STATE_RUNNING &&
                                           !member.stop_as && member.checkpoint_step.has_value() &&
                                           !member.copy_pending && !other_pin});
  }
  const uint64_t salt =
      SplitMix64(sweep.spec.seed() ^ SplitMix64(static_cast<uint64_t>(trial.number) * 1'000'003u +
                                                static_cast<uint64_t>(step)));
  const auto source_id = sweep.pbt->ExploitSource(trial.id, population, salt);
  if (!source_id) return;
  Trial& source = trials_.at(*source_id);
  const int64_t source_step = *source.checkpoint_step;
  ParamSet params = sweep.pbt->Explore(source.params, SplitMix64(salt));
  const std::string changes = ParamChanges(source.params, params);
  const Lineage lineage{.parent = source.id, .parent_step = source_step, .replaced = trial.id};
  const auto copy_id = NewTrial(sweep, std::move(params), /*enqueued=*/false, &lineage);
  if (!copy_id) return;
  Trial& copy = trials_.at(*copy_id);
  // It takes the replaced member's place now, ahead of first-generation members not yet started.
  sweep.queue.erase(std::find(sweep.queue.begin(), sweep.queue.end(), copy.id));
  sweep.queue.push_front(copy.id);
  trial.pbt_replaced = true;
  const std::string reason = absl::StrCat(
      "pbt: in the bottom ", pruning::FormatNumber(sweep.pbt->settings().quantile() * 100),
      "% at step ", step, " (", pruning::FormatNumber(value->second), "); replaced by ",
      copy.public_id, ", a copy of ", source.public_id, " at step ", source_step, " with ",
      changes);
  LogInfo({.sweep = sweep.public_id, .trial = trial.public_id}, "{}", reason);
  Event(sweep.id, copy.id, "", "trial.pbt_exploit", "", "queued", reason);
  StopTrial(trial, v1::TRIAL_STATE_PRUNED, reason);
}

std::optional<int64_t> Engine::PinnedCheckpoint(const Sweep& sweep, const Trial& trial) const {
  std::optional<int64_t> keep;
  for (int64_t id : sweep.pending_copies) {
    const Trial& copy = trials_.at(id);
    if (copy.pbt_parent != trial.id || !copy.copy_pending || !Live(copy)) continue;
    keep = keep ? std::min(*keep, copy.pbt_parent_step) : copy.pbt_parent_step;
  }
  return keep;
}

void Engine::RestorePbt(Sweep& sweep, const std::map<std::string, v1::Trial>& stored) {
  sweep.pbt = dynamic_cast<PopulationBasedTraining*>(sweep.search.get());
  for (int64_t id : sweep.trial_ids) {
    Trial& trial = trials_.at(id);
    const TrialRecord& record = sweep.history[trial.history_index];
    trial.pbt_last_step = record.last_step;
    auto it = stored.find(trial.public_id);
    // Its score at its last decision is not stored: a member past a decision point ranks by its
    // latest value until its next one.
    const int64_t origin =
        it != stored.end() && !it->second.parent_trial_id().empty() ? it->second.parent_step() : -1;
    if (sweep.pbt != nullptr && record.value &&
        record.last_step - origin >= std::max<int64_t>(1, sweep.pbt->settings().interval())) {
      trial.pbt_score = record.value;
    }
    if (it == stored.end() || it->second.parent_trial_id().empty()) continue;
    const v1::Trial& row = it->second;
    auto parent = trial_ids_.find(row.parent_trial_id());
    auto replaced = trial_ids_.find(row.replaced_trial_id());
    if (parent == trial_ids_.end()) continue;
    trial.pbt_copy = true;
    trial.pbt_parent = parent->second;
    trial.pbt_parent_step = row.parent_step();
    trial.pbt_last_step = std::max(trial.pbt_last_step, row.parent_step());
    sweep.history[trial.history_index].pbt_copy = true;
    if (replaced != trial_ids_.end()) {
      Trial& member = trials_.at(replaced->second);
      member.pbt_replaced = true;
      if (Live(member) && !member.stop_as) {
        // Its stop was not stored (a stop never is): it is said again when its agent reattaches
        // it, so a replaced member does not train on beside its copy.
        member.stop_as = v1::TRIAL_STATE_PRUNED;
        member.stop_reason = absl::StrCat("pbt: replaced by ", trial.public_id, ", a copy of ",
                                          row.parent_trial_id(), " at step ", row.parent_step(),
                                          " (said again after a sweepd restart)");
      }
    }
    // Not started yet: its parent's checkpoint is still to be copied (an attempt that failed to
    // start copies it again), and without checkpoint.dir only the parent's node has it.
    if (!row.has_start_time() && Live(trial) && trial.checkpoint_step) {
      trial.copy_pending = true;
      if (trial.ran_on.empty()) trial.ran_on = trials_.at(parent->second).ran_on;
      sweep.pending_copies.insert(trial.id);
    }
  }
}

}  // namespace sweepd::scheduler
