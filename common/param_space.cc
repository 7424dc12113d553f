#include "common/param_space.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

namespace sweepd {
namespace {

void CollectLeaves(const google::protobuf::RepeatedPtrField<v1::Parameter>& params,
                   std::vector<const v1::Parameter*>* out) {
  for (const auto& p : params) {
    if (p.parameters_size() > 0) {
      CollectLeaves(p.parameters(), out);
    } else {
      out->push_back(&p);
    }
  }
}

}  // namespace

std::vector<const v1::Parameter*> LeafParameters(const v1::SweepSpec& spec) {
  std::vector<const v1::Parameter*> out;
  CollectLeaves(spec.parameters(), &out);
  return out;
}

// A count computed in doubles as an int64: 0 when negative or NaN (an empty or invalid range,
// reported by the parser), 9e18 at most (saturates, never overflows; found by fuzz_spec_parser).
namespace {
int64_t SaturatedCount(double count) {
  if (!(count > 0)) return 0;
  return static_cast<int64_t>(std::fmin(count, 9e18));
}
}  // namespace

int64_t GridValueCount(const v1::Parameter& leaf) {
  switch (leaf.distribution()) {
    case v1::CONSTANT:
    case v1::CATEGORICAL:
      return leaf.values_json_size();
    case v1::INT_UNIFORM:
      return SaturatedCount(leaf.max() - leaf.min() + 1);
    case v1::Q_UNIFORM:
      return SaturatedCount(std::round(leaf.max() / leaf.q()) - std::round(leaf.min() / leaf.q()) +
                            1);
    default:
      return 0;
  }
}

std::string GridValue(const v1::Parameter& leaf, int64_t index) {
  switch (leaf.distribution()) {
    case v1::CONSTANT:
    case v1::CATEGORICAL:
      return leaf.values_json(static_cast<int>(index));
    case v1::INT_UNIFORM:
      return std::to_string(static_cast<int64_t>(leaf.min()) + index);
    case v1::Q_UNIFORM: {
      const double k = static_cast<double>(std::llround(leaf.min() / leaf.q()) + index);
      const double v = QuantizeToStep(k * leaf.q(), leaf.q());
      if (leaf.integer()) return std::to_string(std::llround(v));
      return nlohmann::json(v).dump();
    }
    default:
      return "null";
  }
}

int64_t GridSize(const v1::SweepSpec& spec) {
  int64_t total = 1;
  for (const v1::Parameter* leaf : LeafParameters(spec)) {
    const int64_t n = GridValueCount(*leaf);
    if (n <= 0) return -1;
    if (n > kMaxGridPoints || total > (kMaxGridPoints + 1) / n) return kMaxGridPoints + 1;
    total *= n;
  }
  return std::min<int64_t>(total, kMaxGridPoints + 1);
}

double QuantizeToStep(double x, double q) {
  const double v = std::round(x / q) * q;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.15g", v);
  return std::strtod(buf, nullptr);
}

}  // namespace sweepd
