#include "scheduler/search/sobol_search.h"

#include <boost/random/sobol.hpp>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/param_space.h"
#include "scheduler/search/param_sampler.h"

namespace sweepd {
namespace {

uint32_t ReverseBits(uint32_t x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
  x = ((x >> 8) & 0x00FF00FFu) | ((x & 0x00FF00FFu) << 8);
  return (x >> 16) | (x << 16);
}

// Laine-Karras hash: a permutation in which each bit depends only on lower bits, so applied to
// bit-reversed coordinates it is a nested uniform (Owen) scramble that keeps the net's
// stratification (Burley, "Practical Hash-based Owen Scrambling", JCGT 2020).
uint32_t LaineKarrasPermutation(uint32_t x, uint32_t seed) {
  x += seed;
  x ^= x * 0x6c50b47cu;
  x ^= x * 0xb82f1e52u;
  x ^= x * 0xc7afe638u;
  x ^= x * 0x8d22f6e6u;
  return x;
}

uint32_t OwenScramble(uint32_t x, uint32_t seed) {
  return ReverseBits(LaineKarrasPermutation(ReverseBits(x), seed));
}

}  // namespace

SobolSearch::SobolSearch(const v1::SweepSpec& spec)
    : spec_(spec), leaves_(LeafParameters(spec_)), seed_(spec.seed()) {
  for (const auto* leaf : leaves_) {
    if (leaf->distribution() == v1::CONSTANT) {
      dimension_of_leaf_.push_back(SIZE_MAX);
    } else {
      dimension_of_leaf_.push_back(dimensions_++);
    }
  }
}

std::vector<double> SobolSearch::Point(uint64_t n) const {
  std::vector<double> point(dimensions_);
  if (dimensions_ == 0) return point;
  // Boost's engine starts at the sequence's second point (it skips the origin); the nets that
  // give Sobol its evenness are points 0 .. 2^k - 1, so point 0 is the origin and point n comes
  // from Boost's position n - 1.
  boost::random::sobol_engine<uint32_t, 32> engine(dimensions_);
  if (n > 0) engine.seed(n - 1);
  for (size_t d = 0; d < dimensions_; ++d) {
    const auto seed = static_cast<uint32_t>(SplitMix64(seed_ * 0x100000001B3ull + d));
    const uint32_t raw = n == 0 ? 0u : static_cast<uint32_t>(engine());
    const uint32_t scrambled = OwenScramble(raw, seed);
    point[d] = (static_cast<double>(scrambled) + 0.5) * 0x1.0p-32;
  }
  return point;
}

absl::StatusOr<ParamSet> SobolSearch::Propose(absl::Span<const TrialRecord> history) {
  if (dimensions_ > kMaxDimensions) {
    return absl::InvalidArgumentError(absl::StrCat("sobol supports at most ", kMaxDimensions,
                                                   " parameters; the spec has ", dimensions_));
  }
  const std::vector<double> point = Point(history.size());
  ParamSet params(leaves_.size());
  for (size_t i = 0; i < leaves_.size(); ++i) {
    params[i].set_name(leaves_[i]->path());
    const size_t d = dimension_of_leaf_[i];
    params[i].set_value_json(ValueAtQuantile(*leaves_[i], d == SIZE_MAX ? 0.0 : point[d]));
  }
  return params;
}

}  // namespace sweepd
