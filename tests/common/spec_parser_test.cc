// Tests of the sweep-spec parser: the fixture corpus (every good spec parses and survives a
// round trip through its normalised YAML; every bad spec reports the error its first line
// names), W&B's inference rules and defaults, sweepd's defaults, YAML typing, and hostile input
// (malformed YAML, binary junk, huge, deeply nested and alias-bomb documents).

#include "common/spec_parser.h"

#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/command_template.h"
#include "common/param_space.h"
#include "common/spec_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::StartsWith;

namespace fs = std::filesystem;

fs::path FixtureDir(absl::string_view kind) {
  return fs::path(SWEEPD_SOURCE_DIR) / "tests" / "fixtures" / "specs" / std::string(kind);
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// File names of the fixtures of one kind, sorted so test names are stable.
std::vector<std::string> FixtureNames(absl::string_view kind) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(FixtureDir(kind), ec)) {
    if (entry.is_regular_file() && entry.path().extension() == ".yaml") {
      names.push_back(entry.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string TestNameOf(const testing::TestParamInfo<std::string>& info) {
  std::string name = fs::path(info.param).stem().string();
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

// Parses a spec that must be valid.
ParsedSpec MustParse(const std::string& yaml) {
  auto parsed = ParseSweepSpec(yaml);
  EXPECT_TRUE(parsed.ok()) << parsed.status() << "\nspec:\n" << yaml;
  return parsed.ok() ? *std::move(parsed) : ParsedSpec{};
}

// Parses a spec that must be invalid; returns its error lines.
std::vector<std::string> MustFail(const std::string& yaml) {
  auto parsed = ParseSweepSpec(yaml);
  EXPECT_FALSE(parsed.ok()) << "parsed although invalid:\n" << yaml;
  if (parsed.ok()) return {};
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << parsed.status();
  return SpecErrorLines(parsed.status());
}

// A minimal valid spec around one parameter definition.
std::string OneParam(const std::string& definition, const std::string& method = "random") {
  return absl::StrCat("program: train.py\nmethod: ", method, "\nparameters:\n  x: ", definition,
                      "\n");
}

// The single leaf of a spec, by value (specs here are often temporaries).
v1::Parameter OnlyLeaf(const v1::SweepSpec& spec) {
  auto leaves = LeafParameters(spec);
  EXPECT_THAT(leaves, SizeIs(1));
  return leaves.empty() ? v1::Parameter() : *leaves.front();
}

// ---------------------------------------------------------------------------------------------
// The fixture corpus.

class GoodSpecTest : public testing::TestWithParam<std::string> {};

TEST_P(GoodSpecTest, ParsesAndRoundTripsThroughNormalisedYaml) {
  const std::string yaml = ReadFile(FixtureDir("good") / GetParam());
  ASSERT_FALSE(yaml.empty());
  auto first = ParseSweepSpec(yaml);
  ASSERT_TRUE(first.ok()) << first.status();

  const std::string normalised = JsonToYaml(SpecToJson(first->spec));
  auto second = ParseSweepSpec(normalised);
  ASSERT_TRUE(second.ok()) << second.status() << "\nnormalised:\n" << normalised;
  EXPECT_TRUE(MessageDifferencer::Equals(first->spec, second->spec))
      << "original:\n"
      << first->spec.DebugString() << "after round trip:\n"
      << second->spec.DebugString() << "normalised YAML:\n"
      << normalised;
  // Normalising is idempotent.
  EXPECT_EQ(JsonToYaml(SpecToJson(second->spec)), normalised);
}

TEST_P(GoodSpecTest, NormalisedJsonIsAlsoAValidSpec) {
  // "JSON is YAML too": the JSON export parses back to the same spec.
  auto first = ParseSweepSpec(ReadFile(FixtureDir("good") / GetParam()));
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string json = SpecToJson(first->spec).dump(2);
  auto second = ParseSweepSpec(json);
  ASSERT_TRUE(second.ok()) << second.status() << "\njson:\n" << json;
  EXPECT_TRUE(MessageDifferencer::Equals(first->spec, second->spec)) << json;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoodSpecTest, testing::ValuesIn(FixtureNames("good")),
                         TestNameOf);

class BadSpecTest : public testing::TestWithParam<std::string> {};

TEST_P(BadSpecTest, ReportsTheExpectedError) {
  const std::string yaml = ReadFile(FixtureDir("bad") / GetParam());
  constexpr absl::string_view kPrefix = "# expect: ";
  ASSERT_TRUE(absl::StartsWith(yaml, kPrefix)) << "first line must be '# expect: <substring>'";
  const std::string expected(
      absl::string_view(yaml).substr(kPrefix.size(), yaml.find('\n') - kPrefix.size()));
  ASSERT_FALSE(expected.empty());

  auto parsed = ParseSweepSpec(yaml);
  ASSERT_FALSE(parsed.ok()) << "parsed although invalid";
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(SpecErrorLines(parsed.status()), Contains(HasSubstr(expected)))
      << parsed.status().message();
}

INSTANTIATE_TEST_SUITE_P(Fixtures, BadSpecTest, testing::ValuesIn(FixtureNames("bad")), TestNameOf);

// The corpus itself: enough fixtures, and together they exercise everything the format has.
TEST(SpecFixtureCorpusTest, GoodFixturesCoverEveryKeyDistributionMethodPrunerAndMacro) {
  const auto names = FixtureNames("good");
  ASSERT_GE(names.size(), 12u);
  EXPECT_GE(FixtureNames("bad").size(), 20u);

  std::set<v1::Distribution> distributions;
  std::set<v1::SearchMethod> methods;
  std::set<v1::Pruner::Type> pruners;
  std::set<std::string> tokens;
  std::string all_text;
  bool min_iter = false, max_iter_s = false, strict_false = false, target = false;
  bool with_probabilities = false, without_probabilities = false, two_levels = false;
  bool int_q = false, float_q = false;
  for (const auto& name : names) {
    const std::string yaml = ReadFile(FixtureDir("good") / name);
    all_text += "\n" + yaml;
    auto parsed = ParseSweepSpec(yaml);
    ASSERT_TRUE(parsed.ok()) << name << ": " << parsed.status();
    const v1::SweepSpec& spec = parsed->spec;
    methods.insert(spec.method());
    if (spec.has_pruner()) pruners.insert(spec.pruner().type());
    tokens.insert(spec.command().begin(), spec.command().end());
    if (spec.has_early_terminate()) {
      min_iter |= spec.early_terminate().has_min_iter();
      max_iter_s |= spec.early_terminate().has_max_iter() && spec.early_terminate().has_s();
      strict_false |= !spec.early_terminate().strict();
    }
    target |= spec.metric().has_target();
    for (const v1::Parameter* leaf : LeafParameters(spec)) {
      distributions.insert(leaf->distribution());
      if (leaf->distribution() == v1::CATEGORICAL) {
        (leaf->probabilities_size() > 0 ? with_probabilities : without_probabilities) = true;
      }
      if (leaf->distribution() == v1::Q_UNIFORM) (leaf->integer() ? int_q : float_q) = true;
      two_levels |= std::count(leaf->path().begin(), leaf->path().end(), '.') >= 2;
    }
  }
  for (int d = v1::CONSTANT; d <= v1::Q_BETA; ++d) {
    EXPECT_TRUE(distributions.contains(static_cast<v1::Distribution>(d)))
        << "no good fixture uses " << DistributionName(static_cast<v1::Distribution>(d));
  }
  for (int m = v1::SEARCH_METHOD_GRID; m <= v1::SEARCH_METHOD_SOBOL; ++m) {
    EXPECT_TRUE(methods.contains(static_cast<v1::SearchMethod>(m)))
        << "no good fixture uses method " << SearchMethodName(static_cast<v1::SearchMethod>(m));
  }
  for (int t = v1::Pruner::NONE; t <= v1::Pruner::THRESHOLD; ++t) {
    EXPECT_TRUE(pruners.contains(static_cast<v1::Pruner::Type>(t)))
        << "no good fixture uses pruner " << PrunerTypeName(static_cast<v1::Pruner::Type>(t));
  }
  for (absl::string_view macro : CommandMacroNames()) {
    const std::string needle =
        macro == "envvar:NAME" ? std::string("${envvar:") : absl::StrCat("${", macro, "}");
    EXPECT_TRUE(std::any_of(tokens.begin(), tokens.end(),
                            [&](const std::string& t) { return absl::StrContains(t, needle); }))
        << "no good fixture's command uses " << needle;
  }
  // Every top-level key (W&B's and sweepd's) and the settings keys appear written out.
  for (absl::string_view key : absl::StrSplit(
           "program method metric parameters early_terminate command run_cap name description "
           "project entity parallelism resources pruner seed max_failures max_retries budget "
           "metric_pattern search eta strict target goal probabilities mu sigma a b q",
           ' ')) {
    EXPECT_TRUE(
        std::regex_search(all_text, std::regex(absl::StrCat(R"((^|[\n{,]) *"?)", key, R"("? *:)"))))
        << "no good fixture writes the key " << key;
  }
  EXPECT_TRUE(min_iter) << "no early_terminate with min_iter";
  EXPECT_TRUE(max_iter_s) << "no early_terminate with max_iter and s";
  EXPECT_TRUE(strict_false) << "no early_terminate with strict: false";
  EXPECT_TRUE(target) << "no metric with a target";
  EXPECT_TRUE(with_probabilities && without_probabilities);
  EXPECT_TRUE(int_q && float_q) << "q_uniform with integer and with float q";
  EXPECT_TRUE(two_levels) << "no parameter nested two levels deep";
}

// ---------------------------------------------------------------------------------------------
// Errors.

TEST(SpecParserErrorsTest, ReportsEveryErrorOnePerLine) {
  const std::string yaml = R"(program: train.py
method: grd
metric: {name: loss, goal: up}
parameters:
  lr: {min: 1, max: 0.5}
  bs: {values: []}
  mom: {distribution: uniform, min: 0, max: 1, q: 0.1}
  opt:
    parameters:
      beta1: {distribution: normal, sigma: -1}
command: ["${env}", "${nope}"]
early_terminate: {type: hyperband, eta: 0.5}
run_cap: 0
colour: blue
)";
  const std::vector<std::string> lines = MustFail(yaml);
  const std::vector<std::string> expected = {
      "colour: unknown key",
      "method: 'grd' is not a method",
      "metric.goal: 'up' is not a goal",
      "parameters.lr.min: min 1 must be less than max 0.5",
      "parameters.bs.values: must be a non-empty list",
      "parameters.mom.q: is not used by distribution uniform",
      "parameters.opt.parameters.beta1.sigma: must be >= 0; got -1",
      "early_terminate: needs min_iter, or max_iter together with s",
      "early_terminate.eta: must be > 1; got 0.5",
      "run_cap: must be >= 1; got 0",
  };
  EXPECT_THAT(lines, SizeIs(expected.size())) << absl::StrJoin(lines, "\n");
  for (const auto& want : expected) {
    EXPECT_EQ(std::count_if(lines.begin(), lines.end(),
                            [&](const std::string& line) { return absl::StartsWith(line, want); }),
              1)
        << "want exactly one line starting with: " << want << "\ngot:\n"
        << absl::StrJoin(lines, "\n");
  }
}

TEST(SpecParserErrorsTest, EveryLineNamesItsKeyPath) {
  auto parsed = ParseSweepSpec("method: x\nparameters: {a: {min: 2, max: 1}, b: {value: 1, q: 1}}");
  ASSERT_FALSE(parsed.ok());
  for (const std::string& line : SpecErrorLines(parsed.status())) {
    EXPECT_TRUE(std::regex_search(line, std::regex(R"(^[A-Za-z_][\w.\[\]]*: \S)"))) << line;
  }
}

TEST(SpecParserErrorsTest, SpecErrorLinesSplitsAndSkipsEmptyLines) {
  EXPECT_THAT(SpecErrorLines(absl::InvalidArgumentError("a: x\nb: y\n")),
              ElementsAre("a: x", "b: y"));
  EXPECT_THAT(SpecErrorLines(absl::OkStatus()), IsEmpty());
}

TEST(SpecParserErrorsTest, UnknownKeysAreReportedWithTheirPathAtEveryLevel) {
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "lr: 0.1\n"),
              Contains(StartsWith("lr: unknown key")));
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "metric: {name: l, mode: min}\n"),
              Contains(StartsWith("metric.mode: unknown key")));
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2, default: 1}")),
              Contains(StartsWith("parameters.x.default: unknown key")));
  EXPECT_THAT(
      MustFail(OneParam("{parameters: {y: {parameters: {z: {values: [1], weights: [1]}}}}}")),
      Contains(StartsWith("parameters.x.parameters.y.parameters.z.weights: unknown key")));
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "metric: {name: l}\n" +
                       "pruner: {type: median, patience: 3}\n"),
              Contains(StartsWith("pruner.patience: is not a setting of pruner median")));
  EXPECT_THAT(
      MustFail(OneParam("{min: 1, max: 2}") + "early_terminate: {type: hyperband, min_iter: 1, "
                                              "max_epochs: 9}\nmetric: {name: l}\n"),
      Contains(StartsWith("early_terminate.max_epochs: unknown key")));
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "resources: {gpus: 2}\n"),
              Contains(StartsWith("resources.gpus: unknown key")));
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "budget: {hours: 2}\n"),
              Contains(StartsWith("budget.hours: unknown key")));
}

TEST(SpecParserErrorsTest, PrunerSettingsOfAnotherTypeAreRejected) {
  const std::string base = OneParam("{min: 1, max: 2}") + "metric: {name: loss}\n";
  EXPECT_THAT(MustFail(base + "pruner: {type: none, min_resource: 1}\n"),
              Contains(HasSubstr("pruner.min_resource: is not a setting of pruner none (it takes: "
                                 "nothing)")));
  EXPECT_THAT(MustFail(base + "pruner: {type: asha, max_resource: 9, percentile: 10}\n"),
              Contains(StartsWith("pruner.percentile: is not a setting of pruner asha")));
  EXPECT_THAT(MustFail(base + "pruner: {type: median, brackets: 2}\n"),
              Contains(StartsWith("pruner.brackets: is not a setting of pruner median")));
  EXPECT_THAT(MustFail(base + "pruner: {max_resource: 9}\n"),
              Contains(StartsWith("pruner.type: required")));
  EXPECT_THAT(MustFail(base + "pruner: {type: percentile}\n"),
              Contains(StartsWith("pruner.percentile: required by pruner percentile")));
  EXPECT_THAT(MustFail(base + "pruner: {type: percentile, percentile: -1}\n"),
              Contains(StartsWith("pruner.percentile: must be in [0, 100]; got -1")));
  EXPECT_THAT(MustFail(base + "pruner: {type: asha, reduction_factor: 1}\n"),
              Contains(StartsWith("pruner.reduction_factor: must be > 1; got 1")));
  EXPECT_THAT(MustFail(base + "pruner: {type: asha, min_resource: 0}\n"),
              Contains(StartsWith("pruner.min_resource: must be > 0; got 0")));
  EXPECT_THAT(MustFail(base + "pruner: {type: asha, min_resource: 10, max_resource: 5}\n"),
              Contains(StartsWith("pruner.max_resource: must be greater than min_resource 10")));
}

TEST(SpecParserErrorsTest, EarlyTerminateSchedules) {
  const std::string base = OneParam("{min: 1, max: 2}") + "metric: {name: loss}\n";
  // As W&B: both schedules given, max_iter and s win, with a warning.
  auto both =
      ParseSweepSpec(base + "early_terminate: {type: hyperband, min_iter: 3, max_iter: 27, s: 2}");
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_THAT(both->warnings, Contains(HasSubstr("min_iter is ignored")));
  EXPECT_THAT(MustFail(base + "early_terminate: {type: hyperband, min_iter: 3, max_iter: 27}"),
              Contains(HasSubstr("early_terminate: give min_iter, or max_iter with s")));
  EXPECT_THAT(MustFail(base + "early_terminate: {type: hyperband, s: 2}"),
              Contains("early_terminate: needs min_iter, or max_iter together with s"));
  EXPECT_THAT(MustFail(base + "early_terminate: {min_iter: 3}"),
              Contains(StartsWith("early_terminate.type: required")));
  EXPECT_THAT(MustFail(base + "early_terminate: {type: hyperband, min_iter: 0}"),
              Contains(StartsWith("early_terminate.min_iter: must be >= 1; got 0")));
  EXPECT_THAT(MustFail(base + "early_terminate: {type: hyperband, min_iter: 3, strict: yes}"),
              Contains(StartsWith("early_terminate.strict: must be true or false")));
}

TEST(SpecParserErrorsTest, ValuesFormsNeedPositiveBoundsExponentFormsDoNot) {
  for (const char* d : {"log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values"}) {
    SCOPED_TRACE(d);
    EXPECT_THAT(MustFail(OneParam(absl::StrCat("{distribution: ", d, ", min: 0, max: 1}"))),
                Contains(StartsWith(absl::StrCat("parameters.x.min: must be > 0 for ", d))));
    EXPECT_THAT(MustFail(OneParam(absl::StrCat("{distribution: ", d, ", min: -2, max: 1}"))),
                Contains(StartsWith("parameters.x.min: must be > 0")));
  }
  // The exponent forms take any exponents, negative included.
  for (const char* d : {"log_uniform", "q_log_uniform", "inv_log_uniform"}) {
    SCOPED_TRACE(d);
    MustParse(OneParam(absl::StrCat("{distribution: ", d, ", min: -9.2, max: -2.3}")));
  }
}

TEST(SpecParserErrorsTest, NonPositiveSpreadAndStepAreRejected) {
  EXPECT_THAT(MustFail(OneParam("{distribution: q_normal, q: -1}")),
              Contains("parameters.x.q: must be > 0; got -1"));
  EXPECT_THAT(MustFail(OneParam("{distribution: q_beta, q: 0}")),
              Contains("parameters.x.q: must be > 0; got 0"));
  EXPECT_THAT(MustFail(OneParam("{distribution: log_normal, sigma: -0.5}")),
              Contains("parameters.x.sigma: must be >= 0; got -0.5"));
  EXPECT_THAT(MustFail(OneParam("{distribution: beta, b: -1}")),
              Contains("parameters.x.b: must be >= 0; got -1"));
}

// W&B's schema allows sigma: 0 and a: 0 / b: 0 (minimum 0). They describe a single value (the
// distribution's limit), which sweepd takes as a constant, saying so.
TEST(SpecParserSemanticsTest, ZeroSpreadIsValidWandbAndBecomesItsConstant) {
  const ParsedSpec normal = MustParse(OneParam("{distribution: normal, mu: 0.5, sigma: 0}"));
  EXPECT_EQ(OnlyLeaf(normal.spec).distribution(), v1::CONSTANT);
  EXPECT_THAT(OnlyLeaf(normal.spec).values_json(), ElementsAre("0.5"));
  EXPECT_THAT(normal.warnings, Contains(HasSubstr("parameters.x: normal with sigma 0")));
  const ParsedSpec q = MustParse(OneParam("{distribution: q_normal, mu: 7, sigma: 0, q: 2}"));
  EXPECT_THAT(OnlyLeaf(q.spec).values_json(), ElementsAre("8"));
  const ParsedSpec lognormal = MustParse(OneParam("{distribution: log_normal, sigma: 0}"));
  EXPECT_THAT(OnlyLeaf(lognormal.spec).values_json(), ElementsAre("1.0"));
  const ParsedSpec a0 = MustParse(OneParam("{distribution: beta, a: 0, b: 2}"));
  EXPECT_THAT(OnlyLeaf(a0.spec).values_json(), ElementsAre("0.0"));
  const ParsedSpec b0 = MustParse(OneParam("{distribution: beta, a: 2, b: 0}"));
  EXPECT_THAT(OnlyLeaf(b0.spec).values_json(), ElementsAre("1.0"));
  EXPECT_THAT(MustFail(OneParam("{distribution: beta, a: 0, b: 0}")),
              Contains(HasSubstr("no single limit")));
}

TEST(SpecParserErrorsTest, KeysTheDistributionDoesNotTakeAreNamed) {
  EXPECT_THAT(MustFail(OneParam("{distribution: uniform, min: 0, max: 1, q: 0.1}")),
              Contains("parameters.x.q: is not used by distribution uniform (it takes: min, max)"));
  EXPECT_THAT(MustFail(OneParam("{distribution: normal, min: 0}")),
              Contains(StartsWith("parameters.x.min: is not used by distribution normal")));
  EXPECT_THAT(MustFail(OneParam("{value: 1, values: [1, 2]}")),
              Contains(StartsWith("parameters.x.value: is not used by distribution categorical")));
  EXPECT_THAT(MustFail(OneParam("{value: 3, probabilities: [1]}")),
              Contains(StartsWith("parameters.x.probabilities: is not used by distribution "
                                  "constant")));
  EXPECT_THAT(MustFail(OneParam("{distribution: constant}")),
              Contains("parameters.x.value: required by distribution constant"));
  EXPECT_THAT(MustFail(OneParam("{distribution: q_uniform, min: 0}")),
              Contains("parameters.x.max: required by distribution q_uniform"));
}

TEST(SpecParserErrorsTest, WrongTypesAreNamed) {
  EXPECT_THAT(MustFail(OneParam("[1, 2]")), Contains(StartsWith("parameters.x: must be a map")));
  EXPECT_THAT(MustFail(OneParam("{values: 3}")),
              Contains("parameters.x.values: must be a non-empty list; got '3'"));
  EXPECT_THAT(MustFail(OneParam("{min: one, max: 2}")),
              Contains(StartsWith("parameters.x.min: must be a number; got 'one'")));
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "seed: -1\n"),
              Contains("seed: must be >= 0; got -1"));
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "parallelism: 2.5\n"),
              Contains("parallelism: must be an integer; got '2.5'"));
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "max_retries: 1001\n"),
              Contains("max_retries: must be in [0, 1000]; got 1001"));
  EXPECT_THAT(MustFail("method: random\nprogram: {a: 1}\nparameters: {x: {value: 1}}\n"),
              Contains("program: must be a string; got a map"));
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "command: [python, [a]]\n"),
              Contains("command[1]: must be a string; got a list"));
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "metric: loss\n"),
              Contains(StartsWith("metric: must be a map")));
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "metric: {goal: minimize}\n"),
              Contains(StartsWith("metric.name: required")));
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "budget: {gpu_hours: 0}\n"),
              Contains("budget.gpu_hours: must be > 0; got 0"));
}

TEST(SpecParserTest, CheckpointDirIsAnAbsoluteSharedFolder) {
  const ParsedSpec parsed =
      MustParse(OneParam("{min: 1, max: 2}") + "checkpoint: {dir: /mnt/shared/ckpt}\n");
  EXPECT_EQ(parsed.spec.checkpoint().dir(), "/mnt/shared/ckpt");
  EXPECT_FALSE(MustParse(OneParam("{min: 1, max: 2}")).spec.has_checkpoint());
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "checkpoint: {dir: ckpt}\n"),
              Contains(HasSubstr("checkpoint.dir: must be an absolute path that every agent "
                                 "reaches (a shared filesystem); got \"ckpt\"")));
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "checkpoint: /mnt/ckpt\n"),
              Contains(StartsWith("checkpoint: must be a map {dir: /shared/path, keep_best: K, "
                                  "delete_pruned_after_hours: H}")));
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "checkpoint: {keep: 3}\n"),
              Contains(StartsWith("checkpoint.keep: unknown key")));
  const ParsedSpec policy =
      MustParse(OneParam("{min: 1, max: 2}") +
                "metric: {name: loss}\n"
                "checkpoint: {keep_best: 3, delete_pruned_after_hours: 1.5}\n");
  EXPECT_EQ(policy.spec.checkpoint().keep_best(), 3);
  EXPECT_DOUBLE_EQ(policy.spec.checkpoint().delete_pruned_after_hours(), 1.5);
  EXPECT_THAT(
      MustFail(OneParam("{min: 1, max: 2}") + "metric: {name: loss}\ncheckpoint: {keep_best: 0}\n"),
      Contains(HasSubstr("checkpoint.keep_best")));
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") +
                       "metric: {name: loss}\ncheckpoint: {delete_pruned_after_hours: -1}\n"),
              Contains("checkpoint.delete_pruned_after_hours: must be > 0 and at most 1000000 "
                       "hours; got -1"));
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "checkpoint: {keep_best: 2}\n"),
              Contains("checkpoint.keep_best: needs a metric to rank trials by: give metric: "
                       "{name: ...}"));
}

TEST(SpecParserErrorsTest, ParameterNamesFollowWandbsPattern) {
  for (const char* name : {"lr", "_private", "optimizer.lr", "model-size", "A1_b.c-d"}) {
    SCOPED_TRACE(name);
    MustParse(
        absl::StrCat("program: t.py\nmethod: random\nparameters:\n  ", name, ": {value: 1}\n"));
  }
  for (const char* name : {"\"9lives\"", "\"with space\"", "\"semi;colon\"", "\"-dash\"",
                           "\".dot\"", "\"\"", "\"über\""}) {
    SCOPED_TRACE(name);
    EXPECT_THAT(MustFail(absl::StrCat("program: t.py\nmethod: random\nparameters:\n  ", name,
                                      ": {value: 1}\n")),
                Contains(HasSubstr("invalid parameter name")));
  }
  // W&B sets no length limit; sweepd's bound is far past any real name.
  MustParse(absl::StrCat("program: t.py\nmethod: random\nparameters:\n  ", std::string(129, 'a'),
                         ": {value: 1}\n"));
  const std::string long_name(1001, 'a');
  EXPECT_THAT(MustFail(absl::StrCat("program: t.py\nmethod: random\nparameters:\n  ", long_name,
                                    ": {value: 1}\n")),
              Contains(HasSubstr("at most 1000 characters")));
  MustParse(absl::StrCat("program: t.py\nmethod: random\nparameters:\n  ", std::string(128, 'a'),
                         ": {value: 1}\n"));
}

TEST(SpecParserErrorsTest, WandbKeysSweepdDoesNotSupportAreErrorsNotSilentlyIgnored) {
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "scheduler: {engine: optuna}\n"),
              Contains(StartsWith("scheduler: custom W&B schedulers are not supported")));
}

TEST(SpecParserErrorsTest, ParametersNestSixteenLevelsAtMost) {
  auto nested = [](int groups) {
    std::string node = absl::StrCat("l", groups + 1, ": {value: 1}");
    for (int i = groups; i >= 1; --i) node = absl::StrCat("l", i, ": {parameters: {", node, "}}");
    return absl::StrCat("program: t.py\nmethod: random\nparameters:\n  ", node, "\n");
  };
  const ParsedSpec ok = MustParse(nested(15));
  EXPECT_EQ(OnlyLeaf(ok.spec).path(), "l1.l2.l3.l4.l5.l6.l7.l8.l9.l10.l11.l12.l13.l14.l15.l16");
  EXPECT_THAT(MustFail(nested(16)), Contains(HasSubstr("parameters nest more than 16 levels")));
}

// ---------------------------------------------------------------------------------------------
// W&B semantics: inference, defaults, order, nesting.

TEST(SpecParserSemanticsTest, InfersDistributionsAsWandbDoes) {
  const ParsedSpec parsed = MustParse(R"(program: train.py
method: random
parameters:
  categorical: {values: [1, 2, 3]}
  constant: {value: 42}
  ints: {min: 1, max: 10}
  floats: {min: 0.1, max: 0.9}
  float_min: {min: 0.0, max: 3}
  float_max: {min: 0, max: 3.0}
  exponent: {min: 1e-4, max: 1}
)");
  const auto leaves = LeafParameters(parsed.spec);
  ASSERT_THAT(leaves, SizeIs(7));
  EXPECT_EQ(leaves[0]->distribution(), v1::CATEGORICAL);
  EXPECT_THAT(leaves[0]->values_json(), ElementsAre("1", "2", "3"));
  EXPECT_THAT(leaves[0]->probabilities(), IsEmpty());
  EXPECT_EQ(leaves[1]->distribution(), v1::CONSTANT);
  EXPECT_THAT(leaves[1]->values_json(), ElementsAre("42"));
  EXPECT_EQ(leaves[2]->distribution(), v1::INT_UNIFORM);
  EXPECT_TRUE(leaves[2]->integer());
  EXPECT_EQ(leaves[2]->min(), 1);
  EXPECT_EQ(leaves[2]->max(), 10);
  for (int i = 3; i < 7; ++i) {
    SCOPED_TRACE(leaves[i]->name());
    EXPECT_EQ(leaves[i]->distribution(), v1::UNIFORM);
    EXPECT_FALSE(leaves[i]->integer());
  }
  EXPECT_DOUBLE_EQ(leaves[3]->min(), 0.1);
  EXPECT_DOUBLE_EQ(leaves[3]->max(), 0.9);
  EXPECT_DOUBLE_EQ(leaves[6]->min(), 1e-4);
}

TEST(SpecParserSemanticsTest, ExplicitDistributionWinsOverInference) {
  // Integer bounds with an explicit `uniform` stay real-valued.
  const ParsedSpec parsed = MustParse(OneParam("{distribution: uniform, min: 0, max: 1}"));
  EXPECT_EQ(OnlyLeaf(parsed.spec).distribution(), v1::UNIFORM);
  EXPECT_FALSE(OnlyLeaf(parsed.spec).integer());
  // W&B's schema name for categorical with probabilities.
  const ParsedSpec wp = MustParse(OneParam(
      "{distribution: categorical_w_probabilities, values: [a, b], probabilities: [0.25, 0.75]}"));
  EXPECT_EQ(OnlyLeaf(wp.spec).distribution(), v1::CATEGORICAL);
  EXPECT_THAT(OnlyLeaf(wp.spec).probabilities(), ElementsAre(0.25, 0.75));
  // W&B's schema types int_uniform's bounds as integers: 1.0 is refused, as W&B refuses it.
  EXPECT_THAT(
      MustFail(OneParam("{distribution: int_uniform, min: 1.0, max: 3}")),
      Contains(StartsWith("parameters.x.min: must be an integer for int_uniform; got 1.0")));
}

TEST(SpecParserSemanticsTest, AppliesWandbDefaults) {
  const ParsedSpec parsed = MustParse(R"(program: train.py
method: bayes
metric: {name: loss}
parameters:
  n: {distribution: normal}
  qn: {distribution: q_normal}
  ln: {distribution: log_normal, mu: 2}
  qln: {distribution: q_log_normal, sigma: 3}
  b: {distribution: beta}
  qb: {distribution: q_beta, a: 2}
  qu: {distribution: q_uniform, min: 0, max: 10}
  qlu: {distribution: q_log_uniform_values, min: 1, max: 100}
early_terminate: {type: hyperband, min_iter: 3}
)");
  const v1::SweepSpec& spec = parsed.spec;
  EXPECT_EQ(spec.metric().goal(), v1::GOAL_MINIMIZE);
  EXPECT_FALSE(spec.metric().has_target());
  EXPECT_EQ(spec.early_terminate().eta(), 3);
  // W&B's engine schema says strict defaults to true (its docs say false); sweepd follows the
  // engine, as docs/sweep-spec.md says.
  EXPECT_TRUE(spec.early_terminate().strict());
  EXPECT_EQ(spec.early_terminate().min_iter(), 3);
  EXPECT_FALSE(spec.early_terminate().has_max_iter());
  EXPECT_THAT(spec.command(), ElementsAre("${env}", "${interpreter}", "${program}", "${args}"));

  const auto leaves = LeafParameters(spec);
  ASSERT_THAT(leaves, SizeIs(8));
  std::map<std::string, const v1::Parameter*> by_name;
  for (const auto* leaf : leaves) by_name[leaf->name()] = leaf;
  EXPECT_EQ(by_name["n"]->mu(), 0);
  EXPECT_EQ(by_name["n"]->sigma(), 1);
  EXPECT_EQ(by_name["qn"]->mu(), 0);
  EXPECT_EQ(by_name["qn"]->sigma(), 1);
  EXPECT_EQ(by_name["qn"]->q(), 1);
  EXPECT_EQ(by_name["ln"]->mu(), 2);
  EXPECT_EQ(by_name["ln"]->sigma(), 1);
  EXPECT_EQ(by_name["qln"]->mu(), 0);
  EXPECT_EQ(by_name["qln"]->sigma(), 3);
  EXPECT_EQ(by_name["b"]->a(), 1);
  EXPECT_EQ(by_name["b"]->b(), 1);
  EXPECT_EQ(by_name["qb"]->a(), 2);
  EXPECT_EQ(by_name["qb"]->b(), 1);
  EXPECT_EQ(by_name["qb"]->q(), 1);
  EXPECT_EQ(by_name["qu"]->q(), 1);
  EXPECT_EQ(by_name["qlu"]->q(), 1);
  // W&B's schema default q is 1.0 (a float), so an omitted q gives float samples.
  EXPECT_FALSE(by_name["qu"]->integer());
  EXPECT_FALSE(by_name["qlu"]->integer());
}

TEST(SpecParserSemanticsTest, IntegerQGivesIntegerSamplesFloatQDoesNot) {
  EXPECT_TRUE(
      OnlyLeaf(MustParse(OneParam("{distribution: q_uniform, min: 0, max: 256, q: 8}")).spec)
          .integer());
  EXPECT_FALSE(
      OnlyLeaf(MustParse(OneParam("{distribution: q_uniform, min: 0, max: 256, q: 8.0}")).spec)
          .integer());
  EXPECT_FALSE(
      OnlyLeaf(MustParse(OneParam("{distribution: q_uniform, min: 0, max: 1, q: 0.05}")).spec)
          .integer());
  // W&B's random example: q_log_uniform_values with q: 8 gives integer batch sizes.
  const v1::Parameter& batch = OnlyLeaf(
      MustParse(OneParam("{distribution: q_log_uniform_values, max: 256, min: 32, q: 8}")).spec);
  EXPECT_EQ(batch.distribution(), v1::Q_LOG_UNIFORM_VALUES);
  EXPECT_TRUE(batch.integer());
  EXPECT_EQ(batch.q(), 8);
  EXPECT_EQ(batch.min(), 32);
  EXPECT_EQ(batch.max(), 256);
  for (const char* d : {"q_normal", "q_log_normal", "q_beta"}) {
    SCOPED_TRACE(d);
    EXPECT_TRUE(OnlyLeaf(MustParse(OneParam(absl::StrCat("{distribution: ", d, ", q: 2}"))).spec)
                    .integer());
  }
}

TEST(SpecParserSemanticsTest, NestedParametersFlattenWithDotsInSpecOrder) {
  const ParsedSpec parsed = MustParse(R"(program: train.py
method: random
parameters:
  zeta: {value: 1}
  optimizer:
    parameters:
      name: {values: [adam, sgd]}
      lr: {min: 0.0001, max: 0.1}
      schedule:
        parameters:
          warmup: {values: [0, 100]}
  alpha: {min: 1, max: 3}
)");
  const v1::SweepSpec& spec = parsed.spec;
  ASSERT_THAT(spec.parameters(), SizeIs(3));
  EXPECT_EQ(spec.parameters(0).name(), "zeta");
  EXPECT_EQ(spec.parameters(1).name(), "optimizer");
  EXPECT_EQ(spec.parameters(2).name(), "alpha");
  const v1::Parameter& group = spec.parameters(1);
  EXPECT_EQ(group.distribution(), v1::DISTRIBUTION_UNSPECIFIED);
  EXPECT_EQ(group.path(), "optimizer");
  ASSERT_THAT(group.parameters(), SizeIs(3));
  EXPECT_EQ(group.parameters(1).name(), "lr");
  EXPECT_EQ(group.parameters(1).path(), "optimizer.lr");
  EXPECT_EQ(group.parameters(2).parameters(0).name(), "warmup");
  EXPECT_EQ(group.parameters(2).parameters(0).path(), "optimizer.schedule.warmup");

  std::vector<std::string> paths;
  for (const auto* leaf : LeafParameters(spec)) paths.push_back(leaf->path());
  // Spec order, depth first; not sorted (W&B sorts names, sweepd keeps what the user wrote).
  EXPECT_THAT(paths, ElementsAre("zeta", "optimizer.name", "optimizer.lr",
                                 "optimizer.schedule.warmup", "alpha"));
}

TEST(SpecParserSemanticsTest, FlattenedNamesMustNotCollide) {
  EXPECT_THAT(MustFail(R"(program: t.py
method: random
parameters:
  a.b: {value: 1}
  a:
    parameters:
      b: {value: 2}
)"),
              Contains(StartsWith("parameters.a.b: flattened name collides")));
  // A group's children are checked too.
  EXPECT_THAT(MustFail(R"(program: t.py
method: random
parameters:
  a:
    parameters:
      b.c: {value: 1}
      b:
        parameters:
          c: {value: 2}
)"),
              Contains(StartsWith("parameters.a.b.c: flattened name collides")));
}

std::string Utf8(uint32_t code_point) {
  std::string out;
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
  return out;
}

// Unicode's 66 noncharacters (The Unicode Standard, section 23.7: U+FDD0..U+FDEF and the last two
// code points of each of the 17 planes) come back from the normal form's YAML as U+FFFD, so a
// spec holding one would not be the spec it says it is (found by fuzz_spec_parser for U+FFFF, by
// fuzz_spec_numbers in CI for U+FDE1 in a categorical value): refused, whether written raw or as
// an escape, and named.
TEST(SpecParserErrorsTest, EveryUnicodeNoncharacterIsRefusedRawAndEscaped) {
  std::vector<uint32_t> noncharacters;
  for (uint32_t c = 0xFDD0; c <= 0xFDEF; ++c) noncharacters.push_back(c);
  for (uint32_t plane = 0; plane <= 0x10; ++plane) {
    noncharacters.push_back(plane * 0x10000 + 0xFFFE);
    noncharacters.push_back(plane * 0x10000 + 0xFFFF);
  }
  ASSERT_EQ(noncharacters.size(), 66u);
  for (uint32_t c : noncharacters) {
    SCOPED_TRACE(absl::StrCat("U+", absl::Hex(c)));
    const std::string name =
        absl::StrCat("U+", absl::AsciiStrToUpper(absl::StrCat(absl::Hex(c, absl::kZeroPad4))));
    EXPECT_THAT(MustFail(absl::StrCat("program: t.py\nmethod: random\nparameters:\n  x: {values: "
                                      "[a, b",
                                      Utf8(c), "c]}\n")),
                Contains(HasSubstr(absl::StrCat(name, " is a Unicode noncharacter, not text"))));
    EXPECT_THAT(MustFail(absl::StrCat("program: t.py\nmethod: random\nparameters:\n  x: {value: "
                                      "\"a\\U",
                                      absl::Hex(c, absl::kZeroPad8), "b\"}\n")),
                Contains(absl::StrCat("parameters.x.value: a string value must not contain ", name,
                                      " (not text)")));
  }
  EXPECT_THAT(MustFail("program: t.py\nmethod: random\nname: \"a\\uFDD0\"\nparameters:\n"
                       "  x: {value: 1}\n"),
              Contains("name: must not contain U+FDD0 (not text)"));
}

// Their neighbours are text: accepted, and the same after the normal form's round trip.
TEST(SpecParserErrorsTest, CodePointsNextToNoncharactersAreTextAndRoundTrip) {
  for (uint32_t c : {0xFDCFu, 0xFDF0u, 0xFFFDu, 0x10000u, 0x1FFFDu, 0x10FFFDu, 0x596u}) {
    SCOPED_TRACE(absl::StrCat("U+", absl::Hex(c)));
    const std::string value = absl::StrCat("a", Utf8(c), "b");
    const ParsedSpec parsed = MustParse(absl::StrCat(
        "program: t.py\nmethod: random\nparameters:\n  x: {values: [\"", value, "\", 1]}\n"));
    const auto normal = SpecToJson(parsed.spec);
    EXPECT_EQ(normal["parameters"]["x"]["values"][0], value);
    EXPECT_EQ(SpecToJson(MustParse(JsonToYaml(normal)).spec), normal);
  }
}

TEST(SpecParserSemanticsTest, EarlyTerminatePeriodNeedsEarlyTerminate) {
  const ParsedSpec parsed = MustParse(R"(program: t.py
method: random
metric: {name: loss}
early_terminate: {type: hyperband, min_iter: 2}
early_terminate_period: 60
parameters:
  x: {min: 0.0, max: 1.0}
)");
  EXPECT_DOUBLE_EQ(parsed.spec.early_terminate().period_seconds(), 60);
  EXPECT_THAT(MustFail("program: t.py\nmethod: random\nearly_terminate_period: 60\n"
                       "parameters:\n  x: {min: 0.0, max: 1.0}\n"),
              Contains(StartsWith("early_terminate_period: applies to early_terminate")));
  EXPECT_THAT(MustFail("program: t.py\nmethod: random\nmetric: {name: l}\n"
                       "early_terminate: {type: hyperband, min_iter: 2}\n"
                       "early_terminate_period: -1\nparameters:\n  x: {min: 0.0, max: 1.0}\n"),
              Contains(StartsWith("early_terminate_period: must be > 0")));
}

// W&B takes top-level names as they are: `a` and `a.b` are two keys of the run's config (Hydra
// style: `model=resnet model.depth=50`). Only a nested path spelled again collides.
TEST(SpecParserSemanticsTest, ALeafNameThatPrefixesAnotherIsFine) {
  const ParsedSpec parsed = MustParse(R"(program: t.py
method: random
parameters:
  a: {value: 1}
  a.b: {value: 2}
)");
  ASSERT_EQ(parsed.spec.parameters_size(), 2);
  EXPECT_EQ(parsed.spec.parameters(1).path(), "a.b");
}

TEST(SpecParserSemanticsTest, GroupsTakeNoOtherKeysAndMustNotBeEmpty) {
  EXPECT_THAT(MustFail(OneParam("{parameters: {}}")),
              Contains("parameters.x.parameters: needs at least one parameter"));
  EXPECT_THAT(MustFail(OneParam("{distribution: constant, parameters: {y: {value: 1}}}")),
              Contains(StartsWith("parameters.x.distribution: a parameter with nested")));
}

TEST(SpecParserSemanticsTest, AppliesSweepdDefaults) {
  const ParsedSpec parsed = MustParse(OneParam("{values: [1, 2]}"));
  const v1::SweepSpec& spec = parsed.spec;
  EXPECT_EQ(spec.method(), v1::SEARCH_METHOD_RANDOM);
  EXPECT_FALSE(spec.has_metric());
  EXPECT_FALSE(spec.has_early_terminate());
  EXPECT_FALSE(spec.has_pruner());
  EXPECT_FALSE(spec.has_budget());
  EXPECT_EQ(spec.run_cap(), 0);
  EXPECT_EQ(spec.parallelism(), 0);
  EXPECT_EQ(spec.resources().gpus_per_node(), 1);
  EXPECT_EQ(spec.resources().nodes(), 1);
  EXPECT_EQ(spec.seed(), 0u);
  EXPECT_EQ(spec.max_failures(), 10);
  EXPECT_EQ(spec.max_retries(), 3);
  EXPECT_EQ(spec.metric_pattern(), "");
  EXPECT_EQ(spec.search().n_startup_trials(), 10);
  EXPECT_EQ(spec.search().n_ei_candidates(), 24);
  EXPECT_TRUE(spec.search().multivariate());
  EXPECT_EQ(spec.search().gamma(), 0.1);
  EXPECT_EQ(spec.search().prior_weight(), 1.0);
  EXPECT_EQ(spec.search().bandwidth_factor(), 0.1);
  EXPECT_EQ(spec.search().clip_exponent(), 1.5);
  EXPECT_THAT(parsed.warnings, IsEmpty());

  // A resources map with one key keeps the other's default.
  const ParsedSpec cpu = MustParse(OneParam("{value: 1}") + "resources: {gpus_per_node: 0}\n");
  EXPECT_EQ(cpu.spec.resources().gpus_per_node(), 0);
  EXPECT_EQ(cpu.spec.resources().nodes(), 1);
  const ParsedSpec search = MustParse(OneParam("{value: 1}") + "search: {multivariate: false}\n");
  EXPECT_FALSE(search.spec.search().multivariate());
  EXPECT_EQ(search.spec.search().n_startup_trials(), 10);
}

TEST(SpecParserSemanticsTest, ReadsEverySweepdKey) {
  const ParsedSpec parsed = MustParse(ReadFile(FixtureDir("good") / "sweepd_tpe_asha.yaml"));
  const v1::SweepSpec& spec = parsed.spec;
  EXPECT_EQ(spec.method(), v1::SEARCH_METHOD_TPE);
  EXPECT_EQ(spec.parallelism(), 8);
  EXPECT_EQ(spec.resources().gpus_per_node(), 8);
  EXPECT_EQ(spec.resources().nodes(), 2);
  EXPECT_EQ(spec.seed(), 20240601u);
  EXPECT_EQ(spec.max_failures(), 4);
  EXPECT_EQ(spec.max_retries(), 1);
  EXPECT_EQ(spec.budget().gpu_hours(), 512.5);
  EXPECT_EQ(spec.budget().max_trials(), 64);
  EXPECT_EQ(spec.metric_pattern(), R"(([a-z_]+):\s*([-+0-9.eE]+))");
  EXPECT_EQ(spec.search().n_startup_trials(), 16);
  EXPECT_EQ(spec.search().n_ei_candidates(), 48);
  EXPECT_FALSE(spec.search().multivariate());
  EXPECT_EQ(spec.search().gamma(), 0.15);
  EXPECT_EQ(spec.search().prior_weight(), 0.5);
  EXPECT_EQ(spec.search().bandwidth_factor(), 0.2);
  EXPECT_EQ(spec.search().clip_exponent(), 1.0);
  const v1::Pruner& p = spec.pruner();
  EXPECT_EQ(p.type(), v1::Pruner::ASHA);
  EXPECT_EQ(p.resource(), "epoch");
  EXPECT_EQ(p.min_resource(), 1);
  EXPECT_EQ(p.max_resource(), 27);
  EXPECT_EQ(p.reduction_factor(), 3);
  EXPECT_EQ(p.min_early_stopping_rate(), 1);
}

TEST(SpecParserSemanticsTest, PrunerDefaults) {
  const std::string base = OneParam("{min: 1, max: 2}") + "metric: {name: loss}\n";
  const v1::Pruner asha = MustParse(base + "pruner: {type: asha}\n").spec.pruner();
  EXPECT_EQ(asha.resource(), "step");
  EXPECT_EQ(asha.min_resource(), 1);
  EXPECT_EQ(asha.max_resource(), 0);  // unbounded
  EXPECT_EQ(asha.reduction_factor(), 3);
  EXPECT_EQ(asha.min_early_stopping_rate(), 0);

  const v1::Pruner hb =
      MustParse(base + "pruner: {type: hyperband, max_resource: 81}\n").spec.pruner();
  EXPECT_EQ(hb.min_resource(), 1);
  EXPECT_EQ(hb.reduction_factor(), 3);
  EXPECT_EQ(hb.brackets(), 0);  // all the range allows

  const v1::Pruner median = MustParse(base + "pruner: {type: median}\n").spec.pruner();
  EXPECT_EQ(median.resource(), "step");
  EXPECT_EQ(median.n_startup_trials(), 5);
  EXPECT_EQ(median.n_warmup_steps(), 0);
  EXPECT_EQ(median.interval_steps(), 1);
  EXPECT_EQ(median.n_min_trials(), 1);

  const v1::Pruner pct =
      MustParse(base + "pruner: {type: percentile, percentile: 0}\n").spec.pruner();
  EXPECT_EQ(pct.percentile(), 0);
  EXPECT_EQ(pct.n_startup_trials(), 5);

  const v1::Pruner lower_only =
      MustParse(base + "pruner: {type: threshold, lower: 0.5}\n").spec.pruner();
  EXPECT_TRUE(lower_only.has_lower());
  EXPECT_FALSE(lower_only.has_upper());

  // `none` needs no metric: nothing is stopped.
  const ParsedSpec none = MustParse(OneParam("{min: 1, max: 2}") + "pruner: {type: none}\n");
  EXPECT_EQ(none.spec.pruner().type(), v1::Pruner::NONE);
}

TEST(SpecParserSemanticsTest, EarlyTerminateMaxIterForm) {
  const ParsedSpec parsed =
      MustParse(ReadFile(FixtureDir("good") / "wandb_bayes_hyperband_max_iter.yaml"));
  const v1::EarlyTerminate& et = parsed.spec.early_terminate();
  EXPECT_EQ(et.type(), "hyperband");
  EXPECT_FALSE(et.has_min_iter());
  EXPECT_EQ(et.max_iter(), 27);
  EXPECT_EQ(et.s(), 2);
  EXPECT_EQ(et.eta(), 3);
  // The W&B example's `decay: {values: [1e-5, 1e-6, 1e-7]}` are numbers here (YAML 1.2), not the
  // strings PyYAML would make of them.
  const auto leaves = LeafParameters(parsed.spec);
  auto decay = std::find_if(leaves.begin(), leaves.end(),
                            [](const v1::Parameter* p) { return p->name() == "decay"; });
  ASSERT_NE(decay, leaves.end());
  EXPECT_THAT((*decay)->values_json(), ElementsAre("1e-05", "1e-06", "1e-07"));
}

TEST(SpecParserSemanticsTest, MetricTargetAndImputeAreKept) {
  const ParsedSpec parsed = MustParse(ReadFile(FixtureDir("good") / "labels_metric_target.yaml"));
  const v1::SweepSpec& spec = parsed.spec;
  EXPECT_EQ(spec.name(), "resnet-lr-sweep");
  EXPECT_EQ(spec.description(), "Learning-rate sweep: ResNet-50 on ImageNet, 90 epochs.");
  EXPECT_EQ(spec.project(), "vision");
  EXPECT_EQ(spec.entity(), "my-team");
  EXPECT_EQ(spec.program(), "train.py");
  EXPECT_EQ(spec.run_cap(), 40);
  EXPECT_EQ(spec.metric().name(), "val/top1");
  EXPECT_EQ(spec.metric().goal(), v1::GOAL_MAXIMIZE);
  ASSERT_TRUE(spec.metric().has_target());
  EXPECT_DOUBLE_EQ(spec.metric().target(), 0.765);
  EXPECT_EQ(spec.metric().impute(), "worst");
  EXPECT_EQ(spec.metric().impute_while_running(), "false");
  EXPECT_THAT(MustFail(OneParam("{value: 1}") + "metric: {name: l, impute: zero}\n"),
              Contains(StartsWith("metric.impute: 'zero' is not allowed")));
}

TEST(SpecParserSemanticsTest, CategoricalProbabilitiesAreKeptInOrder) {
  const v1::Parameter& p = OnlyLeaf(
      MustParse(OneParam("{values: [1, 2, 3, 4, 5], probabilities: [0.1, 0.2, 0.1, 0.25, 0.35]}"))
          .spec);
  EXPECT_EQ(p.distribution(), v1::CATEGORICAL);
  EXPECT_THAT(p.probabilities(), ElementsAre(0.1, 0.2, 0.1, 0.25, 0.35));
  // Zero is a valid probability; a sum off by rounding noise is accepted.
  MustParse(OneParam("{values: [a, b, c], probabilities: [0, 0.3333333, 0.6666667]}"));
  EXPECT_THAT(MustFail(OneParam("{values: [a, b], probabilities: [0.5, x]}")),
              Contains(StartsWith("parameters.x.probabilities[1]: must be a number")));
  EXPECT_THAT(MustFail(OneParam("{values: [a, b], probabilities: 1}")),
              Contains(StartsWith("parameters.x.probabilities: must be a list of numbers")));
}

TEST(SpecParserSemanticsTest, WarnsAboutIgnoredWandbKeysAndRepeatedValues) {
  const ParsedSpec launch = MustParse(ReadFile(FixtureDir("good") / "wandb_launch_keys.yaml"));
  EXPECT_THAT(launch.warnings, Contains(StartsWith("apiVersion: W&B key accepted and ignored")));
  EXPECT_THAT(launch.warnings, Contains(StartsWith("controller: W&B key accepted and ignored")));
  EXPECT_THAT(launch.warnings, Contains(StartsWith("job: W&B key accepted and ignored")));
  EXPECT_THAT(launch.warnings, Contains(StartsWith("kind: W&B key accepted and ignored")));

  const ParsedSpec dup = MustParse(OneParam("{values: [relu, gelu, relu]}"));
  EXPECT_THAT(dup.warnings,
              ElementsAre("parameters.x.values[2]: value \"relu\" appears more than once"));
  EXPECT_THAT(OnlyLeaf(dup.spec).values_json(), SizeIs(3));
}

TEST(SpecParserSemanticsTest, CommandIsKeptTokenByToken) {
  const ParsedSpec parsed = MustParse(ReadFile(FixtureDir("good") / "command_all_macros.yaml"));
  EXPECT_THAT(
      parsed.spec.command(),
      ElementsAre("${env}", "${interpreter}", "${program}", "${args}", "${args_no_equals}",
                  "${args_no_hyphens}", "${args_no_boolean_flags}", "${args_json}",
                  "--config=${args_json_file}", "${args_append_hydra}", "${args_override_hydra}",
                  "--port=${envvar:MASTER_PORT}", "${envvar:HOME}/data"));
  // Without ${program} no program is needed.
  const ParsedSpec no_program =
      MustParse("method: random\nparameters: {x: {value: 1}}\ncommand: [./run.sh, \"${args}\"]\n");
  EXPECT_EQ(no_program.spec.program(), "");
}

TEST(SpecParserSemanticsTest, DistributionAndMethodNamesRoundTrip) {
  for (int d = v1::CONSTANT; d <= v1::Q_BETA; ++d) {
    const auto distribution = static_cast<v1::Distribution>(d);
    SCOPED_TRACE(DistributionName(distribution));
    std::string definition;
    switch (distribution) {
      case v1::CONSTANT:
        definition = "value: 1";
        break;
      case v1::CATEGORICAL:
        definition = "values: [1]";
        break;
      case v1::NORMAL:
      case v1::Q_NORMAL:
      case v1::LOG_NORMAL:
      case v1::Q_LOG_NORMAL:
      case v1::BETA:
      case v1::Q_BETA:
        break;
      default:
        definition = "min: 1, max: 2";
    }
    const std::string yaml =
        OneParam(absl::StrCat("{distribution: ", DistributionName(distribution),
                              definition.empty() ? "" : ", ", definition, "}"));
    EXPECT_EQ(OnlyLeaf(MustParse(yaml).spec).distribution(), distribution);
  }
  EXPECT_EQ(DistributionName(v1::DISTRIBUTION_UNSPECIFIED), "unspecified");
  for (int m = v1::SEARCH_METHOD_GRID; m <= v1::SEARCH_METHOD_SOBOL; ++m) {
    const auto method = static_cast<v1::SearchMethod>(m);
    const std::string yaml = absl::StrCat("program: t.py\nmethod: ", SearchMethodName(method),
                                          "\nmetric: {name: l}\nparameters: {x: {value: 1}}\n");
    EXPECT_EQ(MustParse(yaml).spec.method(), method);
  }
  for (int t = v1::Pruner::NONE; t <= v1::Pruner::THRESHOLD; ++t) {
    const auto type = static_cast<v1::Pruner::Type>(t);
    const std::string yaml = absl::StrCat(
        OneParam("{value: 1}"), "metric: {name: l}\npruner: {type: ", PrunerTypeName(type),
        type == v1::Pruner::HYPERBAND ? ", max_resource: 9" : "",
        type == v1::Pruner::PERCENTILE ? ", percentile: 50" : "", "}\n");
    EXPECT_EQ(MustParse(yaml).spec.pruner().type(), type);
  }
}

// ---------------------------------------------------------------------------------------------
// YAML typing (YAML 1.2 core schema).

TEST(SpecParserYamlTypingTest, ScalarsAreTypedByYaml12) {
  const v1::Parameter& p = OnlyLeaf(
      MustParse(OneParam(R"({values: [1e-4, "32", 32, true, false, True, "true", yes, null, ~,
                                      3.0, -0.5, .5, 0x1F, 1_000, "", 'single', 12345678901234]})"))
          .spec);
  EXPECT_THAT(p.values_json(),
              ElementsAre("0.0001", "\"32\"", "32", "true", "false", "true", "\"true\"", "\"yes\"",
                          "null", "null", "3.0", "-0.5", "0.5", "\"0x1F\"", "\"1_000\"", "\"\"",
                          "\"single\"", "12345678901234"));
}

TEST(SpecParserYamlTypingTest, StructuredValuesStayStructured) {
  const v1::Parameter& p =
      OnlyLeaf(MustParse(OneParam("{values: [[64, 64], [128], {depth: 2, act: relu}, []]}")).spec);
  EXPECT_THAT(p.values_json(),
              // Maps keep the order written (Python dicts do too).
              ElementsAre("[64,64]", "[128]", R"({"depth":2,"act":"relu"})", "[]"));
  const v1::Parameter& c = OnlyLeaf(MustParse(OneParam("{value: {a: [1, {b: null}]}}")).spec);
  EXPECT_THAT(c.values_json(), ElementsAre(R"({"a":[1,{"b":null}]})"));
}

TEST(SpecParserYamlTypingTest, NonFiniteNumbersAreRejected) {
  EXPECT_THAT(MustFail(OneParam("{min: .inf, max: 1}")),
              Contains("parameters.x.min: must be a finite number; got '.inf'"));
  EXPECT_THAT(MustFail(OneParam("{min: -.inf, max: 1}")),
              Contains("parameters.x.min: must be a finite number; got '-.inf'"));
  EXPECT_THAT(MustFail(OneParam("{distribution: normal, mu: .nan}")),
              Contains("parameters.x.mu: must be a finite number; got '.nan'"));
  EXPECT_THAT(MustFail(OneParam("{values: [1, .inf]}")),
              Contains("parameters.x.values[1]: must be finite; got '.inf'"));
  EXPECT_THAT(MustFail(OneParam("{values: [1e400]}")),
              Contains("parameters.x.values[0]: must be finite; got '1e400'"));
  // Quoted, it is just a string.
  EXPECT_THAT(OnlyLeaf(MustParse(OneParam(R"({values: [".inf"]})")).spec).values_json(),
              ElementsAre("\".inf\""));
}

// Integers stay exact: bounds near int64's ends used to pass through doubles and come back
// wrapped (max: 9223372036854775807 normalised to -9223372036854775808), and integers beyond
// int64 silently became floats.
TEST(SpecParserYamlTypingTest, IntegersStayExactOrAreRefusedWithTheRange) {
  EXPECT_THAT(MustFail(OneParam("{min: 0, max: 9223372036854775807}")),
              Contains("parameters.x.max: must be in [-9007199254740992, 9007199254740992] (2^53, "
                       "the integers sweepd samples exactly); got 9223372036854775807"));
  EXPECT_THAT(MustFail(OneParam("{distribution: int_uniform, min: -9223372036854775808, max: 0}")),
              Contains(StartsWith("parameters.x.min: must be in [-9007199254740992, "
                                  "9007199254740992]")));
  EXPECT_THAT(MustFail(OneParam("{values: [1, 18446744073709551616]}")),
              Contains("parameters.x.values[1]: '18446744073709551616' is an integer outside the "
                       "64-bit range [-9223372036854775808, 9223372036854775807]; write it with "
                       "an exponent (e.g. 1e20) if a float is meant"));
  EXPECT_THAT(MustFail(OneParam("{min: 0.5, max: 99999999999999999999}")),
              Contains(StartsWith("parameters.x.max: '99999999999999999999' is an integer outside "
                                  "the 64-bit range")));
  EXPECT_THAT(MustFail(OneParam("{distribution: q_uniform, min: 0, max: 10, q: "
                                "9223372036854775807}")),
              Contains(StartsWith("parameters.x.q: must be at most 9007199254740992 (2^53)")));
  EXPECT_THAT(MustFail(OneParam("{distribution: q_uniform, min: -1e300, max: 1e300, q: 1}")),
              Contains(HasSubstr("integer samples (an integer q) must lie within")));

  // The largest exact bounds and int64 values survive parsing and the normal form.
  const ParsedSpec parsed = MustParse(OneParam("{min: -9007199254740992, max: 9007199254740992}"));
  const v1::Parameter leaf = OnlyLeaf(parsed.spec);
  EXPECT_EQ(leaf.distribution(), v1::INT_UNIFORM);
  const auto normal = SpecToJson(parsed.spec);
  EXPECT_EQ(normal["parameters"]["x"]["min"].dump(), "-9007199254740992");
  EXPECT_EQ(normal["parameters"]["x"]["max"].dump(), "9007199254740992");
  EXPECT_THAT(OnlyLeaf(MustParse(OneParam("{values: [9223372036854775807, "
                                          "-9223372036854775808]}"))
                           .spec)
                  .values_json(),
              ElementsAre("9223372036854775807", "-9223372036854775808"));
}

// q: 1e-320 passed validation, then every sample was round(x / q) * q = infinity: JSON null,
// and --w=None on the command line.
TEST(SpecParserYamlTypingTest, NumbersThatMakeSamplesNonFiniteAreRefused) {
  EXPECT_THAT(MustFail(OneParam("{distribution: q_uniform, min: 0, max: 1, q: 1e-320}")),
              Contains("parameters.x.q: must be at least 2.2250738585072014e-308 (smaller "
                       "numbers lose their precision); got 1e-320"));
  EXPECT_THAT(MustFail(OneParam("{distribution: q_uniform, min: 0, max: 1e300, q: 1e-10}")),
              Contains(StartsWith("parameters.x.q: is too small for samples up to 1e+300")));
  EXPECT_THAT(MustFail(OneParam("{distribution: normal, mu: 1e308, sigma: 1e307}")),
              Contains(HasSubstr("samples of normal would overflow a double")));
  EXPECT_THAT(MustFail(OneParam("{distribution: log_normal, mu: 700, sigma: 10}")),
              Contains(HasSubstr("samples of log_normal would overflow a double")));
  // Small but normal steps are fine where the range allows them.
  MustParse(OneParam("{distribution: q_uniform, min: 0, max: 1, q: 1e-300}"));
}

TEST(SpecParserYamlTypingTest, QuotedNumbersAreNotNumbers) {
  EXPECT_THAT(MustFail(OneParam(R"({min: "1", max: 2})")),
              Contains(StartsWith("parameters.x.min: must be a number; got '1'")));
  EXPECT_THAT(MustFail(OneParam("{min: 1, max: 2}") + "run_cap: \"5\"\n"),
              Contains("run_cap: must be an integer; got '5'"));
}

TEST(SpecParserYamlTypingTest, AliasesWorkWhenUsedLegitimately) {
  const ParsedSpec parsed = MustParse(ReadFile(FixtureDir("good") / "yaml_aliases.yaml"));
  const auto leaves = LeafParameters(parsed.spec);
  ASSERT_THAT(leaves, SizeIs(4));
  EXPECT_EQ(leaves[0]->name(), "encoder_layers");
  EXPECT_EQ(leaves[1]->name(), "decoder_layers");
  EXPECT_THAT(leaves[1]->values_json(), ElementsAre("2", "4", "6"));
  EXPECT_THAT(leaves[3]->values_json(), ElementsAre("[64,64]", "[128,128]"));
  EXPECT_EQ(GridSize(parsed.spec), 3 * 3 * 2 * 2);
}

// ---------------------------------------------------------------------------------------------
// Hostile and malformed input: always a status, never a crash or a hang.

// Parses `text`, which must fail with INVALID_ARGUMENT; returns the whole message.
std::string MustReject(const std::string& text) {
  auto parsed = ParseSweepSpec(text);
  EXPECT_FALSE(parsed.ok());
  if (parsed.ok()) return "";
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(parsed.status().message());
}

TEST(SpecParserRobustnessTest, MalformedYaml) {
  EXPECT_THAT(MustReject("method: [random\nparameters: {x: {value: 1}}\n"),
              HasSubstr("not valid YAML"));
  EXPECT_THAT(MustReject("method: random\nparameters: {x: {value: 1}\n"),
              HasSubstr("not valid YAML"));
  EXPECT_THAT(MustReject("method: random\n parameters:\n   x: {value: 1}\n  y: 2\n"),
              HasSubstr("not valid YAML"));
  EXPECT_THAT(MustReject("method: random\nparameters:\n\tx: {value: 1}\n"),
              HasSubstr("not valid YAML"));
  EXPECT_THAT(MustReject("method: random\nparameters:\n  x:\n\tvalue: 1\n"),
              HasSubstr("not valid YAML"));
  // yaml-cpp reads an unterminated quote at the end of input as closed; the spec still fails.
  EXPECT_THAT(MustReject("method: 'random\n"), HasSubstr("method: 'random ' is not a method"));
  EXPECT_THAT(MustReject("method: *undefined_anchor\n"), HasSubstr("not valid YAML"));
  // The error names the line.
  EXPECT_THAT(MustReject("program: t.py\nmethod: random\nparameters: {x: [}\n"),
              StartsWith("spec: line 3"));
  // Unquoted ${...} inside a flow list is YAML flow syntax, not a string.
  EXPECT_THAT(MustReject(OneParam("{value: 1}") + "command: [${env}, ${args}]\n"),
              HasSubstr("not valid YAML"));
}

TEST(SpecParserRobustnessTest, DocumentsThatAreNotAMap) {
  EXPECT_EQ(MustReject(""),
            "spec: must be a map with method, metric, parameters, ...; got nothing");
  EXPECT_EQ(MustReject("~"),
            "spec: must be a map with method, metric, parameters, ...; got nothing");
  EXPECT_EQ(MustReject("# only a comment\n"),
            "spec: must be a map with method, metric, parameters, ...; got nothing");
  EXPECT_EQ(MustReject("train.py"),
            "spec: must be a map with method, metric, parameters, ...; got 'train.py'");
  EXPECT_EQ(MustReject("- method: random\n- parameters: {}\n"),
            "spec: must be a map with method, metric, parameters, ...; got a list");
  EXPECT_THAT(MustReject("[1, 2, 3]"), HasSubstr("got a list"));
  EXPECT_THAT(MustReject("{? [a, b] : c}"), HasSubstr("spec: keys must be plain names"));
}

TEST(SpecParserRobustnessTest, ControlCharactersAndNulBytes) {
  EXPECT_THAT(MustReject(std::string("method: random\0\nparameters: {}\n", 31)),
              HasSubstr("spec: line 1 column 15: control character 0x00 is not allowed"));
  EXPECT_THAT(MustReject(std::string(64, '\0')), HasSubstr("control character 0x00"));
  EXPECT_THAT(MustReject("method: ran\x1b[0mdom\n"), HasSubstr("control character 0x1b"));
  // Tabs and CRLF line ends are text.
  MustParse("program: t.py\r\nmethod: random\r\nparameters:\r\n  x: {value:\t1}\r\n");
}

TEST(SpecParserRobustnessTest, InvalidUtf8) {
  for (const std::string& bad : {
           std::string("\x80"),              // lone continuation byte
           std::string("\xff\xfe"),          // not UTF-8 at all (a UTF-16 BOM)
           std::string("\xc0\xaf"),          // overlong '/'
           std::string("\xe2\x82"),          // truncated three-byte sequence
           std::string("\xe2\x28\xa1"),      // bad continuation
           std::string("\xf5\x80\x80\x80"),  // lead byte beyond U+10FFFF
       }) {
    SCOPED_TRACE(absl::StrCat("bytes of length ", bad.size()));
    EXPECT_THAT(MustReject("program: t.py\nmethod: random\nname: \"" + bad +
                           "\"\nparameters: {x: {value: 1}}\n"),
                HasSubstr("is not valid UTF-8"));
  }
  // Valid UTF-8, BOM included, is fine.
  const ParsedSpec ok = MustParse(
      "\xEF\xBB\xBFprogram: t.py\nmethod: random\ndescription: \"Gr\xC3\xB6\xC3\x9F"
      "e \xE2\x80\x93 "
      "\xE5\xAD\xA6\xE4\xB9\xA0\xE7\x8E\x87 \xF0\x9F\x9A\x80\"\nparameters: {x: {value: 1}}\n");
  EXPECT_EQ(ok.spec.description(),
            "Gr\xC3\xB6\xC3\x9F"
            "e \xE2\x80\x93 \xE5\xAD\xA6\xE4\xB9\xA0\xE7\x8E\x87 \xF0\x9F\x9A\x80");
}

TEST(SpecParserRobustnessTest, Utf8SurrogatesOverlongsAndOutOfRangeCodePointsAreRejected) {
  // Well-formed-looking sequences that RFC 3629 forbids. Accepting them lets a spec into the
  // system that protobuf (proto3 strings) and nlohmann::json::dump() later refuse.
  for (const std::string& bad : {
           std::string("\xed\xa0\x80"),      // U+D800, a UTF-16 surrogate
           std::string("\xed\xbf\xbf"),      // U+DFFF
           std::string("\xe0\x80\xaf"),      // overlong three-byte '/'
           std::string("\xf0\x80\x80\xaf"),  // overlong four-byte '/'
           std::string("\xf4\x90\x80\x80"),  // U+110000
       }) {
    SCOPED_TRACE(absl::StrCat("bytes of length ", bad.size()));
    EXPECT_THAT(MustReject("program: t.py\nmethod: random\nname: \"" + bad +
                           "\"\nparameters: {x: {value: 1}}\n"),
                HasSubstr("is not valid UTF-8"));
  }
}

TEST(SpecParserRobustnessTest, RandomBinaryJunk) {
  std::mt19937 rng(20240601);
  for (int round = 0; round < 50; ++round) {
    std::string junk(1 + rng() % 4096, '\0');
    for (char& c : junk) c = static_cast<char>(rng() & 0xFF);
    auto parsed = ParseSweepSpec(junk);
    ASSERT_FALSE(parsed.ok()) << "round " << round;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  }
  // Printable junk reaches the YAML parser itself.
  const std::string printable = "[]{}:-,&*!|>'\"#%@` \n\t?abcxyz019.~\\";
  for (int round = 0; round < 500; ++round) {
    std::string junk(rng() % 300, ' ');
    for (char& c : junk) c = printable[rng() % printable.size()];
    auto parsed = ParseSweepSpec(junk);
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

TEST(SpecParserRobustnessTest, MutatedSpecsParseOrFailCleanlyAndRoundTripWhenTheyParse) {
  const std::string base = R"(program: t.py
method: grid
metric: {name: loss, goal: maximize}
parameters:
  a: {values: [1, 2, &x [3, 4], *x]}
  b:
    parameters:
      c: {min: 0, max: 10}
      d: {distribution: q_uniform, min: 0, max: 1, q: 0.1}
command: ["${env}", "${program}", "${args}"]
early_terminate: {type: hyperband, min_iter: 3}
)";
  ASSERT_TRUE(ParseSweepSpec(base).ok());
  const std::string alphabet = "[]{}:-,&*!|>'\"#%@` \n\t?abcxyz019.~\\$";
  std::mt19937 rng(7);
  int parsed_ok = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string s = base;
    for (int m = 1 + rng() % 4; m > 0; --m) {
      const size_t pos = rng() % (s.size() + 1);
      switch (rng() % 3) {
        case 0:
          s.insert(pos, 1, alphabet[rng() % alphabet.size()]);
          break;
        case 1:
          if (pos < s.size()) s.erase(pos, 1);
          break;
        default:
          if (pos < s.size()) s[pos] = alphabet[rng() % alphabet.size()];
      }
    }
    auto parsed = ParseSweepSpec(s);
    if (!parsed.ok()) {
      ASSERT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << s;
      continue;
    }
    ++parsed_ok;
    auto again = ParseSweepSpec(JsonToYaml(SpecToJson(parsed->spec)));
    ASSERT_TRUE(again.ok()) << again.status() << "\nfrom:\n" << s;
    ASSERT_TRUE(MessageDifferencer::Equals(parsed->spec, again->spec)) << s;
  }
  EXPECT_GT(parsed_ok, 0);
}

TEST(SpecParserRobustnessTest, SizeLimit) {
  const std::string spec = OneParam("{value: 1}");
  // Exactly at the limit: fine.
  std::string at_limit = spec + "#";
  at_limit.append(kMaxSpecBytes - at_limit.size() - 1, 'x');
  at_limit += "\n";
  ASSERT_EQ(at_limit.size(), kMaxSpecBytes);
  MustParse(at_limit);
  // One byte more: refused before YAML parsing.
  EXPECT_EQ(MustReject(at_limit + " "), "spec: is 1048577 bytes; the limit is 1048576");
  // Ten megabytes of an otherwise valid spec.
  std::string huge = spec + "description: \"";
  huge.append(10 << 20, 'a');
  huge += "\"\n";
  EXPECT_THAT(MustReject(huge), HasSubstr("the limit is 1048576"));
}

TEST(SpecParserRobustnessTest, DeepFlowNesting) {
  EXPECT_THAT(MustReject(std::string(10000, '[')),
              HasSubstr("spec: line 1: more than 64 nested [ or { brackets"));
  std::string braces;
  for (int i = 0; i < 10000; ++i) braces += "{a: ";
  EXPECT_THAT(MustReject(braces), HasSubstr("more than 64 nested [ or { brackets"));
  // Balanced, but deep: still refused before yaml-cpp recurses.
  EXPECT_THAT(
      MustReject(OneParam("{values: [" + std::string(5000, '[') + std::string(5000, ']') + "]}")),
      HasSubstr("nested [ or { brackets"));
  // Sixty levels are fine.
  const ParsedSpec ok =
      MustParse(OneParam("{values: [" + std::string(59, '[') + "1" + std::string(59, ']') + "]}"));
  EXPECT_EQ(OnlyLeaf(ok.spec).values_json(0), std::string(59, '[') + "1" + std::string(59, ']'));
}

TEST(SpecParserRobustnessTest, BracketsInQuotedStringsAndCommentsAreText) {
  // A value may hold any number of brackets; sweepd's normalised YAML writes such a string
  // quoted or plain, and that YAML must parse again (fuzz_spec_parser found a categorical value
  // with 70 `{` that parsed once and was refused the second time).
  const std::string many(100, '{');
  for (const std::string& definition :
       {"{values: [\"x " + many + "\", b]}", "{values: ['x " + many + "', b]}",
        "{values: ['it''s " + many + "', b]}",
        "\n    values:\n      - x " + many + "\n      - b"}) {
    SCOPED_TRACE(definition);
    const ParsedSpec first = MustParse(OneParam(definition));
    const std::string normalised = JsonToYaml(SpecToJson(first.spec));
    const ParsedSpec second = MustParse(normalised);
    EXPECT_EQ(SpecToJson(second.spec), SpecToJson(first.spec));
  }
  // Escaped quotes do not end a double-quoted scalar early.
  MustParse(OneParam("{values: [\"a \\\" " + many + "\", b]}"));
  // A comment's brackets are not nesting either.
  MustParse("# " + many + "\n" + OneParam("{values: [1, 2]}  # " + many));
  // A quote that is not a scalar's first character opens nothing: deep brackets after it are
  // still counted.
  EXPECT_THAT(MustReject("a: b\"c\nd: " + std::string(10000, '[') + "\n"),
              HasSubstr("more than 64 nested [ or { brackets"));
  // A quote the lexical scan mistakes for one (here inside a block scalar) hides the brackets
  // after it from the scan; yaml-cpp's own depth limit still refuses them cleanly.
  EXPECT_FALSE(ParseSweepSpec("a: |\n  \"\nb: " + std::string(10000, '[') + "\n").ok());
}

TEST(SpecParserRobustnessTest, DeepBlockNesting) {
  // 5000 levels of block indentation (two spaces a level): too big and too deep.
  std::string block;
  for (int i = 0; i < 5000; ++i) block += std::string(2 * i, ' ') + "a:\n";
  EXPECT_THAT(MustReject(block), HasSubstr("limit"));
  // 1000 levels at one space each fit in the size limit: the depth limit catches them.
  std::string narrow;
  for (int i = 0; i < 1000; ++i) narrow += std::string(i, ' ') + "a:\n";
  ASSERT_LT(narrow.size(), kMaxSpecBytes);
  EXPECT_THAT(MustReject(narrow), HasSubstr("nested more than 256 columns deep"));
  // 5000 block-sequence markers on one line.
  std::string dashes;
  for (int i = 0; i < 5000; ++i) dashes += "- ";
  EXPECT_THAT(MustReject(dashes + "x\n"), HasSubstr("nested more than 256 columns deep"));
  std::string keys;
  for (int i = 0; i < 5000; ++i) keys += "? ";
  EXPECT_THAT(MustReject(keys + "x\n"), HasSubstr("nested more than 256 columns deep"));
}

std::string BillionLaughs(absl::string_view indent) {
  std::string out = absl::StrCat(indent, "- &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",",
                                 "\"lol\",\"lol\",\"lol\",\"lol\"]\n");
  const std::string names = "abcdefghi";
  for (size_t level = 1; level < names.size(); ++level) {
    std::vector<std::string> refs(10, absl::StrCat("*", names.substr(level - 1, 1)));
    absl::StrAppend(&out, indent, "- &", names.substr(level, 1), " [", absl::StrJoin(refs, ","),
                    "]\n");
  }
  return out;
}

TEST(SpecParserRobustnessTest, AliasBombFailsFastWithTheNodeLimit) {
  // 9 levels of ten aliases each: 10^9 nodes if expanded.
  const std::string bomb =
      "program: t.py\nmethod: random\nparameters:\n  x:\n    values:\n" + BillionLaughs("      ");
  const auto start = std::chrono::steady_clock::now();
  const std::vector<std::string> lines = MustFail(bomb);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_THAT(lines, Contains("spec: expands to more than 100000 YAML nodes (YAML aliases?); the "
                              "limit keeps parsing bounded"));
  EXPECT_LT(elapsed, std::chrono::seconds(5));

  // The classic form, anchors at the top level and the bomb referenced from a parameter.
  std::string classic = "program: t.py\nmethod: random\nlaughs:\n" + BillionLaughs("  ") +
                        "parameters:\n  x: {value: *i}\n";
  const auto start2 = std::chrono::steady_clock::now();
  const std::vector<std::string> lines2 = MustFail(classic);
  EXPECT_LT(std::chrono::steady_clock::now() - start2, std::chrono::seconds(5));
  EXPECT_THAT(lines2, Contains(StartsWith("laughs: unknown key")));
  EXPECT_THAT(lines2, Contains(StartsWith("spec: expands to more than 100000 YAML nodes")));
}

TEST(SpecParserRobustnessTest, ManyParametersWithinTheLimits) {
  std::string yaml = "program: t.py\nmethod: random\nparameters:\n";
  for (int i = 0; i < 2000; ++i) absl::StrAppend(&yaml, "  p", i, ": {min: 0, max: ", i + 1, "}\n");
  const ParsedSpec parsed = MustParse(yaml);
  EXPECT_THAT(LeafParameters(parsed.spec), SizeIs(2000));
  EXPECT_EQ(LeafParameters(parsed.spec)[1999]->name(), "p1999");
}

// A command Linux would refuse to start (issue 14: every trial failed at the agent, and the
// agent was quarantined) is refused when the spec is checked.
TEST(SpecParserRobustnessTest, ACommandLinuxCannotStartIsRefusedAtSubmit) {
  const std::string long_value(140000, 'x');
  const std::vector<std::string> one =
      MustFail("program: t.py\nmethod: grid\nparameters:\n  prompt: {values: [short, " +
               long_value + "]}\n");
  EXPECT_THAT(one, Contains(StartsWith("command: one argument can be up to 140")));
  // 100 parameters sharing one 20 kB value through a YAML alias: a small spec, 2 MB of arguments.
  std::string many = "program: t.py\nmethod: random\nparameters:\n  p0: {values: [&v " +
                     std::string(20000, 'y') + "]}\n";
  for (int i = 1; i < 100; ++i) absl::StrAppend(&many, "  p", i, ": {values: [*v]}\n");
  EXPECT_THAT(MustFail(many), Contains(StartsWith("command: can expand to")));
  // Through a file, the same values are fine.
  MustParse(
      "program: t.py\nmethod: grid\ncommand: [\"${interpreter}\", \"${program}\", "
      "\"${args_json_file}\"]\nparameters:\n  prompt: {values: [short, " +
      long_value + "]}\n");
}

}  // namespace
}  // namespace sweepd
