// An agent's identity and its workdir lock: unique without flags, stable across restarts, one
// agent per workdir, a copied workdir is another agent, an older agent's workdir keeps its id.

#include "worker/agent_identity.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd::worker {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

class AgentIdentityTest : public testing::Test {
 protected:
  AgentIdentityTest() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "agent-identity-XXXXXX").string();
    dir_ = mkdtemp(pattern.data());
  }
  ~AgentIdentityTest() override { std::filesystem::remove_all(dir_); }

  std::string dir_;
};

TEST_F(AgentIdentityTest, TheDefaultIdIsTheShortHostAndAHashOfTheWorkdir) {
  EXPECT_THAT(DerivedAgentId("gpu01.lab.example", "/var/lib/sweep-agent/0"),
              MatchesRegex("gpu01-[0-9a-f]{6}"));
  EXPECT_NE(DerivedAgentId("gpu01", "/w/0"), DerivedAgentId("gpu01", "/w/1"));
  EXPECT_EQ(DerivedAgentId("gpu01", "/w/0"), DerivedAgentId("gpu01", "/w/0"));
  EXPECT_TRUE(ValidAgentId(DerivedAgentId(std::string(300, 'h'), "/w")));
}

TEST_F(AgentIdentityTest, ARestartOnTheSameWorkdirIsTheSameAgent) {
  std::string id, key;
  {
    auto claim = ClaimWorkdir(dir_ + "/w", "", "node7");
    ASSERT_TRUE(claim.ok()) << claim.status();
    id = claim->identity.agent_id;
    key = claim->identity.key;
    EXPECT_THAT(id, MatchesRegex("node7-[0-9a-f]{6}"));
    EXPECT_EQ(key.size(), 32u);
  }  // the lock goes with the claim, as with the process
  auto again = ClaimWorkdir(dir_ + "/w", "", "node7");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->identity.agent_id, id);
  EXPECT_EQ(again->identity.key, key);
}

TEST_F(AgentIdentityTest, ASecondClaimOnAHeldWorkdirIsRefusedNamingTheHolder) {
  auto first = ClaimWorkdir(dir_ + "/w", "", "node7");
  ASSERT_TRUE(first.ok());
  auto second = ClaimWorkdir(dir_ + "/w", "", "node7");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(),
              HasSubstr("is in use by sweep-agent pid " + std::to_string(getpid())));
  EXPECT_THAT(second.status().message(), HasSubstr("its own --workdir"));
}

TEST_F(AgentIdentityTest, ACopiedWorkdirIsAnotherAgent) {
  std::string id, key;
  {
    auto claim = ClaimWorkdir(dir_ + "/w", "", "node7");
    ASSERT_TRUE(claim.ok());
    id = claim->identity.agent_id;
    key = claim->identity.key;
  }
  std::filesystem::copy(dir_ + "/w", dir_ + "/copy", std::filesystem::copy_options::recursive);
  auto copy = ClaimWorkdir(dir_ + "/copy", "", "node7");
  ASSERT_TRUE(copy.ok());
  EXPECT_NE(copy->identity.agent_id, id);
  EXPECT_NE(copy->identity.key, key);
  // The same path on another host (a cloned image) is another agent too.
  std::filesystem::remove(dir_ + "/w/.sweep-agent/lock");
  auto elsewhere = ClaimWorkdir(dir_ + "/w", "", "node8");
  ASSERT_TRUE(elsewhere.ok());
  EXPECT_NE(elsewhere->identity.key, key);
  EXPECT_THAT(elsewhere->identity.agent_id, MatchesRegex("node8-[0-9a-f]{6}"));
}

TEST_F(AgentIdentityTest, AGivenIdWinsAndKeepsTheKey) {
  std::string key;
  {
    auto claim = ClaimWorkdir(dir_ + "/w", "", "node7");
    ASSERT_TRUE(claim.ok());
    key = claim->identity.key;
  }
  auto named = ClaimWorkdir(dir_ + "/w", "gpu-box-3", "node7");
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(named->identity.agent_id, "gpu-box-3");
  EXPECT_EQ(named->identity.key, key);
  for (const char* bad : {"lock", "identity.json", "a b", "../x", ""}) {
    if (std::string(bad).empty()) continue;
    EXPECT_FALSE(ClaimWorkdir(dir_ + "/v", bad, "node7").ok()) << bad;
  }
}

// An older sweep-agent's default id was the hostname, its trials' state in
// .sweep-agent/<hostname>/: after an upgrade the agent keeps that id, so it takes them over.
TEST_F(AgentIdentityTest, AnOlderAgentsWorkdirKeepsTheHostnameAsId) {
  std::filesystem::create_directories(dir_ + "/old/.sweep-agent/node7");
  auto claim = ClaimWorkdir(dir_ + "/old", "", "node7");
  ASSERT_TRUE(claim.ok());
  EXPECT_EQ(claim->identity.agent_id, "node7");
}

TEST_F(AgentIdentityTest, TheKeyIsReadableByItsOwnerOnly) {
  auto claim = ClaimWorkdir(dir_ + "/w", "", "node7");
  ASSERT_TRUE(claim.ok());
  struct stat st {};
  ASSERT_EQ(stat((dir_ + "/w/.sweep-agent/identity.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

}  // namespace
}  // namespace sweepd::worker
