#include "common/param_space.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>

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

namespace {

nlohmann::json Canonical(const nlohmann::json& v) {
  if (v.is_number_float()) {
    const double x = v.get<double>();
    if (std::isfinite(x) && x == std::floor(x) && std::fabs(x) < 9e15) {
      return static_cast<int64_t>(x);
    }
    return v;
  }
  if (v.is_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& item : v) out.push_back(Canonical(item));
    return out;
  }
  if (v.is_object()) {
    nlohmann::json out = nlohmann::json::object();  // std::map: keys sorted
    for (const auto& [key, item] : v.items()) out[key] = Canonical(item);
    return out;
  }
  return v;
}

// The categorical values grid search enumerates: the first of each set of equal ones.
std::vector<int> DistinctValueIndices(const v1::Parameter& leaf) {
  std::vector<int> indices;
  std::set<std::string> seen;
  for (int i = 0; i < leaf.values_json_size(); ++i) {
    if (seen.insert(CanonicalValueJson(leaf.values_json(i))).second) indices.push_back(i);
  }
  return indices;
}

}  // namespace

std::vector<std::string> DistinctValues(const v1::Parameter& leaf) {
  std::vector<std::string> values;
  for (int i : DistinctValueIndices(leaf)) values.push_back(leaf.values_json(i));
  return values;
}

std::string CanonicalValueJson(const std::string& value_json) {
  const auto v = nlohmann::json::parse(value_json, nullptr, /*allow_exceptions=*/false);
  if (v.is_discarded()) return value_json;
  return Canonical(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

int64_t GridValueCount(const v1::Parameter& leaf) {
  switch (leaf.distribution()) {
    case v1::CONSTANT:
    case v1::CATEGORICAL:
      return static_cast<int64_t>(DistinctValueIndices(leaf).size());
    case v1::INT_UNIFORM:
      return SaturatedCount(leaf.max() - leaf.min() + 1);
    case v1::Q_UNIFORM:
      // numpy.arange(min, max, q): ceil((max - min) / q) values.
      return SaturatedCount(std::ceil((leaf.max() - leaf.min()) / leaf.q()));
    default:
      return 0;
  }
}

std::string GridValue(const v1::Parameter& leaf, int64_t index) {
  switch (leaf.distribution()) {
    case v1::CONSTANT:
    case v1::CATEGORICAL:
      return leaf.values_json(DistinctValueIndices(leaf).at(static_cast<size_t>(index)));
    case v1::INT_UNIFORM:
      return std::to_string(static_cast<int64_t>(leaf.min()) + index);
    case v1::Q_UNIFORM: {
      // As numpy's arange fills them (DOUBLE_fill): start, start + step, then
      // start + k * delta with delta = (start + step) - start, in doubles.
      const double start = leaf.min();
      const double delta = (start + leaf.q()) - start;
      const double v = index == 0   ? start
                       : index == 1 ? start + leaf.q()
                                    : start + static_cast<double>(index) * delta;
      if (leaf.integer()) return std::to_string(std::llround(v));
      return nlohmann::json(v).dump();
    }
    default:
      return "null";
  }
}

namespace {

void CollectConfigKeys(const google::protobuf::RepeatedPtrField<v1::Parameter>& params,
                       std::vector<std::string>* prefix,
                       std::map<std::string, std::vector<std::string>>* out) {
  for (const v1::Parameter& p : params) {
    prefix->push_back(p.name());
    if (p.parameters_size() > 0) {
      CollectConfigKeys(p.parameters(), prefix, out);
    } else {
      (*out)[p.path()] = *prefix;
    }
    prefix->pop_back();
  }
}

}  // namespace

std::map<std::string, std::vector<std::string>> LeafConfigKeys(const v1::SweepSpec& spec) {
  std::map<std::string, std::vector<std::string>> out;
  std::vector<std::string> prefix;
  CollectConfigKeys(spec.parameters(), &prefix, &out);
  return out;
}

void SetConfigKeys(const v1::SweepSpec& spec, std::vector<v1::TrialParam>* params) {
  const auto keys = LeafConfigKeys(spec);
  for (v1::TrialParam& p : *params) {
    p.clear_keys();
    auto it = keys.find(p.name());
    if (it == keys.end()) continue;
    for (const std::string& k : it->second) p.add_keys(k);
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

bool IsQuantised(v1::Distribution d) {
  return d == v1::Q_UNIFORM || d == v1::Q_LOG_UNIFORM || d == v1::Q_LOG_UNIFORM_VALUES ||
         d == v1::Q_NORMAL || d == v1::Q_LOG_NORMAL || d == v1::Q_BETA;
}

bool PbtExploresByDefault(const v1::Parameter& leaf) {
  return leaf.distribution() != v1::DISTRIBUTION_UNSPECIFIED &&
         leaf.distribution() != v1::CONSTANT && leaf.distribution() != v1::CATEGORICAL &&
         !leaf.integer();
}

}  // namespace sweepd
