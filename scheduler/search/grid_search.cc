#include "scheduler/search/grid_search.h"

#include "absl/strings/str_cat.h"
#include "common/param_space.h"

namespace sweepd {

GridSearch::GridSearch(const v1::SweepSpec& spec) : spec_(spec), leaves_(LeafParameters(spec_)) {
  size_ = GridSize(spec_);
  for (const auto* leaf : leaves_) counts_.push_back(GridValueCount(*leaf));
}

ParamSet GridSearch::PointAt(int64_t index) const {
  ParamSet params(leaves_.size());
  // Mixed-radix digits of index, the last leaf as the least significant digit.
  for (size_t i = leaves_.size(); i-- > 0;) {
    params[i].set_name(leaves_[i]->path());
    params[i].set_value_json(GridValue(*leaves_[i], index % counts_[i]));
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
    seen_.insert(ParamSetKey(history[history_read_].params));
  }
  while (cursor_ < size_) {
    ParamSet point = PointAt(cursor_++);
    if (!seen_.contains(ParamSetKey(point))) return point;
  }
  return absl::OutOfRangeError(absl::StrCat("grid exhausted: all ", size_, " points proposed"));
}

}  // namespace sweepd
