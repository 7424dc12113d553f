// The store against a real SQLite file: schema, group commit, idempotent metrics, queries,
// write failures and concurrent readers.

#include "store/store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <future>
#include <limits>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/schema.h"
#include "tests/store/store_test_util.h"

namespace sweepd::store {
namespace {

using ::sweepd::store::testing::TempDir;
using ::sweepd::store::testing::TestSweep;
using ::sweepd::store::testing::TestTrial;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::unique_ptr<Store> OpenStore(const std::string& path, int64_t max_pages = 0) {
  auto store = Store::Open({.path = path, .max_pages = max_pages});
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(*store) : nullptr;
}

absl::Status AddSweep(Store& store, NewSweep sweep) {
  return Store::Wait([&](WriteDone d) { store.CreateSweep(std::move(sweep), std::move(d)); });
}
absl::Status AddTrial(Store& store, NewTrial trial) {
  return Store::Wait([&](WriteDone d) { store.CreateTrial(std::move(trial), std::move(d)); });
}
absl::Status Update(Store& store, TrialUpdate update) {
  return Store::Wait([&](WriteDone d) { store.UpdateTrial(std::move(update), std::move(d)); });
}
absl::Status Append(Store& store, int64_t trial, std::vector<MetricReport> reports) {
  return Store::Wait(
      [&](WriteDone d) { store.AppendMetrics(trial, std::move(reports), std::move(d)); });
}

// Caps the file a few pages above its size, like a nearly full disk: a large write fails with
// SQLITE_FULL.
absl::Status LeaveRoomForAFewPages(Store& store) {
  return Store::Wait([&](WriteDone d) {
    store.RunOnWriter(
        [](Connection& db) -> absl::Status {
          auto pages = db.QueryInt("PRAGMA page_count");
          if (!pages.ok()) return pages.status();
          return db.Exec("PRAGMA max_page_count = " + std::to_string(*pages + 2));
        },
        std::move(d));
  });
}

MetricReport Report(int64_t seq, int64_t step, double loss) {
  return MetricReport{.seq = seq, .step = step, .time_us = 1000 + seq, .metrics = {{"loss", loss}}};
}

TEST(StoreSchemaTest, NewFileIsMigratedAndMarked) {
  TempDir dir;
  { ASSERT_NE(OpenStore(dir.File("s.db")), nullptr); }
  auto db = Connection::Open(dir.File("s.db"), Connection::Mode::kReadOnly);
  ASSERT_TRUE(db.ok());
  EXPECT_EQ(*(*db)->QueryInt("PRAGMA application_id"), kApplicationId);
  EXPECT_EQ(*(*db)->QueryInt("PRAGMA user_version"), CurrentSchemaVersion());
  auto mode = (*db)->Prepare("PRAGMA journal_mode");
  ASSERT_TRUE(mode.ok());
  ASSERT_TRUE(*mode->Step());
  EXPECT_EQ(mode->ColumnText(0), "wal");
  // Reopening an up-to-date store is fine.
  EXPECT_NE(OpenStore(dir.File("s.db")), nullptr);
}

TEST(StoreSchemaTest, RefusesANewerStoreAndForeignFiles) {
  TempDir dir;
  { ASSERT_NE(OpenStore(dir.File("s.db")), nullptr); }
  {
    auto db = Connection::Open(dir.File("s.db"), Connection::Mode::kReadWrite);
    ASSERT_TRUE((*db)->Exec("PRAGMA user_version = 99").ok());
  }
  auto newer = Store::Open({.path = dir.File("s.db")});
  ASSERT_FALSE(newer.ok());
  EXPECT_EQ(newer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(newer.status().message()), HasSubstr("schema version 99"));
  EXPECT_THAT(std::string(newer.status().message()), HasSubstr("upgrade sweepd"));

  {
    auto db = Connection::Open(dir.File("other.db"), Connection::Mode::kReadWrite);
    ASSERT_TRUE((*db)->Exec("CREATE TABLE notes (x TEXT)").ok());
  }
  auto foreign = Store::Open({.path = dir.File("other.db")});
  ASSERT_FALSE(foreign.ok());
  EXPECT_THAT(std::string(foreign.status().message()), HasSubstr("another application"));

  std::FILE* f = std::fopen(dir.File("junk.db").c_str(), "w");
  std::fputs("this is not a database, just text that is long enough to matter.......", f);
  std::fclose(f);
  EXPECT_FALSE(Store::Open({.path = dir.File("junk.db")}).ok());
}

std::string JournalMode(const std::string& path) {
  auto db = Connection::Open(path, Connection::Mode::kReadOnly);
  if (!db.ok()) return std::string(db.status().message());
  auto mode = (*db)->Prepare("PRAGMA journal_mode");
  if (!mode.ok() || !*mode->Step()) return "?";
  return mode->ColumnText(0);
}

TEST(StoreSchemaTest, AForeignDatabaseIsRefusedUntouched) {
  TempDir dir;
  const std::string path = dir.File("theirs.db");
  {
    auto db = Connection::Open(path, Connection::Mode::kReadWrite);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->Exec("PRAGMA journal_mode = DELETE").ok());
    ASSERT_TRUE((*db)->Exec("PRAGMA application_id = 1234").ok());
    ASSERT_TRUE((*db)->Exec("CREATE TABLE notes (x TEXT)").ok());
  }
  auto foreign = Store::Open({.path = path});
  ASSERT_FALSE(foreign.ok());
  EXPECT_THAT(std::string(foreign.status().message()), HasSubstr("refusing to touch it"));
  EXPECT_EQ(JournalMode(path), "delete");
  EXPECT_FALSE(std::filesystem::exists(path + "-wal"));

  // The same without an application_id (tables that are not ours).
  const std::string plain = dir.File("plain.db");
  {
    auto db = Connection::Open(plain, Connection::Mode::kReadWrite);
    ASSERT_TRUE((*db)->Exec("CREATE TABLE notes (x TEXT)").ok());
  }
  ASSERT_FALSE(Store::Open({.path = plain}).ok());
  EXPECT_EQ(JournalMode(plain), "delete");
  EXPECT_FALSE(std::filesystem::exists(plain + "-wal"));
}

// Root writes any file, so the check runs as nobody when the test runs as root.
TEST(StoreSchemaTest, AStoreThisUserCannotWriteIsRefusedAtOpen) {
  TempDir dir;
  const std::string path = dir.File("s.db");
  { ASSERT_NE(OpenStore(path), nullptr); }
  ASSERT_EQ(chmod(path.c_str(), 0444), 0);
  ASSERT_EQ(chmod(std::filesystem::path(path).parent_path().c_str(), 0777), 0);
  EXPECT_EXIT(
      {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) std::_Exit(3);
        auto store = Store::Open({.path = path});
        std::fprintf(stderr, "%s\n", std::string(store.status().message()).c_str());
        std::_Exit(store.ok() ? 1 : 0);
      },
      ::testing::ExitedWithCode(0), "cannot be written.*make the file and its folder writable");
}

TEST(StoreTest, SweepSummaryCountsTrialsPerStateAndFindsTheBest) {
  TempDir dir;
  auto store = OpenStore(dir.File("s.db"));
  ASSERT_TRUE(AddSweep(*store, TestSweep(1)).ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(AddTrial(*store, TestTrial(10 + i, 1, i)).ok());
  ASSERT_TRUE(Update(*store, {.id = 10, .state = v1::TRIAL_STATE_RUNNING}).ok());
  ASSERT_TRUE(
      Update(*store, {.id = 11, .state = v1::TRIAL_STATE_COMPLETED, .add_gpu_seconds = 30}).ok());
  ASSERT_TRUE(
      Update(*store, {.id = 12, .state = v1::TRIAL_STATE_PRUNED, .add_gpu_seconds = 12.5}).ok());
  ASSERT_TRUE(Append(*store, 11, {Report(0, 1, 0.9), Report(1, 2, 0.4), Report(2, 3, 0.5)}).ok());
  ASSERT_TRUE(Append(*store, 12, {Report(0, 1, 0.7)}).ok());

  auto sweep = store->GetSweep("s-test1");
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  EXPECT_EQ(sweep->counts().queued(), 2);
  EXPECT_EQ(sweep->counts().running(), 1);
  EXPECT_EQ(sweep->counts().completed(), 1);
  EXPECT_EQ(sweep->counts().pruned(), 1);
  EXPECT_EQ(sweep->best_trial_id(), "s-test1-1");
  EXPECT_DOUBLE_EQ(sweep->best_value(), 0.4);
  EXPECT_DOUBLE_EQ(sweep->gpu_seconds_used(), 42.5);
  EXPECT_EQ(sweep->spec().metric().name(), "loss");
  EXPECT_EQ(store->GetSweep("s-nope").status().code(), absl::StatusCode::kNotFound);
}

TEST(StoreTest, MetricsAreIdempotentOnTrialSeqAndName) {
  TempDir dir;
  auto store = OpenStore(dir.File("s.db"));
  ASSERT_TRUE(AddSweep(*store, TestSweep(1)).ok());
  ASSERT_TRUE(AddTrial(*store, TestTrial(7, 1, 0)).ok());
  std::vector<MetricReport> batch = {Report(0, 10, 0.5), Report(1, 20, 0.3)};
  ASSERT_TRUE(Append(*store, 7, batch).ok());
  ASSERT_TRUE(Append(*store, 7, batch).ok());  // redelivered after a reconnect
  ASSERT_TRUE(Append(*store, 7, {Report(1, 20, 0.3), Report(2, 30, 0.35)}).ok());
  auto detail = store->GetTrial("s-test1-0", {}, 0);
  ASSERT_TRUE(detail.ok()) << detail.status();
  ASSERT_EQ(detail->curves.size(), 1u);
  ASSERT_EQ(detail->curves[0].points_size(), 3);
  EXPECT_EQ(detail->curves[0].points(2).step(), 30);
  ASSERT_EQ(detail->trial.metrics_size(), 1);
  EXPECT_EQ(detail->trial.metrics(0).count(), 3);
  EXPECT_DOUBLE_EQ(detail->trial.metrics(0).last(), 0.35);
  EXPECT_DOUBLE_EQ(detail->trial.metrics(0).best(), 0.3);
  EXPECT_EQ(detail->trial.last_step(), 30);
  EXPECT_EQ(store->writer_stats().metric_rows, 3);
}

// A retry resuming from its checkpoint at step 20 drops the earlier attempt's reports after it;
// the trial's summaries are those of what is left, and its next reports continue the curve.
TEST(StoreTest, ARetryDropsTheReportsAfterItsCheckpointAndRecomputesTheSummaries) {
  TempDir dir;
  auto store = OpenStore(dir.File("s.db"));
  ASSERT_TRUE(AddSweep(*store, TestSweep(1)).ok());
  ASSERT_TRUE(AddTrial(*store, TestTrial(7, 1, 0)).ok());
  // Attempt 1: steps 10..40; the best (0.1) and a NaN come after the checkpoint at 20.
  ASSERT_TRUE(Append(*store, 7,
                     {Report(0, 10, 0.5), Report(1, 20, 0.3), Report(2, 30, 0.1),
                      Report(3, 40, std::nan(""))})
                  .ok());
  ASSERT_TRUE(Update(*store, {.id = 7, .checkpoint_step = 20}).ok());
  ASSERT_TRUE(Update(*store, {.id = 7,
                              .state = v1::TRIAL_STATE_QUEUED,
                              .attempt = 2,
                              .add_gpu_seconds_redone = 12.5,
                              .drop_reports_after_step = 20})
                  .ok());
  auto detail = store->GetTrial("s-test1-0", {}, 0);
  ASSERT_TRUE(detail.ok()) << detail.status();
  ASSERT_EQ(detail->curves.size(), 1u);
  ASSERT_EQ(detail->curves[0].points_size(), 2);
  EXPECT_EQ(detail->curves[0].points(1).step(), 20);
  ASSERT_EQ(detail->trial.metrics_size(), 1);
  EXPECT_EQ(detail->trial.metrics(0).count(), 2);
  EXPECT_DOUBLE_EQ(detail->trial.metrics(0).last(), 0.3);
  EXPECT_DOUBLE_EQ(detail->trial.metrics(0).best(), 0.3);
  EXPECT_EQ(detail->trial.last_step(), 20);
  EXPECT_EQ(detail->trial.checkpoint_step(), 20);
  EXPECT_DOUBLE_EQ(detail->trial.gpu_seconds_redone(), 12.5);
  // Sorting by the metric sees the recomputed best, not the dropped 0.1.
  auto page = store->ListTrials({.sweep_public_id = "s-test1", .sort_metric = "loss"});
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->trials.size(), 1u);
  EXPECT_DOUBLE_EQ(page->trials[0].best_value(), 0.3);
  // Attempt 2 reports steps 30 and 40 again, with later seqs.
  ASSERT_TRUE(Append(*store, 7, {Report(4, 30, 0.25), Report(5, 40, 0.2)}).ok());
  detail = store->GetTrial("s-test1-0", {}, 0);
  ASSERT_TRUE(detail.ok());
  std::vector<int64_t> steps;
  for (const auto& p : detail->curves[0].points()) steps.push_back(p.step());
  EXPECT_THAT(steps, ElementsAre(10, 20, 30, 40));
  EXPECT_EQ(detail->trial.metrics(0).count(), 4);
  EXPECT_DOUBLE_EQ(detail->trial.metrics(0).last(), 0.2);
  // A retry without a checkpoint drops everything.
  ASSERT_TRUE(Update(*store, {.id = 7,
                              .attempt = 3,
                              .drop_reports_after_step = std::numeric_limits<int64_t>::min()})
                  .ok());
  detail = store->GetTrial("s-test1-0", {}, 0);
  ASSERT_TRUE(detail.ok());
  EXPECT_TRUE(detail->curves.empty() || detail->curves[0].points_size() == 0);
  EXPECT_EQ(detail->trial.metrics_size(), 0);
}

TEST(StoreTest, ListTrialsSortsByMetricFiltersAndPages) {
  TempDir dir;
  auto store = OpenStore(dir.File("s.db"));
  ASSERT_TRUE(AddSweep(*store, TestSweep(1)).ok());
  // Trial i has best loss 1/(i+1) except trial 3 (NaN) and trial 5 (no metric at all).
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(AddTrial(*store, TestTrial(100 + i, 1, i)).ok());
    if (i == 5) continue;
    const double loss = i == 3 ? NAN : 1.0 / (i + 1);
    ASSERT_TRUE(Append(*store, 100 + i, {Report(0, 1, loss + 1), Report(1, 2, loss)}).ok());
  }
  ASSERT_TRUE(Update(*store, {.id = 104, .state = v1::TRIAL_STATE_COMPLETED}).ok());

  auto numbers = [](const TrialPage& page) {
    std::vector<int64_t> out;
    for (const auto& t : page.trials) out.push_back(t.number());
    return out;
  };
  auto best_first = store->ListTrials({.sweep_public_id = "s-test1"});
  ASSERT_TRUE(best_first.ok()) << best_first.status();
  // NaN is the worst value; a trial without the metric comes last.
  EXPECT_THAT(numbers(*best_first), ElementsAre(4, 2, 1, 0, 3, 5));
  EXPECT_EQ(best_first->total, 6);
  EXPECT_DOUBLE_EQ(best_first->trials[0].best_value(), 0.2);
  EXPECT_TRUE(std::isnan(best_first->trials[4].last_value()));

  auto worst_first = store->ListTrials({.sweep_public_id = "s-test1", .descending = true});
  EXPECT_THAT(numbers(*worst_first), ElementsAre(3, 0, 1, 2, 4, 5));

  auto page2 = store->ListTrials({.sweep_public_id = "s-test1", .limit = 2, .offset = 4});
  EXPECT_THAT(numbers(*page2), ElementsAre(3, 5));
  auto page3 = store->ListTrials({.sweep_public_id = "s-test1", .limit = 2, .offset = 5});
  EXPECT_THAT(numbers(*page3), ElementsAre(5));

  auto completed =
      store->ListTrials({.sweep_public_id = "s-test1", .states = {v1::TRIAL_STATE_COMPLETED}});
  EXPECT_THAT(numbers(*completed), ElementsAre(4));
  EXPECT_EQ(completed->total, 1);

  auto params = (*best_first).trials[0].params();
  ASSERT_EQ(params.size(), 1);
  EXPECT_EQ(params[0].name(), "lr");
  EXPECT_EQ(store->ListTrials({.sweep_public_id = "s-none"}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(StoreTest, MaximizeSortsLargestFirst) {
  TempDir dir;
  auto store = OpenStore(dir.File("s.db"));
  ASSERT_TRUE(AddSweep(*store, TestSweep(2, "maximize")).ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(AddTrial(*store, TestTrial(200 + i, 2, i)).ok());
    ASSERT_TRUE(Append(*store, 200 + i, {Report(0, 1, i == 1 ? NAN : 0.1 * i)}).ok());
  }
  auto page = store->ListTrials({.sweep_public_id = "s-test2"});
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->trials.size(), 3u);
  EXPECT_EQ(page->trials[0].number(), 2);
  EXPECT_EQ(page->trials[1].number(), 0);
  EXPECT_EQ(page->trials[2].number(), 1);  // NaN: worst
  EXPECT_EQ(store->GetSweep("s-test2")->best_trial_id(), "s-test2-2");
}

TEST(StoreTest, TrialDetailHasEventsAndDownsampledCurves) {
  TempDir dir;
  auto store = OpenStore(dir.File("s.db"));
  ASSERT_TRUE(AddSweep(*store, TestSweep(1)).ok());
  ASSERT_TRUE(AddTrial(*store, TestTrial(5, 1, 0)).ok());
  std::vector<MetricReport> reports;
  for (int i = 0; i < 100; ++i) {
    reports.push_back({.seq = i,
                       .step = i * 10,
                       .time_us = i,
                       .metrics = {{"loss", 1.0 / (i + 1)}, {"acc", 0.01 * i}}});
  }
  ASSERT_TRUE(Append(*store, 5, reports).ok());
  ASSERT_TRUE(Store::Wait([&](WriteDone d) {
                store->AppendEvent({.time_us = 1,
                                    .sweep_id = 1,
                                    .trial_id = 5,
                                    .kind = "trial.state",
                                    .from_state = "queued",
                                    .to_state = "running",
                                    .message = "started on a1"},
                                   std::move(d));
              }).ok());
  auto detail = store->GetTrial("s-test1-0", {"loss"}, 11);
  ASSERT_TRUE(detail.ok()) << detail.status();
  ASSERT_EQ(detail->curves.size(), 1u);
  const auto& curve = detail->curves[0];
  EXPECT_EQ(curve.name(), "loss");
  ASSERT_EQ(curve.points_size(), 11);
  EXPECT_EQ(curve.points(0).step(), 0);
  EXPECT_EQ(curve.points(10).step(), 990);
  ASSERT_EQ(detail->events.size(), 1u);
  EXPECT_EQ(detail->events[0].to_state(), "running");
  EXPECT_EQ(detail->trial.metrics_size(), 2);
  auto all = store->GetTrial("s-test1-0", {}, 0);
  EXPECT_EQ(all->curves.size(), 2u);
  auto events = store->ListEvents("s-test1", 0, 100);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].trial_id(), "s-test1-0");
}

// A state change and its event are one write: both are stored, or (when the change fails)
// neither, even when other writes share the batch.
TEST(StoreTest, AStateChangeAndItsEventAreStoredTogetherOrNotAtAll) {
  TempDir dir;
  auto store = OpenStore(dir.File("s.db"));
  ASSERT_TRUE(AddSweep(*store, TestSweep(1)).ok());
  ASSERT_TRUE(AddTrial(*store, TestTrial(5, 1, 0)).ok());
  auto event = [](int64_t trial, const std::string& to) {
    return NewEvent{.time_us = 1,
                    .sweep_id = 1,
                    .trial_id = trial,
                    .kind = "trial.state",
                    .from_state = "queued",
                    .to_state = to,
                    .message = "test"};
  };
  std::vector<std::future<absl::Status>> results;
  auto track = [&]() {
    auto p = std::make_shared<std::promise<absl::Status>>();
    results.push_back(p->get_future());
    return [p](absl::Status s) { p->set_value(s); };
  };
  // One batch: a good transition, one of a trial that does not exist, another good one.
  store->UpdateTrial({.id = 5, .state = v1::TRIAL_STATE_ASSIGNED}, event(5, "assigned"), track());
  store->UpdateTrial({.id = 999, .state = v1::TRIAL_STATE_RUNNING}, event(5, "bogus"), track());
  store->UpdateTrial({.id = 5, .state = v1::TRIAL_STATE_RUNNING}, event(5, "running"), track());
  EXPECT_TRUE(results[0].get().ok());
  EXPECT_EQ(results[1].get().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(results[2].get().ok());
  auto detail = store->GetTrial("s-test1-0", {}, 0, /*with_curves=*/false);
  ASSERT_TRUE(detail.ok()) << detail.status();
  EXPECT_EQ(detail->trial.state(), v1::TRIAL_STATE_RUNNING);
  std::vector<std::string> to;
  for (const auto& e : detail->events) to.push_back(e.to_state());
  EXPECT_THAT(to, ElementsAre("assigned", "running")) << "the failed change left no event";
  // Sweeps likewise.
  ASSERT_TRUE(Store::Wait([&](WriteDone d) {
                store->UpdateSweep({.id = 1, .state = v1::SWEEP_STATE_PAUSED},
                                   NewEvent{.time_us = 2,
                                            .sweep_id = 1,
                                            .kind = "sweep.state",
                                            .from_state = "running",
                                            .to_state = "paused",
                                            .message = "test"},
                                   std::move(d));
              }).ok());
  auto sweep = store->GetSweep("s-test1");
  ASSERT_TRUE(sweep.ok());
  EXPECT_EQ(sweep->state(), v1::SWEEP_STATE_PAUSED);
  auto events = store->ListEvents("s-test1", 0, 100);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(events->back().to_state(), "paused");
}

TEST(StoreTest, ExportHasParamsAndFinalMetricsPerTrial) {
  TempDir dir;
  auto store = OpenStore(dir.File("s.db"));
  ASSERT_TRUE(AddSweep(*store, TestSweep(1)).ok());
  ASSERT_TRUE(AddTrial(*store, TestTrial(1, 1, 0)).ok());
  ASSERT_TRUE(AddTrial(*store, TestTrial(2, 1, 1)).ok());
  ASSERT_TRUE(Append(*store, 1, {Report(0, 1, 0.8), Report(1, 2, 0.6)}).ok());
  auto table = store->ExportSweep("s-test1");
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_THAT(table->columns, ElementsAre("trial", "number", "state", "attempt", "gpu_seconds",
                                          "reason", "lr", "loss"));
  ASSERT_EQ(table->rows.size(), 2u);
  EXPECT_EQ(table->rows[0][0], "s-test1-0");
  EXPECT_EQ(table->rows[0][2], "queued");
  EXPECT_EQ(table->rows[0][6], "0.01");
  EXPECT_EQ(table->rows[0][7], "0.6");
  EXPECT_EQ(table->rows[1][7], "");
}

TEST(StoreTest, AFailedWriteFailsAloneAndNamesTheProblem) {
  TempDir dir;
  auto store = OpenStore(dir.File("s.db"));
  ASSERT_TRUE(AddSweep(*store, TestSweep(1)).ok());
  // Queue several writes at once so they share a batch; the bad ones fail alone.
  std::vector<std::future<absl::Status>> results;
  std::vector<std::shared_ptr<std::promise<absl::Status>>> promises;
  auto track = [&]() {
    auto p = std::make_shared<std::promise<absl::Status>>();
    results.push_back(p->get_future());
    return [p](absl::Status s) { p->set_value(s); };
  };
  store->CreateTrial(TestTrial(1, 1, 0), track());
  store->AppendMetrics(999, {Report(0, 1, 0.5)}, track());  // no such trial
  store->CreateTrial(TestTrial(2, 1, 0), track());          // duplicate number
  store->CreateTrial(TestTrial(3, 42, 0), track());         // no such sweep
  store->AppendMetrics(1, {Report(0, 1, 0.5)}, track());
  ASSERT_TRUE(results[0].get().ok());
  auto missing = results[1].get();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.message()), HasSubstr("999"));
  EXPECT_EQ(results[2].get().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(results[3].get().ok());
  EXPECT_TRUE(results[4].get().ok());
  auto page = store->ListTrials({.sweep_public_id = "s-test1"});
  ASSERT_EQ(page->trials.size(), 1u);
  EXPECT_DOUBLE_EQ(page->trials[0].best_value(), 0.5);
}

TEST(StoreTest, WithoutRetriesAFullDiskFailsTheWriteAndTheStoreRecovers) {
  TempDir dir;
  auto opened = Store::Open({.path = dir.File("s.db"), .retry_storage_faults = false});
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto store = std::move(*opened);
  ASSERT_TRUE(AddSweep(*store, TestSweep(1)).ok());
  ASSERT_TRUE(AddTrial(*store, TestTrial(1, 1, 0)).ok());
  // Leave room for a few pages only: a large batch cannot fit.
  ASSERT_TRUE(LeaveRoomForAFewPages(*store).ok());
  std::vector<MetricReport> big;
  for (int i = 0; i < 20000; ++i) big.push_back(Report(i, i, 1.0 / (i + 1)));
  absl::Status full = Append(*store, 1, big);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_EQ(store->GetTrial("s-test1-0", {}, 0)->curves.size(), 0u) << "nothing half-stored";
  // Space returns: the same write goes through, once.
  ASSERT_TRUE(Store::Wait([&](WriteDone d) {
                store->RunOnWriter(
                    [](Connection& db) { return db.Exec("PRAGMA max_page_count = 1073741823"); },
                    std::move(d));
              }).ok());
  ASSERT_TRUE(Append(*store, 1, big).ok());
  auto detail = store->GetTrial("s-test1-0", {}, 0);
  ASSERT_EQ(detail->curves.size(), 1u);
  EXPECT_EQ(detail->curves[0].points_size(), 20000);
}

// The default: a full disk holds writes back (nothing acknowledged, Health says why) and they
// all commit, once and in order, when space returns.
TEST(StoreTest, AFullDiskStallsWritesUntilSpaceReturnsAndLosesNothing) {
  TempDir dir;
  std::atomic<bool> space_returns{false};
  std::atomic<int> retries{0};
  auto opened = Store::Open(
      {.path = dir.File("s.db"), .max_retry_seconds = 0.05, .before_retry = [&](Connection& db) {
         ++retries;
         if (space_returns) {
           ASSERT_TRUE(db.Exec("PRAGMA max_page_count = 1073741823").ok());
         }
       }});
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto store = std::move(*opened);
  ASSERT_TRUE(AddSweep(*store, TestSweep(1)).ok());
  ASSERT_TRUE(AddTrial(*store, TestTrial(1, 1, 0)).ok());
  EXPECT_FALSE(store->Health().degraded);
  ASSERT_TRUE(LeaveRoomForAFewPages(*store).ok());
  std::vector<MetricReport> big;
  for (int i = 0; i < 20000; ++i) big.push_back(Report(i, i, 1.0 / (i + 1)));
  std::promise<absl::Status> big_done, small_done;
  store->AppendMetrics(1, big, [&](absl::Status s) { big_done.set_value(s); });
  // Queued behind the stuck batch: it must wait too, and commit after it.
  store->UpdateTrial({.id = 1, .state = v1::TRIAL_STATE_RUNNING},
                     [&](absl::Status s) { small_done.set_value(s); });
  auto big_future = big_done.get_future();
  auto small_future = small_done.get_future();
  while (retries < 3) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const StoreHealth health = store->Health();
  EXPECT_TRUE(health.degraded);
  EXPECT_THAT(health.error, HasSubstr("full"));
  EXPECT_GT(health.since_us, 0);
  EXPECT_TRUE(store->Degraded());
  EXPECT_EQ(big_future.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout)
      << "nothing is acknowledged while the disk is full";
  EXPECT_EQ(small_future.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  absl::Status flush = store->Flush(0.05);
  EXPECT_EQ(flush.code(), absl::StatusCode::kUnavailable) << flush;
  EXPECT_THAT(flush.message(), HasSubstr("not made it durable yet"));
  EXPECT_EQ(store->GetTrial("s-test1-0", {}, 0)->curves.size(), 0u) << "nothing half-stored";
  EXPECT_EQ(store->GetTrial("s-test1-0", {}, 0)->trial.state(), v1::TRIAL_STATE_QUEUED);

  space_returns = true;
  EXPECT_TRUE(big_future.get().ok());
  EXPECT_TRUE(small_future.get().ok());
  EXPECT_FALSE(store->Health().degraded);
  EXPECT_TRUE(store->Flush(10).ok());
  auto detail = store->GetTrial("s-test1-0", {}, 0);
  ASSERT_EQ(detail->curves.size(), 1u);
  EXPECT_EQ(detail->curves[0].points_size(), 20000);
  EXPECT_EQ(detail->trial.state(), v1::TRIAL_STATE_RUNNING);
  EXPECT_GE(store->writer_stats().failed_commits, 3);
}

// Under deterministic simulation (hold_writes_until_flush) the same fault is retried once per
// Flush, not on a timer: each Flush while the disk is full answers UNAVAILABLE without storing or
// acknowledging anything, and the Flush after space returns commits every held write, once.
TEST(StoreTest, UnderSimulationAFullDiskIsRetriedOncePerFlush) {
  TempDir dir;
  bool space_returns = false;
  int retries = 0;
  auto opened =
      Store::Open({.path = dir.File("s.db"),
                   .before_retry =
                       [&](Connection& db) {
                         ++retries;
                         if (space_returns) {
                           ASSERT_TRUE(db.Exec("PRAGMA max_page_count = 1073741823").ok());
                         }
                       },
                   .hold_writes_until_flush = true});
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto store = std::move(*opened);
  auto flushed = [&](auto write) {
    std::optional<absl::Status> result;
    write([&](absl::Status s) { result = s; });
    EXPECT_TRUE(store->Flush().ok());
    return result;
  };
  ASSERT_EQ(flushed([&](WriteDone d) { store->CreateSweep(TestSweep(1), std::move(d)); }),
            absl::OkStatus());
  ASSERT_EQ(flushed([&](WriteDone d) { store->CreateTrial(TestTrial(1, 1, 0), std::move(d)); }),
            absl::OkStatus());
  ASSERT_EQ(flushed([&](WriteDone d) {
              store->RunOnWriter(
                  [](Connection& db) -> absl::Status {
                    auto pages = db.QueryInt("PRAGMA page_count");
                    if (!pages.ok()) return pages.status();
                    return db.Exec("PRAGMA max_page_count = " + std::to_string(*pages + 2));
                  },
                  std::move(d));
            }),
            absl::OkStatus());

  std::vector<MetricReport> big;
  for (int i = 0; i < 20000; ++i) big.push_back(Report(i, i, 1.0 / (i + 1)));
  std::atomic<int> big_done{0}, small_done{0};
  store->AppendMetrics(1, big, [&](absl::Status s) { big_done += s.ok() ? 1 : 100; });
  store->UpdateTrial({.id = 1, .state = v1::TRIAL_STATE_RUNNING},
                     [&](absl::Status s) { small_done += s.ok() ? 1 : 100; });
  for (int flush = 1; flush <= 3; ++flush) {
    const absl::Status status = store->Flush();
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
    EXPECT_THAT(status.message(), HasSubstr("full"));
    EXPECT_EQ(retries, flush - 1) << "one retry per Flush, none on a timer";
    EXPECT_TRUE(store->Degraded());
    EXPECT_EQ(big_done, 0);
    EXPECT_EQ(small_done, 0);
    EXPECT_EQ(store->GetTrial("s-test1-0", {}, 0)->curves.size(), 0u);
  }
  space_returns = true;
  EXPECT_TRUE(store->Flush().ok());
  EXPECT_EQ(big_done, 1) << "acknowledged once";
  EXPECT_EQ(small_done, 1);
  EXPECT_FALSE(store->Degraded());
  auto detail = store->GetTrial("s-test1-0", {}, 0);
  ASSERT_EQ(detail->curves.size(), 1u);
  EXPECT_EQ(detail->curves[0].points_size(), 20000);
  EXPECT_EQ(detail->trial.state(), v1::TRIAL_STATE_RUNNING);
}

// Closing while a batch cannot be stored: what is on disk stays a prefix of what was written. A
// later write that would fit (an in-place update) is not committed without the earlier one it
// follows (found by engine_sim: a trial's new state stored without its assignment).
TEST(StoreTest, ClosingWhileTheDiskIsFullStoresNoLaterWriteWithoutTheEarlierOnes) {
  TempDir dir;
  auto opened = Store::Open({.path = dir.File("s.db"), .hold_writes_until_flush = true});
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto store = std::move(*opened);
  store->CreateSweep(TestSweep(1), nullptr);
  store->CreateTrial(TestTrial(1, 1, 0), nullptr);
  store->RunOnWriter([](Connection& db) { return db.Exec("PRAGMA max_page_count = 1"); }, nullptr);
  ASSERT_TRUE(store->Flush().ok());
  std::vector<MetricReport> big;
  for (int i = 0; i < 5000; ++i) big.push_back(Report(i, i, 1.0));
  std::optional<absl::Status> metrics, update;
  store->AppendMetrics(1, big, [&](absl::Status s) { metrics = s; });
  EXPECT_EQ(store->Flush().code(), absl::StatusCode::kUnavailable);
  store->UpdateTrial({.id = 1, .state = v1::TRIAL_STATE_RUNNING},
                     [&](absl::Status s) { update = s; });
  store.reset();
  ASSERT_TRUE(metrics.has_value());
  EXPECT_FALSE(metrics->ok());
  ASSERT_TRUE(update.has_value());
  EXPECT_FALSE(update->ok()) << "a later write committed after an earlier one was given up";
  auto reopened = OpenStore(dir.File("s.db"));
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->GetTrial("s-test1-0", {}, 0)->trial.state(), v1::TRIAL_STATE_QUEUED);
  EXPECT_EQ(reopened->GetTrial("s-test1-0", {}, 0)->curves.size(), 0u);
}

// A simulated kill -9 while the disk is full runs no completion: nothing held is acknowledged.
TEST(StoreTest, UnderSimulationAKillWhileTheDiskIsFullAcknowledgesNothing) {
  TempDir dir;
  auto opened = Store::Open({.path = dir.File("s.db"), .hold_writes_until_flush = true});
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto store = std::move(*opened);
  std::optional<absl::Status> created;
  store->CreateSweep(TestSweep(1), [&](absl::Status s) { created = s; });
  ASSERT_TRUE(store->Flush().ok());
  ASSERT_EQ(created, absl::OkStatus());
  store->CreateTrial(TestTrial(1, 1, 0), nullptr);
  store->RunOnWriter([](Connection& db) { return db.Exec("PRAGMA max_page_count = 1"); }, nullptr);
  ASSERT_TRUE(store->Flush().ok());
  std::atomic<int> completions{0};
  std::vector<MetricReport> big;
  for (int i = 0; i < 5000; ++i) big.push_back(Report(i, i, 1.0));
  store->AppendMetrics(1, big, [&](absl::Status) { ++completions; });
  EXPECT_EQ(store->Flush().code(), absl::StatusCode::kUnavailable);
  store->CrashForSimulation();
  store.reset();
  EXPECT_EQ(completions, 0);
  auto reopened = OpenStore(dir.File("s.db"));
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->GetTrial("s-test1-0", {}, 0)->curves.size(), 0u);
}

// Closing a store whose disk stays full does not hang: it gives up after close_retry_seconds
// and fails what it could not store (none of it was acknowledged).
TEST(StoreTest, ClosingWhileTheDiskStaysFullGivesUp) {
  TempDir dir;
  std::promise<absl::Status> done;
  auto future = done.get_future();
  {
    auto opened = Store::Open(
        {.path = dir.File("s.db"), .max_retry_seconds = 0.05, .close_retry_seconds = 0.2});
    ASSERT_TRUE(opened.ok()) << opened.status();
    auto store = std::move(*opened);
    ASSERT_TRUE(AddSweep(*store, TestSweep(1)).ok());
    ASSERT_TRUE(AddTrial(*store, TestTrial(1, 1, 0)).ok());
    ASSERT_TRUE(LeaveRoomForAFewPages(*store).ok());
    std::vector<MetricReport> big;
    for (int i = 0; i < 20000; ++i) big.push_back(Report(i, i, 1.0));
    store->AppendMetrics(1, big, [&](absl::Status s) { done.set_value(s); });
    while (!store->Degraded()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(future.get().code(), absl::StatusCode::kResourceExhausted);
}

TEST(StoreTest, ConcurrentProducersAndReadersSeeWholeBatches) {
  TempDir dir;
  auto store = OpenStore(dir.File("s.db"));
  ASSERT_TRUE(AddSweep(*store, TestSweep(1)).ok());
  constexpr int kProducers = 8, kBatches = 50, kPerBatch = 20;
  for (int p = 0; p < kProducers; ++p) ASSERT_TRUE(AddTrial(*store, TestTrial(p + 1, 1, p)).ok());
  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  std::thread reader([&] {
    while (!done.load()) {
      for (int p = 0; p < kProducers; ++p) {
        auto detail = store->GetTrial("s-test1-" + std::to_string(p), {}, 0, true);
        if (!detail.ok()) continue;
        for (const auto& c : detail->curves) {
          if (c.points_size() % kPerBatch != 0) ++torn;  // half a batch visible
        }
      }
    }
  });
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int b = 0; b < kBatches; ++b) {
        std::vector<MetricReport> batch;
        for (int i = 0; i < kPerBatch; ++i) {
          const int seq = b * kPerBatch + i;
          batch.push_back(Report(seq, seq, 1.0 / (seq + 1)));
        }
        EXPECT_TRUE(Append(*store, p + 1, std::move(batch)).ok());
      }
    });
  }
  for (auto& t : producers) t.join();
  done = true;
  reader.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(store->writer_stats().metric_rows, kProducers * kBatches * kPerBatch);
}

}  // namespace
}  // namespace sweepd::store
