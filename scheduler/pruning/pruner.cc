#include "scheduler/pruning/pruner.h"

#include "scheduler/pruning/asha_pruner.h"
#include "scheduler/pruning/percentile_pruner.h"
#include "scheduler/pruning/wandb_hyperband_pruner.h"

namespace sweepd::pruning {

absl::StatusOr<std::unique_ptr<Pruner>> CreatePruner(const v1::SweepSpec& spec) {
  const bool maximize = spec.metric().goal() == v1::GOAL_MAXIMIZE;
  if (spec.has_early_terminate()) {
    return std::unique_ptr<Pruner>(
        WandbHyperbandPruner::FromSpec(spec.early_terminate(), maximize));
  }
  if (!spec.has_pruner()) return std::unique_ptr<Pruner>();
  const v1::Pruner& p = spec.pruner();
  switch (p.type()) {
    case v1::Pruner::NONE:
      return std::unique_ptr<Pruner>();
    case v1::Pruner::ASHA:
      return std::unique_ptr<Pruner>(std::make_unique<AshaPruner>(
          p.min_resource(), p.max_resource(), p.reduction_factor(), p.min_early_stopping_rate(),
          maximize, "asha", p.promotion()));
    case v1::Pruner::HYPERBAND:
      return std::unique_ptr<Pruner>(std::make_unique<HyperbandPruner>(
          p.min_resource(), p.max_resource(), p.reduction_factor(), p.brackets(), maximize,
          p.promotion()));
    case v1::Pruner::MEDIAN:
      return std::unique_ptr<Pruner>(
          std::make_unique<PercentilePruner>(50, p.n_startup_trials(), p.n_warmup_steps(),
                                             p.interval_steps(), p.n_min_trials(), maximize));
    case v1::Pruner::PERCENTILE:
      return std::unique_ptr<Pruner>(std::make_unique<PercentilePruner>(
          p.percentile(), p.n_startup_trials(), p.n_warmup_steps(), p.interval_steps(),
          p.n_min_trials(), maximize));
    case v1::Pruner::THRESHOLD:
      return std::unique_ptr<Pruner>(std::make_unique<ThresholdPruner>(
          p.has_lower() ? std::optional<double>(p.lower()) : std::nullopt,
          p.has_upper() ? std::optional<double>(p.upper()) : std::nullopt, p.n_warmup_steps(),
          p.interval_steps()));
    default:
      return absl::InvalidArgumentError("pruner.type: unsupported");
  }
}

}  // namespace sweepd::pruning
