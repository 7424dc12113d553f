#pragma once

// Tree-structured Parzen estimator (Bergstra et al. 2011; Watanabe 2023, "Tree-structured
// Parzen Estimator: Understanding Its Algorithm Components"), after Optuna's TPESampler:
// random proposals for the first n_startup_trials, then the history split at
// gamma(n) = min(ceil(0.1 n), 25) into good and bad trials, a Parzen estimator for each (truncated
// Gaussian kernels for numbers, on the log scale for log laws; categorical kernels for lists),
// with a prior component, Optuna's bandwidth rules and magic clip, and the candidate among
// n_ei_candidates draws from the good estimator that maximises l(x)/g(x).
//
// Multivariate by default: one joint kernel per observation (a candidate takes every parameter
// from the same component), with Scott-style widths bandwidth_factor * range * n^(-1/(d+4)),
// half Optuna's by default (see docs/sweep-spec.md). Completed trials rank by value; pruned ones
// after them, deeper first, then by value at their last step (Optuna's ranking). Trials still
// running count as bad with the worst value (a constant liar), so parallel proposals spread out.
// Not thread-safe.

#include <cstdint>
#include <random>
#include <vector>

#include "scheduler/search/random_search.h"
#include "scheduler/search/search_method.h"

namespace sweepd {

class TpeSearch final : public SearchMethod {
 public:
  explicit TpeSearch(const v1::SweepSpec& spec);

  absl::StatusOr<ParamSet> Propose(absl::Span<const TrialRecord> history) override;
  std::optional<int64_t> Size() const override { return std::nullopt; }

  // The estimator's settings (spec `search:`).
  struct Options {
    bool multivariate = true;
    double gamma = 0.1;
    double prior_weight = 1.0;
    double bandwidth_factor = 0.1;  // multivariate kernel width, in ranges (Optuna: 0.2)
    double clip_exponent = 1.5;     // multivariate minimum width exponent (Optuna: 1)
  };

  // One dimension of the search space, in the space the estimator works in.
  struct Dimension {
    const v1::Parameter* leaf = nullptr;
    bool categorical = false;
    int choices = 0;           // categorical
    double low = 0, high = 0;  // numeric, internal scale (log for log laws)
    bool log = false;
    double step = 0;  // > 0: values lie on a grid of this step (int, q_*)
  };

 private:
  // A history entry turned into internal coordinates; nullopt when a value is off the space.
  std::optional<std::vector<double>> Encode(const ParamSet& params) const;
  ParamSet Decode(const std::vector<double>& x) const;

  const v1::SweepSpec spec_;
  std::vector<const v1::Parameter*> leaves_;
  std::vector<Dimension> dims_;   // non-constant leaves
  std::vector<int> dim_of_leaf_;  // -1 for constants
  RandomSearch random_;
  bool maximize_;
  int n_startup_;
  int n_candidates_;
  Options options_;
  uint64_t seed_;
};

}  // namespace sweepd
