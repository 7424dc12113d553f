// Feeds a recorded sequence of reports to one of sweepd's pruners and prints each decision: the
// C++ side of the cross-check against Optuna (optuna_crosscheck.py).
//
// stdin: {"pruner": "<YAML of a sweepd spec's pruner: value>", "goal": "minimize",
//         "events": [{"trial": 0, "step": 3, "value": 0.5}, {"trial": 0, "end": "completed"}]}
// stdout: {"decisions": [true, false, ...]}  (one per report event: true = prune)

#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "common/spec_parser.h"
#include "scheduler/pruning/pruner.h"

int main() {
  const std::string input((std::istreambuf_iterator<char>(std::cin)),
                          std::istreambuf_iterator<char>());
  auto doc = nlohmann::json::parse(input, nullptr, false);
  if (doc.is_discarded()) {
    std::cerr << "prune_replay: stdin is not JSON\n";
    return 2;
  }
  const std::string yaml =
      "method: random\ncommand: [run]\nmetric: {name: v, goal: " +
      doc.value("goal", std::string("minimize")) +
      "}\nparameters:\n  x: {value: 1}\npruner: " + doc["pruner"].get<std::string>() + "\n";
  auto spec = sweepd::ParseSweepSpec(yaml);
  if (!spec.ok()) {
    std::cerr << "prune_replay: " << spec.status().message() << "\n";
    return 2;
  }
  auto pruner = sweepd::pruning::CreatePruner(spec->spec);
  if (!pruner.ok() || !*pruner) {
    std::cerr << "prune_replay: no pruner\n";
    return 2;
  }
  nlohmann::json decisions = nlohmann::json::array();
  std::map<int64_t, int64_t> index;
  for (const auto& e : doc["events"]) {
    const int64_t trial = e["trial"].get<int64_t>();
    if (e.contains("end")) {
      const std::string end = e["end"];
      (*pruner)->OnTrialEnd(trial, end == "completed" ? sweepd::v1::TRIAL_STATE_COMPLETED
                                                      : sweepd::v1::TRIAL_STATE_PRUNED);
      continue;
    }
    const auto d = (*pruner)->OnReport({.trial = trial,
                                        .index = index[trial]++,
                                        .resource = e["step"].get<double>(),
                                        .value = e["value"].get<double>()},
                                       true);
    decisions.push_back(d.stop);
  }
  std::cout << nlohmann::json{{"decisions", decisions}}.dump() << "\n";
  return 0;
}
