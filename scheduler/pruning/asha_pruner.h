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
  // `promotion`: trials pause at every rung and run on only when promoted (NextPromotion);
  // otherwise they go on unless pruned.
  AshaPruner(double min_resource, double max_resource, double eta, int min_early_stopping_rate,
             bool maximize, std::string label = "asha", bool promotion = false);

  Decision OnReport(const Observation& observation, bool decide) override;
  void Rewind(int64_t trial, double resource, int64_t reports) override;
  std::optional<double> MaxResource() const override;
  bool Promotes() const override { return promotion_; }
  std::optional<int64_t> NextPromotion(const std::function<bool(int64_t)>& waiting) const override;
  int RungOf(int64_t trial) const override;
  void Promoted(int64_t trial) override { ++promotions_[trial]; }
  // The highest rung with a promotable trial, and that trial (NextPromotion's answer).
  std::optional<std::pair<size_t, int64_t>> Promotable(
      const std::function<bool(int64_t)>& waiting) const;

  const std::vector<double>& rungs() const { return rungs_; }

 private:
  std::vector<double> rungs_;
  std::vector<OrderStatistics> recorded_;  // per rung
  // Per trial, the score it recorded at each rung it reached, in rung order (its size is the
  // next rung the trial records at).
  std::map<int64_t, std::vector<double>> trial_scores_;
  // Promotion mode: rungs each trial was promoted past; it records at most one rung more.
  std::map<int64_t, size_t> promotions_;
  double max_resource_;
  double eta_;
  bool maximize_;
  std::string label_;
  bool promotion_;
};

// Hyperband as several ASHA brackets (bracket b skips its b lowest rungs). Trials are spread
// over brackets in proportion to Hyperband's budgets: bracket b gets
// ceil(B * eta^s / (s + 1)) shares, s = B - 1 - b, and a trial's bracket is chosen by a hash of
// its id (as Optuna's HyperbandPruner does). Not thread-safe.
class HyperbandPruner final : public Pruner {
 public:
  HyperbandPruner(double min_resource, double max_resource, double eta, int brackets, bool maximize,
                  bool promotion = false);

  Decision OnReport(const Observation& observation, bool decide) override;
  void Rewind(int64_t trial, double resource, int64_t reports) override;
  std::optional<double> MaxResource() const override { return max_resource_; }
  bool Promotes() const override { return promotion_; }
  // The promotable trial at the highest rung over all brackets.
  std::optional<int64_t> NextPromotion(const std::function<bool(int64_t)>& waiting) const override;
  int RungOf(int64_t trial) const override;
  void Promoted(int64_t trial) override { brackets_[BracketOf(trial)]->Promoted(trial); }

  size_t BracketOf(int64_t trial) const;
  size_t brackets() const { return brackets_.size(); }

 private:
  std::vector<std::unique_ptr<AshaPruner>> brackets_;
  std::vector<int64_t> cumulative_budget_;
  double max_resource_;
  bool promotion_;
};

}  // namespace sweepd::pruning
