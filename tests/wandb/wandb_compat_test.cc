// W&B compatibility: W&B's own test cases, with the outcomes W&B gives them, run against sweepd.
//
// The cases live in tests/wandb/fixtures/*.json (made by gen_fixtures.py from wandb/sweeps and
// wandb/wandb; every case names the upstream test or code line it comes from). One
// parameterised test per kind, one test per case, named after the case id:
//   validation.json  does sweepd accept the sweep config iff W&B does (and infer what W&B infers)?
//   grid.json        does grid search propose the parameter sets W&B proposes?
//   hyperband.json   does the early_terminate pruner stop the runs W&B's stop_runs stops?
//   command.json     does the command template give the argv W&B's agent runs?
//   random.json      do random samples satisfy what W&B's tests assert (bounds, q, law)?
//
// Specs are given to ParseSweepSpec as JSON text (JSON is YAML). Grid, hyperband and random
// cases parse as `external` sweeps, so that W&B configs without `program` (which W&B never
// requires) test what they are about; validation cases parse as normal sweeps where the case
// says "sweepd_external": false.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/command_template.h"
#include "common/param_space.h"
#include "common/spec_parser.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/pruning/wandb_hyperband_pruner.h"
#include "scheduler/search/grid_search.h"
#include "scheduler/search/random_search.h"
#include "scheduler/search/search_method.h"
#include "sweepd/v1/resources.pb.h"
#include "sweepd/v1/spec.pb.h"

namespace sweepd {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using ParamList = google::protobuf::RepeatedPtrField<v1::Parameter>;

fs::path FixturesDir() {
#ifdef WANDB_FIXTURES_DIR
  return fs::path(WANDB_FIXTURES_DIR);
#else
  return fs::path(SWEEPD_SOURCE_DIR) / "tests" / "wandb" / "fixtures";
#endif
}

// Reads a fixture file; a JSON value with "load_error" when it cannot.
Json LoadJson(const std::string& name) {
  const fs::path path = FixturesDir() / name;
  std::ifstream in(path, std::ios::binary);
  if (!in) return Json{{"load_error", absl::StrCat("cannot open ", path.string())}};
  std::stringstream text;
  text << in.rdbuf();
  Json j = Json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Json{{"load_error", absl::StrCat(path.string(), " is not JSON")}};
  return j;
}

// One case of a fixture file. The JSON is shared: gtest copies parameters around.
struct Case {
  std::string id;
  std::shared_ptr<const Json> data;
};

// gtest prints parameters in failure messages; the id is enough.
void PrintTo(const Case& c, std::ostream* os) { *os << c.id; }

std::vector<Case> LoadCases(const std::string& file) {
  Json all = LoadJson(file);
  std::vector<Case> cases;
  if (!all.is_array()) {
    // One failing test rather than none at all.
    Json error = all.is_object() && all.contains("load_error")
                     ? all
                     : Json{{"load_error", absl::StrCat(file, ": not a list of cases")}};
    cases.push_back({"fixture_load_error", std::make_shared<const Json>(std::move(error))});
    return cases;
  }
  for (auto& item : all) {
    std::string id = item.value("id", std::string("unnamed"));
    cases.push_back({std::move(id), std::make_shared<const Json>(std::move(item))});
  }
  return cases;
}

std::string CaseName(const testing::TestParamInfo<Case>& info) { return info.param.id; }

// The case's spec as text: YAML where JSON cannot say it (NaN), else the config as JSON.
std::string SpecText(const Json& c) {
  if (c.contains("config_yaml")) return c["config_yaml"].get<std::string>();
  return c["config"].dump();
}

// Where the case comes from, for failure messages.
std::string About(const Json& c) {
  std::string out = absl::StrCat("\n  upstream: ", c.value("upstream", std::string("?")));
  if (c.contains("note")) absl::StrAppend(&out, "\n  note: ", c["note"].get<std::string>());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Values: W&B's run configs are nested JSON; sweepd's parameter sets are flat (dotted paths,
// JSON text). The spec's tree of groups says how one maps to the other.

// A value's JSON text as sweepd keeps it. {"__float__": "nan"} stands for what JSON cannot say.
std::string ValueJson(const Json& v) {
  if (v.is_object() && v.size() == 1 && v.contains("__float__")) {
    const std::string f = v["__float__"].get<std::string>();
    return f == "nan" ? "NaN" : f == "inf" ? "Infinity" : "-Infinity";
  }
  return v.dump();
}

// W&B run config ({"p": {"value": ...}}, groups as nested dicts) -> sweepd parameter set, leaves
// in spec order. Leaves the run config does not have are left out.
void CollectParams(const ParamList& params, const Json& level, bool top, ParamSet* out) {
  for (const v1::Parameter& p : params) {
    if (!level.is_object() || !level.contains(p.name())) continue;
    const Json* v = &level[p.name()];
    if (top) {
      if (!v->is_object() || !v->contains("value")) continue;
      v = &(*v)["value"];
    }
    if (p.parameters_size() > 0) {
      CollectParams(p.parameters(), *v, false, out);
    } else {
      v1::TrialParam tp;
      tp.set_name(p.path());
      tp.set_value_json(ValueJson(*v));
      out->push_back(std::move(tp));
    }
  }
}

ParamSet ParamsFromWandbConfig(const v1::SweepSpec& spec, const Json& run_config) {
  ParamSet out;
  CollectParams(spec.parameters(), run_config, true, &out);
  SetConfigKeys(spec, &out);  // as the engine sends them to agents
  return out;
}

// sweepd parameter set -> W&B's plain values ({"p": 1, "group": {"q": 2}}).
Json BuildValues(const ParamList& params, const std::map<std::string, Json>& by_path) {
  Json obj = Json::object();
  for (const v1::Parameter& p : params) {
    if (p.parameters_size() > 0) {
      obj[p.name()] = BuildValues(p.parameters(), by_path);
    } else if (auto it = by_path.find(p.path()); it != by_path.end()) {
      obj[p.name()] = it->second;
    }
  }
  return obj;
}

Json ToWandbValues(const v1::SweepSpec& spec, const ParamSet& params) {
  std::map<std::string, Json> by_path;
  for (const auto& p : params) {
    Json v = Json::parse(p.value_json(), nullptr, /*allow_exceptions=*/false);
    by_path[p.name()] = v.is_discarded() ? Json(p.value_json()) : std::move(v);
  }
  return BuildValues(spec.parameters(), by_path);
}

// Equality as W&B means it: dicts regardless of key order, 3 == 3.0, floats to 1e-9 relative
// (grid values are computed in floating point), booleans are not numbers.
bool SameValue(const Json& a, const Json& b) {
  if (a.is_number() && b.is_number()) {
    const double x = a.get<double>(), y = b.get<double>();
    if (std::isnan(x) || std::isnan(y)) return std::isnan(x) && std::isnan(y);
    return std::fabs(x - y) <= 1e-9 * std::max({1.0, std::fabs(x), std::fabs(y)});
  }
  if (a.type() != b.type()) return false;
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!SameValue(a[i], b[i])) return false;
    }
    return true;
  }
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (const auto& [key, value] : a.items()) {
      if (!b.contains(key) || !SameValue(value, b[key])) return false;
    }
    return true;
  }
  return a == b;
}

std::string Dump(const std::vector<Json>& values) {
  std::vector<std::string> lines;
  for (const auto& v : values) lines.push_back(absl::StrCat("    ", v.dump()));
  return absl::StrJoin(lines, "\n");
}

const v1::Parameter* FindLeaf(const v1::SweepSpec& spec, const std::string& path) {
  for (const v1::Parameter* leaf : LeafParameters(spec)) {
    if (leaf->path() == path) return leaf;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// validation.json

// The cases where sweepd differs from W&B on purpose, each written in docs/sweep-spec.md
// ("Differences from W&B"): what sweepd does instead, checked here so that a difference never
// grows unnoticed. `accepts`: sweepd parses it (with a warning holding `says`); otherwise it
// refuses it with an error holding `says`.
struct Deliberate {
  bool accepts;
  std::string says;
};
const std::map<std::string, Deliberate>& DeliberateDifferences() {
  static const auto* const kCases = new std::map<std::string, Deliberate>{
      // W&B's custom schedulers and multi-objective `metrics` (Launch features): no scheduler
      // plug-ins in sweepd; refused by name rather than silently run with another method.
      {"metrics_multi_objective_custom", {false, "multi-objective sweeps are not supported"}},
      {"scheduler_wandb_engine", {false, "custom W&B schedulers are not supported"}},
      {"scheduler_only_engine", {false, "custom W&B schedulers are not supported"}},
      {"scheduler_and_controller_cloud", {false, "custom W&B schedulers are not supported"}},
      {"parameters_not_required_with_search_space",
       {false, "custom W&B schedulers are not supported"}},
      {"parameters_alongside_search_space", {false, "custom W&B schedulers are not supported"}},
      {"method_custom_without_scheduler", {false, "method"}},
      // W&B's CLI agent cannot run it either (it puts None into the argv for ${program}); only
      // wandb.agent(function=...) can. sweepd refuses at submit, naming the key.
      {"program_not_required", {false, "program: required: the command uses ${program}"}},
      // W&B samples NaN from these; sweepd runs the distribution's limit as a constant.
      {"normal_sigma_zero", {true, "taken as the constant"}},
      {"log_normal_sigma_zero", {true, "taken as the constant"}},
      {"beta_a_zero", {true, "taken as the constant"}},
      {"beta_b_zero", {true, "taken as the constant"}},
      // sweepd keeps parameters by flattened path (store, search, CLI): a top-level `a.b` and a
      // nested a -> b would be one name.
      {"param_dotted_name_beside_group", {false, "flattened name collides"}},
  };
  return *kCases;
}

class WandbValidation : public testing::TestWithParam<Case> {};

TEST_P(WandbValidation, AcceptsWhatWandbAccepts) {
  const Json& c = *GetParam().data;
  ASSERT_FALSE(c.contains("load_error")) << c["load_error"].get<std::string>();
  const std::string text = SpecText(c);
  const bool external = c.value("sweepd_external", true);
  if (auto it = DeliberateDifferences().find(c["id"].get<std::string>());
      it != DeliberateDifferences().end()) {
    auto parsed = ParseSweepSpec(text, external);
    const Deliberate& d = it->second;
    if (d.accepts) {
      ASSERT_TRUE(parsed.ok()) << parsed.status() << About(c);
      EXPECT_THAT(parsed->warnings, testing::Contains(testing::HasSubstr(d.says))) << About(c);
    } else {
      ASSERT_FALSE(parsed.ok()) << "sweepd now accepts it: update docs/sweep-spec.md" << About(c);
      EXPECT_THAT(std::string(parsed.status().message()), testing::HasSubstr(d.says)) << About(c);
    }
    return;
  }
  const bool wandb_valid = c["valid"].get<bool>();
  const std::string about =
      absl::StrCat(About(c), "\n  W&B: ",
                   wandb_valid ? std::string("accepts")
                               : absl::StrCat("refuses (", c.value("wandb_rejects_at", ""),
                                              "): ", c.value("wandb_message", "")),
                   "\n  spec (external=", external ? "true" : "false", "): ", text);
  auto parsed = ParseSweepSpec(text, external);
  if (wandb_valid) {
    ASSERT_TRUE(parsed.ok()) << "sweepd refuses a config W&B accepts:\n"
                             << parsed.status().message() << about;
    const v1::SweepSpec& spec = parsed->spec;
    if (c.contains("expect_params")) {
      for (const auto& [name, want] : c["expect_params"].items()) {
        const v1::Parameter* leaf = FindLeaf(spec, name);
        ASSERT_NE(leaf, nullptr) << "no parameter " << name << about;
        EXPECT_EQ(std::string(DistributionName(leaf->distribution())),
                  want["distribution"].get<std::string>())
            << "parameter " << name << ": W&B infers another distribution" << about;
        const std::vector<std::pair<const char*, double>> fields = {{"mu", leaf->mu()},
                                                                    {"sigma", leaf->sigma()},
                                                                    {"a", leaf->a()},
                                                                    {"b", leaf->b()},
                                                                    {"q", leaf->q()}};
        for (const auto& [key, got] : fields) {
          if (!want.contains(key)) continue;
          EXPECT_DOUBLE_EQ(got, want[key].get<double>())
              << "parameter " << name << "." << key << ": W&B's value (or default) differs"
              << about;
        }
      }
    }
    if (c.contains("expect_early_terminate")) {
      const Json& want = c["expect_early_terminate"];
      ASSERT_TRUE(spec.has_early_terminate()) << about;
      if (want.contains("eta")) {
        EXPECT_DOUBLE_EQ(spec.early_terminate().eta(), want["eta"].get<double>()) << about;
      }
      if (want.contains("strict")) {
        EXPECT_EQ(spec.early_terminate().strict(), want["strict"].get<bool>()) << about;
      }
    }
  } else if (c.contains("sweepd_warning_ok")) {
    // W&B's own test calls this a warning: refusing or warning both match.
    if (parsed.ok()) {
      const std::string word = c["sweepd_warning_ok"].get<std::string>();
      const bool warned =
          std::any_of(parsed->warnings.begin(), parsed->warnings.end(),
                      [&](const std::string& w) { return absl::StrContains(w, word); });
      EXPECT_TRUE(warned) << "sweepd accepts without a word a config W&B flags (" << word
                          << "); warnings: [" << absl::StrJoin(parsed->warnings, "; ") << "]"
                          << about;
    }
  } else {
    EXPECT_FALSE(parsed.ok()) << "sweepd accepts a config W&B refuses" << about;
  }
}

INSTANTIATE_TEST_SUITE_P(Wandb, WandbValidation, testing::ValuesIn(LoadCases("validation.json")),
                         CaseName);

// ---------------------------------------------------------------------------------------------
// grid.json: propose until exhausted, each proposal joining the history (as a scheduler does,
// and as W&B's kernel_for_grid_search_tests appends each suggestion to its runs).

class WandbGrid : public testing::TestWithParam<Case> {};

TEST_P(WandbGrid, ProposesWhatWandbProposes) {
  const Json& c = *GetParam().data;
  ASSERT_FALSE(c.contains("load_error")) << c["load_error"].get<std::string>();
  const std::string about = absl::StrCat(About(c), "\n  spec: ", SpecText(c));
  if (c["id"] == "matches_nan_values") {
    // Deliberate (docs/sweep-spec.md): NaN is no parameter value in sweepd; it cannot be told
    // apart from "no value" in the store, nor compared. Refused, naming it.
    auto refused = ParseSweepSpec(SpecText(c), /*external=*/true);
    ASSERT_FALSE(refused.ok()) << "sweepd now accepts NaN values: update docs/sweep-spec.md";
    EXPECT_EQ(std::string(refused.status().message()),
              "parameters.v1.values[0]: must be finite; got '.nan'");
    return;
  }
  auto parsed = ParseSweepSpec(SpecText(c), /*external=*/true);
  ASSERT_TRUE(parsed.ok()) << "sweepd refuses the grid W&B runs:\n"
                           << parsed.status().message() << about;
  const v1::SweepSpec& spec = parsed->spec;
  GridSearch grid(spec);
  std::vector<TrialRecord> history;
  if (c.contains("history")) {
    for (const Json& run : c["history"]) {
      TrialRecord record;
      record.params = ParamsFromWandbConfig(spec, run);
      record.state = v1::TRIAL_STATE_COMPLETED;
      history.push_back(std::move(record));
    }
  }
  const bool next_only = c.contains("expected_next");
  const size_t expected_size = next_only ? 1 : c["expected"].size();
  std::vector<Json> proposals;
  while (proposals.size() < expected_size + 100) {
    auto point = grid.Propose(history);
    if (!point.ok()) {
      EXPECT_EQ(point.status().code(), absl::StatusCode::kOutOfRange) << point.status() << about;
      break;
    }
    proposals.push_back(ToWandbValues(spec, *point));
    TrialRecord record;
    record.params = *point;
    history.push_back(std::move(record));
    if (next_only) break;
  }

  if (next_only) {
    const Json& want = c["expected_next"];
    if (want.is_null()) {
      EXPECT_TRUE(proposals.empty()) << "W&B has nothing left to propose; sweepd proposes "
                                     << proposals.front().dump() << about;
    } else {
      ASSERT_FALSE(proposals.empty())
          << "W&B proposes " << want.dump() << "; sweepd has nothing left" << about;
      EXPECT_TRUE(SameValue(proposals.front(), want))
          << "W&B proposes " << want.dump() << "\n  sweepd proposes " << proposals.front().dump()
          << about;
    }
    return;
  }

  const std::vector<Json> expected(c["expected"].begin(), c["expected"].end());
  const std::string both = absl::StrCat("\n  W&B (", expected.size(), "):\n", Dump(expected),
                                        "\n  sweepd (", proposals.size(), "):\n", Dump(proposals));
  if (c.value("check_order", false)) {
    bool same = proposals.size() == expected.size();
    for (size_t i = 0; same && i < expected.size(); ++i) {
      same = SameValue(proposals[i], expected[i]);
    }
    EXPECT_TRUE(same) << "W&B's grid, in W&B's order, differs from sweepd's" << both << about;
    return;
  }
  // As a multiset: W&B's test checks the count and that each proposal is an answer.
  std::vector<bool> used(proposals.size(), false);
  std::vector<Json> missing;
  for (const Json& want : expected) {
    bool found = false;
    for (size_t i = 0; i < proposals.size() && !found; ++i) {
      if (!used[i] && SameValue(proposals[i], want)) used[i] = found = true;
    }
    if (!found) missing.push_back(want);
  }
  std::vector<Json> extra;
  for (size_t i = 0; i < proposals.size(); ++i) {
    if (!used[i]) extra.push_back(proposals[i]);
  }
  EXPECT_TRUE(missing.empty() && extra.empty()) << "W&B's grid differs from sweepd's\n  only W&B:\n"
                                                << Dump(missing) << "\n  only sweepd:\n"
                                                << Dump(extra) << both << about;
}

INSTANTIATE_TEST_SUITE_P(Wandb, WandbGrid, testing::ValuesIn(LoadCases("grid.json")), CaseName);

// ---------------------------------------------------------------------------------------------
// hyperband.json. W&B's stop_runs judges complete histories at once: thresholds from every
// run's history (finished ones too), then a verdict for each running run. The pruner is fed the
// same way: first every report of every run, in order, with decide == false (the pruner records
// them exactly as it would online: the index counts every report, NaN included, as the engine's
// trial.metric_reports++ does); then each running run's last report once more with
// decide == true. Its index has been recorded already, so the replay adds nothing and asks
// only for the verdict on the complete picture.

struct WandbRun {
  std::string name;
  bool running = false;
  std::vector<double> history;
};

double ReportValue(const Json& v) {
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    return std::numeric_limits<double>::quiet_NaN();  // "nan"
  }
  return v.get<double>();
}

const Json& HyperData(const std::string& file) {
  static std::map<std::string, Json>* cache = new std::map<std::string, Json>();
  auto it = cache->find(file);
  if (it == cache->end()) it = cache->emplace(file, LoadJson(file)).first;
  return it->second;
}

std::vector<WandbRun> RunsOf(const Json& c) {
  std::vector<WandbRun> runs;
  if (c.contains("histories_file")) {
    const Json& data = HyperData(c["histories_file"].get<std::string>());
    const size_t truncate = c["truncate"].get<size_t>();
    for (const Json& index : c["run_indices"]) {
      const size_t i = index.get<size_t>();
      WandbRun run{.name = std::to_string(i), .running = c.value("runs_state", "") == "running"};
      if (!data.is_array() || i >= data.size()) {
        ADD_FAILURE() << "run " << i << " is not in " << c["histories_file"];
        continue;
      }
      for (size_t k = 0; k < data[i].size() && k < truncate; ++k) {
        run.history.push_back(ReportValue(data[i][k]));
      }
      runs.push_back(std::move(run));
    }
    return runs;
  }
  for (const Json& r : c["runs"]) {
    WandbRun run{.name = r["name"].get<std::string>(),
                 .running = r["state"].get<std::string>() == "running"};
    for (const Json& v : r["history"]) run.history.push_back(ReportValue(v));
    runs.push_back(std::move(run));
  }
  return runs;
}

class WandbHyperband : public testing::TestWithParam<Case> {};

TEST_P(WandbHyperband, StopsTheRunsWandbStops) {
  const Json& c = *GetParam().data;
  ASSERT_FALSE(c.contains("load_error")) << c["load_error"].get<std::string>();
  std::string about = About(c);
  auto parsed = ParseSweepSpec(SpecText(c), /*external=*/true);
  ASSERT_TRUE(parsed.ok()) << "sweepd refuses the sweep:\n" << parsed.status().message() << about;
  const v1::SweepSpec& spec = parsed->spec;
  ASSERT_TRUE(spec.has_early_terminate()) << about;
  const bool maximize = spec.metric().goal() == v1::GOAL_MAXIMIZE;
  auto pruner = pruning::WandbHyperbandPruner::FromSpec(spec.early_terminate(), maximize);
  ASSERT_TRUE(pruner != nullptr);

  std::vector<int64_t> want_bands;
  const bool prefix = c.contains("expected_bands_prefix");
  for (const Json& b : c[prefix ? "expected_bands_prefix" : "expected_bands"]) {
    want_bands.push_back(b.get<int64_t>());
  }
  std::vector<int64_t> got_bands = pruner->bands();
  if (prefix && got_bands.size() > want_bands.size()) got_bands.resize(want_bands.size());
  EXPECT_EQ(got_bands, want_bands) << "W&B's bands differ" << about;
  absl::StrAppend(&about, "\n  W&B bands ", absl::StrJoin(want_bands, ", "), ", thresholds ",
                  c.value("wandb_thresholds", Json::array()).dump(),
                  " (negated when maximising; W&B reads h[band - 1] of NaN-free histories)");

  const std::vector<WandbRun> runs = RunsOf(c);
  for (size_t t = 0; t < runs.size(); ++t) {
    for (size_t i = 0; i < runs[t].history.size(); ++i) {
      pruner->OnReport({.trial = static_cast<int64_t>(t),
                        .index = static_cast<int64_t>(i),
                        .resource = static_cast<double>(i),
                        .value = runs[t].history[i]},
                       /*decide=*/false);
    }
  }
  std::vector<std::string> stopped;
  std::vector<std::string> reasons;
  for (size_t t = 0; t < runs.size(); ++t) {
    if (!runs[t].running || runs[t].history.empty()) continue;
    // W&B's stop_runs judges every running run on its complete history at once.
    const pruning::Decision d = pruner->Judge(static_cast<int64_t>(t));
    if (d.stop) {
      stopped.push_back(runs[t].name);
      reasons.push_back(absl::StrCat(runs[t].name, ": ", d.reason));
    }
  }
  std::vector<std::string> want;
  for (const Json& n : c["expected_stopped"]) want.push_back(n.get<std::string>());
  EXPECT_EQ(stopped, want) << "W&B stops [" << absl::StrJoin(want, ", ") << "], sweepd stops ["
                           << absl::StrJoin(stopped, ", ") << "]\n  sweepd's reasons:\n    "
                           << absl::StrJoin(reasons, "\n    ") << about;
}

INSTANTIATE_TEST_SUITE_P(Wandb, WandbHyperband, testing::ValuesIn(LoadCases("hyperband.json")),
                         CaseName);

// ---------------------------------------------------------------------------------------------
// command.json: the agent's context is W&B's (env /usr/bin/env, interpreter python, program and
// args file as given), so only the template's semantics are compared.

class WandbCommand : public testing::TestWithParam<Case> {};

TEST_P(WandbCommand, ExpandsAsWandbsAgentDoes) {
  const Json& c = *GetParam().data;
  ASSERT_FALSE(c.contains("load_error")) << c["load_error"].get<std::string>();
  const std::string about = About(c);

  std::vector<std::string> command;
  ParamSet params;
  if (c.contains("config")) {
    // No command in the config: the spec's default.
    auto parsed = ParseSweepSpec(c["config"].dump(), /*external=*/false);
    ASSERT_TRUE(parsed.ok()) << parsed.status().message() << about;
    command = LaunchCommand(parsed->spec);
    params = ParamsFromWandbConfig(parsed->spec, c["args"]);
  } else {
    for (const Json& item : c["command"]) {
      // Non-string items are YAML scalars; their text is what sweepd's parser keeps.
      command.push_back(item.is_string() ? item.get<std::string>() : item.dump());
    }
    if (c.contains("parameters")) {
      Json config = {{"method", "random"}, {"parameters", c["parameters"]}};
      auto parsed = ParseSweepSpec(config.dump(), /*external=*/true);
      ASSERT_TRUE(parsed.ok()) << parsed.status().message() << about;
      params = ParamsFromWandbConfig(parsed->spec, c["args"]);
    } else {
      for (const auto& [name, arg] : c["args"].items()) {
        v1::TrialParam p;
        p.set_name(name);
        p.set_value_json(ValueJson(arg["value"]));
        params.push_back(std::move(p));
      }
    }
  }

  const Json& agent = c["agent"];
  const Json env = c.value("env", Json::object());
  CommandContext context;
  context.env = agent["env"].get<std::string>();
  context.interpreter = agent["interpreter"].get<std::string>();
  context.program = agent["program"].get<std::string>();
  context.args_json_file = agent["args_json_file"].get<std::string>();
  context.getenv = [env](const std::string& name) -> std::optional<std::string> {
    if (!env.contains(name)) return std::nullopt;
    return env[name].get<std::string>();
  };

  std::vector<std::string> want;
  for (const Json& a : c["expected_argv"]) want.push_back(a.get<std::string>());
  const std::string show =
      absl::StrCat("\n  command: ", Json(command).dump(), "\n  W&B argv:    ", Json(want).dump());
  auto argv = ExpandCommand(command, params, context);
  ASSERT_TRUE(argv.ok()) << "sweepd cannot expand what W&B's agent runs: " << argv.status() << show
                         << about;
  EXPECT_EQ(*argv, want) << "argv differs" << show << "\n  sweepd argv: " << Json(*argv).dump()
                         << about;
  if (c.contains("expected_args_json_file_content")) {
    const Json written = Json::parse(NestedParamsJson(params), nullptr, false);
    EXPECT_TRUE(SameValue(written, c["expected_args_json_file_content"]))
        << "${args_json_file} content: W&B " << c["expected_args_json_file_content"].dump()
        << ", sweepd " << NestedParamsJson(params) << about;
  }
}

INSTANTIATE_TEST_SUITE_P(Wandb, WandbCommand, testing::ValuesIn(LoadCases("command.json")),
                         CaseName);

// ---------------------------------------------------------------------------------------------
// random.json

// numpy's histogram: bins [b0, b1), ..., [b_{n-1}, b_n] (the last one closed).
std::vector<double> Histogram(const std::vector<double>& xs, const std::vector<double>& bins) {
  std::vector<double> counts(bins.size() - 1, 0);
  for (double x : xs) {
    if (!(x >= bins.front() && x <= bins.back())) continue;
    size_t k = static_cast<size_t>(std::upper_bound(bins.begin(), bins.end(), x) - bins.begin());
    k = k == 0 ? 0 : k - 1;
    if (k >= counts.size()) k = counts.size() - 1;
    counts[k] += 1;
  }
  return counts;
}

// numpy's isclose with its defaults.
bool IsClose(double a, double b) { return std::fabs(a - b) <= 1e-8 + 1e-5 * std::fabs(b); }

class WandbRandom : public testing::TestWithParam<Case> {};

TEST_P(WandbRandom, SamplesSatisfyWandbsAssertions) {
  const Json& c = *GetParam().data;
  ASSERT_FALSE(c.contains("load_error")) << c["load_error"].get<std::string>();
  const std::string about = absl::StrCat(About(c), "\n  spec: ", SpecText(c));
  auto parsed = ParseSweepSpec(SpecText(c), /*external=*/true);
  ASSERT_TRUE(parsed.ok()) << parsed.status().message() << about;
  const v1::SweepSpec& spec = parsed->spec;
  const std::string param = c["param"].get<std::string>();
  const size_t n = c["n"].get<size_t>();
  RandomSearch random(spec);

  std::vector<Json> values;
  for (size_t i = 0; i < n; ++i) {
    const ParamSet params = random.Sample(i);
    for (const auto& p : params) {
      if (p.name() == param) {
        values.push_back(Json::parse(p.value_json(), nullptr, /*allow_exceptions=*/false));
      }
    }
  }
  ASSERT_EQ(values.size(), n) << "no parameter " << param << about;
  const Json& checks = c["checks"];

  if (checks.contains("categorical")) {
    const Json& cat = checks["categorical"];
    const double sigmas = cat["max_sigma"].get<double>();
    for (size_t k = 0; k < cat["values"].size(); ++k) {
      const double expected = static_cast<double>(n) * cat["probabilities"][k].get<double>();
      const auto count = static_cast<double>(std::count_if(
          values.begin(), values.end(), [&](const Json& v) { return v == cat["values"][k]; }));
      EXPECT_LE(std::fabs(count - expected), sigmas * std::sqrt(expected))
          << "value " << cat["values"][k].dump() << ": " << count << " of " << n
          << " samples, W&B expects " << expected << " +- " << sigmas << " sigma" << about;
    }
    return;
  }

  std::vector<double> xs;
  for (const Json& v : values) {
    ASSERT_TRUE(v.is_number()) << "sample " << v.dump() << " is not a number" << about;
    xs.push_back(v.get<double>());
  }
  const auto [lo_it, hi_it] = std::minmax_element(xs.begin(), xs.end());
  if (checks.contains("min")) {
    const double lo = checks["min"].get<double>();
    EXPECT_GE(*lo_it, lo - 1e-12 * std::fabs(lo)) << "a sample is below W&B's bound" << about;
  }
  if (checks.contains("max")) {
    const double hi = checks["max"].get<double>();
    EXPECT_LE(*hi_it, hi + 1e-12 * std::fabs(hi)) << "a sample is above W&B's bound" << about;
  }
  if (checks.contains("multiple_of")) {
    const double q = checks["multiple_of"].get<double>();
    int bad = 0;
    double example = 0;
    for (double x : xs) {
      const double r = x - q * std::floor(x / q);  // numpy's remainder: the sign of q
      if (!(IsClose(r, 0) || IsClose(r, q))) {
        if (bad++ == 0) example = x;
      }
    }
    EXPECT_EQ(bad, 0) << bad << " samples are not multiples of q = " << q << ", e.g. " << example
                      << about;
  }
  if (checks.contains("integer")) {
    const bool integer = checks["integer"].get<bool>();
    const size_t ints = static_cast<size_t>(std::count_if(
        values.begin(), values.end(), [](const Json& v) { return v.is_number_integer(); }));
    EXPECT_EQ(ints, integer ? n : 0)
        << (integer ? "W&B's samples are integers (an integer q or int_uniform)"
                    : "W&B's samples are floats")
        << "; e.g. sweepd gives " << values.front().dump() << about;
  }
  if (c.contains("histogram")) {
    const Json& h = c["histogram"];
    const std::vector<double> bins = h["bins"].get<std::vector<double>>();
    const std::vector<double> want = h["expected_counts"].get<std::vector<double>>();
    const double max_sigma = h["max_sigma"].get<double>();
    const std::vector<double> got = Histogram(xs, bins);
    ASSERT_EQ(got.size(), want.size());
    for (size_t k = 0; k < got.size(); ++k) {
      const double denom = std::sqrt(got[k] + want[k]);
      const double sigma = denom > 0 ? std::fabs(got[k] - want[k]) / denom : 0;
      EXPECT_LT(sigma, max_sigma) << "bin [" << bins[k] << ", " << bins[k + 1] << "): sweepd "
                                  << got[k] << " samples, W&B's law " << want[k] << about;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Wandb, WandbRandom, testing::ValuesIn(LoadCases("random.json")), CaseName);

}  // namespace
}  // namespace sweepd
