#pragma once

#include <map>
#include <vector>

#include "scheduler/pruning/order_statistics.h"
#include "scheduler/pruning/pruner.h"

namespace sweepd::pruning {

// Asynchronous successive halving (Li et al., MLSys 2020). Rungs at
// min_resource * eta^(k + min_early_stopping_rate) below max_resource; a trial reaching a rung
// records its value there and goes on only if that value is within the top 1/eta of the values
// recorded at the rung so far (Optuna's rule: at least the best one passes). No waiting for a
// rung to fill. Not thread-safe.
class AshaPruner final : public Pruner {
 public:
  AshaPruner(double min_resource, double max_resource, double eta, int min_early_stopping_rate,
             bool maximize, std::string label = "asha");

  Decision OnReport(const Observation& observation, bool decide) override;
  void Rewind(int64_t trial, double resource, int64_t reports) override;
  std::optional<double> MaxResource() const override;

  const std::vector<double>& rungs() const { return rungs_; }

 private:
  std::vector<double> rungs_;
  std::vector<OrderStatistics> recorded_;  // per rung
  // Per trial, the score it recorded at each rung it reached, in rung order (its size is the
  // next rung the trial records at).
  std::map<int64_t, std::vector<double>> trial_scores_;
  double max_resource_;
  double eta_;
  bool maximize_;
  std::string label_;
};

// Hyperband as several ASHA brackets (bracket b skips its b lowest rungs). Trials are spread
// over brackets in proportion to Hyperband's budgets: bracket b gets
// ceil(B * eta^s / (s + 1)) shares, s = B - 1 - b, and a trial's bracket is chosen by a hash of
// its id (as Optuna's HyperbandPruner does). Not thread-safe.
class HyperbandPruner final : public Pruner {
 public:
  HyperbandPruner(double min_resource, double max_resource, double eta, int brackets,
                  bool maximize);

  Decision OnReport(const Observation& observation, bool decide) override;
  void Rewind(int64_t trial, double resource, int64_t reports) override;
  std::optional<double> MaxResource() const override { return max_resource_; }

  size_t BracketOf(int64_t trial) const;
  size_t brackets() const { return brackets_.size(); }

 private:
  std::vector<std::unique_ptr<AshaPruner>> brackets_;
  std::vector<int64_t> cumulative_budget_;
  double max_resource_;
};

}  // namespace sweepd::pruning
