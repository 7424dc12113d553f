// Pruning benchmark: decisions/s and per-decision latency p50/p99 for each pruner at 100, 10k
// and 100k trials x 100 steps, and the ratio of 100k to 100 (a decision must not grow with the
// history). Trials run 64 at a time, as on 64 workers. Prints figures; it is not a test.
//
// Usage: pruning_bench [--sizes 100,10000,100000] [--steps 100]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "scheduler/pruning/asha_pruner.h"
#include "scheduler/pruning/percentile_pruner.h"
#include "scheduler/pruning/wandb_hyperband_pruner.h"

namespace {

using namespace sweepd::pruning;
using Clock = std::chrono::steady_clock;

struct Result {
  double decisions_per_s = 0, p50_us = 0, p99_us = 0;
  int64_t decisions = 0, pruned = 0;
};

double Percentile(std::vector<float>& v, double p) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

Result Run(Pruner& pruner, int trials, int steps) {
  std::mt19937_64 rng(1);
  std::normal_distribution<double> noise(0, 0.02);
  std::vector<float> latency;
  latency.reserve(static_cast<size_t>(trials) * steps);
  Result r;
  const auto start = Clock::now();
  constexpr int kWorkers = 64;
  for (int first = 0; first < trials; first += kWorkers) {
    const int last = std::min(trials, first + kWorkers);
    std::vector<double> quality;
    std::vector<bool> alive(static_cast<size_t>(last - first), true);
    for (int t = first; t < last; ++t)
      quality.push_back(std::uniform_real_distribution<>(0, 1)(rng));
    for (int step = 0; step < steps; ++step) {
      for (int t = first; t < last; ++t) {
        if (!alive[static_cast<size_t>(t - first)]) continue;
        const double value =
            quality[static_cast<size_t>(t - first)] + 1.0 / (step + 1) + noise(rng);
        const Observation o{
            .trial = t, .index = step, .resource = static_cast<double>(step), .value = value};
        const auto t0 = Clock::now();
        const Decision d = pruner.OnReport(o, true);
        latency.push_back(std::chrono::duration<float, std::micro>(Clock::now() - t0).count());
        ++r.decisions;
        if (d.stop) {
          ++r.pruned;
          alive[static_cast<size_t>(t - first)] = false;
          pruner.OnTrialEnd(t, sweepd::v1::TRIAL_STATE_PRUNED);
        }
      }
    }
    for (int t = first; t < last; ++t) {
      if (alive[static_cast<size_t>(t - first)]) {
        pruner.OnTrialEnd(t, sweepd::v1::TRIAL_STATE_COMPLETED);
      }
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.decisions_per_s = static_cast<double>(r.decisions) / seconds;
  r.p50_us = Percentile(latency, 0.5);
  r.p99_us = Percentile(latency, 0.99);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> sizes = {100, 10'000, 100'000};
  int steps = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--sizes") {
      sizes.clear();
      for (auto s : absl::StrSplit(argv[i + 1], ',')) {
        int n = 0;
        if (absl::SimpleAtoi(s, &n) && n > 0) sizes.push_back(n);
      }
    } else if (flag == "--steps") {
      steps = std::atoi(argv[i + 1]);
    }
  }
  const std::vector<std::pair<std::string, std::function<std::unique_ptr<Pruner>()>>> pruners = {
      {"asha", [&] { return std::make_unique<AshaPruner>(1, steps, 3, 0, false); }},
      {"hyperband", [&] { return std::make_unique<HyperbandPruner>(1, steps, 3, 0, false); }},
      {"median", [] { return std::make_unique<PercentilePruner>(50, 5, 5, 1, 1, false); }},
      {"percentile25", [] { return std::make_unique<PercentilePruner>(25, 5, 5, 1, 1, false); }},
      {"wandb_hyperband",
       [] {
         sweepd::v1::EarlyTerminate et;
         et.set_min_iter(3);
         et.set_eta(3);
         et.set_strict(true);
         return WandbHyperbandPruner::FromSpec(et, false);
       }},
      {"threshold", [] { return std::make_unique<ThresholdPruner>(std::nullopt, 1.9, 0, 1); }},
  };
  std::printf("# pruning_bench: %d steps per trial, 64 trials at a time\n", steps);
  for (const auto& [name, make] : pruners) {
    std::map<int, Result> results;
    for (int n : sizes) {
      auto pruner = make();
      results[n] = Run(*pruner, n, steps);
      const Result& r = results[n];
      std::printf(
          "pruner=%s trials=%d decisions=%lld pruned_trials=%lld decisions/s=%.0f p50_us=%.3f "
          "p99_us=%.3f\n",
          name.c_str(), n, static_cast<long long>(r.decisions), static_cast<long long>(r.pruned),
          r.decisions_per_s, r.p50_us, r.p99_us);
      std::fflush(stdout);
    }
    if (results.size() >= 2) {
      const Result& small = results.begin()->second;
      const Result& large = results.rbegin()->second;
      std::printf("pruner=%s ratio_p50_%d_to_%d=%.2f ratio_p99=%.2f\n", name.c_str(),
                  results.rbegin()->first, results.begin()->first, large.p50_us / small.p50_us,
                  large.p99_us / small.p99_us);
    }
  }
  return 0;
}
