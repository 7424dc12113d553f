// The simulator: ASHA against unpruned random search on curves where good configurations show
// early, and where they do not.

#include "scheduler/simulator.h"

#include "absl/strings/str_cat.h"
#include "common/spec_parser.h"
#include "gtest/gtest.h"

namespace sweepd::scheduler {
namespace {

v1::SweepSpec Spec(const std::string& pruner) {
  auto parsed = ParseSweepSpec(R"(
method: random
seed: 11
command: [run]
metric: {name: loss, goal: minimize}
)" + pruner + R"(
parameters:
  lr: {distribution: log_uniform_values, min: 0.0001, max: 1}
  width: {values: [16, 32, 64, 128]}
  dropout: {min: 0.0, max: 0.5}
)");
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed->spec;
}

TEST(SimulatorTest, AshaMatchesUnprunedRandomWithAThirdOfTheGpuHours) {
  const auto spec = Spec(
      "pruner: {type: asha, min_resource: 1, max_resource: 100, "
      "reduction_factor: 3}");
  auto curves = SyntheticCurves(spec, "rank-preserving", 3, 100);
  ASSERT_TRUE(curves.ok());
  SimulationOptions options{.workers = 8, .max_trials = 200};
  auto pruned = Simulate(spec, **curves, options);
  options.disable_pruning = true;
  auto unpruned = Simulate(spec, **curves, options);
  ASSERT_TRUE(pruned.ok() && unpruned.ok());
  EXPECT_EQ(unpruned->pruned, 0);
  EXPECT_GT(pruned->pruned, 100);
  EXPECT_EQ(pruned->trials, 200);
  // The same proposals, so the same best configuration: pruning never cut it.
  EXPECT_DOUBLE_EQ(pruned->best_value, unpruned->best_value);
  double hours_to_match = -1;
  for (const auto& [hours, value] : pruned->best_over_time) {
    if (value <= unpruned->best_value) {
      hours_to_match = hours;
      break;
    }
  }
  ASSERT_GT(hours_to_match, 0);
  EXPECT_LE(hours_to_match, unpruned->gpu_hours / 3)
      << "ASHA needed " << hours_to_match << " of " << unpruned->gpu_hours << " GPU-hours";
  EXPECT_LE(pruned->gpu_hours, unpruned->gpu_hours / 3);
}

// ASHA with promotion (pause at every rung, resume only the top third) on the same proposals
// as kill-mode ASHA: it finds the same best configuration, and spends fewer GPU-hours, since
// a trial goes past a rung only once a third of the trials there rank below it (Li et al.).
TEST(SimulatorTest, PromotionAshaFindsTheSameBestAsStopAshaWithFewerGpuHours) {
  // Rungs at 1, 3, 9, 27 and 81: 243 trials (3^5) fill the top one enough to promote past it.
  const std::string settings = "min_resource: 1, max_resource: 100, reduction_factor: 3";
  const auto stop = Spec("pruner: {type: asha, " + settings + "}");
  const auto promotion = Spec("pruner: {type: asha, mode: promotion, " + settings + "}");
  ASSERT_TRUE(promotion.pruner().promotion());
  auto curves = SyntheticCurves(stop, "rank-preserving", 3, 100);
  ASSERT_TRUE(curves.ok());
  const SimulationOptions options{.workers = 8, .max_trials = 243};
  auto killed = Simulate(stop, **curves, options);
  auto promoted = Simulate(promotion, **curves, options);
  ASSERT_TRUE(killed.ok() && promoted.ok());
  EXPECT_EQ(promoted->trials, 243);
  EXPECT_GT(promoted->promotions, 0);
  EXPECT_EQ(killed->promotions, 0);
  EXPECT_DOUBLE_EQ(promoted->best_value, killed->best_value);
  EXPECT_EQ(promoted->best_params, killed->best_params);
  EXPECT_LT(promoted->gpu_hours, killed->gpu_hours);
}

TEST(SimulatorTest, CrossingCurvesShowWhatPruningCanMiss) {
  const auto spec = Spec(
      "pruner: {type: asha, min_resource: 1, max_resource: 100, "
      "reduction_factor: 3}");
  auto curves = SyntheticCurves(spec, "crossing", 3, 100);
  ASSERT_TRUE(curves.ok());
  SimulationOptions options{.workers = 8, .max_trials = 200};
  auto pruned = Simulate(spec, **curves, options);
  options.disable_pruning = true;
  auto unpruned = Simulate(spec, **curves, options);
  ASSERT_TRUE(pruned.ok() && unpruned.ok());
  // Slow starters that end better get cut: pruning saves time but finds a worse best here.
  EXPECT_LT(pruned->gpu_hours, unpruned->gpu_hours);
  EXPECT_GT(pruned->best_value, unpruned->best_value);
}

TEST(SimulatorTest, CsvCurvesAndErrors) {
  auto curves = CsvCurves("lr,step,value\n0.1,0,1.0\n0.1,1,0.5\n0.01,0,2.0\n0.01,1,1.5\n");
  ASSERT_TRUE(curves.ok()) << curves.status();
  EXPECT_EQ((*curves)->Steps(), 2);
  EXPECT_DOUBLE_EQ((*curves)->Value({{"lr", "0.1"}}, 1), 0.5);
  EXPECT_DOUBLE_EQ((*curves)->Value({{"lr", "0.012"}}, 0), 2.0);  // nearest row
  EXPECT_FALSE(CsvCurves("lr,value\n0.1,1\n").ok());
  EXPECT_FALSE(CsvCurves("lr,step,value\n0.1,x,1\n").ok());
  const auto spec = Spec("");
  EXPECT_FALSE(SyntheticCurves(spec, "nope", 0, 10).ok());
}

}  // namespace
}  // namespace sweepd::scheduler

namespace sweepd::scheduler {
namespace {

// Population-based training in virtual time: at the same GPU-hours (the population trains to the
// end either way), exploiting and exploring finds a better value than its first generation
// alone, on curves whose final value the parameters decide (Jaderberg et al. 2017's claim).
TEST(SimulatorTest, PbtBeatsItsOwnFirstGenerationAtTheSameGpuHours) {
  int better = 0;
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    auto parsed = ParseSweepSpec(absl::StrCat(R"(
method: pbt
seed: )",
                                              seed, R"(
command: [run]
metric: {name: loss, goal: minimize}
pbt: {population_size: 16, interval: 10}
parameters:
  lr: {distribution: log_uniform_values, min: 0.0001, max: 1}
  width: {values: [16, 32, 64, 128]}
  dropout: {min: 0.0, max: 0.5}
)"));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    auto curves = SyntheticCurves(parsed->spec, "rank-preserving", seed, 100);
    ASSERT_TRUE(curves.ok());
    SimulationOptions options{.workers = 16, .max_trials = 1000};
    auto pbt = Simulate(parsed->spec, **curves, options);
    options.disable_pruning = true;
    auto first_generation = Simulate(parsed->spec, **curves, options);
    ASSERT_TRUE(pbt.ok() && first_generation.ok());
    EXPECT_EQ(first_generation->trials, 16);
    EXPECT_EQ(first_generation->pbt_copies, 0);
    EXPECT_GT(pbt->pbt_copies, 0);
    EXPECT_EQ(pbt->trials, 16) << "copies replace members; they add none";
    // Copies go on from their parents' steps: the same work, give or take a step per copy.
    EXPECT_NEAR(pbt->gpu_hours, first_generation->gpu_hours, 0.1 * first_generation->gpu_hours);
    if (pbt->best_value < first_generation->best_value) ++better;
  }
  EXPECT_EQ(better, 5);
}

}  // namespace
}  // namespace sweepd::scheduler
