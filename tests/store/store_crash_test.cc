// SIGKILL a process that writes to the store under load, at varied moments, then check that
// every acknowledged row survived exactly once and the file is intact and writable.

#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"
#include "store/store.h"
#include "tests/store/store_test_util.h"
#include "tests/testing/subprocess.h"

extern char** environ;

namespace sweepd::store {
namespace {

off_t FileSize(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

TEST(StoreCrashTest, KillNineLosesNothingAcknowledged) {
  testing::TempDir dir;
  const std::string db_path = dir.File("crash.db");
  const std::string child = sweepd::testing::BinaryPath("tests/store/store_crash_child");
  std::mt19937 rng(20261128);  // fixed seed: the same kill schedule every run
  constexpr int kRounds = 24;
  int64_t total_acked = 0;
  for (int round = 0; round < kRounds; ++round) {
    const std::string side = dir.File("acked-" + std::to_string(round));
    const std::string seed = std::to_string(round + 1);
    std::vector<char*> args = {const_cast<char*>(child.c_str()), const_cast<char*>(db_path.c_str()),
                               const_cast<char*>(side.c_str()), const_cast<char*>(seed.c_str()),
                               nullptr};
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, child.c_str(), nullptr, nullptr, args.data(), environ), 0);
    // Wait until the child has acknowledged something, then let it run a varied while longer:
    // kills land before, during and after commits.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (FileSize(side) == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_GT(FileSize(side), 0) << "round " << round << ": child acknowledged nothing";
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200'000));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "round " << round << ": child exited on its own with " << status;

    // Recovery: the store opens (WAL replay), the file is intact.
    auto store = Store::Open({.path = db_path});
    ASSERT_TRUE(store.ok()) << "round " << round << ": " << store.status();
    auto db = Connection::Open(db_path, Connection::Mode::kReadOnly);
    ASSERT_TRUE(db.ok());
    auto check = (*db)->Prepare("PRAGMA integrity_check");
    ASSERT_TRUE(check.ok());
    ASSERT_TRUE(*check->Step());
    ASSERT_EQ(check->ColumnText(0), "ok") << "round " << round;

    // Every acknowledged (trial, seq) is there exactly once per metric.
    auto count = (*db)->Prepare("SELECT count(*) FROM metrics WHERE trial_id = ?1 AND seq = ?2");
    ASSERT_TRUE(count.ok());
    std::ifstream in(side);
    std::string line;
    int64_t acked = 0;
    while (std::getline(in, line)) {
      if (in.eof()) break;  // a last line without its newline was cut by the kill
      std::istringstream fields(line);
      int64_t trial = 0, seq = 0;
      ASSERT_TRUE(fields >> trial >> seq) << line;
      count->Bind(1, trial).Bind(2, seq);
      ASSERT_TRUE(*count->Step());
      ASSERT_EQ(count->ColumnInt(0), 2)
          << "round " << round << ": trial " << trial << " seq " << seq
          << " acknowledged but stored " << count->ColumnInt(0) << " times (of 2 metrics)";
      count->Reset();
      ++acked;
    }
    total_acked += acked;
    ASSERT_GT(acked, 0);

    // And it takes writes again.
    auto ids = (*store)->GetMaxIds();
    ASSERT_TRUE(ids.ok());
    absl::Status write = Store::Wait([&](WriteDone d) {
      (*store)->AppendMetrics(ids->trial_id,
                              {{.seq = 1'000'000, .step = 0, .time_us = 0, .metrics = {{"x", 1}}}},
                              std::move(d));
    });
    ASSERT_TRUE(write.ok()) << write;
  }
  RecordProperty("acknowledged_reports", static_cast<int>(total_acked));
  std::printf("crash test: %d rounds, %lld acknowledged reports all found\n", kRounds,
              static_cast<long long>(total_acked));
}

}  // namespace
}  // namespace sweepd::store
