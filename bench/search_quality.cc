// Search quality: sweepd's random, Sobol and TPE, and Optuna's TPE (through
// optuna_search_driver.py and Debian's python3-optuna), on Branin, Hartmann-6, Rosenbrock-4,
// Ackley-5 and a mixed space; N trials, S seeds each. Prints the median and interquartile range
// of the regret (best found - known minimum) per method and function, and TPE's proposal time
// with 1,000 trials of history. Not a test.
//
// Usage: search_quality [--trials 100] [--seeds 20] [--first-seed 0] [--no-optuna]
//                       [--python /usr/bin/python3] [--methods random,sobol,tpe,tpe-univariate]
//                       [--search "bandwidth: optuna, prior_weight: 1.0"]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "bench/search_functions.h"
#include "common/spec_parser.h"
#include "scheduler/search/search_method.h"

namespace {

using namespace sweepd;
using Clock = std::chrono::steady_clock;

std::map<std::string, double> Decode(const ParamSet& params, const v1::SweepSpec& spec) {
  std::map<std::string, double> out;
  for (const auto& p : params) {
    auto v = nlohmann::json::parse(p.value_json());
    if (v.is_number()) {
      out[p.name()] = v.get<double>();
      continue;
    }
    for (const auto& leaf : spec.parameters()) {  // categorical: its index
      if (leaf.path() != p.name()) continue;
      for (int i = 0; i < leaf.values_json_size(); ++i) {
        if (leaf.values_json(i) == p.value_json()) out[p.name()] = i;
      }
    }
  }
  return out;
}

// Extra settings for every TPE run (--search), e.g. "bandwidth: optuna".
std::string g_search_settings;

double Run(std::string method, const bench::TestFunction& f, uint64_t seed, int trials) {
  std::string extra;
  if (method == "tpe-univariate") {
    method = "tpe";
    extra = "search: {multivariate: false" +
            (g_search_settings.empty() ? "" : ", " + g_search_settings) + "}\n";
  } else if (method == "tpe" && !g_search_settings.empty()) {
    extra = "search: {" + g_search_settings + "}\n";
  }
  auto parsed =
      ParseSweepSpec("method: " + method + "\nseed: " + std::to_string(seed) + "\n" + extra +
                     "command: [run]\nmetric: {name: f}\nparameters:\n" + f.parameters_yaml);
  if (!parsed.ok()) {
    std::fprintf(stderr, "%s\n", std::string(parsed.status().message()).c_str());
    std::exit(1);
  }
  auto search = CreateSearchMethod(parsed->spec);
  std::vector<TrialRecord> history;
  double best = INFINITY;
  for (int i = 0; i < trials; ++i) {
    auto p = (*search)->Propose(history);
    const double value = f.evaluate(Decode(*p, parsed->spec));
    best = std::min(best, value);
    history.push_back({.params = *p, .state = v1::TRIAL_STATE_COMPLETED, .value = value});
  }
  return best;
}

struct Stats {
  double median, q1, q3;
};

Stats Summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    const double index = q * static_cast<double>(v.size() - 1);
    const auto lo = static_cast<size_t>(index);
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (index - static_cast<double>(lo));
  };
  return {at(0.5), at(0.25), at(0.75)};
}

}  // namespace

int main(int argc, char** argv) {
  int trials = 100, seeds = 20, first_seed = 0;
  bool optuna = true;
  std::vector<std::string> methods = {"random", "sobol", "tpe", "tpe-univariate"};
  std::string python = "/usr/bin/python3";
  std::string driver = std::string(SWEEPD_SOURCE_DIR) + "/bench/optuna_search_driver.py";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--trials" && i + 1 < argc)
      trials = std::atoi(argv[++i]);
    else if (flag == "--seeds" && i + 1 < argc)
      seeds = std::atoi(argv[++i]);
    else if (flag == "--no-optuna")
      optuna = false;
    else if (flag == "--first-seed" && i + 1 < argc)
      first_seed = std::atoi(argv[++i]);
    else if (flag == "--python" && i + 1 < argc)
      python = argv[++i];
    else if (flag == "--search" && i + 1 < argc)
      g_search_settings = argv[++i];
    else if (flag == "--methods" && i + 1 < argc)
      methods = absl::StrSplit(argv[++i], ',');
  }
  const auto functions = bench::TestFunctions();
  std::map<std::string, std::map<std::string, std::vector<double>>> regret;  // method -> fn
  for (const std::string& method : methods) {
    for (const auto& f : functions) {
      for (int s = 0; s < seeds; ++s) {
        regret[method][f.name].push_back(
            Run(method, f, static_cast<uint64_t>(first_seed + s), trials) - f.minimum);
      }
    }
  }
  if (optuna) {
    for (const bool multivariate : {false, true}) {
      const std::string command = python + " " + driver + " --trials " + std::to_string(trials) +
                                  " --seeds " + std::to_string(seeds) + " --first-seed " +
                                  std::to_string(first_seed) +
                                  (multivariate ? " --multivariate" : "");
      FILE* pipe = popen(command.c_str(), "r");
      std::string output;
      char buf[4096];
      while (pipe != nullptr && fgets(buf, sizeof(buf), pipe) != nullptr) output += buf;
      if (pipe == nullptr || pclose(pipe) != 0) {
        std::fprintf(stderr, "optuna driver failed (is python3-optuna installed?)\n");
        break;
      }
      auto doc = nlohmann::json::parse(output, nullptr, false);
      const std::string name = multivariate ? "optuna-tpe-mv" : "optuna-tpe";
      for (const auto& f : functions) {
        for (double best : doc[f.name]) regret[name][f.name].push_back(best - f.minimum);
      }
    }
  }
  std::printf("# search_quality: %d trials, %d seeds; regret = best - minimum: median [q1, q3]\n",
              trials, seeds);
  std::printf("%-14s", "method");
  for (const auto& f : functions) std::printf(" %-28s", f.name.c_str());
  std::printf("\n");
  for (const auto& [method, by_fn] : regret) {
    std::printf("%-14s", method.c_str());
    for (const auto& f : functions) {
      const Stats s = Summarize(by_fn.at(f.name));
      char cell[64];
      std::snprintf(cell, sizeof(cell), "%.4g [%.3g, %.3g]", s.median, s.q1, s.q3);
      std::printf(" %-28s", cell);
    }
    std::printf("\n");
  }
  // Proposal time with 1,000 trials of history (Hartmann-6, multivariate TPE).
  auto parsed = ParseSweepSpec("method: tpe\ncommand: [run]\nmetric: {name: f}\nparameters:\n" +
                               functions[1].parameters_yaml);
  auto search = CreateSearchMethod(parsed->spec);
  std::vector<TrialRecord> history;
  std::vector<double> ms;
  for (int i = 0; i < 1100; ++i) {
    const auto t0 = Clock::now();
    auto p = (*search)->Propose(history);
    if (i >= 1000)
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    history.push_back({.params = *p,
                       .state = v1::TRIAL_STATE_COMPLETED,
                       .value = functions[1].evaluate(Decode(*p, parsed->spec))});
  }
  std::sort(ms.begin(), ms.end());
  std::printf("tpe proposal with 1000 trials of history: p50_ms=%.2f p99_ms=%.2f\n",
              ms[ms.size() / 2], ms[ms.size() * 99 / 100]);
  return 0;
}
