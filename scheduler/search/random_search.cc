#include "scheduler/search/random_search.h"

#include "common/param_space.h"
#include "scheduler/search/param_sampler.h"

namespace sweepd {

RandomSearch::RandomSearch(const v1::SweepSpec& spec)
    : spec_(spec), leaves_(LeafParameters(spec_)), seed_(spec.seed()) {}

ParamSet RandomSearch::Sample(uint64_t n) const {
  ParamSet params(leaves_.size());
  const uint64_t stream = SplitMix64(seed_ ^ SplitMix64(n));
  for (size_t i = 0; i < leaves_.size(); ++i) {
    const double u = UnitInterval(SplitMix64(stream + i * 0x9E3779B97F4A7C15ull));
    params[i].set_name(leaves_[i]->path());
    params[i].set_value_json(ValueAtQuantile(*leaves_[i], u));
  }
  return params;
}

absl::StatusOr<ParamSet> RandomSearch::Propose(absl::Span<const TrialRecord> history) {
  return Sample(history.size());
}

}  // namespace sweepd
