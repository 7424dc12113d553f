#pragma once

#include "scheduler/search/search_method.h"

namespace sweepd {

// Independent draws from every leaf's distribution. The n-th proposal depends only on the seed
// and n (the history's length), so a restarted scheduler continues the same sequence.
// Not thread-safe (stateless in fact, but owned by one thread like every method).
class RandomSearch final : public SearchMethod {
 public:
  explicit RandomSearch(const v1::SweepSpec& spec);

  absl::StatusOr<ParamSet> Propose(absl::Span<const TrialRecord> history) override;
  std::optional<int64_t> Size() const override { return std::nullopt; }

  // The n-th proposal of this seed.
  ParamSet Sample(uint64_t n) const;

 private:
  const v1::SweepSpec spec_;  // owned: leaves_ point into it
  std::vector<const v1::Parameter*> leaves_;
  uint64_t seed_;
};

}  // namespace sweepd
