// Store benchmark: durable metric ingestion with 1, 8 and 64 concurrent producers (rows/s and
// acknowledgement latency), and trial-history query latency at 10k and 100k trials with 100
// points each. Prints figures; it is not a test.
//
// Usage: store_bench [--dir DIR] [--seconds S] [--rows-per-batch N] [--sizes 10000,100000]
//                    [--skip-ingest] [--skip-queries]

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/spec_parser.h"
#include "store/store.h"

namespace sweepd::store {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

NewSweep BenchSweep(int64_t id) {
  NewSweep sweep;
  sweep.id = id;
  sweep.public_id = "s-bench" + std::to_string(id);
  sweep.spec_yaml =
      "method: random\ncommand: [run]\nmetric: {name: loss}\nparameters:\n  lr: {min: 0.0, "
      "max: 1.0}\n";
  sweep.spec = ParseSweepSpec(sweep.spec_yaml)->spec;
  return sweep;
}

NewTrial BenchTrial(int64_t id, int64_t sweep_id, int64_t number) {
  NewTrial t;
  t.id = id;
  t.sweep_id = sweep_id;
  t.number = number;
  t.public_id = "s-bench" + std::to_string(sweep_id) + "-" + std::to_string(number);
  t.params_json = "{\"lr\":" + std::to_string(static_cast<double>(number % 997) / 997.0) + "}";
  t.state = v1::TRIAL_STATE_RUNNING;
  return t;
}

void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, std::string(s.message()).c_str());
    std::exit(1);
  }
}

// Each producer acts as an agent: one batch in flight, the next sent when the last is acked.
void Ingest(const std::string& dir, int producers, double seconds, int rows_per_batch) {
  const std::string path = dir + "/ingest-" + std::to_string(producers) + ".db";
  std::filesystem::remove(path);
  std::filesystem::remove(path + "-wal");
  std::filesystem::remove(path + "-shm");
  auto store = Store::Open({.path = path, .synchronous = Synchronous::kFull});
  Check(store.status(), "open");
  Check(Store::Wait([&](WriteDone d) { (*store)->CreateSweep(BenchSweep(1), std::move(d)); }),
        "sweep");
  for (int p = 0; p < producers; ++p) {
    Check(Store::Wait(
              [&](WriteDone d) { (*store)->CreateTrial(BenchTrial(p + 1, 1, p), std::move(d)); }),
          "trial");
  }
  const int reports_per_batch = std::max(1, rows_per_batch / 2);  // two metrics per report
  std::atomic<int64_t> rows{0};
  std::vector<std::vector<double>> latencies(producers);
  const auto start = Clock::now();
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      int64_t seq = 0;
      while (Clock::now() < end) {
        std::vector<MetricReport> batch;
        batch.reserve(reports_per_batch);
        for (int i = 0; i < reports_per_batch; ++i, ++seq) {
          batch.push_back({.seq = seq,
                           .step = seq,
                           .time_us = seq,
                           .metrics = {{"loss", 1.0 / static_cast<double>(seq + 1)},
                                       {"acc", 0.001 * static_cast<double>(seq % 1000)}}});
        }
        const auto sent = Clock::now();
        Check(Store::Wait([&](WriteDone d) {
                (*store)->AppendMetrics(p + 1, std::move(batch), std::move(d));
              }),
              "append");
        latencies[p].push_back(Ms(Clock::now() - sent));
        rows += 2 * reports_per_batch;
      }
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  const auto stats = (*store)->writer_stats();
  std::printf(
      "producers=%d rows/s=%.0f ack_p50_ms=%.2f ack_p99_ms=%.2f rows_per_batch=%d "
      "commits=%lld rows_per_commit=%.0f\n",
      producers, static_cast<double>(rows.load()) / elapsed, Percentile(all, 0.5),
      Percentile(all, 0.99), 2 * reports_per_batch, static_cast<long long>(stats.batches),
      static_cast<double>(stats.metric_rows) /
          static_cast<double>(std::max<int64_t>(1, stats.batches)));
  std::fflush(stdout);
}

void Queries(const std::string& dir, int trials, int points) {
  const std::string path = dir + "/queries-" + std::to_string(trials) + ".db";
  const bool fresh = !std::filesystem::exists(path);
  auto store = Store::Open({.path = path, .synchronous = Synchronous::kNormal});
  Check(store.status(), "open");
  const auto fill_start = Clock::now();
  if (fresh) {
    Check(Store::Wait([&](WriteDone d) { (*store)->CreateSweep(BenchSweep(1), std::move(d)); }),
          "sweep");
    std::mt19937_64 rng(7);
    std::vector<std::future<absl::Status>> pending;
    for (int t = 0; t < trials; ++t) {
      auto trial = BenchTrial(t + 1, 1, t);
      if (t % 5 == 0) trial.state = v1::TRIAL_STATE_COMPLETED;
      (*store)->CreateTrial(std::move(trial), nullptr);
      const double scale = 0.2 + static_cast<double>(rng() % 1000) / 1000.0;
      std::vector<MetricReport> reports;
      for (int i = 0; i < points; ++i) {
        reports.push_back(
            {.seq = i, .step = i, .time_us = i, .metrics = {{"loss", scale / (1.0 + i)}}});
      }
      auto promise = std::make_shared<std::promise<absl::Status>>();
      pending.push_back(promise->get_future());
      (*store)->AppendMetrics(t + 1, std::move(reports),
                              [promise](absl::Status s) { promise->set_value(s); });
      if (pending.size() > 512) {  // bound memory: wait for the oldest
        Check(pending.front().get(), "fill");
        pending.erase(pending.begin());
      }
    }
    for (auto& f : pending) Check(f.get(), "fill");
  }
  const double fill_s = std::chrono::duration<double>(Clock::now() - fill_start).count();
  std::mt19937_64 rng(11);
  constexpr int kRepeats = 300;
  std::vector<double> top10, top10_total, curve, summary;
  for (int i = 0; i < kRepeats; ++i) {
    auto t0 = Clock::now();
    auto page =
        (*store)->ListTrials({.sweep_public_id = "s-bench1", .limit = 10, .with_total = false});
    top10.push_back(Ms(Clock::now() - t0));
    Check(page.status(), "top10");
    t0 = Clock::now();
    auto counted = (*store)->ListTrials({.sweep_public_id = "s-bench1", .limit = 10});
    top10_total.push_back(Ms(Clock::now() - t0));
    Check(counted.status(), "top10 with total");
    const int64_t n = static_cast<int64_t>(rng() % static_cast<uint64_t>(trials));
    t0 = Clock::now();
    auto detail = (*store)->GetTrial("s-bench1-" + std::to_string(n), {"loss"}, 0);
    curve.push_back(Ms(Clock::now() - t0));
    Check(detail.status(), "curve");
    if (detail->curves.empty() || detail->curves[0].points_size() != points) {
      std::fprintf(stderr, "curve of trial %lld has the wrong length\n", static_cast<long long>(n));
      std::exit(1);
    }
    t0 = Clock::now();
    auto sweep = (*store)->GetSweep("s-bench1");
    summary.push_back(Ms(Clock::now() - t0));
    Check(sweep.status(), "summary");
  }
  std::printf(
      "trials=%d metric_rows=%lld fill_s=%.1f top10_p50_ms=%.3f top10_p99_ms=%.3f "
      "top10_with_total_p50_ms=%.3f top10_with_total_p99_ms=%.3f curve_p50_ms=%.3f "
      "curve_p99_ms=%.3f summary_p50_ms=%.3f summary_p99_ms=%.3f\n",
      trials, static_cast<long long>(trials) * points, fill_s, Percentile(top10, 0.5),
      Percentile(top10, 0.99), Percentile(top10_total, 0.5), Percentile(top10_total, 0.99),
      Percentile(curve, 0.5), Percentile(curve, 0.99), Percentile(summary, 0.5),
      Percentile(summary, 0.99));
  std::fflush(stdout);
}

}  // namespace
}  // namespace sweepd::store

int main(int argc, char** argv) {
  std::string dir = "bench-data";
  double seconds = 3;
  int rows_per_batch = 50;
  std::vector<int> sizes = {10'000, 100'000};
  bool ingest = true, queries = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--dir") {
      dir = value();
    } else if (arg == "--seconds") {
      seconds = std::atof(value().c_str());
    } else if (arg == "--rows-per-batch") {
      rows_per_batch = std::atoi(value().c_str());
    } else if (arg == "--sizes") {
      sizes.clear();
      for (auto s : absl::StrSplit(value(), ',')) {
        int n = 0;
        if (absl::SimpleAtoi(s, &n) && n > 0) sizes.push_back(n);
      }
    } else if (arg == "--skip-ingest") {
      ingest = false;
    } else if (arg == "--skip-queries") {
      queries = false;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--dir DIR] [--seconds S] [--rows-per-batch N] "
                   "[--sizes 10000,100000] [--skip-ingest] [--skip-queries]\n",
                   argv[0]);
      return 2;
    }
  }
  std::filesystem::create_directories(dir);
  std::printf("# store_bench: dir=%s (durable: synchronous=FULL for ingestion)\n", dir.c_str());
  if (ingest) {
    for (int producers : {1, 8, 64}) {
      sweepd::store::Ingest(dir, producers, seconds, rows_per_batch);
    }
  }
  if (queries) {
    for (int trials : sizes) sweepd::store::Queries(dir, trials, 100);
  }
  return 0;
}
