#include "scheduler/search/grid_search.h"

#include <algorithm>
#include <iterator>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/param_space.h"

namespace sweepd {

GridSearch::GridSearch(const v1::SweepSpec& spec) : spec_(spec), leaves_(LeafParameters(spec_)) {
  size_ = GridSize(spec_);
  for (const auto* leaf : leaves_) {
    counts_.push_back(GridValueCount(*leaf));
    // Listed values are deduplicated once here; numeric ranges are computed per point (an
    // int_uniform may have millions).
    std::vector<std::string> values;
    if (leaf->distribution() == v1::CONSTANT || leaf->distribution() == v1::CATEGORICAL) {
      values = DistinctValues(*leaf);
      for (const std::string& text : values) {
        auto value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
        if (!value.is_object()) continue;
        for (const auto& [key, item] : value.items()) known_keys_[leaf->path()].insert(key);
      }
    }
    values_.push_back(std::move(values));
  }
  // W&B's order (grid_search.py over HyperParameterSet): parameters sorted by name at each
  // level, the first varying slowest. Trials still list them in spec order.
  const auto keys = LeafConfigKeys(spec_);
  for (size_t i = 0; i < leaves_.size(); ++i) order_.push_back(i);
  std::stable_sort(order_.begin(), order_.end(), [&](size_t a, size_t b) {
    return keys.at(leaves_[a]->path()) < keys.at(leaves_[b]->path());
  });
}

std::string GridSearch::HistoryKey(const ParamSet& params) const {
  ParamSet stripped = params;
  for (auto& p : stripped) {
    auto known = known_keys_.find(p.name());
    if (known == known_keys_.end()) continue;
    auto value = nlohmann::json::parse(p.value_json(), nullptr, /*allow_exceptions=*/false);
    if (!value.is_object()) continue;
    for (auto it = value.begin(); it != value.end();) {
      it = known->second.contains(it.key()) ? std::next(it) : value.erase(it);
    }
    p.set_value_json(value.dump());
  }
  return ParamSetKey(stripped);
}

ParamSet GridSearch::PointAt(int64_t index) const {
  ParamSet params(leaves_.size());
  // Mixed-radix digits of index, the last leaf in W&B's order as the least significant digit.
  for (size_t k = order_.size(); k-- > 0;) {
    const size_t i = order_[k];
    params[i].set_name(leaves_[i]->path());
    const int64_t digit = index % counts_[i];
    params[i].set_value_json(values_[i].empty() ? GridValue(*leaves_[i], digit)
                                                : values_[i][static_cast<size_t>(digit)]);
    index /= counts_[i];
  }
  return params;
}

absl::StatusOr<ParamSet> GridSearch::Propose(absl::Span<const TrialRecord> history) {
  if (history.size() < history_read_) {  // a different history: start over
    seen_.clear();
    history_read_ = 0;
    cursor_ = 0;
  }
  for (; history_read_ < history.size(); ++history_read_) {
    seen_.insert(HistoryKey(history[history_read_].params));
  }
  while (cursor_ < size_) {
    ParamSet point = PointAt(cursor_++);
    if (!seen_.contains(ParamSetKey(point))) return point;
  }
  return absl::OutOfRangeError(absl::StrCat("grid exhausted: all ", size_, " points proposed"));
}

}  // namespace sweepd
