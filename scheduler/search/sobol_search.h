#pragma once

#include "scheduler/search/search_method.h"

namespace sweepd {

// A scrambled Sobol sequence (Boost.Random's direction numbers, Owen scrambling by hashing as
// in Burley 2020), one dimension per non-constant leaf, mapped through each leaf's inverse CDF.
// The n-th proposal is point n of the sequence, so it survives restarts. Not thread-safe.
class SobolSearch final : public SearchMethod {
 public:
  explicit SobolSearch(const v1::SweepSpec& spec);

  absl::StatusOr<ParamSet> Propose(absl::Span<const TrialRecord> history) override;
  std::optional<int64_t> Size() const override { return std::nullopt; }

  // Coordinates of point n in [0, 1)^d (d = leaves that are not constant).
  std::vector<double> Point(uint64_t n) const;

  // Boost's Sobol table covers this many dimensions.
  static constexpr size_t kMaxDimensions = 3667;

 private:
  const v1::SweepSpec spec_;  // owned: leaves_ point into it
  std::vector<const v1::Parameter*> leaves_;
  std::vector<size_t> dimension_of_leaf_;  // SIZE_MAX for constants
  size_t dimensions_ = 0;
  uint64_t seed_;
};

}  // namespace sweepd
