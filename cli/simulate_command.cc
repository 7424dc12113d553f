// sweepctl simulate: the spec's search and pruning in virtual time, with and without pruning.

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/command.h"
#include "common/spec_parser.h"
#include "scheduler/simulator.h"

namespace sweepd::cli {
namespace {

using Json = nlohmann::ordered_json;

int RunSimulate(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  const std::string& path = args.positional[0];
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    err << "sweepctl: cannot read " << path << "\n";
    return kExitFailure;
  }
  std::stringstream text;
  text << in.rdbuf();
  auto parsed = ParseSweepSpec(text.str(), /*external=*/true);  // nothing runs: no program needed
  if (!parsed.ok()) {
    for (const auto& line : SpecErrorLines(parsed.status())) err << path << ": " << line << "\n";
    return kExitFailure;
  }
  if (!parsed->spec.has_metric()) {
    err << path << ": metric: required to simulate (which value the curves give)\n";
    return kExitFailure;
  }
  int64_t workers = 4, trials = 100, steps = 100, seed = 0;
  double step_seconds = 60;
  if (!absl::SimpleAtoi(args.Get("workers"), &workers) || workers < 1 ||
      !absl::SimpleAtoi(args.Get("trials"), &trials) || trials < 1 ||
      !absl::SimpleAtoi(args.Get("steps"), &steps) || steps < 1 ||
      !absl::SimpleAtoi(args.Get("seed"), &seed) || seed < 0 ||
      !absl::SimpleAtod(args.Get("step-seconds"), &step_seconds) || step_seconds <= 0) {
    err << "sweepctl simulate: --workers, --trials, --steps must be whole numbers >= 1, --seed "
           ">= 0, --step-seconds > 0\n";
    return kExitUsage;
  }
  absl::StatusOr<std::unique_ptr<scheduler::CurveSource>> curves;
  if (args.Has("curves")) {
    std::ifstream table(args.Get("curves"), std::ios::binary);
    if (!table) {
      err << "sweepctl: cannot read " << args.Get("curves") << "\n";
      return kExitFailure;
    }
    std::stringstream csv;
    csv << table.rdbuf();
    curves = scheduler::CsvCurves(csv.str());
  } else {
    curves = scheduler::SyntheticCurves(parsed->spec, args.Get("synthetic"),
                                        static_cast<uint64_t>(seed), steps);
  }
  if (!curves.ok()) {
    err << "sweepctl simulate: " << curves.status().message() << "\n";
    return kExitUsage;
  }
  scheduler::SimulationOptions options{
      .workers = static_cast<int>(workers), .max_trials = trials, .seconds_per_step = step_seconds};
  auto pruned = scheduler::Simulate(parsed->spec, **curves, options);
  options.disable_pruning = true;
  auto unpruned = scheduler::Simulate(parsed->spec, **curves, options);
  if (!pruned.ok() || !unpruned.ok()) {
    err << "sweepctl simulate: "
        << (pruned.ok() ? unpruned.status().message() : pruned.status().message()) << "\n";
    return kExitFailure;
  }
  // When pruning reached the best value that the unpruned sweep found.
  const bool maximize = parsed->spec.metric().goal() == v1::GOAL_MAXIMIZE;
  std::optional<double> hours_to_match;
  for (const auto& [hours, value] : pruned->best_over_time) {
    if (maximize ? value >= unpruned->best_value : value <= unpruned->best_value) {
      hours_to_match = hours;
      break;
    }
  }
  auto describe = [](const scheduler::SimulationResult& r) {
    Json curve = Json::array();
    for (const auto& [h, v] : r.best_over_time) curve.push_back({{"gpu_hours", h}, {"best", v}});
    return Json{{"gpu_hours", r.gpu_hours},   {"wall_hours", r.simulated_hours},
                {"trials", r.trials},         {"pruned", r.pruned},
                {"promotions", r.promotions}, {"pbt_copies", r.pbt_copies},
                {"best_value", r.best_value}, {"best_over_time", curve}};
  };
  if (args.Get("output") == "json") {
    Json doc = {{"with_pruning", describe(*pruned)},
                {"without_pruning", describe(*unpruned)},
                {"gpu_hours_to_match_unpruned_best",
                 hours_to_match ? Json(*hours_to_match) : Json(nullptr)}};
    out << doc.dump(2) << "\n";
    return kExitOk;
  }
  auto line = [&](const char* name, const scheduler::SimulationResult& r) {
    char buf[256];
    std::snprintf(buf, sizeof(buf),
                  "%-16s gpu-hours %9.2f  wall-hours %8.2f  trials %5lld  "
                  "pruned %5lld  best %.6g",
                  name, r.gpu_hours, r.simulated_hours, static_cast<long long>(r.trials),
                  static_cast<long long>(r.pruned), r.best_value);
    out << buf;
    if (r.promotions > 0) out << "  promotions " << r.promotions;
    if (r.pbt_copies > 0) out << "  pbt copies " << r.pbt_copies;
    out << "\n";
  };
  out << "simulated " << workers << " workers, "
      << (args.Has("curves") ? args.Get("curves") : args.Get("synthetic")) << " curves, " << steps
      << " steps of " << step_seconds << " s\n";
  line("with pruning", *pruned);
  line("without pruning", *unpruned);
  if (hours_to_match) {
    char buf[160];
    std::snprintf(buf, sizeof(buf),
                  "pruning reached the unpruned best after %.2f GPU-hours (%.0f%% of %.2f)\n",
                  *hours_to_match, 100 * *hours_to_match / unpruned->gpu_hours,
                  unpruned->gpu_hours);
    out << buf;
  } else {
    out << "pruning did not reach the unpruned best value\n";
  }
  return kExitOk;
}

}  // namespace

Command SimulateCommand() {
  return {.name = "simulate",
          .summary = "try a search and pruning setting in virtual time, no GPUs",
          .usage = "sweepctl simulate FILE [--synthetic FAMILY | --curves FILE.csv] [--workers N]",
          .description =
              "Runs the spec's search method and pruner against learning curves with N simulated\n"
              "workers, and again without pruning. Curves: a synthetic family (rank-preserving,\n"
              "noisy, crossing) or a CSV table `param1,...,step,value`. For method pbt, \"with\n"
              "pruning\" exploits and explores (a copy goes on at its parent's step with its own\n"
              "parameters' curve) and \"without\" is the first generation never exploited.",
          .flags = {{.name = "synthetic",
                     .value_name = "FAMILY",
                     .help = "synthetic curves",
                     .default_value = "rank-preserving",
                     .choices = {"rank-preserving", "noisy", "crossing"}},
                    {.name = "curves", .value_name = "FILE", .help = "curves from a CSV table"},
                    {.name = "workers",
                     .value_name = "N",
                     .help = "simulated workers",
                     .default_value = "4"},
                    {.name = "trials",
                     .value_name = "N",
                     .help = "trials at most",
                     .default_value = "100"},
                    {.name = "steps",
                     .value_name = "N",
                     .help = "steps of a full trial",
                     .default_value = "100"},
                    {.name = "step-seconds",
                     .value_name = "S",
                     .help = "GPU time of one step",
                     .default_value = "60"},
                    {.name = "seed",
                     .value_name = "S",
                     .help = "synthetic family seed",
                     .default_value = "0"},
                    {.name = "output",
                     .value_name = "FORMAT",
                     .help = "output format",
                     .default_value = "table",
                     .choices = {"table", "json"}}},
          .min_args = 1,
          .max_args = 1,
          .run = RunSimulate};
}

}  // namespace sweepd::cli
