// TrialProcess with real child processes: process groups, literal arguments, exit statuses,
// and no orphans when a trial is stopped, grandchildren included.

#include "worker/trial_process.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"

namespace sweepd::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class TrialProcessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ASSERT_TRUE(BecomeSubreaper().ok()); }

  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "sweepd-proc-XXXXXX").string();
    dir_ = mkdtemp(pattern.data());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  LaunchSpec Spec(std::vector<std::string> argv) {
    LaunchSpec spec;
    spec.argv = std::move(argv);
    spec.env = {{"PATH", "/usr/bin:/bin"}, {"SWEEP_TEST", "yes"}};
    spec.workdir = dir_;
    spec.stderr_path = dir_ + "/stderr.log";
    return spec;
  }

  // Reads the child's whole stdout until it closes.
  static std::string ReadStdout(TrialProcess& p) {
    std::string out;
    char buf[4096];
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      const ssize_t n = read(p.stdout_fd(), buf, sizeof(buf));
      if (n > 0) {
        out.append(buf, static_cast<size_t>(n));
      } else if (n == 0) {
        break;
      } else if (errno == EAGAIN) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      } else {
        break;
      }
    }
    return out;
  }

  std::string dir_;
};

TEST_F(TrialProcessTest, ArgumentsArriveLiterallyInTheirOwnProcessGroup) {
  auto p = TrialProcess::Start(
      Spec({"printf", "%s\\n", "a b", "it's \"q\"", "$(rm -rf /)", "x; echo pwned", "${HOME}"}));
  ASSERT_TRUE(p.ok()) << p.status();
  const std::string out = ReadStdout(**p);
  EXPECT_EQ(out, "a b\nit's \"q\"\n$(rm -rf /)\nx; echo pwned\n${HOME}\n");
  auto exit = (*p)->Wait(std::chrono::seconds(10));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->exit_code, 0);
}

TEST_F(TrialProcessTest, RunsInItsWorkdirWithExactlyItsEnvironment) {
  auto p = TrialProcess::Start(Spec({"sh", "-c", "pwd; echo \"$SWEEP_TEST\"; env | wc -l"}));
  ASSERT_TRUE(p.ok()) << p.status();
  std::istringstream lines(ReadStdout(**p));
  std::string pwd, value, count;
  std::getline(lines, pwd);
  std::getline(lines, value);
  std::getline(lines, count);
  EXPECT_EQ(std::filesystem::canonical(pwd), std::filesystem::canonical(dir_));
  EXPECT_EQ(value, "yes");
  EXPECT_LE(std::atoi(count.c_str()), 4) << "the agent's own environment leaked in";
}

TEST_F(TrialProcessTest, StartsALeaderOfItsOwnGroup) {
  auto p = TrialProcess::Start(Spec({"sleep", "30"}));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(getpgid((*p)->pid()), (*p)->pid());
  EXPECT_NE(getpgid((*p)->pid()), getpgid(0));
}

TEST_F(TrialProcessTest, ReportsExitCodesSignalsAndStderr) {
  auto failing = TrialProcess::Start(Spec({"sh", "-c", "echo boom >&2; exit 3"}));
  ASSERT_TRUE(failing.ok());
  auto e = (*failing)->Wait(std::chrono::seconds(10));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->exit_code, 3);
  EXPECT_EQ(e->signal, 0);
  std::ifstream err(dir_ + "/stderr.log");
  std::string line;
  std::getline(err, line);
  EXPECT_EQ(line, "boom");

  auto killed = TrialProcess::Start(Spec({"sh", "-c", "kill -TERM $$"}));
  ASSERT_TRUE(killed.ok());
  auto k = (*killed)->Wait(std::chrono::seconds(10));
  ASSERT_TRUE(k.has_value());
  EXPECT_EQ(k->signal, SIGTERM);
}

TEST_F(TrialProcessTest, AMissingProgramIsAClearError) {
  auto p = TrialProcess::Start(Spec({"no-such-program-sweepd", "x"}));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("no-such-program-sweepd"));
  auto q = TrialProcess::Start(Spec({"/nonexistent/train.py"}));
  ASSERT_FALSE(q.ok());
  EXPECT_THAT(std::string(q.status().message()), HasSubstr("/nonexistent/train.py"));
}

TEST_F(TrialProcessTest, KillingTheGroupLeavesNoGrandchildren) {
  // The leader starts two grandchildren and prints their pids, then waits.
  auto p =
      TrialProcess::Start(Spec({"sh", "-c", "sleep 300 & echo $!; sleep 300 & echo $!; wait"}));
  ASSERT_TRUE(p.ok());
  char buf[256];
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::count(out.begin(), out.end(), '\n') < 2 &&
         std::chrono::steady_clock::now() < deadline) {
    const ssize_t n = read((*p)->stdout_fd(), buf, sizeof(buf));
    if (n > 0)
      out.append(buf, static_cast<size_t>(n));
    else
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::istringstream pids(out);
  pid_t a = 0, b = 0;
  ASSERT_TRUE(pids >> a >> b) << out;
  ASSERT_EQ(kill(a, 0), 0);
  (*p)->SignalGroup(SIGKILL);
  auto e = (*p)->Wait(std::chrono::seconds(10));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->signal, SIGKILL);
  // The grandchildren got the signal too.
  const auto gone_by = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  // The grandchildren re-parented to this process (a subreaper, as the agent is): reap them.
  while ((*p)->GroupAlive() && std::chrono::steady_clock::now() < gone_by) {
    ReapOrphans({});
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_FALSE((*p)->GroupAlive());
  EXPECT_EQ(getpgid(a), -1);
  EXPECT_EQ(getpgid(b), -1);
}

TEST_F(TrialProcessTest, DestroyingARunningTrialKillsItsGroup) {
  pid_t pid = 0;
  {
    auto p = TrialProcess::Start(Spec({"sleep", "300"}));
    ASSERT_TRUE(p.ok());
    pid = (*p)->pid();
  }
  EXPECT_EQ(kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST(SplitLinesTest, KeepsPartialLinesAndCutsFloods) {
  std::string pending;
  EXPECT_THAT(SplitLines(pending, "a=1\nb=", 6), ElementsAre("a=1"));
  EXPECT_EQ(pending, "b=");
  EXPECT_THAT(SplitLines(pending, "2\n\nc", 4), ElementsAre("b=2", ""));
  EXPECT_EQ(pending, "c");
  std::string flood(100, 'x');
  flood += "\n";
  std::string p2;
  auto lines = SplitLines(p2, flood.data(), flood.size(), 10);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].size(), 10u);
}

// With sweep-trial-shim as the parent: the command's own exit code and signal come through,
// and the shim records them for an agent that is not its parent.
TEST_F(TrialProcessTest, TheShimPassesOnAndRecordsHowTheCommandEnded) {
  const std::string shim = ::sweepd::testing::BinaryPath("worker/sweep-trial-shim");
  for (const auto& [command, code, sig, record] :
       std::vector<std::tuple<std::string, int, int, std::string>>{
           {"echo out; exit 7", 7, 0, "exit 7"},
           {"kill -TERM $$", 0, SIGTERM, "signal 15"},
           {"exit 0", 0, 0, "exit 0"}}) {
    LaunchSpec spec = Spec({"sh", "-c", command});
    spec.shim = shim;
    spec.exit_file = dir_ + "/exit";
    std::filesystem::remove(spec.exit_file);
    auto p = TrialProcess::Start(spec);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_GE((*p)->keep_fd(), 3);
    if (code == 7) {
      EXPECT_EQ(ReadStdout(**p), "out\n");
    }
    auto exit = (*p)->Wait(std::chrono::seconds(10));
    ASSERT_TRUE(exit.has_value()) << command;
    EXPECT_EQ(exit->exit_code, code) << command;
    EXPECT_EQ(exit->signal, sig) << command;
    std::ifstream in(spec.exit_file);
    std::string text;
    std::getline(in, text);
    EXPECT_EQ(text, record) << command;
  }
}

// The shim stops signals meant for the command from ending the shim first: a SIGTERM to the
// group ends the command, and the shim still records it.
TEST_F(TrialProcessTest, TheShimOutlivesAGroupSigtermToRecordIt) {
  LaunchSpec spec = Spec({"sleep", "30"});
  spec.shim = ::sweepd::testing::BinaryPath("worker/sweep-trial-shim");
  spec.exit_file = dir_ + "/exit";
  auto p = TrialProcess::Start(spec);
  ASSERT_TRUE(p.ok()) << p.status();
  // Let the shim start its command first (the command shows up as the shim's child).
  ASSERT_TRUE(::sweepd::testing::WaitFor(
      [&] {
        std::ifstream children(
            absl::StrCat("/proc/", (*p)->pid(), "/task/", (*p)->pid(), "/children"));
        std::string child;
        return static_cast<bool>(children >> child);
      },
      10000));
  (*p)->SignalGroup(SIGTERM);
  auto exit = (*p)->Wait(std::chrono::seconds(10));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->signal, SIGTERM);
  std::ifstream in(spec.exit_file);
  std::string text;
  std::getline(in, text);
  EXPECT_EQ(text, "signal 15");
}

// What a restarted agent does: open the running trial's stdout pipe again through the shim,
// read what it printed meanwhile, and learn its end from the exit record.
TEST_F(TrialProcessTest, AnotherProcessCanTakeOverATrialStartedThroughTheShim) {
  LaunchSpec spec = Spec({"sh", "-c", "read line < /dev/null; sleep 0.3; echo later; exit 3"});
  spec.shim = ::sweepd::testing::BinaryPath("worker/sweep-trial-shim");
  spec.exit_file = dir_ + "/exit";
  auto started = TrialProcess::Start(spec);
  ASSERT_TRUE(started.ok()) << started.status();
  auto adopted = TrialProcess::Adopt((*started)->pid(), (*started)->start_ticks(),
                                     (*started)->keep_fd(), spec.exit_file);
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_TRUE((*adopted)->adopted());
  // The first reader goes away, as a crashed agent's would; the pipe stays open.
  (*started)->CloseStdout();
  std::string out;
  char buf[256];
  ASSERT_TRUE(::sweepd::testing::WaitFor(
      [&] {
        const ssize_t n = read((*adopted)->stdout_fd(), buf, sizeof(buf));
        if (n > 0) out.append(buf, static_cast<size_t>(n));
        return out == "later\n";
      },
      10000))
      << out;
  auto exit = (*adopted)->Wait(std::chrono::seconds(10));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->exit_code, 3);
  EXPECT_EQ(exit->signal, 0);
  // A process that is gone, or another one that reused its pid, is not taken over.
  EXPECT_FALSE(TrialProcess::Adopt((*started)->pid(), (*started)->start_ticks() + 1,
                                   (*started)->keep_fd(), spec.exit_file)
                   .ok());
}

}  // namespace
}  // namespace sweepd::worker
