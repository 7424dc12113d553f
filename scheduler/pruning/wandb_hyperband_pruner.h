#pragma once

#include <map>
#include <vector>

#include "scheduler/pruning/order_statistics.h"
#include "scheduler/pruning/pruner.h"

namespace sweepd::pruning {

// W&B's `early_terminate: {type: hyperband}`, exactly as wandb/sweeps' hyperband_stopping.py
// computes it:
// - A trial's history is its finite values of the metric, in order (NaN and infinities are left
//   out, as `metric_history(filter_invalid=True)` does); negated when maximising.
// - Bands count values, not steps: from min_iter they are int(min_iter * eta^k); from max_iter
//   and s, int(max_iter / eta^k) for k = 1..s (stopping below 1).
// - The threshold of band b is sorted(h[b-1] of every trial with at least b values)
//   [int(n / eta)], over all trials, ended ones included.
// - A running trial is judged at its closest band: the largest band <= its history length. It
//   is stopped when its value there (strict, W&B's default) or the best of its whole history
//   (not strict) is above that band's threshold.
// W&B judges every running run on a timer; sweepd judges a trial at each of its reports, with
// the thresholds as they stand then (docs/sweep-spec.md says how that differs). Judge() gives
// the decision for a trial's current history without a new report. Not thread-safe.
class WandbHyperbandPruner final : public Pruner {
 public:
  WandbHyperbandPruner(std::vector<int64_t> bands, double eta, bool strict, bool maximize);
  static std::unique_ptr<WandbHyperbandPruner> FromSpec(const v1::EarlyTerminate& et,
                                                        bool maximize);

  Decision OnReport(const Observation& observation, bool decide) override;
  // Keeps the bands the first `reports` values reached. The best value (non-strict mode) stays
  // the best of everything recorded: the values past the checkpoint are not kept to subtract.
  void Rewind(int64_t trial, double resource, int64_t reports) override;
  // The decision W&B's stop_runs would make for the trial now, from what is recorded.
  Decision Judge(int64_t trial) const override;
  std::optional<double> MaxResource() const override;
  bool CountsReports() const override { return true; }

  const std::vector<int64_t>& bands() const { return bands_; }

 private:
  struct TrialState {
    int64_t length = 0;  // finite values so far: W&B's len(history)
    double best = std::numeric_limits<double>::infinity();
    std::vector<double> at_band;  // h[band-1] of each band reached, in band order
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
