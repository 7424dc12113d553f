#include "scheduler/search/pbt.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/param_space.h"
#include "scheduler/search/param_sampler.h"

namespace sweepd {
namespace {

// The i-th of a stream of independent draws for `salt`.
uint64_t Draw(uint64_t salt, uint64_t i) { return SplitMix64(salt ^ SplitMix64(i + 1)); }

}  // namespace

PopulationBasedTraining::PopulationBasedTraining(const v1::SweepSpec& spec)
    : spec_(spec), leaves_(LeafParameters(spec_)), first_generation_(spec_) {
  if (spec_.pbt().hyperparameters_size() > 0) {
    explored_.assign(spec_.pbt().hyperparameters().begin(), spec_.pbt().hyperparameters().end());
  } else {
    for (const v1::Parameter* leaf : leaves_) {
      if (PbtExploresByDefault(*leaf)) explored_.push_back(leaf->path());
    }
  }
}

absl::StatusOr<ParamSet> PopulationBasedTraining::Propose(absl::Span<const TrialRecord> history) {
  const auto proposed = static_cast<int64_t>(
      std::count_if(history.begin(), history.end(), [](const auto& r) { return !r.pbt_copy; }));
  if (proposed >= std::max(1, spec_.pbt().population_size())) {
    return absl::OutOfRangeError(absl::StrCat("population of ", spec_.pbt().population_size(),
                                              " trials started (PBT replaces members, it adds "
                                              "none)"));
  }
  return first_generation_.Sample(static_cast<uint64_t>(proposed));
}

bool PopulationBasedTraining::DecisionDue(int64_t origin, int64_t previous, int64_t step) const {
  const int64_t interval = std::max<int64_t>(1, spec_.pbt().interval());
  if (step <= previous || step - origin < interval) return false;
  // Boundaries origin + k * interval; due when the step reaches one the previous report had not.
  const int64_t before = previous <= origin ? 0 : (previous - origin) / interval;
  return (step - origin) / interval > before;
}

std::optional<int64_t> PopulationBasedTraining::ExploitSource(
    int64_t trial, absl::Span<const PbtMember> population, uint64_t salt) const {
  std::vector<PbtMember> ranked(population.begin(), population.end());
  if (ranked.size() <= 1) return std::nullopt;
  // Best first; ties by trial id, so the order does not depend on how the caller listed them.
  std::sort(ranked.begin(), ranked.end(), [](const PbtMember& a, const PbtMember& b) {
    return a.score != b.score ? a.score < b.score : a.trial < b.trial;
  });
  const size_t n = ranked.size();
  auto in_quantile =
      static_cast<size_t>(std::ceil(static_cast<double>(n) * spec_.pbt().quantile()));
  if (static_cast<double>(in_quantile) > static_cast<double>(n) / 2) in_quantile = n / 2;
  if (in_quantile == 0) return std::nullopt;
  bool bottom = false;
  for (size_t i = n - in_quantile; i < n; ++i) bottom |= ranked[i].trial == trial;
  if (!bottom) return std::nullopt;
  std::vector<int64_t> sources;
  for (size_t i = 0; i < in_quantile; ++i) {
    if (ranked[i].can_be_source && ranked[i].trial != trial) sources.push_back(ranked[i].trial);
  }
  if (sources.empty()) return std::nullopt;
  return sources[Draw(salt, 0) % sources.size()];
}

std::string PopulationBasedTraining::PerturbedValue(const v1::Parameter& leaf,
                                                    const std::string& value_json,
                                                    uint64_t bits) const {
  if (leaf.distribution() == v1::CATEGORICAL) {
    // A neighbouring value (Ray shifts the index by -1 or +1, clipped to the list).
    const auto canonical = CanonicalValueJson(value_json);
    int index = -1;
    for (int i = 0; i < leaf.values_json_size(); ++i) {
      if (CanonicalValueJson(leaf.values_json(i)) == canonical) index = i;
    }
    if (index < 0) return ValueAtQuantile(leaf, UnitInterval(bits));
    const int shifted =
        std::clamp(index + ((bits >> 63) != 0 ? 1 : -1), 0, leaf.values_json_size() - 1);
    return leaf.values_json(shifted);
  }
  const auto parsed = nlohmann::json::parse(value_json, nullptr, false);
  if (!parsed.is_number()) return ValueAtQuantile(leaf, UnitInterval(bits));
  const auto& factors = spec_.pbt().perturb_factors();
  const double factor = factors.empty() ? 1.0 : factors[static_cast<int>(bits % factors.size())];
  double x = parsed.get<double>() * factor;
  // Kept where the distribution can go: its quantiles 0 and 1 (the bounds of a uniform family;
  // 1e-12 and 1 - 1e-12 of a normal or beta one).
  const double lo = NumericValueAtQuantile(leaf, 0.0);
  const double hi = NumericValueAtQuantile(leaf, 1.0);
  if (std::isfinite(lo) && std::isfinite(hi)) x = std::clamp(x, std::min(lo, hi), std::max(lo, hi));
  if (IsQuantised(leaf.distribution())) x = QuantizeToStep(x, leaf.q());
  if (leaf.integer() || leaf.distribution() == v1::INT_UNIFORM) {
    return nlohmann::json(static_cast<int64_t>(std::llround(x))).dump();
  }
  return nlohmann::json(x).dump();
}

ParamSet PopulationBasedTraining::Explore(const ParamSet& source, uint64_t salt) const {
  std::map<std::string, const v1::Parameter*> by_path;
  for (const v1::Parameter* leaf : leaves_) by_path[leaf->path()] = leaf;
  ParamSet params = source;
  uint64_t draw = 0;
  for (auto& param : params) {
    if (std::find(explored_.begin(), explored_.end(), param.name()) == explored_.end()) continue;
    auto it = by_path.find(param.name());
    if (it == by_path.end()) continue;
    const v1::Parameter& leaf = *it->second;
    const double resample = UnitInterval(Draw(salt, draw++));
    const uint64_t bits = Draw(salt, draw++);
    param.set_value_json(resample < spec_.pbt().resample_probability()
                             ? ValueAtQuantile(leaf, UnitInterval(bits))
                             : PerturbedValue(leaf, param.value_json(), bits));
  }
  return params;
}

}  // namespace sweepd
