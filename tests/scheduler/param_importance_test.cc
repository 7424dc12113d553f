// Parameter importance against answers known in closed form: for y = a x1 + b x2 with x1, x2
// independent and uniform, x1's first-order Sobol index (its main-effect share of the variance)
// is a^2 / (a^2 + b^2) (Saltelli et al., Global Sensitivity Analysis, 2008, ch. 1); a parameter
// the objective ignores explains nothing; a categorical parameter that sets the objective
// explains all of it.

#include "scheduler/param_importance.h"

#include <gtest/gtest.h>

#include <random>

namespace sweepd::scheduler {
namespace {

v1::Trial TrialWith(const std::vector<std::pair<std::string, std::string>>& params) {
  v1::Trial t;
  for (const auto& [name, value] : params) {
    auto* p = t.add_params();
    p->set_name(name);
    p->set_value_json(value);
  }
  return t;
}

double ExplainedBy(const ImportanceResult& result, const std::string& name) {
  for (const auto& p : result.params) {
    if (p.name == name) return p.explained;
  }
  ADD_FAILURE() << "no importance for " << name;
  return -1;
}

TEST(ParamImportanceTest, LinearObjectiveMatchesTheSobolIndices) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<v1::Trial> trials;
  std::vector<double> y;
  for (int i = 0; i < 4000; ++i) {
    const double x1 = u(rng), x2 = u(rng), x3 = u(rng);
    trials.push_back(TrialWith(
        {{"x1", std::to_string(x1)}, {"x2", std::to_string(x2)}, {"noise", std::to_string(x3)}}));
    y.push_back(5 * x1 + 1 * x2);
  }
  const ImportanceResult r = EstimateImportance(trials, y);
  EXPECT_EQ(r.trials, 4000);
  // 25/26 and 1/26; binning into sqrt(n) ~ 20 groups keeps (1 - 1/20^2) of each.
  EXPECT_NEAR(ExplainedBy(r, "x1"), 25.0 / 26, 0.02);
  EXPECT_NEAR(ExplainedBy(r, "x2"), 1.0 / 26, 0.02);
  EXPECT_NEAR(ExplainedBy(r, "noise"), 0.0, 0.01);
  ASSERT_EQ(r.params.size(), 3u);
  EXPECT_EQ(r.params[0].name, "x1");  // most important first
  double sum = 0;
  for (const auto& p : r.params) sum += p.importance;
  EXPECT_NEAR(sum, 1.0, 1e-9);
}

TEST(ParamImportanceTest, ACategoricalParameterThatSetsTheObjectiveExplainsAllOfIt) {
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<int> pick(0, 2);
  std::uniform_real_distribution<double> u(0, 1);
  const char* names[] = {"\"sgd\"", "\"adam\"", "\"lion\""};
  std::vector<v1::Trial> trials;
  std::vector<double> y;
  for (int i = 0; i < 300; ++i) {
    const int k = pick(rng);
    trials.push_back(TrialWith({{"optimizer", names[k]}, {"lr", std::to_string(u(rng))}}));
    y.push_back(k * 10.0);
  }
  const ImportanceResult r = EstimateImportance(trials, y);
  EXPECT_NEAR(ExplainedBy(r, "optimizer"), 1.0, 1e-9);
  EXPECT_LT(ExplainedBy(r, "lr"), 0.1);
  EXPECT_EQ(r.params[0].groups, 3);
}

TEST(ParamImportanceTest, TrialsWithoutAFiniteObjectiveAreLeftOut) {
  std::vector<v1::Trial> trials = {TrialWith({{"a", "1"}}), TrialWith({{"a", "2"}}),
                                   TrialWith({{"a", "3"}})};
  const ImportanceResult r = EstimateImportance(trials, {1.0, NAN, INFINITY});
  EXPECT_EQ(r.trials, 1);
  EXPECT_TRUE(r.params.empty());  // one trial says nothing
}

TEST(ParamImportanceTest, AGridsRepeatedValuesStayInOneGroup) {
  // 3 values, 100 trials each: however many bins are asked for, equal values are never split.
  std::vector<v1::Trial> trials;
  std::vector<double> y;
  for (int i = 0; i < 300; ++i) {
    trials.push_back(TrialWith({{"batch", std::to_string(32 << (i % 3))}}));
    y.push_back(i % 3);
  }
  const ImportanceResult r = EstimateImportance(trials, y, /*bins=*/10);
  EXPECT_EQ(r.params[0].groups, 3);
  EXPECT_NEAR(r.params[0].explained, 1.0, 1e-9);
}

}  // namespace
}  // namespace sweepd::scheduler
