#pragma once

// The search-method interface of DESIGN.md: Propose(history) -> params. One implementation per
// method (grid, random, Sobol, TPE, PBT's first generation). Implementations are not thread-safe:
// the scheduler's state-owner thread calls them.

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "sweepd/v1/resources.pb.h"
#include "sweepd/v1/spec.pb.h"

namespace sweepd {

// One trial's parameters, leaf names flattened with dots, in spec order.
using ParamSet = std::vector<v1::TrialParam>;

// What a search method may learn from one earlier trial.
struct TrialRecord {
  ParamSet params;
  v1::TrialState state = v1::TRIAL_STATE_QUEUED;
  // The sweep metric: final (or last reported) value, when any.
  std::optional<double> value;
  // Deepest step reached (pruned trials rank by it).
  int64_t last_step = 0;
  // Method pbt made it by copying another trial's checkpoint (not proposed).
  bool pbt_copy = false;
};

class SearchMethod {
 public:
  virtual ~SearchMethod() = default;

  // Proposes the next parameter set, given every trial of the sweep so far in proposal order
  // (including user-enqueued ones). OUT_OF_RANGE when the method has nothing left to propose
  // (grid exhausted). A method derives everything from `history` and its seed, so a scheduler
  // restarted from the store proposes what it would have proposed.
  virtual absl::StatusOr<ParamSet> Propose(absl::Span<const TrialRecord> history) = 0;

  // How many distinct parameter sets the method can propose, when finite (grid).
  virtual std::optional<int64_t> Size() const = 0;
};

// The method of `spec.method()` (`bayes` is TPE).
absl::StatusOr<std::unique_ptr<SearchMethod>> CreateSearchMethod(const v1::SweepSpec& spec);

// A stable text key of a parameter set, for "already proposed?" checks.
std::string ParamSetKey(const ParamSet& params);

}  // namespace sweepd
