#pragma once

// The pruning interface of DESIGN.md: OnReport(trial, step, value) -> continue | stop. One
// implementation per rule: ASHA, Hyperband (several ASHA brackets), W&B's Hyperband
// early_terminate, median/percentile, threshold. Every decision costs O(log n) in the number of
// trials. Implementations are not thread-safe: the scheduler's state-owner thread calls them.

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "sweepd/v1/resources.pb.h"
#include "sweepd/v1/spec.pb.h"

namespace sweepd::pruning {

struct Decision {
  bool stop = false;
  // Promotion mode: the trial reached a rung; it waits there (paused, checkpointed) until
  // NextPromotion picks it.
  bool pause = false;
  std::string reason;  // "pruned at rung 2 (step 27): 0.412 not in top 1/3 of 27"
};

// One report of the sweep metric, as a pruner sees it.
struct Observation {
  int64_t trial = 0;
  // 0-based count of the trial's reports of the metric (W&B's "iterations").
  int64_t index = 0;
  // The resource axis: the report's step, or the value of the pruner's resource metric.
  double resource = 0;
  // The metric as reported (NaN allowed).
  double value = 0;
};

class Pruner {
 public:
  virtual ~Pruner() = default;

  // Records a report and decides whether the trial should stop. With decide == false it only
  // records (rebuilding state from the store after a restart): the recorded state is the same
  // either way, so later decisions are the same as they would have been.
  virtual Decision OnReport(const Observation& observation, bool decide) = 0;

  // The decision for the trial's history as recorded, without a new report (W&B's hyperband
  // judged on a timer); rules that decide only at reports continue.
  virtual Decision Judge(int64_t /*trial*/) const { return {}; }

  // A retry of the trial resumes from its checkpoint at `resource` (the resource axis), having
  // kept `reports` of its reports of the metric: what the rule recorded for it past that point
  // is forgotten, so the retry's reports there are recorded and judged afresh (and a sweepd
  // rebuilt from the store, which holds only the kept reports, records the same). A retry
  // without a checkpoint rewinds to resource -inf, reports 0.
  virtual void Rewind(int64_t /*trial*/, double /*resource*/, int64_t /*reports*/) {}

  // The trial ended in `state` (median and percentile learn from completed trials).
  virtual void OnTrialEnd(int64_t /*trial*/, v1::TrialState /*state*/) {}

  // The resource a trial that is never stopped reaches, when the rule knows it: the basis of
  // "GPU time saved by pruning".
  virtual std::optional<double> MaxResource() const { return std::nullopt; }

  // Whether the resource axis is the count of reports (W&B's iterations) rather than `resource`.
  virtual bool CountsReports() const { return false; }

  // Promotion mode (ASHA's own algorithm, Li et al. 2020, Algorithm 2): trials pause at every
  // rung, and when a worker is free the scheduler resumes the trial this names before it starts
  // a new one: from the highest rung down, a trial `waiting` (paused) at rung k whose value is
  // within the top floor(n_k / eta) of the n_k recorded there. None: start a new trial.
  virtual bool Promotes() const { return false; }
  virtual std::optional<int64_t> NextPromotion(
      const std::function<bool(int64_t)>& /*waiting*/) const {
    return std::nullopt;
  }
  // The rung (0-based) a trial recorded last, or -1: names where a paused trial waits.
  virtual int RungOf(int64_t /*trial*/) const { return -1; }
  // The trial was promoted past the rung it reached (resumed, or let go on at once): it may
  // record at the next rung. Until then, reports it makes after pausing (those it sent before
  // the pause reached it) are not recorded at later rungs. A rebuilt sweepd calls it as many
  // times as the trial's stored promotions before replaying its reports.
  virtual void Promoted(int64_t /*trial*/) {}
};

// The spec's pruner (`pruner:` or W&B's `early_terminate:`), or nullptr when there is none.
absl::StatusOr<std::unique_ptr<Pruner>> CreatePruner(const v1::SweepSpec& spec);

// A value on the "smaller is better" scale: negated when maximising; NaN and the wrong infinity
// become +inf, the worst value.
inline double Score(double value, bool maximize) {
  if (std::isnan(value)) return std::numeric_limits<double>::infinity();
  return maximize ? -value : value;
}

// A number for reasons: 6 significant digits.
std::string FormatNumber(double value);

}  // namespace sweepd::pruning
