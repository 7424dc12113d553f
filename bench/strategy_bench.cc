// Early-stopping strategies compared in virtual time (scheduler/simulator.h, as `sweepctl
// simulate`): GPU-hours until the sweep's best value reaches a target, for random search without
// pruning, ASHA that kills (mode: stop), ASHA that pauses and promotes (mode: promotion), and
// Hyperband in both modes, and population-based training (32 members, a decision every tenth of
// the steps), on the synthetic curve families. The target is the best value random
// search without pruning finds with all its trials (the same proposals: random search does not
// depend on results). Medians over seeds; "-" when a strategy never reaches it. Prints figures;
// it is not a test.
//
// Usage: strategy_bench [--seeds 10] [--trials 243] [--workers 8] [--steps 100]

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/spec_parser.h"
#include "scheduler/simulator.h"

namespace {

using sweepd::scheduler::SimulationOptions;
using sweepd::scheduler::SimulationResult;

struct Strategy {
  std::string name;
  std::string pruner;  // the spec's pruner line ("" = none)
  std::string method = "method: random";
};

std::optional<double> HoursToReach(const SimulationResult& r, double target) {
  for (const auto& [hours, value] : r.best_over_time) {
    if (value <= target) return hours;
  }
  return std::nullopt;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  int seeds = 10, workers = 8;
  int64_t trials = 243, steps = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    int64_t v = 0;
    if (!absl::SimpleAtoi(argv[i + 1], &v) || v < 1) {
      std::fprintf(stderr, "strategy_bench: %s: a positive integer, got %s\n", flag.c_str(),
                   argv[i + 1]);
      return 2;
    }
    if (flag == "--seeds") {
      seeds = static_cast<int>(v);
    } else if (flag == "--trials") {
      trials = v;
    } else if (flag == "--workers") {
      workers = static_cast<int>(v);
    } else if (flag == "--steps") {
      steps = v;
    } else {
      std::fprintf(stderr,
                   "usage: strategy_bench [--seeds N] [--trials N] [--workers N] "
                   "[--steps N]\n");
      return 2;
    }
  }
  const std::string range =
      absl::StrCat("min_resource: 1, max_resource: ", steps, ", reduction_factor: 3");
  const std::vector<Strategy> strategies = {
      {"random, no pruning", ""},
      {"asha (stop)", absl::StrCat("pruner: {type: asha, ", range, "}")},
      {"asha (promotion)", absl::StrCat("pruner: {type: asha, mode: promotion, ", range, "}")},
      {"hyperband (stop)", absl::StrCat("pruner: {type: hyperband, ", range, "}")},
      {"hyperband (promotion)",
       absl::StrCat("pruner: {type: hyperband, mode: promotion, ", range, "}")},
      // PBT trains its population to the end: population x steps in all (a copy adds no work).
      {"pbt (population 32)", "",
       absl::StrCat("method: pbt\npbt: {population_size: 32, interval: ",
                    std::max<int64_t>(1, steps / 10), "}")},
  };
  std::printf("strategy_bench: %lld trials of %lld steps on %d workers, median of %d seeds\n",
              static_cast<long long>(trials), static_cast<long long>(steps), workers, seeds);
  std::printf("target: the best value random search without pruning reaches with all its trials\n");
  for (const char* family : {"rank-preserving", "noisy", "crossing"}) {
    std::printf("\n%s curves\n%-24s %14s %12s %10s %10s\n", family, "strategy", "GPU-h to target",
                "reached", "GPU-h all", "best");
    std::vector<std::vector<double>> to_target(strategies.size()), total(strategies.size()),
        best(strategies.size());
    std::vector<int> reached(strategies.size(), 0);
    for (int seed = 1; seed <= seeds; ++seed) {
      std::vector<SimulationResult> results;
      for (const Strategy& s : strategies) {
        auto parsed = sweepd::ParseSweepSpec(
            absl::StrCat(s.method, "\nseed: ", seed,
                         "\ncommand: [run]\nmetric: {name: loss, goal: minimize}\n", s.pruner, R"(
parameters:
  lr: {distribution: log_uniform_values, min: 0.0001, max: 1}
  width: {values: [16, 32, 64, 128]}
  dropout: {min: 0.0, max: 0.5}
)"));
        if (!parsed.ok()) {
          std::fprintf(stderr, "strategy_bench: %s\n", parsed.status().ToString().c_str());
          return 1;
        }
        auto curves = sweepd::scheduler::SyntheticCurves(parsed->spec, family,
                                                         static_cast<uint64_t>(seed), steps);
        auto r = curves.ok() ? sweepd::scheduler::Simulate(
                                   parsed->spec, **curves,
                                   SimulationOptions{.workers = workers, .max_trials = trials})
                             : absl::StatusOr<SimulationResult>(curves.status());
        if (!r.ok()) {
          std::fprintf(stderr, "strategy_bench: %s\n", r.status().ToString().c_str());
          return 1;
        }
        results.push_back(*r);
      }
      const double target = results[0].best_value;
      for (size_t i = 0; i < strategies.size(); ++i) {
        total[i].push_back(results[i].gpu_hours);
        best[i].push_back(results[i].best_value);
        if (auto h = HoursToReach(results[i], target)) {
          to_target[i].push_back(*h);
          ++reached[i];
        }
      }
    }
    for (size_t i = 0; i < strategies.size(); ++i) {
      const std::string hours =
          to_target[i].empty() ? "-" : absl::StrCat(static_cast<int>(Median(to_target[i]) + 0.5));
      std::printf("%-24s %14s %9d/%-2d %10.0f %10.4f\n", strategies[i].name.c_str(), hours.c_str(),
                  reached[i], seeds, Median(total[i]), Median(best[i]));
    }
  }
  return 0;
}
