#include "scheduler/search/param_sampler.h"

#include <algorithm>
#include <boost/math/distributions/normal.hpp>
#include <boost/math/special_functions/beta.hpp>
#include <cmath>
#include <nlohmann/json.hpp>

#include "common/param_space.h"

namespace sweepd {
namespace {

// Keeps u inside the open interval so unbounded laws give finite values.
double Interior(double u) { return std::clamp(u, 1e-12, 1.0 - 1e-12); }

double StandardNormalQuantile(double u) {
  static const boost::math::normal kStandard(0.0, 1.0);
  return boost::math::quantile(kStandard, Interior(u));
}

size_t CategoricalIndex(const v1::Parameter& leaf, double u) {
  const int n = leaf.values_json_size();
  if (leaf.probabilities_size() != n) {
    return std::min<size_t>(static_cast<size_t>(u * n), n - 1);
  }
  double cumulative = 0;
  for (int i = 0; i < n; ++i) {
    cumulative += leaf.probabilities(i);
    if (u < cumulative && leaf.probabilities(i) > 0) return i;
  }
  // Rounding left u past the last cumulative sum: take the last value with any probability.
  for (int i = n - 1; i >= 0; --i) {
    if (leaf.probabilities(i) > 0) return i;
  }
  return n - 1;
}

}  // namespace

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

double NumericValueAtQuantile(const v1::Parameter& leaf, double u) {
  const double lo = leaf.min(), hi = leaf.max();
  double x = 0;
  switch (leaf.distribution()) {
    case v1::CONSTANT:
      return 0;
    case v1::CATEGORICAL:
      return static_cast<double>(CategoricalIndex(leaf, u));
    case v1::INT_UNIFORM: {
      const double span = hi - lo + 1;
      return std::min(hi, lo + std::floor(u * span));
    }
    case v1::UNIFORM:
    case v1::Q_UNIFORM:
      x = lo + u * (hi - lo);
      break;
    case v1::LOG_UNIFORM:
    case v1::Q_LOG_UNIFORM:
      x = std::exp(lo + u * (hi - lo));
      break;
    case v1::LOG_UNIFORM_VALUES:
    case v1::Q_LOG_UNIFORM_VALUES:
    case v1::INV_LOG_UNIFORM_VALUES:
      // For the _values form of inv_log_uniform, 1/X log-uniform on [1/max, 1/min] is X
      // log-uniform on [min, max].
      x = std::exp(std::log(lo) + u * (std::log(hi) - std::log(lo)));
      break;
    case v1::INV_LOG_UNIFORM:
      // W&B: exp(-U(min, max)), increasing in u.
      x = std::exp(-(lo + (1.0 - u) * (hi - lo)));
      break;
    case v1::NORMAL:
    case v1::Q_NORMAL:
      x = leaf.mu() + leaf.sigma() * StandardNormalQuantile(u);
      break;
    case v1::LOG_NORMAL:
    case v1::Q_LOG_NORMAL:
      x = std::exp(leaf.mu() + leaf.sigma() * StandardNormalQuantile(u));
      break;
    case v1::BETA:
    case v1::Q_BETA:
      x = boost::math::ibeta_inv(leaf.a(), leaf.b(), Interior(u));
      break;
    default:
      return 0;
  }
  if (IsQuantised(leaf.distribution())) x = QuantizeToStep(x, leaf.q());
  return x;
}

std::string ValueAtQuantile(const v1::Parameter& leaf, double u) {
  switch (leaf.distribution()) {
    case v1::CONSTANT:
      return leaf.values_json(0);
    case v1::CATEGORICAL:
      return leaf.values_json(static_cast<int>(CategoricalIndex(leaf, u)));
    default:
      break;
  }
  const double x = NumericValueAtQuantile(leaf, u);
  if (leaf.integer()) return nlohmann::json(static_cast<int64_t>(std::llround(x))).dump();
  return nlohmann::json(x).dump();
}

}  // namespace sweepd
