// TPE: startup, validity of proposals on every kind of parameter, reproducibility, and that it
// finds better configurations than random search with the same budget.

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "common/spec_parser.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/search/random_search.h"
#include "scheduler/search/tpe_search.h"

namespace sweepd {
namespace {

v1::SweepSpec Spec(const std::string& method, uint64_t seed, const std::string& params,
                   const std::string& goal = "minimize") {
  auto parsed = ParseSweepSpec("method: " + method + "\nseed: " + std::to_string(seed) +
                               "\ncommand: [run]\nmetric: {name: f, goal: " + goal +
                               "}\nparameters:\n" + params);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed->spec;
}

double Number(const ParamSet& p, const std::string& name) {
  for (const auto& x : p) {
    if (x.name() == name) return nlohmann::json::parse(x.value_json()).get<double>();
  }
  return NAN;
}

double Branin(double x1, double x2) {
  const double a = 1, b = 5.1 / (4 * M_PI * M_PI), c = 5 / M_PI, r = 6, s = 10, t = 1 / (8 * M_PI);
  return a * std::pow(x2 - b * x1 * x1 + c * x1 - r, 2) + s * (1 - t) * std::cos(x1) + s;
}

const char kBranin[] = "  x1: {min: -5.0, max: 10.0}\n  x2: {min: 0.0, max: 15.0}\n";

// Runs `trials` sequential trials; returns the best value found.
double Optimize(SearchMethod& method, int trials, bool maximize = false) {
  std::vector<TrialRecord> history;
  double best = INFINITY;
  for (int i = 0; i < trials; ++i) {
    auto p = method.Propose(history);
    EXPECT_TRUE(p.ok());
    const double f = Branin(Number(*p, "x1"), Number(*p, "x2"));
    best = std::min(best, f);
    history.push_back(
        {.params = *p, .state = v1::TRIAL_STATE_COMPLETED, .value = maximize ? -f : f});
  }
  return best;
}

TEST(TpeSearchTest, StartsWithRandomProposals) {
  const auto spec = Spec("tpe", 4, kBranin);
  TpeSearch tpe(spec);
  RandomSearch random(spec);
  std::vector<TrialRecord> history;
  for (int i = 0; i < 10; ++i) {
    auto p = tpe.Propose(history);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(ParamSetKey(*p), ParamSetKey(random.Sample(static_cast<uint64_t>(i))));
    history.push_back({.params = *p, .state = v1::TRIAL_STATE_COMPLETED, .value = 1.0});
  }
}

TEST(TpeSearchTest, BeatsRandomSearchOnBranin) {
  std::vector<double> tpe_regret, random_regret;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    TpeSearch tpe(Spec("tpe", seed, kBranin));
    RandomSearch random(Spec("random", seed, kBranin));
    tpe_regret.push_back(Optimize(tpe, 60) - 0.397887);
    random_regret.push_back(Optimize(random, 60) - 0.397887);
  }
  std::sort(tpe_regret.begin(), tpe_regret.end());
  std::sort(random_regret.begin(), random_regret.end());
  const double tpe_median = (tpe_regret[4] + tpe_regret[5]) / 2;
  const double random_median = (random_regret[4] + random_regret[5]) / 2;
  EXPECT_LT(tpe_median, random_median / 2)
      << "TPE median regret " << tpe_median << ", random " << random_median;
}

// The multivariate kernel width is bandwidth_factor * range * n^(-1/(d+4)): with the same
// history (good trials around x = 0.3, bad ones spread), a smaller factor proposes closer to the
// good cluster, and Optuna's settings (0.2, clip exponent 1) spread proposals wider than sweepd's.
TEST(TpeSearchTest, BandwidthFactorSetsHowTightlyProposalsFollowTheGoodTrials) {
  const std::string params = "  x: {min: 0.0, max: 1.0}\n  y: {min: 0.0, max: 1.0}\n";
  std::vector<TrialRecord> history;
  for (int i = 0; i < 60; ++i) {
    ParamSet p(2);
    const double x = i < 6 ? 0.3 + 0.01 * i : std::fmod(0.137 * i, 1.0);
    const double y = i < 6 ? 0.3 : std::fmod(0.611 * i, 1.0);
    p[0].set_name("x");
    p[0].set_value_json(nlohmann::json(x).dump());
    p[1].set_name("y");
    p[1].set_value_json(nlohmann::json(y).dump());
    history.push_back({.params = p,
                       .state = v1::TRIAL_STATE_COMPLETED,
                       .value = i < 6 ? 0.0 : 1.0 + std::fabs(x - 0.3)});
  }
  auto mean_distance = [&](const std::string& settings) {
    double total = 0;
    for (uint64_t seed = 0; seed < 40; ++seed) {
      auto parsed = ParseSweepSpec("method: tpe\nseed: " + std::to_string(seed) +
                                   "\ncommand: [run]\nmetric: {name: f}\nsearch: {" + settings +
                                   "}\nparameters:\n" + params);
      EXPECT_TRUE(parsed.ok()) << parsed.status();
      TpeSearch tpe(parsed->spec);
      auto p = tpe.Propose(history);
      EXPECT_TRUE(p.ok());
      total += std::hypot(Number(*p, "x") - 0.325, Number(*p, "y") - 0.3);
    }
    return total / 40;
  };
  const double tight = mean_distance("bandwidth_factor: 0.05");
  const double sweepd_default = mean_distance("");
  const double optuna = mean_distance("bandwidth_factor: 0.2, clip_exponent: 1");
  EXPECT_LT(tight, sweepd_default);
  EXPECT_LT(sweepd_default, optuna);
  EXPECT_LT(tight, 0.05) << "proposals should sit on the good cluster";
}

TEST(TpeSearchTest, MaximizingTheNegativeIsTheSame) {
  TpeSearch minimize(Spec("tpe", 3, kBranin));
  TpeSearch maximize(Spec("tpe", 3, kBranin, "maximize"));
  EXPECT_DOUBLE_EQ(Optimize(minimize, 40), Optimize(maximize, 40, /*maximize=*/true));
}

TEST(TpeSearchTest, ProposalsStayInTheSpaceOfEveryKind) {
  const auto spec = Spec("bayes", 9, R"(
  opt: {values: [sgd, adam, lamb]}
  layers: {min: 1, max: 8}
  lr: {distribution: log_uniform_values, min: 0.00001, max: 0.1}
  dropout: {distribution: q_uniform, min: 0.0, max: 0.5, q: 0.05}
  batch: {distribution: q_log_uniform_values, min: 16, max: 256, q: 16}
  wd: {distribution: normal, mu: 0.0, sigma: 0.01}
  fixed: {value: 7}
  nested:
    parameters:
      beta: {distribution: beta, a: 2, b: 2}
)");
  auto method = CreateSearchMethod(spec);
  ASSERT_TRUE(method.ok());
  std::vector<TrialRecord> history;
  for (int i = 0; i < 60; ++i) {
    auto p = (*method)->Propose(history);
    ASSERT_TRUE(p.ok());
    ASSERT_EQ(p->size(), 8u);
    EXPECT_THAT((*p)[0].value_json(), ::testing::AnyOf("\"sgd\"", "\"adam\"", "\"lamb\""));
    const auto layers = nlohmann::json::parse((*p)[1].value_json());
    ASSERT_TRUE(layers.is_number_integer()) << layers;
    EXPECT_GE(layers.get<int>(), 1);
    EXPECT_LE(layers.get<int>(), 8);
    const double lr = Number(*p, "lr");
    EXPECT_GE(lr, 0.00001 * (1 - 1e-9));
    EXPECT_LE(lr, 0.1 * (1 + 1e-9));
    const double dropout = Number(*p, "dropout");
    EXPECT_NEAR(dropout / 0.05, std::round(dropout / 0.05), 1e-9);
    const auto batch = nlohmann::json::parse((*p)[4].value_json());
    EXPECT_TRUE(batch.is_number_integer()) << batch;
    EXPECT_EQ(batch.get<int>() % 16, 0);
    EXPECT_EQ((*p)[6].value_json(), "7");
    const double beta = Number(*p, "nested.beta");
    EXPECT_GE(beta, 0);
    EXPECT_LE(beta, 1);
    // A score that prefers adam, 3 layers and a small lr, so the model has something to learn.
    const double score = ((*p)[0].value_json() == "\"adam\"" ? 0 : 1) +
                         std::abs(layers.get<int>() - 3) + std::abs(std::log10(lr) + 3);
    history.push_back({.params = *p, .state = v1::TRIAL_STATE_COMPLETED, .value = score});
  }
  // The last 20 proposals lean to what scored well.
  int adam = 0;
  for (size_t i = 40; i < 60; ++i) adam += history[i].params[0].value_json() == "\"adam\"";
  EXPECT_GE(adam, 10);
}

TEST(TpeSearchTest, ReproducibleAndSeeded) {
  std::vector<TrialRecord> history;
  TpeSearch a(Spec("tpe", 1, kBranin));
  for (int i = 0; i < 20; ++i) {
    auto p = a.Propose(history);
    history.push_back({.params = *p,
                       .state = v1::TRIAL_STATE_COMPLETED,
                       .value = Branin(Number(*p, "x1"), Number(*p, "x2"))});
  }
  TpeSearch again(Spec("tpe", 1, kBranin));
  TpeSearch other(Spec("tpe", 2, kBranin));
  EXPECT_EQ(ParamSetKey(*a.Propose(history)), ParamSetKey(*again.Propose(history)));
  EXPECT_NE(ParamSetKey(*a.Propose(history)), ParamSetKey(*other.Propose(history)));
}

TEST(TpeSearchTest, RunningTrialsPushParallelProposalsApart) {
  std::vector<TrialRecord> history;
  TpeSearch tpe(Spec("tpe", 5, kBranin));
  for (int i = 0; i < 30; ++i) {
    auto p = tpe.Propose(history);
    history.push_back({.params = *p,
                       .state = v1::TRIAL_STATE_COMPLETED,
                       .value = Branin(Number(*p, "x1"), Number(*p, "x2"))});
  }
  // Eight proposals in a row with nothing finished, as eight free workers would ask.
  std::set<std::string> proposals;
  for (int i = 0; i < 8; ++i) {
    auto p = tpe.Propose(history);
    proposals.insert(ParamSetKey(*p));
    history.push_back({.params = *p, .state = v1::TRIAL_STATE_RUNNING});
  }
  EXPECT_EQ(proposals.size(), 8u);
}

}  // namespace
}  // namespace sweepd
