#pragma once

#include <map>
#include <vector>

#include "scheduler/pruning/order_statistics.h"
#include "scheduler/pruning/pruner.h"

namespace sweepd::pruning {

// Optuna's PercentilePruner (and MedianPruner, percentile 50; Vizier's median stopping): at a
// step, prune when the trial's best value so far is worse than the given percentile of the
// completed trials' values at that step. Waits for n_startup_trials completed trials, skips the
// first n_warmup_steps steps, decides every interval_steps, and needs n_min_trials values at the
// step. NaN is the worst value. Completed trials' values live in one order-statistic tree per
// step, so a decision is O(log n). Not thread-safe.
class PercentilePruner final : public Pruner {
 public:
  PercentilePruner(double percentile, int n_startup_trials, int64_t n_warmup_steps,
                   int64_t interval_steps, int n_min_trials, bool maximize);

  Decision OnReport(const Observation& observation, bool decide) override;
  void Rewind(int64_t trial, double resource, int64_t reports) override;
  void OnTrialEnd(int64_t trial, v1::TrialState state) override;

 private:
  struct TrialState {
    double best = std::numeric_limits<double>::infinity();
    std::vector<std::pair<int64_t, double>> scores;  // (step, score), kept until it ends
  };
  double percentile_;
  int n_startup_trials_;
  int64_t n_warmup_steps_;
  int64_t interval_steps_;
  int n_min_trials_;
  bool maximize_;
  int64_t completed_ = 0;
  std::map<int64_t, TrialState> running_;
  std::map<int64_t, OrderStatistics> by_step_;  // completed trials' scores at each step
};

// Stops a trial whose value is NaN or outside [lower, upper] (after the warm-up steps, every
// interval_steps). Not thread-safe.
class ThresholdPruner final : public Pruner {
 public:
  ThresholdPruner(std::optional<double> lower, std::optional<double> upper, int64_t n_warmup_steps,
                  int64_t interval_steps);
  Decision OnReport(const Observation& observation, bool decide) override;

 private:
  std::optional<double> lower_, upper_;
  int64_t n_warmup_steps_;
  int64_t interval_steps_;
};

}  // namespace sweepd::pruning
