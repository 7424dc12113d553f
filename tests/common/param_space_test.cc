// Tests of the parameter-space views: which leaves a trial gets, what grid search enumerates for
// each, how big a grid is, and clean quantisation.

#include "common/param_space.h"

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/spec_parser.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

v1::SweepSpec Spec(const std::string& parameters, const std::string& method = "random") {
  auto parsed = ParseSweepSpec(
      absl::StrCat("program: t.py\nmethod: ", method, "\nparameters:\n", parameters));
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.ok() ? parsed->spec : v1::SweepSpec();
}

// The single leaf of a one-parameter spec, by value.
v1::Parameter Leaf(const std::string& definition) {
  const v1::SweepSpec spec = Spec(absl::StrCat("  x: ", definition, "\n"));
  const auto leaves = LeafParameters(spec);
  EXPECT_EQ(leaves.size(), 1u);
  return leaves.empty() ? v1::Parameter() : *leaves.front();
}

std::vector<std::string> AllGridValues(const v1::Parameter& leaf) {
  std::vector<std::string> out;
  for (int64_t i = 0; i < GridValueCount(leaf); ++i) out.push_back(GridValue(leaf, i));
  return out;
}

TEST(LeafParametersTest, DepthFirstInSpecOrderWithoutGroups) {
  const v1::SweepSpec spec = Spec(R"(  b: {value: 1}
  g:
    parameters:
      z: {value: 2}
      h:
        parameters:
          y: {value: 3}
      a: {value: 4}
  c: {value: 5}
)");
  std::vector<std::string> paths;
  for (const auto* leaf : LeafParameters(spec)) paths.push_back(leaf->path());
  EXPECT_THAT(paths, ElementsAre("b", "g.z", "g.h.y", "g.a", "c"));
  EXPECT_THAT(LeafParameters(v1::SweepSpec()), IsEmpty());
}

TEST(GridValueTest, IntUniformEnumeratesEveryInteger) {
  const v1::Parameter leaf = Leaf("{min: -2, max: 2}");
  EXPECT_EQ(GridValueCount(leaf), 5);
  EXPECT_THAT(AllGridValues(leaf), ElementsAre("-2", "-1", "0", "1", "2"));
  EXPECT_EQ(GridValueCount(Leaf("{min: 0, max: 1}")), 2);
}

// W&B's grid turns q_uniform into `np.arange(min, max, q).tolist()` (wandb/sweeps
// grid_search.py): max excluded, values as numpy computes them. Expected lists from numpy 1.24.
TEST(GridValueTest, QUniformIsNumpysArangeAsWandbEnumeratesIt) {
  const v1::Parameter leaf = Leaf("{distribution: q_uniform, min: 0, max: 1, q: 0.1}");
  EXPECT_FALSE(leaf.integer());
  EXPECT_EQ(GridValueCount(leaf), 10);
  EXPECT_THAT(AllGridValues(leaf),
              ElementsAre("0.0", "0.1", "0.2", "0.30000000000000004", "0.4", "0.5",
                          "0.6000000000000001", "0.7000000000000001", "0.8", "0.9"));
  // np.arange(0.5, 0.95, 0.05)
  const v1::Parameter momentum = Leaf("{distribution: q_uniform, min: 0.5, max: 0.95, q: 0.05}");
  EXPECT_THAT(AllGridValues(momentum),
              ElementsAre("0.5", "0.55", "0.6000000000000001", "0.6500000000000001",
                          "0.7000000000000002", "0.7500000000000002", "0.8000000000000003",
                          "0.8500000000000003", "0.9000000000000004"));
  // np.arange(1, 3, 1.0): floats, 3 excluded.
  const v1::Parameter halves = Leaf("{distribution: q_uniform, min: 1, max: 3, q: 1.0}");
  EXPECT_FALSE(halves.integer());
  EXPECT_THAT(AllGridValues(halves), ElementsAre("1.0", "2.0"));
  // np.arange(0.26, 0.74, 0.25): from min, not from a multiple of q; never outside the bounds.
  EXPECT_THAT(AllGridValues(Leaf("{distribution: q_uniform, min: 0.26, max: 0.74, q: 0.25}")),
              ElementsAre("0.26", "0.51"));
}

TEST(GridValueTest, QUniformWithIntegerBoundsAndQPrintsIntegers) {
  // np.arange(0, 100, 25).tolist() == [0, 25, 50, 75]
  const v1::Parameter leaf = Leaf("{distribution: q_uniform, min: 0, max: 100, q: 25}");
  EXPECT_TRUE(leaf.integer());
  EXPECT_THAT(AllGridValues(leaf), ElementsAre("0", "25", "50", "75"));
  for (const std::string& v : AllGridValues(leaf)) {
    EXPECT_TRUE(nlohmann::json::parse(v).is_number_integer()) << v;
  }
}

// W&B's grid compares values by yaml_hash: dict keys in any order and 3 == 3.0 are one value.
TEST(GridValueTest, EqualValuesAreOneGridValue) {
  const v1::Parameter leaf =
      Leaf(R"({values: [{a: 1, b: 2}, {b: 2, a: 1}, 3, 3.0, [1, 2], [2, 1]]})");
  EXPECT_EQ(GridValueCount(leaf), 4);
  EXPECT_THAT(AllGridValues(leaf), ElementsAre(R"({"a":1,"b":2})", "3", "[1,2]", "[2,1]"));
  EXPECT_EQ(CanonicalValueJson(R"({"b": {"y": 1.0, "x": 2}, "a": 0.5})"),
            R"({"a":0.5,"b":{"x":2,"y":1}})");
}

TEST(GridValueTest, CategoricalAndConstantReturnTheirJsonVerbatim) {
  const v1::Parameter leaf = Leaf(R"({values: [adam, 32, [64, 64], {a: 1}, null, true, 1e-5]})");
  EXPECT_EQ(GridValueCount(leaf), 7);
  EXPECT_THAT(AllGridValues(leaf),
              ElementsAre("\"adam\"", "32", "[64,64]", R"({"a":1})", "null", "true", "1e-05"));
  const v1::Parameter constant = Leaf("{value: 3.5}");
  EXPECT_EQ(GridValueCount(constant), 1);
  EXPECT_EQ(GridValue(constant, 0), "3.5");
}

TEST(GridValueTest, ContinuousDistributionsHaveNoGrid) {
  for (const char* definition :
       {"{min: 0.0, max: 1.0}", "{distribution: log_uniform_values, min: 1, max: 10}",
        "{distribution: normal}", "{distribution: q_normal, q: 1}", "{distribution: beta}",
        "{distribution: q_log_uniform_values, min: 1, max: 64, q: 1}",
        "{distribution: inv_log_uniform, min: 0, max: 3}"}) {
    SCOPED_TRACE(definition);
    const v1::Parameter leaf = Leaf(definition);
    EXPECT_EQ(GridValueCount(leaf), 0);
    EXPECT_EQ(GridValue(leaf, 0), "null");
  }
}

// TrialParam.keys: a parameter's place in W&B's run config, from the spec's tree. A dotted name
// inside a group is one key there, as W&B keeps it.
TEST(ConfigKeysTest, NestedNamesFollowTheTreeNotTheDots) {
  const v1::SweepSpec spec = Spec(R"(  opt:
    parameters:
      lr: {value: 0.1}
      b.c: {value: 2}
  model.depth: {value: 50}
)",
                                  "random");
  std::vector<v1::TrialParam> params(3);
  params[0].set_name("opt.lr");
  params[1].set_name("opt.b.c");
  params[2].set_name("model.depth");
  SetConfigKeys(spec, &params);
  EXPECT_THAT(params[0].keys(), ElementsAre("opt", "lr"));
  EXPECT_THAT(params[1].keys(), ElementsAre("opt", "b.c"));
  EXPECT_THAT(params[2].keys(), ElementsAre("model.depth"));
}

TEST(GridSizeTest, IsTheProductOfTheLeaves) {
  const v1::SweepSpec spec = Spec(R"(  a: {values: [1, 2, 3]}
  g:
    parameters:
      b: {min: 1, max: 4}
      c: {value: x}
  d: {distribution: q_uniform, min: 0, max: 1, q: 0.5}
)",
                                  "grid");
  // d: np.arange(0, 1, 0.5) == [0.0, 0.5]
  EXPECT_EQ(GridSize(spec), 3 * 4 * 1 * 2);
  EXPECT_EQ(GridSize(v1::SweepSpec()), 1);  // no leaves: one empty point
}

TEST(GridSizeTest, IsMinusOneWhenALeafIsContinuous) {
  EXPECT_EQ(GridSize(Spec("  a: {values: [1, 2]}\n  b: {min: 0.0, max: 1.0}\n")), -1);
  EXPECT_EQ(GridSize(Spec("  b: {distribution: normal}\n  a: {values: [1, 2]}\n")), -1);
}

TEST(GridSizeTest, SaturatesJustAboveTheLimit) {
  // Exactly at the limit: counted exactly.
  EXPECT_EQ(GridSize(Spec("  a: {min: 1, max: 1000}\n  b: {min: 1, max: 10000}\n")),
            kMaxGridPoints);
  EXPECT_EQ(GridSize(Spec("  a: {min: 1, max: 10000}\n  b: {min: 1, max: 10000}\n")),
            kMaxGridPoints + 1);
  EXPECT_EQ(GridSize(Spec("  a: {min: 0, max: 10000000}\n")), kMaxGridPoints + 1);
  // Many small factors whose product overflows int64 many times over.
  std::string many;
  for (int i = 0; i < 80; ++i) absl::StrAppend(&many, "  p", i, ": {values: [1, 2, 3, 4]}\n");
  EXPECT_EQ(GridSize(Spec(many)), kMaxGridPoints + 1);
}

TEST(GridSizeTest, HugeRangesSaturateInsteadOfOverflowing) {
  // The widest int_uniform allowed: bounds within +-2^53.
  const v1::SweepSpec wide = Spec("  a: {min: -9007199254740992, max: 9007199254740992}\n");
  EXPECT_GT(GridValueCount(LeafParameters(wide)[0][0]), kMaxGridPoints);
  EXPECT_EQ(GridSize(wide), kMaxGridPoints + 1);
  const v1::SweepSpec fine = Spec("  a: {distribution: q_uniform, min: 0, max: 1, q: 1e-300}\n");
  EXPECT_GT(GridValueCount(LeafParameters(fine)[0][0]), kMaxGridPoints);
  EXPECT_EQ(GridSize(fine), kMaxGridPoints + 1);
}

TEST(QuantizeToStepTest, RoundsToTheNearestMultipleAndPrintsCleanly) {
  EXPECT_EQ(QuantizeToStep(0.30000000000000004, 0.1), 0.3);
  EXPECT_EQ(QuantizeToStep(0.1 * 3, 0.1), 0.3);
  EXPECT_EQ(nlohmann::json(QuantizeToStep(0.1 * 3, 0.1)).dump(), "0.3");
  EXPECT_EQ(QuantizeToStep(0.26, 0.1), 0.3);
  EXPECT_EQ(QuantizeToStep(-0.26, 0.1), -0.3);
  EXPECT_EQ(QuantizeToStep(7, 2), 8);  // halfway rounds away from zero
  EXPECT_EQ(QuantizeToStep(1234.5678, 0.01), 1234.57);
  EXPECT_EQ(QuantizeToStep(0.7, 0.05), 0.7);
  EXPECT_EQ(QuantizeToStep(37, 8), 40);
  EXPECT_EQ(QuantizeToStep(2.5e-7, 1e-6), 0);
  EXPECT_EQ(QuantizeToStep(7.5e-7, 1e-6), 1e-6);
  for (int k = -1000; k <= 1000; ++k) {
    const double v = QuantizeToStep(k * 0.01, 0.01);
    EXPECT_EQ(nlohmann::json(v).dump(), nlohmann::json(k / 100.0).dump()) << k;
  }
}

TEST(QuantizeToStepTest, KeepsLargeIntegersExact) {
  // An integer q over a large range must still give the nearest multiple, not a value rounded
  // to 12 significant digits (which would make neighbouring grid points collide).
  EXPECT_EQ(QuantizeToStep(1234567890123.0, 1), 1234567890123.0);
  const v1::Parameter leaf =
      Leaf("{distribution: q_uniform, min: 1000000000000, max: 1000000000002, q: 1}");
  // np.arange(10**12, 10**12 + 2, 1): max excluded, as W&B's grid.
  EXPECT_THAT(AllGridValues(leaf), ElementsAre("1000000000000", "1000000000001"));
}

}  // namespace
}  // namespace sweepd
