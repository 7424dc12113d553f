// The daemons and sweepctl against careless input, from the user's side with the real binaries:
// stray signals, malformed --listen values and a port already served, a store sweepd cannot
// write, unknown log levels, enqueued values, watch's exit status and control characters in
// metric names.

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"
#include "tests/testing/subprocess.h"

namespace sweepd {
namespace {

using ::sweepd::testing::BinaryPath;
using ::sweepd::testing::Cluster;
using ::sweepd::testing::Json;
using ::sweepd::testing::ProcessResult;
using ::sweepd::testing::ReadFileText;
using ::sweepd::testing::RunProcess;
using ::sweepd::testing::SpawnProcess;
using ::sweepd::testing::WaitFor;
using ::testing::HasSubstr;
using ::testing::Not;

// A scratch folder, removed at the end.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "sweepd-daemon-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs sweepd with `flags` for at most 20 s: a sweepd that should have refused to start but
// serves instead ends with `timeout`'s 124.
ProcessResult RunSweepd(std::vector<std::string> flags, const std::string& as_user = "") {
  std::vector<std::string> argv;
  if (!as_user.empty()) {
    argv = {"/usr/bin/setpriv", "--reuid=" + as_user, "--regid=" + as_user, "--clear-groups"};
  }
  for (const std::string& a :
       {std::string("/usr/bin/timeout"), std::string("20"), BinaryPath("scheduler/sweepd")}) {
    argv.push_back(a);
  }
  for (auto& f : flags) argv.push_back(std::move(f));
  return RunProcess(argv);
}

TEST(DaemonE2eTest, HangupAndUserSignalsAreLoggedAndIgnoredByBothDaemons) {
  Cluster cluster(1, 1);
  for (int sig : {SIGHUP, SIGUSR1, SIGUSR2}) {
    cluster.SignalSweepd(sig);
    cluster.SignalAgent(0, sig);
  }
  EXPECT_TRUE(WaitFor(
      [&] {
        const std::string logs = cluster.Logs();
        return logs.find("SIGUSR2: ignored") != std::string::npos &&
               logs.rfind("SIGUSR2: ignored") != logs.find("SIGUSR2: ignored");
      },
      10000))
      << cluster.Logs();
  const std::string logs = cluster.Logs();
  EXPECT_THAT(logs, HasSubstr("SIGHUP: nothing to reopen (logging to standard output)"));
  EXPECT_THAT(logs, HasSubstr("SIGUSR1: ignored"));
  // Both still serve: the agent is still registered and a sweep runs on it.
  const std::string id = cluster.Submit(R"(
program: report_socket.py
method: grid
metric: {name: loss}
parameters:
  x: {values: [0.1]}
)");
  EXPECT_TRUE(cluster.WaitForState(id, "finished")) << cluster.Logs();
  // The destructor checks that both still stop cleanly on SIGTERM.
}

TEST(DaemonE2eTest, MalformedListenAddressesAreRefusedNamingTheFlag) {
  ScratchDir dir;
  struct Case {
    std::string listen;
    std::string why;
  };
  for (const Case& c : std::vector<Case>{
           {"127.0.0.1:99999", "the port must be a number from 0 to 65535"},
           {"127.0.0.1", "no port"},
           {"127.0.0.1:", "the port must be a number from 0 to 65535"},
           {"127.0.0.1:-1", "the port must be a number from 0 to 65535"},
           {"127.0.0.1:http", "the port must be a number from 0 to 65535"},
           {"::1:7777", "an IPv6 address needs brackets"},
           {"[::1", "no ']' after the IPv6 address"},
           {":7777", "no host"},
       }) {
    auto r = RunSweepd({"--listen=" + c.listen, "--db=" + dir.File("s.db")});
    EXPECT_EQ(r.exit_code, 1) << c.listen << "\n" << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr("--listen '" + c.listen + "': " + c.why)) << c.listen;
  }
}

TEST(DaemonE2eTest, ASecondSchedulerOnAPortAlreadyServedExitsInsteadOfSharingIt) {
  Cluster cluster(0, 1);
  ScratchDir dir;
  auto r = RunSweepd({"--listen=" + cluster.address(), "--db=" + dir.File("other.db")});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("--listen " + cluster.address() + ": cannot listen there"));
  // The first one still answers.
  EXPECT_EQ(cluster.Sweepctl({"agents"}).exit_code, 0);
}

TEST(DaemonE2eTest, UnknownLogLevelsAreRefusedByBothDaemons) {
  ScratchDir dir;
  auto sweepd = RunSweepd({"--log-level=loud", "--listen=127.0.0.1:0", "--db=" + dir.File("s.db")});
  EXPECT_EQ(sweepd.exit_code, 2) << sweepd.out << sweepd.err;
  EXPECT_THAT(sweepd.err, HasSubstr("--log-level: 'loud' is not a level; one of trace, debug, "
                                    "info, warn, error, critical, off"));
  auto agent =
      RunProcess({"/usr/bin/timeout", "20", BinaryPath("worker/sweep-agent"), "--log-level=loud",
                  "--scheduler=127.0.0.1:1", "--workdir=" + dir.File("work")});
  EXPECT_EQ(agent.exit_code, 2) << agent.out << agent.err;
  EXPECT_THAT(agent.err, HasSubstr("--log-level: 'loud' is not a level"));
}

// Root writes any file, so as root the refused sweepd runs as nobody.
TEST(DaemonE2eTest, AStoreSweepdCannotWriteIsRefusedAtStartNamingTheFile) {
  ScratchDir dir;
  const std::string db = dir.File("s.db");
  {
    const int pid = SpawnProcess({BinaryPath("scheduler/sweepd"), "--listen=127.0.0.1:0",
                                  "--db=" + db, "--address_file=" + dir.File("address")},
                                 dir.File("first.log"));
    ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(dir.File("address")); }, 60000))
        << ReadFileText(dir.File("first.log"));
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
  }
  for (const char* beside : {"-wal", "-shm", ".lock"}) std::filesystem::remove(db + beside);
  ASSERT_EQ(chmod(db.c_str(), 0444), 0);
  ASSERT_EQ(chmod(dir.path().c_str(), 0777), 0);
  auto r = RunSweepd({"--listen=127.0.0.1:0", "--db=" + db}, geteuid() == 0 ? "65534" : "");
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("store " + db + ": cannot be written"));
  EXPECT_THAT(r.err, HasSubstr("make the file and its folder writable by this user"));
  EXPECT_THAT(r.err, Not(HasSubstr("INSERT")));
}

TEST(DaemonE2eTest, AnEnqueuedValueEqualToACategoricalValueIsStoredAsThatValue) {
  Cluster cluster(0, 1);
  const std::string id = cluster.Submit(R"(
program: report_socket.py
method: random
metric: {name: loss}
parameters:
  bs: {values: [16, 32]}
  n: {min: 1, max: 8}
)",
                                        /*paused=*/true);
  auto enqueued = cluster.Sweepctl(
      {"enqueue", id, "--param", "bs=16.0", "--param", "n=4.0", "--output", "json"});
  ASSERT_EQ(enqueued.exit_code, 0) << enqueued.err;
  const std::string trial_id = Json::parse(enqueued.out)["id"];
  auto trial = cluster.Sweepctl({"trial", trial_id, "--output", "json"});
  const Json detail = Json::parse(trial.out);
  EXPECT_EQ(detail["trial"]["params"][0]["value_json"], "16");
  EXPECT_EQ(detail["trial"]["params"][1]["value_json"], "4");
  auto fraction = cluster.Sweepctl({"enqueue", id, "--param", "n=4.5"});
  EXPECT_EQ(fraction.exit_code, 1);
  EXPECT_THAT(fraction.err, HasSubstr("params.n: must be an integer; got 4.5"));
  auto half = cluster.Sweepctl({"enqueue", id, "--param", "bs=16.5"});
  EXPECT_EQ(half.exit_code, 1);
  EXPECT_THAT(half.err, HasSubstr("params.bs: 16.5 is not one of 16, 32"));
  // A huge value was reported as "received initial metadata size exceeds limit": the error
  // echoed it whole into the status header.
  auto huge = cluster.Sweepctl({"enqueue", id, "--param", "bs=" + std::string(100000, '9')});
  EXPECT_EQ(huge.exit_code, 1);
  EXPECT_THAT(huge.err, HasSubstr("params.bs: \"99999"));
  EXPECT_THAT(huge.err, HasSubstr("bytes) is not one of 16, 32"));
  EXPECT_THAT(huge.err, Not(HasSubstr("metadata")));
}

TEST(DaemonE2eTest, WatchFailsForAnUnknownSweepAndAnUnreachableScheduler) {
  Cluster cluster(0, 1);
  auto unknown = cluster.Sweepctl({"watch", "s-doesnotexist"});
  EXPECT_EQ(unknown.exit_code, 1) << unknown.out << unknown.err;
  EXPECT_THAT(unknown.err, HasSubstr("s-doesnotexist"));
  auto away = RunProcess({BinaryPath("cli/sweepctl"), "watch", "s-doesnotexist",
                          "--scheduler=127.0.0.1:1", "--timeout=2"});
  EXPECT_EQ(away.exit_code, 1) << away.out << away.err;
}

TEST(DaemonE2eTest, MetricNamesWithControlCharactersAreRefusedAtTheApi) {
  Cluster cluster(0, 1);
  const std::string id = cluster.Submit(R"(
method: random
metric: {name: loss}
parameters:
  x: {min: 0.0, max: 1.0}
)",
                                        /*paused=*/false, /*external=*/true);
  auto asked = cluster.Sweepctl({"ask", id, "--output", "json"});
  ASSERT_EQ(asked.exit_code, 0) << asked.err;
  const std::string trial = Json::parse(asked.out)["trial"];
  for (const char* name : {"lo\tss", "lo\nss"}) {
    auto r =
        cluster.Sweepctl({"report", trial, "--metric", std::string(name) + "=1", "--step", "1"});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr("metrics: a name must not contain control characters"));
  }
  EXPECT_EQ(cluster.Sweepctl({"report", trial, "--metric", "loss=1", "--step", "1"}).exit_code, 0);
}

}  // namespace
}  // namespace sweepd
