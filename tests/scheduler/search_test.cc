// Tests of the search methods: grid completeness, reproducibility, and that every
// distribution's samples follow its law (Kolmogorov-Smirnov at a fixed seed).

#include <algorithm>
#include <boost/math/distributions/beta.hpp>
#include <boost/math/distributions/normal.hpp>
#include <cmath>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/spec_parser.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/search/grid_search.h"
#include "scheduler/search/random_search.h"
#include "scheduler/search/search_method.h"
#include "scheduler/search/sobol_search.h"

namespace sweepd {
namespace {

v1::SweepSpec Spec(const std::string& yaml) {
  auto parsed = ParseSweepSpec(yaml);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.ok() ? parsed->spec : v1::SweepSpec();
}

// A one-parameter random or sobol spec.
v1::SweepSpec OneParam(const std::string& method, const std::string& definition,
                       uint64_t seed = 1234) {
  return Spec("method: " + method + "\nseed: " + std::to_string(seed) +
              "\ncommand: [run]\nparameters:\n  x: " + definition + "\n");
}

// Draws n proposals and returns parameter x of each as a double.
std::vector<double> Draw(SearchMethod& method, int n) {
  std::vector<TrialRecord> history;
  std::vector<double> xs;
  for (int i = 0; i < n; ++i) {
    auto params = method.Propose(history);
    EXPECT_TRUE(params.ok()) << params.status();
    if (!params.ok()) break;
    xs.push_back(nlohmann::json::parse((*params)[0].value_json()).get<double>());
    history.push_back(TrialRecord{.params = *params});
  }
  return xs;
}

// Kolmogorov-Smirnov statistic of samples against a continuous CDF.
double KsStatistic(std::vector<double> xs, const std::function<double(double)>& cdf) {
  std::sort(xs.begin(), xs.end());
  const double n = static_cast<double>(xs.size());
  double d = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double f = cdf(xs[i]);
    d = std::max({d, f - static_cast<double>(i) / n, static_cast<double>(i + 1) / n - f});
  }
  return d;
}

// KS statistic for a discrete law on known support points: compares the empirical and true
// CDFs at every support point (where the largest gap of a step function lies).
double DiscreteKsStatistic(const std::vector<double>& xs, const std::vector<double>& support,
                           const std::function<double(double)>& cdf) {
  double d = 0;
  for (double y : support) {
    const double empirical =
        static_cast<double>(
            std::count_if(xs.begin(), xs.end(),
                          [&](double x) { return x <= y + 1e-9 * std::max(1.0, std::fabs(y)); })) /
        static_cast<double>(xs.size());
    d = std::max(d, std::fabs(empirical - cdf(y)));
  }
  return d;
}

// Critical value at alpha = 0.001.
double KsCritical(size_t n) { return 1.95 / std::sqrt(static_cast<double>(n)); }

constexpr int kSamples = 4000;

double Phi(double z) { return boost::math::cdf(boost::math::normal(0, 1), z); }

struct ContinuousCase {
  std::string name;
  std::string definition;
  std::function<double(double)> cdf;
};

class ContinuousLawTest : public ::testing::TestWithParam<std::tuple<ContinuousCase, std::string>> {
};

TEST_P(ContinuousLawTest, SamplesFollowTheLaw) {
  const auto& [c, method_name] = GetParam();
  auto method = CreateSearchMethod(OneParam(method_name, c.definition));
  ASSERT_TRUE(method.ok());
  const auto xs = Draw(**method, kSamples);
  ASSERT_EQ(xs.size(), static_cast<size_t>(kSamples));
  EXPECT_LT(KsStatistic(xs, c.cdf), KsCritical(xs.size())) << c.name << " via " << method_name;
}

std::vector<ContinuousCase> ContinuousCases() {
  return {
      {"uniform", "{distribution: uniform, min: -2, max: 3}", [](double x) { return (x + 2) / 5; }},
      {"inferred_uniform", "{min: 0.5, max: 1.5}", [](double x) { return x - 0.5; }},
      {"log_uniform", "{distribution: log_uniform, min: -4, max: 1}",
       [](double x) { return (std::log(x) + 4) / 5; }},
      {"log_uniform_values", "{distribution: log_uniform_values, min: 0.0001, max: 0.1}",
       [](double x) { return (std::log(x) - std::log(1e-4)) / (std::log(0.1) - std::log(1e-4)); }},
      {"inv_log_uniform", "{distribution: inv_log_uniform, min: 1, max: 5}",
       // X = exp(-U), U ~ U(1, 5): P(X <= x) = P(U >= -ln x).
       [](double x) { return (5 + std::log(x)) / 4; }},
      {"inv_log_uniform_values", "{distribution: inv_log_uniform_values, min: 0.01, max: 10}",
       [](double x) { return (std::log(x) - std::log(0.01)) / (std::log(10) - std::log(0.01)); }},
      {"normal", "{distribution: normal, mu: 3, sigma: 2}",
       [](double x) { return Phi((x - 3) / 2); }},
      {"normal_defaults", "{distribution: normal}", [](double x) { return Phi(x); }},
      {"log_normal", "{distribution: log_normal, mu: -1, sigma: 0.5}",
       [](double x) { return Phi((std::log(x) + 1) / 0.5); }},
      {"beta", "{distribution: beta, a: 2, b: 5}",
       [](double x) { return boost::math::cdf(boost::math::beta_distribution<>(2, 5), x); }},
  };
}

INSTANTIATE_TEST_SUITE_P(Distributions, ContinuousLawTest,
                         ::testing::Combine(::testing::ValuesIn(ContinuousCases()),
                                            ::testing::Values("random", "sobol")),
                         [](const auto& info) {
                           return std::get<0>(info.param).name + "_" + std::get<1>(info.param);
                         });

struct DiscreteCase {
  std::string name;
  std::string definition;
  std::vector<double> support;
  std::function<double(double)> cdf;  // P(X <= y) at support points
  double step;                        // values are multiples of this (0: no check)
  bool integer;
};

std::vector<double> Range(double first, double last, double step) {
  std::vector<double> out;
  for (double y = first; y <= last + 1e-9; y += step) out.push_back(y);
  return out;
}

class DiscreteLawTest : public ::testing::TestWithParam<std::tuple<DiscreteCase, std::string>> {};

TEST_P(DiscreteLawTest, SamplesFollowTheLawOnTheirGrid) {
  const auto& [c, method_name] = GetParam();
  auto method = CreateSearchMethod(OneParam(method_name, c.definition));
  ASSERT_TRUE(method.ok());
  std::vector<TrialRecord> history;
  std::vector<double> xs;
  for (int i = 0; i < kSamples; ++i) {
    auto params = (*method)->Propose(history);
    ASSERT_TRUE(params.ok());
    const auto value = nlohmann::json::parse((*params)[0].value_json());
    EXPECT_EQ(value.is_number_integer(), c.integer) << c.name << ": " << value.dump();
    xs.push_back(value.get<double>());
    history.push_back(TrialRecord{.params = *params});
  }
  if (c.step > 0) {
    for (double x : xs) {
      const double k = x / c.step;
      ASSERT_NEAR(k, std::round(k), 1e-6) << c.name << ": " << x << " is off the grid";
    }
  }
  EXPECT_LT(DiscreteKsStatistic(xs, c.support, c.cdf), KsCritical(xs.size()))
      << c.name << " via " << method_name;
}

std::vector<DiscreteCase> DiscreteCases() {
  const auto uniform_cdf = [](double lo, double hi) {
    return [lo, hi](double x) { return std::clamp((x - lo) / (hi - lo), 0.0, 1.0); };
  };
  return {
      {"int_uniform", "{distribution: int_uniform, min: -3, max: 6}", Range(-3, 6, 1),
       [](double y) { return (y + 3 + 1) / 10; }, 1, true},
      {"inferred_int_uniform", "{min: 1, max: 4}", Range(1, 4, 1), [](double y) { return y / 4; },
       1, true},
      // round(U(0, 1)/0.25)*0.25: P(Y <= y) = P(U < y + 0.125).
      {"q_uniform", "{distribution: q_uniform, min: 0, max: 1, q: 0.25}", Range(0, 1, 0.25),
       [u = uniform_cdf(0, 1)](double y) { return u(y + 0.125); }, 0.25, false},
      {"q_uniform_int_q", "{distribution: q_uniform, min: 0, max: 20, q: 5}", Range(0, 20, 5),
       [u = uniform_cdf(0, 20)](double y) { return u(y + 2.5); }, 5, true},
      {"q_log_uniform_values", "{distribution: q_log_uniform_values, min: 1, max: 64, q: 1}",
       Range(1, 64, 1),
       [](double y) { return std::clamp(std::log(y + 0.5) / std::log(64.0), 0.0, 1.0); }, 1, true},
      {"q_log_uniform", "{distribution: q_log_uniform, min: 0, max: 3, q: 2}", Range(0, 20, 2),
       [](double y) { return std::clamp(std::log(y + 1) / 3, 0.0, 1.0); }, 2, true},
      {"q_normal", "{distribution: q_normal, mu: 0, sigma: 3, q: 1}", Range(-15, 15, 1),
       [](double y) { return Phi((y + 0.5) / 3); }, 1, true},
      {"q_log_normal", "{distribution: q_log_normal, mu: 2, sigma: 0.5, q: 0.5}", Range(0, 40, 0.5),
       [](double y) { return Phi((std::log(y + 0.25) - 2) / 0.5); }, 0.5, false},
      {"q_beta", "{distribution: q_beta, a: 2, b: 2, q: 0.1}", Range(0, 1, 0.1),
       [](double y) {
         return boost::math::cdf(boost::math::beta_distribution<>(2, 2), std::min(1.0, y + 0.05));
       },
       0.1, false},
  };
}

INSTANTIATE_TEST_SUITE_P(Distributions, DiscreteLawTest,
                         ::testing::Combine(::testing::ValuesIn(DiscreteCases()),
                                            ::testing::Values("random", "sobol")),
                         [](const auto& info) {
                           return std::get<0>(info.param).name + "_" + std::get<1>(info.param);
                         });

TEST(CategoricalTest, ProbabilitiesAreRespected) {
  for (const std::string method_name : {"random", "sobol"}) {
    auto method = CreateSearchMethod(
        OneParam(method_name, "{values: [a, b, c, d], probabilities: [0.1, 0.2, 0.0, 0.7]}"));
    ASSERT_TRUE(method.ok());
    std::map<std::string, int> counts;
    std::vector<TrialRecord> history;
    const int n = 5000;
    for (int i = 0; i < n; ++i) {
      auto params = (*method)->Propose(history);
      ASSERT_TRUE(params.ok());
      ++counts[(*params)[0].value_json()];
      history.push_back(TrialRecord{.params = *params});
    }
    EXPECT_EQ(counts["\"c\""], 0) << "zero-probability value drawn (" << method_name << ")";
    const std::map<std::string, double> expected = {{"\"a\"", 0.1}, {"\"b\"", 0.2}, {"\"d\"", 0.7}};
    for (const auto& [value, p] : expected) {
      const double sd = std::sqrt(n * p * (1 - p));
      EXPECT_NEAR(counts[value], n * p, 4 * sd) << value << " via " << method_name;
    }
  }
}

TEST(CategoricalTest, UniformWithoutProbabilitiesAndValuesKeepTheirType) {
  auto method = CreateSearchMethod(OneParam("random", "{values: [1, 2.5, \"x\", true, [1, 2]]}"));
  ASSERT_TRUE(method.ok());
  std::map<std::string, int> counts;
  std::vector<TrialRecord> history;
  for (int i = 0; i < 5000; ++i) {
    auto params = (*method)->Propose(history);
    ASSERT_TRUE(params.ok());
    ++counts[(*params)[0].value_json()];
    history.push_back(TrialRecord{.params = *params});
  }
  EXPECT_THAT(counts, ::testing::SizeIs(5));
  for (const auto& key : {"1", "2.5", "\"x\"", "true", "[1,2]"}) {
    EXPECT_NEAR(counts[key], 1000, 4 * std::sqrt(5000 * 0.2 * 0.8)) << key;
  }
}

TEST(GridSearchTest, ProposesTheExactCartesianProductOnce) {
  auto spec = Spec(R"(
method: grid
command: [run]
parameters:
  opt: {values: [sgd, adam, lamb]}
  layers: {distribution: int_uniform, min: 1, max: 4}
  model:
    parameters:
      dropout: {distribution: q_uniform, min: 0, max: 1, q: 0.25}
  epochs: {value: 10}
)");
  GridSearch grid(spec);
  // dropout: np.arange(0, 1, 0.25) = [0.0, 0.25, 0.5, 0.75], as W&B's grid enumerates it.
  ASSERT_EQ(grid.Size(), 3 * 4 * 4);
  std::vector<TrialRecord> history;
  std::set<std::string> keys;
  std::set<std::string> dropouts;
  while (true) {
    auto params = grid.Propose(history);
    if (!params.ok()) {
      EXPECT_EQ(params.status().code(), absl::StatusCode::kOutOfRange);
      EXPECT_THAT(std::string(params.status().message()), ::testing::HasSubstr("48"));
      break;
    }
    ASSERT_EQ(params->size(), 4u);
    EXPECT_EQ((*params)[2].name(), "model.dropout");
    dropouts.insert((*params)[2].value_json());
    EXPECT_TRUE(keys.insert(ParamSetKey(*params)).second) << "proposed twice";
    history.push_back(TrialRecord{.params = *params});
    ASSERT_LE(history.size(), 48u);
  }
  EXPECT_EQ(keys.size(), 48u);
  EXPECT_EQ(dropouts, (std::set<std::string>{"0.0", "0.25", "0.5", "0.75"}));
  // Asking again stays exhausted.
  EXPECT_EQ(grid.Propose(history).status().code(), absl::StatusCode::kOutOfRange);
}

// W&B's order (wandb/sweeps grid_search.py): parameters sorted by name, the first varying
// slowest; its docstring: the first suggestion of {a: [1, 2, 3]} is a = 1.
TEST(GridSearchTest, EnumeratesInWandbsSortedNameOrder) {
  auto spec = Spec(R"(
method: grid
command: [run]
parameters:
  z: {values: [1, 2]}
  a: {values: [x, y]}
)");
  GridSearch grid(spec);
  std::vector<std::string> order;
  std::vector<TrialRecord> history;
  for (auto params = grid.Propose(history); params.ok(); params = grid.Propose(history)) {
    ASSERT_EQ((*params)[0].name(), "z");  // trials still list parameters in spec order
    order.push_back((*params)[1].value_json() + (*params)[0].value_json());
    history.push_back(TrialRecord{.params = *params});
  }
  EXPECT_EQ(order, (std::vector<std::string>{"\"x\"1", "\"x\"2", "\"y\"1", "\"y\"2"}));
}

// yaml_hash equality: {a: 1, b: 2} and {b: 2, a: 1} are one grid value, 3 and 3.0 too.
TEST(GridSearchTest, ValuesEqualAsWandbComparesThemRunOnce) {
  auto spec = Spec(R"(
method: grid
command: [run]
parameters:
  d: {values: [{a: 1, b: 2}, {b: 2, a: 1}, {a: 3}]}
  n: {values: [3, 3.0, 4]}
)");
  GridSearch grid(spec);
  EXPECT_EQ(grid.Size(), 4);
  // A trial that ran {b: 2, a: 1.0} / 3.0 counts as the grid's first point.
  ParamSet ran(2);
  ran[0].set_name("d");
  ran[0].set_value_json(R"({"b": 2, "a": 1.0})");
  ran[1].set_name("n");
  ran[1].set_value_json("3.0");
  std::vector<TrialRecord> history = {TrialRecord{.params = ran}};
  int proposed = 0;
  for (auto params = grid.Propose(history); params.ok(); params = grid.Propose(history)) {
    history.push_back(TrialRecord{.params = *params});
    ++proposed;
  }
  EXPECT_EQ(proposed, 3);
}

TEST(GridSearchTest, SkipsPointsAlreadyInTheHistory) {
  auto spec = Spec("method: grid\ncommand: [run]\nparameters:\n  a: {values: [1, 2, 3]}\n");
  GridSearch grid(spec);
  // A user enqueued a=2 before the grid started.
  ParamSet enqueued(1);
  enqueued[0].set_name("a");
  enqueued[0].set_value_json("2");
  std::vector<TrialRecord> history = {TrialRecord{.params = enqueued}};
  std::vector<std::string> proposed;
  while (true) {
    auto params = grid.Propose(history);
    if (!params.ok()) break;
    proposed.push_back((*params)[0].value_json());
    history.push_back(TrialRecord{.params = *params});
  }
  EXPECT_EQ(proposed, (std::vector<std::string>{"1", "3"}));
}

TEST(GridSearchTest, ANewInstanceResumesFromTheHistory) {
  auto spec = Spec("method: grid\ncommand: [run]\nparameters:\n  a: {values: [1, 2, 3, 4]}\n");
  GridSearch first(spec);
  std::vector<TrialRecord> history;
  for (int i = 0; i < 2; ++i) history.push_back({.params = *first.Propose(history)});
  GridSearch restarted(spec);  // as after a scheduler restart
  auto next = restarted.Propose(history);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ((*next)[0].value_json(), "3");
}

std::vector<std::string> Sequence(const v1::SweepSpec& spec, int n) {
  auto method = CreateSearchMethod(spec);
  EXPECT_TRUE(method.ok());
  std::vector<TrialRecord> history;
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    auto params = (*method)->Propose(history);
    EXPECT_TRUE(params.ok());
    out.push_back(ParamSetKey(*params));
    history.push_back({.params = *params});
  }
  return out;
}

TEST(ReproducibilityTest, SameSeedSameSequenceOtherSeedOtherSequence) {
  const std::string params =
      "parameters:\n  lr: {distribution: log_uniform_values, min: 0.0001, max: 1}\n"
      "  bs: {values: [16, 32, 64]}\n  depth: {min: 1, max: 12}\n";
  for (const std::string method : {"random", "sobol", "bayes"}) {
    auto a = Spec("method: " + method + "\nseed: 7\ncommand: [run]\n" +
                  (method == "bayes" ? "metric: {name: loss}\n" : "") + params);
    auto b = Spec("method: " + method + "\nseed: 8\ncommand: [run]\n" +
                  (method == "bayes" ? "metric: {name: loss}\n" : "") + params);
    EXPECT_EQ(Sequence(a, 50), Sequence(a, 50)) << method;
    EXPECT_NE(Sequence(a, 50), Sequence(b, 50)) << method;
  }
}

TEST(ReproducibilityTest, RandomProposalDependsOnlyOnSeedAndPosition) {
  auto spec = OneParam("random", "{distribution: normal}", 99);
  RandomSearch search(spec);
  std::vector<TrialRecord> history(17);  // any 17 earlier trials
  auto proposal = search.Propose(history);
  ASSERT_TRUE(proposal.ok());
  EXPECT_EQ(ParamSetKey(*proposal), ParamSetKey(search.Sample(17)));
}

TEST(SobolSearchTest, FirstPowerOfTwoPointsStratifyEachDimension) {
  auto spec = Spec(
      "method: sobol\nseed: 3\ncommand: [run]\nparameters:\n  c: {value: 1}\n"
      "  x: {min: 0.0, max: 1.0}\n  y: {min: 0.0, max: 1.0}\n  z: {min: 0.0, max: 1.0}\n");
  SobolSearch sobol(spec);
  for (int k = 2; k <= 10; ++k) {
    const int n = 1 << k;
    for (int d = 0; d < 3; ++d) {
      std::vector<int> cells(n, 0);
      for (int i = 0; i < n; ++i) {
        const double u = sobol.Point(i)[d];
        ASSERT_GE(u, 0.0);
        ASSERT_LT(u, 1.0);
        ++cells[static_cast<int>(u * n)];
      }
      EXPECT_THAT(cells, ::testing::Each(1)) << "dimension " << d << ", 2^" << k << " points";
    }
  }
  // Pairs of the first two dimensions form a (0, m, 2)-net: each 16x16 cell holds one of the
  // first 256 points.
  std::vector<int> cells(256, 0);
  for (int i = 0; i < 256; ++i) {
    const auto p = sobol.Point(i);
    ++cells[static_cast<int>(p[0] * 16) * 16 + static_cast<int>(p[1] * 16)];
  }
  EXPECT_THAT(cells, ::testing::Each(1));
}

TEST(SobolSearchTest, ScramblingDependsOnTheSeed) {
  auto spec_a = OneParam("sobol", "{min: 0.0, max: 1.0}", 1);
  auto spec_b = OneParam("sobol", "{min: 0.0, max: 1.0}", 2);
  SobolSearch a(spec_a), b(spec_b);
  EXPECT_NE(a.Point(5), b.Point(5));
  EXPECT_EQ(a.Point(5), SobolSearch(spec_a).Point(5));
}

TEST(SearchMethodTest, ConstantsAndNestedNamesComeThroughInSpecOrder) {
  auto spec = Spec(R"(
method: random
command: [run]
parameters:
  z: {value: "fixed"}
  optimizer:
    parameters:
      name: {values: [adam]}
      lr: {min: 0.1, max: 0.2}
  a: {value: 3}
)");
  auto method = CreateSearchMethod(spec);
  ASSERT_TRUE(method.ok());
  auto params = (*method)->Propose({});
  ASSERT_TRUE(params.ok());
  std::vector<std::string> names;
  for (const auto& p : *params) names.push_back(p.name());
  EXPECT_EQ(names, (std::vector<std::string>{"z", "optimizer.name", "optimizer.lr", "a"}));
  EXPECT_EQ((*params)[0].value_json(), "\"fixed\"");
  EXPECT_EQ((*params)[3].value_json(), "3");
}

}  // namespace
}  // namespace sweepd
