#pragma once

#include <map>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "scheduler/search/search_method.h"

namespace sweepd {

// The exact cartesian product of every leaf's grid values, in W&B's order (parameters sorted by
// name, the last varying fastest), each distinct point once. Points already in the history (e.g.
// enqueued by a user) are skipped. Not thread-safe.
class GridSearch final : public SearchMethod {
 public:
  explicit GridSearch(const v1::SweepSpec& spec);

  absl::StatusOr<ParamSet> Propose(absl::Span<const TrialRecord> history) override;
  std::optional<int64_t> Size() const override { return size_; }

 private:
  ParamSet PointAt(int64_t index) const;
  // A past trial's key, with keys its dict values have beyond every grid value's left out (W&B:
  // a run may add keys to a dict-valued config entry; it still matches its grid point).
  std::string HistoryKey(const ParamSet& params) const;

  const v1::SweepSpec spec_;  // owned: leaves_ point into it
  std::vector<const v1::Parameter*> leaves_;
  std::vector<int64_t> counts_;
  std::vector<std::vector<std::string>> values_;  // per listed leaf, its distinct values
  std::vector<size_t> order_;                     // leaf indices in W&B's enumeration order
  std::map<std::string, std::set<std::string>> known_keys_;  // dict leaves: their values' keys
  int64_t size_ = 0;
  int64_t cursor_ = 0;
  // Keys of every parameter set seen in the history so far, and how much of it was read.
  std::unordered_set<std::string> seen_;
  size_t history_read_ = 0;
};

}  // namespace sweepd
