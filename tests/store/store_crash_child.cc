// Writes metrics under load until killed: the child side of store_crash_test. After each
// acknowledged batch it appends "trial_id seq" lines to a side file, so whatever the side file
// holds was acknowledged before the kill.
//
// Usage: store_crash_child DB SIDE_FILE SEED

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "store/store.h"
#include "tests/store/store_test_util.h"

namespace {

constexpr int kProducers = 16;

}  // namespace

int main(int argc, char** argv) {
  using namespace sweepd::store;
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DB SIDE_FILE SEED\n", argv[0]);
    return 2;
  }
  auto store = Store::Open({.path = argv[1]});
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", std::string(store.status().message()).c_str());
    return 1;
  }
  auto ids = (*store)->GetMaxIds();
  if (!ids.ok()) return 1;
  const int64_t sweep_id = ids->sweep_id + 1;
  if (!Store::Wait([&](WriteDone d) {
         (*store)->CreateSweep(testing::TestSweep(sweep_id), std::move(d));
       }).ok()) {
    return 1;
  }
  for (int p = 0; p < kProducers; ++p) {
    if (!Store::Wait([&](WriteDone d) {
           (*store)->CreateTrial(testing::TestTrial(ids->trial_id + 1 + p, sweep_id, p),
                                 std::move(d));
         }).ok()) {
      return 1;
    }
  }
  const int side = open(argv[2], O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (side < 0) return 1;
  const unsigned seed = static_cast<unsigned>(std::atoi(argv[3]));
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      const int64_t trial = ids->trial_id + 1 + p;
      std::mt19937 rng(seed * 100 + p);
      int64_t seq = 0;
      while (true) {
        std::vector<MetricReport> batch;
        const int n = 1 + static_cast<int>(rng() % 10);
        for (int i = 0; i < n; ++i, ++seq) {
          batch.push_back({.seq = seq,
                           .step = seq,
                           .time_us = seq,
                           .metrics = {{"loss", 1.0 / (seq + 1)}, {"acc", 0.001 * seq}}});
        }
        const int64_t first = seq - n;
        absl::Status st = Store::Wait(
            [&](WriteDone d) { (*store)->AppendMetrics(trial, std::move(batch), std::move(d)); });
        if (!st.ok()) continue;  // not acknowledged: not recorded
        std::string lines;
        for (int64_t s = first; s < seq; ++s) absl::StrAppend(&lines, trial, " ", s, "\n");
        // One write() per batch: O_APPEND keeps lines whole across threads.
        if (write(side, lines.data(), lines.size()) < 0) std::abort();
      }
    });
  }
  for (auto& t : threads) t.join();
  return 0;
}
