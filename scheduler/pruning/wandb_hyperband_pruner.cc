#include "scheduler/pruning/wandb_hyperband_pruner.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace sweepd::pruning {

WandbHyperbandPruner::WandbHyperbandPruner(std::vector<int64_t> bands, double eta, bool strict,
                                           bool maximize)
    : bands_(std::move(bands)), eta_(eta), strict_(strict), maximize_(maximize) {
  std::sort(bands_.begin(), bands_.end());
  bands_.erase(std::unique(bands_.begin(), bands_.end()), bands_.end());
  recorded_.resize(bands_.size());
}

std::unique_ptr<WandbHyperbandPruner> WandbHyperbandPruner::FromSpec(const v1::EarlyTerminate& et,
                                                                     bool maximize) {
  std::vector<int64_t> bands;
  const double eta = et.eta() > 1 ? et.eta() : 3;
  if (et.has_max_iter() && et.has_s()) {
    double band = static_cast<double>(et.max_iter());
    for (int64_t i = 0; i < et.s(); ++i) {
      band /= eta;
      if (band < 1) break;
      bands.push_back(static_cast<int64_t>(band));
    }
  } else {
    double band = static_cast<double>(std::max<int64_t>(1, et.min_iter()));
    for (int i = 0; i < 100 && band < 1e12; ++i) {
      bands.push_back(static_cast<int64_t>(band));
      band *= eta;
    }
  }
  auto pruner =
      std::make_unique<WandbHyperbandPruner>(std::move(bands), eta, et.strict(), maximize);
  if (et.has_max_iter()) pruner->max_iter_ = et.max_iter();
  return pruner;
}

std::optional<double> WandbHyperbandPruner::MaxResource() const {
  if (max_iter_) return static_cast<double>(*max_iter_);
  return std::nullopt;
}

Decision WandbHyperbandPruner::OnReport(const Observation& o, bool decide) {
  // W&B keeps only finite numbers in a run's history; a NaN report neither counts nor decides.
  if (!std::isfinite(o.value)) return {};
  TrialState& t = trials_[o.trial];
  const double score = maximize_ ? -o.value : o.value;
  t.best = std::min(t.best, score);
  ++t.length;
  // This value is h[length-1]: what band `length` reads.
  const size_t reached = t.at_band.size();
  if (reached < bands_.size() && t.length == bands_[reached]) {
    recorded_[reached].Insert(score, o.trial);
    t.at_band.push_back(score);
  }
  if (!decide) return {};
  return Judge(o.trial);
}

void WandbHyperbandPruner::Rewind(int64_t trial, double /*resource*/, int64_t reports) {
  auto it = trials_.find(trial);
  if (it == trials_.end()) return;
  TrialState& t = it->second;
  // NaN reports are not in `length`, so the finite values kept are at most `reports`.
  t.length = std::min(t.length, std::max<int64_t>(0, reports));
  while (!t.at_band.empty() && bands_[t.at_band.size() - 1] > t.length) {
    recorded_[t.at_band.size() - 1].Erase(t.at_band.back(), trial);
    t.at_band.pop_back();
  }
}

Decision WandbHyperbandPruner::Judge(int64_t trial) const {
  auto it = trials_.find(trial);
  if (it == trials_.end() || it->second.at_band.empty()) return {};  // no band applies yet
  const TrialState& t = it->second;
  const size_t b = t.at_band.size() - 1;  // the closest band: the largest <= len(history)
  const OrderStatistics& band = recorded_[b];
  // sorted(band_values)[int(r * len(band_values))] with r = 1 / eta, as W&B computes it.
  const double r = 1.0 / eta_;
  const auto index =
      std::min(band.size() - 1, static_cast<size_t>(r * static_cast<double>(band.size())));
  const double threshold = band.Kth(index);
  const double mine = strict_ ? t.at_band[b] : t.best;
  if (!(mine > threshold)) return {};
  const double shown = maximize_ ? -mine : mine;
  const double shown_threshold = maximize_ ? -threshold : threshold;
  return Decision{.stop = true,
                  .reason = absl::StrCat("stopped by hyperband at band ", bands_[b], " (", t.length,
                                         " values): ", strict_ ? "value " : "best ",
                                         FormatNumber(shown), " worse than threshold ",
                                         FormatNumber(shown_threshold), " of ", band.size())};
}

}  // namespace sweepd::pruning
