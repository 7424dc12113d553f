// The pruners' rules, their replay after a restart, and W&B's hyperband semantics.

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/pruning/asha_pruner.h"
#include "scheduler/pruning/order_statistics.h"
#include "scheduler/pruning/percentile_pruner.h"
#include "scheduler/pruning/wandb_hyperband_pruner.h"

namespace sweepd::pruning {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

Observation At(int64_t trial, int64_t step, double value, int64_t index = -1) {
  return {.trial = trial,
          .index = index < 0 ? step : index,
          .resource = static_cast<double>(step),
          .value = value};
}

TEST(OrderStatisticsTest, KthAndPercentileMatchSorting) {
  OrderStatistics s;
  std::vector<double> values = {5, 1, 4, 1, 3, 9, 2};
  for (size_t i = 0; i < values.size(); ++i) s.Insert(values[i], static_cast<int64_t>(i));
  std::sort(values.begin(), values.end());
  for (size_t k = 0; k < values.size(); ++k) EXPECT_EQ(s.Kth(k), values[k]);
  EXPECT_DOUBLE_EQ(s.Percentile(50), 3);    // numpy: 3.0
  EXPECT_DOUBLE_EQ(s.Percentile(25), 1.5);  // numpy: 1.5
  EXPECT_DOUBLE_EQ(s.Percentile(90), 6.6);  // numpy: 6.6
}

TEST(AshaPrunerTest, RungsAndTopOneOverEta) {
  AshaPruner asha(1, 27, 3, 0, /*maximize=*/false);
  EXPECT_THAT(asha.rungs(), ElementsAre(1, 3, 9));
  // Rung 0 (step 1): 0.5 first (alone: passes), 0.3 (best of 2: passes), 0.9 (not in top 1/3).
  EXPECT_FALSE(asha.OnReport(At(1, 1, 0.5), true).stop);
  EXPECT_FALSE(asha.OnReport(At(2, 1, 0.3), true).stop);
  const Decision d = asha.OnReport(At(3, 1, 0.9), true);
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(d.reason, "pruned by asha at rung 0 (step 1): 0.9 not in top 1/3 of 3");
  // Reports between rungs decide nothing.
  EXPECT_FALSE(asha.OnReport(At(1, 2, 100), true).stop);
  // Rung 1 (step 3): trial 2 first there.
  EXPECT_FALSE(asha.OnReport(At(2, 3, 0.2), true).stop);
  EXPECT_TRUE(asha.OnReport(At(1, 3, 0.4), true).stop);
  // A report that jumps past several rungs is judged at each.
  AshaPruner jump(1, 100, 2, 0, false);
  EXPECT_FALSE(jump.OnReport(At(1, 1, 0.1), true).stop);
  EXPECT_FALSE(jump.OnReport(At(1, 2, 0.1), true).stop);
  EXPECT_TRUE(jump.OnReport(At(2, 8, 0.5), true).stop);  // fails at rung 0 already
}

// A retry resuming from a checkpoint at step 2 forgets what its earlier attempt recorded at
// rung 1 (step 3): its own value there is recorded and judged, and it is the same as a pruner
// that never saw the dropped report (what a sweepd rebuilt from the store replays).
TEST(AshaPrunerTest, RewindForgetsTheRungsPastTheCheckpointAndMatchesAReplay) {
  AshaPruner live(1, 27, 3, 0, /*maximize=*/false);
  AshaPruner replayed(1, 27, 3, 0, /*maximize=*/false);
  for (AshaPruner* p : {&live, &replayed}) {
    EXPECT_FALSE(p->OnReport(At(1, 1, 0.5), true).stop);
    EXPECT_FALSE(p->OnReport(At(2, 1, 0.6), false).stop);
    EXPECT_FALSE(p->OnReport(At(2, 3, 0.3), false).stop);  // trial 2 is first at rung 1
  }
  // Trial 1's first attempt reaches rung 1 with 0.1 (better than 0.3: it passes there) ...
  EXPECT_FALSE(live.OnReport(At(1, 3, 0.1), true).stop);
  // ... is lost, and its retry resumes from step 2: the 0.1 is forgotten.
  live.Rewind(1, 2, 2);
  // The retry's value at step 3 is 0.4: judged against trial 2's 0.3 alone, not in the top 1/3.
  const Decision d = live.OnReport(At(1, 3, 0.4), true);
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(d.reason, "pruned by asha at rung 1 (step 3): 0.4 not in top 1/3 of 2");
  EXPECT_EQ(replayed.OnReport(At(1, 3, 0.4), true).reason, d.reason);
  // A rewind to the start forgets every rung.
  live.Rewind(2, -std::numeric_limits<double>::infinity(), 0);
  EXPECT_TRUE(live.OnReport(At(2, 1, 0.55), true).stop);  // judged again: 0.55 after 0.5
}

// ASHA with promotion, as Li et al. (MLSys 2020) Algorithm 2 gives it: every trial stops at
// each rung; get_job promotes, from the top rung down, a trial in the top floor(n_k / eta) of
// rung k not yet promoted, and only otherwise starts a new trial.
TEST(AshaPrunerTest, PromotionPausesAtEveryRungAndPromotesTheTopThirdFromTheHighestRung) {
  AshaPruner asha(1, 27, 3, 0, /*maximize=*/false, "asha", /*promotion=*/true);
  ASSERT_THAT(asha.rungs(), ElementsAre(1, 3, 9));
  std::set<int64_t> waiting;
  auto is_waiting = [&](int64_t t) { return waiting.contains(t); };
  // Reports below the first rung go on; at a rung the trial pauses, whatever its value.
  EXPECT_FALSE(asha.OnReport(At(1, 0, 0.9), true).pause);
  for (int64_t t = 1; t <= 2; ++t) {
    const Decision d = asha.OnReport(At(t, 1, 0.1 * static_cast<double>(t)), true);
    EXPECT_TRUE(d.pause);
    EXPECT_FALSE(d.stop);
    waiting.insert(t);
  }
  EXPECT_EQ(asha.OnReport(At(1, 1, 0.1), true).reason, "");  // recorded once: nothing new
  // n_0 = 2: floor(2/3) = 0, nothing to promote yet (a new trial starts).
  EXPECT_EQ(asha.NextPromotion(is_waiting), std::nullopt);
  const Decision third = asha.OnReport(At(3, 1, 0.3), true);
  EXPECT_EQ(third.reason, "paused by asha at rung 0 (step 1) until promoted: 0.3");
  waiting.insert(3);
  // n_0 = 3: the best of rung 0 (trial 1, 0.1) is promoted.
  EXPECT_EQ(asha.NextPromotion(is_waiting), 1);
  EXPECT_EQ(asha.RungOf(1), 0);
  waiting.erase(1);
  asha.Promoted(1);
  // Promoted once: the top third is used up until rung 0 has 6 values.
  EXPECT_EQ(asha.NextPromotion(is_waiting), std::nullopt);
  // Trial 1 runs on and pauses at rung 1 (step 3); alone there, it waits.
  EXPECT_FALSE(asha.OnReport(At(1, 2, 0.05), true).pause);
  EXPECT_TRUE(asha.OnReport(At(1, 3, 0.04), true).pause);
  waiting.insert(1);
  EXPECT_EQ(asha.RungOf(1), 1);
  for (int64_t t = 4; t <= 6; ++t) {
    EXPECT_TRUE(asha.OnReport(At(t, 1, 0.5 + 0.1 * static_cast<double>(t)), true).pause);
    waiting.insert(t);
  }
  // n_0 = 6: top 2 are trials 1 (promoted already, waits at rung 1) and 2: trial 2 goes next.
  EXPECT_EQ(asha.NextPromotion(is_waiting), 2);
  waiting.erase(2);
  asha.Promoted(2);
  EXPECT_TRUE(asha.OnReport(At(2, 3, 0.2), true).pause);
  waiting.insert(2);
  // Rung 1 has 2 values (floor(2/3) = 0); three more at rung 0 make n_0 = 9, top 3: trial 3.
  for (int64_t t = 7; t <= 9; ++t) {
    EXPECT_TRUE(asha.OnReport(At(t, 1, 1.0 + 0.1 * static_cast<double>(t)), true).pause);
    waiting.insert(t);
  }
  // A paused trial's reports sent before the pause reached it record nothing further.
  EXPECT_EQ(asha.OnReport(At(4, 3, 0.0), false).reason, "");
  EXPECT_EQ(asha.RungOf(4), 0);
  EXPECT_EQ(asha.NextPromotion(is_waiting), 3);
  waiting.erase(3);
  asha.Promoted(3);
  EXPECT_TRUE(asha.OnReport(At(3, 3, 0.03), true).pause);
  waiting.insert(3);
  // Rung 1 now has 3 values: its best (trial 3, 0.03) is promoted before anything at rung 0.
  EXPECT_EQ(asha.NextPromotion(is_waiting), 3);
  // A NaN at a rung is pruned, never paused.
  const Decision nan = asha.OnReport(At(10, 1, std::nan("")), true);
  EXPECT_TRUE(nan.stop);
  EXPECT_FALSE(nan.pause);
}

// Replaying stored reports (decide == false) records what the live pruner recorded: a report
// past several rungs records only the first, as the live trial paused there.
TEST(AshaPrunerTest, PromotionReplayRecordsOnlyTheRungATrialPausedAt) {
  AshaPruner live(1, 27, 3, 0, false, "asha", true);
  AshaPruner replayed(1, 27, 3, 0, false, "asha", true);
  EXPECT_TRUE(live.OnReport(At(1, 5, 0.5), true).pause);  // jumps rungs 0 and 1
  replayed.OnReport(At(1, 5, 0.5), false);
  EXPECT_EQ(live.RungOf(1), 0);
  EXPECT_EQ(replayed.RungOf(1), 0);
}

TEST(HyperbandPrunerTest, PromotionPromotesFromTheHighestRungOverAllBrackets) {
  HyperbandPruner hb(1, 9, 3, 0, false, /*promotion=*/true);
  ASSERT_TRUE(hb.Promotes());
  std::set<int64_t> waiting;
  // Enough trials that some bracket has three at its first rung.
  for (int64_t t = 0; t < 30; ++t) {
    const size_t b = hb.BracketOf(t);
    const double first_rung = std::pow(3.0, static_cast<double>(b));
    const Decision d = hb.OnReport(At(t, static_cast<int64_t>(first_rung), 1.0 / (t + 1)), true);
    if (d.pause) waiting.insert(t);
  }
  auto next = hb.NextPromotion([&](int64_t t) { return waiting.contains(t); });
  ASSERT_TRUE(next.has_value());
  EXPECT_TRUE(waiting.contains(*next));
}

TEST(PercentilePrunerTest, RewindDropsTheScoresPastTheCheckpoint) {
  // Median after 1 completed trial, no warm-up: trial 1 completes with 1.0 at steps 0..3.
  PercentilePruner median(50, 1, 0, 1, 1, /*maximize=*/false);
  for (int step = 0; step < 4; ++step) median.OnReport(At(1, step, 1.0), false);
  median.OnTrialEnd(1, v1::TRIAL_STATE_COMPLETED);
  // Trial 2's first attempt is best (0.5) at step 2, then lost; its retry resumes from step 1.
  EXPECT_TRUE(median.OnReport(At(2, 0, 2.0), true).stop);
  EXPECT_TRUE(median.OnReport(At(2, 1, 2.0), true).stop);
  EXPECT_FALSE(median.OnReport(At(2, 2, 0.5), true).stop);
  median.Rewind(2, 1, 2);
  // Without the dropped 0.5 its best is 2.0 again: worse than the median 1.0 at step 2.
  EXPECT_TRUE(median.OnReport(At(2, 2, 2.0), true).stop);
}

TEST(AshaPrunerTest, MaximizeAndNanIsWorst) {
  AshaPruner asha(1, 0, 2, 0, /*maximize=*/true);
  EXPECT_FALSE(asha.OnReport(At(1, 1, 0.8), true).stop);
  EXPECT_TRUE(asha.OnReport(At(2, 1, 0.7), true).stop);  // top 1/2 of 2 is the 0.8
  EXPECT_FALSE(asha.OnReport(At(3, 1, 0.95), true).stop);
  EXPECT_TRUE(asha.OnReport(At(4, 1, NAN), true).stop);
  // min_early_stopping_rate skips the lowest rungs.
  AshaPruner late(1, 100, 3, 2, false);
  EXPECT_THAT(late.rungs(), ElementsAre(9, 27, 81));
}

TEST(HyperbandPrunerTest, BracketsFollowHyperbandBudgets) {
  HyperbandPruner hb(1, 81, 3, 0, false);
  ASSERT_EQ(hb.brackets(), 5u);
  // Budgets ceil(5 * 3^s / (s + 1)) for s = 4..0: 81, 34, 15, 8, 5 of 143.
  const std::vector<double> expected = {81, 34, 15, 8, 5};
  std::vector<int> counts(5, 0);
  const int n = 143000;
  for (int t = 0; t < n; ++t) ++counts[hb.BracketOf(t)];
  for (size_t b = 0; b < 5; ++b) {
    const double p = expected[b] / 143;
    EXPECT_NEAR(counts[b], n * p, 5 * std::sqrt(n * p * (1 - p))) << "bracket " << b;
  }
}

// W&B's own docstring example (wandb/sweeps src/sweeps/hyperband_stopping.py,
// hyperband_stop_runs; max_iter 5, eta 2, s 2 -> bands 1 and 2). W&B's code on these histories:
// band 1 reads h[0] of all five runs (all 10: threshold 10), band 2 reads h[1] of all five
// ([9, 10, 8, 7, 6]: sorted[int(5 / 2)] = 8). Of the running runs b, c and d, only b (10 at
// band 2) is above its threshold: c's 8 is not above 8, whatever the docstring's comment says.
TEST(WandbHyperbandTest, MatchesWandbDocstringExample) {
  for (bool strict : {true, false}) {
    v1::EarlyTerminate et;
    et.set_type("hyperband");
    et.set_max_iter(5);
    et.set_s(2);
    et.set_eta(2);
    et.set_strict(strict);
    auto hb = WandbHyperbandPruner::FromSpec(et, false);
    EXPECT_THAT(hb->bands(), ElementsAre(1, 2));
    const std::map<int64_t, std::vector<double>> histories = {
        {1, {10, 9}}, {2, {10, 10}}, {3, {10, 8, 8}}, {4, {10, 7, 7}}, {5, {10, 6, 6}}};
    // Complete histories first, then each running run judged, as W&B's stop_runs does.
    for (const auto& [trial, h] : histories) {
      for (size_t i = 0; i < h.size(); ++i) {
        hb->OnReport({.trial = trial, .index = static_cast<int64_t>(i), .value = h[i]}, false);
      }
    }
    EXPECT_TRUE(hb->Judge(2).stop) << "b: 10 at band 2, threshold 8";
    EXPECT_THAT(hb->Judge(2).reason, HasSubstr("threshold 8"));
    EXPECT_FALSE(hb->Judge(3).stop) << "c: 8 at band 2 is not above the threshold 8";
    EXPECT_FALSE(hb->Judge(4).stop) << "d: 7 at band 2";
  }
}

// Band b reads the b-th value, h[b-1] (W&B: `h[band - 1]`), and is judged as soon as a trial
// has b values. Maximising: W&B negates the history. Worked by hand from W&B's code.
TEST(WandbHyperbandTest, BandReadsTheBthValueAndMaximizeNegates) {
  v1::EarlyTerminate et;
  et.set_min_iter(3);
  et.set_eta(3);
  et.set_strict(true);
  auto hb = WandbHyperbandPruner::FromSpec(et, /*maximize=*/true);
  EXPECT_THAT(std::vector<int64_t>(hb->bands().begin(), hb->bands().begin() + 3),
              ElementsAre(3, 9, 27));
  // Two values each: no band applies yet.
  for (int64_t t = 1; t <= 4; ++t) {
    for (int64_t i = 0; i < 2; ++i) {
      EXPECT_FALSE(hb->OnReport({.trial = t, .index = i, .value = 0.5}, true).stop);
    }
  }
  // The third value is h[2], what band 3 reads. Thresholds: sorted(-values)[int(n / 3)].
  EXPECT_FALSE(hb->OnReport({.trial = 1, .index = 2, .value = 0.9}, true).stop);   // alone
  EXPECT_TRUE(hb->OnReport({.trial = 2, .index = 2, .value = 0.8}, true).stop);    // [0]: 0.9
  EXPECT_TRUE(hb->OnReport({.trial = 3, .index = 2, .value = 0.1}, true).stop);    // [1]: 0.8
  EXPECT_FALSE(hb->OnReport({.trial = 4, .index = 2, .value = 0.95}, true).stop);  // [1]: 0.9
}

// W&B drops values that are not finite numbers before indexing (metric_history with
// filter_invalid=True): a NaN neither counts towards a band nor is judged.
TEST(WandbHyperbandTest, NanIsLeftOutOfTheHistory) {
  v1::EarlyTerminate et;
  et.set_min_iter(2);
  et.set_eta(2);
  et.set_strict(true);
  auto hb = WandbHyperbandPruner::FromSpec(et, false);
  hb->OnReport({.trial = 1, .index = 0, .value = 1.0}, true);
  hb->OnReport({.trial = 1, .index = 1, .value = 1.0}, true);  // band 2: 1.0
  hb->OnReport({.trial = 2, .index = 0, .value = 5.0}, true);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(hb->OnReport({.trial = 2, .index = 1, .value = nan}, true).stop);
  EXPECT_FALSE(hb->Judge(2).stop) << "one finite value: band 2 does not apply yet";
  // Its second finite value (the third report) is what band 2 reads: 0.5 beats 1.0.
  EXPECT_FALSE(hb->OnReport({.trial = 2, .index = 2, .value = 0.5}, true).stop);
  // Threshold sorted([1.0, 0.5])[int(2 / 2)] = 1.0: trial 1's 1.0 is not above it.
  EXPECT_FALSE(hb->Judge(1).stop);
  // A third trial with 2.0 at band 2: sorted([1.0, 0.5, 2.0])[1] = 1.0, and 2.0 is above it.
  hb->OnReport({.trial = 3, .index = 0, .value = 0.1}, true);
  EXPECT_TRUE(hb->OnReport({.trial = 3, .index = 1, .value = 2.0}, true).stop);
}

TEST(PercentilePrunerTest, MedianOfCompletedTrialsAtTheStep) {
  PercentilePruner median(50, /*n_startup_trials=*/2, /*n_warmup_steps=*/1,
                          /*interval_steps=*/1, /*n_min_trials=*/1, false);
  // Two completed trials: values 1.0 and 3.0 at step 2 (median 2.0).
  for (int64_t t : {1, 2}) {
    for (int64_t step = 0; step < 4; ++step) {
      median.OnReport(At(t, step, t == 1 ? 1.0 : 3.0), true);
    }
  }
  EXPECT_FALSE(median.OnReport(At(3, 2, 2.5), true).stop) << "before 2 trials completed";
  median.OnTrialEnd(1, v1::TRIAL_STATE_COMPLETED);
  median.OnTrialEnd(2, v1::TRIAL_STATE_COMPLETED);
  EXPECT_FALSE(median.OnReport(At(4, 0, 9.0), true).stop) << "warm-up step";
  const Decision d = median.OnReport(At(4, 2, 2.5), true);
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(d.reason, "pruned at step 2: best 2.5 worse than the median 2 of 2 completed trials");
  EXPECT_FALSE(median.OnReport(At(5, 2, 1.5), true).stop);
  // The best so far counts, not the last value.
  EXPECT_FALSE(median.OnReport(At(5, 3, 2.9), true).stop);
  EXPECT_TRUE(median.OnReport(At(6, 3, NAN), true).stop);
  // No completed value at an unseen step: no decision.
  EXPECT_FALSE(median.OnReport(At(7, 50, 100.0), true).stop);
}

TEST(PercentilePrunerTest, PercentileIntervalAndMinTrials) {
  PercentilePruner p25(25, 0, 0, /*interval_steps=*/2, /*n_min_trials=*/3, /*maximize=*/true);
  for (int64_t t = 1; t <= 2; ++t) {
    p25.OnReport(At(t, 4, 0.1 * t), true);
    p25.OnTrialEnd(t, v1::TRIAL_STATE_COMPLETED);
  }
  EXPECT_FALSE(p25.OnReport(At(10, 4, 0.0), true).stop) << "only 2 trials at step 4";
  p25.OnReport(At(3, 4, 0.3), true);
  p25.OnTrialEnd(3, v1::TRIAL_STATE_COMPLETED);
  // Maximising: prune when best < the 75th percentile (of 0.1, 0.2, 0.3: 0.25).
  EXPECT_TRUE(p25.OnReport(At(11, 4, 0.24), true).stop);
  EXPECT_FALSE(p25.OnReport(At(12, 4, 0.26), true).stop);
  EXPECT_FALSE(p25.OnReport(At(13, 5, 0.0), true).stop) << "step 5 is not on the interval";
  // Pruned and failed trials do not count as completed.
  p25.OnReport(At(14, 4, 100), true);
  p25.OnTrialEnd(14, v1::TRIAL_STATE_PRUNED);
  EXPECT_TRUE(p25.OnReport(At(15, 4, 0.24), true).stop);
}

TEST(ThresholdPrunerTest, BoundsAndNan) {
  ThresholdPruner t(0.0, 10.0, 1, 1);
  EXPECT_FALSE(t.OnReport(At(1, 0, 100), true).stop) << "warm-up";
  EXPECT_TRUE(t.OnReport(At(1, 1, 100), true).stop);
  EXPECT_TRUE(t.OnReport(At(2, 1, -1), true).stop);
  EXPECT_TRUE(t.OnReport(At(3, 1, NAN), true).stop);
  EXPECT_FALSE(t.OnReport(At(4, 1, 5), true).stop);
}

// A pruner rebuilt by replaying the stored reports (trial by trial, not in arrival order)
// decides exactly as the one that saw them live.
template <typename MakePruner>
void CheckReplay(MakePruner make, int64_t steps_per_trial, bool report_index_resource) {
  std::mt19937_64 rng(42);
  auto live = make();
  std::map<int64_t, std::vector<Observation>> stored;
  std::map<int64_t, int64_t> progress;
  std::set<int64_t> stopped, ended;
  const int trials = 200;
  std::vector<double> quality(trials);
  for (auto& q : quality) q = std::uniform_real_distribution<double>(0, 1)(rng);
  auto next_observation = [&](int64_t trial) {
    const int64_t step = progress[trial]++;
    const double value =
        quality[trial] + 1.0 / (step + 1) + std::normal_distribution<double>(0, 0.05)(rng);
    return Observation{.trial = trial,
                       .index = step,
                       .resource = report_index_resource ? 0.0 : static_cast<double>(step),
                       .value = value};
  };
  auto step_all = [&](Pruner& pruner, std::vector<Decision>* decisions, int rounds) {
    for (int r = 0; r < rounds; ++r) {
      const auto trial = static_cast<int64_t>(rng() % trials);
      if (stopped.contains(trial) || ended.contains(trial)) continue;
      if (progress[trial] >= steps_per_trial) {
        ended.insert(trial);
        pruner.OnTrialEnd(trial, v1::TRIAL_STATE_COMPLETED);
        if (decisions != nullptr) decisions->push_back({.stop = false, .reason = "end"});
        continue;
      }
      Observation o = next_observation(trial);
      stored[trial].push_back(o);
      Decision d = pruner.OnReport(o, true);
      if (d.stop) stopped.insert(trial);
      if (decisions != nullptr) decisions->push_back(d);
    }
  };
  step_all(*live, nullptr, 3000);
  // Rebuild from the "store": each trial's reports, trial by trial.
  auto rebuilt = make();
  for (const auto& [trial, observations] : stored) {
    for (const auto& o : observations) rebuilt->OnReport(o, false);
    if (ended.contains(trial)) rebuilt->OnTrialEnd(trial, v1::TRIAL_STATE_COMPLETED);
    if (stopped.contains(trial)) rebuilt->OnTrialEnd(trial, v1::TRIAL_STATE_PRUNED);
  }
  for (int64_t t : stopped) live->OnTrialEnd(t, v1::TRIAL_STATE_PRUNED);
  // Both see the same future.
  const auto saved_rng = rng;
  const auto saved_progress = progress;
  const auto saved_stopped = stopped;
  const auto saved_ended = ended;
  std::vector<Decision> a, b;
  step_all(*live, &a, 3000);
  rng = saved_rng;
  progress = saved_progress;
  stopped = saved_stopped;
  ended = saved_ended;
  step_all(*rebuilt, &b, 3000);
  ASSERT_EQ(a.size(), b.size());
  int stops = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].stop, b[i].stop) << "decision " << i;
    EXPECT_EQ(a[i].reason, b[i].reason) << "decision " << i;
    stops += a[i].stop;
  }
  EXPECT_GT(stops, 0) << "the scenario must prune something to mean anything";
}

TEST(PrunerReplayTest, AshaDecidesTheSameAfterARebuild) {
  CheckReplay([] { return std::make_unique<AshaPruner>(1, 27, 3, 0, false); }, 30, false);
}

TEST(PrunerReplayTest, HyperbandDecidesTheSameAfterARebuild) {
  CheckReplay([] { return std::make_unique<HyperbandPruner>(1, 27, 3, 0, false); }, 30, false);
}

TEST(PrunerReplayTest, MedianDecidesTheSameAfterARebuild) {
  CheckReplay([] { return std::make_unique<PercentilePruner>(50, 3, 2, 1, 1, false); }, 20, false);
}

TEST(PrunerReplayTest, WandbHyperbandDecidesTheSameAfterARebuild) {
  CheckReplay(
      [] {
        v1::EarlyTerminate et;
        et.set_min_iter(2);
        et.set_eta(2);
        et.set_strict(false);
        return WandbHyperbandPruner::FromSpec(et, false);
      },
      30, true);
}

}  // namespace
}  // namespace sweepd::pruning
