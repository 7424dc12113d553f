#pragma once

// Population-based training (Jaderberg et al. 2017, "Population Based Training of Neural
// Networks"), asynchronous as Ray Tune's PopulationBasedTraining runs it: the first generation
// is random; whenever a member has trained `interval` more steps, it is ranked against the
// population's latest values, and one in the bottom quantile is replaced (exploit) by a copy of
// a top member's checkpoint whose hyperparameters are perturbed (explore). The engine owns the
// trials; this class holds the rule. Not thread-safe (the engine thread calls it).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "scheduler/search/random_search.h"
#include "scheduler/search/search_method.h"

namespace sweepd {

// One member of the population as the rule ranks it.
struct PbtMember {
  int64_t trial = 0;
  // The sweep metric's latest value on the smaller-is-better scale (pruning::Score).
  double score = 0;
  // Whether a copy can start from it now: running, with a recorded checkpoint.
  bool can_be_source = false;
};

class PopulationBasedTraining final : public SearchMethod {
 public:
  explicit PopulationBasedTraining(const v1::SweepSpec& spec);

  // The first generation: population_size random trials (RandomSearch's sequence over the
  // proposals, so copies made in between change nothing); then OUT_OF_RANGE, since exploiting
  // replaces members and never adds one.
  absl::StatusOr<ParamSet> Propose(absl::Span<const TrialRecord> history) override;
  std::optional<int64_t> Size() const override { return std::nullopt; }

  // Whether a member that started at step `origin` (a copy: its source's checkpoint step; the
  // first generation: 0) and reported last at `previous` has passed another interval boundary
  // at `step` (Ray's perturbation_interval, counted from the member's last decision).
  bool DecisionDue(int64_t origin, int64_t previous, int64_t step) const;

  // The exploit step for `trial` (one of `population`): when it is in the bottom quantile of the
  // members with a value, the member whose checkpoint it copies, drawn from the top quantile
  // (Ray's _quantiles: ceil(n * quantile) each, at most n / 2; none below two members). Draws
  // depend on `salt` only, so the same history makes the same choice.
  std::optional<int64_t> ExploitSource(int64_t trial, absl::Span<const PbtMember> population,
                                       uint64_t salt) const;

  // Ray's explore: each explored parameter of `source` is drawn afresh from its distribution
  // with resample_probability, else a continuous one is multiplied by one of perturb_factors
  // (kept in the distribution's range, quantised and rounded as it is) and a categorical one
  // moves to a neighbouring value. The other parameters are copied.
  ParamSet Explore(const ParamSet& source, uint64_t salt) const;

  // The parameters it explores, by flattened name.
  const std::vector<std::string>& explored() const { return explored_; }
  const v1::Pbt& settings() const { return spec_.pbt(); }

 private:
  std::string PerturbedValue(const v1::Parameter& leaf, const std::string& value_json,
                             uint64_t bits) const;

  const v1::SweepSpec spec_;  // owned: leaves_ point into it
  std::vector<const v1::Parameter*> leaves_;
  std::vector<std::string> explored_;
  RandomSearch first_generation_;
};

}  // namespace sweepd
