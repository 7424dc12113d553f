#include "scheduler/pruning/percentile_pruner.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace sweepd::pruning {
namespace {

// Optuna decides at the first step of each interval after the warm-up.
bool DecidesAt(int64_t step, int64_t warmup, int64_t interval) {
  if (step < warmup) return false;
  return interval <= 1 || (step - warmup) % interval == 0;
}

}  // namespace

PercentilePruner::PercentilePruner(double percentile, int n_startup_trials, int64_t n_warmup_steps,
                                   int64_t interval_steps, int n_min_trials, bool maximize)
    : percentile_(percentile),
      n_startup_trials_(n_startup_trials),
      n_warmup_steps_(n_warmup_steps),
      interval_steps_(std::max<int64_t>(1, interval_steps)),
      n_min_trials_(std::max(1, n_min_trials)),
      maximize_(maximize) {}

Decision PercentilePruner::OnReport(const Observation& o, bool decide) {
  TrialState& t = running_[o.trial];
  const double score = Score(o.value, maximize_);
  const auto step = static_cast<int64_t>(o.resource);
  t.best = std::min(t.best, score);
  t.scores.emplace_back(step, score);
  if (!decide || !DecidesAt(step, n_warmup_steps_, interval_steps_)) return {};
  if (completed_ < n_startup_trials_) return {};
  if (std::isinf(t.best) && t.best > 0) {
    return {.stop = true, .reason = absl::StrCat("pruned at step ", step, ": the value is NaN")};
  }
  auto it = by_step_.find(step);
  if (it == by_step_.end() || it->second.size() < static_cast<size_t>(n_min_trials_)) return {};
  const double cut = it->second.Percentile(percentile_);
  if (t.best > cut) {
    const double shown = maximize_ ? -t.best : t.best;
    const double shown_cut = maximize_ ? -cut : cut;
    const std::string rule =
        percentile_ == 50 ? "median" : absl::StrCat(FormatNumber(percentile_), "th percentile");
    return {.stop = true,
            .reason = absl::StrCat("pruned at step ", step, ": best ", FormatNumber(shown),
                                   " worse than the ", rule, " ", FormatNumber(shown_cut), " of ",
                                   it->second.size(), " completed trials")};
  }
  return {};
}

void PercentilePruner::Rewind(int64_t trial, double resource, int64_t /*reports*/) {
  auto it = running_.find(trial);
  if (it == running_.end()) return;
  TrialState& t = it->second;
  std::erase_if(t.scores, [&](const auto& entry) { return entry.first > resource; });
  t.best = std::numeric_limits<double>::infinity();
  for (const auto& [step, score] : t.scores) t.best = std::min(t.best, score);
}

void PercentilePruner::OnTrialEnd(int64_t trial, v1::TrialState state) {
  auto it = running_.find(trial);
  if (state == v1::TRIAL_STATE_COMPLETED) {
    ++completed_;
    if (it != running_.end()) {
      // One value per step: the last one reported at it (Optuna keeps one per step).
      std::map<int64_t, double> last;
      for (const auto& [step, score] : it->second.scores) last[step] = score;
      for (const auto& [step, score] : last) {
        if (!std::isinf(score)) by_step_[step].Insert(score, trial);  // nanpercentile: no NaN
      }
    }
  }
  if (it != running_.end()) running_.erase(it);
}

ThresholdPruner::ThresholdPruner(std::optional<double> lower, std::optional<double> upper,
                                 int64_t n_warmup_steps, int64_t interval_steps)
    : lower_(lower),
      upper_(upper),
      n_warmup_steps_(n_warmup_steps),
      interval_steps_(std::max<int64_t>(1, interval_steps)) {}

Decision ThresholdPruner::OnReport(const Observation& o, bool decide) {
  const auto step = static_cast<int64_t>(o.resource);
  if (!decide || !DecidesAt(step, n_warmup_steps_, interval_steps_)) return {};
  if (std::isnan(o.value)) {
    return {.stop = true, .reason = absl::StrCat("pruned at step ", step, ": the value is NaN")};
  }
  if (lower_ && o.value < *lower_) {
    return {.stop = true,
            .reason = absl::StrCat("pruned at step ", step, ": ", FormatNumber(o.value),
                                   " below the lower bound ", FormatNumber(*lower_))};
  }
  if (upper_ && o.value > *upper_) {
    return {.stop = true,
            .reason = absl::StrCat("pruned at step ", step, ": ", FormatNumber(o.value),
                                   " above the upper bound ", FormatNumber(*upper_))};
  }
  return {};
}

}  // namespace sweepd::pruning
