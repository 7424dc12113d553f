// TLS, mutual TLS and tokens end to end: a certificate and token made by scripts/gen-certs, the
// real sweepd, sweep-agent and sweepctl. A sweep runs over TLS; a missing or wrong token, a
// plaintext client, and an agent using another agent's certificate are refused.

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"
#include "tests/testing/subprocess.h"

namespace sweepd {
namespace {

using ::sweepd::testing::BinaryPath;
using ::sweepd::testing::Cluster;
using ::sweepd::testing::ClusterOptions;
using ::sweepd::testing::Int;
using ::sweepd::testing::ReadFileText;
using ::sweepd::testing::RunProcess;
using ::sweepd::testing::SourcePath;
using ::sweepd::testing::WaitFor;
using ::testing::HasSubstr;

constexpr char kToken[] = "e2e-token-5b7d41c09a";

class SecurityE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "sweepd-tls-XXXXXX").string();
    certs_ = mkdtemp(pattern.data());
    auto made = RunProcess({SourcePath("scripts/gen-certs"), certs_, "agent-0", "agent-1"});
    ASSERT_EQ(made.exit_code, 0) << made.err;
    std::ofstream(certs_ + "/token") << kToken << "\n";
    setenv("SWEEPD_TOKEN", kToken, 1);  // sweepctl's and the agents' token
  }
  void TearDown() override {
    unsetenv("SWEEPD_TOKEN");
    std::filesystem::remove_all(certs_);
  }

  ClusterOptions Options() const {
    return ClusterOptions{
        .agents = 2,
        .slots = 1,
        .agent_flags = {"--tls_ca=" + certs_ + "/ca.pem"},
        .sweepd_flags = {"--tls_cert=" + certs_ + "/sweepd.pem",
                         "--tls_key=" + certs_ + "/sweepd.key", "--tls_ca=" + certs_ + "/ca.pem",
                         "--token_file=" + certs_ + "/token"},
        .sweepctl_flags = {"--tls-ca=" + certs_ + "/ca.pem"},
        .agent_cert_dir = certs_};
  }

  std::string certs_;
};

TEST_F(SecurityE2eTest, ASweepRunsOverMutualTlsAndStrangersAreRefused) {
  Cluster cluster(Options());
  const std::string id = cluster.Submit(R"(
program: gang_node.py
method: random
metric: {name: loss}
run_cap: 3
parameters:
  mode: {value: ok}
)");
  ASSERT_TRUE(cluster.WaitForState(id, "finished")) << cluster.Logs();
  EXPECT_EQ(Int(cluster.Status(id)["counts"], "completed"), 3);

  const std::string sweepctl = BinaryPath("cli/sweepctl");
  const std::string server = "--scheduler=" + cluster.address();
  const std::string ca = "--tls-ca=" + certs_ + "/ca.pem";
  // No token.
  unsetenv("SWEEPD_TOKEN");
  auto anonymous = RunProcess({sweepctl, "list", server, ca});
  EXPECT_EQ(anonymous.exit_code, 1);
  EXPECT_THAT(anonymous.err, HasSubstr("needs a token"));
  // A wrong token.
  setenv("SWEEPD_TOKEN", "not-the-token-000000", 1);
  auto wrong = RunProcess({sweepctl, "list", server, ca});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.err, HasSubstr("the token is wrong"));
  // Plaintext to a TLS server.
  setenv("SWEEPD_TOKEN", kToken, 1);
  auto plaintext = RunProcess({sweepctl, "list", server, "--timeout=3"});
  EXPECT_EQ(plaintext.exit_code, 1);
  // The token never shows up in sweepd's log.
  EXPECT_THAT(ReadFileText(cluster.dir() + "/sweepd.log"), ::testing::Not(HasSubstr(kToken)));

  // agent-1's certificate cannot register as agent-7.
  const std::string log = cluster.dir() + "/impostor.log";
  const int impostor = ::sweepd::testing::SpawnProcess(
      {BinaryPath("worker/sweep-agent"), server, "--agent_id=agent-7",
       "--tls_ca=" + certs_ + "/ca.pem", "--tls_cert=" + certs_ + "/agent-1.pem",
       "--tls_key=" + certs_ + "/agent-1.key", "--workdir=" + cluster.dir() + "/impostor"},
      log);
  EXPECT_TRUE(WaitFor(
      [&] { return ReadFileText(log).find("cannot register as 'agent-7'") != std::string::npos; },
      20000))
      << ReadFileText(log);
  kill(impostor, SIGTERM);
  waitpid(impostor, nullptr, 0);
  EXPECT_EQ(cluster.Agents().size(), 2u);
}

TEST(SecurityE2eTest2, PlaintextSweepdRefusesToListenOffLoopback) {
  auto r = RunProcess({BinaryPath("scheduler/sweepd"), "--listen=0.0.0.0:0", "--db=/dev/null"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("is not a loopback address; serving other hosts needs TLS"));
}

TEST(SecurityE2eTest2, AStoreThatCannotBeOpenedIsAnErrorNotACrash) {
  auto r = RunProcess(
      {BinaryPath("scheduler/sweepd"), "--listen=127.0.0.1:0", "--db=/nonexistent/dir/x.db"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("store /nonexistent/dir/x.db"));
}

}  // namespace
}  // namespace sweepd
