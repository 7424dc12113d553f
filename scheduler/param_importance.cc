#include "scheduler/param_importance.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

namespace sweepd::scheduler {
namespace {

// A parameter's value as a number when it is one (booleans and strings are categories).
std::optional<double> NumberOf(const std::string& value_json) {
  auto value = nlohmann::json::parse(value_json, nullptr, false);
  if (value.is_number()) return value.get<double>();
  return std::nullopt;
}

}  // namespace

ImportanceResult EstimateImportance(const std::vector<v1::Trial>& trials,
                                    const std::vector<double>& objective, int bins) {
  ImportanceResult result;
  result.method =
      "first-order functional ANOVA (main effects, as fANOVA), estimated by the correlation "
      "ratio over equal-count bins; O(P n log n)";
  // The trials with a finite objective, and every parameter name in first-seen order.
  std::vector<size_t> used;
  std::vector<std::string> names;
  for (size_t i = 0; i < trials.size() && i < objective.size(); ++i) {
    if (!std::isfinite(objective[i])) continue;
    used.push_back(i);
    for (const auto& p : trials[i].params()) {
      if (std::find(names.begin(), names.end(), p.name()) == names.end()) names.push_back(p.name());
    }
  }
  result.trials = static_cast<int64_t>(used.size());
  if (used.size() < 2) return result;
  double mean = 0;
  for (size_t i : used) mean += objective[i];
  mean /= static_cast<double>(used.size());
  double total = 0;
  for (size_t i : used) total += (objective[i] - mean) * (objective[i] - mean);

  const int bin_count =
      bins > 0 ? bins
               : std::clamp(static_cast<int>(std::sqrt(static_cast<double>(used.size()))), 2, 20);
  for (const std::string& name : names) {
    // Group key per trial: a bin index for numbers, the JSON text for anything else. A trial
    // without the parameter (a conditional one) is its own group.
    std::vector<std::pair<double, size_t>> numeric;  // value, trial
    std::map<std::string, std::vector<size_t>> groups;
    for (size_t i : used) {
      const v1::TrialParam* param = nullptr;
      for (const auto& p : trials[i].params()) {
        if (p.name() == name) param = &p;
      }
      if (param == nullptr) {
        groups["(unset)"].push_back(i);
      } else if (auto number = NumberOf(param->value_json())) {
        numeric.emplace_back(*number, i);
      } else {
        groups[param->value_json()].push_back(i);
      }
    }
    std::sort(numeric.begin(), numeric.end());
    // Equal-count bins that never split equal values (a grid's repeated values stay together).
    const size_t per_bin = std::max<size_t>(
        1, (numeric.size() + static_cast<size_t>(bin_count) - 1) / static_cast<size_t>(bin_count));
    for (size_t start = 0, bin = 0; start < numeric.size(); ++bin) {
      size_t end = std::min(numeric.size(), start + per_bin);
      while (end < numeric.size() && numeric[end].first == numeric[end - 1].first) ++end;
      auto& group = groups["\x01" + std::to_string(bin)];
      for (size_t k = start; k < end; ++k) group.push_back(numeric[k].second);
      start = end;
    }
    double between = 0;
    for (const auto& [key, members] : groups) {
      double group_mean = 0;
      for (size_t i : members) group_mean += objective[i];
      group_mean /= static_cast<double>(members.size());
      between += static_cast<double>(members.size()) * (group_mean - mean) * (group_mean - mean);
    }
    result.params.push_back({.name = name,
                             .explained = total > 0 ? std::clamp(between / total, 0.0, 1.0) : 0,
                             .groups = static_cast<int64_t>(groups.size())});
  }
  double sum = 0;
  for (const auto& p : result.params) sum += p.explained;
  for (auto& p : result.params) p.importance = sum > 0 ? p.explained / sum : 0;
  std::stable_sort(result.params.begin(), result.params.end(),
                   [](const auto& a, const auto& b) { return a.explained > b.explained; });
  return result;
}

}  // namespace sweepd::scheduler
