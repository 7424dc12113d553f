#pragma once

// Runs a spec's search method and pruner in virtual time, with no processes: N simulated
// workers, each trial's learning curve from a synthetic family or a CSV table. Answers "what
// would this pruning setting have cost and found?" before any GPU is spent (Syne Tune's
// simulator backend is the model). Not thread-safe; one simulation per object.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sweepd/v1/spec.pb.h"

namespace sweepd::scheduler {

// Where learning curves come from.
class CurveSource {
 public:
  virtual ~CurveSource() = default;
  // The metric at `step` (0-based) of a trial with these parameters (flattened name -> JSON).
  virtual double Value(const std::map<std::string, std::string>& params, int64_t step) const = 0;
  // Steps a full trial runs.
  virtual int64_t Steps() const = 0;
};

// Synthetic families, deterministic given the seed:
// - "rank-preserving": value = q + 1/(1 + t) with q from the parameters; the final ranking shows
//   from the first step (the case pruning is made for);
// - "noisy": the same with N(0, 0.05) noise per step;
// - "crossing": half the configurations start slow and end better (where pruning loses).
//   value = q - 0.5 + 3 / (1 + 0.1 t) for them.
// q is a smooth function of each parameter's position in its range, lowest near 30% of it.
absl::StatusOr<std::unique_ptr<CurveSource>> SyntheticCurves(const v1::SweepSpec& spec,
                                                             const std::string& family,
                                                             uint64_t seed, int64_t steps);

// A table: a header `param1,param2,...,step,value` and one row per (trial, step); a trial is a
// distinct parameter combination. Proposed parameters are matched to the nearest row's.
absl::StatusOr<std::unique_ptr<CurveSource>> CsvCurves(const std::string& text);

struct SimulationOptions {
  int workers = 4;
  int64_t max_trials = 100;  // run_cap / budget.max_trials win when set and smaller
  double seconds_per_step = 60;
  // No pruner; for method pbt, no exploit/explore either (its first generation only).
  bool disable_pruning = false;
};

struct SimulationResult {
  double gpu_hours = 0;
  double simulated_hours = 0;
  int64_t trials = 0;
  int64_t pruned = 0;
  // ASHA with promotion: times a paused trial was resumed.
  int64_t promotions = 0;
  // Method pbt: members replaced by a copy of a top member (counted in `pruned` too).
  int64_t pbt_copies = 0;
  double best_value = 0;  // best value any trial reported (by the goal)
  std::map<std::string, std::string> best_params;
  // (GPU-hours spent, best value so far) each time the best improved.
  std::vector<std::pair<double, double>> best_over_time;
};

absl::StatusOr<SimulationResult> Simulate(const v1::SweepSpec& spec, const CurveSource& curves,
                                          const SimulationOptions& options);

}  // namespace sweepd::scheduler
