#pragma once

#include <map>
#include <vector>

#include "scheduler/pruning/order_statistics.h"
#include "scheduler/pruning/pruner.h"

namespace sweepd::pruning {

// W&B's `early_terminate: {type: hyperband}`, with W&B's semantics: bands count reports
// (iterations), not step values; from min_iter they are min_iter * eta^k, from max_iter and s
// they are int(max_iter / eta^k) for k = 1..s. At a band the threshold is the value at index
// int(n / eta) of the sorted values the trials had at that band (negated when maximising); a
// trial is stopped when, at the last band it passed, its best value so far (strict: its value
// at that band) is worse. W&B checks every few minutes; sweepd decides at every report.
// NaN counts as the worst value (W&B drops NaN from histories). Not thread-safe.
class WandbHyperbandPruner final : public Pruner {
 public:
  WandbHyperbandPruner(std::vector<int64_t> bands, double eta, bool strict, bool maximize);
  static std::unique_ptr<WandbHyperbandPruner> FromSpec(const v1::EarlyTerminate& et,
                                                        bool maximize);

  Decision OnReport(const Observation& observation, bool decide) override;
  std::optional<double> MaxResource() const override;
  bool CountsReports() const override { return true; }

  const std::vector<int64_t>& bands() const { return bands_; }

 private:
  struct TrialState {
    double best = std::numeric_limits<double>::infinity();
    std::vector<double> at_band;  // score at each band reached
  };
  std::vector<int64_t> bands_;
  std::vector<OrderStatistics> recorded_;  // per band
  std::map<int64_t, TrialState> trials_;
  double eta_;
  bool strict_;
  bool maximize_;
  std::optional<int64_t> max_iter_;
};

}  // namespace sweepd::pruning
