#include "scheduler/pruning/asha_pruner.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "scheduler/search/param_sampler.h"

namespace sweepd::pruning {

std::string FormatNumber(double value) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", value);
  return buf;
}

AshaPruner::AshaPruner(double min_resource, double max_resource, double eta,
                       int min_early_stopping_rate, bool maximize, std::string label,
                       bool promotion)
    : max_resource_(max_resource),
      eta_(eta),
      maximize_(maximize),
      label_(std::move(label)),
      promotion_(promotion) {
  for (int k = 0; k < 64; ++k) {
    const double rung = min_resource * std::pow(eta, k + min_early_stopping_rate);
    if (max_resource > 0 && rung >= max_resource) break;
    rungs_.push_back(rung);
  }
  recorded_.resize(rungs_.size());
}

std::optional<double> AshaPruner::MaxResource() const {
  if (max_resource_ > 0) return max_resource_;
  return std::nullopt;
}

Decision AshaPruner::OnReport(const Observation& o, bool decide) {
  std::vector<double>& mine = trial_scores_[o.trial];
  const double score = Score(o.value, maximize_);
  if (promotion_ && !mine.empty()) {
    auto promoted = promotions_.find(o.trial);
    if (promoted == promotions_.end() || promoted->second < mine.size()) {
      return {};  // paused at its last rung (a report it sent before the pause reached it)
    }
  }
  while (mine.size() < rungs_.size() && o.resource >= rungs_[mine.size()]) {
    const size_t rung_index = mine.size();
    OrderStatistics& rung = recorded_[rung_index];
    rung.Insert(score, o.trial);
    mine.push_back(score);
    if (promotion_) {
      // ASHA proper: the trial stops at the rung it reached and waits to be promoted; a report
      // that jumps several rungs records only the first (it has not been promoted past it).
      if (!decide) return {};
      if (std::isnan(o.value)) {
        return Decision{
            .stop = true,
            .reason = absl::StrCat("pruned by ", label_, " at rung ", rung_index, " (step ",
                                   FormatNumber(o.resource), "): the value is NaN")};
      }
      return Decision{.pause = true,
                      .reason = absl::StrCat("paused by ", label_, " at rung ", rung_index,
                                             " (step ", FormatNumber(o.resource),
                                             ") until promoted: ", FormatNumber(o.value))};
    }
    if (!decide) continue;
    if (std::isnan(o.value)) {  // as Optuna: a NaN at a rung is pruned at once
      return Decision{
          .stop = true,
          .reason = absl::StrCat("pruned by ", label_, " at rung ", rung_index, " (step ",
                                 FormatNumber(o.resource), "): the value is NaN")};
    }
    // Within the top 1/eta of the values recorded at this rung (the best one always passes).
    const size_t n = rung.size();
    const auto top = static_cast<size_t>(std::floor(static_cast<double>(n) / eta_));
    const double threshold = rung.Kth(top == 0 ? 0 : top - 1);
    if (score > threshold) {
      return Decision{
          .stop = true,
          .reason = absl::StrCat("pruned by ", label_, " at rung ", rung_index, " (step ",
                                 FormatNumber(o.resource), "): ", FormatNumber(o.value),
                                 " not in top 1/", FormatNumber(eta_), " of ", n)};
    }
  }
  return {};
}

std::optional<std::pair<size_t, int64_t>> AshaPruner::Promotable(
    const std::function<bool(int64_t)>& waiting) const {
  for (size_t k = rungs_.size(); k-- > 0;) {
    const OrderStatistics& rung = recorded_[k];
    const auto top = static_cast<size_t>(std::floor(static_cast<double>(rung.size()) / eta_));
    for (size_t i = 0; i < top; ++i) {
      const auto [score, trial] = rung.KthEntry(i);
      if (std::isinf(score) && score > 0) break;  // NaN or the worst value: never promoted
      auto it = trial_scores_.find(trial);
      // Waiting at this rung: paused, and rung k is the last it recorded.
      if (it != trial_scores_.end() && it->second.size() == k + 1 && waiting(trial)) {
        return std::pair{k, trial};
      }
    }
  }
  return std::nullopt;
}

std::optional<int64_t> AshaPruner::NextPromotion(
    const std::function<bool(int64_t)>& waiting) const {
  if (auto found = Promotable(waiting)) return found->second;
  return std::nullopt;
}

int AshaPruner::RungOf(int64_t trial) const {
  auto it = trial_scores_.find(trial);
  return it == trial_scores_.end() ? -1 : static_cast<int>(it->second.size()) - 1;
}

void AshaPruner::Rewind(int64_t trial, double resource, int64_t /*reports*/) {
  auto it = trial_scores_.find(trial);
  if (it == trial_scores_.end()) return;
  std::vector<double>& mine = it->second;
  while (!mine.empty() && rungs_[mine.size() - 1] > resource) {
    recorded_[mine.size() - 1].Erase(mine.back(), trial);
    mine.pop_back();
  }
}

HyperbandPruner::HyperbandPruner(double min_resource, double max_resource, double eta, int brackets,
                                 bool maximize, bool promotion)
    : max_resource_(max_resource), promotion_(promotion) {
  const int all = std::max(
      1,
      static_cast<int>(std::floor(std::log(max_resource / min_resource) / std::log(eta) + 1e-9)) +
          1);
  const int n = brackets > 0 ? std::min(brackets, all) : all;
  int64_t total = 0;
  for (int b = 0; b < n; ++b) {
    brackets_.push_back(std::make_unique<AshaPruner>(min_resource, max_resource, eta, b, maximize,
                                                     absl::StrCat("hyperband bracket ", b),
                                                     promotion));
    const int s = n - 1 - b;
    total += static_cast<int64_t>(std::ceil(n * std::pow(eta, s) / (s + 1)));
    cumulative_budget_.push_back(total);
  }
}

size_t HyperbandPruner::BracketOf(int64_t trial) const {
  const auto draw = static_cast<int64_t>(SplitMix64(static_cast<uint64_t>(trial)) %
                                         static_cast<uint64_t>(cumulative_budget_.back()));
  for (size_t b = 0; b < cumulative_budget_.size(); ++b) {
    if (draw < cumulative_budget_[b]) return b;
  }
  return cumulative_budget_.size() - 1;
}

Decision HyperbandPruner::OnReport(const Observation& o, bool decide) {
  return brackets_[BracketOf(o.trial)]->OnReport(o, decide);
}

void HyperbandPruner::Rewind(int64_t trial, double resource, int64_t reports) {
  brackets_[BracketOf(trial)]->Rewind(trial, resource, reports);
}

std::optional<int64_t> HyperbandPruner::NextPromotion(
    const std::function<bool(int64_t)>& waiting) const {
  std::optional<std::pair<double, int64_t>> best;  // (rung's resource, trial)
  for (const auto& bracket : brackets_) {
    if (auto found = bracket->Promotable(waiting)) {
      const double resource = bracket->rungs()[found->first];
      if (!best || resource > best->first) best = std::pair{resource, found->second};
    }
  }
  if (best) return best->second;
  return std::nullopt;
}

int HyperbandPruner::RungOf(int64_t trial) const {
  return brackets_[BracketOf(trial)]->RungOf(trial);
}

}  // namespace sweepd::pruning
