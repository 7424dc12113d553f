// Method pbt's rule, against Ray Tune's PopulationBasedTraining (ray/tune/schedulers/pbt.py):
// _quantiles (ceil(n * quantile_fraction) members each side, at most n / 2, none below two
// members), _explore (resample with resample_probability, else multiply by a perturbation factor,
// or move a categorical value to a neighbour), perturbation_interval; and the spec's pbt key.

#include "scheduler/search/pbt.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/spec_parser.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/search/random_search.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;

v1::SweepSpec Spec(const std::string& pbt, const std::string& parameters) {
  auto parsed =
      ParseSweepSpec("method: pbt\nseed: 7\ncommand: [run]\nmetric: {name: loss}\npbt: " + pbt +
                     "\nparameters:\n" + parameters);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.ok() ? parsed->spec : v1::SweepSpec();
}

const char kLr[] = "  lr: {distribution: uniform, min: 0.01, max: 0.6}\n";

std::string Value(const ParamSet& params, const std::string& name) {
  for (const auto& p : params) {
    if (p.name() == name) return p.value_json();
  }
  return "";
}

ParamSet Params(std::map<std::string, std::string> values) {
  ParamSet params;
  for (const auto& [name, value] : values) {
    v1::TrialParam p;
    p.set_name(name);
    p.set_value_json(value);
    params.push_back(p);
  }
  return params;
}

// Members 1..n with scores 1..n (member 1 the best).
std::vector<PbtMember> Population(int n) {
  std::vector<PbtMember> members;
  for (int i = 1; i <= n; ++i) {
    members.push_back({.trial = i, .score = static_cast<double>(i), .can_be_source = true});
  }
  return members;
}

// Which members are replaced, and from which sources, over many draws.
std::pair<std::set<int64_t>, std::set<int64_t>> Quantiles(const PopulationBasedTraining& pbt,
                                                          int n) {
  std::set<int64_t> bottom, sources;
  const auto members = Population(n);
  for (int64_t trial = 1; trial <= n; ++trial) {
    for (uint64_t salt = 0; salt < 64; ++salt) {
      if (auto source = pbt.ExploitSource(trial, members, salt)) {
        bottom.insert(trial);
        sources.insert(*source);
      }
    }
  }
  return {bottom, sources};
}

TEST(PbtTest, QuantilesAreRays) {
  // quantile 0.25: 4 members -> 1 each side; 8 -> 2; 2 -> 1 (ceil(0.5)); 1 -> none.
  PopulationBasedTraining quarter(Spec("{interval: 2, quantile: 0.25}", kLr));
  EXPECT_EQ(Quantiles(quarter, 4), (std::pair<std::set<int64_t>, std::set<int64_t>>{{4}, {1}}));
  EXPECT_EQ(Quantiles(quarter, 8),
            (std::pair<std::set<int64_t>, std::set<int64_t>>{{7, 8}, {1, 2}}));
  EXPECT_EQ(Quantiles(quarter, 2), (std::pair<std::set<int64_t>, std::set<int64_t>>{{2}, {1}}));
  EXPECT_EQ(Quantiles(quarter, 1), (std::pair<std::set<int64_t>, std::set<int64_t>>{{}, {}}));
  // quantile 0.5 of 5: ceil(2.5) = 3 is more than half, so floor(5 / 2) = 2.
  PopulationBasedTraining half(Spec("{interval: 2, quantile: 0.5}", kLr));
  EXPECT_EQ(Quantiles(half, 5), (std::pair<std::set<int64_t>, std::set<int64_t>>{{4, 5}, {1, 2}}));
}

TEST(PbtTest, OnlyRunningMembersWithACheckpointAreCopied) {
  PopulationBasedTraining pbt(Spec("{interval: 2, quantile: 0.5}", kLr));
  auto members = Population(4);
  members[0].can_be_source = false;  // the best has no checkpoint yet
  for (uint64_t salt = 0; salt < 32; ++salt) EXPECT_EQ(pbt.ExploitSource(4, members, salt), 2);
  members[1].can_be_source = false;
  EXPECT_EQ(pbt.ExploitSource(4, members, 0), std::nullopt);
  // Higher scores are worse whatever order the members come in.
  auto shuffled = Population(4);
  std::reverse(shuffled.begin(), shuffled.end());
  EXPECT_EQ(pbt.ExploitSource(1, shuffled, 0), std::nullopt);
  EXPECT_TRUE(pbt.ExploitSource(3, shuffled, 0).has_value());
}

TEST(PbtTest, ExploreMultipliesByAPerturbationFactorWithinTheRange) {
  PopulationBasedTraining pbt(
      Spec("{interval: 2, resample_probability: 0}", std::string(kLr) + "  depth: {value: 3}\n"));
  std::map<std::string, int> factors;
  for (uint64_t salt = 0; salt < 200; ++salt) {
    const ParamSet out = pbt.Explore(Params({{"depth", "3"}, {"lr", "0.1"}}), salt);
    const double lr = std::stod(Value(out, "lr"));
    ASSERT_TRUE(std::abs(lr - 0.08) < 1e-12 || std::abs(lr - 0.12) < 1e-12) << lr;
    ++factors[lr < 0.1 ? "0.8" : "1.2"];
    EXPECT_EQ(Value(out, "depth"), "3");  // constants are copied
    // At the range's ends the value stays inside it (Ray does not clip; the spec's range is a
    // promise to the script).
    EXPECT_LE(std::stod(Value(pbt.Explore(Params({{"depth", "3"}, {"lr", "0.59"}}), salt), "lr")),
              0.6);
    EXPECT_GE(std::stod(Value(pbt.Explore(Params({{"depth", "3"}, {"lr", "0.011"}}), salt), "lr")),
              0.01);
  }
  EXPECT_GT(factors["0.8"], 60);  // either factor, about half the time each
  EXPECT_GT(factors["1.2"], 60);
  // The same salt, the same answer (a restarted sweepd decides alike).
  EXPECT_EQ(Value(pbt.Explore(Params({{"depth", "3"}, {"lr", "0.1"}}), 5), "lr"),
            Value(pbt.Explore(Params({{"depth", "3"}, {"lr", "0.1"}}), 5), "lr"));
}

TEST(PbtTest, ExploreMovesACategoricalValueToANeighbourAndRoundsIntegers) {
  PopulationBasedTraining pbt(Spec(
      "{interval: 2, resample_probability: 0, hyperparameters: [batch, width]}",
      "  batch: {values: [16, 32, 64, 128]}\n  width: {min: 10, max: 100}\n" + std::string(kLr)));
  std::set<std::string> from_32, from_16, widths;
  for (uint64_t salt = 0; salt < 100; ++salt) {
    from_32.insert(Value(
        pbt.Explore(Params({{"batch", "32"}, {"lr", "0.1"}, {"width", "50"}}), salt), "batch"));
    from_16.insert(Value(
        pbt.Explore(Params({{"batch", "16"}, {"lr", "0.1"}, {"width", "50"}}), salt), "batch"));
    const ParamSet out =
        pbt.Explore(Params({{"batch", "32"}, {"lr", "0.1"}, {"width", "50"}}), salt);
    widths.insert(Value(out, "width"));
    EXPECT_EQ(Value(out, "lr"), "0.1") << "lr is not among the named hyperparameters";
  }
  EXPECT_EQ(from_32, (std::set<std::string>{"16", "64"}));
  EXPECT_EQ(from_16, (std::set<std::string>{"16", "32"}));  // clipped at the list's start
  EXPECT_EQ(widths, (std::set<std::string>{"40", "60"}));   // 50 * 0.8, 50 * 1.2, integers
}

TEST(PbtTest, ResamplingDrawsFromTheDistribution) {
  PopulationBasedTraining pbt(Spec("{interval: 2, resample_probability: 1}", kLr));
  std::set<std::string> values;
  for (uint64_t salt = 0; salt < 50; ++salt) {
    const double lr = std::stod(Value(pbt.Explore(Params({{"lr", "0.1"}}), salt), "lr"));
    EXPECT_GE(lr, 0.01);
    EXPECT_LE(lr, 0.6);
    values.insert(Value(pbt.Explore(Params({{"lr", "0.1"}}), salt), "lr"));
  }
  EXPECT_GT(values.size(), 40u);
}

TEST(PbtTest, DecisionsComeAtIntervalBoundariesFromTheMembersStart) {
  PopulationBasedTraining pbt(Spec("{interval: 3}", kLr));
  EXPECT_FALSE(pbt.DecisionDue(0, -1, 0));
  EXPECT_FALSE(pbt.DecisionDue(0, 1, 2));
  EXPECT_TRUE(pbt.DecisionDue(0, 2, 3));
  EXPECT_FALSE(pbt.DecisionDue(0, 3, 4));
  EXPECT_FALSE(pbt.DecisionDue(0, 3, 3));  // the same step again
  EXPECT_TRUE(pbt.DecisionDue(0, 5, 6));
  EXPECT_TRUE(pbt.DecisionDue(0, 2, 8));  // steps skipped: one decision
  EXPECT_FALSE(pbt.DecisionDue(0, 8, 8));
  // A copy counts from the step it was copied at.
  EXPECT_FALSE(pbt.DecisionDue(5, 5, 6));
  EXPECT_FALSE(pbt.DecisionDue(5, 6, 7));
  EXPECT_TRUE(pbt.DecisionDue(5, 7, 8));
}

TEST(PbtTest, TheFirstGenerationIsPopulationSizeRandomTrials) {
  const v1::SweepSpec spec = Spec("{interval: 2, population_size: 3}", kLr);
  PopulationBasedTraining pbt(spec);
  RandomSearch random(spec);
  std::vector<TrialRecord> history;
  for (uint64_t n = 0; n < 3; ++n) {
    auto params = pbt.Propose(history);
    ASSERT_TRUE(params.ok()) << params.status();
    EXPECT_EQ(ParamSetKey(*params), ParamSetKey(random.Sample(n)));
    history.push_back({.params = *params});
    // Copies made in between do not count, nor shift the sequence.
    history.push_back({.params = *params, .pbt_copy = true});
  }
  auto more = pbt.Propose(history);
  EXPECT_EQ(more.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(more.status().message(), HasSubstr("population of 3"));
}

TEST(PbtTest, ExploresContinuousParametersByDefault) {
  PopulationBasedTraining pbt(Spec("{interval: 2}", std::string(kLr) +
                                                        "  width: {values: [8, 16]}\n"
                                                        "  layers: {min: 1, max: 4}\n"
                                                        "  wd: {distribution: log_uniform_values, "
                                                        "min: 0.0001, max: 0.1}\n"));
  EXPECT_EQ(pbt.explored(), (std::vector<std::string>{"lr", "wd"}));
}

TEST(PbtSpecTest, MistakesAreNamed) {
  const std::string base = "method: pbt\ncommand: [run]\nmetric: {name: loss}\n";
  const std::string lr = "parameters:\n  lr: {min: 0.01, max: 0.1}\n";
  struct Case {
    std::string yaml;
    std::string error;
  };
  for (const Case& c : std::vector<Case>{
           {base + lr, "pbt: method pbt needs pbt: {interval: N}"},
           {base + "pbt: {interval: 0}\n" + lr, "pbt.interval: must be in [1, "},
           {base + "pbt: {interval: 2, quantile: 0.7}\n" + lr, "pbt.quantile: must be in (0, 0.5]"},
           {base + "pbt: {interval: 2, population_size: 1}\n" + lr,
            "pbt.population_size: must be in [2, "},
           {base + "pbt: {interval: 2, perturb_factors: [0.8, -1]}\n" + lr,
            "pbt.perturb_factors[1]: must be > 0"},
           {base + "pbt: {interval: 2, hyperparameters: [lrr]}\n" + lr,
            "pbt.hyperparameters[0]: 'lrr' is not a parameter; parameters: lr"},
           {base + "pbt: {interval: 2, hyperparameters: [c]}\n" + lr + "  c: {value: 1}\n",
            "pbt.hyperparameters[0]: 'c' is a constant"},
           {base + "pbt: {interval: 2}\nparameters:\n  width: {values: [8, 16]}\n",
            "pbt.hyperparameters: nothing to explore"},
           {base + "pbt: {interval: 2}\nearly_terminate: {type: hyperband, min_iter: 3}\n" + lr,
            "early_terminate: method pbt replaces its weak members itself"},
           {base + "pbt: {interval: 2, speed: 3}\n" + lr, "pbt.speed: unknown key"},
           {"method: random\ncommand: [run]\npbt: {interval: 2}\n" + lr,
            "pbt: settings of method pbt"},
           {"method: pbt\ncommand: [run]\npbt: {interval: 2}\n" + lr,
            "metric: required by method pbt"},
       }) {
    auto parsed = ParseSweepSpec(c.yaml);
    EXPECT_FALSE(parsed.ok()) << c.yaml;
    EXPECT_THAT(parsed.status().message(), HasSubstr(c.error)) << c.yaml;
  }
  auto ok = ParseSweepSpec(base + "pbt: {interval: 2}\n" + lr);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->spec.pbt().population_size(), 8);
  EXPECT_DOUBLE_EQ(ok->spec.pbt().quantile(), 0.25);
  EXPECT_DOUBLE_EQ(ok->spec.pbt().resample_probability(), 0.25);
  EXPECT_THAT(std::vector<double>(ok->spec.pbt().perturb_factors().begin(),
                                  ok->spec.pbt().perturb_factors().end()),
              ::testing::ElementsAre(0.8, 1.2));
}

}  // namespace
}  // namespace sweepd
